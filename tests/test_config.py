import pytest

from workbench.config import PRESETS, RunConfig, apply_overrides, preset_config


def test_presets_are_the_paper_sizes():
    paper, paper_readme = PRESETS["gpt"]["paper"], PRESETS["gpt"]["paper-readme"]
    assert (paper[0].n_layers, paper[0].d_model, paper[0].n_heads, paper[1].lr, paper[1].batch_size) == (12, 384, 6, 5e-4, 256)
    assert (paper_readme[0].n_layers, paper_readme[1].lr) == (6, 1e-4)


def test_overrides_are_typed_and_unknown_keys_fail():
    config = apply_overrides(preset_config("cpu"), ["train.steps=7", "model.n_layers=3", "train.lr=0.01", "task.train_file=x.txt"])
    assert (config.train.steps, config.model.n_layers, config.train.lr, config.task.train_file) == (7, 3, 0.01, "x.txt")
    with pytest.raises(ValueError, match="unknown field 'stepz' of train"):
        apply_overrides(config, ["train.stepz=3"])
    with pytest.raises(ValueError, match="cannot read 'many'"):
        apply_overrides(config, ["train.steps=many"])
    with pytest.raises(ValueError, match="section.field=value"):
        apply_overrides(config, ["steps=3"])


def test_unknown_preset_and_config_round_trip():
    with pytest.raises(ValueError, match="expected one of \\['cpu', 'paper', 'paper-readme'\\]"):
        preset_config("big")
    with pytest.raises(ValueError, match="unknown preset 'paper-readme' for mamba"):
        preset_config("paper-readme", arch="mamba")
    for arch in ("gpt", "mamba"):
        config = preset_config("paper", objective="reverse", arch=arch)
        assert RunConfig.from_dict(config.to_dict()) == config
    raw = config.to_dict()
    raw["train"]["lr"] = "fast"
    with pytest.raises(ValueError, match="config.train.lr: expected"):
        RunConfig.from_dict(raw)
