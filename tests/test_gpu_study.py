"""scripts/gpu_study.py, the runner for a lent GPU machine, run here on the CPU: it picks the
step budget from the rates it times, trains and evaluates the runs, publishes them, and packs
what comes back so that the study, unpacked elsewhere, finds those runs finished."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pandas as pd

from workbench.study import dry_run, load_study

ROOT = Path(__file__).resolve().parents[1]
STUDY = """
[study]
name = "tiny_gpu"
objectives = ["next_token"]
archs = ["gpt"]
graphs = ["2,3,10"]
seeds = [0, 1]
stages = ["evaluate"]

[set]
all = ["task.num_train=256", "task.num_test=64", "train.batch_size=16", "train.warmup_steps=5", "train.eval_every=20",
       "train.eval_graphs=32", "train.save_every=20", "model.n_layers=1", "model.d_model=32", "model.n_heads=2"]
gpt = ["train.steps={steps}"]
"""


def test_the_gpu_runner_chooses_a_budget_trains_publishes_and_packs_what_a_study_reads_back(tmp_path):
    (tmp_path / "study.toml").write_text(STUDY.format(steps=10_000))
    command = [sys.executable, str(ROOT / "scripts" / "gpu_study.py"), "study.toml", "--out", "out", "--results", "published",
               "--steps", "1000000000", "40", "20", "--min-steps", "20", "--calibrate-seconds", "1", "--train-seconds", "300",
               "--pack", "pack", "--part-mib", "0.05", "--pack-mib", "10"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "chosen: train.steps=40 for gpt (2 runs)" in done.stdout  # a billion steps do not fit 300 s; 40 do

    record = json.loads((tmp_path / "published" / "provenance.json").read_text())
    assert record["budget"]["chosen_steps"] == 40 and record["parallel_runs"] == 2 and not record["not_finished"]
    assert sorted(record["budget"]["calibrated_steps_per_s"]) == ["gpt-next_token-G2_3_10-cpu-s0", "gpt-next_token-G2_3_10-cpu-s1"]
    assert {run["steps"] for run in record["runs"]} == {40}
    rows = pd.read_csv(tmp_path / "published" / "study.csv")
    assert set(rows["seed"]) == {0, 1} and rows[rows["metric"] == "tf_accuracy"]["value"].between(0, 1).all()

    parts = sorted((tmp_path / "pack").glob("part*.tar.gz"))
    assert len(parts) == 3  # the tables and logs, then each run's weights alone (a part holds 0.05 MiB)
    back = tmp_path / "back"
    for part in parts:
        with tarfile.open(part) as tar:
            tar.extractall(back, filter="data")
    assert (back / "published" / "study.csv").exists()
    (back / "study.toml").write_text(STUDY.format(steps=40))  # the study file with the budget the runner chose
    study = load_study(back / "study.toml")
    assert "to run: 0 of 2" in dry_run(study, back / "out")[-1]  # the weights, their configs and stage tables came back
