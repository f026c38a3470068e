"""Analyses on cases with known answers: a hand-built cheating model, a planted attention
pattern, CKA's invariances, exact patching identities, gradient shares that add up."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint

from conftest import tiny_config
from oracles import EdgeFollower
from workbench.analyses.cka import linear_cka
from workbench.analyses.clever_hans import accuracy_gap, cheat_test, edge_lookup_attention, wrong_arm_path
from workbench.analyses.patching import goal_moved, goal_patching
from workbench.analyses.supervision import gradient_shares, loss_curves, position_gradients
from workbench.config import apply_overrides
from workbench.evaluate import evaluate
from workbench.factory import build_model
from workbench.objectives import get_objective
from workbench.task import GraphSpec, arm_paths, check_structure, generate, goal_arm_rank

SPEC = GraphSpec(3, 5, 40)


def test_arm_paths_hold_the_goal_arm_and_the_wrong_arm_is_another():
    data = generate(SPEC, 500, seed=0)
    arms = arm_paths(data)
    assert torch.equal(arms[torch.arange(500), goal_arm_rank(data)], data.path)
    assert (arms[:, :, 1:].flatten(1).sort(1).values.diff(1) != 0).all()  # the arms are disjoint paths
    wrong = wrong_arm_path(data)
    assert (wrong[:, 1] != data.path[:, 1]).all() and (wrong[:, 0] == data.source).all()
    moved = goal_moved(data)
    assert check_structure(moved).all() and (moved.goal != data.goal).all()


def test_cheat_test_of_an_edge_follower_is_all_follow():
    data = generate(SPEC, 300, seed=1)
    frame = cheat_test(EdgeFollower(SPEC), data, get_objective("next_token"))
    follow = frame[frame["outcome"] == "follow"].set_index("position")["rate"]
    assert list(follow.index) == ["r3", "r4", "r5"]  # r2 is predicted before any wrong token is fed
    assert (follow == 1.0).all()
    backwards = cheat_test(EdgeFollower(SPEC, backwards=True), data, get_objective("reverse"))
    follow = backwards[backwards["outcome"] == "follow"].set_index("position")["rate"]
    assert list(follow.index) == ["r4", "r3", "r2"] and (follow == 1.0).all()  # r1 = source on both arms: not scored
    assert cheat_test(EdgeFollower(SPEC), data, get_objective("teacherless")).empty


class PlantedLookup(HookedRootModule):
    """One layer, two heads: head 0 attends from each answer slot to the target token of the
    edge leaving the token there (the cheat's lookup); head 1 attends uniformly."""

    def __init__(self, spec: GraphSpec):
        super().__init__()
        self.spec, self.follower = spec, EdgeFollower(spec)
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.blocks = torch.nn.ModuleList([torch.nn.Module()])
        self.blocks[0].attn = torch.nn.Module()
        self.blocks[0].attn.hook_pattern = HookPoint()
        self.setup()

    def forward(self, tokens):
        batch, pos = tokens.shape
        pattern = torch.tril(torch.ones(pos, pos)) / torch.arange(1, pos + 1)[:, None]
        pattern = pattern.expand(batch, 2, pos, pos).clone()
        sources = tokens[:, : 3 * self.spec.num_edges : 3]  # (batch, edge)
        for q in range(self.spec.eq_position + 1, pos):
            slot = (sources == tokens[:, q : q + 1]).float().argmax(dim=1)
            pattern[:, 0, q] = 0
            pattern[torch.arange(batch), 0, q, 3 * slot + 1] = 1
        self.blocks[0].attn.hook_pattern(pattern)
        return self.follower(tokens) + self.dummy


def test_edge_lookup_finds_the_planted_head():
    data = generate(SPEC, 200, seed=2)
    frame = edge_lookup_attention(PlantedLookup(SPEC), data, get_objective("next_token"))
    later = frame[frame["position"].isin(["r3", "r4", "r5"])].pivot_table(index=["head", "position"], columns="onto", values="mass")
    assert np.allclose(later.loc[0, "edge_target"], 1.0) and np.allclose(later.loc[0, "edge_source"], 0.0)
    uniform = frame[frame["head"] == 1]
    assert np.allclose(uniform["mass"], uniform["uniform"], atol=1e-6)


def test_cka_is_one_on_itself_and_invariant_to_rotation_and_scale():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 20))
    q, _ = np.linalg.qr(rng.normal(size=(20, 20)))
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, 3.0 * x @ q) == pytest.approx(1.0)
    assert linear_cka(x, rng.normal(size=(500, 20))) < 0.1
    assert linear_cka(x, x[:, :10]) == pytest.approx(linear_cka(x[:, :10], x), rel=1e-12)  # symmetric
    with pytest.raises(ValueError, match="same inputs"):
        linear_cka(x, x[:100])


def test_patching_the_last_layer_at_the_r2_position_recovers_everything():
    config = tiny_config()
    model = build_model(config, seed=0).eval()
    data = generate(config.task.graph, 200, seed=3)
    frame = goal_patching(model, data, get_objective("next_token"), min_gap=0.0).set_index(["hook", "position"])
    assert frame.loc[("blocks.0.hook_resid_post", "r1"), "recovered"] == pytest.approx(1.0, abs=1e-4)
    assert frame.loc[("hook_embed", "eq"), "recovered"] == pytest.approx(0.0, abs=1e-6)  # '=' is the same token in both runs
    assert frame.loc[("hook_embed", "r1"), "recovered"] == pytest.approx(0.0, abs=1e-6)  # so is the source


@pytest.mark.parametrize("objective", ["next_token", "first_decision_only", "mtp"])
def test_gradient_shares_add_up_to_the_gradient_of_the_training_loss(objective):
    from workbench.factory import build_model_and_parts
    from workbench.objectives import step_generator

    config = apply_overrides(tiny_config(objective), [])
    model, parts = build_model_and_parts(config)
    data = generate(config.task.graph, 64, seed=4)
    obj = get_objective(objective)
    frame = gradient_shares(model, data, obj, parts).set_index(["position", "metric"])["value"]
    shares = frame.xs("share", level="metric")
    assert shares.sum() == pytest.approx(1.0, abs=1e-5)
    if objective == "first_decision_only":
        assert [shares["r1"], shares["r2"], shares["r3"]] == pytest.approx([0.0, 1.0, 0.0])
    if objective == "mtp":
        assert {"head2", "head3"} <= set(shares.index)
    # the term gradients add up to autograd's gradient of the very loss the trainer optimises
    positions, terms = position_gradients(model, data, obj, parts)
    params = list(model.parameters()) + (list(parts.parameters()) if parts is not None else [])
    loss = obj.loss(model, parts, obj.training_batch(data, step_generator(0, 0)), data.spec).total
    expected = torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)])
    torch.testing.assert_close(sum(terms.values()), expected, rtol=1e-4, atol=1e-7)
    assert frame["r3", "grad_norm"] == pytest.approx(positions["r3"].norm().item())
    assert -1 <= frame["r2", "cosine_r2_later"] <= 1


def test_accuracy_gap_and_loss_curves_from_tables():
    data = generate(SPEC, 100, seed=5)
    results = evaluate(EdgeFollower(SPEC), data, get_objective("next_token")).assign(arch="oracle", objective="next_token")
    gap = accuracy_gap(results).set_index("position")
    # the edge follower is right under teacher forcing after r2; free-running it is right only when r2 was
    assert gap.loc["r3", "tf_accuracy"] == 1.0 and gap.loc["r3", "gap"] == pytest.approx(1.0 - gap.loc["r2", "greedy_accuracy"])
    metrics = [{"step": 10, "train": {"loss": {"r1": 1.0, "r2": 0.7}}, "test": {"tf_loss": {"r1": 0.5, "r2": 0.6}, "tf_accuracy": {"r1": 1.0}}}]
    curves = loss_curves(metrics)
    assert sorted(zip(curves["split"], curves["position"], curves["loss"])) == [("test", "r1", 0.5), ("test", "r2", 0.6), ("train", "r1", 1.0), ("train", "r2", 0.7)]
