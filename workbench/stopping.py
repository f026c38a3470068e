"""When to stop training before the step cap: the plateau rule of the depth study.

A fixed budget cannot tell "this model cannot learn the first decision" from "it has not yet":
on G(2,4,50) a 2-layer Mamba sits at chance on r2 for 2,500 steps while its r2 loss keeps
falling slowly, then learns it. So the rule watches the held-out loss of the first decision
(r2), not its accuracy: training stops when that loss has moved by less than ``min_fall``
(relative) over the last ``window`` steps, falling or rising (a plateau), or once r2 accuracy
reaches ``solved`` (nothing left to learn); ``train.steps`` stays the cap, and the
learning-rate schedule spans the cap whatever the rule does. A loss that rose by more is a
spike, not a plateau, and training goes on: a 3-layer Mamba's r2 loss jumped from 0.99 to 3.96
between two evaluations at lr 4e-3, and an earlier rule ("fallen by less than min_fall") stopped
it there as if it had settled, at an accuracy it had never been at.

The rule is a pure function of ``metrics.jsonl``, so a resumed run stops where an uninterrupted
one did (``first_stop`` replays it over the evaluations a resumed run brings; a run trained past
where the rule stops, under another rule or none, is refused rather than mislabelled).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PlateauRule:
    window: int = 1_000  # steps: compare r2's held-out loss with its value this many steps earlier
    min_fall: float = 0.02  # relative change over the window below which the loss has stopped moving
    solved: float = 0.99  # r2 teacher-forced accuracy at which the first decision counts as learned
    position: str = "r2"

    def __post_init__(self) -> None:
        if not (isinstance(self.window, int) and self.window >= 1):
            raise ValueError(f"plateau window={self.window!r}: expected a number of steps >= 1")
        if not 0 <= self.min_fall < 1:
            raise ValueError(f"plateau min_fall={self.min_fall!r}: expected a relative fall in [0, 1)")
        if not 0 < self.solved <= 1:
            raise ValueError(f"plateau solved={self.solved!r}: expected an accuracy in (0, 1]")

    def check_schedule(self, eval_every: int, where: str) -> None:
        """The rule reads evaluations ``window`` steps apart: they must exist."""
        if self.window % eval_every:
            raise ValueError(f"{where}: plateau window {self.window} is not a multiple of train.eval_every={eval_every}")

    def __call__(self, metrics: list[dict[str, Any]]) -> str | None:
        """"solved", "plateau", "diverged" (a non-finite loss), or None (go on), from the
        evaluations logged so far."""
        if not metrics or "test" not in metrics[-1]:
            return None
        last = metrics[-1]
        if not math.isfinite(last["test"]["tf_loss"][self.position]):
            return "diverged"
        if last["test"]["tf_accuracy"][self.position] >= self.solved:
            return "solved"
        earlier = [m for m in metrics if m["step"] == last["step"] - self.window and "test" in m]
        if not earlier:
            return None
        before, now = earlier[-1]["test"]["tf_loss"][self.position], last["test"]["tf_loss"][self.position]
        return "plateau" if abs(before - now) < self.min_fall * before else None


def first_stop(rule: Callable[[list[dict[str, Any]]], str | None], metrics: list[dict[str, Any]]) -> tuple[int, str] | None:
    """(step, reason) of the first evaluation (after step 0) at which ``rule`` stops training,
    replayed over the metrics logged so far; None if it never does. A resume asks this, not
    only the last evaluation, so that a run trained past where the rule stops is caught."""
    for end, record in enumerate(metrics):
        if record["step"] > 0 and "test" in record:
            reason = rule(metrics[: end + 1])
            if reason:
                return record["step"], reason
    return None
