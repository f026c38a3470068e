"""Loss of first-token supervision: what signal reaches the first decision r2?

(a) ``loss_curves``: per-position training loss over training, from ``metrics.jsonl``. Every
    position's loss is logged, also where the objective puts no loss on it.
(b) ``gradient_shares``: at a checkpoint, on one of the objective's own training batches,
    the gradient of each answer position's mean cross-entropy (its norm, and the cosine
    between r2's and the sum of the later positions' r3..rl) and the gradient g_j of each
    term of the training loss (``Objective.loss``: the trained positions with their weights,
    and auxiliary terms such as mtp's heads). Each term's ``share`` of the update is
    <g_j, g> / |g|^2 with g = sum_j g_j, the gradient of the loss itself, so the shares sum
    to 1. Along snapshots it shows when r2 stops receiving any of the update.
(c) the ``first_decision_only`` objective (``workbench.objectives``) is the experiment: loss
    on r2 alone, same inputs as next_token.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import seaborn as sns
import torch
import torch.nn.functional as F
from torch import nn

from workbench.figures import save_grid, with_panel
from workbench.evaluate import metrics_frame
from workbench.objectives import Objective, step_generator
from workbench.task import PathStarData


def loss_curves(metrics: list[dict]) -> pd.DataFrame:
    """Rows (step, split, position, loss): training loss and held-out teacher-forced loss."""
    frame = metrics_frame(metrics)
    keep = ((frame["split"] == "train") & (frame["metric"] == "loss")) | ((frame["split"] == "test") & (frame["metric"] == "tf_loss"))
    return frame[keep & (frame["position"] != "path")].rename(columns={"value": "loss"}).drop(columns="metric").reset_index(drop=True)


def _flat_grad(value: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params)])


def position_gradients(
    model: nn.Module, data: PathStarData, objective: Objective, parts: nn.Module | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Flat gradients over the model's and the objective's parameters, on one training batch
    of ``data`` (the objective's own, drawn with a fixed generator):
    ({r1..rl: gradient of that position's mean cross-entropy},
     {term: gradient of each term of the training loss}; the terms sum to the loss)."""
    spec = data.spec
    params = [p for p in model.parameters() if p.requires_grad] + (list(parts.parameters()) if parts is not None else [])
    device = params[0].device
    batch = {k: v.to(device) for k, v in objective.training_batch(data, step_generator(0, 0)).items()}
    was_training = model.training
    model.eval()  # no dropout here, but no side effects either
    with torch.enable_grad():
        out = objective.loss(model, parts, batch, spec)
        positions = {p: _flat_grad(out.position_loss[k], params) for k, p in enumerate(spec.positions)}
        terms = {name: _flat_grad(value, params) for name, value in out.terms.items()}
    model.train(was_training)
    return positions, terms


def gradient_shares(model: nn.Module, data: PathStarData, objective: Objective, parts: nn.Module | None = None) -> pd.DataFrame:
    """Rows (position, metric in grad_norm|share|cosine_r2_later, value); see the module docstring.

    ``share`` is given for every term of the training loss (trained answer positions and the
    objective's auxiliary terms, e.g. ``head2`` or ``bow``), 0 for untrained positions."""
    spec = data.spec
    positions, terms = position_gradients(model, data, objective, parts)
    total = sum(terms.values())
    total_sq = total.pow(2).sum().clamp_min(1e-30)
    rows = []
    for position, g in positions.items():
        rows.append({"position": position, "metric": "grad_norm", "value": g.norm().item()})
        if position not in terms:
            rows.append({"position": position, "metric": "share", "value": 0.0})
    for name, g in terms.items():
        rows.append({"position": name, "metric": "share", "value": (g @ total / total_sq).item()})
    later = sum(positions[p] for p in spec.positions[2:])
    cosine = F.cosine_similarity(positions["r2"], later, dim=0).item()
    rows.append({"position": "r2", "metric": "cosine_r2_later", "value": cosine})
    return pd.DataFrame(rows)


def plot_loss_curves(frame: pd.DataFrame, path: str | Path, degree: int | None = None) -> Path:
    """Training loss per answer position over steps, one panel per (arch, objective).

    Each panel's dotted line is ln d of its graph, the loss of guessing r2 among the source's
    d arms: from the frame's ``degree`` column when it has one, else from ``degree`` (the
    graph of every panel); with neither, no line is drawn rather than a wrong one.
    """
    train = with_panel(frame[frame["split"] == "train"])
    grid = sns.relplot(train, x="step", y="loss", hue="position", col="panel", kind="line", col_wrap=4, height=2.8, aspect=1.1, marker="o", markersize=3)
    levels = loss_reference_levels(train, degree)
    for panel, ax in grid.axes_dict.items():
        if panel in levels:
            ax.axhline(levels[panel], color="grey", linestyle=":", linewidth=1)
        ax.set_yscale("symlog", linthresh=0.01)
        ax.set_ylim(bottom=0)
    grid.set_titles("{col_name}")
    return save_grid(grid, path, "training step", "training loss (dotted: ln d, chance at r2)" if levels else "training loss",
                     "Per-position training loss: later tokens are fitted, r2 stays at ln d (logged also where not trained)")


def loss_reference_levels(frame: pd.DataFrame, degree: int | None = None) -> dict[str, float]:
    """{panel: ln d} for the panels of ``frame`` (as ``with_panel`` names them); see ``plot_loss_curves``."""
    if "degree" in frame.columns:
        degrees = frame.groupby("panel")["degree"].unique()
        mixed = degrees[degrees.map(len) > 1]
        if len(mixed):
            raise ValueError(f"loss curves: panel {mixed.index[0]!r} mixes graphs of degree {sorted(int(d) for d in mixed.iloc[0])}")
        return {panel: math.log(int(d[0])) for panel, d in degrees.items()}
    if degree is None:
        return {}
    return {panel: math.log(degree) for panel in frame["panel"].unique()}


def plot_gradient_shares(frame: pd.DataFrame, path: str | Path) -> Path:
    """Share of the update per position over training snapshots, one panel per (arch, objective)."""
    shares = with_panel(frame[frame["metric"] == "share"])
    grid = sns.relplot(shares, x="step", y="value", hue="position", col="panel", kind="line", col_wrap=4, height=2.8, aspect=1.1, marker="o", markersize=4)
    grid.set_titles("{col_name}")
    return save_grid(grid, path, "training step (snapshot)", "share of the gradient <g_k, g>/|g|^2",
                     "Which answer positions the training gradient comes from (shares of trained positions sum to 1)")
