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


def forward_with_residual(model: nn.Module, tokens: Tensor, embed: bool = False) -> tuple[Tensor, Tensor, Tensor | None]:
    """(logits, final residual stream, token embeddings or None) of one forward pass, with
    gradients: the hooks read the tensors, they change nothing."""
    seen: dict[str, Tensor] = {}

    def keeper(name: str):
        def keep(tensor: Tensor, hook) -> Tensor:
            seen[name] = tensor
            return tensor

        return keep

    hooks = [(final_residual_hook(model), keeper("resid"))] + ([("hook_embed", keeper("embed"))] if embed else [])
    logits = model.run_with_hooks(tokens, fwd_hooks=hooks)
    return logits, seen["resid"], seen.get("embed")
