"""Run a study's runs side by side on one GPU machine, without Ray, inside a time budget.

Why this exists: a lent GPU machine has no Ray (nor a registry to install it from) and is lent
for minutes, all tries together. So the runs start at once as processes sharing the one GPU;
each first times its own training steps for ``--calibrate-seconds`` while all the others do the
same (the rate under the contention it will train in). From those rates the driver picks the
largest step budget of ``--steps`` that fits ``--train-seconds`` for the slowest run (if none
of at least ``--min-steps`` does, it keeps only the runs of ``--keep-graph`` and assumes they
go ``--keep-speedup`` times faster), sets ``train.steps`` of every run of the arch to it, and
the runs train, evaluate, probe and patch exactly as a study's Ray task does
(``workbench.study.run.execute_run``). Runs still training at ``--deadline-seconds`` are
interrupted (a resumable checkpoint; no stages), and any still working at ``--stop-seconds`` are
ended. Then the study is gathered and published as
``workbench study --results`` does, its provenance saying which budget was chosen and why, and
``--pack DIR`` writes the published tables, the runs' stage tables and logs, and the weights
of the runs in priority order (``--pack-first`` objectives first) into tar.gz parts of at most
``--part-mib`` MiB, within ``--pack-mib`` in all, to bring back from the machine.

    python scripts/gpu_study.py studies/deep_solvers.toml --subset solvers graphs=2,5,50 \\
        --out runs/studies/deep_solvers --results results/deep_solvers_gpt \\
        --train-seconds 290 --steps 8000 6000 5000 4000 3000 2000 --pack $OUT --pack-first future_bow bst

Each run uses one thread of torch and of the BLAS under scikit-learn's probes: the machine's
cores are shared by all the runs. (In the call of 2026-12-04, six runs whose probes each ran a
BLAS thread per core did not finish them in the 4 minutes left; the same probes take about a
minute per run on one CPU core.)

Afterwards set the chosen ``train.steps`` in the study file (the provenance names it), so that
the runs brought back read as finished there (``workbench study --dry-run``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import sys
import tarfile
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from workbench.study.spec import Study, StudyRun


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def time_steps(config, seconds: float, barrier) -> float:
    """Training steps per second of ``config``'s run, timed for ``seconds`` after a warm-up,
    all runs timing at once (``barrier``); the model is thrown away (training starts afresh)."""
    from workbench.study.estimate import trainer_step

    step, sync = trainer_step(config, batches=16)
    for i in range(5):  # warm-up: allocations, kernels' first launches
        step(i)
    sync()
    _meet(barrier)
    started, steps = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        step(5 + steps)
        steps += 1
        if steps % 10 == 0:
            sync()
    sync()
    rate = steps / (time.perf_counter() - started)
    _meet(barrier)
    return rate


def _meet(barrier) -> None:
    """Wait for the other runs; a run that failed breaks the barrier, and the rest go on alone."""
    import threading

    try:
        barrier.wait(timeout=300)
    except threading.BrokenBarrierError:
        pass


def worker(run: StudyRun, out: str, study: Study, calibrate_s: float, barrier, conn) -> None:
    """One run: time its steps, send the rate, receive its run (with the chosen steps) or None,
    train it and compute its stages."""
    import torch

    torch.set_num_threads(1)
    try:
        conn.send(("rate", time_steps(run.config, calibrate_s, barrier)))
    except Exception:
        barrier.abort()
        conn.send(("error", traceback.format_exc()[-1500:]))
        return
    chosen = conn.recv()
    if chosen is None:
        conn.send(("skipped", None))
        return
    from workbench.study.run import execute_run
    from workbench.train import TrainingInterrupted

    try:
        summary = execute_run(chosen, out, study.stages, study.probes, study.eval_graphs, study.patching_graphs, 1, study.plateau)
        conn.send(("done", summary))
    except TrainingInterrupted as stop:
        conn.send(("interrupted", stop.step))
    except Exception:
        conn.send(("error", traceback.format_exc()[-1500:]))


def with_steps(study: Study, arch: str, steps: int) -> dict[str, StudyRun]:
    """The study's runs with ``train.steps`` of ``arch``'s runs set to ``steps``."""
    study.sets[arch] = tuple(item for item in study.sets.get(arch, ()) if not item.startswith("train.steps=")) + (f"train.steps={steps}",)
    return {run.name: run for run in study.runs()[0]}


def choose_steps(rates: dict[str, float], candidates: list[int], budget_s: float, margin: float) -> int | None:
    """The largest candidate the slowest run trains within ``budget_s`` (its rate / ``margin``)."""
    slowest = min(rates.values())
    fitting = [s for s in sorted(candidates, reverse=True) if s * margin / slowest <= budget_s]
    return fitting[0] if fitting else None


def pack(out: Path, results: Path, runs: list[StudyRun], finished: list[StudyRun], first: list[str], dest: Path, part_mib: float,
         total_mib: float, state_file: Path, max_parts: int = 7) -> list[Path]:
    """tar.gz parts: the published tables, each run's stage tables, config and trainer log, then
    the weights of as many ``finished`` runs as fit (``first`` objectives first, in the runs'
    order). Paths are stored relative to the current folder, as they are to be unpacked."""
    from workbench.study.run import checkpoint_dir, result_dir

    small = [results, out / "study.csv", out / "summary.csv", out / "report.html", state_file]
    small += [p for p in out.glob("*.png")]
    for run in runs:
        small.append(result_dir(out, run))
        small += [checkpoint_dir(out, run) / name for name in ("config.json", "metrics.jsonl")]
    ranked = sorted(finished, key=lambda r: first.index(r.objective) if r.objective in first else len(first))
    weights = [checkpoint_dir(out, run) / "model.safetensors" for run in ranked]
    budget, limit = (total_mib - 1) * 2**20, part_mib * 2**20  # a MiB kept for the tables and logs
    groups, current, size, used, parts = [[p for p in small if p.exists()]], [], 0, 0, []
    for file in weights:
        if not file.exists():
            continue
        nbytes = file.stat().st_size
        if used + nbytes > budget:
            log(f"pack: no room for {file.parent.name}'s weights ({nbytes / 2**20:.1f} MiB)")
            continue
        used += nbytes
        if size + nbytes > limit and current:
            groups.append(current)
            current, size = [], 0
        current.append(file)
        size += nbytes
    if current:
        groups.append(current)
    if len(groups) > max_parts:
        log(f"pack: {len(groups)} parts, more than {max_parts}: the last {len(groups) - max_parts} left out")
        groups = groups[:max_parts]
    dest.mkdir(parents=True, exist_ok=True)
    for i, group in enumerate(groups, 1):
        path = dest / f"part{i}.tar.gz"
        with tarfile.open(path, "w:gz", compresslevel=1) as tar:
            for item in group:
                tar.add(item, arcname=os.path.relpath(item) if not os.path.relpath(item).startswith("..") else str(item.resolve()))
        parts.append(path)
        log(f"pack: {path.name} {path.stat().st_size / 2**20:.1f} MiB, {len(group)} item(s)")
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("spec")
    parser.add_argument("--subset", nargs="+", default=[])
    parser.add_argument("--out", required=True)
    parser.add_argument("--results", required=True)
    parser.add_argument("--arch", default="gpt", help="the arch whose train.steps is chosen (default gpt)")
    parser.add_argument("--steps", nargs="+", type=int, default=[10000, 8000, 6000, 5000, 4000, 3000, 2000])
    parser.add_argument("--min-steps", type=int, default=4000)
    parser.add_argument("--keep-graph", help="when no budget of --min-steps fits, keep only this graph's runs")
    parser.add_argument("--keep-speedup", type=float, default=1.5)
    parser.add_argument("--calibrate-seconds", type=float, default=20.0)
    parser.add_argument("--train-seconds", type=float, default=300.0)
    parser.add_argument("--margin", type=float, default=1.15, help="time per step is taken as this many times the timed one")
    parser.add_argument("--deadline-seconds", type=float, default=1e9, help="from the start: interrupt runs still training then")
    parser.add_argument("--stop-seconds", type=float, default=1e9, help="from the start: end every run still working then, and publish and pack what finished")
    parser.add_argument("--pack", help="folder for the tar.gz parts to bring back")
    parser.add_argument("--pack-first", nargs="*", default=[])
    parser.add_argument("--part-mib", type=float, default=15.0)
    parser.add_argument("--pack-mib", type=float, default=60.0)
    args = parser.parse_args()
    started = time.time()

    from workbench.study import load_study
    from workbench.study.driver import gather, plan, publish_study
    from workbench.study.report import write_study_report
    from workbench.study.run import checkpoint_dir

    study = load_study(args.spec)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _, selected, _ = plan(study, args.subset)
    if not selected:
        raise SystemExit(f"error: --subset {' '.join(args.subset)} selects no run of {args.spec}")
    log(f"{len(selected)} runs: {', '.join(r.name for r in selected)}")

    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # the workers inherit these
        os.environ[variable] = "1"
    context = mp.get_context("spawn")
    barrier = context.Barrier(len(selected))
    workers = {}
    for run in selected:
        parent, child = context.Pipe()
        process = context.Process(target=worker, args=(run, str(out), study, args.calibrate_seconds, barrier, child))
        process.start()
        child.close()  # the worker's end lives in the worker alone: its death reads as EOF here
        workers[run.name] = (process, parent)

    rates, errors = {}, {}
    for name, (process, conn) in workers.items():
        kind, value = receive(conn, process)
        (rates if kind == "rate" else errors)[name] = value
        if kind != "rate":
            barrier.abort()  # the others stop waiting for this one
    for name, error in errors.items():
        log(f"{name}: calibration failed:\n{error}")
    for name, rate in sorted(rates.items(), key=lambda kv: kv[1]):
        log(f"calibration: {name} {rate:.1f} steps/s with {len(selected)} runs at once")

    # the budget of --arch's runs, from their rates; the other archs keep the study's steps
    kept = [run for run in selected if run.name in rates]
    arch_rates = {run.name: rates[run.name] for run in kept if run.arch == args.arch}
    steps = choose_steps(arch_rates, args.steps, args.train_seconds, args.margin) if arch_rates else None
    if (steps is None or steps < args.min_steps) and args.keep_graph:
        from workbench.task import GraphSpec

        graph = str(GraphSpec.parse(args.keep_graph))
        fewer = [run for run in kept if run.graph == graph]
        sped = {run.name: rates[run.name] * args.keep_speedup for run in fewer if run.arch == args.arch}
        more = choose_steps(sped, args.steps, args.train_seconds, args.margin) if sped else None
        if more is not None and more >= args.min_steps:
            log(f"no budget of {args.min_steps}+ steps fits all runs: keeping the {len(fewer)} runs of {graph}")
            steps, kept = more, fewer
    if steps is None:
        steps, kept = 0, []
        log("no step budget fits: nothing trains")
    else:
        log(f"chosen: train.steps={steps} for {args.arch} ({len(kept)} runs)")
    chosen = with_steps(study, args.arch, steps) if steps else {run.name: run for run in selected}
    kept_names = {run.name for run in kept}
    for name, (process, conn) in workers.items():
        if name in rates:
            conn.send(chosen[name] if name in kept_names else None)

    states: dict[str, tuple[str, object]] = {name: ("error", error) for name, error in errors.items()}
    interrupted = set()
    while len(states) < len(workers):
        for name, (process, conn) in workers.items():
            if name not in states and (conn.poll() or not process.is_alive()):
                states[name] = kind, value = receive(conn, process)
                log(f"{name}: {kind}" + (f" {value}" if kind != "done" else f", {value['steps']} steps at {value['steps_per_s']:.1f} steps/s, {value['seconds']:.0f} s"))
        if time.time() - started > args.deadline_seconds:  # runs still short of their schedule save a checkpoint and stop
            for name, (process, conn) in workers.items():
                run = chosen[name]
                if name in kept_names and name not in states and name not in interrupted and saved_step(out, run) < run.config.train.steps:
                    log(f"{name}: deadline, still training at step {saved_step(out, run)}: interrupting")
                    os.kill(process.pid, signal.SIGINT)
                    interrupted.add(name)
        if time.time() - started > args.stop_seconds:
            for name, (process, conn) in workers.items():
                if name not in states and not conn.poll():
                    log(f"{name}: stop time reached before its stages finished: ended")
                    process.terminate()
                    states[name] = ("stopped", "stop time reached")
        time.sleep(2)
    for process, _ in workers.values():
        process.join(timeout=30)

    runs = [chosen[name] for name, (kind, _) in states.items() if kind == "done"]
    trained = {name for name, (kind, summary) in states.items() if kind == "done" and summary["trained_steps"] > 0}
    if runs:
        table = gather(study, out, list(chosen.values()))
        write_study_report(study, out, table)
        results = publish_study(study, out, table, runs, trained, args.results, started, args.subset, parallel_runs=len(chosen))
        record = json.loads((results / "provenance.json").read_text())
        record.update(
            commit=record.get("commit") or os.environ.get("WORKBENCH_COMMIT"),
            runner="scripts/gpu_study.py: one process per run on one device, no Ray",
            parallel_runs=len(kept),
            budget={"train_seconds": args.train_seconds, "calibrate_seconds": args.calibrate_seconds, "margin": args.margin,
                    "candidates": args.steps, "min_steps": args.min_steps, "keep_graph": args.keep_graph, "keep_speedup": args.keep_speedup,
                    "chosen_steps": steps, "arch": args.arch, "runs_at_calibration": len(selected),
                    "calibrated_steps_per_s": {name: round(rate, 2) for name, rate in rates.items()}},
            not_finished={name: [kind, str(value)[-300:]] for name, (kind, value) in states.items() if kind != "done"},
        )
        (results / "provenance.json").write_text(json.dumps(record, indent=1) + "\n")
    log(f"{len(runs)} of {len(selected)} runs finished; {time.time() - started:.0f} s")
    if args.pack:
        state_file = out / "gpu_study_state.json"
        state_file.write_text(json.dumps({"states": {k: [v[0], str(v[1])[-2000:]] for k, v in states.items()}, "rates": rates, "steps": steps}, indent=1))
        finished = [run for run in chosen.values() if saved_step(out, run) >= run.config.train.steps]  # others cannot resume without their optimizer state
        pack(out, Path(args.results), list(chosen.values()), finished, args.pack_first, Path(args.pack), args.part_mib, args.pack_mib, state_file)
    log(f"done in {time.time() - started:.0f} s")
    if not runs:
        raise SystemExit(1)


def receive(conn, process) -> tuple[str, object]:
    """The worker's next message, or ("error", ...) when it died before sending one."""
    while not conn.poll(1.0):
        if not process.is_alive() and not conn.poll():
            return "error", f"worker exited with code {process.exitcode}"
    try:
        return conn.recv()
    except EOFError:
        return "error", f"worker exited with code {process.exitcode}"


def saved_step(out: Path, run: StudyRun) -> int:
    """The step of the run's saved checkpoint (0 before its first save)."""
    from workbench.checkpoint import saved_step as step_of
    from workbench.study.run import checkpoint_dir

    return step_of(checkpoint_dir(out, run))


if __name__ == "__main__":
    main()
