"""One device rule: auto everywhere unless given, and one message naming every accepted value."""

import pytest
import torch

import workbench
from conftest import tiny_config
from workbench.checkpoint import save_checkpoint
from workbench.cli import build_parser
from workbench.config import apply_overrides
from workbench.devices import DEVICES, resolve_device
from workbench.factory import build_model
from workbench.probes.spec import ProbeSpec


def test_auto_is_cuda_where_there_is_one_else_the_cpu():
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu") and resolve_device("cuda:1") == torch.device("cuda:1")


@pytest.mark.parametrize("where", ["train", "probe spec", "resolve"])
def test_a_bad_device_names_every_accepted_value(where):
    with pytest.raises(ValueError) as error:
        if where == "train":
            apply_overrides(tiny_config(), ["train.device=gpu"])
        elif where == "probe spec":
            ProbeSpec(checkpoints=("x",), device="gpu")
        else:
            resolve_device("gpu")
    assert "'gpu'" in str(error.value) and all(value in str(error.value) for value in DEVICES)


def test_every_default_is_auto(tmp_path):
    parser = build_parser()
    for verb in (["eval", "x"], ["inspect", "x", "--out", "o"]):
        assert parser.parse_args(verb).device == "auto"
    assert ProbeSpec(checkpoints=("x",)).device == "auto" and tiny_config().train.device == "auto"
    config = tiny_config()
    save_checkpoint(tmp_path / "ckpt", config, build_model(config, seed=0), step=0, metrics=[])
    assert next(workbench.load(tmp_path / "ckpt").model.parameters()).device.type == resolve_device("auto").type
