"""Probe sweeps: every (checkpoint, hook, position, target), with controls, as one tidy table.

Each row is one probe, with its controls beside it:

- ``accuracy`` (and its 95% bootstrap interval) of the probe on held-out graphs;
- ``control_accuracy``: the same probe (same C) on the Hewitt & Liang control task of the
  target (``workbench.probes.targets``), and ``selectivity = accuracy - control_accuracy``;
- ``random_init_accuracy``: the same probe (same C) on the same hook and position of the
  model before training (same architecture and seed, untrained weights);
- ``chance`` (1 / size of the label space) and ``majority`` baselines;
- ``converged``: every lbfgs fit of the probe (cross-validation and refit, every slot)
  converged, ``n_iter`` the most iterations one took; ``controls_converged`` the same for the
  control-task and random-init probes. An unconverged probe's accuracy is a lower bound.
The embedding layer is the third control: it is one of the default hooks.

Graphs: by default the checkpoint's own held-out graphs (never trained on), the first
``n_train`` to fit the probes, the next ``n_test`` to score them. Probes never see two rows
of the same graph on both sides: a graph is one row.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from joblib import Parallel, delayed

from workbench.checkpoint import Checkpoint
from workbench.config import PROBE_GRAPHS
from workbench.shipped import load
from workbench.devices import resolve_device
from workbench.evaluate import model_device
from workbench.factory import build_model
from workbench.identity import row_identity
from workbench.probes.activations import DEFAULT_POSITIONS, collect_activations, default_hooks, expand_hooks, hook_layer, slot_token
from workbench.probes.linear import DEFAULT_CS, bootstrap_interval, score_probe
from workbench.probes.targets import Target, probe_targets
from workbench.task import PathStarData

COLUMNS = [
    "checkpoint", "arch", "objective", "seed", "step", "hook", "layer", "site", "position", "input_token", "target",
    "accuracy", "ci_low", "ci_high", "control_accuracy", "control_majority", "selectivity",
    "random_init_accuracy", "random_init_ci_low", "random_init_ci_high",
    "chance", "majority", "C", "n_train", "n_test", "n_features", "converged", "n_iter", "controls_converged",
]


def hook_site(hook: str) -> str:
    """Short name of what a hook reads: 'embed', 'resid_post', 'ssm_state', ..."""
    return "embed" if hook == "hook_embed" else hook.split(".")[-1].removeprefix("hook_")


def probe_graphs(checkpoint: Checkpoint, n_train: int, n_test: int, data: PathStarData | None = None) -> tuple[PathStarData, PathStarData]:
    """(probe-train, probe-test) graphs: from ``data``, else the checkpoint's held-out graphs."""
    if data is None:  # the run's test set, as long as the probes need (the held-out stream is prefix-stable)
        from workbench.datasets import evaluation_graphs

        data = evaluation_graphs(checkpoint.config.task, n_train + n_test)
    if data.spec != checkpoint.graph:
        raise ValueError(f"probe graphs are {data.spec}, but the checkpoint {checkpoint.path} was trained on {checkpoint.graph}")
    if len(data) < n_train + n_test:
        raise ValueError(f"probing needs n_train + n_test = {n_train + n_test} graphs, only {len(data)} available")
    return data[:n_train], data[n_train : n_train + n_test]


def probe_checkpoint(
    checkpoint: Checkpoint | str | Path,
    hooks: list[str] | None = None,
    positions: list[str] = list(DEFAULT_POSITIONS),
    targets: list[str] | None = None,
    data: PathStarData | None = None,
    n_train: int = PROBE_GRAPHS[0],
    n_test: int = PROBE_GRAPHS[1],
    controls: bool = True,
    Cs: tuple[float, ...] = DEFAULT_CS,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    device: str | None = None,
    n_jobs: int = -1,
) -> pd.DataFrame:
    """The probe table of one checkpoint (see the module docstring for its columns).

    Probes are fitted in ``n_jobs`` worker processes (joblib; -1 = one per core).
    """
    if not isinstance(checkpoint, Checkpoint):
        checkpoint = load(checkpoint, device=device or "auto")
    model, config = checkpoint.model, checkpoint.config
    device = resolve_device(device) if device else model_device(model)  # one device: the model's, unless asked
    hooks = expand_hooks(model, hooks) if hooks else default_hooks(model)
    train_graphs, evaluation_graphs = probe_graphs(checkpoint, n_train, n_test, data)
    train_t, test_t = probe_targets(train_graphs, targets, seed), probe_targets(evaluation_graphs, targets, seed)

    def activations(net: torch.nn.Module, graphs: PathStarData) -> dict[tuple[str, str], np.ndarray]:
        acts = collect_activations(net, graphs, checkpoint.objective, hooks, positions, cache_dir=cache_dir, device=device)
        return {key: value.numpy() for key, value in acts.items()}

    trained = (activations(model, train_graphs), activations(model, evaluation_graphs))
    untrained = None
    if controls:
        init = build_model(config, seed=config.train.seed).to(device)
        untrained = (activations(init, train_graphs), activations(init, evaluation_graphs))

    identity = dict(checkpoint=str(checkpoint.path), **row_identity(config, checkpoint.step))
    jobs = []
    for hook in hooks:
        for position in positions:
            key = (hook, position)
            place = dict(
                identity, hook=hook, layer=hook_layer(hook), site=hook_site(hook), position=position,
                input_token=slot_token(position, checkpoint.objective, checkpoint.graph.path_length),
            )
            for name, target in train_t.items():
                features = (trained[0][key], trained[1][key])
                if untrained is not None:
                    features += (untrained[0][key], untrained[1][key])
                jobs.append(delayed(_probe_row)(place, target, test_t[name], features, Cs, seed))
    rows = Parallel(n_jobs=n_jobs)(jobs)
    return pd.DataFrame(rows).reindex(columns=COLUMNS)


def _probe_row(place: dict, target: Target, test: Target, features: tuple[np.ndarray, ...], Cs: tuple[float, ...], seed: int) -> dict[str, Any]:
    """One row of the table: the probe, and if untrained features are given, its controls.

    The control task and the untrained model are probed with the C chosen for the real task
    (the same probe, as Hewitt & Liang prescribe), so only the real probe is cross-validated.
    """
    train_x, test_x = features[:2]
    score = score_probe(train_x, target.labels, test_x, test.labels, Cs, seed=seed)
    low, high = bootstrap_interval(score.correct, seed)
    row = dict(
        place, target=target.name, accuracy=score.accuracy, ci_low=low, ci_high=high, chance=1 / target.num_classes,
        majority=score.majority, C=score.C, n_train=len(train_x), n_test=len(test_x), n_features=train_x.shape[1],
        converged=score.converged, n_iter=score.n_iter,
    )
    if len(features) == 4:
        control = score_probe(train_x, target.control, test_x, test.control, seed=seed, fixed_Cs=score.Cs)
        init = score_probe(features[2], target.labels, features[3], test.labels, seed=seed, fixed_Cs=score.Cs)
        init_low, init_high = bootstrap_interval(init.correct, seed)
        row.update(
            control_accuracy=control.accuracy, control_majority=control.majority, selectivity=score.accuracy - control.accuracy,
            random_init_accuracy=init.accuracy, random_init_ci_low=init_low, random_init_ci_high=init_high,
            controls_converged=control.converged and init.converged,
        )
    return row


def probe_sweep(checkpoints: list[str | Path | Checkpoint], progress: bool = True, **kwargs: Any) -> pd.DataFrame:
    """``probe_checkpoint`` over several checkpoints, concatenated into one table.

    Every checkpoint's config is read before the first probe is fitted, so a wrong path is
    reported at once instead of after minutes of work on the others."""
    from workbench.checkpoint import read_config

    for checkpoint in checkpoints:
        if not isinstance(checkpoint, Checkpoint):
            read_config(checkpoint)
    frames = []
    for checkpoint in checkpoints:
        start = time.perf_counter()
        frame = probe_checkpoint(checkpoint, **kwargs)
        if progress:
            first = frame.iloc[0]
            print(f"probed {first['checkpoint']} ({first['arch']}/{first['objective']}, step {first['step']}): "
                  f"{len(frame)} probes in {time.perf_counter() - start:.0f} s", flush=True)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)
