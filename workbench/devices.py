"""Where models run: one rule for every command and function.

``auto``, the default everywhere (training, evaluation, probes, patching, ``workbench.load``),
is the first CUDA device where there is one, else the CPU. Any of ``DEVICES`` may be given
instead (``--device``, ``--set train.device=...``, a probe spec's ``device``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported on use: the config and the CLI's parser stay light
    import torch

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?|mps")


def check_device(name: str, where: str) -> str:
    """``name`` if it is a device this rule accepts, else a ValueError naming ``where``."""
    if not isinstance(name, str) or not DEVICE_PATTERN.fullmatch(name):
        raise ValueError(f"{where}={name!r}: expected one of {', '.join(DEVICES)}")
    return name


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """The torch device ``name`` means here (``auto``: CUDA where available, else the CPU)."""
    import torch

    if isinstance(name, torch.device):
        return name
    if check_device(name, "device") == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
