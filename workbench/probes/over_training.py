"""Probes over training: when, if ever, does the goal arm become decodable?

The probe table of ``workbench.probes`` at every snapshot a run kept
(``train.snapshot_every``) and at its final checkpoint. The untrained model (step 0) is the
first point of every curve. Controls are left to the main probe table, and so is the
embedding, which does not change what it can hold along training: at ``eq`` it is the same
vector for every graph, at ``r1`` the embedding of the one token fed there.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import seaborn as sns

from workbench.figures import save_grid
from workbench.checkpoint import Checkpoint, load
from workbench.factory import build_model
from workbench.probes.sweep import probe_sweep
from workbench.probes.plots import row_label

DEFAULT_TARGETS = ("arm", "node_r2", "goal")  # the plan, the first decision, and the goal it needs


def run_snapshots(run_dir: str | Path) -> list[Path]:
    """The snapshots of a run, in step order, then the run's own (final) checkpoint."""
    run_dir = Path(run_dir)
    return sorted((run_dir / "snapshots").glob("step_*")) + [run_dir]


def training_checkpoints(run_dir: str | Path) -> list[Checkpoint]:
    """The run's model before training (step 0), at every snapshot, and at its end (loaded)."""
    final = load(run_dir)
    from workbench.factory import build_model_and_parts

    untrained, parts = build_model_and_parts(final.config)  # the objective's parts too, as initialised
    snapshots = [load(p) for p in run_snapshots(run_dir)[:-1] if p.name != f"step_{final.step:07d}"]
    return [Checkpoint(untrained.eval(), final.config, 0, Path(run_dir) / "untrained", parts=parts), *snapshots, final]


def probes_over_training(run_dirs: list[str | Path], targets: tuple[str, ...] = DEFAULT_TARGETS, cache_dir: str | Path | None = None, **kwargs) -> pd.DataFrame:
    """The probe table (without controls) at every snapshot of every run, one row per probe."""
    checkpoints = [c for run in run_dirs for c in training_checkpoints(run)]
    return probe_sweep(checkpoints, targets=list(targets), controls=False, cache_dir=cache_dir, progress=False, **kwargs)


def plot_probes_over_training(table: pd.DataFrame, path: str | Path) -> Path:
    """Accuracy against step; rows = (target, arch), columns = objective, hue = layer."""
    frame = table.assign(
        activation=[row_label(s, layer) for s, layer in zip(table["site"], table["layer"])],
        model=table["target"] + " | " + table["arch"],
    )
    grid = sns.relplot(frame, x="step", y="accuracy", hue="activation", style="position", row="model", col="objective",
                       kind="line", marker="o", markersize=4, height=2.0, aspect=1.5, facet_kws={"sharey": True, "sharex": "row"})
    grid.set_titles("{row_name} / {col_name}", size=9)
    return save_grid(grid, path, "training step", "held-out probe accuracy",
                     "Linear probes along training: is the goal arm (or r2's node) ever decodable at '=' or r1?", title_y=1.01, dpi=110)
