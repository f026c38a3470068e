"""Token-by-token evaluation as a tidy DataFrame: one row per (position, metric).

Metrics, every one reported in forward path order r1..rl whatever the objective's order:
- ``tf_accuracy`` / ``tf_loss``: teacher-forced, i.e. with the objective's own training
  inputs (for teacherless these are the '$' slots, so teacher-forced = free-running);
- ``greedy_accuracy``: free greedy decoding;
- position ``path``: ``greedy_accuracy`` and ``tf_accuracy`` of the whole answer;
- ``fill_step``, for objectives that decode in an order of their own (the masked ones): the
  mean step (1..l) at which each position was filled, so r_l near 1 means the goal end first;
- ``head{o}_accuracy``, for objectives with extra prediction heads (mtp) when their parts are
  passed: head o's teacher-forced accuracy on each answer token, read o - 1 positions before
  the slot that emits it (mtp's head 2 guesses r2 at '=', before any answer token is given).
r2 is the first decision; its row has ``role == "first_decision"``.

Each position is scored on its own prediction. (The paper's code logged one and the same
vector under every position for its teacher-forced accuracies.)
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from workbench.devices import resolve_device
from workbench.models import logits_of
from workbench.objectives import Objective, answer_logits
from workbench.task import PathStarData


def position_role(position: str, path_length: int) -> str:
    if position == "r1":
        return "source"
    if position == "r2":
        return "first_decision"
    if position == "path":
        return "path"
    return "goal" if position == f"r{path_length}" else "later"


def model_device(model: nn.Module) -> torch.device:
    """Where the model's weights are (the CPU for a hand-built model without any)."""
    return next(model.parameters(), torch.empty(0)).device


@torch.no_grad()
def predictions(
    model: nn.Module, data: PathStarData, objective: Objective, batch_size: int = 2_000, device: str | torch.device | None = None,
    parts: nn.Module | None = None, greedy: bool = True,
) -> dict[str, Tensor]:
    """Teacher-forced and greedy predictions and teacher-forced losses, in path order (batch, l),
    ``fill_step`` where the objective decodes in an order of its own, and ``{head}_pred`` for
    each extra head of the objective's ``parts`` (when given). ``device``: where the inputs go;
    None -> where the model's weights are (a model trained on CUDA stays there). ``greedy=False``
    skips decoding (up to l more forward passes per batch) for callers that read only the
    teacher-forced predictions."""
    spec = data.spec
    device = model_device(model) if device is None else resolve_device(device)
    out: dict[str, list[Tensor]] = {"tf_pred": [], "tf_loss": [], "greedy_pred": [], "fill_step": []}
    modules = [m for m in (model, parts) if m is not None]
    was_training = [m.training for m in modules]
    for module in modules:
        module.eval()
    for start in range(0, len(data), batch_size):
        chunk = data[start : start + batch_size]
        prompt, answer = chunk.prompt_tokens().to(device), chunk.answer_tokens().to(device)
        targets = objective.targets(answer)
        inputs = objective.inputs(prompt, targets, spec)
        logits = answer_logits(logits_of(model, inputs), spec).float()
        loss = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
        tf_pred = logits.argmax(-1)
        out["tf_pred"].append(objective.to_path_order(tf_pred).cpu())
        out["tf_loss"].append(objective.to_path_order(loss).cpu())
        if greedy:
            greedy_pred, fill_step = objective.decode_with_order(model, prompt, spec, teacher_forced=(targets, tf_pred))
            out["greedy_pred"].append(objective.to_path_order(greedy_pred).cpu())
            if fill_step is not None:
                out["fill_step"].append(objective.to_path_order(fill_step).cpu())
        if parts is not None:
            for head, head_pred in objective.head_predictions(model, parts, inputs, spec).items():
                out.setdefault(f"{head}_pred", []).append(objective.to_path_order(head_pred).cpu())
    for module, mode in zip(modules, was_training):
        module.train(mode)
    return {key: torch.cat(values) for key, values in out.items() if values}


def evaluate(
    model: nn.Module, data: PathStarData, objective: Objective, batch_size: int = 2_000, device: str | torch.device | None = None,
    parts: nn.Module | None = None,
) -> pd.DataFrame:
    """Per-position accuracy (teacher-forced and greedy) and loss, plus full-path accuracy;
    with the objective's ``parts``, each extra head's accuracy as well."""
    spec = data.spec
    pred = predictions(model, data, objective, batch_size, device, parts)
    tf_correct = (pred["tf_pred"] == data.path).float()
    greedy_correct = (pred["greedy_pred"] == data.path).float()
    rows: list[dict[str, Any]] = []
    for k, position in enumerate(spec.positions):
        for metric, values in (("tf_accuracy", tf_correct), ("greedy_accuracy", greedy_correct), ("tf_loss", pred["tf_loss"])):
            rows.append({"position": position, "metric": metric, "value": values[:, k].mean().item()})
    if "fill_step" in pred:
        for k, position in enumerate(spec.positions):
            rows.append({"position": position, "metric": "fill_step", "value": pred["fill_step"][:, k].float().mean().item()})
    for key in [key for key in pred if key.endswith("_pred") and key not in ("tf_pred", "greedy_pred")]:
        correct = (pred[key] == data.path).float()
        for k, position in enumerate(spec.positions):
            rows.append({"position": position, "metric": key.removesuffix("_pred") + "_accuracy", "value": correct[:, k].mean().item()})
    rows.append({"position": "path", "metric": "tf_accuracy", "value": tf_correct.all(dim=1).float().mean().item()})
    rows.append({"position": "path", "metric": "greedy_accuracy", "value": greedy_correct.all(dim=1).float().mean().item()})
    frame = pd.DataFrame(rows)
    frame.insert(1, "role", [position_role(p, spec.path_length) for p in frame["position"]])
    frame["n_graphs"] = len(data)
    return frame


def format_table(frame: pd.DataFrame) -> str:
    """The evaluation as a small table: metrics as rows, r1..rl and the whole path as columns."""
    table = frame.pivot_table(index="metric", columns="position", values="value", sort=False)
    positions = [p for p in frame["position"].unique()]
    table = table[positions]
    table.columns = [f"{p} (first decision)" if p == "r2" else p for p in positions]
    table.index.name = None
    return table.to_string(float_format=lambda v: f"{v:.4f}", na_rep="")


def metrics_frame(metrics: list[dict[str, Any]]) -> pd.DataFrame:
    """Tidy view of a run's ``metrics.jsonl``: one row per (step, split, metric, position)."""
    rows = []
    for line in metrics:
        for split in ("train", "test"):
            for metric, by_position in line.get(split, {}).items():
                for position, value in by_position.items():
                    rows.append({"step": line["step"], "split": split, "metric": metric, "position": position, "value": value})
    return pd.DataFrame(rows, columns=["step", "split", "metric", "position", "value"])
