"""One run of a study, start to finish: train (resuming), then evaluate, probe and patch it,
then write the run's own tidy table. This is the body of a Ray task; it also runs without Ray.

    OUT/checkpoints/{run}/          the workbench's checkpoint folder (resumable, run-locked)
    OUT/results/{run}/{stage}.csv   each stage's own table (evaluate, probes, patching)
    OUT/results/{run}/{stage}.key.json   what that table was computed from (stage_key) and its seconds
    OUT/results/{run}/rows.csv      the run's rows of study.csv (identity + metric, hook, position, value)
    OUT/results/{run}/done.json     the run's fingerprint (weights + config), the stages and their times

A stage is reused when its key file matches the checkpoint's weights and config and the
stage's settings (``workbench.analyses.run.stage_key``), whatever folder the run sits in.
A killed task leaves at worst a checkpoint to resume and some finished stages; every file
is written atomically.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.stopping import PlateauRule, first_stop
from workbench.study.spec import ProbeSettings, StudyRun

ROW_COLUMNS = ("metric", "hook", "position", "value")


def result_dir(out: Path, run: StudyRun) -> Path:
    return Path(out) / "results" / run.name


def checkpoint_dir(out: Path, run: StudyRun) -> Path:
    return Path(out) / "checkpoints" / run.name


def stage_settings(stage: str, probes: ProbeSettings, eval_graphs: int | None, patching_graphs: int, num_test: int) -> dict[str, Any]:
    """What a stage's result depends on besides the checkpoint (part of its key)."""
    if stage == "evaluate":
        return {"stage": stage, "n_graphs": eval_graphs or num_test}
    if stage == "probes":
        return {"stage": stage, **json.loads(json.dumps(asdict(probes)))}
    return {"stage": stage, "n_graphs": patching_graphs, "untrained_twin": True}


def is_done(out: Path, run: StudyRun, stages: tuple[str, ...], plateau: PlateauRule | None = None,
            settings: dict[str, dict[str, Any]] | None = None) -> bool:
    """Whether the run's rows are current: done.json names these stages, the same stopping
    rule, and a checkpoint with the run's config and the weights now in its folder (checked by
    hash); with ``settings`` (stage -> ``stage_settings``), each stage's table was also computed
    under those settings (its key file says so), so a study file whose [probes] or [patching]
    changed recomputes those stages."""
    from workbench.identity import same_run, weights_sha256

    folder = result_dir(out, run)
    done_file = folder / "done.json"
    if not done_file.exists() or not (checkpoint_dir(out, run) / "model.safetensors").exists() or not (folder / "rows.csv").exists():
        return False
    for stage, wanted in (settings or {}).items():
        key_file = folder / f"{stage}.key.json"
        if not key_file.exists() or json.loads(key_file.read_text()).get("key", {}).get("settings") != json.loads(json.dumps(wanted)):
            return False
    done = json.loads(done_file.read_text())
    return (
        set(stages) <= set(done.get("stages", {}))
        and done.get("plateau") == _rule_dict(plateau)
        and same_run(done.get("config") or {}, json.loads(json.dumps(run.config.to_dict())))
        and done.get("weights_sha256") == weights_sha256(checkpoint_dir(out, run))
    )


def _rule_dict(plateau: PlateauRule | None) -> dict[str, Any] | None:
    return None if plateau is None else asdict(plateau)


def training_rows(checkpoint, plateau: PlateauRule) -> pd.DataFrame:
    """Where training ended under the plateau rule: ``train_steps`` (steps trained) and
    ``stopped_by_rule`` (1: the rule stops it there, its reason in ``position``, also when that
    is the cap's step; 0: the cap, the rule never firing)."""
    stopped = first_stop(plateau, checkpoint.metrics)
    reason = stopped[1] if stopped is not None and stopped[0] == checkpoint.step else None
    return pd.DataFrame({"metric": ["train_steps", "stopped_by_rule"], "hook": "", "position": ["", reason or "cap"],
                         "value": [float(checkpoint.step), float(reason is not None)]})


def execute_run(
    run: StudyRun, out: str | Path, stages: tuple[str, ...], probes: ProbeSettings, eval_graphs: int | None = None,
    patching_graphs: int = 1_000, threads: int = 1, plateau: PlateauRule | None = None,
) -> dict[str, Any]:
    """Train ``run`` into ``out`` (resuming; stopped early by ``plateau`` where given, with
    ``train.steps`` the cap), compute its stages (reusing current ones), write rows.csv and
    done.json; returns a summary (name, steps, steps trained by this call, training rate, seconds, rows)."""
    import torch

    from workbench.checkpoint import saved_step
    from workbench.identity import checkpoint_fingerprint, stage_key
    from workbench.files import atomic_write_text
    from workbench.identity import comparable_settings
    from workbench.train import train

    threads = max(1, int(threads))
    torch.set_num_threads(threads)
    out = Path(out)
    previous = result_dir(out, run) / "done.json"
    trained_at = json.loads(previous.read_text()).get("train_threads") if previous.exists() else None
    previous.unlink(missing_ok=True)  # rows.csv is current again only when this run rewrites both
    started = time.perf_counter()
    run_dir = checkpoint_dir(out, run)
    before = saved_step(run_dir)  # the step this call resumes from
    checkpoint = train(run.config, run_dir, progress=False, stop_when=plateau)
    trained_s = time.perf_counter() - started
    log = checkpoint.metrics[-1] if checkpoint.metrics else {"step": checkpoint.step, "elapsed_s": float("nan")}
    folder = result_dir(out, run)
    frames, times = [], {}
    for stage in stages:
        settings = stage_settings(stage, probes, eval_graphs, patching_graphs, run.config.task.num_test)
        key = stage_key([checkpoint], settings)
        table_file, key_file = folder / f"{stage}.csv", folder / f"{stage}.key.json"
        clock = time.perf_counter()
        saved = json.loads(key_file.read_text()) if key_file.exists() else {}
        if table_file.exists() and saved.get("key") == key:
            frame = pd.read_csv(table_file, keep_default_na=False, na_values=[""])
            times[stage] = saved.get("seconds")  # the time it took when it was computed
        else:
            frame = STAGES[stage](checkpoint, settings, threads)
            atomic_write_text(table_file, frame.to_csv(index=False))
            times[stage] = time.perf_counter() - clock
            atomic_write_text(key_file, json.dumps({"key": key, "seconds": times[stage]}) + "\n")
        frames.append(frame)
    if plateau is not None:
        frames.insert(0, training_rows(checkpoint, plateau))
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=ROW_COLUMNS)
    rows = rows.assign(**run.identity())[[*run.identity(), *ROW_COLUMNS]]
    atomic_write_text(folder / "rows.csv", rows.to_csv(index=False))
    fingerprint = checkpoint_fingerprint(checkpoint)
    done = {
        "run": run.name, "weights_sha256": fingerprint["weights_sha256"], "step": checkpoint.step,
        "config": json.loads(json.dumps(comparable_settings(run.config))), "stages": times,
        "train_elapsed_s": log["elapsed_s"], "train_steps": log["step"], "plateau": _rule_dict(plateau),
        # the torch threads that trained it (of the last call that trained it, this one or earlier): a
        # study gathered by a later invocation records its own threads, not each run's
        "train_threads": threads if checkpoint.step > before else trained_at,
    }
    atomic_write_text(folder / "done.json", json.dumps(done, indent=1) + "\n")
    return {"run": run.name, "rows": len(rows), "seconds": time.perf_counter() - started, "train_seconds": trained_s, "trained_steps": checkpoint.step - before,
            "steps": checkpoint.step, "steps_per_s": log["step"] / log["elapsed_s"] if log["elapsed_s"] else float("nan")}


def _evaluate(checkpoint, settings: dict, threads: int) -> pd.DataFrame:
    from workbench.evaluate import evaluate
    from workbench.datasets import evaluation_graphs

    frame = evaluate(checkpoint.model, evaluation_graphs(checkpoint.config.task, settings["n_graphs"]), checkpoint.objective, parts=checkpoint.parts)
    return frame.assign(hook="")[list(ROW_COLUMNS)]


def _probes(checkpoint, settings: dict, threads: int) -> pd.DataFrame:
    """The goal-arm (and other targets') probe at each hook and position, with its two
    controls as their own metrics: ``probe_{target}``, ``..._control`` (the control task),
    ``..._untrained`` (the same probe on the untrained model)."""
    from workbench.probes.sweep import probe_checkpoint

    hooks = [h for h in settings["hooks"] if h != "ssm_state" or checkpoint.config.arch == "mamba"]
    table = probe_checkpoint(
        checkpoint, hooks=hooks, positions=list(settings["positions"]), targets=list(settings["targets"]),
        n_train=settings["n_train"], n_test=settings["n_test"], n_jobs=max(1, int(threads)),
    )
    rows = []
    for column, suffix in (("accuracy", ""), ("control_accuracy", "_control"), ("random_init_accuracy", "_untrained")):
        rows.append(pd.DataFrame({"metric": "probe_" + table["target"] + suffix, "hook": table["hook"], "position": table["position"], "value": table[column]}))
    return pd.concat(rows, ignore_index=True)


def _patching(checkpoint, settings: dict, threads: int) -> pd.DataFrame:
    """``recovered`` per (hook, position), and the clean and goal-moved logit differences of r2;
    the same for the untrained twin (same architecture and seed), as ``..._untrained``: moving
    the goal should not move an untrained model's r2, so its recovery is mostly undefined."""
    from workbench.analyses.patching import goal_patching
    from workbench.datasets import evaluation_graphs
    from workbench.factory import build_model

    data = evaluation_graphs(checkpoint.config.task, settings["n_graphs"])
    twin = build_model(checkpoint.config, seed=checkpoint.config.train.seed).to(next(checkpoint.model.parameters()).device).eval()
    frames = []
    for model, suffix in ((checkpoint.model, ""), (twin, "_untrained")):
        table = goal_patching(model, data, checkpoint.objective)
        first = table.iloc[0]
        frames.append(pd.DataFrame({"metric": [f"patching_ld_clean{suffix}", f"patching_ld_corrupted{suffix}"], "hook": "", "position": "r2",
                                    "value": [first["ld_clean"], first["ld_corrupted"]]}))
        frames.append(pd.DataFrame({"metric": f"patching_recovered{suffix}", "hook": table["hook"], "position": table["position"], "value": table["recovered"]}))
    return pd.concat(frames, ignore_index=True)


STAGES = {"evaluate": _evaluate, "probes": _probes, "patching": _patching}
