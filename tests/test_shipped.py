"""The reference checkpoints in checkpoints/: opened by name, checked by sha256, and each
reproduces its manifest row on the paper's test file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import torch
import pytest

import workbench
from conftest import tiny_config
from workbench.cli import main as cli_main
from workbench.publish import provenance
from workbench.identity import weights_sha256 as sha256
from workbench.shipped import manifest, reference_file
from workbench.train import train

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = manifest(ROOT / "checkpoints")
TRAINED = SHIPPED[SHIPPED["untrained_twin_of"].isna()]
GRAPH_TOLERANCE = 5  # graphs of the 20,000: float results differ in the last bits between CPUs


@pytest.fixture(scope="module")
def shipped_root(tmp_path_factory):
    """A tiny run, published by a job and shipped into ROOT/checkpoints of a fresh folder."""
    root = tmp_path_factory.mktemp("clone")
    config = tiny_config(steps=40, eval_every=20, save_every=20)
    train(config, root / "runs" / "gpt-next_token", progress=False)
    record = provenance(0.0, [0], 1, "cpu", [{"run": "gpt-next_token", "steps": 40, "train_seconds": 1.5}])
    (root / "results" / "tiny").mkdir(parents=True)
    (root / "results" / "tiny" / "provenance.json").write_text(json.dumps(record))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        cli_main(["ship", "runs/gpt-next_token", "--name", "tiny-next_token", "--results", "results/tiny"])
    return root


@pytest.fixture
def shipped_store(shipped_root, tmp_path, monkeypatch):
    """A copy of the shipped store as the current directory's checkpoints/ (a test may change it)."""
    shutil.copytree(shipped_root / "checkpoints", tmp_path / "checkpoints")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "checkpoints"


def test_ship_writes_the_weights_and_both_rows_and_load_opens_them_by_name(shipped_store):
    table = manifest(shipped_store)
    assert list(table["name"]) == ["tiny-next_token", "tiny-next_token-untrained"]
    assert sorted(p.name for p in (shipped_store / "tiny-next_token").iterdir()) == ["config.json", "metrics.jsonl", "model.safetensors"]
    trained, twin = table.iloc[0], table.iloc[1]
    assert (trained["step"], trained["train_seconds"], twin["step"], twin["untrained_twin_of"]) == (40, 1.5, 0, "tiny-next_token")
    assert trained["weights_sha256"] == sha256(shipped_store / "tiny-next_token" / "model.safetensors")
    assert trained["reference_file"] == reference_file(tiny_config().task.graph).name and trained["n_graphs"] == 20_000
    loaded, untrained = workbench.load("tiny-next_token"), workbench.load("tiny-next_token-untrained")
    assert loaded.step == 40 and untrained.step == 0 and untrained.config == loaded.config
    assert not all((a == b).all() for a, b in zip(loaded.model.state_dict().values(), untrained.model.state_dict().values()))


def test_an_unknown_name_lists_the_shipped_ones_and_a_changed_file_is_refused(shipped_store, capsys):
    with pytest.raises(FileNotFoundError, match="tiny-next_tokn: not a checkpoint directory nor a shipped checkpoint; shipped: tiny-next_token, tiny-next_token-untrained"):
        workbench.load("tiny-next_tokn")
    weights = shipped_store / "tiny-next_token" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of one weight
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"{weights}: sha256 .* differs from its row"):
        workbench.load("tiny-next_token")
    assert pytest.raises(SystemExit, cli_main, ["eval", "tiny-next_token"]).value.code == 2
    assert "differs from its row" in capsys.readouterr().err


def test_the_store_ships_the_reference_models_within_30_mb():
    assert {"gpt-next_token-G2_5_50", "gpt-reverse-G2_5_50", "mamba-next_token-G2_5_50", "mamba-reverse-G2_5_50"} <= set(TRAINED["name"])
    assert set(SHIPPED["name"]) == set(TRAINED["name"]) | {f"{n}-untrained" for n in TRAINED["name"]}
    size = sum(f.stat().st_size for f in (ROOT / "checkpoints").rglob("*") if f.is_file())
    assert size < 30e6
    for name in TRAINED["name"]:  # weights and config only
        assert sorted(p.name for p in (ROOT / "checkpoints" / name).iterdir()) == ["config.json", "metrics.jsonl", "model.safetensors"]


@pytest.mark.parametrize("name", list(TRAINED["name"]))
def test_a_shipped_checkpoint_reproduces_its_manifest_row_on_the_reference_file(name, monkeypatch):
    from workbench.shipped import evaluate_on_reference

    row = TRAINED.set_index("name").loc[name]
    monkeypatch.chdir(ROOT)
    checkpoint = workbench.load(name)  # checks the sha256
    assert checkpoint.step == row["step"] and f"{checkpoint.config.task.graph}" == row["graph"]
    scores = evaluate_on_reference(checkpoint)
    assert scores["reference_file"] == row["reference_file"]
    assert scores["n_graphs"] == row["n_graphs"]
    for column in ("r2_tf", "r2_greedy", "path_tf", "path_greedy"):
        assert abs(scores[column] - row[column]) * row["n_graphs"] <= GRAPH_TOLERANCE, column


def test_a_graph_without_a_paper_test_file_is_scored_on_its_held_out_stream():
    """G(2,4,50) has no test file from the paper: its checkpoints are scored on the first 20,000
    graphs of the run's held-out stream (whose separation from the training set
    tests/test_datasets.py checks)."""
    from workbench.config import apply_overrides
    from workbench.datasets import held_out_graphs
    from workbench.shipped import reference_set

    config = apply_overrides(tiny_config(), ["task.path_length=4", "task.num_nodes=50"])
    assert not reference_file(config.task.graph).exists()
    name, data = reference_set(config)
    assert name == "held-out:20000" and len(data) == 20_000 and data.spec == config.task.graph
    assert torch.equal(data.edges[:100], held_out_graphs(config.task, 100).edges)
    paper_name, paper = reference_set(tiny_config())
    assert paper_name == reference_file(tiny_config().task.graph).name and len(paper) == 20_000
