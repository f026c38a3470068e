"""The main job end to end on tiny models: every stage writes its tables and figures, the
report embeds them, and a second run reuses every stage."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pandas as pd
import pytest

from conftest import tiny_config, tiny_mamba_config
from workbench.cli import main as cli_main
from workbench.config import preset_config
from workbench.main_job import DEFAULT_OBJECTIVES, default_configs, run_main_job

ANALYSES = ["accuracy_gap", "cheat_test", "edge_lookup", "loss_curves", "gradient_shares", "cka", "patching", "probes_over_training"]


def test_main_job_writes_every_table_figure_and_the_report(tmp_path, capsys):
    from workbench.config import apply_overrides

    configs = [tiny_config("next_token"), tiny_config("teacherless"), apply_overrides(tiny_config("mtp"), ["objective.k=2"]), tiny_mamba_config()]
    configs = [replace(c, train=replace(c.train, snapshot_every=20)) for c in configs]
    results = run_main_job(tmp_path, configs, probe_graphs=(300, 200), training_probe_graphs=(300, 200), progress=False,
                           results_dir=tmp_path / "published")
    assert set(zip(results["arch"], results["objective"])) == {("gpt", "next_token"), ("gpt", "teacherless"), ("gpt", "mtp"), ("mamba", "next_token")}
    assert (tmp_path / "checkpoints" / "gpt-next_token-s1" / "model.safetensors").exists()  # the seed reference
    # ... evaluated and probed beside seed 0
    assert set(results[results["seed"] == 1][["arch", "objective"]].itertuples(index=False)) == {("gpt", "next_token")}
    assert len(results[results["seed"] == 1]) == len(results[(results["seed"] == 0) & (results["objective"] == "next_token") & (results["arch"] == "gpt")])
    probes = pd.read_csv(tmp_path / "probes" / "probes.csv")
    assert set(probes["objective"]) == {"next_token", "teacherless", "mtp"} and "ssm_state" in set(probes["site"])
    assert set(probes[probes["seed"] == 1]["objective"]) == {"next_token"}
    for name in ANALYSES:
        assert (tmp_path / "analyses" / f"{name}.csv").exists(), name
        assert (tmp_path / "analyses" / f"{name}.png").exists(), name
    cka = pd.read_csv(tmp_path / "analyses" / "cka.csv")
    assert set(cka["kind"]) == {"across objectives", "across archs", "across seeds"}
    cheat = pd.read_csv(tmp_path / "analyses" / "cheat_test.csv")
    assert set(cheat["objective"]) == {"next_token", "mtp"}  # teacherless feeds no answer tokens
    shares = pd.read_csv(tmp_path / "analyses" / "gradient_shares.csv")
    assert "head2" in set(shares[shares["objective"] == "mtp"]["position"])  # mtp's extra head has its share
    over_training = pd.read_csv(tmp_path / "analyses" / "probes_over_training.csv")
    assert sorted(set(over_training["step"])) == [0, 20, 40]

    published = sorted(p.name for p in (tmp_path / "published").iterdir())  # the job's tidy tables and its provenance
    assert published == sorted(["results.csv", "probes.csv", "provenance.json", *(f"{name}.csv" for name in ANALYSES)])
    assert len(pd.read_csv(tmp_path / "published" / "probes.csv")) == len(probes)
    record = json.loads((tmp_path / "published" / "provenance.json").read_text())
    assert record["seeds"] == [0, 1] and [r["run"] for r in record["runs"]] == [
        "gpt-next_token", "gpt-teacherless", "gpt-mtp", "mamba-next_token", "gpt-next_token-s1"]
    assert all(r["steps"] == 40 and r["train_seconds"] > 0 for r in record["runs"]) and record["device"]

    page = (tmp_path / "report.html").read_text()
    for heading in ("What this run shows", "Per-token accuracy", "The Clever Hans cheat", "Loss of first-token supervision", "Linear probes", "CKA", "patching"):
        assert heading in page, heading
    assert len(re.findall(r"<img src=.data:image/png;base64,", page)) == len(ANALYSES) + 6  # one per analysis, one per probe target
    assert "gpt / teacherless</b>" in page and "does not apply" in page and "gpt / mtp" in page
    r2 = results[(results["arch"] == "gpt") & (results["objective"] == "next_token") & (results["metric"] == "tf_accuracy") & (results["position"] == "r2")]
    mean, low, high = r2["value"].mean(), r2["value"].min(), r2["value"].max()
    assert f"{mean:.3f} ({low:.3f}-{high:.3f}, 2 seeds)" in page  # the summary's r2 over the two seeds
    assert "Over its seeds 0, 1: r2" in page

    capsys.readouterr()
    run_main_job(tmp_path, configs, probe_graphs=(300, 200), training_probe_graphs=(300, 200), progress=False)
    second = capsys.readouterr().out
    assert "probes.csv is current, reused" in second and "analyses: current, reused" in second
    cli_main(["report", str(tmp_path)])
    assert "report.html" in capsys.readouterr().out


def test_default_job_is_both_archs_under_every_objective_on_the_cpu_presets():
    configs = default_configs()
    assert [(c.arch, c.objective) for c in configs] == [(a, o) for a in ("gpt", "mamba") for o in DEFAULT_OBJECTIVES]
    for config in configs:
        preset = preset_config("cpu", objective=config.objective, arch=config.arch)
        assert config.model == preset.model and config.task == preset.task
        assert config.train == replace(preset.train, snapshot_every=preset.train.eval_every)
        # the schedule behind the published results/main_job (GPT 1,500 steps, Mamba 1,000)
        steps, every = {"gpt": (1_500, 500), "mamba": (1_000, 250)}[config.arch]
        assert (config.train.steps, config.train.snapshot_every, config.train.eval_every, config.train.save_every) == (steps, every, every, every)


def test_main_job_takes_another_graph_and_overrides_for_every_run():
    from workbench.task import GraphSpec

    configs = default_configs((("gpt", "mtp"), ("mamba", "mtp")), GraphSpec(2, 3, 50), ("objective.k=4", "model.n_layers=3"))
    assert [c.task.graph for c in configs] == [GraphSpec(2, 3, 50)] * 2
    assert [(c.objective_params.k, c.model.n_layers) for c in configs] == [(4, 3), (4, 3)]
    assert configs[0].train.steps == preset_config("cpu").train.steps
    with pytest.raises(ValueError, match="k"):  # next_token has no k: an error, not a silently ignored setting
        default_configs((("gpt", "next_token"),), GraphSpec(2, 3, 50), ("objective.k=4",))


def test_a_stage_reruns_when_a_checkpoint_it_read_is_retrained_under_another_setting(tmp_path, capsys):
    """Same path, same step, other weights: the probe table must not be reused (it once was,
    silently, when the Mamba preset's learning rate changed)."""
    import shutil

    from workbench.config import apply_overrides

    config = tiny_config("next_token", steps=20, eval_every=20, save_every=20)
    settings = dict(seed_reference=False, analyses=False, probe_graphs=(200, 100), progress=False)
    run_main_job(tmp_path, [config], **settings)
    first = pd.read_csv(tmp_path / "probes" / "probes.csv")
    capsys.readouterr()
    run_main_job(tmp_path, [config], **settings)
    assert "probes.csv is current, reused" in capsys.readouterr().out

    shutil.rmtree(tmp_path / "checkpoints")
    run_main_job(tmp_path, [apply_overrides(config, ["train.lr=0.01"])], **settings)
    assert "reused" not in capsys.readouterr().out
    second = pd.read_csv(tmp_path / "probes" / "probes.csv")
    assert len(first) == len(second) and not first["accuracy"].equals(second["accuracy"])
