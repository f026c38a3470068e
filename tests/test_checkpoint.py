import json
import os

import pytest
import torch

from conftest import tiny_config
import workbench
from workbench.checkpoint import CheckpointError, save_checkpoint
from workbench.factory import build_model
from workbench.task import generate


def test_save_load_round_trip_has_no_pickle(tmp_path):
    config = tiny_config()
    model = build_model(config, seed=3)
    save_checkpoint(tmp_path / "run", config, model, step=7, metrics=[{"step": 7}])
    files = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert files == ["config.json", "metrics.jsonl", "model.safetensors"]
    checkpoint = workbench.load(tmp_path / "run")
    tokens = generate(config.task.graph, 5, seed=0).prompt_tokens()
    torch.testing.assert_close(checkpoint.model(tokens), model(tokens), rtol=0, atol=0)
    assert checkpoint.step == 7 and checkpoint.config == config and checkpoint.metrics == [{"step": 7}]
    assert checkpoint.objective.name == "next_token" and checkpoint.graph == config.task.graph
    payload = json.loads((tmp_path / "run" / "config.json").read_text())
    assert payload["tokenizer"] == {"nodes": "0..9", "|": 10, "=": 11, "/": 12, "$": 13}


def test_an_interrupted_save_keeps_the_previous_checkpoint(tmp_path):
    config = tiny_config()
    run = tmp_path / "run"
    save_checkpoint(run, config, build_model(config, seed=0), step=1, metrics=[])
    # crash between the two renames of the next save: only the old copy and a partial new one exist
    os.replace(run, tmp_path / ".run.old")
    (tmp_path / ".run.tmp").mkdir()
    (tmp_path / ".run.tmp" / "config.json").write_text("{partial")
    assert workbench.load(run).step == 1
    save_checkpoint(run, config, build_model(config, seed=0), step=2, metrics=[])
    assert workbench.load(run).step == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_bad_checkpoints_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="config.json: not found"):
        workbench.load(tmp_path)
    (tmp_path / "config.json").write_text('{"format": "workbench-checkpoint/1",\n "step": }')
    with pytest.raises(CheckpointError, match="config.json line 2: invalid JSON"):
        workbench.load(tmp_path)
    config = tiny_config()
    save_checkpoint(tmp_path / "run", config, build_model(config, seed=0), step=0, metrics=[])
    raw = json.loads((tmp_path / "run" / "config.json").read_text())
    raw["run"]["model"]["d_model"] = 64
    (tmp_path / "run" / "config.json").write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match=r"config.json: edited after the weights were saved: model.d_model=64 \(the weights were saved with 32\)"):
        workbench.load(tmp_path / "run")


def test_a_config_json_with_several_bad_fields_names_them_all(tmp_path):
    config = tiny_config()
    save_checkpoint(tmp_path / "ckpt", config, build_model(config, seed=0), step=0, metrics=[])
    file = tmp_path / "ckpt" / "config.json"
    payload = json.loads(file.read_text())
    payload["run"]["model"]["n_heads"] = "four"
    payload["run"]["train"]["lr"] = "fast"
    payload["run"]["task"]["colour"] = "blue"
    file.write_text(json.dumps(payload))
    with pytest.raises(CheckpointError) as error:
        workbench.load(tmp_path / "ckpt")
    message = str(error.value)
    assert str(file) in message and "\n" not in message
    for field in ("run.model.n_heads: expected <class 'int'>, found 'four'", "run.train.lr: expected <class 'float'>, found 'fast'",
                  "run.task: unknown field(s) ['colour']"):
        assert field in message, field
