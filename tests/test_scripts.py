"""The scripts the README points to run end to end on tiny checkpoints."""

import subprocess
import sys
from pathlib import Path

import pandas as pd

from conftest import tiny_config
from workbench.train import train

ROOT = Path(__file__).resolve().parents[1]


def test_inspect_checkpoints_writes_the_cheat_test_and_patching_of_every_checkpoint(tmp_path):
    for objective in ("next_token", "reverse"):
        train(tiny_config(objective, steps=2, eval_every=2, save_every=2), tmp_path / objective, progress=False)
    out = tmp_path / "analyses"
    command = [sys.executable, str(ROOT / "scripts" / "inspect_checkpoints.py"), str(tmp_path / "next_token"), str(tmp_path / "reverse"), "--out", str(out), "--graphs", "64"]
    subprocess.run(command, check=True, capture_output=True, text=True)
    cheat, patched = pd.read_csv(out / "cheat_test.csv"), pd.read_csv(out / "patching.csv")
    assert set(cheat["run"]) == set(patched["run"]) == {"next_token", "reverse"}
    rates = cheat.groupby(["run", "position"])["rate"].sum()
    assert ((rates - 1).abs() < 1e-6).all()  # follow + return + other
    assert set(patched["position"]) >= {"eq", "r1"} and (out / "patching.png").stat().st_size > 0
    assert not (out / "edge_lookup.csv").exists() or len(pd.read_csv(out / "edge_lookup.csv"))


def test_inspect_checkpoints_refuses_checkpoints_of_different_graphs(tmp_path):
    train(tiny_config(steps=2, eval_every=2, save_every=2), tmp_path / "g23", progress=False)
    other = tiny_config(steps=2, eval_every=2, save_every=2).to_dict()
    other["task"]["path_length"] = 4
    from workbench.config import RunConfig

    train(RunConfig.from_dict(other), tmp_path / "g24", progress=False)
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "inspect_checkpoints.py"), str(tmp_path / "g23"), str(tmp_path / "g24"), "--out", str(tmp_path / "o")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "different graphs" in result.stderr
