"""Shared fixtures: the paper's reference data (full files from ../shared when present, and a
300-line excerpt of each shipped in tests/data), and small models that train in seconds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from workbench.config import RunConfig, TaskConfig, TrainConfig
from workbench.models.gpt import GPTConfig

torch.set_num_threads(2)

TEST_DATA = Path(__file__).parent / "data"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "reference-data"


def reference_files() -> list[Path]:
    """The excerpts always; the full files of the paper's data set where ../shared has them."""
    files = sorted(TEST_DATA.glob("deg_*.txt"))
    if SHARED_DATA.exists():
        files += sorted(SHARED_DATA.glob("deg_*.txt"))
    return files


@pytest.fixture
def g253_file() -> Path:
    return TEST_DATA / "deg_2_path_5_nodes_50_test_300.txt"


def tiny_config(objective: str = "next_token", **train: object) -> RunConfig:
    """A 1-layer, width-32 GPT on G(2,3,10): trains a step in milliseconds."""
    settings = dict(steps=40, batch_size=32, lr=3e-3, warmup_steps=5, eval_every=10, eval_graphs=64, save_every=20)
    settings.update(train)
    return RunConfig(
        arch="gpt",
        objective=objective,
        preset="test",
        task=TaskConfig(degree=2, path_length=3, num_nodes=10, num_train=512, num_test=128),
        model=GPTConfig(n_layers=1, d_model=32, n_heads=2),
        train=TrainConfig(**settings),
    )


def tiny_mamba_config(**train: object) -> RunConfig:
    """The same task and training as ``tiny_config`` on a 1-layer, width-32 Mamba."""
    raw = tiny_config(**train).to_dict()
    raw["arch"], raw["model"] = "mamba", {"n_layers": 1, "d_model": 32, "d_state": 8}
    return RunConfig.from_dict(raw)
