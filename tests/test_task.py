import pytest
import torch

from workbench.task import GraphSpec, PathStarData, check_structure, generate, structure_checks, structure_problem


def hand_graph() -> PathStarData:
    """2,8|5,2|5,9|9,3/5,8=5,2,8: line 1 of the paper's deg_2_path_3_nodes_10 test file."""
    spec = GraphSpec(2, 3, 10)
    edges = torch.tensor([[[2, 8], [5, 2], [5, 9], [9, 3]]])
    return PathStarData(spec, edges, torch.tensor([5]), torch.tensor([8]), torch.tensor([[5, 2, 8]]))


def test_hand_graph_tokens_are_the_paper_numeral_ids():
    data = hand_graph()
    # '|' = 10, '/' = 12, '=' = 11
    assert data.prompt_tokens().tolist() == [[2, 8, 10, 5, 2, 10, 5, 9, 10, 9, 3, 12, 5, 8, 11]]
    assert data.answer_tokens().tolist() == [[5, 2, 8]]
    assert data.spec.prompt_length == 15 and data.spec.eq_position == 14
    assert data.spec.filler == 13 and data.spec.vocab_size == 14


def test_paper_shape_of_g2_5_50():
    spec = GraphSpec(2, 5, 50)
    assert (spec.num_edges, spec.prompt_length, spec.vocab_size) == (8, 27, 54)
    assert spec.positions == ["r1", "r2", "r3", "r4", "r5"]


@pytest.mark.parametrize("spec", [GraphSpec(2, 5, 50), GraphSpec(3, 4, 20), GraphSpec(5, 2, 11), GraphSpec(2, 3, 10)])
def test_generated_graphs_are_path_stars(spec):
    data = generate(spec, 2_000, seed=3)
    assert check_structure(data).all()
    assert data.edges.shape == (2_000, spec.num_edges, 2)
    # d*(l-1)+1 distinct nodes in every graph
    nodes = torch.cat([data.source[:, None], data.edges[:, :, 1]], dim=1)
    assert (nodes.sort(dim=1).values.diff(dim=1) != 0).all()
    assert (data.source != data.goal).all() and (nodes < spec.num_nodes).all()
    # the goal ends exactly one arm: it is a leaf (no out-edge) reached by the path
    assert not (data.edges[:, :, 0] == data.goal[:, None]).any()
    leaves = ~(data.edges[:, :, 1][:, :, None] == data.edges[:, None, :, 0]).any(dim=2)
    assert (leaves.sum(dim=1) == spec.degree).all()
    assert ((data.edges[:, :, 1] == data.goal[:, None]) & leaves).sum(dim=1).eq(1).all()


def test_generator_is_seeded_and_goal_arm_is_uniform_in_prompt_order():
    spec = GraphSpec(3, 4, 30)
    a, b, c = generate(spec, 6_000, 7), generate(spec, 6_000, 7), generate(spec, 6_000, 8)
    assert torch.equal(a.edges, b.edges) and torch.equal(a.path, b.path)
    assert not torch.equal(a.edges, c.edges)
    # rank, among the source's out-edges in prompt order, of the edge that starts the goal arm
    out_of_source = a.edges[:, :, 0] == a.source[:, None]
    to_goal_arm = out_of_source & (a.edges[:, :, 1] == a.path[:, 1:2])
    rank = (out_of_source.cumsum(dim=1) * to_goal_arm).sum(dim=1) - 1
    share = torch.bincount(rank, minlength=3).float() / len(a)
    assert torch.allclose(share, torch.full((3,), 1 / 3), atol=0.03)
    # edges are shuffled: the goal arm's first edge is not always in the same slot
    assert to_goal_arm.float().mean(0).max() < 0.25


def test_generator_makes_the_paper_training_set():
    """200,000 graphs of G(2,5,50), all path-stars, goal arm first in the prompt half the time
    (its speed is measured by benchmarks/generation.py, not here)."""
    data = generate(GraphSpec(2, 5, 50), 200_000, seed=0)
    assert data.edges.shape == (200_000, 8, 2) and data.path.shape == (200_000, 5) and data.edges.dtype == torch.long
    assert check_structure(data).all()
    first_arm = data.edges[:, :, 0] == data.source[:, None]
    goal_first = (data.edges[:, :, 1] == data.path[:, 1:2])[first_arm].reshape(-1, 2)[:, 0]
    assert abs(goal_first.float().mean().item() - 0.5) < 0.01


@pytest.mark.parametrize(
    "args, message",
    [((1, 5, 50), "degree must be >= 2"), ((2, 1, 50), "path_length must be >= 2"), ((3, 5, 12), "too small")],
)
def test_bad_graph_specs_are_rejected(args, message):
    with pytest.raises(ValueError, match=message):
        GraphSpec(*args)


def test_graph_spec_parse():
    assert GraphSpec.parse("2,5,50") == GraphSpec(2, 5, 50)
    with pytest.raises(ValueError, match="degree,path_length,num_nodes"):
        GraphSpec.parse("2,5")


def reference_is_path_star(edges: list[list[int]], source: int, goal: int, path: list[int], spec: GraphSpec) -> bool:
    """The definition, one graph at a time in plain Python: d arms of exactly l-1 edges from
    the source that together hold every listed edge and node, and the answer is the goal's arm."""
    labels = [v for edge in edges for v in edge] + [source, goal, *path]
    if not all(0 <= v < spec.num_nodes for v in labels) or len({tuple(e) for e in edges}) != len(edges):
        return False
    successors: dict[int, list[int]] = {}
    for a, b in edges:
        successors.setdefault(a, []).append(b)
    arms = []
    for child in successors.get(source, []):
        arm = [source, child]
        while len(arm) <= spec.path_length and len(successors.get(arm[-1], [])) == 1:
            arm.append(successors[arm[-1]][0])
        arms.append(arm)
    arm_nodes = {v for arm in arms for v in arm}
    return (
        len(arms) == spec.degree
        and all(len(arm) == spec.path_length and arm[-1] not in successors for arm in arms)
        and len(arm_nodes) == spec.nodes_per_graph == len({v for edge in edges for v in edge} | {source})
        and path in arms and path[-1] == goal
    )


def malformed(spec: GraphSpec, edges: list[tuple[int, int]], source: int, goal: int, path: list[int]) -> PathStarData:
    t = torch.tensor
    return PathStarData(spec, t([edges]), t([source]), t([goal]), t([path]))


# nodes: source 0; the graphs below are the examples (s, a, b, c, g = 0, 1, 2, 3, 4)
MALFORMED = {
    "detached self-loop": malformed(GraphSpec(2, 3, 10), [(0, 1), (1, 4), (0, 2), (3, 3)], 0, 4, [0, 1, 4]),
    "detached edge": malformed(GraphSpec(2, 3, 10), [(0, 1), (1, 4), (0, 2), (3, 5)], 0, 4, [0, 1, 4]),
    "self-loop at an arm's end": malformed(GraphSpec(2, 3, 10), [(0, 1), (1, 4), (0, 2), (2, 2)], 0, 4, [0, 1, 4]),
    "arm replaced by a 3-cycle": malformed(GraphSpec(2, 4, 10), [(0, 1), (1, 5), (5, 4), (0, 2), (2, 3), (3, 2)], 0, 4, [0, 1, 5, 4]),
    "arm of one edge and a detached 3-cycle": malformed(
        GraphSpec(2, 5, 12), [(0, 1), (1, 5), (5, 6), (6, 4), (0, 2), (7, 8), (8, 9), (9, 7)], 0, 4, [0, 1, 5, 6, 4]
    ),
    "arms of 2 and 6 nodes": malformed(GraphSpec(2, 4, 10), [(0, 1), (1, 5), (5, 6), (6, 7), (7, 4), (0, 2)], 0, 6, [0, 1, 5, 6]),
    "arms of 3 and 5 nodes, answer on the short one": malformed(
        GraphSpec(2, 4, 10), [(0, 1), (1, 4), (0, 2), (2, 3), (3, 5), (5, 6)], 0, 6, [0, 2, 3, 6]
    ),
    "two arms merge": malformed(GraphSpec(2, 3, 10), [(0, 1), (1, 4), (0, 2), (2, 4)], 0, 4, [0, 1, 4]),
    "an edge into the source": malformed(GraphSpec(2, 3, 10), [(0, 1), (1, 4), (0, 2), (2, 0)], 0, 4, [0, 1, 4]),
    "negative label": malformed(GraphSpec(2, 3, 10), [(0, 1), (1, 4), (0, 2), (2, -3)], 0, 4, [0, 1, 4]),
    "answer skips an edge": malformed(GraphSpec(2, 3, 10), [(0, 1), (1, 4), (0, 2), (2, 3)], 0, 4, [0, 4, 4]),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_check_structure_rejects_graphs_that_are_not_path_stars(name):
    data = MALFORMED[name]
    assert not reference_is_path_star(data.edges[0].tolist(), int(data.source), int(data.goal), data.path[0].tolist(), data.spec)
    assert not check_structure(data).any()
    index, problem = structure_problem(data)
    assert index == 0 and problem in structure_checks(data)


@pytest.mark.parametrize("spec", [GraphSpec(2, 3, 7), GraphSpec(3, 3, 9), GraphSpec(2, 4, 9), GraphSpec(3, 2, 5)])
def test_check_structure_agrees_with_the_definition_on_mutated_graphs(spec):
    """Random single changes (an edge end, the source, the goal or an answer node relabelled;
    two edge ends swapped): about a third stay path-stars, and the two checks always agree."""
    rng = torch.Generator().manual_seed(0)
    data = generate(spec, 3_000, seed=5)
    edges, source, goal, path = data.edges.clone(), data.source.clone(), data.goal.clone(), data.path.clone()
    rows = torch.arange(len(data))
    kind = torch.randint(0, 5, (len(data),), generator=rng)
    label = torch.randint(0, spec.num_nodes, (len(data),), generator=rng)
    slot = torch.randint(0, spec.num_edges, (len(data), 2), generator=rng)
    end = torch.randint(0, 2, (len(data), 2), generator=rng)
    relabel = kind == 0
    edges[rows[relabel], slot[relabel, 0], end[relabel, 0]] = label[relabel]
    swap = kind == 1
    a, b = edges[rows[swap], slot[swap, 0], end[swap, 0]], edges[rows[swap], slot[swap, 1], end[swap, 1]]
    edges[rows[swap], slot[swap, 0], end[swap, 0]], edges[rows[swap], slot[swap, 1], end[swap, 1]] = b, a
    source = torch.where(kind == 2, label, source)
    goal = torch.where(kind == 3, label, goal)
    path[rows[kind == 4], slot[kind == 4, 0] % spec.path_length] = label[kind == 4]
    mutated = PathStarData(spec, edges, source, goal, path)
    expected = torch.tensor([
        reference_is_path_star(e, s, g, p, spec)
        for e, s, g, p in zip(edges.tolist(), source.tolist(), goal.tolist(), path.tolist())
    ])
    assert 0.1 < expected.float().mean() < 0.9
    assert torch.equal(check_structure(mutated), expected)
