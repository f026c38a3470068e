"""Representations across objectives: linear CKA between every pair of layers of two models.

Linear CKA (Kornblith et al., 2019) of two representations X (n, p) and Y (n, q) of the same
n inputs, columns centred:  CKA = |Y^T X|_F^2 / (|X^T X|_F |Y^T Y|_F).  It is 1 for
representations equal up to rotation and isotropic scaling, and invariant to both, so it
compares models of different width or architecture.

Inputs are the same for every model: the prompt, read at ``eq`` (the '=' token, before any
answer token, so no objective's answer slots can differ). Comparing two seeds of one
objective gives the reference level: how similar two runs of the *same* recipe are.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from workbench.checkpoint import Checkpoint
from workbench.probes.activations import RESIDUAL_HOOKS, collect_activations, expand_hooks, hook_layer
from workbench.probes.sweep import hook_site
from workbench.task import PathStarData


def linear_cka(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> float:
    """Linear CKA of (n, p) and (n, q) representations of the same n inputs."""
    x = torch.as_tensor(x, dtype=torch.float64)
    y = torch.as_tensor(y, dtype=torch.float64)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA needs the same inputs: {x.shape[0]} rows vs {y.shape[0]}")
    x, y = x - x.mean(0), y - y.mean(0)
    cross = (y.T @ x).pow(2).sum()
    norm = (x.T @ x).pow(2).sum().sqrt() * (y.T @ y).pow(2).sum().sqrt()
    return float(cross / norm) if norm > 0 else float("nan")


def _layers(checkpoint: Checkpoint, data: PathStarData, position: str, cache_dir: str | Path | None) -> dict[str, torch.Tensor]:
    hooks = expand_hooks(checkpoint.model, list(RESIDUAL_HOOKS))
    acts = collect_activations(checkpoint.model, data, checkpoint.objective, hooks, [position], cache_dir=cache_dir)  # on the model's device
    return {hook: acts[hook, position] for hook in hooks}


def layer_cka(a: Checkpoint, b: Checkpoint, data: PathStarData, position: str = "eq", cache_dir: str | Path | None = None) -> pd.DataFrame:
    """Rows (layer_a, layer_b, hook_a, hook_b, cka) for every pair of residual-stream layers."""
    if position != "eq":
        raise ValueError("CKA compares models on the same inputs: only position 'eq' (before any answer slot) is shared by every objective")
    acts_a, acts_b = _layers(a, data, position, cache_dir), _layers(b, data, position, cache_dir)
    rows = []
    for hook_a, x in acts_a.items():
        for hook_b, y in acts_b.items():
            rows.append({"layer_a": hook_layer(hook_a), "layer_b": hook_layer(hook_b), "site_a": hook_site(hook_a), "site_b": hook_site(hook_b), "cka": linear_cka(x, y)})
    return pd.DataFrame(rows)


def plot_cka(frame: pd.DataFrame, path: str | Path) -> Path:
    """One layer x layer heatmap per pair of checkpoints (``pair`` column names them)."""
    pairs = list(dict.fromkeys(frame["pair"]))
    columns = min(4, len(pairs))
    rows_n = -(-len(pairs) // columns)
    fig, axes = plt.subplots(rows_n, columns, figsize=(3.3 * columns + 1, 3.0 * rows_n + 0.6), squeeze=False)
    for ax, pair in zip(axes.flat, pairs):
        panel = frame[frame["pair"] == pair]
        grid = panel.pivot_table(index="layer_a", columns="layer_b", values="cka").sort_index(ascending=False)
        sns.heatmap(grid, vmin=0, vmax=1, cmap="viridis", annot=True, fmt=".2f", ax=ax, cbar=False, annot_kws={"fontsize": 8})
        first = panel.iloc[0]
        ax.set_title(pair, fontsize=8)
        ax.set_ylabel(f"layer of {first['model_a']}", fontsize=8)
        ax.set_xlabel(f"layer of {first['model_b']}", fontsize=8)
    for ax in list(axes.flat)[len(pairs):]:
        ax.axis("off")
    fig.suptitle("Linear CKA between layers of two models at '=' on the same prompts (1 = same up to rotation and scale)\n"
                 "(the embedding of '=' is one constant vector, so its CKA is undefined and not shown)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
