"""Where the notebooks in analyses/ get their models: one function, ``find_or_train``.

    from workspace import find_or_train
    checkpoint = find_or_train("gpt", "next_token", steps=1_000)

1. The main job's checkpoint, ``runs/default/checkpoints/{arch}-{objective}`` (``-s1`` for
   seed 1), when ``workbench main`` has written it: the models the README reports.
2. Otherwise a small model trained here, the ``cpu`` preset for ``steps`` steps, into
   ``runs/notebooks/`` (``$WORKBENCH_NOTEBOOK_RUNS`` if set). A finished run is loaded, not
   trained again, so the notebooks share their models and a rerun is quick.

With ``tiny=True`` (the smoke settings of CI) it always trains a width-32 model on a few
thousand graphs, never reads the main job's, and writes to a fresh temporary folder unless
``$WORKBENCH_NOTEBOOK_RUNS`` is set: the notebook runs the same code on any machine in seconds.

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

import matplotlib

# The workbench's figure modules select matplotlib's Agg backend when imported (they write PNG
# files). Import them here and hand the notebook its own backend back, so that figures still
# show inline in Jupyter (headless, as a script, the backend is Agg anyway).
_backend = matplotlib.get_backend()
import workbench  # noqa: E402
import workbench.analyses.cka  # noqa: E402,F401
import workbench.analyses.clever_hans  # noqa: E402,F401
import workbench.analyses.patching  # noqa: E402,F401
import workbench.probes  # noqa: E402,F401
from workbench.config import RunConfig, apply_overrides, preset_config  # noqa: E402
from workbench.train import train  # noqa: E402

matplotlib.use(_backend)
if "inline" in _backend:  # in Jupyter, switching back is not enough: set the inline figures up again
    from IPython import get_ipython

    get_ipython().run_line_magic("matplotlib", "inline")

ROOT = Path(__file__).resolve().parents[2]  # analyses/workspace/__init__.py -> the repository
MAIN_JOB = ROOT / "runs" / "default" / "checkpoints"

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


def find_or_train(arch: str, objective: str, steps: int, seed: int = 0, tiny: bool = False) -> workbench.Checkpoint:
    """The main job's model when there is one (and not ``tiny``), else a small one trained here."""
    name = f"{arch}-{objective}" + (f"-s{seed}" if seed else "")
    if not tiny and (MAIN_JOB / name / "config.json").exists():
        checkpoint = workbench.load(MAIN_JOB / name)
        print(f"{name}: the main job's checkpoint, step {checkpoint.step} ({MAIN_JOB / name})")
        return checkpoint
    config, run_dir = small_run(arch, objective, steps, seed, tiny)
    done = (run_dir / "config.json").exists() and workbench.load(run_dir).step == steps
    start = time.perf_counter()
    checkpoint = train(config, run_dir, progress=False)
    how = "trained earlier, loaded" if done else f"trained here in {time.perf_counter() - start:.0f} s"
    print(f"{name}: {'tiny ' if tiny else ''}{arch} ({config.model.n_layers} layers x {config.model.d_model}), "
          f"{steps} steps, {how} ({run_dir})")
    return checkpoint
