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

from dataclasses import dataclass

import transformer_lens.model_bridge.sources  # noqa: F401  (attaches TransformerBridge.boot_native)
from transformer_lens import TransformerBridgeConfig
from transformer_lens.model_bridge import TransformerBridge

from workbench.task import GraphSpec


@dataclass
class GPTConfig:
    n_layers: int = 2
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int | None = None  # None -> 4 * d_model
    init_std: float = 0.02  # every weight, positions included (the paper's code left positions at N(0,1))

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"model.d_model={self.d_model} is not divisible by model.n_heads={self.n_heads}")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads


def context_length(spec: GraphSpec) -> int:
    """Longest input any objective feeds: the prompt plus l-1 answer slots."""
    return spec.prompt_length + spec.path_length - 1


def build_gpt(config: GPTConfig, spec: GraphSpec, seed: int) -> TransformerBridge:
    """A freshly initialised GPT for ``spec``'s vocabulary and context, seeded."""
    bridge_config = TransformerBridgeConfig(
        d_model=config.d_model,
        n_layers=config.n_layers,
        n_heads=config.n_heads,
        d_head=config.d_head,
        d_mlp=config.d_mlp or 4 * config.d_model,
        n_ctx=context_length(spec),
        d_vocab=spec.vocab_size,
        act_fn="gelu_new",
        normalization_type="LN",
        eps=1e-5,
        init_mode="gpt2",
        initializer_range=config.init_std,
        seed=seed,
    )
    return TransformerBridge.boot_native(bridge_config)
