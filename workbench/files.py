"""Writing files so that a reader never sees half of one: every table, page, config and
manifest the workbench writes goes through ``atomic_write_text`` (checkpoints have their own
directory swap in ``workbench.checkpoint``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str, encoding: str = "ascii") -> None:
    """Write a whole file so that readers see either the old or the new content, never half.
    ASCII by default: the tables and pages the workbench writes hold no other characters."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding=encoding) as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide a report from a web server
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
