"""GPT as a TransformerLens-native model, so every TransformerLens tool works on it.

TransformerLens 4.x removed ``HookedTransformer``; its native models are built with
``TransformerBridge.boot_native(config)`` and carry the familiar hook names
(``hook_embed``, ``blocks.{i}.hook_resid_post``, ``blocks.{i}.attn.hook_pattern``, ...).
The architecture is the paper's GPT: pre-LayerNorm blocks, learned positions, tanh-GELU MLP
of width 4*d_model, biases everywhere, causal attention scaled by 1/sqrt(d_head). One
difference: the unembedding is untied (the native model has no tying); imported paper
checkpoints copy their tied matrix into both.

Speed. The bridge computes LayerNorm from its formula in Python by default (so hooks on the
scale can edit it); ours runs torch's fused ``layer_norm`` (hooks on ``hook_scale`` and
``hook_normalized`` still fire; an editing hook falls back to the formula). With no hook
attached, ``unhooked_forward`` computes the same function from the same parameters without
the bridge's dispatch, bit for bit (tested): training and decoding use it. Together they
bring the trainer's step level with a plain PyTorch GPT (benchmarks/trainer_step.py).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable

import torch
import torch.nn.functional as F
import transformer_lens.model_bridge.sources  # noqa: F401  (attaches TransformerBridge.boot_native)
from torch import Tensor
from transformer_lens import TransformerBridgeConfig
from transformer_lens.model_bridge import TransformerBridge
from transformer_lens.model_bridge.generalized_components import NormalizationBridge

from workbench.models.configs import GPTConfig
from workbench.task import GraphSpec

__all__ = ["GPTConfig", "build_gpt", "compile_training", "context_length", "unhooked_forward"]


def context_length(spec: GraphSpec, slots: int | None = None) -> int:
    """The input length: the prompt plus the objective's answer slots (default l-1)."""
    return spec.prompt_length + (spec.path_length - 1 if slots is None else slots)


def build_gpt(
    config: GPTConfig, spec: GraphSpec, seed: int, attention: str = "causal", d_vocab: int | None = None, slots: int | None = None
) -> TransformerBridge:
    """A freshly initialised GPT for ``spec``'s vocabulary and context, seeded; ``attention``
    is the objective's direction (TransformerLens' ``attention_dir``), ``d_vocab`` the
    vocabulary when the objective adds tokens of its own (default: the task's N+4), ``slots``
    its number of answer slots (``Objective.slot_count``; default l-1)."""
    bridge_config = TransformerBridgeConfig(
        d_model=config.d_model,
        n_layers=config.n_layers,
        n_heads=config.n_heads,
        d_head=config.d_head,
        d_mlp=config.d_mlp or 4 * config.d_model,
        n_ctx=context_length(spec, slots),
        d_vocab=d_vocab or spec.vocab_size,
        act_fn="gelu_new",
        normalization_type="LN",
        eps=1e-5,
        init_mode="gpt2",
        initializer_range=config.init_std,
        seed=seed,
        attention_dir=attention,
    )
    model = TransformerBridge.boot_native(bridge_config)
    for module in model.modules():
        if isinstance(module, NormalizationBridge):
            module.use_native_layernorm_autograd = True  # torch's layer_norm, see the module docstring
    return model


class PlainModules:
    """The modules a ``build_gpt`` bridge wraps, looked up once per model. Dynamo cannot trace
    the bridge's attribute lookup (``block.attn`` breaks the graph at every block), so a
    compiled forward (``plain_forward``) takes these instead of the bridge."""

    def __init__(self, model: TransformerBridge) -> None:
        self.embed, self.pos_embed = model.embed.original_component, model.pos_embed.original_component
        self.blocks = []
        for block in model.blocks:
            attn = block.attn
            self.blocks.append((block.ln1.original_component, attn.q.original_component, attn.k.original_component, attn.v.original_component,
                                attn.o.original_component, block.ln2.original_component, block.mlp.fc_in.original_component,
                                block.mlp.fc_out.original_component, attn.original_component))
        self.ln_final, self.unembed = model.ln_final.original_component, model.unembed.original_component


_PLAIN: weakref.WeakKeyDictionary[TransformerBridge, PlainModules] = weakref.WeakKeyDictionary()


def plain_modules(model: TransformerBridge) -> PlainModules:
    """``PlainModules(model)``, kept while the model lives (the bridge wraps the same modules for life)."""
    if model not in _PLAIN:
        _PLAIN[model] = PlainModules(model)
    return _PLAIN[model]


def unhooked_forward(model: TransformerBridge, tokens: Tensor, first: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """(logits, final residual stream, token embeddings) of ``model(tokens)`` for a model of
    ``build_gpt`` with no hook attached, from the modules the bridge wraps: the same
    operations in the same order as the native model's forward (embeddings, pre-LN blocks
    with the causal mask applied by ``masked_fill``, final norm, head), so every output and
    gradient is bit-identical to the hooked call, without the bridge's per-module dispatch.
    Callers go through ``workbench.models.logits_of`` or ``forward_with_residual``, which
    check for hooks.

    ``first`` > 0 asks only for positions ``first:`` of the logits and the final residual
    (a loss that reads the answer slots alone): the last block then computes its keys and
    values at every position but its queries, attention output and MLP, and the final norm
    and head, only there. Nothing else reads those rows, so the outputs are the full call's
    rows ``first:`` up to the rounding of matrix products of another shape; in a 2-layer
    model of G(2,5,50) (answer: the last 5 of 31 positions) this is a third of the step's
    arithmetic (benchmarks/trainer_step.py).

    A model given to ``compile_training`` runs the compiled forward where gradients are taken."""
    forward = _compiled_forward() if model in _COMPILED and torch.is_grad_enabled() else plain_forward
    return forward(plain_modules(model), tokens, first)


_COMPILED: weakref.WeakSet[TransformerBridge] = weakref.WeakSet()  # the models given to compile_training


@functools.cache
def _compiled_forward() -> Callable[..., tuple[Tensor, Tensor, Tensor]]:
    """``plain_forward`` traced by ``torch.compile``, one wrapper for every model (Dynamo keys
    its graph on shapes, not on the modules, so models of one shape share it)."""
    return torch.compile(plain_forward, dynamic=False, fullgraph=True)


def compile_training(model: torch.nn.Module, parts: torch.nn.Module | None = None) -> None:
    """Run the unhooked forward of ``model`` and of every GPT among the objective's ``parts``
    (bst's backward encoder) traced by ``torch.compile`` (``model.compile``) where gradients
    are taken: the training step, whose shapes are fixed (one graph, which models of one shape share;
    ``fullgraph``: a graph break is an error, not a silent slowdown). Evaluation and decoding run without
    gradients, on shapes that vary, and stay eager; any hook still takes the bridge's forward.
    Needs a C++ compiler on a CPU (as ``model.scan=cpp``)."""
    for module in [model, *(parts.children() if parts is not None else [])]:
        if isinstance(module, TransformerBridge):
            _COMPILED.add(module)


def plain_forward(modules: PlainModules, tokens: Tensor, first: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """``unhooked_forward`` on the looked-up modules: the part ``torch.compile`` traces whole."""
    batch, seq = tokens.shape
    positions = torch.arange(seq, device=tokens.device).unsqueeze(0).expand(batch, -1)
    embed = modules.embed(tokens)
    x = embed + modules.pos_embed(positions)
    last = len(modules.blocks) - 1
    for layer, (ln1, q_proj, k_proj, v_proj, o_proj, ln2, fc_in, fc_out, attn) in enumerate(modules.blocks):
        start = first if layer == last else 0  # the rows the rest of the forward reads
        normed = ln1(x)
        queries = normed[:, start:] if start else normed
        q = q_proj(queries).view(batch, seq - start, attn.n_heads, attn.d_head).transpose(1, 2)
        k, v = (proj(normed).view(batch, seq, attn.n_heads, attn.d_head).transpose(1, 2) for proj in (k_proj, v_proj))
        scores = torch.matmul(q, k.transpose(-2, -1)) / attn.scale
        if attn.causal:
            mask = attn.causal_mask[start:seq, :seq]
            pattern = F.softmax(scores.masked_fill(mask, float("-inf")), dim=-1).masked_fill(mask, 0.0)
        else:
            pattern = F.softmax(scores, dim=-1)
        attended = torch.matmul(pattern, v).transpose(1, 2).contiguous().view(batch, seq - start, -1)
        x = (x[:, start:] if start else x) + o_proj(attended)
        hidden = F.gelu(fc_in(ln2(x)), approximate="tanh")
        x = x + fc_out(hidden)
    return modules.unembed(modules.ln_final(x)), x, embed
