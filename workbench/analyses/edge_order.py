"""The first decision by where the prompt lists the edges it depends on.

Trained on r2 alone at a high enough rate, the GPT of G(2,3,50) learns r2 in steps: from
chance to a level near 0.75, then past 0.9 (docs/findings.md, the depth section). A model that
has learned the hop as a rule gets r2 right wherever its edges sit in the prompt; one that has
learned it slot by slot (lookups tied to absolute positions) gets it right only for some
placements. This table tells the two apart: r2's teacher-forced accuracy by the prompt slot
of the edge onto the goal and of the edge from the source onto r2.
"""

from __future__ import annotations

import pandas as pd
import torch
from torch import Tensor, nn

from workbench.evaluate import predictions
from workbench.objectives import Objective
from workbench.task import PathStarData


def edge_slot(data: PathStarData, tail: Tensor, head: Tensor) -> Tensor:
    """(batch,) prompt slot (0 = first edge) of the edge ``tail -> head`` in each graph."""
    match = (data.edges[..., 0] == tail[:, None]) & (data.edges[..., 1] == head[:, None])
    if not match.any(dim=1).all():
        raise ValueError("an edge asked for is not in every graph's prompt")
    return match.float().argmax(dim=1)


def accuracy_by_edge_slots(data: PathStarData, r2_pred: Tensor) -> pd.DataFrame:
    """One row per (goal_edge_slot, source_edge_slot) seen: the slot of the path's last edge
    (onto the goal), the slot of its first (source -> r2), the graphs there and the fraction
    of them whose r2 prediction ``r2_pred`` (batch,) is right."""
    frame = pd.DataFrame({
        "goal_edge_slot": edge_slot(data, data.path[:, -2], data.path[:, -1]).numpy(),
        "source_edge_slot": edge_slot(data, data.path[:, 0], data.path[:, 1]).numpy(),
        "correct": (r2_pred.cpu() == data.path[:, 1]).float().numpy(),
    })
    return frame.groupby(["goal_edge_slot", "source_edge_slot"], as_index=False).agg(
        n_graphs=("correct", "size"), r2_accuracy=("correct", "mean"))


@torch.no_grad()
def first_decision_by_edge_slots(model: nn.Module, data: PathStarData, objective: Objective) -> pd.DataFrame:
    """``accuracy_by_edge_slots`` of the model's teacher-forced r2 on ``data``."""
    return accuracy_by_edge_slots(data, predictions(model, data, objective, greedy=False)["tf_pred"][:, 1])
