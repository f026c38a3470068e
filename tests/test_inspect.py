"""`workbench inspect`: the cheat test, edge lookup, goal patching and edge slots of any checkpoints."""

import pandas as pd
import pytest

from conftest import tiny_config
from workbench.cli import main as cli_main
from workbench.config import RunConfig
from workbench.train import train


def test_inspect_writes_the_cheat_test_attention_and_patching_of_every_checkpoint(tmp_path, capsys):
    for objective in ("next_token", "reverse"):
        train(tiny_config(objective, steps=2, eval_every=2, save_every=2), tmp_path / objective, progress=False)
    out = tmp_path / "analyses"
    cli_main(["inspect", str(tmp_path / "next_token"), str(tmp_path / "reverse"), "--out", str(out), "--graphs", "64"])
    cheat, patched, lookup = (pd.read_csv(out / f"{name}.csv") for name in ("cheat_test", "patching", "edge_lookup"))
    assert set(cheat["run"]) == set(patched["run"]) == set(lookup["run"]) == {"next_token", "reverse"}
    rates = cheat.groupby(["run", "position"])["rate"].sum()
    assert ((rates - 1).abs() < 1e-6).all()  # follow + return + other
    assert set(patched["position"]) >= {"eq", "r1"} and (out / "patching.png").stat().st_size > 0
    # every head of the 1-layer model, for each position it predicts, and each edge part: a share of its attention
    mine = lookup[lookup["run"] == "next_token"]
    n_heads = tiny_config().model.n_heads
    assert set(mine["head"]) == set(range(n_heads)) and set(mine["layer"]) == {0}
    assert len(mine) == n_heads * mine["position"].nunique() * mine["onto"].nunique()
    assert mine["mass"].between(0, 1).all() and (mine.groupby(["head", "position"])["mass"].sum() <= 1 + 1e-6).all()
    slots = pd.read_csv(out / "edge_slots.csv")
    assert set(slots["run"]) == {"next_token", "reverse"} and set(slots["seed"]) == {tiny_config().train.seed}
    assert (slots.groupby("run")["n_graphs"].sum() == 64).all() and slots["r2_accuracy"].between(0, 1).all()
    assert "wrote cheat_test.csv, edge_lookup.csv, patching.csv, edge_slots.csv" in capsys.readouterr().out


def test_edge_slots_name_where_the_prompt_lists_the_first_and_last_edge_of_the_path():
    """The slots index the prompt's edges; a prediction right only where the goal's edge comes
    first scores 1 in those rows and 0 in the rest."""
    import torch

    from workbench.analyses.edge_order import accuracy_by_edge_slots, edge_slot
    from workbench.task import GraphSpec, generate

    data = generate(GraphSpec(degree=2, path_length=3, num_nodes=50), 400, seed=0)
    goal_slot = edge_slot(data, data.path[:, 1], data.path[:, 2])
    rows = torch.arange(len(data))
    assert torch.equal(data.edges[rows, goal_slot], data.path[:, 1:3])
    assert torch.equal(data.edges[rows, edge_slot(data, data.path[:, 0], data.path[:, 1])], data.path[:, 0:2])
    pred = torch.where(goal_slot == 0, data.path[:, 1], data.source)  # the source is never r2
    table = accuracy_by_edge_slots(data, pred)
    assert table["n_graphs"].sum() == 400 and (table["goal_edge_slot"] != table["source_edge_slot"]).all()
    assert set(table["goal_edge_slot"]) == set(table["source_edge_slot"]) == {0, 1, 2, 3}
    assert (table["r2_accuracy"] == (table["goal_edge_slot"] == 0).astype(float)).all()
    with pytest.raises(ValueError, match="not in every graph"):
        edge_slot(data, data.path[:, 2], data.path[:, 1])  # edges point away from the source


def test_inspect_refuses_checkpoints_of_different_graphs(tmp_path, capsys):
    train(tiny_config(steps=2, eval_every=2, save_every=2), tmp_path / "g23", progress=False)
    other = tiny_config(steps=2, eval_every=2, save_every=2).to_dict()
    other["task"]["path_length"] = 4
    train(RunConfig.from_dict(other), tmp_path / "g24", progress=False)
    with pytest.raises(SystemExit) as exit_:
        cli_main(["inspect", str(tmp_path / "g23"), str(tmp_path / "g24"), "--out", str(tmp_path / "o")])
    assert exit_.value.code == 2 and "different graphs" in capsys.readouterr().err
