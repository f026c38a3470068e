"""A study's time estimates (without Ray): which runs share a step rate, the calibration on
this machine and the order of the rate sources; and the measures and figure of the solvers
page, computed from a study.csv whose numbers are known."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from test_study import tiny_study
from workbench.study import dry_run, load_study
from workbench.study.estimate import STAGE_SECONDS, estimate, probe_sites, step_key
from workbench.study.figures import mean_pm, per_seed, plot_solvers, solver_lines, summary
from workbench.study.run import checkpoint_dir


def test_runs_share_a_step_key_when_only_seed_and_schedule_differ(tmp_path):
    study = load_study(tiny_study(tmp_path, objectives='["next_token", "mtp"]', overrides='[["train.steps=40"], ["train.steps=80"]]'))
    runs, _ = study.runs()
    keys = {(r.objective, r.overrides, r.seed): step_key(r.config) for r in runs}
    assert keys["next_token", "train.steps=40", 0] == keys["next_token", "train.steps=80", 1]  # seed and steps do not change a step
    assert keys["next_token", "train.steps=40", 0] != keys["mtp", "train.steps=40", 0]
    from workbench.config import apply_overrides

    config = runs[0].config
    for change in ("model.n_layers=2", "train.batch_size=64", "task.path_length=4", "train.structured_samples=true"):
        assert step_key(apply_overrides(config, [change])) != step_key(config), change
    assert step_key(apply_overrides(config, ["train.snapshot_every=10", "train.lr=0.1"])) == step_key(config)


def test_calibration_times_each_kind_of_run_once_and_is_reused(tmp_path, capsys):
    study = load_study(tiny_study(tmp_path, objectives='["next_token", "mtp"]'))
    out = tmp_path / "out"
    lines = dry_run(study, out, cpus=2, calibrate_steps=2)
    timed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("calibrate [")]
    assert len(timed) == 2  # two objectives x two seeds: two kinds of step
    saved = json.loads((out / "calibration.json").read_text())
    (machine,) = saved
    assert machine.endswith("| 1 thread(s)") and len(saved[machine]) == 2 and all(rate > 0 for rate in saved[machine].values())
    runs = [line for line in lines if line.startswith("  gpt-")]
    assert len(runs) == 4 and all("(calibrated here)" in line for line in runs)
    rate = {line.split()[0]: re.search(r"([\d.]+) steps/s", line).group(1) for line in runs}
    assert rate["gpt-mtp-G2_3_10-cpu-steps40-s0"] == rate["gpt-mtp-G2_3_10-cpu-steps40-s1"]

    again = dry_run(study, out, cpus=2)  # a later dry run reads the saved rates: nothing timed, the same estimates
    assert "calibrate [" not in capsys.readouterr().out and again == lines
    dry_run(study, out, cpus=2, calibrate_steps=2)  # asked again: timed again, the rates replaced (not added)
    assert len([line for line in capsys.readouterr().out.splitlines() if line.startswith("calibrate [")]) == 2
    assert json.loads((out / "calibration.json").read_text())[machine].keys() == saved[machine].keys()
    (out / "calibration.json").write_text("{not json")  # a broken file costs the estimate, never the study
    assert all("(calibrated here)" not in line for line in dry_run(study, out, cpus=2))


def test_estimates_prefer_the_run_log_then_finished_runs_of_the_same_kind_then_calibration(tmp_path):
    study = load_study(tiny_study(tmp_path, objectives='["next_token", "mtp"]'))
    runs, _ = study.runs()
    out = tmp_path / "out"
    by = {(r.objective, r.seed): r for r in runs}
    log = checkpoint_dir(out, by["next_token", 0])
    log.mkdir(parents=True)
    (log / "metrics.jsonl").write_text(json.dumps({"step": 0, "elapsed_s": 0.0}) + "\n" + json.dumps({"step": 40, "elapsed_s": 4.0}) + "\n")
    calibrated = {step_key(by["next_token", 1].config): 50.0, step_key(by["mtp", 0].config): 20.0}
    guesses = {(g.run.split("-")[1], int(g.run[-1])): g for g in estimate(runs, out, ("evaluate",), study.probes, calibrated)}
    assert (guesses["next_token", 0].source, guesses["next_token", 0].steps_per_s) == ("own log", 10.0)
    assert guesses["next_token", 0].seconds == pytest.approx(STAGE_SECONDS["evaluate"])  # trained: only the stage is left
    assert (guesses["next_token", 1].source, guesses["next_token", 1].steps_per_s) == ("study logs, same kind", 10.0)
    assert (guesses["mtp", 1].source, guesses["mtp", 1].steps_per_s) == ("calibrated here", 20.0)
    assert guesses["mtp", 1].seconds == pytest.approx(40 / 20.0 + STAGE_SECONDS["evaluate"])
    assert probe_sites(by["mtp", 0], study.probes) == 2 * 1 * (1 + 1)  # arm, goal x eq x (embed + 1 layer)
    probes_only = estimate(runs[:1], tmp_path / "empty", ("probes",), study.probes)[0]
    assert probes_only.stage_s == pytest.approx(STAGE_SECONDS["probes"] * 4)


def test_progress_eta_spreads_the_time_left_over_the_slots_and_uses_logged_rates(tmp_path):
    from workbench.study.driver import _progress_line
    from workbench.study.estimate import RunEstimate

    study = load_study(tiny_study(tmp_path))
    runs = study.runs()[0][:2]  # two runs of 40 steps
    out = tmp_path / "out"
    guesses = {r.name: RunEstimate(r.name, 0, 40, 4.0, "calibrated here", 5.0) for r in runs}  # 10 s + 5 s each
    eta = lambda line: re.search(r"ETA ~(\d+) s on (\d) slot", line).groups()
    assert eta(_progress_line(out, runs, 0, 2, guesses, 1.0, slots=1)) == ("30", "1")  # one after the other
    assert eta(_progress_line(out, runs, 0, 2, guesses, 1.0, slots=2)) == ("15", "2")   # side by side
    log = checkpoint_dir(out, runs[0])
    log.mkdir(parents=True)
    (log / "metrics.jsonl").write_text(json.dumps({"step": 20, "elapsed_s": 2.0}) + "\n")  # half done at 10 steps/s
    line = _progress_line(out, runs, 0, 2, guesses, 6.0, slots=2)
    assert "60 steps left at 10.0 steps/s" in line
    assert eta(line) == ("15", "2")  # the longest run (not yet started, 15 s) bounds the ETA: (2 + 5 + 15) / 2 < 15
    for run in runs:  # both trained: only their stages are left
        checkpoint_dir(out, run).mkdir(parents=True, exist_ok=True)
        (checkpoint_dir(out, run) / "metrics.jsonl").write_text(json.dumps({"step": 40, "elapsed_s": 4.0}) + "\n")
    line = _progress_line(out, runs, 0, 2, guesses, 9.0, slots=2)
    assert "0 steps left (training done; evaluation, probes or patching running)" in line and eta(line) == ("5", "2")
    del guesses[runs[1].name]
    assert "(1 run(s) without an estimate left out)" in _progress_line(out, runs, 0, 2, guesses, 6.0, slots=2)


def test_wall_time_shares_the_runs_over_the_slots_and_is_never_less_than_the_longest():
    from workbench.study.estimate import wall_seconds

    assert wall_seconds([10.0, 20.0, 30.0], slots=1) == 60.0
    assert wall_seconds([10.0, 20.0, 30.0], slots=2) == 30.0     # 60 s over two slots
    assert wall_seconds([10.0, 10.0, 100.0], slots=2) == 100.0   # the longest run bounds it
    assert wall_seconds([10.0, 20.0], slots=8) == 20.0           # more slots than runs
    assert wall_seconds([], slots=2) is None


def test_runs_are_submitted_longest_first_and_unestimated_ones_last():
    from types import SimpleNamespace

    from workbench.study.driver import longest_first
    from workbench.study.estimate import RunEstimate

    runs = [SimpleNamespace(name=name) for name in ("short", "unknown", "long", "middle")]
    guesses = {name: RunEstimate(name, 0, 100, rate, "calibrated here", 0.0) for name, rate in (("short", 10.0), ("long", 1.0), ("middle", 2.0))}
    assert [run.name for run in longest_first(runs, guesses)] == ["long", "middle", "short", "unknown"]


def _study_csv() -> pd.DataFrame:
    """Two objectives x two seeds of a 2-layer model with known probe and patching values."""
    rows = []
    for objective, seed, r2, node_eq, patch_eq in (("a", 0, 1.0, 0.9, 0.1), ("a", 1, 0.9, 0.7, 0.3), ("b", 0, 0.5, 0.2, np.nan), ("b", 1, 0.5, 0.4, np.nan)):
        run = dict(study="s", objective=objective, arch="gpt", graph="G(2,3,50)", preset="cpu", overrides="", seed=seed, run=f"{objective}{seed}")
        rows.append(run | dict(metric="tf_accuracy", hook="", position="r2", value=r2))
        rows.append(run | dict(metric="greedy_accuracy", hook="", position="path", value=r2))
        for layer, hook in enumerate(("hook_embed", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post")):
            for position, scale in (("eq", 1.0), ("r1", 0.5)):
                for metric, value in (("probe_arm", 0.5), ("probe_goal", 0.3 * layer), ("probe_node_r2", node_eq * scale * layer / 2),
                                      ("probe_node_r2_control", 0.1), ("probe_node_r2_untrained", 0.2), ("patching_recovered", patch_eq * scale * layer / 2)):
                    rows.append(run | dict(metric=metric, hook=hook, position=position, value=value))
            rows.append(run | dict(metric="patching_recovered", hook=hook, position="r1", value=1.0 if objective == "a" else np.nan))
    return pd.DataFrame(rows).drop_duplicates(["run", "metric", "hook", "position"], keep="last")


def test_solver_measures_read_the_r2_node_and_patching_at_eq(tmp_path):
    seeds = per_seed(_study_csv()).set_index("run")
    assert seeds.loc["a0", "node_r2_at_eq"] == pytest.approx(0.9) and seeds.loc["b1", "node_r2_at_eq"] == pytest.approx(0.4)
    # best site before the last block's output (blocks.1 here): '=' after block 0, r1 at the embedding
    assert seeds.loc["a1", "patching_at_eq"] == pytest.approx(0.15) and seeds.loc["a1", "patching_recovered"] == 1.0
    assert np.isnan(seeds.loc["b0", "patching_at_eq"]) and np.isnan(seeds.loc["b0", "patching_recovered"])
    shown = mean_pm(summary(per_seed(_study_csv())), ("evaluate", "probes", "patching"), ("arm", "goal", "node_r2")).set_index("objective")
    assert shown.loc["a", "r2 node at eq (best hook)"] == "0.800 ± 0.141 (2)"
    assert shown.loc["a", "patching recovery at eq (best site)"] == "0.100 ± 0.071 (2)"
    assert shown.loc["b", "patching recovery at eq (best site)"] == "undefined"
    without = mean_pm(summary(per_seed(_study_csv())), ("evaluate", "probes"), ("arm", "goal"))
    assert "r2 node at eq (best hook)" not in without.columns and "goal node at eq (best hook)" in without.columns
    table = _study_csv()
    ssm = table[table["hook"] == "blocks.0.hook_resid_post"].assign(hook="blocks.0.mixer.hook_ssm_state", value=-5.0)
    lines = solver_lines(pd.concat([table, ssm]))  # an SSM state sits at the same layer: it is not drawn
    assert set(lines["hook"]) == {"hook_embed", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"} and set(lines["layer"]) == {0, 1, 2}
    assert set(lines["metric"]) == {"probe_node_r2", "probe_node_r2_control", "probe_node_r2_untrained", "patching_recovered"}
    assert set(lines["model"]) == {"a", "b"}
    mixed = solver_lines(pd.concat([table, table.assign(arch="mamba", run=table["run"] + "m")]))
    assert set(mixed["model"]) == {"a (gpt)", "a (mamba)", "b (gpt)", "b (mamba)"}
    assert plot_solvers(table, tmp_path / "solvers.png").stat().st_size > 10_000


def test_the_best_patching_site_is_taken_before_the_last_blocks_output():
    """At the slot that emits r2 the last block's residual is r2's logits: patched, it restores
    all of the logit difference whatever the model does, so the best site skips it (and each
    run's own last block counts, whatever its depth)."""
    rows = []
    for run, layers in (("two", 2), ("three", 3)):
        identity = dict(study="s", objective="a", arch="mamba", graph="G(2,3,50)", preset="cpu", overrides="", seed=layers, run=run)
        hooks = ["hook_embed", *(f"blocks.{i}.hook_resid_post" for i in range(layers)), f"blocks.{layers - 1}.mixer.hook_ssm_state"]
        values = [0.0, *(0.1 * (i + 1) for i in range(layers - 1)), 1.0, 0.45]  # the final residual 1.0, the last block's SSM state 0.45
        rows += [identity | dict(metric="patching_recovered", hook=hook, position="r1", value=value) for hook, value in zip(hooks, values)]
        rows.append(identity | dict(metric="patching_recovered", hook=f"blocks.{layers - 1}.hook_resid_post", position="eq", value=0.0))
    seeds = per_seed(pd.DataFrame(rows)).set_index("run")
    assert seeds.loc["two", "patching_recovered"] == pytest.approx(0.45)
    assert seeds.loc["three", "patching_site"] == "blocks.2.mixer.hook_ssm_state @ r1"
    assert np.isnan(seeds.loc["two", "patching_at_eq"])  # '=' was patched only after the last block: nothing before it


def test_the_solvers_figure_needs_the_r2_node_probe_and_patching(tmp_path):
    path = tiny_study(tmp_path, figure="solvers")
    with pytest.raises(ValueError, match='figure = "solvers" .* targets with "node_r2"'):
        load_study(path)
    path.write_text(path.read_text().replace('targets = ["arm", "goal"]', 'targets = ["arm", "goal", "node_r2"]'))
    assert load_study(path).figure == "solvers"


def test_a_run_finished_before_a_setting_became_incidental_still_reads_done(tmp_path):
    """done.json files written while snapshot_every (and the device) still counted in the
    config comparison: the run stays done, while a real change of config does not."""
    from workbench.study.run import execute_run, is_done, result_dir

    study = load_study(tiny_study(tmp_path, objectives='["next_token"]', stages='["evaluate"]'))
    run = study.runs()[0][0]
    out = tmp_path / "out"
    execute_run(run, out, study.stages, study.probes)
    done_file = result_dir(out, run) / "done.json"
    done = json.loads(done_file.read_text())
    assert "snapshot_every" not in done["config"]["train"] and is_done(out, run, study.stages)
    done["config"]["train"] |= {"snapshot_every": 0, "device": "cpu"}  # as written before
    done_file.write_text(json.dumps(done))
    assert is_done(out, run, study.stages)
    done["config"]["train"]["lr"] = 0.5
    done_file.write_text(json.dumps(done))
    assert not is_done(out, run, study.stages)


def test_a_changed_stage_setting_reopens_the_run_and_recomputes_only_that_stage(tmp_path):
    from workbench.study.driver import current_settings
    from workbench.study.run import execute_run, is_done, result_dir

    path = tiny_study(tmp_path, objectives='["next_token"]', stages='["evaluate", "patching"]')
    study = load_study(path)
    run = study.runs()[0][0]
    out = tmp_path / "out"
    execute_run(run, out, study.stages, study.probes, patching_graphs=study.patching_graphs)
    assert is_done(out, run, study.stages, study.plateau, current_settings(study, run))
    evaluated = (result_dir(out, run) / "evaluate.key.json").stat().st_mtime_ns

    path.write_text(path.read_text().replace("[patching]\nn_graphs = 64", "[patching]\nn_graphs = 32"))
    changed = load_study(path)
    assert not is_done(out, run, changed.stages, changed.plateau, current_settings(changed, run))
    execute_run(run, out, changed.stages, changed.probes, patching_graphs=changed.patching_graphs)
    assert is_done(out, run, changed.stages, changed.plateau, current_settings(changed, run))
    assert (result_dir(out, run) / "evaluate.key.json").stat().st_mtime_ns == evaluated  # evaluate reused
    key = json.loads((result_dir(out, run) / "patching.key.json").read_text())["key"]["settings"]
    assert key == {"stage": "patching", "n_graphs": 32, "untrained_twin": True}


def test_the_measured_table_scales_with_the_runs_layers_and_batch():
    # The deep solvers' GPTs have twice the preset's layers and four times its batch: a step
    # costs about eight times the preset's (measured 2.4-2.6 steps/s for future_bow there).
    from workbench.study.estimate import MEASURED_RATES, table_rate

    study = load_study(Path(__file__).parents[1] / "studies" / "deep_solvers.toml")
    gpt = next(r for r in study.runs()[0] if r.arch == "gpt")
    mamba = next(r for r in study.runs()[0] if r.arch == "mamba")
    assert (gpt.config.model.n_layers, gpt.config.train.batch_size) == (4, 512)
    assert table_rate(gpt) == pytest.approx(MEASURED_RATES["gpt", "cpu"] / 8)
    assert table_rate(mamba) == pytest.approx(MEASURED_RATES["mamba", "cpu"])  # the preset's size
    guess = estimate([gpt], Path("/nonexistent"), ())[0]
    assert (guess.source, guess.steps_per_s) == ("measured table", table_rate(gpt))
