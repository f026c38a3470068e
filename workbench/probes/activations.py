"""Activations at named hooks and positions, collected in batches and cached on disk.

Positions are named as everywhere in the workbench: ``eq`` is the '=' token, whose output is
the first answer token; ``rK`` is the K-th answer slot after it (K = 1..l-1), whose output is
answer token K+1. The inputs are the checkpoint's own teacher-forced inputs, so what sits in
slot K depends on the objective (``slot_token``): rK under next_token, the K-th token of the
reversed answer under reverse, '$' under teacherless, '[MASK]' under the masked objectives. Position ``r1`` of a next_token model
is where it has been given the source and must make the first decision r2.

Hooks are TransformerLens names. Shortcuts: ``embed`` (``hook_embed``), ``resid_post``
(``blocks.{i}.hook_resid_post`` of every layer), ``ssm_state`` (Mamba's
``blocks.{i}.mixer.hook_ssm_state`` of every layer, flattened to d_inner * d_state features).

Only the chosen positions are kept (sliced inside the hook), so memory is bounded by the batch.
With a cache directory, each (model, data, hook, position) is stored once as safetensors,
keyed by hashes of the weights and of the graphs: a sweep never runs the same forward twice.
"""

from __future__ import annotations

import hashlib
import re
from functools import partial
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from workbench.evaluate import model_device
from workbench.objectives import Objective
from workbench.task import PathStarData

DEFAULT_POSITIONS = ("eq", "r1")
RESIDUAL_HOOKS = ("embed", "resid_post")  # the embedding and every layer's residual stream


def position_index(position: str, data: PathStarData, slots: int | None = None) -> int:
    """Sequence index of a named position (``eq`` or answer slot ``r1``..``r{slots}``; the
    objective's ``slot_count``, default l-1)."""
    spec = data.spec
    slots = spec.path_length - 1 if slots is None else slots
    if position == "eq":
        return spec.eq_position
    match = re.fullmatch(r"r(\d+)", position)
    if not match or not 1 <= int(match.group(1)) <= slots:
        raise ValueError(f"position {position!r}: expected 'eq' or r1..r{slots} (answer slots fed as inputs)")
    return spec.eq_position + int(match.group(1))


def slot_token(position: str, objective: Objective, path_length: int) -> str:
    """What the objective feeds at a position, named in path order (e.g. 'r1', 'r5', '$', '=')."""
    if position == "eq":
        return "="
    return objective.slot_names(path_length)[int(position[1:]) - 1]


def expand_hooks(model: nn.Module, hooks: list[str]) -> list[str]:
    """Resolve shortcuts to hook names and check that each exists on the model."""
    available = list(model.hook_dict)
    names: list[str] = []
    for hook in hooks:
        if hook == "embed":
            found = ["hook_embed"]
        elif hook in ("resid_post", "ssm_state"):
            suffix = "hook_resid_post" if hook == "resid_post" else "mixer.hook_ssm_state"
            found = [n for n in available if re.fullmatch(rf"blocks\.\d+\.{re.escape(suffix)}", n)]
            if not found:
                raise ValueError(f"hook shortcut {hook!r} matches no hook of this model ({type(model).__name__})")
        else:
            found = [hook]
        for name in found:
            if name not in model.hook_dict:
                close = [n for n in available if name.split(".")[-1] in n][:5]
                raise ValueError(f"hook {name!r} is not a hook of this model; similar: {close}")
            if name not in names:
                names.append(name)
    return names


def default_hooks(model: nn.Module) -> list[str]:
    """The embedding and every layer's residual stream; for Mamba also every SSM state."""
    hooks = list(RESIDUAL_HOOKS)
    if any(n.endswith("mixer.hook_ssm_state") for n in model.hook_dict):
        hooks.append("ssm_state")
    return expand_hooks(model, hooks)


def hook_layer(hook: str) -> int:
    """0 for the embedding, i + 1 for anything inside or after block i."""
    match = re.match(r"blocks\.(\d+)\.", hook)
    return int(match.group(1)) + 1 if match else 0


def fingerprint(model: nn.Module) -> str:
    """Hash of the weights (and class): equal for the same model, whatever its file or path."""
    from workbench.identity import state_sha256

    return hashlib.sha256(f"{type(model).__name__}|{state_sha256(model.state_dict())}".encode()).hexdigest()[:16]


def data_fingerprint(inputs: Tensor) -> str:
    return hashlib.sha256(inputs.to(torch.int64).contiguous().numpy().tobytes()).hexdigest()[:16]


def _take(acts: Tensor, hook: str, index: Tensor) -> Tensor:
    """(batch, features) at the given positions; the SSM state is (batch, d_inner, pos, d_state)."""
    if hook.endswith("hook_ssm_state"):
        return acts[:, :, index].permute(0, 2, 1, 3).flatten(2)  # (batch, n_pos, d_inner * d_state)
    return acts[:, index]


@torch.no_grad()
def collect_activations(
    model: nn.Module,
    data: PathStarData,
    objective: Objective,
    hooks: list[str],
    positions: list[str] = list(DEFAULT_POSITIONS),
    batch_size: int = 500,
    cache_dir: str | Path | None = None,
    device: str | torch.device | None = None,
) -> dict[tuple[str, str], Tensor]:
    """{(hook, position): (n_graphs, features) float32} on the objective's teacher-forced inputs.

    ``device``: where the inputs go; None (default) -> where the model's weights are."""
    spec = data.spec
    device = model_device(model) if device is None else device
    hooks = expand_hooks(model, hooks)
    prompt, answer = data.prompt_tokens(), data.answer_tokens()
    inputs = objective.inputs(prompt, objective.targets(answer), spec)
    index = torch.tensor([position_index(p, data, objective.slot_count(spec.path_length)) for p in positions])
    wanted = [(h, p) for h in hooks for p in positions]

    folder = None
    found: dict[tuple[str, str], Tensor] = {}
    if cache_dir is not None:
        folder = Path(cache_dir) / fingerprint(model) / data_fingerprint(inputs)
        for key in wanted:
            file = folder / f"{key[0]}@{key[1]}.safetensors"
            if file.exists():
                found[key] = load_file(str(file))["activations"]
    missing_hooks = sorted({h for h, p in wanted if (h, p) not in found}, key=hooks.index)
    if not missing_hooks:
        return {key: found[key] for key in wanted}

    parts: dict[str, list[Tensor]] = {h: [] for h in missing_hooks}

    def keep(acts: Tensor, hook, name: str) -> None:  # hook.name may be an alias's target (embed.hook_out)
        parts[name].append(_take(acts, name, index.to(acts.device)).float().cpu())

    was_training = model.training
    model.eval()
    with model.hooks(fwd_hooks=[(h, partial(keep, name=h)) for h in missing_hooks]):
        for start in range(0, len(data), batch_size):
            model(inputs[start : start + batch_size].to(device))
    model.train(was_training)

    for hook in missing_hooks:
        stacked = torch.cat(parts[hook])  # (n_graphs, n_positions, features)
        for j, position in enumerate(positions):
            key = (hook, position)
            if key in found:
                continue
            found[key] = stacked[:, j].contiguous()
            if folder is not None:
                folder.mkdir(parents=True, exist_ok=True)
                file = folder / f"{hook}@{position}.safetensors"
                tmp = file.with_suffix(".tmp")
                save_file({"activations": found[key]}, str(tmp))
                tmp.replace(file)
    return {key: found[key] for key in wanted}
