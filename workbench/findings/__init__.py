"""Findings a reader can regenerate: the docs' tables, numbers and figures come from the
committed results folder (``results/{job}/*.csv`` + ``provenance.json``, written by
``workbench main --results`` and ``workbench study --results``).

    workbench findings            rewrite every generated block of README.md and docs/findings.md, and the figures
    workbench findings --check    exit 1 naming each block that differs from what the results give

``render`` (the markers and the check), ``blocks`` (what each block computes) and
``figures`` (the figures, drawn from the same tables).
"""

from workbench.findings.blocks import BLOCKS, Results
from workbench.findings.render import DOCUMENTS, Stale, check, render

__all__ = ["BLOCKS", "DOCUMENTS", "Results", "Stale", "check", "render"]
