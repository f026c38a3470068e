"""`workbench inspect`: the cheat test, edge lookup and goal patching of any checkpoints."""

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
    assert "wrote cheat_test.csv, edge_lookup.csv, patching.csv" in capsys.readouterr().out


def test_inspect_refuses_checkpoints_of_different_graphs(tmp_path, capsys):
    train(tiny_config(steps=2, eval_every=2, save_every=2), tmp_path / "g23", progress=False)
    other = tiny_config(steps=2, eval_every=2, save_every=2).to_dict()
    other["task"]["path_length"] = 4
    train(RunConfig.from_dict(other), tmp_path / "g24", progress=False)
    with pytest.raises(SystemExit) as exit_:
        cli_main(["inspect", str(tmp_path / "g23"), str(tmp_path / "g24"), "--out", str(tmp_path / "o")])
    assert exit_.value.code == 2 and "different graphs" in capsys.readouterr().err
