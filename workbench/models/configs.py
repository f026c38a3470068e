"""The model configs, kept apart from the models so that reading a config (the CLI's parser,
``workbench.config``) does not import torch or TransformerLens."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar


def _at_least(field_name: str, value: int, low: int) -> None:
    if value < low:
        raise ValueError(f"model.{field_name}={value!r}: expected a value >= {low}")


@dataclass
class GPTConfig:
    n_layers: int = 2
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int | None = None  # None -> 4 * d_model
    init_std: float = 0.02  # every weight, positions included (the paper's code left positions at N(0,1))
    # Training's forward traced by torch.compile (gpt.compile_training). Off by default: on the
    # 2-core CPUs measured it is no faster than eager (benchmarks/README.md); not part of a run's
    # identity (it changes the time and the rounding, not the function).
    compile: bool = False
    # Fields added after checkpoints were first saved: a config.json without one meant the
    # default (a run saved before ``compile`` trained eager); config._build accepts it missing.
    SAVED_WITHOUT: ClassVar[tuple[str, ...]] = ("compile",)

    def __post_init__(self) -> None:
        for name in ("n_layers", "d_model", "n_heads"):
            _at_least(name, getattr(self, name), 1)
        if self.d_model % self.n_heads:
            raise ValueError(f"model.d_model={self.d_model} is not divisible by model.n_heads={self.n_heads}")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads



SCANS = ("torch", "compiled", "cpp", "mamba_ssm")


@dataclass
class MambaConfig:
    n_layers: int = 2
    d_model: int = 128
    d_state: int = 16
    expand: int = 2
    d_conv: int = 4
    dt_rank: int | None = None  # None -> ceil(d_model / 16), as mamba-ssm
    tie_embeddings: bool = True
    init_std: float = 0.02  # token embedding
    norm_eps: float = 1e-5
    # cpp (a C++ CPU kernel, built on first use; on a GPU tensor it runs "compiled") | torch (eager
    # loop) | compiled (the loop's steps fused by torch.compile) | mamba_ssm (CUDA kernels)
    scan: str = "cpp"

    def __post_init__(self) -> None:
        for name in ("n_layers", "d_model", "d_state", "expand", "d_conv"):
            _at_least(name, getattr(self, name), 1)
        if self.scan not in SCANS:
            raise ValueError(f"model.scan={self.scan!r}: expected one of {SCANS}")

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def resolved_dt_rank(self) -> int:
        return self.dt_rank or math.ceil(self.d_model / 16)
