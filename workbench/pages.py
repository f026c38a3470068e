"""The pieces of the workbench's HTML pages (the main job's report, the study pages): one
style sheet, embedded figures, folded sections and tables, so every page reads the same."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1150px; margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: .85em; margin: .8em 0; } th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: .5em 0; } .note { color: #555; font-size: .9em; }
ul.findings li { margin: .3em 0; } code { background: #f5f5f5; padding: 0 .2em; }
details { margin: .6em 0; border: 1px solid #e4e4e4; border-radius: 4px; padding: .3em .8em; }
summary { cursor: pointer; font-weight: 600; } details[open] > summary { margin-bottom: .4em; }
"""


def img(path: Path, alt: str) -> str:
    if not path.exists():
        return f'<p class="note">({html.escape(path.name)} was not produced in this run.)</p>'
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def details(title: str, body: str, open_: bool = False) -> str:
    """A collapsible section: the title shows, the body unfolds on a click."""
    return f"<details{' open' if open_ else ''}><summary>{html.escape(title)}</summary>{body}</details>"


def table_html(frame: pd.DataFrame, digits: int = 3, index: bool = True) -> str:
    html_table = frame.to_html(float_format=lambda v: f"{v:.{digits}f}", na_rep="", border=0, escape=True, index=index)
    return f'<div style="overflow-x: auto">{html_table}</div>'
