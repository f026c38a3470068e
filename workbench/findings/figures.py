"""The findings' figures, drawn from the committed results alone into docs/figures/.

Each is the figure the job itself draws (the main job's analyses, the study pages), made
again from the published CSVs, so the docs show what the tables hold.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from workbench.findings.blocks import (CONTROL, DEPTH_LR_GPT_GRAPH, DEPTH_LR_GPT_JOBS, DEPTH_LR_GRAPH, DEPTH_LR_JOBS, GPT_SOLVERS, MAMBA_G24, Results,
                                      depth_frame, depth_lr_curves, hops_at_best_rate, hops_by_layers)


def _plot(module: str, function: str, job: str | tuple[str, ...], table: str, prepare: Callable | None = None) -> Callable[[Results, Path], Path]:
    """A figure drawn by ``module.function`` from one published table (``prepare`` reduces it first)."""
    def draw_one(results: Results, path: Path) -> Path:
        plot = getattr(importlib.import_module(module), function)
        frame = results.table(job, table)
        return plot(prepare(frame) if prepare else frame, path)

    return draw_one


def _per_seed(frame):
    from workbench.study.figures import per_seed

    return per_seed(frame)


def _depth(job: str) -> Callable[[Results, Path], Path]:
    """The depth heatmap needs each run's layer count and path length, read off its row."""
    def draw_one(results: Results, path: Path) -> Path:
        from workbench.study.figures import per_seed, plot_depth

        runs = depth_frame(results, job)
        return plot_depth(per_seed(results.table(job, "study")), dict(zip(runs["run"], runs["layers"])), dict(zip(runs["run"], runs["path_length"])), path)

    return draw_one


def _plot_lr(jobs: tuple[str, ...], graph: str) -> Callable[[Results, Path], Path]:
    """r2 over training on ``graph`` for the depth cells of ``jobs`` run at several learning rates."""
    def draw_one(results: Results, path: Path) -> Path:
        from workbench.study.figures import plot_r2_by_lr

        return plot_r2_by_lr(depth_lr_curves(results, jobs, graph), path)

    return draw_one


def _plot_hops(hops, path: Path) -> Path:
    from workbench.study.figures import plot_hops_by_layers

    return plot_hops_by_layers(hops, path)


def _plot_hops_at_rates(results: Results, path: Path) -> Path:
    """The depth grid at each arch's preset rate beside the best of every rate tried."""
    best = hops_at_best_rate(results)
    tried = "; ".join(f"{arch} {rates}" for arch, rates in best.groupby("arch")["rates"].first().items())
    return _plot_hops({"at each arch's preset peak rate (the grid)": hops_by_layers(results),
                       f"at the best of the peak rates tried\n({tried})": best}, path)


FIGURES: dict[str, Callable[[Results, Path], Path]] = {  # docs/figures/{name}.png
    "main_job_accuracy": _plot("workbench.analyses.clever_hans", "plot_accuracy_gap", "main_job", "accuracy_gap"),
    "main_job_cheat_test": _plot("workbench.analyses.clever_hans", "plot_cheat_test", "main_job", "cheat_test"),
    "main_job_patching": _plot("workbench.analyses.patching", "plot_patching", "main_job", "patching"),
    "remedies_quick": _plot("workbench.study.figures", "plot_remedies", "remedies_quick", "study", _per_seed),
    "solvers": _plot("workbench.study.figures", "plot_solvers", "solvers", "study"),
    "mamba_solvers": _plot("workbench.study.figures", "plot_solvers", "mamba_solvers", "study"),
    "deep_solvers": _plot("workbench.study.figures", "plot_solvers", "deep_solvers", "study"),
    "deep_solvers_curves": _plot("workbench.study.figures", "plot_r2_curves", "deep_solvers", "curves"),
    "deep_solvers_gpt": _plot("workbench.study.figures", "plot_solvers", GPT_SOLVERS, "study"),
    "deep_solvers_gpt_curves": _plot("workbench.study.figures", "plot_r2_curves", GPT_SOLVERS, "curves"),
    "deep_solvers_control_curves": _plot("workbench.study.figures", "plot_r2_curves", CONTROL, "curves"),
    "deep_solvers_mamba_g25_curves": _plot("workbench.study.figures", "plot_r2_curves", "deep_solvers_mamba_g25", "curves"),
    "deep_solvers_mamba_g25_remedies_curves": _plot("workbench.study.figures", "plot_r2_curves", "deep_solvers_mamba_g25_remedies", "curves"),
    "deep_solvers_mamba_g24": _plot("workbench.study.figures", "plot_solvers", MAMBA_G24, "study"),
    "deep_solvers_mamba_g24_curves": _plot("workbench.study.figures", "plot_r2_curves", MAMBA_G24, "curves"),
    "depth_first_hops": _depth("depth_first_hops"),
    "depth_first_hops_mamba": _depth("depth_first_hops_mamba"),
    "depth_deeper_gpt": _depth("depth_deeper_gpt"),
    "depth_deeper_mamba_3": _depth("depth_deeper_mamba_3"),
    "depth_deeper_mamba_4": _depth("depth_deeper_mamba_4"),
    "depth_hops_by_layers": _plot_hops_at_rates,
    "depth_lr_mamba": _plot_lr(DEPTH_LR_JOBS, DEPTH_LR_GRAPH),
    "depth_lr_gpt": _plot_lr(DEPTH_LR_GPT_JOBS, DEPTH_LR_GPT_GRAPH),
}


def draw(results: Results, folder: Path) -> tuple[list[Path], list[str]]:
    """Draw every figure whose job has published its results into ``folder``; returns (the
    figures drawn, a note for each figure left out and why)."""
    folder.mkdir(parents=True, exist_ok=True)
    drawn, skipped = [], []
    for name, function in FIGURES.items():
        try:
            drawn.append(function(results, folder / f"{name}.png"))
        except FileNotFoundError as missing:
            skipped.append(f"{name}: {missing}")
    return drawn, skipped
