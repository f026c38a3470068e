"""How long a study's runs will take, from measured step rates.

Where a number comes from, in order of preference:
1. the run's own trainer log (``metrics.jsonl``: step and elapsed seconds at each
   evaluation, which include the evaluations themselves) when the run has started;
2. the median rate of the study's finished runs of the same kind (``step_key``: the same
   config but for seed and schedule; their logs, as in 1);
3. a calibration on this machine (``--dry-run --calibrate``): a few of the trainer's own
   steps of each distinct kind of run in the selection, timed at the study's threads per run
   and kept in ``OUT/calibration.json`` for this machine's CPU;
4. the median rate of the study's finished runs of the same arch, preset and model size,
   any objective or graph (coarse: mtp's step is twice next_token's);
5. ``MEASURED_RATES``: cpu-preset training rates measured on this project's 2-core CPU,
   scaled by the run's layers and batch relative to the preset's (``table_rate``); another
   machine can be several times faster or slower, which is what 3 is for.
Stage times (evaluation, probes, patching) come from the study's finished runs
(``done.json``) where there are some, else from ``STAGE_SECONDS`` (measured on cpu-preset GPT
runs of G(2,3,50); probes scaled by the number of probe sites).
A run with none of these has no estimate, and the total says how many such runs it left out.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from workbench.config import RunConfig
from workbench.study.run import checkpoint_dir, result_dir
from workbench.study.spec import ProbeSettings, StudyRun
from workbench.files import atomic_write_text

# Training steps per second (evaluations included) of one cpu-preset run on this project's
# 2-core CPU, as a study runs them (one thread per run, two at a time), from the depth study's
# logs (studies/depth.toml, first_hops_seeds, 2026-12-04, 2-layer runs on G(2,3,50) and
# G(2,4,50)): GPT 17.3-17.7 steps/s (its last block on the answer rows alone), Mamba 5.0-5.3
# (the C++ scan). Scaled by layers below, so 1-layer runs come out twice as fast: about right
# for Mamba (measured 7.6-13.4), conservative for GPT (measured 43-65: its one block is the
# trimmed last one). A loaded machine can be several times slower; once a run has started,
# its own log replaces these.
MEASURED_RATES: dict[tuple[str, str], float] = {("gpt", "cpu"): 17.5, ("mamba", "cpu"): 5.2}
# Seconds per stage of one cpu-preset run, where the study has no finished run to measure:
# medians of six GPT runs of studies/remedies.toml on G(2,3,50) (2026-11-26, one thread per run,
# two at a time, the machine 2.8x slower than the one behind MEASURED_RATES): evaluation on
# 5,000 graphs 6.4 s, patching on 1,000 graphs 7.1 s, probes 10.6 s for 2 targets x 1
# position x 3 hooks, i.e. ~1.8 s per probe site (scaled by ``probe_sites``).
STAGE_SECONDS: dict[str, float | None] = {"evaluate": 6.4, "probes": 10.6 / 6, "patching": 7.1}  # probes: per site


@dataclass
class RunEstimate:
    run: str
    steps_done: int
    steps: int
    steps_per_s: float | None
    source: str  # "own log", "study logs, same kind", "calibrated here", "study logs, same size", "measured table" or "none"
    stage_s: float  # the stages with a measured time
    unmeasured_stages: tuple[str, ...] = ()  # stages without one (not in the estimate)

    @property
    def seconds(self) -> float | None:
        """Training steps left at the rate, plus the measured stage times; None without a rate."""
        if self.steps_per_s is None:
            return None
        return (self.steps - self.steps_done) / self.steps_per_s + self.stage_s


def logged_progress(run_dir: Path) -> tuple[int, float | None]:
    """(step, steps per second) from a run's trainer log; (0, None) before its first line."""
    file = run_dir / "metrics.jsonl"
    if not file.exists():
        return 0, None
    lines = [line for line in file.read_text().splitlines() if line.strip()]
    try:
        last = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:  # a line being written
        return 0, None
    if not last or not last.get("step") or not last.get("elapsed_s"):
        return (last or {}).get("step", 0), None
    return last["step"], last["step"] / last["elapsed_s"]


def _size(run: StudyRun) -> tuple:
    return run.arch, run.preset, run.config.model.n_layers, run.config.model.d_model


def probe_sites(run: StudyRun, probes: ProbeSettings) -> int:
    """How many probes (target x position x hook) the probes stage fits for ``run``: the
    shortcuts ``resid_post`` and ``ssm_state`` (Mamba only) once per layer, any other hook
    (``embed``, or one named hook) once."""
    per_hook = {"resid_post": run.config.model.n_layers, "ssm_state": run.config.model.n_layers if run.arch == "mamba" else 0}
    return len(probes.targets) * len(probes.positions) * sum(per_hook.get(hook, 1) for hook in probes.hooks)


def step_key(config: RunConfig) -> str:
    """What a training step's time depends on: the whole config but for the seed, the
    schedule and the file-keeping settings (a short hash, the key of ``calibration.json``).
    The device and Mamba's scan stay in: they change the time, not the result."""
    raw = config.to_dict()
    for key in ("seed", "steps", "warmup_steps", "eval_every", "eval_graphs", "save_every", "snapshot_every", "lr", "min_lr_ratio"):
        raw["train"].pop(key, None)
    raw["task"] = {k: raw["task"][k] for k in ("degree", "path_length", "num_nodes")}
    return hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()[:16]


def trainer_step(config: RunConfig, batches: int) -> tuple[Callable[[int], None], Callable[[], None]]:
    """The trainer's own step of ``config`` (``train.training_step``: the objective's batch and
    loss with its extra parts under bf16 autocast on CUDA, backward, clip, AdamW) on a fresh
    model, over ``batches`` freshly generated batches (step i takes batch i mod ``batches``),
    and a function that waits for the device: what a timing of training steps needs."""
    import torch

    from workbench.factory import build_model_and_parts
    from workbench.config import objective_of
    from workbench.task import generate
    from workbench.devices import resolve_device
    from workbench.train import build_optimizer, graphs_per_step, trainable, training_step

    device = resolve_device(config.train.device)
    model, parts = build_model_and_parts(config, device)
    optimizer, objective, size = build_optimizer(config.train, model, parts), objective_of(config), graphs_per_step(config)
    params = [p for _, p in trainable(model, parts)]
    graphs = generate(config.task.graph, size * batches, seed=0)
    model.train()

    def step(i: int) -> None:
        batch = i % batches
        training_step(config, objective, model, parts, optimizer, params, graphs[batch * size : (batch + 1) * size], i, device)

    return step, (torch.cuda.synchronize if device.type == "cuda" else (lambda: None))


def time_training_steps(config: RunConfig, steps: int = 5, warmup: int = 2) -> float:
    """Seconds per training step of ``config`` on this machine at the current torch threads
    (``trainer_step``), timed after ``warmup`` steps."""
    step, sync = trainer_step(config, steps + warmup)
    for i in range(steps + warmup):
        if i == warmup:
            sync()
            start = time.perf_counter()
        step(i)
    sync()
    return (time.perf_counter() - start) / steps


def machine(device: str = "cpu") -> str:
    """What a calibration holds for: this machine's CPU model, or the GPU's name for CUDA."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    from workbench.publish import cpu_model

    return cpu_model()


def _where(threads: float) -> str:
    """The calibration file's key: this machine (CPU model, and GPU where there is one) and
    the thread count."""
    import torch

    gpu = f" + {machine('cuda')}" if torch.cuda.is_available() else ""
    return f"{machine()}{gpu} | {max(1, int(threads))} thread(s)"


def _run_device(run: StudyRun) -> str:
    from workbench.devices import resolve_device

    return str(resolve_device(run.config.train.device))


def calibration(out: Path, threads: float) -> dict[str, float]:
    """The step rates ``calibrate`` saved in ``OUT/calibration.json`` for this machine and
    thread count ({} if none, or if the file cannot be read: an estimate is never worth a
    failed study)."""
    try:
        saved = json.loads((Path(out) / "calibration.json").read_text())
        rates = saved.get(_where(threads), {})
        return {str(k): float(v) for k, v in rates.items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def calibrate(runs: list[StudyRun], out: Path, threads: float, steps: int = 5, say=print) -> dict[str, float]:
    """Time ``steps`` training steps of each distinct ``step_key`` among ``runs``, here, at
    ``threads`` torch threads, one at a time, on the device each run's config asks for (keyed
    by that device's name); each rate is saved in ``OUT/calibration.json`` as soon as it is
    measured (under this machine's CPU and thread count) and replaces an older one. Returns
    the saved rates. Evaluations during training are not in a rate: a run's own log replaces
    it once the run starts."""
    import torch

    file = Path(out) / "calibration.json"
    kinds: dict[str, StudyRun] = {}
    for run in runs:
        kinds.setdefault(step_key(run.config), run)
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads)))
    try:
        for i, (key, run) in enumerate(kinds.items(), 1):
            seconds = time_training_steps(run.config, steps)
            try:
                saved = json.loads(file.read_text()) if file.exists() else {}
            except ValueError:
                saved = {}
            rates = saved.get(_where(threads), {})
            rates[key] = 1 / seconds
            device = _run_device(run)
            where = f" on {machine(device)}" if device != "cpu" else ""
            atomic_write_text(file, json.dumps({**saved, _where(threads): rates}, indent=1) + "\n")
            say(f"calibrate [{i}/{len(kinds)}] {run.name}: {1000 * seconds:.0f} ms/step{where}")
    finally:
        torch.set_num_threads(previous)
    return calibration(out, threads)


def table_rate(run: StudyRun) -> float | None:
    """``MEASURED_RATES`` for the run's arch and preset, scaled by the preset's layers and batch
    over the run's: a step's time grows about in proportion to both (the 4-layer GPTs of
    studies/deep_solvers.toml at batch 512, future_bow on G(2,4,50), trained at 2.4-2.6 steps/s
    two at a time, one thread each, on the 2-core CPU; this gives 2.2). The objective is not in
    it (mtp's step is about twice next_token's). None where the table has no rate."""
    from workbench.config import PRESETS

    rate = MEASURED_RATES.get((run.arch, run.preset))
    if rate is None or run.preset not in PRESETS.get(run.arch, {}):
        return None
    model, train = PRESETS[run.arch][run.preset]
    return rate * (model.n_layers / run.config.model.n_layers) * (train.batch_size / run.config.train.batch_size)


def estimate(runs: list[StudyRun], out: Path, stages: tuple[str, ...], probes: ProbeSettings | None = None,
             calibrated: dict[str, float] | None = None) -> list[RunEstimate]:
    """One estimate per run (see the module docstring for the sources). Pass every run of the
    grid: finished ones are where the "same kind" and stage times come from."""
    probes = probes or ProbeSettings()
    calibrated = calibrated or {}
    measured: dict[tuple | str, list[float]] = {}  # finished runs' rates by kind (step_key) and by size
    stage_times: dict[str, list[float]] = {}  # seconds per run; for probes, per probe site
    for run in runs:
        step, rate = logged_progress(checkpoint_dir(out, run))
        if rate and step >= run.config.train.steps:
            measured.setdefault(step_key(run.config), []).append(rate)
            measured.setdefault(_size(run), []).append(rate)
        done = result_dir(out, run) / "done.json"
        if done.exists():
            for stage, seconds in json.loads(done.read_text()).get("stages", {}).items():
                if seconds is not None:
                    stage_times.setdefault(stage, []).append(seconds / probe_sites(run, probes) if stage == "probes" else seconds)
    estimates = []
    for run in runs:
        stage_s, unknown_stages = 0.0, []
        for stage in stages:
            per_run = statistics.median(stage_times[stage]) if stage in stage_times else STAGE_SECONDS.get(stage)
            if per_run is None:
                unknown_stages.append(stage)
            else:
                stage_s += per_run * (probe_sites(run, probes) if stage == "probes" else 1)
        step, rate = logged_progress(checkpoint_dir(out, run))
        source, kind = ("own log" if rate else "none"), step_key(run.config)
        if not rate and kind in measured:
            rate, source = statistics.median(measured[kind]), "study logs, same kind"
        if not rate and kind in calibrated:
            rate, source = calibrated[kind], "calibrated here"
        if not rate and _size(run) in measured:
            rate, source = statistics.median(measured[_size(run)]), "study logs, same size"
        if not rate and (rate := table_rate(run)):
            source = "measured table"
        estimates.append(RunEstimate(run.name, step, run.config.train.steps, rate, source, stage_s, tuple(unknown_stages)))
    return estimates


def wall_seconds(seconds: list[float], slots: int) -> float | None:
    """The wall time of runs taking ``seconds`` each on ``slots`` parallel slots: their total
    shared out, and never less than the longest of them (a lower bound: slots run unevenly
    full); None without any run."""
    if not seconds:
        return None
    return max(max(seconds), sum(seconds) / max(1, min(slots, len(seconds))))


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5_400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
