"""What makes two runs the same run: one answer for resume, the checkpoint check, studies and
the shipped checkpoints.

- ``INCIDENTAL``: settings that never change the trained weights (where and how a run computes,
  what it writes on the way); ``comparable_settings`` is a config without them, and two runs
  with equal comparable settings and seed train the same weights. A resume may change them, a
  checkpoint's config.json may differ from its weights in them, a study adopts a finished run
  trained with other values of them.
- ``setting_changes``: the one comparison, setting by setting (``section.key``).
- ``weights_sha256``: the one hash of weights, of their tensors (name, dtype, shape, bytes) and
  not of a file's bytes, whose metadata safetensors writes in no fixed order.
- ``stage_key``: what a computed stage (probes, analyses, a study's stages) was computed from,
  so it is reused exactly when its checkpoints' weights and configs and its settings are unchanged.
- ``run_name``: the one naming scheme of run folders: arch, objective, then the parts a
  caller's folders need (graph, preset, overrides, seed).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch

    from workbench.config import RunConfig
    from workbench.task import GraphSpec


class Checkpoint(Protocol):
    """What a stage key reads of a checkpoint (``workbench.checkpoint.Checkpoint`` has it)."""

    path: Path
    step: int
    config: RunConfig


# Where and how it computes (the device; Mamba's scan implementation and the GPT's compiled
# training forward compute the same function), and what it writes on the way (evaluation and
# checkpoint intervals, snapshots; evaluation draws no randomness training uses, as the
# exact-resume tests show).
INCIDENTAL = (("train", "device"), ("train", "eval_every"), ("train", "eval_graphs"), ("train", "save_every"),
              ("train", "snapshot_every"), ("model", "scan"), ("model", "compile"))


def without_incidental(raw: dict[str, Any]) -> dict[str, Any]:
    """A config dict (``RunConfig.to_dict``, or one saved by an earlier version) without the
    ``INCIDENTAL`` settings."""
    raw = {key: dict(value) if isinstance(value, dict) else value for key, value in raw.items()}
    for section, key in INCIDENTAL:
        if isinstance(raw.get(section), dict):
            raw[section].pop(key, None)
    return raw


def comparable_settings(config: RunConfig) -> dict[str, Any]:
    """The settings that decide the weights: all but the ``INCIDENTAL`` ones."""
    return without_incidental(config.to_dict())


def setting_changes(a: Any, b: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(``section.key``, value in a, value in b) for every setting that differs."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [change for key in sorted(set(a) | set(b)) for change in setting_changes(a.get(key), b.get(key), f"{prefix}{key}.")]
    return [] if a == b else [(prefix.rstrip("."), a, b)]


def same_run(a: RunConfig | dict[str, Any], b: RunConfig | dict[str, Any]) -> bool:
    """Whether two configs (or config dicts) train the same weights."""
    raw = [without_incidental(x if isinstance(x, dict) else x.to_dict()) for x in (a, b)]
    return not setting_changes(*raw)


def incidental_changes(saved: RunConfig, wanted: RunConfig) -> list[tuple[str, Any, Any]]:
    """The ``INCIDENTAL`` settings in which ``wanted`` differs from ``saved``."""
    a, b = saved.to_dict(), wanted.to_dict()
    return [(f"{section}.{key}", a[section].get(key), b[section].get(key)) for section, key in INCIDENTAL
            if a[section].get(key) != b[section].get(key)]


def state_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over the tensors in name order: each name, dtype, shape and raw bytes."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(tensors.items()):
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def weights_sha256(path: str | Path) -> str:
    """The hash of a checkpoint's weights (the objective's parts included): ``path`` is its
    directory or its ``model.safetensors``."""
    from safetensors.torch import load_file

    path = Path(path)
    file = path / "model.safetensors" if path.is_dir() else path
    return state_sha256(load_file(str(file)))


def checkpoint_fingerprint(checkpoint: Checkpoint) -> dict:
    """What a checkpoint's results depend on: its weights and its whole config, not its path."""
    return {"weights_sha256": weights_sha256(checkpoint.path), "step": checkpoint.step, "config": checkpoint.config.to_dict()}


def stage_key(checkpoints: list[Checkpoint], settings: dict, seed_pairs: list[tuple[Checkpoint, Checkpoint]] = ()) -> dict:
    """What a stage was computed from, as JSON gives it back: every checkpoint's weights and
    config (in order), the seed pairs, and the stage's own settings (graph counts, the list
    of analyses, ...). The stage is reused only if all of it is unchanged, so retraining a
    run under another setting reruns exactly the stages that read it."""
    key = {
        "checkpoints": [checkpoint_fingerprint(c) for c in checkpoints],
        "seed_pairs": [[weights_sha256(a.path), weights_sha256(b.path)] for a, b in seed_pairs],
        "settings": settings,
    }
    return json.loads(json.dumps(key))


def row_identity(config: RunConfig, step: int, graph: GraphSpec | None = None) -> dict[str, Any]:
    """The columns that say which model a row of a results table measures: arch, objective,
    (the graph's degree, path_length, num_nodes, in tables that span graphs), seed, step.
    Every table of the main job, the probes and ``workbench eval`` takes them from here (the
    study tables name grid points instead: ``workbench.study.spec.IDENTITY``)."""
    graph_columns = {} if graph is None else dict(degree=graph.degree, path_length=graph.path_length, num_nodes=graph.num_nodes)
    return dict(arch=config.arch, objective=config.objective, **graph_columns, seed=config.train.seed, step=step)


def _slug(item: str) -> str:
    """``model.n_layers=2`` -> ``n_layers2``: a folder-safe tag of one override."""
    key, _, value = item.partition("=")
    return re.sub(r"[^A-Za-z0-9_.]+", "_", key.split(".")[-1] + value)


def run_name(arch: str, objective: str, graph: GraphSpec | None = None, preset: str | None = None,
             overrides: tuple[str, ...] = (), seed: int | None = None) -> str:
    """``{arch}-{objective}[-G{d}_{l}_{N}][-{preset}][-{override tags}][-s{seed}]``: the main job
    names its runs by arch and objective (and a seed other than 0), ``workbench train`` adds the
    graph and the seed, a study also the preset and its overrides axis."""
    parts = [arch, objective]
    if graph is not None:
        parts.append(f"G{graph.degree}_{graph.path_length}_{graph.num_nodes}")
    if preset is not None:
        parts.append(preset)
    parts += [_slug(item) for item in overrides]
    if seed is not None:
        parts.append(f"s{seed}")
    return "-".join(parts)
