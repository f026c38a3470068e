"""Run every analysis on a set of trained checkpoints; write one CSV and one PNG per analysis.

    analyses/accuracy_gap.{csv,png}        teacher-forced vs free-running accuracy
    analyses/cheat_test.{csv,png}          follow / return rates with a wrong arm fed
    analyses/edge_lookup.{csv,png}         attention onto the looked-up edge (GPT)
    analyses/loss_curves.{csv,png}         per-position training loss over steps
    analyses/gradient_shares.{csv,png}     per-position gradient along snapshots
    analyses/cka.{csv,png}                 layer x layer CKA across objectives, archs, seeds
    analyses/patching.{csv,png}            goal patching at eq and r1
    analyses/probes_over_training.{csv,png}   the probe table along snapshots (workbench.probes.over_training)

Every table carries the identity columns (arch, objective, seed, step) of what it measured.
"""

from __future__ import annotations

import hashlib
import json
import time
from itertools import combinations
from pathlib import Path

import pandas as pd

from workbench.analyses import cka, clever_hans, patching, supervision
from workbench.probes import over_training as probes_over_training
from workbench.checkpoint import Checkpoint
from workbench.config import LIGHT_PROBE_GRAPHS
from workbench.identity import row_identity, stage_key
from workbench.files import atomic_write_text
from workbench.datasets import evaluation_graphs


def _identity(checkpoint: Checkpoint) -> dict:
    return row_identity(checkpoint.config, checkpoint.step)


def _label(checkpoint: Checkpoint) -> str:
    config = checkpoint.config
    return f"{config.arch}/{config.objective}/s{config.train.seed}"


def _save(frame: pd.DataFrame, out: Path, name: str) -> None:
    atomic_write_text(out / f"{name}.csv", frame.to_csv(index=False))


def run_analyses(
    checkpoints: list[Checkpoint], results: pd.DataFrame, out: str | Path, seed_pairs: list[tuple[Checkpoint, Checkpoint]] = (),
    n_graphs: int = 2_000, probe_graphs: tuple[int, int] = LIGHT_PROBE_GRAPHS, cache_dir: str | Path | None = None, progress: bool = True,
) -> None:
    """All analyses for ``checkpoints`` (one per arch x objective) into ``out``.

    ``results`` is the evaluation table of the main job; ``seed_pairs`` are pairs of runs that
    differ only in seed, the reference level of CKA. ``probe_graphs`` = (train, test) graphs
    of each probe along training (a curve, read at +-3 points; the main probe table is larger).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    task = checkpoints[0].config.task
    data = evaluation_graphs(task, n_graphs)
    clock = time.perf_counter()

    def done(name: str) -> None:
        nonlocal clock
        if progress:
            print(f"analysis {name}: {time.perf_counter() - clock:.0f} s", flush=True)
        clock = time.perf_counter()

    gap = clever_hans.accuracy_gap(results)
    _save(gap, out, "accuracy_gap")
    clever_hans.plot_accuracy_gap(gap, out / "accuracy_gap.png")
    done("accuracy gap")

    cheat = pd.concat([clever_hans.cheat_test(c.model, data, c.objective).assign(**_identity(c)) for c in checkpoints], ignore_index=True)
    _save(cheat, out, "cheat_test")
    if len(cheat):
        clever_hans.plot_cheat_test(cheat, out / "cheat_test.png")
    done("cheat test")

    gpts = [c for c in checkpoints if c.config.arch == "gpt"]
    if gpts:
        lookup = pd.concat([clever_hans.edge_lookup_attention(c.model, data[:500], c.objective).assign(**_identity(c)) for c in gpts], ignore_index=True)
        _save(lookup, out, "edge_lookup")
        clever_hans.plot_edge_lookup(lookup, out / "edge_lookup.png")
    done("edge lookup")

    run_identity = [{k: v for k, v in _identity(c).items() if k != "step"} for c in checkpoints]  # curves have their own steps
    curves = pd.concat([supervision.loss_curves(c.metrics).assign(**who, degree=c.config.task.degree) for c, who in zip(checkpoints, run_identity)], ignore_index=True)
    _save(curves, out, "loss_curves")
    supervision.plot_loss_curves(curves, out / "loss_curves.png")
    done("loss curves")

    shares = []
    for checkpoint in checkpoints:
        for snapshot in probes_over_training.training_checkpoints(checkpoint.path):
            shares.append(supervision.gradient_shares(snapshot.model, data[:256], snapshot.objective, snapshot.parts).assign(**_identity(snapshot)))
    shares_frame = pd.concat(shares, ignore_index=True)
    _save(shares_frame, out, "gradient_shares")
    supervision.plot_gradient_shares(shares_frame, out / "gradient_shares.png")
    done("gradient shares")

    pairs = [(a, b, "across objectives") for a, b in combinations(checkpoints, 2) if a.config.arch == b.config.arch]
    pairs += [(a, b, "across archs") for a, b in combinations(checkpoints, 2) if a.config.arch != b.config.arch and a.config.objective == b.config.objective]
    pairs += [(a, b, "across seeds") for a, b in seed_pairs]
    cka_frames = [
        cka.layer_cka(a, b, data, cache_dir=cache_dir).assign(model_a=_label(a), model_b=_label(b), pair=f"{_label(a)} vs {_label(b)}", kind=kind)
        for a, b, kind in pairs
    ]
    if cka_frames:
        cka_frame = pd.concat(cka_frames, ignore_index=True)
        _save(cka_frame, out, "cka")
        cka.plot_cka(cka_frame, out / "cka.png")
    done("cka")

    patched = pd.concat([patching.goal_patching(c.model, data[:1000], c.objective).assign(**_identity(c)) for c in checkpoints], ignore_index=True)
    _save(patched, out, "patching")
    patching.plot_patching(patched, out / "patching.png")
    done("patching")

    n_train, n_test = probe_graphs
    over_training = probes_over_training.probes_over_training(
        [c.path for c in checkpoints], cache_dir=cache_dir, hooks=["resid_post"], n_train=n_train, n_test=n_test
    )
    _save(over_training, out, "probes_over_training")
    probes_over_training.plot_probes_over_training(over_training, out / "probes_over_training.png")
    done("probes over training")

    atomic_write_text(out / "done.json", json.dumps(analysis_stage_key(checkpoints, n_graphs, probe_graphs, seed_pairs)) + "\n")


def analysis_stage_key(checkpoints: list[Checkpoint], n_graphs: int, probe_graphs: tuple[int, int], seed_pairs=()) -> dict:
    return stage_key(checkpoints, {"analyses": list(ANALYSES), "n_graphs": n_graphs, "probe_graphs": list(probe_graphs)}, seed_pairs)


ANALYSES = ("accuracy_gap", "cheat_test", "edge_lookup", "loss_curves", "gradient_shares", "cka", "patching", "probes_over_training")
