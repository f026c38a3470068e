"""Checkpoints: a directory of JSON and safetensors, never a pickle.

    run_dir/
      config.json             the whole RunConfig (objective parameters included), step,
                              tokenizer, package version
      model.safetensors       weights (TransformerLens parameter names), and the objective's
                              own trainable parts (heads, a transition MLP) under ``objective.``
      metrics.jsonl           one line per evaluation
      optimizer.safetensors   AdamW moments, for exact resume
      trainer_state.json      step and optimizer hyper-parameters, for exact resume
      snapshots/step_0001000/ config.json + model.safetensors kept along training (optional)

This module is the format: what is written, how it is read back and upgraded, and the checks
that the files agree. How a folder is replaced without ever leaving a half-written one, and
the lock that keeps two trainers out of one folder, are ``workbench.run_folder``'s job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from workbench.config import RunConfig, objective_of, with_legacy_params
from workbench.devices import resolve_device
from workbench.factory import build_model_and_parts
from workbench.identity import setting_changes, without_incidental
from workbench.objectives import Objective
from workbench.task import GraphSpec
from workbench.run_folder import carry_over, new_version, present, recover, swap_in
from workbench.files import atomic_write_text

FORMAT = "workbench-checkpoint/2"
# Format 1 (before objectives had parameters and parts) still loads: these fields it lacks
# take their defaults, which are what every format-1 run used.
FORMAT_1 = "workbench-checkpoint/1"
ADDED_IN_FORMAT_2 = {"objective_params": {}, "train.structured_samples": False}
PARTS_PREFIX = "objective."


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
    parts: nn.Module | None = None  # the objective's own trainable parts, if it has any

    @property
    def graph(self) -> GraphSpec:
        return self.config.task.graph

    @property
    def objective(self) -> Objective:
        return objective_of(self.config)


def _version() -> str:
    from workbench._version import __version__

    return __version__


def config_json(config: RunConfig, step: int) -> str:
    tokenizer = objective_of(config).tokenizer(config.task.graph)
    payload = {"format": FORMAT, "workbench_version": _version(), "step": step, "tokenizer": tokenizer, "run": config.to_dict()}
    return json.dumps(payload, indent=2) + "\n"


def _state_tensors(model: nn.Module, parts: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """Every entry of the state dict as its own tensor (tied weights are stored under both
    names), the objective's parts under ``objective.``."""
    tensors = {k: v.detach().to("cpu").clone().contiguous() for k, v in model.state_dict().items()}
    if parts is not None:
        tensors.update({PARTS_PREFIX + k: v.detach().to("cpu").clone().contiguous() for k, v in parts.state_dict().items()})
    return tensors


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
    parts: nn.Module | None = None,
    trainer_state: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically: a complete new folder, swapped in by renames
    (``run_folder``).

    ``trainer_state`` holds what the trainer needs besides the optimizer to resume exactly
    (e.g. the running loss sums since the last evaluation)."""
    run_dir = Path(run_dir)
    tmp = new_version(run_dir)
    (tmp / "config.json").write_text(config_json(config, step))
    save_file(_state_tensors(model, parts), str(tmp / "model.safetensors"), metadata=_weights_metadata(config, step))
    write_metrics(tmp, metrics)
    if optimizer is not None:
        tensors, groups = _optimizer_files(optimizer)
        save_file(tensors, str(tmp / "optimizer.safetensors"), metadata={"step": str(step)})
        state = {"step": step, "param_groups": groups, **(trainer_state or {})}
        (tmp / "trainer_state.json").write_text(json.dumps(state, indent=2) + "\n")
    carry_over(run_dir, tmp, "snapshots")
    swap_in(tmp, run_dir)
    return run_dir


def save_snapshot(run_dir: str | Path, config: RunConfig, model: nn.Module, step: int, parts: nn.Module | None = None) -> Path:
    """Keep a model-only checkpoint at ``run_dir/snapshots/step_{step:07d}`` (for analyses over training)."""
    target = Path(run_dir) / "snapshots" / f"step_{step:07d}"
    tmp = new_version(target)
    (tmp / "config.json").write_text(config_json(config, step))
    save_file(_state_tensors(model, parts), str(tmp / "model.safetensors"), metadata=_weights_metadata(config, step))
    swap_in(tmp, target)
    return target


def _weights_metadata(config: RunConfig, step: int) -> dict[str, str]:
    """The run config travels inside the weights file too, so an edit of config.json after
    the save (say n_heads 4 -> 8, which no tensor shape reveals) is caught on load."""
    return {"step": str(step), "run_config": json.dumps(without_incidental(config.to_dict()))}


def _check_against_weights(config: RunConfig, file: Path) -> None:
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as handle:
            saved = (handle.metadata() or {}).get("run_config")
    except Exception as error:
        raise CheckpointError(f"{file}: not a readable safetensors file ({str(error).splitlines()[0][:200]})") from None
    if saved is None:  # written before the config travelled with the weights
        return
    now, then = without_incidental(config.to_dict()), without_incidental(with_legacy_params(json.loads(saved)))
    changed = [f"{key}={a!r} (the weights were saved with {b!r})" for key, a, b in setting_changes(now, then)]
    if changed:
        raise CheckpointError(f"{file.parent / 'config.json'}: edited after the weights were saved: {'; '.join(changed[:4])}")


def read_config(path: str | Path) -> tuple[RunConfig, int]:
    path = Path(path)
    file = path / "config.json"
    if not file.exists():
        raise CheckpointError(f"{file}: not found; a checkpoint is a directory with config.json and model.safetensors")
    try:
        payload = json.loads(file.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{file} line {error.lineno}: invalid JSON ({error.msg})") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{file}: expected a JSON object, found {type(payload).__name__}")
    if payload.get("format") not in (FORMAT, FORMAT_1):
        raise CheckpointError(f"{file}: field 'format' is {payload.get('format')!r}, expected {FORMAT!r}")
    for key in ("run", "step"):
        if key not in payload:
            raise CheckpointError(f"{file}: field {key!r} missing")
    run, step = payload["run"], payload["step"]
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointError(f"{file}: field 'step' is {step!r}, expected an integer >= 0")
    if payload["format"] == FORMAT_1 and isinstance(run, dict):
        run = _upgrade_format_1(run)
    try:
        return RunConfig.from_dict(with_legacy_params(run), where="run", complete=True), step
    except ValueError as error:
        raise CheckpointError(f"{file}: {error}") from None


def saved_step(path: str | Path) -> int:
    """The step of the checkpoint in ``path``, 0 where none has been saved yet (a run to resume)."""
    return read_config(path)[1] if (Path(path) / "config.json").exists() else 0


def _upgrade_format_1(run: dict[str, Any]) -> dict[str, Any]:
    run = json.loads(json.dumps(run))
    for key, default in ADDED_IN_FORMAT_2.items():
        section, _, name = key.rpartition(".")
        holder = run.get(section) if section else run
        if isinstance(holder, dict) and name not in holder:
            holder[name] = default
    return run


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


def _read_tensors(file: Path) -> dict[str, torch.Tensor]:
    if not file.exists():
        raise CheckpointError(f"{file}: not found")
    try:
        return load_file(str(file))
    except Exception as error:  # safetensors raises its own error types on truncated or corrupt files
        raise CheckpointError(f"{file}: not a readable safetensors file ({str(error).splitlines()[0][:200]})") from None


def _load_strict(module: nn.Module, state: dict[str, torch.Tensor], file: Path, what: str) -> None:
    """Load ``state`` into ``module``, naming every missing, unexpected or misshapen tensor."""
    expected = module.state_dict()
    missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or extra:
        raise CheckpointError(f"{file}: {what} do not match config.json; missing {missing[:5]}, unexpected {extra[:5]}")
    wrong = [f"{k} {tuple(v.shape)} (config.json gives {tuple(expected[k].shape)})" for k, v in state.items() if v.shape != expected[k].shape]
    if wrong:
        raise CheckpointError(f"{file}: {what} do not match config.json: {', '.join(wrong[:3])}")
    module.load_state_dict(state)


def load(path: str | Path, device: str | torch.device = "auto") -> Checkpoint:
    """Rebuild the hooked model (and the objective's parts) of a checkpoint directory or
    snapshot from its files alone, checking config.json against the weights' shapes.
    (``workbench.load`` also opens a shipped checkpoint by name: ``workbench.shipped.load``.)"""
    path = Path(path)
    if not present(path):
        raise CheckpointError(f"{path}: not a checkpoint directory")
    recover(path)
    config, step = read_config(path)
    weights = path / "model.safetensors"
    state = _read_tensors(weights)
    _check_against_weights(config, weights)
    try:
        model, parts = build_model_and_parts(config)
    except ValueError as error:
        raise CheckpointError(f"{path / 'config.json'}: {error}") from None
    model_state = {k: v for k, v in state.items() if not k.startswith(PARTS_PREFIX)}
    parts_state = {k[len(PARTS_PREFIX) :]: v for k, v in state.items() if k.startswith(PARTS_PREFIX)}
    _load_strict(model, model_state, weights, "model parameters")
    if parts is not None and hasattr(parts, "load_legacy_state_dict") and any("._original_component." in k for k in parts_state):
        parts.load_legacy_state_dict(parts_state)  # saved with every alias of a nested model's weights (bst, before 2026-12-03)
    elif parts is not None or parts_state:
        _load_strict(parts if parts is not None else nn.Module(), parts_state, weights, f"the {config.objective} objective's parameters ({PARTS_PREFIX}*)")
    device = resolve_device(device)
    model.to(device).eval()
    if parts is not None:
        parts.to(device).eval()
    return Checkpoint(model, config, step, path, read_metrics(path), parts)


def load_optimizer_state(path: str | Path, optimizer: torch.optim.Optimizer) -> int:
    """Restore AdamW moments and hyper-parameters saved by ``save_checkpoint``; returns the step."""
    path = Path(path)
    state_file, tensor_file = path / "trainer_state.json", path / "optimizer.safetensors"
    for file in (state_file, tensor_file):
        if not file.exists():
            raise CheckpointError(f"{file}: not found; this checkpoint cannot be resumed (model-only snapshot?)")
    try:
        trainer_state = json.loads(state_file.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{state_file} line {error.lineno}: invalid JSON ({error.msg})") from None
    tensors = _read_tensors(tensor_file)
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    groups = trainer_state["param_groups"]
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError) as error:
        raise CheckpointError(f"{tensor_file}: does not fit this run's parameters ({error})") from None
    return int(trainer_state["step"])


def read_trainer_state(path: str | Path) -> dict[str, Any]:
    """trainer_state.json of a resumable checkpoint (step, optimizer groups, running sums)."""
    file = Path(path) / "trainer_state.json"
    try:
        return json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{file}: unreadable ({error})") from None
