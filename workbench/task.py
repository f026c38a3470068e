"""The path-star task: graph spec, seeded vectorised generator, and the paper's tokenizer.

A path-star graph G(d, l) on N node labels has a source with d arms; each arm is a path of
l nodes counted from the source (source included), so there are d*(l-1) edges. One arm ends
in the goal. The prompt lists the edges in random order, then the source and the goal; the
answer is the arm from source to goal. One tiny G(2,3) graph with N=10, the first line of the
paper's ``deg_2_path_3_nodes_10_test_20000.txt``::

    2,8|5,2|5,9|9,3/5,8=5,2,8

    arms:        5 -> 2 -> 8 (goal)      5 -> 9 -> 3
    token ids:   node v -> v, '|' -> N=10, '=' -> N+1=11, '/' -> N+2=12, '$' -> N+3=13
    prompt:      2 8 10 5 2 10 5 9 10 9 3 12 5 8 11          (15 tokens, ends with '=')
    answer:      5 2 8                                       (r1 r2 r3)

The answer positions are called r1..rl everywhere. r1 is the source, copied from the prompt;
r2 is the *first decision*, the only token that needs planning; every later token follows
the single edge out of the previous one. What each objective feeds the model and asks it to
predict (``workbench.objectives``), lined up under the end of the prompt::

                 ... 3 / 5 8 =   .   .
    next_token   inputs  ... =  5  2        targets  5 2 8   (teacher forcing)
    teacherless  inputs  ... =  $  $        targets  5 2 8   (one parallel pass)
    reverse      inputs  ... =  8  2        targets  8 2 5   (goal first)

The generator follows the paper's distribution: 1 + d*(l-1) distinct nodes drawn uniformly
from N labels, the goal arm one of the d arms, the edge list shuffled.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Int
from torch import Tensor


@dataclass(frozen=True)
class GraphSpec:
    """G(degree, path_length) with labels 0..num_nodes-1."""

    degree: int
    path_length: int
    num_nodes: int

    def __post_init__(self) -> None:
        if self.degree < 2:
            raise ValueError(f"degree must be >= 2 (a single arm needs no planning), got {self.degree}")
        if self.path_length < 2:
            raise ValueError(f"path_length must be >= 2 (source and goal), got {self.path_length}")
        if self.num_nodes < self.nodes_per_graph:
            raise ValueError(
                f"num_nodes={self.num_nodes} is too small for G({self.degree},{self.path_length}): "
                f"a graph has {self.nodes_per_graph} distinct nodes"
            )

    @classmethod
    def parse(cls, text: str) -> GraphSpec:
        """Parse ``"d,l,N"`` (as the CLI's ``--graph 2,5,50``)."""
        parts = text.replace(" ", "").split(",")
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            raise ValueError(f"graph spec {text!r}: expected 'degree,path_length,num_nodes', e.g. '2,5,50'")
        return cls(*(int(p) for p in parts))

    def __str__(self) -> str:
        return f"G({self.degree},{self.path_length},{self.num_nodes})"

    @property
    def num_edges(self) -> int:
        return self.degree * (self.path_length - 1)

    @property
    def nodes_per_graph(self) -> int:
        return 1 + self.num_edges

    # --- the paper's numeral tokenizer ---------------------------------------------------
    @property
    def edge_sep(self) -> int:  # '|'
        return self.num_nodes

    @property
    def eq(self) -> int:  # '='
        return self.num_nodes + 1

    @property
    def slash(self) -> int:  # '/'
        return self.num_nodes + 2

    @property
    def filler(self) -> int:  # '$', the teacherless input token
        return self.num_nodes + 3

    @property
    def vocab_size(self) -> int:
        return self.num_nodes + 4

    @property
    def prompt_length(self) -> int:
        """Edges (2 tokens each), '|' between them, then '/', source, goal, '='."""
        return 3 * self.num_edges - 1 + 4

    @property
    def eq_position(self) -> int:
        """Index of '=' in the prompt: the position whose output is r1."""
        return self.prompt_length - 1

    @property
    def positions(self) -> list[str]:
        """Answer position names r1..rl."""
        return [f"r{k}" for k in range(1, self.path_length + 1)]

    def token_name(self, token: int) -> str:
        specials = {self.edge_sep: "|", self.eq: "=", self.slash: "/", self.filler: "$"}
        if token in specials:
            return specials[token]
        if 0 <= token < self.num_nodes:
            return str(token)
        raise ValueError(f"token id {token} is outside the vocabulary of {self} (0..{self.vocab_size - 1})")


@dataclass
class PathStarData:
    """A set of graphs of one shape, held as int64 tensors (no per-sample Python objects).

    edges: (batch, num_edges, 2) in prompt order; source, goal: (batch,);
    path: (batch, path_length), source first, goal last.
    """

    spec: GraphSpec
    edges: Int[Tensor, "batch edge 2"]
    source: Int[Tensor, " batch"]
    goal: Int[Tensor, " batch"]
    path: Int[Tensor, "batch path"]

    def __len__(self) -> int:
        return self.path.shape[0]

    def __getitem__(self, index: slice | Tensor) -> PathStarData:
        return PathStarData(self.spec, self.edges[index], self.source[index], self.goal[index], self.path[index])

    def prompt_tokens(self) -> Int[Tensor, "batch prompt"]:
        """Token ids of 'a,b|a,b|.../source,goal=' as the paper's tokenizer gives them."""
        n, spec = len(self), self.spec
        sep = torch.full((n, spec.num_edges, 1), spec.edge_sep, dtype=torch.long)
        edge_part = torch.cat([self.edges, sep], dim=2).reshape(n, -1)[:, :-1]  # drop the last '|'
        tail = torch.stack(
            [torch.full_like(self.source, spec.slash), self.source, self.goal, torch.full_like(self.source, spec.eq)],
            dim=1,
        )
        return torch.cat([edge_part, tail], dim=1)

    def answer_tokens(self) -> Int[Tensor, "batch path"]:
        return self.path


def generate(spec: GraphSpec, num_graphs: int, seed: int) -> PathStarData:
    """Draw ``num_graphs`` graphs from the paper's distribution, deterministically from ``seed``.

    Vectorised: one argsort of uniform noise picks the distinct nodes of every graph, a
    second one shuffles each edge list.
    """
    if num_graphs < 0:
        raise ValueError(f"num_graphs must be >= 0, got {num_graphs}")
    generator = torch.Generator().manual_seed(seed)
    d, arm_len = spec.degree, spec.path_length - 1
    nodes = torch.rand(num_graphs, spec.num_nodes, generator=generator).argsort(dim=1)[:, : spec.nodes_per_graph]
    source = nodes[:, 0]
    arms = nodes[:, 1:].reshape(num_graphs, d, arm_len)  # arm 0 leads to the goal
    starts = torch.cat([source[:, None, None].expand(-1, d, 1), arms[:, :, :-1]], dim=2)
    edges = torch.stack([starts, arms], dim=3).reshape(num_graphs, spec.num_edges, 2)
    order = torch.rand(num_graphs, spec.num_edges, generator=generator).argsort(dim=1)
    edges = torch.gather(edges, 1, order[:, :, None].expand(-1, -1, 2))
    path = torch.cat([source[:, None], arms[:, 0]], dim=1)
    return PathStarData(spec, edges.contiguous(), source.clone(), path[:, -1].clone(), path.contiguous())


def structure_checks(data: PathStarData) -> dict[str, Tensor]:
    """The requirements of a path-star G(d, l) with its answer, each a (batch,) mask of the
    graphs that meet it, keyed by what it requires (readers name the first one a graph breaks).

    Together they hold exactly for path-stars: with the source's d out-edges, no edge into it,
    and at most one edge into and out of every other node, walks from the source never meet
    or revisit a node; if each of the d arms then has l-1 edges, they use all d*(l-1) listed
    edges, so no cycle, self-loop, longer arm or detached edge can remain. Vectorised over
    graphs: the walk looks successors up by ``searchsorted`` in each graph's edges sorted by
    source node, with no (batch, num_nodes) table.
    """
    spec = data.spec
    src, dst = data.edges[..., 0], data.edges[..., 1]
    source = data.source[:, None].contiguous()
    labels = torch.cat([data.edges.flatten(1), source, data.goal[:, None], data.path], dim=1)
    tails, order = src.sort(dim=1)
    heads = torch.gather(dst, 1, order)
    repeated_tail = _repeats(tails) & (tails[:, 1:] != source)
    repeated_head = _repeats(dst.sort(dim=1).values)
    first = torch.searchsorted(tails, source)  # the source's out-edges are one block of ``tails``
    children = torch.gather(heads, 1, (first + torch.arange(spec.degree)).clamp(max=spec.num_edges - 1))
    arms_walk = _walk(tails, heads, children, spec.path_length - 2)[1]
    on_arm, path_walk = _walk(tails, heads, data.path[:, 1:-1].contiguous(), 1)
    return {
        f"node labels in 0..{spec.num_nodes - 1}": ((labels >= 0) & (labels < spec.num_nodes)).all(dim=1),
        "the answer starts at the source and ends at the goal": (data.path[:, 0] == data.source) & (data.path[:, -1] == data.goal),
        f"the source has {spec.degree} out-edges and no in-edge": ((src == source).sum(dim=1) == spec.degree) & (dst != source).all(dim=1),
        "no other node has two out-edges or two in-edges": ~repeated_tail.any(dim=1) & ~repeated_head.any(dim=1),
        f"every arm has exactly {spec.path_length - 1} edges from the source (no cycle, no detached edge)": arms_walk.all(dim=1),
        "the answer follows listed edges": (
            (children == data.path[:, 1:2]).any(dim=1) & path_walk.all(dim=1) & (on_arm == data.path[:, 2:]).all(dim=1)
        ),
    }


def _repeats(rows: Tensor) -> Tensor:
    """(batch, k-1) mask of entries equal to their left neighbour in each sorted row."""
    return rows[:, 1:] == rows[:, :-1]


def _walk(tails: Tensor, heads: Tensor, start: Tensor, steps: int) -> tuple[Tensor, Tensor]:
    """Follow the out-edge of every node in ``start`` (batch, k) ``steps`` times.

    Returns the nodes reached and a (batch, k) mask of walks that found an out-edge at every
    step; ``tails`` (sorted) and ``heads`` are each graph's edges ordered by source node.
    """
    found = torch.ones_like(start, dtype=torch.bool)
    last = tails.shape[1] - 1
    for _ in range(steps):
        slot = torch.searchsorted(tails, start).clamp(max=last)
        found &= torch.gather(tails, 1, slot) == start
        start = torch.gather(heads, 1, slot)
    return start, found


def check_structure(data: PathStarData) -> Tensor:
    """Boolean (batch,) mask of graphs that are path-stars G(d, l) with their answer: d arms of
    exactly l-1 edges each from the source, every node reachable, no cycle, and the answer the
    arm that ends at the goal (``structure_checks`` lists the requirements)."""
    checks = iter(structure_checks(data).values())
    ok = next(checks).clone()
    for check in checks:
        ok &= check
    return ok


def structure_problem(data: PathStarData) -> tuple[int, str] | None:
    """(index, broken requirement) of the first graph that is not a path-star, or None."""
    checks = structure_checks(data)
    bad = ~torch.stack(list(checks.values()), dim=1)  # (batch, requirement)
    rows = bad.any(dim=1).nonzero()
    if not len(rows):
        return None
    index = int(rows[0])
    return index, list(checks)[int(bad[index].float().argmax())]


def arm_paths(data: PathStarData) -> Int[Tensor, "batch degree path"]:
    """Every arm as a path from the source, arms in the prompt order of their source edges.

    The goal arm is the one at ``goal_arm_rank``; the others are
    the wrong answers a model could give, used by the cheat test and by goal patching.
    """
    spec, n = data.spec, len(data)
    src, dst = data.edges[..., 0], data.edges[..., 1]
    from_source = src == data.source[:, None]
    first_nodes = dst[from_source].reshape(n, spec.degree)  # boolean indexing keeps prompt order
    successor = torch.full((n, spec.num_nodes), -1, dtype=torch.long)
    rows = torch.arange(n)[:, None].expand_as(src)
    successor[rows[~from_source], src[~from_source]] = dst[~from_source]
    nodes = [data.source[:, None].expand(n, spec.degree), first_nodes]
    for _ in range(spec.path_length - 2):
        nodes.append(torch.gather(successor, 1, nodes[-1]))
    return torch.stack(nodes, dim=2)


def goal_arm_rank(data: PathStarData) -> torch.Tensor:
    """(batch,) rank, among the source's out-edges in prompt order, of the edge onto the goal arm."""
    from_source = data.edges[..., 0] == data.source[:, None]  # (batch, edge)
    onto_goal_arm = from_source & (data.edges[..., 1] == data.path[:, 1:2])
    first_slot = onto_goal_arm.float().argmax(dim=1)  # exactly one such edge
    earlier = torch.arange(data.edges.shape[1])[None, :] < first_slot[:, None]
    return (from_source & earlier).sum(dim=1)
