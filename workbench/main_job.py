"""The default experiment, end to end: the README's main job.

1. train ``cpu``-preset models on G(2,5,50), one per job of ``DEFAULT_JOBS``, keeping
   snapshots, plus a second seed of the first one (the reference level of CKA, and the
   report's spread over seeds for that model);
2. evaluate each (the second seed too) on its held-out graphs -> ``results.csv`` (one row per
   measurement);
3. probe each, the second seed too (embedding and every layer, at ``eq`` and ``r1``, every target, with
   controls; Mamba's SSM state for the arm, r2's node and the goal) -> ``probes/probes.csv``
   and one heatmap per target;
4. run the analyses (``workbench.analyses.run``) -> ``analyses/*.csv`` and ``*.png``;
5. write ``report.html`` from those tables and figures.

Every stage is reused when the job runs again: training resumes from its checkpoint (a
finished run is not retrained), and the probe and analysis stages are recomputed whenever
the weights or the config of a checkpoint they read, or their own settings, have changed
(activations are cached on disk either way). The device is resolved once (``train.device``,
"auto" -> CUDA where present) and every stage runs there.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pandas as pd

from workbench.checkpoint import Checkpoint
from workbench.config import DEFAULT_JOBS, DEFAULT_OBJECTIVES, LIGHT_PROBE_GRAPHS, PROBE_GRAPHS, RunConfig, apply_overrides, preset_config  # noqa: F401 (re-exported)
from workbench.evaluate import evaluate, format_table
from workbench.objectives import objective_class
from workbench.task import GraphSpec
from workbench.files import atomic_write_text
from workbench import identity
from workbench.datasets import evaluation_graphs
from workbench.devices import resolve_device
from workbench.train import train

# Probes on 4,096 state features cost ~40 s per target and checkpoint: the state is asked only
# the question itself (the residual-stream probes cover every target).
SSM_STATE_TARGETS = ("arm",)
ANALYSIS_GRAPHS = 2_000  # held-out graphs of the analyses (cheat test, CKA; subsets for the costlier ones)


def default_configs(
    jobs: tuple[tuple[str, str], ...] = DEFAULT_JOBS, graph: GraphSpec = GraphSpec(2, 5, 50), overrides: tuple[str, ...] = ()
) -> list[RunConfig]:
    """The ``cpu`` preset of every (arch, objective) job on ``graph`` (its schedule is the
    main job's), keeping a snapshot at every evaluation, then
    ``overrides`` (``section.field=value``, as ``--set``). A job whose objective does not apply
    to its arch (mlm_u on Mamba) is left out, and says so."""
    configs = []
    for arch, objective in jobs:
        if arch not in objective_class(objective).archs:
            print(f"skipped {arch}-{objective}: the objective does not apply to {arch} (applies to {', '.join(objective_class(objective).archs)})", flush=True)
            continue
        config = preset_config("cpu", objective=objective, arch=arch, degree=graph.degree, path_length=graph.path_length, num_nodes=graph.num_nodes)
        config.train = replace(config.train, snapshot_every=config.train.eval_every)
        configs.append(apply_overrides(config, list(overrides)))
    return configs


def run_name(config: RunConfig) -> str:
    """The main job's folder of a run: ``gpt-next_token``, ``gpt-next_token-s1`` (``identity.run_name``)."""
    return identity.run_name(config.arch, config.objective, seed=config.train.seed or None)


def run_main_job(
    out: str | Path,
    configs: list[RunConfig] | None = None,
    seed_reference: bool = True,
    probes: bool = True,
    analyses: bool = True,
    probe_graphs: tuple[int, int] = PROBE_GRAPHS,
    training_probe_graphs: tuple[int, int] = LIGHT_PROBE_GRAPHS,
    progress: bool = True,
    results_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Run the stages above for ``configs`` (default: ``default_configs()``); returns results.

    ``probe_graphs`` = (n_train, n_test) graphs of every probe of the probe stage;
    ``training_probe_graphs`` the same for the probes along training (analysis stage).
    ``results_dir``: also publish the tidy tables there with their provenance
    (``workbench.publish``), for docs/findings.md.
    """
    from workbench.publish import source_commit

    started, code = time.time(), source_commit()
    out = Path(out)
    configs = configs or default_configs()
    devices = {str(resolve_device(c.train.device)) for c in configs}
    if len(devices) > 1:
        raise ValueError(f"the main job runs on one device; its configs ask for {sorted(devices)}")
    device = resolve_device(configs[0].train.device)
    checkpoints: list[Checkpoint] = []
    frames = []
    for config in configs:
        with _timed(f"training {run_name(config)}"):
            checkpoint = train(config, out / "checkpoints" / run_name(config), progress=progress)
        checkpoints.append(checkpoint)
        frames.append(_evaluate_run(checkpoint, device))
    results = pd.concat(frames, ignore_index=True)

    # The seed reference: the first job again with the next seed. CKA compares the two; it is
    # evaluated and probed too, so the report gives that model's findings over two seeds.
    seed_pairs = []
    if seed_reference:
        first = configs[0]
        second = replace(first, train=replace(first.train, seed=first.train.seed + 1))
        with _timed(f"training {run_name(second)}"):
            seed_pairs.append((checkpoints[0], train(second, out / "checkpoints" / run_name(second), progress=progress)))
        results = pd.concat([results, _evaluate_run(seed_pairs[0][1], device)], ignore_index=True)
    atomic_write_text(out / "results.csv", results.to_csv(index=False))
    print(f"\nwrote {out / 'results.csv'}", flush=True)
    if probes:
        with _timed("probe stage"):
            run_probe_stage(checkpoints + [b for _, b in seed_pairs], out / "probes", probe_graphs, progress=progress)
    if analyses:
        with _timed("analysis stage and report"):
            first_seeds = results[results["seed"] == results.groupby(["arch", "objective"])["seed"].transform("min")]
            run_analysis_stage(checkpoints, first_seeds, out, seed_pairs, training_probe_graphs, progress=progress)
            from workbench.analyses.report import write_report

            print(f"wrote {write_report(out)}", flush=True)
    if results_dir is not None:
        publish_main_job(out, results_dir, checkpoints + [b for _, b in seed_pairs], started, device, code)
    return results


def publish_main_job(out: Path, results_dir: str | Path, checkpoints: list[Checkpoint], started: float, device,
                     code: dict | None = None) -> Path:
    """Copy the job's tidy tables (evaluation, probes, every analysis) into ``results_dir``
    with the job's provenance (``code``: the checkout at the job's start); each run's training
    time is the one its trainer logged."""
    import torch

    from workbench.publish import provenance, publish

    tables = {"results": pd.read_csv(out / "results.csv")}
    if (out / "probes" / "probes.csv").exists():
        tables["probes"] = pd.read_csv(out / "probes" / "probes.csv")
    for csv in sorted((out / "analyses").glob("*.csv")):
        tables[csv.stem] = pd.read_csv(csv)
    runs = [{"run": run_name(c.config), "steps": c.step, "train_seconds": round(c.metrics[-1]["elapsed_s"], 1) if c.metrics else None}
            for c in checkpoints]
    record = provenance(started, [c.config.train.seed for c in checkpoints], torch.get_num_threads(), str(device), runs, code)
    return publish(results_dir, tables, record)


def _evaluate_run(checkpoint: Checkpoint, device) -> pd.DataFrame:
    """The run's evaluation on its held-out graphs, with the identity columns of results.csv."""
    config = checkpoint.config
    test = evaluation_graphs(config.task)
    frame = evaluate(checkpoint.model, test, checkpoint.objective, device=device, parts=checkpoint.parts)
    print(f"\n{run_name(config)}, step {checkpoint.step}, {len(test)} held-out graphs:\n{format_table(frame)}", flush=True)
    columns = identity.row_identity(config, checkpoint.step, graph=config.task.graph)
    return frame.assign(**columns)[[*columns, *frame.columns]]


@contextmanager
def _timed(stage: str) -> Iterator[None]:
    """One line per stage, so a user sees where the job's time goes (and what was reused)."""
    start = time.perf_counter()
    yield
    print(f"[{stage}: {time.perf_counter() - start:.0f} s]", flush=True)


def _is_current(done_file: Path, key: list) -> bool:
    return done_file.exists() and json.loads(done_file.read_text()) == key


def run_probe_stage(checkpoints: list[Checkpoint], out: Path, probe_graphs: tuple[int, int], progress: bool = True) -> pd.DataFrame:
    """The default probe sweep over ``checkpoints``, reusing ``probes.csv`` when it is current."""
    from workbench.identity import stage_key
    from workbench.probes import plot_probe_heatmaps, probe_sweep
    from workbench.probes.activations import RESIDUAL_HOOKS

    table_file, done_file = out / "probes.csv", out / "done.json"
    key = stage_key(checkpoints, {"hooks": list(RESIDUAL_HOOKS), "ssm_state_targets": list(SSM_STATE_TARGETS), "probe_graphs": list(probe_graphs)})
    if table_file.exists() and _is_current(done_file, key):
        print(f"probes: {table_file} is current, reused", flush=True)
        return pd.read_csv(table_file)
    n_train, n_test = probe_graphs
    settings = dict(n_train=n_train, n_test=n_test, cache_dir=out / "activation_cache", progress=progress)
    tables = [probe_sweep(checkpoints, hooks=list(RESIDUAL_HOOKS), **settings)]
    mambas = [c for c in checkpoints if c.config.arch == "mamba"]
    if mambas:
        tables.append(probe_sweep(mambas, hooks=["ssm_state"], targets=list(SSM_STATE_TARGETS), **settings))
    table = pd.concat(tables, ignore_index=True)
    atomic_write_text(table_file, table.to_csv(index=False))
    figures = plot_probe_heatmaps(table, out)
    atomic_write_text(done_file, json.dumps(key) + "\n")
    print(f"wrote {table_file} ({len(table)} probes) and {len(figures)} heatmaps", flush=True)
    return table


def run_analysis_stage(
    checkpoints: list[Checkpoint], results: pd.DataFrame, out: Path, seed_pairs: list, probe_graphs: tuple[int, int], progress: bool = True
) -> None:
    from workbench.analyses.run import analysis_stage_key, run_analyses

    if _is_current(out / "analyses" / "done.json", analysis_stage_key(checkpoints, ANALYSIS_GRAPHS, probe_graphs, seed_pairs)):
        print("analyses: current, reused", flush=True)
        return
    run_analyses(checkpoints, results, out / "analyses", seed_pairs=seed_pairs, n_graphs=ANALYSIS_GRAPHS, probe_graphs=probe_graphs,
                 cache_dir=out / "probes" / "activation_cache", progress=progress)
