"""Rewrite the generated parts of the docs from the committed results, or check them.

A generated part sits between two HTML comments, which Markdown does not show:

    <!-- findings:solvers.summary -->
    | objective | r2 accuracy | ... |        (written by `workbench findings`, never by hand)
    <!-- /findings:solvers.summary -->

and inline the same way: ``r2 at <!-- findings:main_job.r2 -->0.504<!-- /findings:main_job.r2 -->``.
The name picks a block of ``workbench.findings.blocks``, a function of the results folder. A
block whose text holds a line break is written on lines of its own.

``render`` returns the new text of a document; ``check`` names each block whose text in the
document differs from what the results give, so a table can never go stale unnoticed.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

from workbench.findings.blocks import BLOCKS, Results

DOCUMENTS = ("README.md", "docs/findings.md", "docs/checkpoints.md")  # relative to the repository root

MARKER = re.compile(r"<!-- findings:(?P<name>[\w.-]+) -->(?P<body>.*?)<!-- /findings:(?P=name) -->", re.DOTALL)
OPENING = re.compile(r"<!-- findings:(?P<name>[\w.-]+) -->")


@dataclass(frozen=True)
class Stale:
    """One generated block that differs from what the results give."""

    document: Path
    line: int
    name: str
    diff: str

    def __str__(self) -> str:
        return f"{self.document}:{self.line}: block {self.name!r} differs from what the results give\n{self.diff}"


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _validate(text: str, document: Path) -> None:
    """Every opening marker has its closing one and names a known block."""
    closed = {m.start() for m in MARKER.finditer(text)}
    for opening in OPENING.finditer(text):
        name = opening["name"]
        if opening.start() not in closed:
            raise ValueError(f"{document}:{_line_of(text, opening.start())}: '<!-- findings:{name} -->' has no closing '<!-- /findings:{name} -->'")
        if name not in BLOCKS:
            close = difflib.get_close_matches(name, BLOCKS, n=3)
            raise ValueError(f"{document}:{_line_of(text, opening.start())}: unknown block {name!r}"
                             + (f" (did you mean {', '.join(close)}?)" if close else f"; known blocks: {', '.join(sorted(BLOCKS))}"))


def _body(generated: str) -> str:
    return f"\n{generated}\n" if "\n" in generated else generated


def render(text: str, results: Results, document: Path = Path("<text>")) -> str:
    """``text`` with every generated block rewritten from ``results``."""
    _validate(text, document)
    return MARKER.sub(lambda m: f"<!-- findings:{m['name']} -->{_body(BLOCKS[m['name']](results))}<!-- /findings:{m['name']} -->", text)


def check(text: str, results: Results, document: Path = Path("<text>")) -> list[Stale]:
    """The blocks of ``text`` whose content is not what ``render`` would write."""
    _validate(text, document)
    stale = []
    for match in MARKER.finditer(text):
        expected = _body(BLOCKS[match["name"]](results))
        if match["body"] != expected:
            diff = "\n".join(difflib.unified_diff(match["body"].splitlines(), expected.splitlines(), "in the document", "from the results", lineterm="", n=1))
            stale.append(Stale(document, _line_of(text, match.start()), match["name"], diff))
    return stale


def block_names(text: str) -> list[str]:
    return [m["name"] for m in MARKER.finditer(text)]
