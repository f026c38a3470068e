"""What a probe is asked to read out, computed from the graph alone.

For the tiny G(2,3) graph of ``workbench.task`` (``2,8|5,2|5,9|9,3/5,8=5,2,8``; edge slots
e1..e4 in prompt order, path 5 -> 2 -> 8)::

    node_r2  = 2     node_r3 = 8      the node at each answer position r2..rl (N-way)
    goal     = 8     source  = 5      both are given in the prompt (a model must still move them)
    arm      = 0     the goal arm, named without node labels: the rank, in prompt order, of
                     the source edge that starts it (5,2 is the first source edge listed)
    on_path  = [1, 1, 0, 0]   per edge slot: does that edge lie on the goal path (binary)

Every target also has a *control task* in the sense of Hewitt & Liang (2019): the same
label space, but each label is a fixed random function of one node name (the node the
target is about), so it carries no structure of the graph. A probe that scores well on the
control task is reading node identities, not the property; the gap between the two
accuracies is the probe's *selectivity*. For the node targets themselves the label *is* a
node identity, so selectivity there only says how much the random regrouping costs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from workbench.task import PathStarData, goal_arm_rank


@dataclass
class Target:
    """Labels of one probe target: (n,) for one probe, or (n, slots) for one probe per slot."""

    name: str
    labels: np.ndarray
    control: np.ndarray
    num_classes: int

    @property
    def slots(self) -> int:
        return 1 if self.labels.ndim == 1 else self.labels.shape[1]


def target_names(path_length: int) -> list[str]:
    """Every target for paths of ``path_length`` nodes, in a fixed order."""
    return ["arm", *[f"node_r{k}" for k in range(2, path_length + 1)], "goal", "source", "on_path"]


def on_path_edges(data: PathStarData) -> torch.Tensor:
    """(batch, edge) 1 where the edge in that prompt slot is a step of the answer path."""
    steps = torch.stack([data.path[:, :-1], data.path[:, 1:]], dim=2)  # (batch, l-1, 2)
    return (data.edges[:, :, None, :] == steps[:, None, :, :]).all(dim=3).any(dim=2).long()


def _control_map(num_nodes: int, num_classes: int, seed: int, salt: int) -> np.ndarray:
    """A fixed random map from node names to labels.

    Into a small label space (arm, on_path) it is balanced, names split into equal groups
    at random, so the control has the real target's chance level and majority baseline.
    Into the N node labels it is drawn i.i.d. (many-to-one): a balanced map would be a mere
    relabelling, which a linear probe decodes exactly as well as the names themselves.
    """
    rng = np.random.default_rng([seed, salt])
    if num_classes >= num_nodes:
        return rng.integers(0, num_classes, size=num_nodes)
    labels = np.empty(num_nodes, dtype=np.int64)
    labels[rng.permutation(num_nodes)] = np.arange(num_nodes) % num_classes
    return labels


def probe_targets(data: PathStarData, names: list[str] | None = None, control_seed: int = 0) -> dict[str, Target]:
    """Labels and control labels of ``names`` (default: every target) for the graphs in ``data``."""
    spec = data.spec
    names = names or target_names(spec.path_length)
    known = target_names(spec.path_length)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown probe target(s) {unknown} for {spec}; expected some of {known}")
    targets: dict[str, Target] = {}
    for salt, name in enumerate(known):
        if name not in names:
            continue
        if name == "arm":
            labels, about, classes = goal_arm_rank(data), data.path[:, 1], spec.degree
        elif name == "on_path":
            labels, about, classes = on_path_edges(data), data.edges[..., 1], 2
        elif name in ("goal", "source"):
            labels = about = data.goal if name == "goal" else data.source
            classes = spec.num_nodes
        else:
            k = int(name.removeprefix("node_r"))
            labels = about = data.path[:, k - 1]
            classes = spec.num_nodes
        control = _control_map(spec.num_nodes, classes, control_seed, salt)[about.numpy()]
        targets[name] = Target(name, labels.numpy(), control, classes)
    return targets
