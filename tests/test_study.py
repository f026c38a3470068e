"""Studies on a real local Ray (2 CPUs): a 4-run study of tiny models end to end, and a driver
killed mid-study whose rerun completes the table with nothing lost and nothing done twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from workbench.config import preset_config
from workbench.study import dry_run, load_study, run_study
from workbench.study.spec import IDENTITY

TINY = """
[study]
name = "{name}"
figure = "{figure}"
objectives = {objectives}
archs = ["gpt"]
graphs = ["2,3,10"]
presets = ["cpu"]
seeds = [0, 1]
overrides = {overrides}
stages = {stages}

[set]
all = ["task.num_train=512", "task.num_test=128", "train.batch_size=32", "train.lr=0.003", "train.warmup_steps=5",
       "train.eval_every=20", "train.eval_graphs=64", "train.save_every=20", "model.n_layers=1", "model.d_model=32"]
gpt = ["model.n_heads=2"]
mamba = ["model.d_state=8"]

[subsets]
one = ["seeds=0"]

[resources]
cpus_per_run = 1
gpus_per_run = 0

[probes]
n_train = 200
n_test = 100
hooks = ["embed", "resid_post"]
positions = ["eq"]
targets = ["arm", "goal"]

[patching]
n_graphs = 64
"""
ROW_KEY = [*IDENTITY, "metric", "hook", "position"]


def tiny_study(tmp_path: Path, name: str = "tiny", figure: str = "remedies", objectives: str = '["next_token", "reverse"]',
               overrides: str = '[["train.steps=40"]]', stages: str = '["evaluate", "probes", "patching"]') -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(TINY.format(name=name, figure=figure, objectives=objectives, overrides=overrides, stages=stages))
    return path


def test_a_four_run_study_on_local_ray_writes_the_table_figure_and_page(tmp_path, capsys):
    study = load_study(tiny_study(tmp_path))
    out = tmp_path / "out"
    plan = dry_run(study, out, cpus=2)
    assert len([line for line in plan if line.startswith("  gpt-")]) == 4 and "to run: 4 of 4" in plan[-1]

    table = run_study(study, out, cpus=2, progress=True, poll_s=1.0)
    printed = capsys.readouterr().out
    assert "0 of 4 selected runs already finished, 4 to run" in printed and "[4/4]" in printed

    saved = pd.read_csv(out / "study.csv", keep_default_na=False, na_values=[""])
    assert list(saved.columns) == [*IDENTITY, "metric", "hook", "position", "value"]
    assert saved["run"].nunique() == 4 and not saved.duplicated(ROW_KEY).any()
    assert set(zip(saved["objective"], saved["seed"])) == {(o, s) for o in ("next_token", "reverse") for s in (0, 1)}
    assert set(saved["graph"]) == {"G(2,3,10)"} and set(saved["preset"]) == {"cpu"}
    metrics = set(saved["metric"])
    assert {"tf_accuracy", "greedy_accuracy", "probe_arm", "probe_arm_control", "probe_arm_untrained", "probe_goal", "patching_recovered"} <= metrics
    assert {"patching_recovered_untrained", "patching_ld_clean_untrained", "patching_ld_corrupted_untrained"} <= metrics
    ends = saved[saved["metric"].str.startswith("patching_ld_")].pivot_table(index="run", columns="metric", values="value")
    untrained_gap = (ends["patching_ld_clean_untrained"] - ends["patching_ld_corrupted_untrained"]).abs()
    assert (untrained_gap < 0.05).all()  # an untrained twin's r2 does not follow the goal: the control of "used"
    assert ((ends["patching_ld_clean"] - ends["patching_ld_clean_untrained"]).abs() > 0.01).all()  # two models, not one patched twice
    for run in saved["run"].unique():  # each run in the workbench's own layout, with its own table
        assert (out / "checkpoints" / run / "model.safetensors").exists()
        assert len(pd.read_csv(out / "results" / run / "rows.csv")) == (saved["run"] == run).sum()
    accuracy = saved[(saved["metric"] == "tf_accuracy") & (saved["position"] == "r1")]["value"]
    assert len(accuracy) == 4 and accuracy.between(0, 1).all()
    assert len(table) == len(saved)
    page = (out / "report.html").read_text()
    assert "Study tiny" in page and "<details>" in page and "data:image/png;base64," in page and (out / "remedies.png").exists()
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 2 and (summary["r2_accuracy count"] == 2).all()  # one row per objective, two seeds each
    from workbench.study.figures import per_seed

    as_read = per_seed(pd.read_csv(out / "study.csv"))  # plain read_csv turns the empty hook cells into NaN
    assert as_read["r2_accuracy"].notna().all() and as_read["path_accuracy"].notna().all() and (as_read["r2_loss"] > 0).all()

    capsys.readouterr()
    run_study(study, out, cpus=2, progress=False)  # finished: nothing is submitted (Ray is not even started)
    assert "4 of 4 selected runs already finished, 0 to run" in capsys.readouterr().out
    assert pd.read_csv(out / "study.csv", keep_default_na=False, na_values=[""]).equals(saved)
    subset = dry_run(study, out, subset=["one"])
    assert "to run: 0 of 2" in subset[-1]

    # publishing a subset: its runs' rows, their summary, and the provenance the runs recorded
    published = tmp_path / "results" / "tiny_one"
    run_study(study, out, subset=["one"], cpus=3, progress=False, results_dir=published)
    rows = pd.read_csv(published / "study.csv", keep_default_na=False, na_values=[""])
    expected = saved[saved["seed"] == 0].reset_index(drop=True)
    pd.testing.assert_frame_equal(rows[ROW_KEY], expected[ROW_KEY])
    assert ((rows["value"] - expected["value"]).abs().fillna(0) < 1e-5).all()  # written at 6 significant digits
    assert len(pd.read_csv(published / "summary.csv")) == 2
    curves = pd.read_csv(published / "curves.csv", keep_default_na=False, na_values=[""])  # the runs' metrics.jsonl, tidy
    assert set(curves["run"]) == set(expected["run"]) and sorted(curves["step"].unique()) == [0, 20, 40]
    final = curves[(curves["step"] == 40) & (curves["split"] == "test") & (curves["metric"] == "tf_accuracy") & (curves["position"] == "r2")]
    assert len(final) == 2 and final["value"].between(0, 1).all()
    from workbench.study.figures import plot_r2_curves

    assert plot_r2_curves(curves, tmp_path / "curves.png").stat().st_size > 10_000
    record = json.loads((published / "provenance.json").read_text())
    assert record["seeds"] == [0] and record["n_seeds"] == 1 and record["subset"] == ["one"] and record["study"] == "tiny"
    assert record["parallel_runs"] == 3  # the slots of --cpus 3, not of this machine's cores
    assert len(record["commit"]) == 40 and record["torch"] == torch.__version__ and record["wall_seconds"] >= 0
    done = {run: json.loads((out / "results" / run / "done.json").read_text()) for run in expected["run"].unique()}
    assert {r["run"]: (r["steps"], r["trained_in_this_invocation"]) for r in record["runs"]} == {run: (40, False) for run in done}
    assert all(r["train_seconds"] == round(done[r["run"]]["train_elapsed_s"], 1) for r in record["runs"])  # as the trainer logged it
    assert all(r["threads"] == done[r["run"]]["train_threads"] == 1 for r in record["runs"])  # the threads that trained it, kept by the gathering call


def test_objectives_that_do_not_apply_to_an_arch_are_skipped_with_a_note(tmp_path, monkeypatch):
    from workbench.objectives import objective_class

    monkeypatch.setattr(objective_class("reverse"), "archs", ("gpt",))
    text = tiny_study(tmp_path).read_text().replace('archs = ["gpt"]', 'archs = ["gpt", "mamba"]')
    (tmp_path / "both.toml").write_text(text)
    runs, notes = load_study(tmp_path / "both.toml").runs()
    assert notes == ["skipped reverse on mamba: the objective applies to gpt only"]
    assert sorted({(r.arch, r.objective) for r in runs}) == [("gpt", "next_token"), ("gpt", "reverse"), ("mamba", "next_token")]
    study = load_study(tmp_path / "both.toml")
    with pytest.raises(ValueError, match="'gtp' not in the study's grid"):
        study.select(runs, ["archs=gtp"])
    assert {r.arch for r in study.select(runs, ["archs=mamba", "seeds=1"])} == {"mamba"}
    assert study.skip_notes(["archs=mamba"]) == study.skip_notes(["objectives=reverse"]) == notes  # asked for: said
    assert study.skip_notes(["archs=gpt"]) == study.skip_notes(["objectives=next_token", "archs=mamba"]) == []  # not asked for: not said


def _descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (the driver's Ray processes and workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _step(run_dir: Path) -> int:
    try:
        return json.loads((run_dir / "config.json").read_text())["step"]
    except (OSError, ValueError, KeyError):
        return 0


def test_a_rerun_after_the_driver_is_killed_mid_run_completes_the_table_once(tmp_path, capsys):
    """Two short and two long runs; the driver (and its Ray) is SIGKILLed once a short run is
    finished and a long one is between checkpoints. The rerun trains only what is unfinished,
    resumes the interrupted run, and leaves finished runs' rows untouched. Three slots: runs
    are submitted longest first, so with two the short ones would only start after both long
    ones, and none would finish while a long one is mid-run."""
    spec = tiny_study(tmp_path, name="killed", objectives='["next_token"]', overrides='[["train.steps=40"], ["train.steps=600"]]',
                      stages='["evaluate", "patching"]')
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    driver = subprocess.Popen([sys.executable, "-m", "workbench.cli", "study", str(spec), "--out", str(out), "--cpus", "3", "--no-progress"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    long_runs = [out / "checkpoints" / f"gpt-next_token-G2_3_10-cpu-steps600-s{seed}" for seed in (0, 1)]
    deadline, killed_at = time.monotonic() + 300, None
    try:
        while time.monotonic() < deadline and driver.poll() is None:
            finished = list((out / "results").glob("*/done.json"))
            mid_run = [run for run in long_runs if 0 < _step(run) < 600]
            if finished and mid_run:
                killed_at = {run: _step(run) for run in mid_run}
                break
            time.sleep(0.05)
    finally:
        family = _descendants(driver.pid)
        for pid in [driver.pid, *family]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        driver.wait()
    assert killed_at is not None, "the driver finished or stalled before a long run was mid-training"
    before = {path.parent.name: path.read_text() for path in (out / "results").glob("*/rows.csv")}
    keys_before = {path: path.stat().st_mtime_ns for path in (out / "results").glob("*/*.key.json")}
    assert 1 <= len(before) < 4

    capsys.readouterr()
    run_study(load_study(spec), out, cpus=2, progress=False)
    printed = capsys.readouterr().out
    done_before = sum(1 for name in before if (out / "results" / name / "done.json").exists())
    assert f"{done_before} of 4 selected runs already finished, {4 - done_before} to run" in printed

    table = pd.read_csv(out / "study.csv", keep_default_na=False, na_values=[""])
    assert table["run"].nunique() == 4 and not table.duplicated(ROW_KEY).any()
    for name, text in before.items():  # finished runs: the same rows, byte for byte, and no stage recomputed
        assert (out / "results" / name / "rows.csv").read_text() == text
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in keys_before.items())
    for run, step in killed_at.items():  # resumed from its checkpoint: the whole schedule, one log line per evaluation
        steps = [line["step"] for line in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]
        assert step > 0 and _step(run) == 600 and steps == list(range(0, 601, 20))


def test_the_main_report_links_the_study_pages_beside_it(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from workbench.analyses.report import studies_section

    run_dir = tmp_path / "runs" / "default"
    run_dir.mkdir(parents=True)
    assert "No study page beside this run yet" in studies_section(run_dir)
    folder = tmp_path / "runs" / "studies" / "depth"
    folder.mkdir(parents=True)
    (folder / "report.html").write_text("<html></html>")
    pd.DataFrame({"run": ["a", "a", "b"], "seed": [0, 0, 1], "metric": ["m"] * 3, "value": [1.0, 2.0, 3.0]}).to_csv(folder / "study.csv", index=False)
    figure, ax = plt.subplots(figsize=(1, 1))
    figure.savefig(folder / "depth.png")
    plt.close(figure)
    section = studies_section(run_dir)
    assert "Study depth: 2 run(s), 2 seed(s)" in section
    assert 'href="../studies/depth/report.html"' in section and section.count("data:image/png;base64,") == 1


STUDY_FILES = sorted((Path(__file__).resolve().parents[1] / "studies").glob("*.toml"))


@pytest.mark.parametrize("path", STUDY_FILES, ids=[p.stem for p in STUDY_FILES])
def test_every_study_file_loads_and_trains_on_the_preset_schedule_unless_it_says_otherwise(path):
    """The schedule is stated once, in the cpu presets: a study run trains for the preset's
    steps unless its file sets train.steps for that run's arch, objective or variant."""
    study = load_study(path)
    runs, _ = study.runs()
    assert runs, path
    for run in runs:
        items = [*study.sets.get("all", ()), *study.sets.get(run.arch, ()), *study.sets.get(run.objective, ()), *run.overrides.split()]
        preset = preset_config(run.preset, objective=run.objective, arch=run.arch).train
        if not any(item.startswith("train.steps=") for item in items):
            assert (run.config.train.steps, run.config.train.eval_every) == (preset.steps, preset.eval_every), run.name
        assert run.config.train.seed == run.seed


def test_a_run_says_how_many_steps_its_task_trained(tmp_path):
    """The provenance's trained_in_this_invocation comes from this: a run whose training was
    finished before (here, or on another machine) trains no step in the task that computes its
    stages."""
    from workbench.study.run import execute_run

    study = load_study(tiny_study(tmp_path, objectives='["next_token"]', stages='["evaluate"]'))
    run = study.runs()[0][0]
    first = execute_run(run, tmp_path / "out", study.stages, study.probes)
    again = execute_run(run, tmp_path / "out", study.stages, study.probes)
    assert (first["steps"], first["trained_steps"]) == (40, 40) and (again["steps"], again["trained_steps"]) == (40, 0)
