"""Checkpoints: a directory of JSON and safetensors, never a pickle.

    run_dir/
      config.json             the whole RunConfig, step, tokenizer, package version
      model.safetensors       weights (TransformerLens parameter names)
      metrics.jsonl           one line per evaluation
      optimizer.safetensors   AdamW moments, for exact resume
      trainer_state.json      step and optimizer hyper-parameters, for exact resume
      snapshots/step_0001000/ config.json + model.safetensors kept along training (optional)

A save writes a complete new directory beside the old one and swaps the two with renames,
so an interrupted save leaves the previous checkpoint intact (``recover`` puts it back).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from workbench.config import RunConfig
from workbench.objectives import Objective, get_objective
from workbench.task import GraphSpec
from workbench.text_format import atomic_write_text

FORMAT = "workbench-checkpoint/1"


class CheckpointError(ValueError):
    """A directory that is not a readable workbench checkpoint; the message names the file."""


@dataclass
class Checkpoint:
    """What ``load`` gives back: the hooked model and everything needed to rebuild its data."""

    model: nn.Module
    config: RunConfig
    step: int
    path: Path
    metrics: list[dict[str, Any]] = field(default_factory=list)

    @property
    def graph(self) -> GraphSpec:
        return self.config.task.graph

    @property
    def objective(self) -> Objective:
        return get_objective(self.config.objective)


def _version() -> str:
    from workbench import __version__

    return __version__


def config_json(config: RunConfig, step: int) -> str:
    spec = config.task.graph
    tokenizer = {"nodes": f"0..{spec.num_nodes - 1}", "|": spec.edge_sep, "=": spec.eq, "/": spec.slash, "$": spec.filler}
    payload = {"format": FORMAT, "workbench_version": _version(), "step": step, "tokenizer": tokenizer, "run": config.to_dict()}
    return json.dumps(payload, indent=2) + "\n"


def _state_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every entry of the state dict as its own tensor (tied weights are stored under both names)."""
    return {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}


def _optimizer_files(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    state = optimizer.state_dict()
    tensors = {
        f"{index}.{key}": (value if torch.is_tensor(value) else torch.tensor(value)).detach().to("cpu").contiguous()
        for index, slots in state["state"].items()
        for key, value in slots.items()
    }
    return tensors, state["param_groups"]


def write_metrics(run_dir: Path, metrics: list[dict[str, Any]]) -> None:
    atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in metrics))


def save_checkpoint(
    run_dir: str | Path,
    config: RunConfig,
    model: nn.Module,
    step: int,
    metrics: list[dict[str, Any]],
    optimizer: torch.optim.Optimizer | None = None,
) -> Path:
    """Write a checkpoint atomically: build ``.{name}.tmp``, then swap it in by renames."""
    run_dir = Path(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    recover(run_dir)
    tmp = run_dir.with_name(f".{run_dir.name}.tmp")
    old = run_dir.with_name(f".{run_dir.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    (tmp / "config.json").write_text(config_json(config, step))
    save_file(_state_tensors(model), str(tmp / "model.safetensors"), metadata={"step": str(step)})
    write_metrics(tmp, metrics)
    if optimizer is not None:
        tensors, groups = _optimizer_files(optimizer)
        save_file(tensors, str(tmp / "optimizer.safetensors"), metadata={"step": str(step)})
        (tmp / "trainer_state.json").write_text(json.dumps({"step": step, "param_groups": groups}, indent=2) + "\n")
    if (run_dir / "snapshots").exists():  # carried over by hard links: cheap, and the old dir keeps its own
        shutil.copytree(run_dir / "snapshots", tmp / "snapshots", copy_function=_link_or_copy)
    _fsync_dir(tmp)
    if run_dir.exists():
        os.replace(run_dir, old)
    os.replace(tmp, run_dir)
    shutil.rmtree(old, ignore_errors=True)
    return run_dir


def save_snapshot(run_dir: str | Path, config: RunConfig, model: nn.Module, step: int) -> Path:
    """Keep a model-only checkpoint at ``run_dir/snapshots/step_{step:07d}`` (for analyses over training)."""
    target = Path(run_dir) / "snapshots" / f"step_{step:07d}"
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "config.json").write_text(config_json(config, step))
    save_file(_state_tensors(model), str(tmp / "model.safetensors"), metadata={"step": str(step)})
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target


def recover(run_dir: str | Path) -> None:
    """Finish a save that was interrupted between its two renames."""
    run_dir = Path(run_dir)
    old = run_dir.with_name(f".{run_dir.name}.old")
    if old.exists() and not run_dir.exists():
        os.replace(old, run_dir)


def read_config(path: str | Path) -> tuple[RunConfig, int]:
    path = Path(path)
    file = path / "config.json"
    if not file.exists():
        raise CheckpointError(f"{file}: not found; a checkpoint is a directory with config.json and model.safetensors")
    try:
        payload = json.loads(file.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{file} line {error.lineno}: invalid JSON ({error.msg})") from None
    if payload.get("format") != FORMAT:
        raise CheckpointError(f"{file}: field 'format' is {payload.get('format')!r}, expected {FORMAT!r}")
    for key in ("run", "step"):
        if key not in payload:
            raise CheckpointError(f"{file}: field {key!r} missing")
    return RunConfig.from_dict(payload["run"], where=f"{file}: run"), int(payload["step"])


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    file = Path(path) / "metrics.jsonl"
    if not file.exists():
        return []
    metrics = []
    for lineno, line in enumerate(file.read_text().splitlines(), start=1):
        try:
            metrics.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise CheckpointError(f"{file} line {lineno}: invalid JSON ({error.msg})") from None
    return metrics


def load(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the hooked model of a checkpoint directory (or snapshot) from its files alone."""
    from workbench.models import build_model

    path = Path(path)
    recover(path)
    config, step = read_config(path)
    model = build_model(config, seed=config.train.seed)
    weights = path / "model.safetensors"
    if not weights.exists():
        raise CheckpointError(f"{weights}: not found")
    state = load_file(str(weights))
    expected = set(model.state_dict())
    if set(state) != expected:
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        raise CheckpointError(f"{weights}: parameters do not match the config's model; missing {missing[:5]}, unexpected {extra[:5]}")
    shapes = model.state_dict()
    wrong = [f"{k} {tuple(v.shape)} (config wants {tuple(shapes[k].shape)})" for k, v in state.items() if v.shape != shapes[k].shape]
    if wrong:
        raise CheckpointError(f"{weights}: parameters do not match the config's model: {', '.join(wrong[:3])}")
    model.load_state_dict(state)
    model.to(device).eval()
    return Checkpoint(model, config, step, path, read_metrics(path))


def load_optimizer_state(path: str | Path, optimizer: torch.optim.Optimizer) -> int:
    """Restore AdamW moments and hyper-parameters saved by ``save_checkpoint``; returns the step."""
    path = Path(path)
    state_file, tensor_file = path / "trainer_state.json", path / "optimizer.safetensors"
    for file in (state_file, tensor_file):
        if not file.exists():
            raise CheckpointError(f"{file}: not found; this checkpoint cannot be resumed (model-only snapshot?)")
    trainer_state = json.loads(state_file.read_text())
    tensors = load_file(str(tensor_file))
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    groups = trainer_state["param_groups"]
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    return int(trainer_state["step"])


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _fsync_dir(path: Path) -> None:
    for file in path.iterdir():
        if file.is_file():
            with open(file, "rb") as f:
                os.fsync(f.fileno())
