"""Which graphs a run trains on and which it is tested on: one definition of each.

    training_graphs(task)        task.train_file where given, else task.num_train graphs generated from task.data_seed
    evaluation_graphs(task, n)     task.test_file where given, else the held-out stream: never the training set

The held-out stream is drawn from another seed than the training graphs, in blocks of
``HELD_OUT_BLOCK`` graphs each with its own seed, so it is prefix-stable: the first 2,000
graphs are the first 2,000 of any longer draw. Evaluation, probes, patching and the analyses
all score on nested prefixes of one set, and none of them builds the training set to get it.
"""

from __future__ import annotations

import torch

from workbench.config import TaskConfig
from workbench.data_files import load_data
from workbench.task import PathStarData, generate

TEST_SEED_OFFSET = 1_000_003  # the held-out set is drawn from another stream than the training set
HELD_OUT_BLOCK = 1_000  # the held-out stream is drawn in blocks, each from its own seed


def training_graphs(task: TaskConfig) -> PathStarData:
    spec = task.graph
    data = load_data(task.train_file, spec.num_nodes) if task.train_file else generate(spec, task.num_train, task.data_seed)
    _check_graph(task, data, "train")
    return data


def held_out_graphs(task: TaskConfig, num_graphs: int) -> PathStarData:
    """The first ``num_graphs`` graphs of the held-out stream (prefix-stable, see above)."""
    blocks = -(-num_graphs // HELD_OUT_BLOCK)
    base = (task.data_seed + TEST_SEED_OFFSET) * 100_003
    parts = [generate(task.graph, HELD_OUT_BLOCK, base + block) for block in range(blocks)]
    if not parts:
        return generate(task.graph, 0, base)
    data = parts[0] if len(parts) == 1 else PathStarData(task.graph, *(torch.cat([getattr(p, f) for p in parts]) for f in ("edges", "source", "goal", "path")))
    return data[:num_graphs]


def evaluation_graphs(task: TaskConfig, num_graphs: int | None = None) -> PathStarData:
    """The run's test set, or its first ``num_graphs``: ``task.test_file`` where one is given
    (all of it by default; asking for more than it holds is an error), else the held-out
    stream (``task.num_test`` graphs by default, any number on request)."""
    if task.test_file is None:
        return held_out_graphs(task, task.num_test if num_graphs is None else num_graphs)
    data = load_data(task.test_file, task.graph.num_nodes)
    _check_graph(task, data, "test")
    if num_graphs is not None and len(data) < num_graphs:
        raise ValueError(f"task.test_file {task.test_file} holds {len(data)} graphs; {num_graphs} are needed")
    return data if num_graphs is None else data[:num_graphs]


def _check_graph(task: TaskConfig, data: PathStarData, split: str) -> None:
    if data.spec != task.graph:
        raise ValueError(f"task.{split}_file holds {data.spec} graphs, but the run is configured for {task.graph}")
