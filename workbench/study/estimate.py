"""How long a study's runs will take, from measured step rates.

Where a number comes from, in order of preference:
1. the run's own trainer log (``metrics.jsonl``: step and elapsed seconds at each
   evaluation, which include the evaluations themselves) when the run has started;
2. the median rate of the study's runs already trained with the same arch, preset and model
   size (their logs, as in 1);
3. ``MEASURED_RATES``: cpu-preset training rates measured on this project's 2-core CPU at one
   torch thread per run (the study's default), scaled by the model's layers relative to the
   preset. Stage times (evaluation, probes, patching) come from the study's finished runs
   (``done.json``) where there are some, else from ``STAGE_SECONDS``.
A run with none of these has no estimate, and the total says how many such runs it left out.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from workbench.study.run import checkpoint_dir, result_dir
from workbench.study.spec import StudyRun

# Training steps per second (evaluations included) of one cpu-preset run, from the main job's
# measured times on this project's 2-core CPU (README, 2026-11-25: G(2,5,50), two torch
# threads, one run at a time): GPT 1,500 steps in 126-136 s, Mamba 1,000 steps in 162-224 s.
# A study runs one thread per run, two at a time on 2 cores, so read these as an upper bound
# per run; once a run has started, its own log replaces them. (A one-thread measurement on
# 2026-11-26 beside other work gave GPT 4.5 steps/s on G(2,3,50) and 1.2 on G(2,5,50): a
# loaded machine can be several times slower.)
MEASURED_RATES: dict[tuple[str, str], float] = {("gpt", "cpu"): 1_500 / 131, ("mamba", "cpu"): 1_000 / 193}
PRESET_LAYERS = {("gpt", "cpu"): 2, ("mamba", "cpu"): 2}
# Seconds per stage of one cpu-preset run with the shipped studies' settings, where the
# study has no finished run to measure: not measured yet (None = no estimate for the stage).
STAGE_SECONDS: dict[str, float | None] = {"evaluate": None, "probes": None, "patching": None}


@dataclass
class RunEstimate:
    run: str
    steps_done: int
    steps: int
    steps_per_s: float | None
    source: str  # "own log", "study logs", "measured table" or "none"
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


def estimate(runs: list[StudyRun], out: Path, stages: tuple[str, ...]) -> list[RunEstimate]:
    """One estimate per run (see the module docstring for the sources)."""
    measured: dict[tuple, list[float]] = {}
    stage_times: dict[str, list[float]] = {}
    for run in runs:
        step, rate = logged_progress(checkpoint_dir(out, run))
        if rate and step >= run.config.train.steps:
            measured.setdefault(_size(run), []).append(rate)
        done = result_dir(out, run) / "done.json"
        if done.exists():
            for stage, seconds in json.loads(done.read_text()).get("stages", {}).items():
                if seconds is not None:
                    stage_times.setdefault(stage, []).append(seconds)
    stage_s, unknown_stages = 0.0, []
    for stage in stages:
        if stage in stage_times:
            stage_s += statistics.median(stage_times[stage])
        elif STAGE_SECONDS.get(stage) is not None:
            stage_s += STAGE_SECONDS[stage]
        else:
            unknown_stages.append(stage)
    estimates = []
    for run in runs:
        step, rate = logged_progress(checkpoint_dir(out, run))
        source = "own log" if rate else "none"
        if not rate and _size(run) in measured:
            rate, source = statistics.median(measured[_size(run)]), "study logs"
        if not rate and MEASURED_RATES.get((run.arch, run.preset)):
            rate = MEASURED_RATES[run.arch, run.preset] * PRESET_LAYERS[run.arch, run.preset] / run.config.model.n_layers
            source = "measured table"
        estimates.append(RunEstimate(run.name, step, run.config.train.steps, rate, source, stage_s, tuple(unknown_stages)))
    return estimates


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5_400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
