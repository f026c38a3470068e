"""What every analysis figure shares: one panel per (arch, objective), and the same finish."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402


def with_panel(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a ``panel`` column naming its model, "arch / objective"."""
    return frame.assign(panel=frame["arch"] + " / " + frame["objective"])


def save_grid(grid: sns.FacetGrid, path: str | Path, xlabel: str, ylabel: str, title: str, title_y: float = 1.03, dpi: int = 120) -> Path:
    """Label, title, save as PNG and close a seaborn grid."""
    grid.set_axis_labels(xlabel, ylabel)
    grid.figure.suptitle(title, y=title_y)
    grid.savefig(path, dpi=dpi)
    plt.close(grid.figure)
    return Path(path)
