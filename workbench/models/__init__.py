"""Model architectures. Each module holds a config dataclass and a ``build_*`` function that
returns a hooked model mapping tokens (batch, pos) to logits (batch, pos, d_vocab);
``workbench.factory`` builds the one a run config asks for.

The helpers below give objectives what they need of any model without knowing its arch:
the final residual stream and the token embeddings of a forward pass (read through the
TransformerLens hooks both archs share) and the map from a residual vector to logits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported by the model modules, not here: configs stay light
    from torch import Tensor, nn


def logits_of(model: nn.Module, tokens: Tensor, first: int = 0) -> Tensor:
    """``model(tokens)[:, first:]``, the way training and decoding call a model.

    A GPT (a TransformerBridge of ``build_gpt``) with no hook attached anywhere is run by
    ``gpt.unhooked_forward``: the bridge's hook points are identities then, so the logits
    and their gradients are bit-identical and the step skips the bridge's dispatch. There
    ``first`` also spares the last block and the head the rows before ``first`` (a loss
    that reads only the answer slots asks for them alone); the rows it gives agree with the
    full call's up to rounding. Any hook, a processed (compatibility-mode) bridge or another
    model takes the ordinary call, sliced.
    """
    _check_first(tokens, first)
    if not _runs_unhooked(model):
        return model(tokens)[:, first:]
    from workbench.models.gpt import unhooked_forward

    return unhooked_forward(model, tokens, first)[0]


def _check_first(tokens: Tensor, first: int) -> None:
    if not 0 <= first < tokens.shape[1]:
        raise ValueError(f"first={first}: expected a position in [0, {tokens.shape[1]})")


def _runs_unhooked(model: nn.Module) -> bool:
    """A native GPT that no hook, processing or patch would see bypassed."""
    native = getattr(getattr(model, "cfg", None), "architecture", None) == "TransformerLensNative"
    return native and not getattr(model, "compatibility_mode", True) and not _hooked(model)


def _hooked(model: nn.Module) -> bool:
    """Whether any hook could see a forward pass: torch's global hooks, or a hook on any
    module, except the capture hooks a TransformerBridge's blocks install for themselves on
    first use (they feed ``hook_mlp_in`` and the split-qkv fork; a hook there is a hook on
    a HookPoint, seen here)."""
    from workbench.models.hooks import global_hooks_set, own_hooks

    if global_hooks_set():
        return True
    own = {handle.id for block in getattr(model, "blocks", []) for handle in getattr(block, "_capture_hook_handles", [])}
    return any(own_hooks(m) - own for m in model.modules())


def d_model_of(model: nn.Module) -> int:
    return model.cfg.d_model


def final_residual_hook(model: nn.Module) -> str:
    """The hook of the last layer's residual stream, before the final norm."""
    return f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"


def residual_to_logits(model: nn.Module, resid: Tensor) -> Tensor:
    """Final norm and unembedding of the model, applied to any residual-stream tensor."""
    return unembed(model, final_norm(model, resid))


def final_norm(model: nn.Module, resid: Tensor) -> Tensor:
    if hasattr(model, "backbone"):  # HookedMamba
        return model.backbone.norm_f(resid)
    return model.ln_final(resid)


def unembed(model: nn.Module, normed: Tensor) -> Tensor:
    if hasattr(model, "backbone"):
        return model.lm_head(normed)
    return model.unembed(normed)


def forward_with_residual(
    model: nn.Module, tokens: Tensor, embed: bool = False, first: int = 0
) -> tuple[Tensor, Tensor, Tensor | None]:
    """(logits, final residual stream, token embeddings or None) of one forward pass, with
    gradients: the hooks read the tensors, they change nothing (an unhooked GPT computes the
    same tensors without them, see ``logits_of``). Logits and residual are those of
    positions ``first:`` (``logits_of``'s ``first``); the embeddings cover every position."""
    _check_first(tokens, first)
    if _runs_unhooked(model):
        from workbench.models.gpt import unhooked_forward

        logits, resid, embedded = unhooked_forward(model, tokens, first)
        return logits, resid, embedded if embed else None
    seen: dict[str, Tensor] = {}

    def keeper(name: str):
        def keep(tensor: Tensor, hook) -> Tensor:
            seen[name] = tensor
            return tensor

        return keep

    hooks = [(final_residual_hook(model), keeper("resid"))] + ([("hook_embed", keeper("embed"))] if embed else [])
    logits = model.run_with_hooks(tokens, fwd_hooks=hooks)
    return logits[:, first:], seen["resid"][:, first:], seen.get("embed")
