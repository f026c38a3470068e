"""A run config's freshly initialised model and objective parts: the one place that turns a
config into modules (training, loading, probes' untrained controls and the shipped twins all
build here, so "the same config and seed" means the same weights everywhere).
"""

from __future__ import annotations

import torch
from torch import nn

from workbench.config import RunConfig, objective_of


def build_model(config: RunConfig, seed: int) -> nn.Module:
    """A freshly initialised model of ``config.arch`` for the run's graph; its vocabulary is
    the task's plus the objective's own tokens (``Objective.extra_tokens``: none for most, so
    their weights are those of every earlier version)."""
    objective = objective_of(config)
    if config.arch not in objective.archs:
        raise ValueError(f"objective {objective.name!r} does not apply to arch {config.arch!r} (it needs {objective.attention} attention; applies to {', '.join(objective.archs)})")
    if config.arch == "gpt":
        from workbench.models.gpt import build_gpt

        spec = config.task.graph
        return build_gpt(config.model, spec, seed, objective.attention, objective.vocab_size(spec), objective.slot_count(spec.path_length))
    if config.arch == "mamba":
        from workbench.models.mamba import build_mamba

        return build_mamba(config.model, objective.vocab_size(config.task.graph), seed)
    raise ValueError(f"unknown arch {config.arch!r}")


def build_model_and_parts(config: RunConfig, device: str | torch.device = "cpu") -> tuple[nn.Module, nn.Module | None]:
    """A freshly initialised model and objective parts, seeded by the run's seed."""
    model = build_model(config, seed=config.train.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.train.seed + 7_919)
        parts = objective_of(config).build_run_parts(model, config.task.graph, lambda: build_model(config, seed=config.train.seed + 1))
    return model.to(device), (parts.to(device) if parts is not None else None)
