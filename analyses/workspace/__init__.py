"""Where the notebooks in analyses/ get their models: one function, ``reference_or_train``.

    from workspace import reference_or_train
    checkpoint = reference_or_train("gpt", "next_token", steps=1_000)

1. By default, the reference checkpoint shipped in ``checkpoints/`` (``checkpoints/manifest.csv``:
   ``{arch}-{objective}-G2_5_50``, ``-s1`` for seed 1), trained by the main job: the models
   the findings report, loaded in a second, its sha256 checked.
2. With ``train=True`` (the notebooks' ``TRAIN`` parameter, ``WORKBENCH_NOTEBOOK_TRAIN=1``),
   a small model trained here, the ``cpu`` preset for ``steps`` steps, into ``runs/notebooks/``
   (``$WORKBENCH_NOTEBOOK_RUNS`` if set). A finished run is loaded, not trained again, so the
   notebooks share their models and a rerun is quick.

With ``tiny=True`` and ``train=True`` it trains a width-32 model on a few thousand graphs in a
fresh temporary folder (unless ``$WORKBENCH_NOTEBOOK_RUNS`` is set): seconds on any machine.

Paths are found from this file, so a notebook runs from the repository root, from analyses/
(Jupyter), or as a script from anywhere.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
from pathlib import Path

import workbench
from workbench.config import RunConfig, apply_overrides, preset_config
from workbench.train import train as train_run

ROOT = Path(__file__).resolve().parents[2]  # analyses/workspace/__init__.py -> the repository
REFERENCE_GRAPH = "G2_5_50"  # the graph of the shipped models the notebooks read

# The smoke settings: a model and data small enough that training takes a second or two.
TINY = {
    "gpt": ["model.n_layers=2", "model.d_model=32", "model.n_heads=2"],
    "mamba": ["model.n_layers=2", "model.d_model=32", "model.d_state=8", "model.scan=torch"],  # no 15 s compile
}
TINY_DATA = ["task.num_train=2000", "task.num_test=500", "train.eval_graphs=100", "train.batch_size=64"]

_tiny_runs: Path | None = None


def runs_dir(tiny: bool) -> Path:
    """Where models trained here go: $WORKBENCH_NOTEBOOK_RUNS, else runs/notebooks (a temporary
    folder for tiny models, so CI never reuses a stale one)."""
    global _tiny_runs
    if os.environ.get("WORKBENCH_NOTEBOOK_RUNS"):
        return Path(os.environ["WORKBENCH_NOTEBOOK_RUNS"])
    if not tiny:
        return ROOT / "runs" / "notebooks"
    if _tiny_runs is None:
        _tiny_runs = Path(tempfile.mkdtemp(prefix="workbench-notebook-"))
        atexit.register(shutil.rmtree, _tiny_runs, ignore_errors=True)
    return _tiny_runs


def small_run(arch: str, objective: str, steps: int, seed: int = 0, tiny: bool = False) -> tuple[RunConfig, Path]:
    """The config and folder of a model trained here: the ``cpu`` preset for ``steps`` steps
    (evaluated five times along them on 1,000 held-out graphs), or a tiny model."""
    overrides = [f"train.steps={steps}", f"train.seed={seed}", f"train.eval_every={steps if tiny else max(1, steps // 5)}",
                 f"train.save_every={steps}", f"train.warmup_steps={min(100, max(1, steps // 10))}", "train.eval_graphs=1000"]
    if tiny:
        overrides += TINY[arch] + TINY_DATA
    config = apply_overrides(preset_config("cpu", objective=objective, arch=arch), overrides)
    name = f"{arch}-{objective}" + (f"-s{seed}" if seed else "")
    return config, runs_dir(tiny) / f"{name}-{'tiny-' if tiny else ''}{steps}steps"


def reference_name(arch: str, objective: str, seed: int = 0) -> str:
    """The manifest name of a shipped reference checkpoint."""
    return f"{arch}-{objective}-{REFERENCE_GRAPH}" + (f"-s{seed}" if seed else "")


def reference_or_train(arch: str, objective: str, steps: int, seed: int = 0, train: bool = False, tiny: bool = False) -> workbench.Checkpoint:
    """The shipped reference checkpoint, or (``train``) a small model trained here."""
    if not train:
        name = reference_name(arch, objective, seed)
        checkpoint = workbench.load(name)
        print(f"{name}: the shipped reference checkpoint, step {checkpoint.step} ({checkpoint.path})")
        return checkpoint
    config, run_dir = small_run(arch, objective, steps, seed, tiny)
    done = (run_dir / "config.json").exists() and workbench.load(run_dir).step == steps
    start = time.perf_counter()
    checkpoint = train_run(config, run_dir, progress=False)
    how = "trained earlier, loaded" if done else f"trained here in {time.perf_counter() - start:.0f} s"
    print(f"{arch}-{objective}-s{seed}: {'tiny ' if tiny else ''}{arch} ({config.model.n_layers} layers x {config.model.d_model}), "
          f"{steps} steps, {how} ({run_dir})")
    return checkpoint
