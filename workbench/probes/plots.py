"""One heatmap per probe target: layer x position, one panel per checkpoint.

Each cell shows the probe's held-out accuracy; beneath it, in brackets, the accuracy of the
same probe on the untrained model. The title says what the target is and its chance level,
so the figure reads without the code.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

TARGET_TITLES = {
    "arm": "goal arm (which of the source's edges starts it)",
    "goal": "goal node (given in the prompt, just before '=')",
    "source": "source node (given in the prompt; r1 copies it)",
    "on_path": "is each prompt edge on the goal path (mean over edges)",
}
PANELS_PER_ROW = 4
SITE_NAMES = {"embed": "embedding", "ssm_state": "SSM state, layer", "resid_post": "residual after layer"}  # in depth order


def target_title(target: str) -> str:
    if target.startswith("node_r"):
        k = target.removeprefix("node_r")
        return f"node at answer position r{k}" + (" (the first decision)" if k == "2" else "")
    return TARGET_TITLES.get(target, target)


def panel_axes(n: int, panel_width: float, panel_height: float, extra_width: float, extra_height: float) -> tuple[plt.Figure, list[plt.Axes]]:
    """A figure of ``n`` panels wrapped at ``PANELS_PER_ROW`` (sizes in inches), its unused
    axes hidden; returns the figure and the ``n`` axes in reading order."""
    ncols = min(PANELS_PER_ROW, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, squeeze=False, figsize=(extra_width + panel_width * ncols, extra_height + panel_height * nrows))
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def ends_row(index: int, n: int) -> bool:
    """Whether panel ``index`` of ``n`` is the last of its row (where a colour bar goes)."""
    return index % PANELS_PER_ROW == PANELS_PER_ROW - 1 or index == n - 1


def row_label(site: str, layer: int) -> str:
    return SITE_NAMES["embed"] if site == "embed" else f"{SITE_NAMES.get(site, site)} {layer}"


def _panel_title(row: pd.Series) -> str:
    return f"{row['arch']} / {row['objective']}\nstep {row['step']} (seed {row['seed']})"


def plot_probe_heatmaps(table: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Write ``probe_{target}.png`` for every target in ``table``; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = table.assign(
        row=[row_label(s, layer) for s, layer in zip(table["site"], table["layer"])],
        column=[f"{p}\n(input {t})" for p, t in zip(table["position"], table["input_token"])],
    )
    site_rank = {site: rank for rank, site in enumerate(SITE_NAMES)}
    order = frame.drop_duplicates("row").assign(rank=lambda f: f["site"].map(site_rank).fillna(len(site_rank)))
    rows = list(order.sort_values(["layer", "rank"])["row"])
    paths = []
    for target, by_target in frame.groupby("target", sort=False):
        checkpoints = list(dict.fromkeys(by_target["checkpoint"]))
        fig, axes = panel_axes(len(checkpoints), 2.0 * by_target["position"].nunique(), 0.7 + 0.55 * len(rows), 2.2, 0.9)
        for index, (ax, checkpoint) in enumerate(zip(axes, checkpoints)):
            panel = by_target[by_target["checkpoint"] == checkpoint]
            columns = list(dict.fromkeys(panel["column"]))
            accuracy = panel.pivot(index="row", columns="column", values="accuracy").reindex(index=[r for r in rows if r in set(panel["row"])], columns=columns)
            init = panel.pivot(index="row", columns="column", values="random_init_accuracy").reindex_like(accuracy)
            labels = np.vectorize(lambda a, b: f"{a:.2f}" + ("" if np.isnan(b) else f"\n({b:.2f})"))(accuracy.to_numpy(), init.to_numpy())
            sns.heatmap(accuracy, vmin=0, vmax=1, cmap="viridis", annot=labels, fmt="", cbar=ends_row(index, len(checkpoints)), ax=ax,
                        cbar_kws={"label": "held-out probe accuracy"}, annot_kws={"fontsize": 8})
            ax.set_title(_panel_title(panel.iloc[0]), fontsize=9)
            ax.set_xlabel("position (what the model is fed there)" if index + PANELS_PER_ROW >= len(checkpoints) else "")
            ax.set_ylabel("activation" if index % PANELS_PER_ROW == 0 else "")
            ax.tick_params(axis="y", rotation=0)
        first = by_target.iloc[0]
        fig.suptitle(
            f"Linear probe for the {target_title(target)}; chance {first['chance']:.2f}\n"
            f"(in brackets: same probe on the untrained model; {int(first['n_train'])} train / {int(first['n_test'])} held-out graphs)",
            fontsize=10,
        )
        fig.tight_layout()
        path = out_dir / f"probe_{target}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths
