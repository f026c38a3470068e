"""The analyses of a trained model that need no training history, on any checkpoints: the
Clever Hans cheat test, attention onto the looked-up edge (GPT), goal patching, and the first
decision by where the prompt lists its edges.

For checkpoints trained anywhere (a study, a GPU session, ``workbench train``), beside
``workbench probe`` on the same checkpoints:

    workbench inspect runs/studies/solvers/checkpoints/gpt-mtp-G2_3_50-cpu-s0 \\
        runs/default/checkpoints/gpt-next_token --out runs/inspect

All checkpoints must be of one graph: the same held-out graphs (the runs' own evaluation
stream) go to each, so their rows compare.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from workbench.analyses import clever_hans, edge_order, patching
from workbench.checkpoint import Checkpoint
from workbench.datasets import evaluation_graphs


def inspect_checkpoints(checkpoints: list[Checkpoint], n_graphs: int = 2_000) -> dict[str, pd.DataFrame]:
    """{"cheat_test", "edge_lookup", "patching", "edge_slots"} -> one tidy table each, a ``run``
    column naming each checkpoint's folder. The cheat test and the edge slots use ``n_graphs``
    held-out graphs, patching half of them and the attention quarter (GPT only; no table when
    no checkpoint is a GPT)."""
    graphs = {c.config.task.graph for c in checkpoints}
    if len(graphs) > 1:
        raise ValueError(f"the checkpoints are of different graphs: {', '.join(sorted(map(str, graphs)))}; inspect one graph at a time")
    data = evaluation_graphs(checkpoints[0].config.task, n_graphs)
    tables: dict[str, list[pd.DataFrame]] = {"cheat_test": [], "edge_lookup": [], "patching": [], "edge_slots": []}
    for c in checkpoints:
        who = dict(run=Path(c.path).name, arch=c.config.arch, objective=c.config.objective, layers=c.config.model.n_layers,
                   seed=c.config.train.seed, step=c.step)
        tables["cheat_test"].append(clever_hans.cheat_test(c.model, data, c.objective).assign(**who))
        if c.config.arch == "gpt":
            tables["edge_lookup"].append(clever_hans.edge_lookup_attention(c.model, data[: n_graphs // 4], c.objective).assign(**who))
        tables["patching"].append(patching.goal_patching(c.model, data[: n_graphs // 2], c.objective).assign(**who))
        tables["edge_slots"].append(edge_order.first_decision_by_edge_slots(c.model, data, c.objective).assign(**who))
    return {name: pd.concat(frames, ignore_index=True) for name, frames in tables.items() if frames}
