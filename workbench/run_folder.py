"""A run folder on disk: replaced whole or not at all, and trained into by one process at a time.

A new version of a folder is written complete beside it (``new_version``: ``.{name}.tmp``)
and swapped in by two renames (``swap_in``: the folder to ``.{name}.old``, the new one to
the folder, then ``.old`` deleted), so a save killed at any point leaves a complete folder;
``recover`` puts the previous one back if the kill fell between the renames and clears what
a killed save left behind. ``run_lock`` is an ``flock`` beside the folder, so two processes
never train into one folder and a crashed holder never leaves it locked.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def new_version(run_dir: Path) -> Path:
    """An empty ``.{name}.tmp`` beside ``run_dir`` (after ``recover``), to fill and ``swap_in``."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    recover(run_dir)
    tmp = _tmp_path(run_dir)
    tmp.mkdir()
    return tmp


def carry_over(run_dir: Path, tmp: Path, name: str) -> None:
    """Carry ``run_dir/name`` (a folder) into the new version by hard links: cheap, and the
    old version keeps its own."""
    if (run_dir / name).exists():
        shutil.copytree(run_dir / name, tmp / name, copy_function=_link_or_copy)


def swap_in(tmp: Path, run_dir: Path) -> None:
    """Make the complete ``tmp`` the run folder: flushed to disk first, then two renames."""
    _fsync_dir(tmp)
    old = _old_path(run_dir)
    if run_dir.exists():
        os.replace(run_dir, old)
    os.replace(tmp, run_dir)
    shutil.rmtree(old, ignore_errors=True)


def _tmp_path(run_dir: Path) -> Path:
    return run_dir.with_name(f".{run_dir.name}.tmp")


def _old_path(run_dir: Path) -> Path:
    return run_dir.with_name(f".{run_dir.name}.old")


def present(run_dir: Path) -> bool:
    """Whether ``run_dir`` is there, or its previous version that ``recover`` will put back."""
    return run_dir.is_dir() or _old_path(run_dir).is_dir()


def recover(run_dir: str | Path) -> None:
    """Bring a run folder back to one complete checkpoint after a save killed at any point.

    A save's steps: write ``.tmp``; rename the run to ``.old``; rename ``.tmp`` to the run;
    delete ``.old``. The run folder only ever appears by the second rename, complete, so:
    no run folder but an ``.old`` -> the kill fell between the renames, ``.old`` is the last
    complete checkpoint and goes back; a run folder and an ``.old`` -> the kill fell in the
    final deletion, ``.old`` is a partly deleted copy of the previous checkpoint and goes; a
    ``.tmp`` is an unfinished new checkpoint and goes (the run keeps the previous one).
    """
    run_dir = Path(run_dir)
    old, tmp = _old_path(run_dir), _tmp_path(run_dir)
    if old.exists() and not run_dir.exists():
        os.replace(old, run_dir)
    if old.exists():
        shutil.rmtree(old)
    if tmp.exists():
        shutil.rmtree(tmp)


class RunLockedError(ValueError):
    """Another live process is training into the same run folder."""


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``run_dir`` while training into it.

    An ``flock`` on ``.{name}.lock`` beside the run: the kernel drops it when the holder
    exits, however it exits, so a crashed process never leaves the run locked.
    """
    run_dir = Path(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    lock_file = run_dir.with_name(f".{run_dir.name}.lock")
    with open(lock_file, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise RunLockedError(f"{run_dir}: another process (pid {holder}) is training into this folder; wait for it or choose another --out") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _fsync_dir(path: Path) -> None:
    for file in path.iterdir():
        if file.is_file():
            with open(file, "rb") as f:
                os.fsync(f.fileno())
