"""The study driver: expand the grid, skip what is finished, run the rest as Ray tasks, show
progress across runs, gather ``study.csv``, draw the study's figure and write its page.

Ray: by default a private Ray instance starts inside this process on this machine
(``address="local"``, ``num_cpus`` = the machine's cores or ``cpus``); ``address`` (or the
``RAY_ADDRESS`` environment variable) joins a cluster started with ``ray start`` instead.
Each run is one task declaring ``cpus_per_run`` CPUs (its torch thread count) and, where the
cluster has GPUs, ``gpus_per_run`` GPU(s). Workers read and write the study's output folder,
so on a cluster it must sit on a filesystem every node shares.

Nothing lost, nothing done twice: a run whose rows are current (``run.is_done``) is not
submitted; an interrupted one resumes from its checkpoint; a task whose worker dies is
retried (``max_retries``) and resumes the same way; the next invocation of the study does
the rest. ``study.csv`` is rebuilt from the runs' own tables each time, so it never holds a
run twice.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd

from workbench.study.estimate import calibrate, calibration, estimate, format_duration, logged_progress, wall_seconds
from workbench.study.run import ROW_COLUMNS, checkpoint_dir, execute_run, is_done, result_dir, stage_settings
from workbench.study.spec import IDENTITY, Study, StudyRun
from workbench.files import atomic_write_text

MAX_RETRIES = 2  # a task whose worker process dies (OOM, a killed node) runs again, resuming



def current_settings(study: Study, run: StudyRun) -> dict[str, dict]:
    """Each stage's settings as the study file asks for them now (``stage_settings``)."""
    return {stage: stage_settings(stage, study.probes, study.eval_graphs, study.patching_graphs, run.config.task.num_test) for stage in study.stages}

def plan(study: Study, subset: list[str] | None = None) -> tuple[list[StudyRun], list[StudyRun], list[str]]:
    """(every run of the grid, the runs selected by ``subset``, notes on skipped grid points)."""
    runs, notes = study.runs()
    if not subset:
        return runs, runs, notes
    return runs, study.select(runs, subset), study.skip_notes(subset)


def dry_run(study: Study, out: Path, subset: list[str] | None = None, cpus: int | None = None, calibrate_steps: int = 0) -> list[str]:
    """Lines listing the selected runs, each with its state and estimated time, and the total.
    ``calibrate_steps`` > 0 first times that many training steps of each distinct kind of run
    not yet started (no trainer log of its own), on this machine (``estimate.calibrate``)."""
    runs, selected, notes = plan(study, subset)
    if calibrate_steps:  # the runs still to train that have no rate of their own yet
        untrained = [run for run in selected if logged_progress(checkpoint_dir(out, run))[1] is None]
        calibrate(untrained, out, study.cpus_per_run, calibrate_steps)
    guesses = {g.run: g for g in estimate(runs, out, study.stages, study.probes, calibration(out, study.cpus_per_run))}  # the whole grid's finished runs are measurements
    estimates = [guesses[run.name] for run in selected]
    lines = [f"study {study.name}: {len(selected)} runs ({', '.join(study.stages)}), output {out}", *notes]
    known, unknown, todo = [], 0, 0
    for run, guess in zip(selected, estimates):
        if is_done(out, run, study.stages, study.plateau, current_settings(study, run)):
            state, seconds = "done", 0.0
        else:
            todo += 1
            state, seconds = (f"step {guess.steps_done}/{guess.steps}" if guess.steps_done else f"{guess.steps} steps"), guess.seconds
            if seconds is None:
                unknown += 1
            else:
                known.append(seconds)
        rate = f"{guess.steps_per_s:.1f} steps/s ({guess.source})" if guess.steps_per_s else "rate unknown"
        lines.append(f"  {run.name:<48} {state:<16} {rate:<36} ~{format_duration(seconds)}")
    slots = _slots(study, cpus)
    unmeasured = sorted({stage for guess in estimates for stage in guess.unmeasured_stages})
    lines.append(f"to run: {todo} of {len(selected)}; estimated {format_duration(sum(known))} of run time, about "
                 f"{format_duration(wall_seconds(known, slots) or 0.0)} on {slots} parallel slot(s)"
                 + (f"; {unknown} run(s) without an estimate left out" if unknown else "")
                 + (f"; not counted: {', '.join(unmeasured)} (no finished run of this study has timed it yet)" if unmeasured else ""))
    return lines


def _connect(address: str | None, cpus: int | None) -> bool:
    """Start or join Ray; True if this process started it (and so shuts it down)."""
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
        return True
    ray.init(address="local", num_cpus=cpus or os.cpu_count(), include_dashboard=False, object_store_memory=200 * 1024**2, log_to_driver=True)
    return True


def run_study(
    study: Study, out: str | Path, subset: list[str] | None = None, address: str | None = None, cpus: int | None = None,
    progress: bool = True, poll_s: float = 10.0, results_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Run the selected runs that are not finished, then gather ``study.csv`` (every finished
    run of the grid), draw the figure and write ``report.html``. Returns the study table.
    ``results_dir``: also publish the selected runs' rows, their summary over seeds and the
    provenance there (``publish_study``), once every selected run has finished.

    Raises ``RuntimeError`` naming the runs that failed (after gathering the others)."""
    from workbench.publish import source_commit

    started, code = time.time(), source_commit()
    out = Path(out)
    runs, selected, notes = plan(study, subset)
    for note in notes:
        print(note, flush=True)
    todo = [run for run in selected if not is_done(out, run, study.stages, study.plateau, current_settings(study, run))]
    print(f"study {study.name}: {len(selected) - len(todo)} of {len(selected)} selected runs already finished, {len(todo)} to run", flush=True)
    failed: dict[str, str] = {}
    trained: set[str] = set()
    if todo:
        failed, trained = _run_tasks(study, out, todo, address, cpus, progress, poll_s)
    table = gather(study, out, runs)
    if len(table):
        from workbench.study.report import write_study_report

        print(f"wrote {write_study_report(study, out, table)}", flush=True)
    if failed:
        raise RuntimeError("failed runs (run the study again to retry them):\n" + "\n".join(f"  {name}: {error}" for name, error in failed.items()))
    if results_dir is not None:
        publish_study(study, out, table, selected, trained, results_dir, started, subset, _slots(study, cpus), code)
    return table


def publish_study(study: Study, out: Path, table: pd.DataFrame, selected: list[StudyRun], trained: set[str],
                  results_dir: str | Path, started: float, subset: list[str] | None, parallel_runs: int | None = None,
                  code: dict | None = None) -> Path:
    """The selected runs' rows (``study.csv``), their mean and spread over seeds
    (``summary.csv``), their training curves (``curves.csv``) and the provenance, into
    ``results_dir``. Each run's training time and
    steps are those its own ``done.json`` recorded when it was trained; ``parallel_runs`` (how
    many ran at once) defaults to the slots of a local Ray on this machine's cores; ``code`` is
    the checkout at the study's start (``publish.provenance``)."""
    import json

    from workbench.publish import provenance, publish
    from workbench.study.figures import per_seed, summary

    names = [run.name for run in selected]
    rows = table[table["run"].isin(names)].reset_index(drop=True)
    runs = []
    for run in selected:
        done = json.loads((result_dir(out, run) / "done.json").read_text())
        runs.append({"run": run.name, "steps": done.get("train_steps"), "train_seconds": round(done.get("train_elapsed_s") or 0.0, 1),
                     "stage_seconds": {k: round(v, 1) for k, v in (done.get("stages") or {}).items() if v is not None},
                     "trained_in_this_invocation": run.name in trained,
                     **({"threads": done["train_threads"]} if done.get("train_threads") is not None else {})})
    import torch

    device = "cuda" if study.gpus_per_run and torch.cuda.is_available() else "cpu"  # the driver's machine
    record = provenance(started, [run.seed for run in selected], study.cpus_per_run, device, runs, code,
                        study=study.name, study_file=str(study.source), subset=subset or [], parallel_runs=parallel_runs or _slots(study))
    return publish(results_dir, {"study": rows, "summary": summary(per_seed(rows)), "curves": training_curves(out, selected)}, record)


def training_curves(out: Path, runs: list[StudyRun]) -> pd.DataFrame:
    """Each run's ``metrics.jsonl`` as tidy rows (identity, step, split, metric, position,
    value): how r2 was learned, not only where it ended."""
    from workbench.checkpoint import read_metrics
    from workbench.evaluate import metrics_frame

    frames = [metrics_frame(read_metrics(checkpoint_dir(out, run))).assign(**run.identity()) for run in runs]
    columns = [*IDENTITY, "step", "split", "metric", "position", "value"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def _slots(study: Study, cpus: int | None = None) -> int:
    """How many runs a local Ray of ``cpus`` CPUs (the machine's cores by default) runs at once."""
    return max(1, int((cpus or os.cpu_count() or 1) // max(study.cpus_per_run, 1e-9)))


def _run_tasks(study: Study, out: Path, todo: list[StudyRun], address: str | None, cpus: int | None, progress: bool,
               poll_s: float) -> tuple[dict[str, str], set[str]]:
    """Run ``todo`` as Ray tasks; (failed runs and their errors, runs that trained steps here)."""
    import ray

    owned = _connect(address, cpus)
    try:
        gpus = study.gpus_per_run
        if gpus == "auto":
            gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
        task = ray.remote(execute_run).options(num_cpus=study.cpus_per_run, num_gpus=gpus, max_retries=MAX_RETRIES, retry_exceptions=False)
        threads = max(1, int(study.cpus_per_run))
        names = {run.name for run in todo}  # estimated among the whole grid: its finished runs are measurements
        guesses = {g.run: g for g in estimate(study.runs()[0], out, study.stages, study.probes, calibration(out, study.cpus_per_run)) if g.run in names}
        ordered = longest_first(todo, guesses)
        pending = {
            task.remote(run, str(out.resolve()), study.stages, study.probes, study.eval_graphs, study.patching_graphs, threads, study.plateau): run
            for run in ordered
        }
        slots = max(1, int(ray.cluster_resources().get("CPU", 1) // max(study.cpus_per_run, 1e-9)))
        return _follow(out, todo, pending, guesses, progress, poll_s, slots)
    except KeyboardInterrupt:
        print("\ninterrupted: finished runs and the last checkpoint of every started run are kept; run the study again to resume", flush=True)
        raise
    finally:
        if owned:
            ray.shutdown()


def longest_first(runs: list[StudyRun], guesses: dict) -> list[StudyRun]:
    """The runs by estimated time left, longest first (runs without an estimate last, in grid
    order): Ray starts tasks in submission order, and a long run started last would run alone
    while the other slots sit idle."""
    return sorted(runs, key=lambda run: -(guesses[run.name].seconds or 0.0) if run.name in guesses else 0.0)


def _follow(out: Path, todo: list[StudyRun], pending: dict, guesses: dict, progress: bool, poll_s: float,
            slots: int = 1) -> tuple[dict[str, str], set[str]]:
    """Wait for the tasks, printing one line per finished run and (with ``progress``) a line
    of runs done/total, the current summed step rate and the ETA every ``poll_s`` seconds.
    Returns the failed runs (name -> error) and the runs that trained steps in their task."""
    import ray

    failed: dict[str, str] = {}
    trained: set[str] = set()
    total, finished, started = len(todo), 0, time.perf_counter()
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=poll_s)
        for ref in ready:
            run = pending.pop(ref)
            finished += 1
            try:
                summary = ray.get(ref)
                if summary["trained_steps"] > 0:
                    trained.add(run.name)
                print(f"[{finished}/{total}] {run.name}: {summary['steps']} steps at {summary['steps_per_s']:.1f} steps/s, "
                      f"{summary['rows']} rows, {summary['seconds']:.0f} s in this task", flush=True)
            except Exception as error:  # a failed run must not stop the others
                failed[run.name] = str(error).strip().splitlines()[-1][:300]
                print(f"[{finished}/{total}] {run.name}: FAILED: {failed[run.name]}", flush=True)
        if progress and pending:
            print(_progress_line(out, list(pending.values()), finished, total, guesses, time.perf_counter() - started, slots), flush=True)
    return failed, trained


def _progress_line(out: Path, running: list[StudyRun], finished: int, total: int, guesses: dict, elapsed: float, slots: int) -> str:
    """Runs done/total, steps left, the summed step rate of the runs training now, and an ETA:
    each unfinished run's time left (its own logged rate, else its estimate, from the step it
    has reached) spread over the parallel slots, and never shorter than the longest run."""
    steps_left, rate, left_s, unknown = 0, 0.0, [], 0
    for run in running:
        step, run_rate = logged_progress(checkpoint_dir(out, run))
        steps = run.config.train.steps
        steps_left += max(0, steps - step)
        training = bool(run_rate) and 0 < step < steps
        rate += run_rate if training else 0.0
        guess = guesses.get(run.name)
        eta_rate = run_rate if training else (guess.steps_per_s if guess else None)
        if eta_rate:
            left_s.append(max(0, steps - step) / eta_rate + (guess.stage_s if guess else 0.0))
        else:
            unknown += 1
    eta = wall_seconds(left_s, slots)
    if rate:
        speed = f"at {rate:.1f} steps/s (runs training now)"
    elif steps_left == 0:
        speed = "(training done; evaluation, probes or patching running)"
    else:
        speed = "(no rate logged yet: the first evaluation writes it; ETA from the estimates)"
    return (f"runs {finished}/{total} done, {len(running)} queued or running; {steps_left} steps left {speed}; "
            f"elapsed {format_duration(elapsed)}, ETA ~{format_duration(eta)} on {slots} slot(s)"
            + (f" ({unknown} run(s) without an estimate left out)" if unknown else ""))


def gather(study: Study, out: Path, runs: list[StudyRun]) -> pd.DataFrame:
    """``study.csv``: the rows of every finished run of the grid, in grid order; one row per
    measurement, with the identity columns of ``workbench.study.spec.IDENTITY``."""
    frames = [pd.read_csv(result_dir(out, run) / "rows.csv", keep_default_na=False, na_values=[""]) for run in runs if is_done(out, run, study.stages, study.plateau, current_settings(study, run))]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*IDENTITY, *ROW_COLUMNS])
    for column in ("hook", "overrides"):  # an all-empty column reads as float NaN
        table[column] = table[column].astype(object).fillna("")
    atomic_write_text(out / "study.csv", table.to_csv(index=False))
    missing = len(runs) - len(frames)
    print(f"wrote {out / 'study.csv'}: {len(frames)} of {len(runs)} runs of the grid" + (f" ({missing} not finished)" if missing else ""), flush=True)
    return table
