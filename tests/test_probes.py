"""Probes: targets of a hand-written graph, a planted linear signal, activations equal to the
cache, the disk cache, and a sweep table with its controls."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import tiny_config, tiny_mamba_config
from workbench.checkpoint import load, save_checkpoint
from workbench.cli import main as cli_main
from workbench.factory import build_model
from workbench.objectives import get_objective
from workbench.probes import collect_activations, probe_checkpoint, probe_targets, score_probe
from workbench.probes.activations import position_index, slot_token
from workbench.probes.linear import bootstrap_interval
from workbench.probes.targets import on_path_edges
from workbench.task import GraphSpec, PathStarData, generate, goal_arm_rank


def tiny_graph() -> PathStarData:
    """2,8|5,2|5,9|9,3/5,8=5,2,8: the first graph of the paper's G(2,3,10) test file."""
    t = torch.tensor
    return PathStarData(GraphSpec(2, 3, 10), t([[[2, 8], [5, 2], [5, 9], [9, 3]]]), t([5]), t([8]), t([[5, 2, 8]]))


def test_targets_of_the_hand_written_graph():
    targets = probe_targets(tiny_graph())
    assert list(targets) == ["arm", "node_r2", "node_r3", "goal", "source", "on_path"]
    assert targets["arm"].labels.tolist() == [0]  # 5,2 is the first of the source's edges listed
    assert targets["node_r2"].labels.tolist() == [2] and targets["node_r3"].labels.tolist() == [8]
    assert targets["goal"].labels.tolist() == [8] and targets["source"].labels.tolist() == [5]
    assert targets["on_path"].labels.tolist() == [[1, 1, 0, 0]]
    assert [t.num_classes for t in targets.values()] == [2, 10, 10, 10, 10, 2]


def test_arm_and_on_path_targets_on_many_graphs():
    data = generate(GraphSpec(3, 4, 30), 2_000, seed=1)
    rank = goal_arm_rank(data)
    source_edges = [[e for e in g if e[0] == s] for g, s in zip(data.edges.tolist(), data.source.tolist())]
    assert all(edges[r][1] == p for edges, r, p in zip(source_edges, rank.tolist(), data.path[:, 1].tolist()))
    counts = torch.bincount(rank, minlength=3).float() / len(data)
    assert torch.allclose(counts, torch.full((3,), 1 / 3), atol=0.04)  # the arm label is balanced
    assert (on_path_edges(data).sum(dim=1) == 3).all()  # l - 1 edges of every path


def test_control_labels_are_a_fixed_function_of_the_node_name():
    data = generate(GraphSpec(2, 5, 50), 3_000, seed=2)
    targets = probe_targets(data, control_seed=7)
    for name, about in (("node_r3", data.path[:, 2]), ("arm", data.path[:, 1]), ("goal", data.goal)):
        pairs = pd.DataFrame({"node": about.numpy(), "control": targets[name].control})
        assert (pairs.groupby("node")["control"].nunique() == 1).all(), name
        assert targets[name].control.max() < targets[name].num_classes
    assert not np.array_equal(probe_targets(data, control_seed=8)["goal"].control, targets["goal"].control)
    arm_map = pd.DataFrame({"node": data.path[:, 1].numpy(), "control": targets["arm"].control}).drop_duplicates()
    assert arm_map["control"].value_counts().tolist() == [25, 25]  # balanced over the 50 names: chance stays 1/2


def test_unknown_target_and_position_are_named():
    data = tiny_graph()
    with pytest.raises(ValueError, match="unknown probe target.*node_r9"):
        probe_targets(data, ["node_r9"])
    with pytest.raises(ValueError, match="position 'r3'.*r1..r2"):
        position_index("r3", data)


def test_positions_and_what_each_objective_feeds_there():
    data = tiny_graph()
    assert position_index("eq", data) == 14 and position_index("r1", data) == 15
    assert slot_token("r1", get_objective("next_token"), 5) == "r1"
    assert slot_token("r1", get_objective("reverse"), 5) == "r5"
    assert slot_token("r4", get_objective("reverse"), 5) == "r2"
    assert slot_token("r2", get_objective("teacherless"), 5) == "$"


def test_probe_recovers_a_planted_direction_and_sits_at_chance_on_shuffled_labels():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(3_000, 40))
    weights = rng.normal(size=(40, 4))
    labels = (features @ weights).argmax(axis=1)
    planted = score_probe(features[:2_000], labels[:2_000], features[2_000:], labels[2_000:])
    assert planted.accuracy > 0.9
    shuffled = rng.permutation(labels)
    null = score_probe(features[:2_000], shuffled[:2_000], features[2_000:], shuffled[2_000:])
    low, high = bootstrap_interval(null.correct)
    assert abs(null.accuracy - 0.25) < 0.05 and low < 0.27 and high > 0.23


def test_bootstrap_interval_holds_the_mean_and_narrows_with_more_graphs():
    rng = np.random.default_rng(1)
    small, large = ((rng.random(n) < 0.7).astype(float) for n in (200, 5_000))
    low_s, high_s = bootstrap_interval(small)
    low_l, high_l = bootstrap_interval(large)
    assert low_s < small.mean() < high_s and low_l < large.mean() < high_l
    assert high_l - low_l < (high_s - low_s) / 3


@pytest.mark.parametrize("config_fn", [tiny_config, tiny_mamba_config], ids=["gpt", "mamba"])
def test_activations_equal_the_cache_at_the_named_positions(config_fn, tmp_path):
    config = config_fn()
    model = build_model(config, seed=0)
    data = generate(config.task.graph, 70, seed=3)
    objective = get_objective("reverse")
    hooks = [h for h in ("hook_embed", "blocks.0.hook_resid_post", "blocks.0.mixer.hook_ssm_state") if h in model.hook_dict]
    acts = collect_activations(model, data, objective, hooks, ["eq", "r2"], batch_size=32, cache_dir=tmp_path)
    inputs = objective.inputs(data.prompt_tokens(), objective.targets(data.answer_tokens()), data.spec)
    _, cache = model.run_with_cache(inputs)
    for hook in hooks:
        for position in ("eq", "r2"):
            index = position_index(position, data)
            full = cache[hook]
            expected = full[:, :, index].flatten(1) if hook.endswith("ssm_state") else full[:, index]
            torch.testing.assert_close(acts[hook, position], expected, rtol=1e-5, atol=1e-6)

    calls = []
    model.hook_dict["hook_embed"].add_hook(lambda x, hook: calls.append(1))
    again = collect_activations(model, data, objective, hooks, ["eq", "r2"], cache_dir=tmp_path)
    assert not calls  # everything came from the disk cache
    for key in acts:  # bit-exact: the cache must return exactly what it stored
        assert torch.equal(again[key], acts[key])


def test_sweep_table_and_its_controls_on_an_untrained_model(tmp_path):
    config = tiny_config()
    save_checkpoint(tmp_path / "ckpt", config, build_model(config, seed=0), step=0, metrics=[])
    table = probe_checkpoint(tmp_path / "ckpt", positions=["eq", "r1"], targets=["arm", "source"], n_train=600, n_test=400)
    assert len(table) == 2 * 2 * 2  # (embed, resid_post 1) x positions x targets
    assert set(table["hook"]) == {"hook_embed", "blocks.0.hook_resid_post"}
    assert table[["accuracy", "control_accuracy", "random_init_accuracy", "chance", "majority"]].notna().all().all()
    row = table.set_index(["hook", "position", "target"])
    # fed the source at r1, its embedding names it; at '=' the embedding is one constant vector
    assert row.loc[("hook_embed", "r1", "source"), "accuracy"] >= 0.99
    assert row.loc[("hook_embed", "eq", "source"), "accuracy"] < 0.2  # chance 0.1, majority about 0.12
    # the untrained model is its own random-init control, and it cannot know the goal arm
    # (two lbfgs fits on the same features: equal up to a graph or two where a near-tie flips)
    np.testing.assert_allclose(table["random_init_accuracy"], table["accuracy"], rtol=0, atol=2 / 400)
    arm = table[table["target"] == "arm"]
    assert (arm["ci_low"] < 0.5 + 0.08).all() and (arm["accuracy"] < 0.6).all()
    assert ((table["selectivity"] - (table["accuracy"] - table["control_accuracy"])).abs() < 1e-12).all()


def test_probe_command_writes_table_and_figures(tmp_path, capsys):
    config = tiny_mamba_config()
    save_checkpoint(tmp_path / "ckpt", config, build_model(config, seed=0), step=0, metrics=[])
    cli_main(["probe", str(tmp_path / "ckpt"), "--targets", "goal,on_path", "--positions", "eq", "--n-train", "300",
              "--n-test", "200", "--no-controls", "--out", str(tmp_path / "out")])
    table = pd.read_csv(tmp_path / "out" / "probes.csv")
    assert set(table["site"]) == {"embed", "resid_post", "ssm_state"}
    assert table["control_accuracy"].isna().all()
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["probe_goal.png", "probe_on_path.png"]
    assert "wrote" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli_main(["probe", str(tmp_path / "ckpt"), "--hooks", "blocks.7.hook_resid_post", "--out", str(tmp_path / "x")])
