import pytest
import torch

from workbench.task import GraphSpec, PathStarData, check_structure, generate


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


def test_generator_is_fast_enough_for_the_paper_training_set():
    data = generate(GraphSpec(2, 5, 50), 200_000, seed=0)
    assert len(data) == 200_000  # the budget (< 10 s) is printed by benchmarks/, not timed here


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
