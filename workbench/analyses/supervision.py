"""Loss of first-token supervision: what signal reaches the first decision r2?

(a) ``loss_curves``: per-position training loss over training, from ``metrics.jsonl``. Every
    position's loss is logged, also where the objective puts no loss on it.
(b) ``gradient_shares``: at a checkpoint, the gradient g_k of each answer position's mean
    loss with respect to all parameters. Reported per position: its norm; its ``share`` of
    the total update, <g_k, g> / |g|^2 with g = sum_k g_k over the positions the objective
    trains (the shares of those positions sum to 1); and the cosine between r2's gradient and
    the sum of the later positions' (r3..rl). Along snapshots it shows when r2 stops
    receiving any of the update.
(c) the ``first_decision_only`` objective (``workbench.objectives``) is the experiment: loss
    on r2 alone, same inputs as next_token.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from workbench.analyses.figures import save_grid, with_panel  # noqa: E402
from workbench.evaluate import metrics_frame  # noqa: E402
from workbench.objectives import Objective, answer_logits  # noqa: E402
from workbench.task import PathStarData  # noqa: E402


def loss_curves(metrics: list[dict]) -> pd.DataFrame:
    """Rows (step, split, position, loss): training loss and held-out teacher-forced loss."""
    frame = metrics_frame(metrics)
    keep = ((frame["split"] == "train") & (frame["metric"] == "loss")) | ((frame["split"] == "test") & (frame["metric"] == "tf_loss"))
    return frame[keep & (frame["position"] != "path")].rename(columns={"value": "loss"}).drop(columns="metric").reset_index(drop=True)


def position_gradients(model: nn.Module, data: PathStarData, objective: Objective) -> dict[str, torch.Tensor]:
    """{r1..rl: flat gradient of that position's mean teacher-forced loss over ``data``}."""
    spec = data.spec
    params = [p for p in model.parameters() if p.requires_grad]
    device = params[0].device
    targets = objective.targets(data.answer_tokens()).to(device)
    inputs = objective.inputs(data.prompt_tokens().to(device), targets, spec)
    was_training = model.training
    model.eval()  # no dropout here, but no side effects either
    logits = answer_logits(model(inputs), spec).float()
    losses = objective.to_path_order(F.cross_entropy(logits.transpose(1, 2), targets, reduction="none").mean(0)[None])[0]
    grads = {}
    for k, position in enumerate(spec.positions):
        g = torch.autograd.grad(losses[k], params, retain_graph=k < spec.path_length - 1, allow_unused=True)
        grads[position] = torch.cat([(x if x is not None else torch.zeros_like(p)).flatten() for x, p in zip(g, params)])
    model.train(was_training)
    return grads


def gradient_shares(model: nn.Module, data: PathStarData, objective: Objective) -> pd.DataFrame:
    """Rows (position, metric in grad_norm|share|cosine_r2_later, value); see the module docstring."""
    spec = data.spec
    grads = position_gradients(model, data, objective)
    trained = objective.to_path_order(objective.loss_mask(spec)[None])[0].tolist()
    total = sum(g for g, on in zip(grads.values(), trained) if on)
    total_sq = total.pow(2).sum().clamp_min(1e-30)
    rows = []
    for (position, g), on in zip(grads.items(), trained):
        rows.append({"position": position, "metric": "grad_norm", "value": g.norm().item()})
        rows.append({"position": position, "metric": "share", "value": (g @ total / total_sq).item() if on else 0.0})
    later = sum(grads[p] for p in spec.positions[2:])
    cosine = F.cosine_similarity(grads["r2"], later, dim=0).item()
    rows.append({"position": "r2", "metric": "cosine_r2_later", "value": cosine})
    return pd.DataFrame(rows)


def plot_loss_curves(frame: pd.DataFrame, path: str | Path) -> Path:
    """Training loss per answer position over steps, one panel per (arch, objective)."""
    train = with_panel(frame[frame["split"] == "train"])
    grid = sns.relplot(train, x="step", y="loss", hue="position", col="panel", kind="line", col_wrap=4, height=2.8, aspect=1.1, marker="o", markersize=3)
    for ax in grid.axes.flat:
        ax.axhline(0.6931, color="grey", linestyle=":", linewidth=1)
        ax.set_yscale("symlog", linthresh=0.01)
        ax.set_ylim(bottom=0)
    grid.set_titles("{col_name}")
    return save_grid(grid, path, "training step", "training loss (dotted: ln 2)",
                     "Per-position training loss: later tokens are fitted, r2 stays at ln d (logged also where not trained)")


def plot_gradient_shares(frame: pd.DataFrame, path: str | Path) -> Path:
    """Share of the update per position over training snapshots, one panel per (arch, objective)."""
    shares = with_panel(frame[frame["metric"] == "share"])
    grid = sns.relplot(shares, x="step", y="value", hue="position", col="panel", kind="line", col_wrap=4, height=2.8, aspect=1.1, marker="o", markersize=4)
    grid.set_titles("{col_name}")
    return save_grid(grid, path, "training step (snapshot)", "share of the gradient <g_k, g>/|g|^2",
                     "Which answer positions the training gradient comes from (shares of trained positions sum to 1)")
