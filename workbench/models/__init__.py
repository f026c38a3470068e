"""Model architectures. Each module holds a config dataclass and a ``build_*`` function that
returns a hooked model mapping tokens (batch, pos) to logits (batch, pos, d_vocab)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:
    from workbench.config import RunConfig


def build_model(config: RunConfig, seed: int) -> nn.Module:
    """A freshly initialised model of ``config.arch`` for the run's graph."""
    if config.arch == "gpt":
        from workbench.models.gpt import build_gpt

        return build_gpt(config.model, config.task.graph, seed)
    if config.arch == "mamba":
        from workbench.models.mamba import build_mamba

        return build_mamba(config.model, config.task.graph.vocab_size, seed)
    raise ValueError(f"unknown arch {config.arch!r}")
