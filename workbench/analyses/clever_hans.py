"""The Clever Hans cheat, measured three ways.

(a) ``accuracy_gap``: teacher-forced minus free-running (greedy) accuracy per answer
    position. A model that only follows the given previous token is right under teacher
    forcing and wrong once its own first decision was wrong.
(b) ``cheat_test``: feed, as the objective's answer inputs, the answer along a *wrong* arm
    (the prompt, goal included, is unchanged) and score each later prediction: does it
    ``follow`` the given wrong arm, ``return`` to the goal arm, or do ``other``? Only
    predictions made after a wrong token was fed, and where the two arms' tokens differ,
    are scored. The test needs answer tokens as inputs; for an objective that feeds none
    (teacherless) there is nothing to cheat with and no rows are returned.
(c) ``edge_lookup_attention``: for every GPT head, the attention mass from the position
    that predicts answer token k onto the prompt tokens of the edge between answer tokens
    k-1 and k (the edge the cheat looks up): its source and target node and the separator
    after it ('|', or '/' after the last edge), where a first layer can have gathered the
    pair. Shown per answer position predicted, as a (position, layer) x head heatmap.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch
from torch import nn

from workbench.figures import save_grid, with_panel
from workbench.evaluate import model_device
from workbench.objectives import Objective, answer_logits
from workbench.task import PathStarData, arm_paths, goal_arm_rank


def accuracy_gap(results: pd.DataFrame) -> pd.DataFrame:
    """Per (identity, position): tf_accuracy, greedy_accuracy and their gap, from evaluation rows."""
    identity = [c for c in results.columns if c not in ("position", "role", "metric", "value", "n_graphs")]
    wide = results[results["metric"].isin(["tf_accuracy", "greedy_accuracy"])].pivot_table(
        index=[*identity, "position"], columns="metric", values="value", sort=False
    ).reset_index()
    wide["gap"] = wide["tf_accuracy"] - wide["greedy_accuracy"]
    return wide


def wrong_arm_path(data: PathStarData) -> torch.Tensor:
    """(batch, l) the path along the first arm, in prompt order, that does not end at the goal."""
    arms, goal = arm_paths(data), goal_arm_rank(data)
    wrong = (goal == 0).long()  # arm 0 unless arm 0 is the goal arm
    return arms[torch.arange(len(data)), wrong]


@torch.no_grad()
def cheat_test(model: nn.Module, data: PathStarData, objective: Objective, batch_size: int = 2_000) -> pd.DataFrame:
    """Rows (position, outcome in follow|return|other, rate, n_scored); empty if nothing is fed."""
    if not objective.feeds_answer:
        return pd.DataFrame(columns=["position", "outcome", "rate", "n_scored"])
    spec = data.spec
    names = objective.emitted_positions(spec.path_length)
    predictions, true_all, wrong_all = [], [], []
    for start in range(0, len(data), batch_size):
        chunk = data[start : start + batch_size]
        wrong = objective.targets(wrong_arm_path(chunk))
        inputs = objective.inputs(chunk.prompt_tokens(), wrong, spec)
        predictions.append(answer_logits(model(inputs.to(model_device(model))), spec).argmax(-1).cpu())
        true_all.append(objective.targets(chunk.answer_tokens()))
        wrong_all.append(wrong)
    pred, true, wrong = torch.cat(predictions), torch.cat(true_all), torch.cat(wrong_all)
    rows = []
    for e in range(1, spec.path_length):
        fed_wrong = (wrong[:, :e] != true[:, :e]).any(dim=1)  # a wrong token is among the inputs
        scored = fed_wrong & (wrong[:, e] != true[:, e])
        if not scored.any():
            continue
        follow = (pred[scored, e] == wrong[scored, e]).float().mean().item()
        back = (pred[scored, e] == true[scored, e]).float().mean().item()
        n = int(scored.sum())
        for outcome, rate in (("follow", follow), ("return", back), ("other", 1 - follow - back)):
            rows.append({"position": names[e], "outcome": outcome, "rate": rate, "n_scored": n})
    return pd.DataFrame(rows)


@torch.no_grad()
def edge_lookup_attention(model: nn.Module, data: PathStarData, objective: Objective) -> pd.DataFrame:
    """Rows (layer, head, position, onto in edge_source|edge_target|edge_separator, mass, uniform).

    ``position`` names the answer token predicted there (path order); ``uniform`` is the
    mass one token would get from uniform attention over the causal prefix.
    """
    spec = data.spec
    names = objective.emitted_positions(spec.path_length)
    targets = objective.targets(data.answer_tokens())
    inputs = objective.inputs(data.prompt_tokens(), targets, spec)
    pattern_hooks = [name for name in model.hook_dict if name.endswith("attn.hook_pattern")]
    if not pattern_hooks:
        raise ValueError(f"{type(model).__name__} has no attention patterns (attn.hook_pattern): edge lookup is for attention models")
    _, cache = model.run_with_cache(inputs.to(model_device(model)), names_filter=lambda name: name in pattern_hooks)
    rows = []
    batch = torch.arange(len(data))
    edges = data.edges.sort(dim=2).values  # each edge as an unordered pair
    for e in range(1, spec.path_length):
        query = spec.eq_position + e  # predicts emitted token e
        pair = torch.stack([targets[:, e - 1], targets[:, e]], dim=1).sort(dim=1).values  # the edge, either direction
        slot = (edges == pair[:, None, :]).all(dim=2).float().argmax(dim=1)  # its prompt slot
        for layer, hook in enumerate(pattern_hooks):
            attn = cache[hook][:, :, query].float().cpu()  # (batch, head, key)
            for onto, offset in (("edge_source", 0), ("edge_target", 1), ("edge_separator", 2)):
                mass = attn[batch, :, 3 * slot + offset].mean(dim=0)  # (head,)
                for head, value in enumerate(mass.tolist()):
                    rows.append({"layer": layer, "head": head, "position": names[e], "onto": onto, "mass": value, "uniform": 1 / (query + 1)})
    return pd.DataFrame(rows)


def plot_cheat_test(frame: pd.DataFrame, path: str | Path) -> Path:
    """Stacked rates per position, one panel per (arch, objective)."""
    panels = frame.groupby(["arch", "objective"], sort=False)
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels) + 1, 3.6), squeeze=False, sharey=True)
    colors = {"follow": "#d62728", "return": "#2ca02c", "other": "#7f7f7f"}
    for ax, ((arch, objective), panel) in zip(axes[0], panels):
        wide = panel.pivot_table(index="position", columns="outcome", values="rate", sort=False).reindex(columns=list(colors))
        wide.plot.bar(stacked=True, ax=ax, color=[colors[c] for c in wide.columns], legend=ax is axes[0][-1], rot=0)
        ax.set_title(f"{arch} / {objective}", fontsize=10)
        ax.set_xlabel("answer position predicted")
        ax.set_ylabel("share of predictions")
        ax.set_ylim(0, 1)
    if axes[0][-1].get_legend():
        axes[0][-1].legend(title="the model...", labels=["follows the fed wrong arm", "returns to the goal arm", "does something else"], fontsize=8, loc="lower right")
    fig.suptitle("Cheat test: a wrong arm is fed as the answer so far (prompt and goal unchanged)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def edge_lookup_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows (arch, objective, position, layer, head, mass, uniform): the attention on the whole
    looked-up edge (its three tokens) per answer position predicted, in path order.

    Kept per position, not averaged over some: the objectives predict different positions
    with a lookup (next_token r2..rl, reverse r1..r(l-1)), and an average over a set of
    named positions compares different tokens and numbers of them.
    """
    keys = ["arch", "objective", "position", "layer", "head"]
    summary = frame.groupby(keys, sort=False).agg(mass=("mass", "sum"), uniform=("uniform", "first")).reset_index()
    summary["uniform"] *= 3  # three tokens per edge
    model = summary.groupby(["arch", "objective"], sort=False).ngroup()  # models keep the frame's order
    order = dict(_model=model, _position=summary["position"].str[1:].astype(int))
    return summary.assign(**order).sort_values([*order, "layer", "head"]).drop(columns=list(order)).reset_index(drop=True)


def plot_edge_lookup(frame: pd.DataFrame, path: str | Path) -> Path:
    """Per checkpoint a heatmap of the mass on the looked-up edge (its three tokens): one row
    block per answer position predicted (layers within it), heads across; every panel has the
    same rows, so each model is compared with another at the same position (blank: the
    objective predicts that position without a lookup)."""
    summary = edge_lookup_summary(frame)
    rows = sorted(set(zip(summary["position"], summary["layer"])), key=lambda row: (int(row[0][1:]), row[1]))
    panels = summary.groupby(["arch", "objective"], sort=False)
    fig, axes = plt.subplots(1, len(panels), figsize=(3.0 * len(panels) + 1.5, 0.32 * len(rows) + 2.2), squeeze=False)
    for ax, ((arch, objective), panel) in zip(axes[0], panels):
        table = panel.pivot_table(index=["position", "layer"], columns="head", values="mass", sort=False).reindex(rows)
        table.index = [f"{position}  layer {layer}" for position, layer in rows]
        sns.heatmap(table, vmin=0, vmax=1, cmap="magma", annot=True, fmt=".2f", annot_kws={"fontsize": 7}, ax=ax,
                    cbar=ax is axes[0][-1], cbar_kws={"label": "attention mass on the edge"})
        for boundary in range(0, len(rows), summary["layer"].nunique()):
            ax.axhline(boundary, color="white", linewidth=1.5)
        ax.set_title(f"{arch} / {objective}", fontsize=10)
        ax.set_xlabel("head")
        ax.set_ylabel("answer position predicted, layer" if ax is axes[0][0] else "")
    low, high = summary["uniform"].min(), summary["uniform"].max()
    fig.suptitle("Edge lookup per answer position: attention from where it is predicted onto the edge\n"
                 f"joining it and the token fed there (source, target, separator; uniform: {low:.2f}-{high:.2f})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_accuracy_gap(frame: pd.DataFrame, path: str | Path) -> Path:
    """Teacher-forced vs greedy accuracy per position, one panel per (arch, objective)."""
    long = frame.melt(id_vars=["arch", "objective", "position"], value_vars=["tf_accuracy", "greedy_accuracy"], var_name="decoding", value_name="accuracy")
    long["decoding"] = long["decoding"].map({"tf_accuracy": "teacher-forced", "greedy_accuracy": "free-running (greedy)"})
    grid = sns.catplot(with_panel(long), x="position", y="accuracy", hue="decoding", col="panel", kind="bar", height=2.8, aspect=1.0, col_wrap=4)
    grid.set_titles("{col_name}")
    return save_grid(grid, path, "answer position (path is the whole answer)", "held-out accuracy",
                     "Teacher-forced vs free-running accuracy: the gap is what teacher forcing hides")
