"""The plateau rule (workbench.stopping): its verdicts on known loss curves, training stopped
by it (and resumed, and resumed under no rule), and a study that states it."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from conftest import tiny_config
from test_study import tiny_study
from workbench.stopping import PlateauRule
from workbench.train import train


def curve(*points: tuple[int, float, float]) -> list[dict]:
    """metrics.jsonl records from (step, r2 loss, r2 accuracy)."""
    return [{"step": s, "test": {"tf_loss": {"r2": loss}, "tf_accuracy": {"r2": acc}}} for s, loss, acc in points]


# The held-out r2 loss of a 2-layer Mamba (next_token) on G(2,4,50), every 500 steps: at chance
# on r2 until 2,500 steps while the loss falls slowly, then learned.
MAMBA_G24 = [(0, 4.06, 0.0), (500, 1.245, 0.448), (1000, 1.005, 0.472), (1500, 0.962, 0.497), (2000, 0.909, 0.498),
             (2500, 0.849, 0.518), (3000, 0.528, 0.772), (3500, 0.256, 0.890), (4000, 0.193, 0.925)]


def test_the_rule_keeps_training_through_a_slowly_falling_plateau_of_accuracy():
    rule = PlateauRule(window=1000, min_fall=0.02, solved=0.99)
    verdicts = [rule(curve(*MAMBA_G24[: i + 1])) for i in range(len(MAMBA_G24))]
    assert verdicts == [None] * len(MAMBA_G24)  # 1,000 -> 2,000: 1.005 -> 0.909, a 9.6% fall: go on
    assert PlateauRule(window=1000, min_fall=0.10)(curve(*MAMBA_G24[:5])) == "plateau"  # a stricter rule stops at 2,000


def test_the_rule_stops_on_a_flat_loss_and_on_a_solved_first_decision():
    rule = PlateauRule(window=1000, min_fall=0.02, solved=0.99)
    assert rule(curve((0, 4.0, 0.0), (500, 0.80, 0.5), (1000, 0.79, 0.5))) is None  # against step 0: a large fall
    assert rule(curve((0, 0.80, 0.5), (500, 0.79, 0.5), (1000, 0.79, 0.5))) == "plateau"  # 1.25% over the window
    assert rule(curve((0, 0.80, 0.5), (1000, 0.81, 0.5))) == "plateau"  # 1.25% up: flat too
    assert rule(curve((0, 4.0, 0.0), (500, 0.05, 0.995))) == "solved"  # before a full window
    assert rule(curve((0, 4.0, 0.0), (500, 1.0, 0.6))) is None
    assert rule([]) is None
    assert rule(curve((0, 4.0, 0.0), (500, float("nan"), 0.0))) == "diverged"  # not a plateau, nor a budget limit


# The held-out r2 loss of a 3-layer Mamba (first_decision_only, G(2,4,50), 12,000-step schedule,
# lr 4e-3 there): falling, then a spike between two evaluations, to an accuracy below chance.
MAMBA_SPIKE = [(3000, 1.159, 0.481), (3500, 0.986, 0.486), (4000, 3.959, 0.020)]


def test_a_spike_is_not_a_plateau_training_goes_on_until_the_loss_settles():
    rule = PlateauRule(window=1000, min_fall=0.02, solved=0.99)
    assert rule(curve(*MAMBA_SPIKE)) is None  # 1.159 -> 3.959: it rose, it did not settle
    assert rule(curve(*MAMBA_SPIKE, (4500, 1.50, 0.3), (5000, 1.10, 0.45))) is None  # recovering: 3.959 -> 1.10
    assert rule(curve(*MAMBA_SPIKE, (4500, 0.99, 0.49))) == "plateau"  # back where it was 1,000 steps before: no progress


def test_first_stop_replays_the_rule_over_the_evaluations():
    from workbench.stopping import first_stop

    metrics = curve(*MAMBA_G24)
    assert first_stop(PlateauRule(window=1000, min_fall=0.02), metrics) is None
    assert first_stop(PlateauRule(window=1000, min_fall=0.10), metrics) == (2000, "plateau")  # though not at 2,500 nor later
    assert first_stop(PlateauRule(window=1000, min_fall=0.02, solved=0.9), metrics) == (4000, "solved")


def test_the_rule_checks_its_settings_and_the_evaluation_schedule():
    with pytest.raises(ValueError, match="window"):
        PlateauRule(window=0)
    with pytest.raises(ValueError, match="min_fall"):
        PlateauRule(min_fall=1.5)
    with pytest.raises(ValueError, match="solved"):
        PlateauRule(solved=0)
    with pytest.raises(ValueError, match="window 1000 is not a multiple of train.eval_every=300"):
        PlateauRule(window=1000).check_schedule(300, "here")


def test_training_stops_where_the_rule_says_and_a_resume_trains_no_further(tmp_path):
    config = tiny_config(steps=60, eval_every=10, save_every=50, device="cpu")
    at_30 = lambda metrics: "enough" if metrics[-1]["step"] >= 30 else None  # noqa: E731
    checkpoint = train(config, tmp_path / "run", progress=False, stop_when=at_30)
    assert checkpoint.step == 30  # saved where it stopped, not only at save_every
    assert [m["step"] for m in checkpoint.metrics] == [0, 10, 20, 30]
    again = train(config, tmp_path / "run", progress=False, stop_when=at_30)
    assert again.step == 30 and [m["step"] for m in again.metrics] == [0, 10, 20, 30]

    # a rule that would have stopped it earlier refuses the folder rather than mislabel it
    from workbench.checkpoint import CheckpointError

    at_10 = lambda metrics: "sooner" if metrics[-1]["step"] >= 10 else None  # noqa: E731
    with pytest.raises(CheckpointError, match="trained to step 30, past step 10, where the stopping rule stops it"):
        train(config, tmp_path / "run", progress=False, stop_when=at_10)
    with pytest.raises(ValueError, match="plateau window 25 is not a multiple of train.eval_every=10"):
        train(config, tmp_path / "other", progress=False, stop_when=PlateauRule(window=25))

    # without the rule the same folder trains on to the cap, to the weights of a run never stopped:
    # the schedule always spans train.steps
    assert train(config, tmp_path / "run", progress=False).step == 60
    train(config, tmp_path / "straight", progress=False)
    a, b = load_file(tmp_path / "run" / "model.safetensors"), load_file(tmp_path / "straight" / "model.safetensors")
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_a_study_with_a_plateau_rule_records_where_each_run_stopped(tmp_path):
    from workbench.study import load_study
    from workbench.study.figures import per_seed
    from workbench.study.run import execute_run, is_done, result_dir

    path = tiny_study(tmp_path, objectives='["next_token"]', overrides='[["train.steps=80"]]', stages='["evaluate"]')
    # min_fall 0.999: any window in which the loss does not fall 99.9% is a plateau, so the rule stops each run at 20 steps
    path.write_text(path.read_text() + "\n[plateau]\nwindow = 20\nmin_fall = 0.999\nsolved = 1.0\n")
    study = load_study(path)
    assert study.plateau == PlateauRule(window=20, min_fall=0.999, solved=1.0)
    run = study.runs()[0][0]
    out = tmp_path / "out"
    execute_run(run, out, study.stages, study.probes, plateau=study.plateau)
    rows = pd.read_csv(result_dir(out, run) / "rows.csv", keep_default_na=False, na_values=[""]).astype({"hook": str})
    value = rows.set_index("metric")
    assert value.loc["train_steps", "value"] == 20 and value.loc["stopped_by_rule", "value"] == 1
    assert value.loc["stopped_by_rule", "position"] == "plateau"
    assert json.loads((result_dir(out, run) / "done.json").read_text())["plateau"]["window"] == 20
    assert is_done(out, run, study.stages, study.plateau)
    assert not is_done(out, run, study.stages, PlateauRule(window=20, min_fall=0.5))  # another rule: not this run's result
    assert not is_done(out, run, study.stages)  # nor no rule
    seeds = per_seed(rows.fillna({"hook": ""}).assign(study="tiny", objective="next_token", arch="gpt", graph="G(2,3,10)", preset="cpu", overrides="", seed=0, run=run.name))
    assert seeds.loc[0, "train_steps"] == 20 and seeds.loc[0, "stopped_by"] == "plateau"

    # a window longer than the cap never sees a plateau: the run resumes from 20 and ends at the cap
    # (or earlier, solved: every held-out r2 right)
    longer = PlateauRule(window=100, min_fall=0.02, solved=1.0)
    execute_run(run, out, study.stages, study.probes, plateau=longer)
    rows = pd.read_csv(result_dir(out, run) / "rows.csv", keep_default_na=False, na_values=[""]).set_index("metric")
    steps, reason = rows.loc["train_steps", "value"], rows.loc["stopped_by_rule", "position"]
    assert (steps, reason, rows.loc["stopped_by_rule", "value"]) == ((80, "cap", 0) if reason == "cap" else (steps, "solved", 1))
    assert steps > 20 and (reason == "cap" or steps < 80)


def test_a_study_file_names_a_bad_plateau_rule(tmp_path):
    from workbench.study import load_study

    path = tiny_study(tmp_path)
    base = path.read_text()
    path.write_text(base + "\n[plateau]\nwindow = 30\n")  # eval_every is 20
    with pytest.raises(ValueError, match=r"tiny.toml: run .*: \[plateau\]: plateau window 30 is not a multiple of train.eval_every=20"):
        load_study(path).runs()
    path.write_text(base + "\n[plateau]\nwindows = 20\n")
    with pytest.raises(ValueError, match=r"tiny.toml: \[plateau\]: .*windows"):
        load_study(path)


def test_the_depth_figure_names_how_each_cell_ended(tmp_path):
    from workbench.study.figures import depth_cell_notes, plot_depth

    seeds = pd.DataFrame({
        "run": ["a0", "a1", "b0", "b1", "c0"], "arch": "gpt", "objective": "first_decision_only",
        "r2_accuracy": [1.0, 1.0, 0.5, 0.52, 0.6], "train_steps": [500.0, 500.0, 3000.0, 8000.0, 2500.0],
        "stopped_by": ["solved", "solved", "plateau", "cap", "plateau"],
    })
    layers = {"a0": 1, "a1": 1, "b0": 1, "b1": 1, "c0": 2}
    lengths = {"a0": 2, "a1": 2, "b0": 3, "b1": 3, "c0": 3}
    notes = depth_cell_notes(seeds.assign(layers=seeds["run"].map(layers), path_length=seeds["run"].map(lengths)))
    assert notes[("gpt", "first_decision_only", 1, 2)] == "solved 0.5k"
    assert notes[("gpt", "first_decision_only", 1, 3)] == "cap 8k"  # one seed at the cap names the cell a budget limit
    assert notes[("gpt", "first_decision_only", 2, 3)] == "plateau 2.5k"
    assert plot_depth(seeds, layers, lengths, tmp_path / "depth.png").stat().st_size > 10_000


def test_a_rule_that_fires_at_the_cap_is_named_not_the_cap(tmp_path):
    """A run whose rule fires at its last evaluation ended on the rule's reason (a plateau is a
    limit of the model), even though it also reached train.steps."""
    from workbench.study.run import training_rows

    checkpoint = train(tiny_config(steps=40, eval_every=20, save_every=20, device="cpu"), tmp_path / "run", progress=False)
    fires_at_40 = PlateauRule(window=40, min_fall=0.999, solved=1.0)  # the first evaluation 40 steps back is step 0, at step 40
    rows = training_rows(checkpoint, fires_at_40).set_index("metric")
    assert (rows.loc["train_steps", "value"], rows.loc["stopped_by_rule", "position"], rows.loc["stopped_by_rule", "value"]) == (40, "plateau", 1)
    never = PlateauRule(window=40, min_fall=0.0, solved=1.0)  # fires only on a rising loss
    if never(checkpoint.metrics) is None:
        rows = training_rows(checkpoint, never).set_index("metric")
        assert (rows.loc["stopped_by_rule", "position"], rows.loc["stopped_by_rule", "value"]) == ("cap", 0)
