"""A study's numbers and figures, computed from ``study.csv`` alone.

``per_seed`` reduces each run to the handful of numbers its page reports (r2 accuracy and
loss, path accuracy, the best goal-arm probe at ``eq`` with the control task and untrained model at the
same hook, the goal node and r2's node at ``eq``, the best patching recovery anywhere and at
``eq``); ``summary`` gives their mean and spread over seeds per (objective, arch, graph,
overrides). The remedies figure plots the accuracies per seed; the depth figure is a heatmap
of r2 accuracy over layers x path length; the solvers figure sets what a probe decodes beside
what patching shows is used, layer by layer, at ``eq`` and at the slot that predicts r2.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from workbench.analyses.patching import without_final_residual

GROUP = ["objective", "arch", "graph", "overrides"]
MEASURES = {  # column of per_seed -> what the page calls it
    "r2_accuracy": "r2 accuracy (teacher-forced)",
    "r2_loss": "r2 loss (teacher-forced)",
    "path_accuracy": "path accuracy (greedy)",
    "arm_probe": "goal-arm probe at eq (best hook)",
    "arm_probe_control": "its control task",
    "arm_probe_untrained": "its untrained model",
    "goal_at_eq": "goal node at eq (best hook)",
    "node_r2_at_eq": "r2 node at eq (best hook)",
    "patching_recovered": "patching recovery (best site before the last block)",
    "patching_at_eq": "patching recovery at eq (best site)",
}
# The probe target a measure needs: a study that does not probe it shows no column for it.
MEASURE_TARGET = {"arm_probe": "arm", "arm_probe_control": "arm", "arm_probe_untrained": "arm", "goal_at_eq": "goal", "node_r2_at_eq": "node_r2"}


def empty_as_blank(table: pd.DataFrame) -> pd.DataFrame:
    """The hook and overrides cells pd.read_csv gives back as NaN, as "" (an all-empty column
    reads as float: made object first)."""
    columns = [c for c in ("hook", "overrides") if c in table]
    return table.astype({c: object for c in columns}).fillna({c: "" for c in columns})


def per_seed(table: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its identity and the measures of ``MEASURES`` (NaN where the study did
    not compute that stage or the value is undefined)."""
    table = empty_as_blank(table)  # as pd.read_csv gives study.csv back: empty cells are NaN
    identity = [c for c in ("study", "objective", "arch", "graph", "preset", "overrides", "seed", "run") if c in table.columns]
    rows = []
    for key, run in table.groupby(identity, sort=False, dropna=False):
        row = dict(zip(identity, key))
        value = run.set_index(["metric", "position", "hook"])["value"]
        row["r2_accuracy"] = value.get(("tf_accuracy", "r2", ""), np.nan)
        row["r2_loss"] = value.get(("tf_loss", "r2", ""), np.nan)
        row["path_accuracy"] = value.get(("greedy_accuracy", "path", ""), np.nan)
        stopped = run[run["metric"] == "stopped_by_rule"]  # only in studies with a plateau rule
        if len(stopped):
            row.update(train_steps=run.loc[run["metric"] == "train_steps", "value"].iloc[0], stopped_by=stopped["position"].iloc[0])
        arm = run[(run["metric"] == "probe_arm") & (run["position"] == "eq")]
        if len(arm):
            best = arm.loc[arm["value"].idxmax()]
            at_hook = run[(run["hook"] == best["hook"]) & (run["position"] == "eq")].set_index("metric")["value"]
            row.update(arm_probe=best["value"], arm_probe_hook=best["hook"], arm_probe_control=at_hook.get("probe_arm_control", np.nan),
                       arm_probe_untrained=at_hook.get("probe_arm_untrained", np.nan))
        for measure, metric in (("goal_at_eq", "probe_goal"), ("node_r2_at_eq", "probe_node_r2")):
            probed = run[(run["metric"] == metric) & (run["position"] == "eq")]
            row[measure] = probed["value"].max() if len(probed) else np.nan
        patched = without_final_residual(run[run["metric"] == "patching_recovered"].dropna(subset=["value"]))
        if len(patched):  # the best site before the last block's output, which restores all or nothing by construction
            best = patched.loc[patched["value"].idxmax()]
            row.update(patching_recovered=best["value"], patching_site=f"{best['hook']} @ {best['position']}")
            at_eq = patched[patched["position"] == "eq"]
            row["patching_at_eq"] = at_eq["value"].max() if len(at_eq) else np.nan
        rows.append(row)
    return pd.DataFrame(rows).reindex(columns=[*identity, *MEASURES, "arm_probe_hook", "patching_site", "train_steps", "stopped_by"])


def summary(seeds: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation and count over seeds of every measure, one row per
    (objective, arch, graph, overrides), in the study's order."""
    stats = seeds.groupby(GROUP, sort=False, dropna=False)[list(MEASURES)].agg(["mean", "std", "count"])
    stats.columns = [f"{measure} {stat}" for measure, stat in stats.columns]
    return stats.reset_index()


STAGE_MEASURES = {
    "evaluate": ("r2_accuracy", "r2_loss", "path_accuracy"),
    "probes": ("arm_probe", "arm_probe_control", "arm_probe_untrained", "goal_at_eq", "node_r2_at_eq"),
    "patching": ("patching_recovered", "patching_at_eq"),
}


def mean_pm(frame: pd.DataFrame, stages: tuple[str, ...], targets: tuple[str, ...] = ("arm", "goal")) -> pd.DataFrame:
    """``summary`` as display strings "0.504 ± 0.004 (3)": mean ± sd over seeds (n seeds),
    for the measures of the study's ``stages`` (probe measures only for the probed
    ``targets``). A measure no seed defines (patching recovery where moving the goal does not
    change r2) reads "undefined"."""
    shown = frame[GROUP].copy()
    measures = [m for stage in stages for m in STAGE_MEASURES[stage] if MEASURE_TARGET.get(m) in (None, *targets)]
    for measure in measures:
        mean, std, count = frame[f"{measure} mean"], frame[f"{measure} std"], frame[f"{measure} count"]
        shown[MEASURES[measure]] = [
            "undefined" if n == 0 else f"{m:.3f}" + ("" if n < 2 else f" ± {s:.3f}") + f" ({n})" for m, s, n in zip(mean, std, count.astype(int))
        ]
    return shown


def plot_remedies(seeds: pd.DataFrame, path: str | Path) -> Path:
    """r2 and path accuracy of every (objective, arch) per graph: one dot per seed, the bar
    at the mean."""
    long = seeds.melt(id_vars=["objective", "arch", "graph", "seed"], value_vars=["r2_accuracy", "path_accuracy"], var_name="measure", value_name="accuracy")
    long["measure"] = long["measure"].map({"r2_accuracy": "r2 (first decision), teacher-forced", "path_accuracy": "whole path, greedy"})
    grid = sns.catplot(data=long, kind="bar", x="objective", y="accuracy", hue="arch", col="graph", row="measure", errorbar=None,
                       alpha=0.5, height=3.2, aspect=1.6, sharex=True, margin_titles=True)
    for (_, graph), ax in grid.axes_dict.items():
        sub = long[(long["graph"] == graph) & (long["measure"] == _)]
        sns.stripplot(data=sub, x="objective", y="accuracy", hue="arch", dodge=True, ax=ax, legend=False, size=4, palette="dark")
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_ylim(0, 1.02)
        ax.tick_params(axis="x", rotation=45)
        plt.setp(ax.get_xticklabels(), ha="right", rotation_mode="anchor")
        ax.set_xlabel("")
        ax.set_ylabel("")
    grid.set_titles(row_template="{row_name}", col_template="{col_name}")
    grid.figure.suptitle("Remedies: accuracy per objective (bars: mean over seeds; dots: seeds; dashed: chance 1/2 for degree 2)", y=1.02)
    for ax in grid.axes[-1]:  # on the bottom row, below the rotated names (a figure-level label overlapped them)
        ax.set_xlabel("objective")
    grid.figure.supylabel("accuracy on held-out graphs")
    grid.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(grid.figure)
    return Path(path)


def depth_cell_notes(frame: pd.DataFrame) -> pd.Series:
    """Per (arch, objective, layers, path_length): how training ended under the plateau rule,
    e.g. "plateau 3k" (every seed stopped by the rule, by 3,000 steps at most), "solved 1k" or
    "cap 8k" (at least one seed reached the step cap: a budget limit, not a capacity one)."""
    def note(cell: pd.DataFrame) -> str:
        steps = f"{cell['train_steps'].max() / 1000:g}k"
        if (cell["stopped_by"] == "cap").any():
            return f"cap {steps}"
        return f"{'solved' if (cell['stopped_by'] == 'solved').all() else 'plateau'} {steps}"
    return frame.groupby(["arch", "objective", "layers", "path_length"])[["train_steps", "stopped_by"]].apply(note)


def plot_depth(seeds: pd.DataFrame, layers: dict[str, int], path_lengths: dict[str, int], path: str | Path) -> Path:
    """Heatmap of r2 accuracy (mean over seeds) over layers x path length, one panel per
    (arch, objective); ``layers`` and ``path_lengths`` map run names to their settings. With a
    plateau rule, each cell also says how its runs ended (``depth_cell_notes``)."""
    frame = seeds.assign(layers=seeds["run"].map(layers), path_length=seeds["run"].map(path_lengths))
    ruled = "stopped_by" in frame and frame["stopped_by"].notna().all()
    notes = depth_cell_notes(frame) if ruled else None
    panels = list(frame.groupby(["arch", "objective"], sort=False))
    columns = min(2, len(panels))
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(max(6.5, 5.2 * columns), 3.6 * rows), squeeze=False)
    for ax, ((arch, objective), panel) in zip(axes.flat, panels):
        grid = panel.pivot_table(index="layers", columns="path_length", values="r2_accuracy", aggfunc="mean").sort_index(ascending=False)
        if ruled:
            text = grid.copy().astype(object)
            for layer in grid.index:
                for length in grid.columns:
                    if not np.isnan(grid.loc[layer, length]):
                        text.loc[layer, length] = f"{grid.loc[layer, length]:.2f}\n{notes[(arch, objective, layer, length)]}"
            sns.heatmap(grid, ax=ax, vmin=0, vmax=1, cmap="viridis", annot=text.fillna("").values, fmt="", annot_kws={"fontsize": 7},
                        cbar_kws={"label": "r2 accuracy"})
        else:
            sns.heatmap(grid, ax=ax, vmin=0, vmax=1, cmap="viridis", annot=True, fmt=".2f", cbar_kws={"label": "r2 accuracy"})
        ax.set_title(f"{arch} / {objective}")
        ax.set_xlabel("path length l (hops from goal to r2: l - 2)")
        ax.set_ylabel("layers")
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    figure.suptitle("Depth: first-decision (r2) accuracy over layers x path length\n(degree 2, mean over seeds; 0.5 = a blind pick "
                    "between the source's two children, below it r2 is not yet known to be one)"
                    + ("\nunder each value: how training ended (plateau: r2 loss stopped falling; solved; cap: step cap reached) "
                       "and the most steps of any seed" if ruled else ""), fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return Path(path)


def plot_hops_by_layers(hops: pd.DataFrame | dict[str, pd.DataFrame], path: str | Path) -> Path:
    """Hops learned against layers, one marker per seed (``findings.blocks.hops_by_layers``'s
    rows), both archs side by side, with the two published depth results as reference lines.
    The marker says how the first hop not learned ended: filled, a plateau (r2's loss had stopped
    falling: this model's limit); hollow, the step cap (the budget's); a triangle, every length
    tried was learned (a lower bound). A dict draws one panel per entry, titled by its key (the
    grid at the presets' rates beside the best of every rate tried), on shared axes."""
    panels = hops if isinstance(hops, dict) else {"": hops}
    every = pd.concat(panels.values(), ignore_index=True)
    archs = sorted(every["arch"].unique())
    layers = sorted(every["layers"].unique())
    top = max(3, int(every["hops_tried"].max()))
    colors = dict(zip(archs, sns.color_palette("colorblind", len(archs))))
    figure, axes = plt.subplots(1, len(panels), figsize=(6.8 + 3.6 * (len(panels) - 1), 4.4), sharey=True, squeeze=False)
    width = 0.32
    span = np.array([min(layers) - 0.5, max(layers) + 0.5])
    for ax, (name, panel) in zip(axes[0], panels.items()):
        for a, arch in enumerate(archs):
            frame = panel[panel["arch"] == arch].sort_values(["layers", "seed"])
            for _, row in frame.iterrows():
                seeds = frame[frame["layers"] == row["layers"]]["seed"].tolist()
                offset = (a - (len(archs) - 1) / 2) * width + (seeds.index(row["seed"]) - (len(seeds) - 1) / 2) * width / 4
                ended = row["next_hop_ended"]
                marker = "^" if ended == "" else "o"
                face = "none" if ended in ("cap", "fixed budget") else colors[arch]
                ax.scatter(row["layers"] + offset, row["hops"], marker=marker, s=46, facecolors=face, edgecolors=colors[arch], linewidths=1.4, zorder=3)
        ax.plot(span, span, color="grey", linestyle="--", linewidth=1)
        ax.axhline(3, color="grey", linestyle=":", linewidth=1)
        ax.set_xticks(layers)
        ax.set_xlim(*span)
        ax.set_xlabel("layers (width 128)")
        if name:
            ax.set_title(name, fontsize=9)
    ax = axes[0][0]
    ax.set_yticks(range(-1, top + 1))
    ax.set_yticklabels(["none", *map(str, range(top + 1))])
    ax.set_ylim(-1.4, top + 0.4)
    ax.set_ylabel("hops learned (r2 accuracy >= 0.9)")
    handles = [*(plt.Line2D([], [], marker="o", linestyle="", color=colors[arch], label=f"{arch} (one marker per seed)") for arch in archs),
               plt.Line2D([], [], color="grey", linestyle="--", linewidth=1, label="one hop per layer (Brinkmann et al. 2024)"),
               plt.Line2D([], [], color="grey", linestyle=":", linewidth=1, label="about three latent hops (depth ceiling, 2604.06427)"),
               plt.Line2D([], [], marker="o", linestyle="", markerfacecolor="none", markeredgecolor="black", label="hollow: the next hop hit the step cap"),
               plt.Line2D([], [], marker="^", linestyle="", color="black", label="triangle: every length tried learned")]
    axes[0][-1].legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    objectives = ", ".join(sorted(every["objective"].unique()))
    figure.suptitle(f"How many hops r2's supervision teaches per layer count ({objectives};\n"
                    f"hops tried up to {int(every['hops_tried'].max())}; filled: the next hop ended on a plateau)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return Path(path)


def solver_lines(table: pd.DataFrame, positions: tuple[str, ...] = ("eq", "r1")) -> pd.DataFrame:
    """The rows the solvers figure draws: the r2 node probe (with its controls) and patching
    recovery at the embedding and every layer's residual stream (``layer``: 0 = embedding),
    at ``positions``, each labelled by objective (and arch, overrides, preset where the study
    has several)."""
    from workbench.probes.activations import hook_layer

    table = empty_as_blank(table)
    keep = table["metric"].str.startswith("probe_node_r2") | (table["metric"] == "patching_recovered")
    residual = (table["hook"] == "hook_embed") | table["hook"].str.fullmatch(r"blocks\.\d+\.hook_resid_post")
    lines = table[keep & residual & table["position"].isin(positions)].copy()
    lines["layer"] = lines["hook"].map(hook_layer)
    varying = [c for c in ("arch", "overrides", "preset") if c in lines.columns and lines[c].nunique() > 1]
    lines["model"] = lines["objective"]
    if varying:
        lines["model"] += " (" + lines[varying].astype(str).agg(lambda row: ", ".join(v for v in row if v), axis=1) + ")"
    return lines


def plot_solvers(table: pd.DataFrame, path: str | Path, positions: tuple[str, ...] = ("eq", "r1")) -> Path:
    """What is decodable against what is used, layer by layer (``solver_lines``): the linear
    probe for r2's node (top row; dashed: the same probe on the untrained model) and the share
    of r2's logit difference that patching the clean activation into a goal-moved run recovers
    (bottom row), at each of ``positions``, per model (lines: mean over seeds; bands: their
    range). Columns: graph x position. From ``study.csv`` alone. The control task is not drawn:
    for a node target its labels are a random regrouping of the node itself, as decodable as
    the node wherever the node is (``probes.targets``), so the untrained model is the control."""
    lines = solver_lines(table, positions)
    rows = [("probe_node_r2", "decodable: r2 node probe accuracy"), ("patching_recovered", "used: share of r2's logit\ndifference a goal patch recovers")]
    columns = [(graph, position) for graph in lines["graph"].unique() for position in positions]
    figure, axes = plt.subplots(len(rows), max(1, len(columns)), figsize=(4.2 * max(1, len(columns)), 3.4 * len(rows)), squeeze=False, sharey="row")
    models = list(lines["model"].unique())
    palette = dict(zip(models, sns.color_palette("tab10" if len(models) <= 10 else "husl", len(models))))
    for i, (metric, label) in enumerate(rows):
        values = lines[lines["metric"].str.startswith(metric)]["value"].dropna()
        low, high = min(-0.02, values.min() if len(values) else 0), max(1.02, values.max() if len(values) else 1)
        for j, (graph, position) in enumerate(columns):
            ax = axes[i, j]
            at = lines[(lines["graph"] == graph) & (lines["position"] == position)]
            for suffix, style in (("", "-"), ("_untrained", "--")) if metric.startswith("probe") else (("", "-"),):
                drawn = at[at["metric"] == metric + suffix].dropna(subset=["value"])
                if len(drawn):
                    sns.lineplot(data=drawn, x="layer", y="value", hue="model", palette=palette, estimator="mean", errorbar=("pi", 100),
                                 linestyle=style, marker="o" if not suffix else None, ax=ax, legend=bool(i == 0 and j == 0 and not suffix))
            ax.set_ylim(low, high)
            ax.set_title(f"{graph}, at {'=' if position == 'eq' else 'slot ' + position}", fontsize=10)
            ax.set_xlabel("layer (0 = embedding)")
            ax.set_ylabel(label if j == 0 else "")
            ax.xaxis.get_major_locator().set_params(integer=True)
    if axes[0, 0].get_legend():
        sns.move_legend(axes[0, 0], "upper left", title="model (dashed: the same\nprobe, untrained model)", fontsize=8, title_fontsize=8)
    figure.suptitle("Decodable vs used, by layer and position. Top: a linear probe for r2's node.\n"
                    "Bottom: the goal moved to another arm, one clean activation put back.\nLines: mean over seeds; bands: their range.")
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.3 / figure.get_figheight()))
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return Path(path)


def plot_r2_curves(curves: pd.DataFrame, path: str | Path) -> Path:
    """How each run learned the first decision: held-out r2 accuracy and loss over training
    steps, one line per seed, one column per model (``curves.csv`` of a published study)."""
    curves = curves.fillna({"overrides": ""})
    held_out = curves[(curves["split"] == "test") & (curves["position"] == "r2") & curves["metric"].isin(["tf_accuracy", "tf_loss"])].copy()
    held_out["model"] = held_out["arch"] + " " + held_out["objective"] + " " + held_out["graph"]
    held_out["measure"] = held_out["metric"].map({"tf_accuracy": "r2 accuracy (teacher-forced)", "tf_loss": "r2 loss (teacher-forced)"})
    held_out["seed"] = held_out["seed"].astype(str)
    grid = sns.relplot(held_out, x="step", y="value", hue="seed", row="measure", col="model", kind="line", marker="o", markersize=3,
                       height=2.8, aspect=1.6, facet_kws={"sharey": "row", "margin_titles": True})
    for (measure, _), ax in grid.axes_dict.items():
        if measure.startswith("r2 accuracy"):
            ax.axhline(0.5, color="grey", lw=0.8, ls="--")
            ax.set_ylim(0, 1.02)
        else:
            ax.axhline(np.log(2), color="grey", lw=0.8, ls=":")
            ax.set_ylim(bottom=0)
    grid.set_titles(row_template="{row_name}", col_template="{col_name}")
    grid.set_axis_labels("training step", "")
    grid.figure.suptitle("How the first decision was learned, on held-out graphs (one line per seed; dashed: chance 1/2; dotted: ln 2)", y=1.02)
    grid.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(grid.figure)
    return Path(path)


def lr_text(lr: float) -> str:
    """A learning rate as the study files write it: 5e-3, 2.5e-3."""
    mantissa, exponent = f"{lr:e}".split("e")
    return f"{float(mantissa):g}e{int(exponent)}"


def plot_r2_by_lr(curves: pd.DataFrame, path: str | Path) -> Path:
    """The same cells trained at several peak learning rates: held-out r2 accuracy over training
    steps, one panel per (layers, seed), one line per learning rate (``curves.csv`` rows with
    ``layers`` and ``lr`` columns added; ``findings.blocks.depth_lr_curves``). A line ends where
    the plateau rule stopped its run."""
    held_out = curves[(curves["split"] == "test") & (curves["position"] == "r2") & (curves["metric"] == "tf_accuracy")].copy()
    held_out["peak lr"] = held_out["lr"].map(lr_text)
    order = [lr_text(lr) for lr in sorted(held_out["lr"].unique(), reverse=True)]
    arch, objective, graph = (", ".join(sorted(held_out[column].unique())) for column in ("arch", "objective", "graph"))
    grid = sns.relplot(held_out, x="step", y="value", hue="peak lr", hue_order=order, row="layers", col="seed", kind="line",
                       marker="o", markersize=3, height=2.5, aspect=1.4, palette="colorblind",
                       facet_kws={"sharey": True, "margin_titles": True})
    for ax in grid.axes.flat:
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.axhline(0.9, color="grey", lw=0.8, ls=":")
        ax.set_ylim(0, 1.02)
    grid.set_titles(row_template="layers: {row_name}", col_template="seed {col_name}")
    grid.set_axis_labels("training step", "r2 accuracy (held out)")
    rates = {2: "two", 3: "three", 4: "four"}.get(len(order), str(len(order)))
    grid.figure.suptitle(f"{arch} / {objective} on {graph}: r2 over training at {rates} peak learning rates\n"
                         "(dashed: chance 1/2; dotted: 0.9, learned; a line ends where the plateau rule stopped its run)", y=1.0, va="bottom")
    grid.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(grid.figure)
    return Path(path)
