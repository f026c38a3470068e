"""The paper's objectives (next_token, teacherless, reverse) and the first_decision_only
experiment: they differ only in the layout of the sequence and which positions carry loss."""

from __future__ import annotations

import torch
from torch import Tensor

from workbench.objectives.base import Model, Objective, answer_logits
from workbench.models import logits_of
from workbench.task import GraphSpec


class NextToken(Objective):
    """Teacher forcing: the paper's failing baseline."""


class Reverse(Objective):
    """The answer is emitted goal first; the path is then a chain of unique back-edges."""

    name = "reverse"

    def targets(self, answer: Tensor) -> Tensor:
        return answer.flip(1)

    def to_path_order(self, emitted: Tensor) -> Tensor:
        return emitted.flip(1)


class Teacherless(Objective):
    """Answer slots hold the filler '$'; all l tokens are predicted in one parallel pass."""

    name = "teacherless"
    feeds_answer = False

    def answer_slots(self, targets: Tensor, spec: GraphSpec) -> Tensor:
        return torch.full_like(targets[:, :-1], spec.filler)

    @torch.no_grad()
    def decode(self, model: Model, prompt: Tensor, spec: GraphSpec, teacher_forced: tuple[Tensor, Tensor] | None = None) -> Tensor:
        if teacher_forced is not None:  # its teacher-forced pass is the free-running pass
            return teacher_forced[1]
        slots = torch.full((prompt.shape[0], spec.path_length - 1), spec.filler, dtype=prompt.dtype, device=prompt.device)
        return answer_logits(logits_of(model, torch.cat([prompt, slots], dim=1)), spec).argmax(dim=-1)


class FirstDecisionOnly(Objective):
    """next_token's inputs, but only the first decision r2 carries loss.

    An experiment, not a remedy: with the later tokens out of the loss, nothing can be fitted
    by the Clever Hans cheat, so it asks whether r2 is learnable once only r2 is supervised.
    """

    name = "first_decision_only"

    def loss_mask(self, spec: GraphSpec) -> Tensor:
        mask = torch.zeros(spec.path_length, dtype=torch.bool)
        mask[1] = True
        return mask
