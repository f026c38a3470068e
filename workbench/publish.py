"""Publish a job's tidy tables into the committed results folder, with provenance the run
writes itself.

    results/{name}/*.csv            the tables docs/findings.md is rendered from (small: no checkpoints)
    results/{name}/provenance.json  command, commit, date, versions, device, threads, wall time, seeds,
                                    and each run's own training time as its trainer logged it

A published number is only as good as what produced it, so the provenance is not typed by
anyone: ``workbench main --results DIR`` and ``workbench study SPEC --results DIR`` write it
when they finish. ``workbench findings`` reads these folders (``workbench.findings``).
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.files import atomic_write_text

SOURCE_ROOT = Path(__file__).resolve().parents[1]  # the checkout the package runs from (editable install)


def source_commit() -> dict[str, Any]:
    """The commit of the checkout the code runs from, and whether tracked files differ from it
    ("dirty"): a published table is tied to the code that made it. None outside a git checkout."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(SOURCE_ROOT), *args], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def cpuinfo(field: str) -> str | None:
    """The value of ``field`` ("model name", "flags") in /proc/cpuinfo, for its first CPU; None
    where there is no such file or field."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in lines if line.split(":", 1)[0].strip() == field), None)


def cpu_model() -> str:
    """The CPU's model name as /proc/cpuinfo gives it (the platform's processor elsewhere)."""
    return cpuinfo("model name") or platform.processor() or platform.machine()


def vector_width() -> str | None:
    """The CPU's widest float vectors, "AVX-512" or "AVX2" (None where /proc/cpuinfo does not
    say): one model name ("AMD EPYC") covers CPUs with and without 512-bit vectors, and the
    Mamba kernels' speed differs between them."""
    flags = (cpuinfo("flags") or "").split()
    return "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else None


def device_name(device: str = "cpu") -> str:
    """The processor the job ran on, as a reader would look it up: the CPU's model name, its
    widest vectors and its core count, or the CUDA device's name."""
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(torch.device(device))} (CUDA)"
    width = vector_width()
    return f"{cpu_model()}{f' ({width})' if width else ''}, {os.cpu_count()} cores"


def provenance(started: float, seeds: list[int], threads: float, device: str, runs: list[dict[str, Any]],
               code: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """What produced a published table. ``started`` is the job's ``time.time()`` at its start;
    ``runs`` one dict per run (name, steps, train_seconds as the trainer logged it, whether
    this invocation trained it or found it finished, and for a study the threads that trained
    it). ``code`` is ``source_commit()`` taken at the start: the code that trained is the
    checkout's when the job began, and a checkout that moved while it ran (hours, for a study)
    is recorded beside it as ``code_at_publish``."""
    import torch

    from workbench._version import __version__

    now = source_commit()
    code = code or now
    return {
        "command": shlex.join(["workbench", *sys.argv[1:]]) if Path(sys.argv[0]).name == "workbench" else shlex.join(sys.argv),
        **code,
        **({"code_at_publish": now} if now != code else {}),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "wall_seconds": round(time.time() - started, 1),
        "workbench": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": device_name(device),
        "threads": threads,
        "seeds": sorted(set(int(s) for s in seeds)),
        "n_seeds": len(set(seeds)),
        **extra,
        "runs": runs,
    }


def publish(folder: str | Path, tables: dict[str, pd.DataFrame], record: dict[str, Any]) -> Path:
    """Write ``tables`` (name -> tidy frame) as CSVs and ``record`` as provenance.json into
    ``folder``, replacing what a previous publication left there; returns the folder."""
    folder = Path(folder)
    for stale in folder.glob("*.csv") if folder.exists() else []:
        if stale.stem not in tables:
            stale.unlink()
    for name, frame in tables.items():
        atomic_write_text(folder / f"{name}.csv", frame.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(folder / "provenance.json", json.dumps(record, indent=1) + "\n")
    print(f"published {len(tables)} table(s) and provenance.json to {folder}", flush=True)
    return folder
