"""GPT as a TransformerLens-native model, so every TransformerLens tool works on it.

TransformerLens 4.x removed ``HookedTransformer``; its native models are built with
``TransformerBridge.boot_native(config)`` and carry the familiar hook names
(``hook_embed``, ``blocks.{i}.hook_resid_post``, ``blocks.{i}.attn.hook_pattern``, ...).
The architecture is the paper's GPT: pre-LayerNorm blocks, learned positions, tanh-GELU MLP
of width 4*d_model, biases everywhere, causal attention scaled by 1/sqrt(d_head). One
difference: the unembedding is untied (the native model has no tying); imported paper
checkpoints copy their tied matrix into both.
"""

from __future__ import annotations

import transformer_lens.model_bridge.sources  # noqa: F401  (attaches TransformerBridge.boot_native)
from transformer_lens import TransformerBridgeConfig
from transformer_lens.model_bridge import TransformerBridge

from workbench.models.configs import GPTConfig
from workbench.task import GraphSpec

__all__ = ["GPTConfig", "build_gpt", "context_length"]


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
    return TransformerBridge.boot_native(bridge_config)
