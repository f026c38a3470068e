"""What every figure of the analyses and the probes shares: one panel per (arch, objective), and the same finish."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns


def with_panel(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a ``panel`` column naming its model, "arch / objective"."""
    return frame.assign(panel=frame["arch"] + " / " + frame["objective"])


def save_grid(grid: sns.FacetGrid, path: str | Path, xlabel: str, ylabel: str, title: str, title_y: float = 1.03, dpi: int = 120) -> Path:
    """Label, title, save as PNG and close a seaborn grid.

    The axis labels are written once for the whole figure: repeated under every panel, a
    long label runs into its neighbour's."""
    figure = grid.figure
    grid.set_axis_labels("", "")
    width, height = figure.get_size_inches()
    margins = figure.subplotpars  # as seaborn left them (room for the legend on the right)
    figure.subplots_adjust(left=margins.left + 0.3 / width, bottom=margins.bottom + 0.3 / height)
    figure.supxlabel(xlabel, y=0.0, va="bottom")
    figure.supylabel(ylabel, x=0.0, ha="left")
    figure.suptitle(title, y=title_y)
    grid.savefig(path, dpi=dpi)
    plt.close(grid.figure)
    return Path(path)
