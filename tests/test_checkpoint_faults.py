"""Faults a user meets: a kill at any point of a save, two processes on one run folder, an
edited or incomplete config.json, an old checkpoint format, and bad training settings."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import tiny_config
import workbench
from workbench import checkpoint as ckpt_module
from workbench import run_folder
from workbench.checkpoint import CheckpointError, save_checkpoint
from workbench.run_folder import RunLockedError, run_lock
from workbench.config import apply_overrides
from workbench.factory import build_model
from workbench.train import train


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, no cleanup handler catches it."""


def fault_at(monkeypatch, n: int) -> list[str]:
    """Make the n-th file-system step of the next save die (a partly done rmtree deletes one
    file first, as a kill in the middle of a deletion would leave it)."""
    events: list[str] = []
    real_replace, real_rmtree, real_save = os.replace, shutil.rmtree, ckpt_module.save_file

    def step(name: str) -> None:
        events.append(name)
        if len(events) == n:
            raise Killed(name)

    def replace(src, dst):
        step(f"replace {Path(src).name} -> {Path(dst).name}")
        real_replace(src, dst)

    def partial_rmtree(path, ignore_errors=False):
        path = Path(path)
        if path.exists():
            events.append(f"rmtree {path.name}")
            if len(events) == n:
                files = sorted(p for p in path.rglob("*") if p.is_file())
                files[0].unlink()  # a kill mid-deletion leaves the rest
                raise Killed(f"rmtree {path.name}")
        real_rmtree(path, ignore_errors=ignore_errors)

    def save(tensors, filename, metadata=None):
        step(f"save_file {Path(filename).name}")
        real_save(tensors, filename, metadata=metadata)

    monkeypatch.setattr(run_folder.os, "replace", replace)  # the swap; checkpoint.py's snapshots share the os module
    monkeypatch.setattr(run_folder.shutil, "rmtree", partial_rmtree)
    monkeypatch.setattr(ckpt_module, "save_file", save)
    return events


def test_a_kill_at_any_step_of_a_save_leaves_a_run_that_loads_and_saves_again(tmp_path, monkeypatch):
    config = tiny_config()
    model = build_model(config, seed=0)
    optimizer = torch.optim.AdamW(model.parameters())
    n = 1
    while True:
        run = tmp_path / f"run{n}"
        save_checkpoint(run, config, model, step=1, metrics=[], optimizer=optimizer)
        events = fault_at(monkeypatch, n)
        try:
            save_checkpoint(run, config, model, step=2, metrics=[], optimizer=optimizer)
            completed = True
        except Killed:
            completed = False
        monkeypatch.undo()
        assert workbench.load(run).step in (1, 2), events  # a complete checkpoint either way
        save_checkpoint(run, config, model, step=3, metrics=[], optimizer=optimizer)  # and the next save works
        assert workbench.load(run).step == 3
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(f".run{n}")) == []
        if completed:
            break
        n += 1
    # every step of the sequence was hit: two tensor files, two renames, the final deletion
    assert n >= 5, events


def test_a_partly_deleted_old_copy_does_not_block_resuming(tmp_path):
    config = tiny_config(steps=8, eval_every=4, save_every=4)
    train(config, tmp_path / "run", until_step=4, progress=False)
    old = tmp_path / ".run.old"
    shutil.copytree(tmp_path / "run", old)
    (old / "model.safetensors").unlink()  # what a kill during the final rmtree leaves
    checkpoint = train(config, tmp_path / "run", progress=False)
    assert checkpoint.step == 8 and not old.exists()


def test_a_second_process_on_the_same_run_folder_is_refused_at_once(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from workbench.run_folder import run_lock\nimport time\nwith run_lock({str(run)!r}):\n    print('locked', flush=True)\n    time.sleep(30)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.perf_counter()
        with pytest.raises(RunLockedError, match=rf"another process \(pid {holder.pid}\) is training into this folder"):
            train(tiny_config(steps=2), run, progress=False)
        assert time.perf_counter() - started < 5
    finally:
        holder.kill()
        holder.wait()
    # the holder died without releasing anything: the lock is free again
    with run_lock(run):
        pass


def test_config_json_is_checked_whole_on_load(tmp_path):
    config = tiny_config()
    run = tmp_path / "run"
    save_checkpoint(run, config, build_model(config, seed=0), step=0, metrics=[])
    good = json.loads((run / "config.json").read_text())

    def broken(edit) -> str:
        raw = json.loads(json.dumps(good))
        edit(raw)
        (run / "config.json").write_text(json.dumps(raw))
        with pytest.raises(CheckpointError) as error:
            workbench.load(run)
        return str(error.value)

    assert "field(s) ['objective'] missing" in broken(lambda r: r["run"].pop("objective"))
    assert "run.model: field(s) ['n_heads'] missing" in broken(lambda r: r["run"]["model"].pop("n_heads"))
    assert "field(s) ['task'] missing" in broken(lambda r: r["run"].pop("task"))
    assert "model.n_heads=4 (the weights were saved with 2)" in broken(lambda r: r["run"]["model"].update(n_heads=4))
    assert "run.train.lr: expected" in broken(lambda r: r["run"]["train"].update(lr="fast"))
    assert "field 'step' is -1" in broken(lambda r: r.update(step=-1))


def test_a_checkpoint_saved_before_model_compile_existed_loads_as_trained_eager(tmp_path):
    """Fields added after checkpoints were first written (``GPTConfig.SAVED_WITHOUT``) may be
    missing from config.json: such a run meant the default. Every other field must be there."""
    config = tiny_config()
    run = tmp_path / "run"
    save_checkpoint(run, config, build_model(config, seed=0), step=0, metrics=[])
    raw = json.loads((run / "config.json").read_text())
    del raw["run"]["model"]["compile"]
    (run / "config.json").write_text(json.dumps(raw))
    assert workbench.load(run).config.model.compile is False
    del raw["run"]["model"]["d_model"]
    (run / "config.json").write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match=r"run.model: field\(s\) \['d_model'\] missing"):
        workbench.load(run)


def test_a_checkpoint_of_format_1_still_loads(tmp_path):
    config = tiny_config()
    run = tmp_path / "run"
    model = build_model(config, seed=0)
    save_checkpoint(run, config, model, step=5, metrics=[])
    raw = json.loads((run / "config.json").read_text())
    raw["format"] = "workbench-checkpoint/1"
    raw["run"].pop("objective_params")
    raw["run"]["train"].pop("structured_samples")
    (run / "config.json").write_text(json.dumps(raw))
    tensors = load_file(run / "model.safetensors")
    from safetensors.torch import save_file

    save_file(tensors, run / "model.safetensors", metadata={"step": "5"})  # format 1 kept no config in the weights
    loaded = workbench.load(run)
    assert loaded.step == 5 and loaded.config == config


@pytest.mark.parametrize(
    "override, message",
    [("train.steps=-5", "train.steps=-5: expected a value >= 1"), ("train.batch_size=0", "train.batch_size=0"),
     ("train.eval_every=0", "train.eval_every=0"), ("train.save_every=0", "train.save_every=0"),
     ("train.device=gpu", "train.device='gpu': expected one of auto, cpu, cuda, cuda:N, mps")],
)
def test_bad_training_settings_are_refused_before_anything_is_written(tmp_path, override, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        train(apply_overrides(tiny_config(), [override]), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_until_step_below_zero_is_refused(tmp_path):
    with pytest.raises(ValueError, match="until_step=-1"):
        train(tiny_config(), tmp_path / "run", until_step=-1, progress=False)


def test_repeated_set_options_all_apply(tmp_path, capsys):
    from workbench.cli import build_parser

    args = build_parser().parse_args(["train", "--set", "train.steps=30", "--set", "train.lr=0.003", "objective.k=2"])
    assert args.set == ["train.steps=30", "train.lr=0.003", "objective.k=2"]
