"""The findings' figures, drawn from the committed results alone into docs/figures/.

Each is the figure the job itself draws (the main job's analyses, the study pages), made
again from the published CSVs, so the docs show what the tables hold.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from workbench.findings.blocks import Results, _depth_frame

FIGURES: dict[str, Callable[[Results, Path], Path]] = {}


def figure(name: str) -> Callable[[Callable[[Results, Path], Path]], Callable[[Results, Path], Path]]:
    def register(function: Callable[[Results, Path], Path]) -> Callable[[Results, Path], Path]:
        FIGURES[name] = function
        return function

    return register


@figure("main_job_accuracy")
def _accuracy(results: Results, path: Path) -> Path:
    from workbench.analyses.clever_hans import plot_accuracy_gap

    return plot_accuracy_gap(results.table("main_job", "accuracy_gap"), path)


@figure("main_job_cheat_test")
def _cheat(results: Results, path: Path) -> Path:
    from workbench.analyses.clever_hans import plot_cheat_test

    return plot_cheat_test(results.table("main_job", "cheat_test"), path)


@figure("main_job_patching")
def _patching(results: Results, path: Path) -> Path:
    from workbench.analyses.patching import plot_patching

    return plot_patching(results.table("main_job", "patching"), path)


@figure("remedies_quick")
def _remedies(results: Results, path: Path) -> Path:
    from workbench.study.figures import per_seed, plot_remedies

    return plot_remedies(per_seed(results.table("remedies_quick", "study")), path)


@figure("solvers")
def _solvers(results: Results, path: Path) -> Path:
    from workbench.study.figures import plot_solvers

    return plot_solvers(results.table("solvers", "study"), path)


@figure("mamba_solvers")
def _mamba_solvers(results: Results, path: Path) -> Path:
    from workbench.study.figures import plot_solvers

    return plot_solvers(results.table("mamba_solvers", "study"), path)


@figure("depth_hour")
def _depth(results: Results, path: Path) -> Path:
    from workbench.study.figures import per_seed, plot_depth

    table = results.table("depth_hour", "study")
    runs = _depth_frame(results)
    return plot_depth(per_seed(table), dict(zip(runs["run"], runs["layers"])), dict(zip(runs["run"], runs["path_length"])), path)


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
