"""One run identity: resume, the checkpoint's config check and a study agree on what is the
same run; one weights hash; one naming scheme."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import workbench
from conftest import tiny_config
from workbench.checkpoint import CheckpointError
from workbench.config import apply_overrides
from workbench.identity import INCIDENTAL, run_name, same_run, state_sha256, weights_sha256
from workbench.study.run import is_done
from workbench.study.spec import StudyRun
from workbench.task import GraphSpec
from workbench.train import train


def study_run(config) -> StudyRun:
    return StudyRun("s", config.objective, config.arch, str(config.task.graph), "cpu", "", config.train.seed, "run", config)


def done_record(folder, config):
    """What a study writes once a run's stages are done."""
    (folder / "results" / "run").mkdir(parents=True)
    (folder / "results" / "run" / "rows.csv").write_text("metric\n")
    record = {"weights_sha256": weights_sha256(folder / "checkpoints" / "run"), "config": json.loads(json.dumps(config.to_dict())), "stages": {"evaluate": 1}}
    (folder / "results" / "run" / "done.json").write_text(json.dumps(record))


@pytest.mark.parametrize(("change", "same"), [("train.eval_every=3", True), ("train.lr=0.01", False)])
def test_resume_the_config_check_and_the_study_agree_on_what_is_the_same_run(tmp_path, change, same):
    config = tiny_config(steps=6, eval_every=6, save_every=6, device="cpu")
    train(config, tmp_path / "checkpoints" / "run", progress=False)
    other = apply_overrides(config, [change])
    assert same_run(config, other) is same
    # the study: is the finished run the requested one?
    done_record(tmp_path, config)
    assert is_done(tmp_path, study_run(other), ("evaluate",)) is same
    # the config check: config.json edited after the save
    saved = json.loads((tmp_path / "checkpoints" / "run" / "config.json").read_text())
    saved["run"] = other.to_dict()
    (tmp_path / "checkpoints" / "run" / "config.json").write_text(json.dumps(saved))
    if same:
        workbench.load(tmp_path / "checkpoints" / "run")
    else:
        with pytest.raises(CheckpointError, match="edited after the weights were saved: train.lr=0.01"):
            workbench.load(tmp_path / "checkpoints" / "run")
    (tmp_path / "checkpoints" / "run" / "config.json").write_text(json.dumps({**saved, "run": config.to_dict()}))
    # resume: continue with the other setting, or refuse naming it
    if same:
        assert train(other, tmp_path / "checkpoints" / "run", progress=False).step == 6
    else:
        with pytest.raises(CheckpointError, match="train.lr: saved 0.003, requested 0.01"):
            train(other, tmp_path / "checkpoints" / "run", progress=False)


def test_every_incidental_setting_leaves_the_run_the_same():
    config = tiny_config()
    changed = {("train", "device"): "cpu", ("train", "eval_every"): 7, ("train", "eval_graphs"): 9, ("train", "save_every"): 11,
               ("train", "snapshot_every"): 13}
    assert set(changed) == {key for key in INCIDENTAL if key[0] == "train"}
    for (section, key), value in changed.items():
        assert same_run(config, apply_overrides(config, [f"{section}.{key}={value}"])), key
    assert not same_run(config, apply_overrides(config, ["train.seed=1"]))


def test_the_weights_hash_is_of_the_tensors_not_the_file(tmp_path):
    tensors = {"b": torch.arange(6.0).reshape(2, 3), "a": torch.ones(4, dtype=torch.bfloat16)}
    save_file(tensors, str(tmp_path / "x.safetensors"), metadata={"one": "1", "two": "2"})
    save_file(tensors, str(tmp_path / "y.safetensors"), metadata={"two": "2", "one": "1", "three": "3"})
    assert weights_sha256(tmp_path / "x.safetensors") == weights_sha256(tmp_path / "y.safetensors") == state_sha256(tensors)
    changed = dict(load_file(str(tmp_path / "x.safetensors")))
    changed["b"][0, 0] = 0.5
    assert state_sha256(changed) != state_sha256(tensors)
    assert state_sha256({"b": tensors["b"].reshape(3, 2), "a": tensors["a"]}) != state_sha256(tensors)  # the shape counts


def test_one_naming_scheme_gives_every_callers_names():
    graph = GraphSpec(2, 5, 50)
    assert run_name("gpt", "next_token") == "gpt-next_token"  # the main job, seed 0
    assert run_name("gpt", "next_token", seed=1) == "gpt-next_token-s1"
    assert run_name("gpt", "mtp", graph=graph, seed=0) == "gpt-mtp-G2_5_50-s0"  # workbench train
    assert run_name("gpt", "bst", graph=GraphSpec(2, 3, 50), preset="cpu", overrides=("model.n_layers=4",), seed=2) == "gpt-bst-G2_3_50-cpu-n_layers4-s2"


def test_published_tables_take_their_identity_columns_from_row_identity():
    """One definition of "which model a row measures": the published tables' columns are it."""
    from workbench.config import preset_config
    from workbench.identity import row_identity

    results = Path(__file__).resolve().parents[1] / "results" / "main_job"
    config = preset_config("cpu")
    with_graph = list(row_identity(config, 0, graph=config.task.graph))
    plain = list(row_identity(config, 0))
    assert with_graph == ["arch", "objective", "degree", "path_length", "num_nodes", "seed", "step"]
    header = lambda name: (results / name).read_text().splitlines()[0].split(",")
    assert header("results.csv")[: len(with_graph)] == with_graph
    assert header("probes.csv")[1 : 1 + len(plain)] == plain  # after the checkpoint path
    for name in ("cheat_test.csv", "patching.csv", "gradient_shares.csv", "edge_lookup.csv"):
        assert header(name)[-len(plain):] == plain, name
