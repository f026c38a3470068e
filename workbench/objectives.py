"""Training objectives: how (prompt, answer) becomes model inputs, targets and a loss mask,
and how a trained model's answer is decoded. See ``workbench.task`` for one graph laid out
under every objective.

Every objective uses the same sequence layout, so that models, hooks and probes never need
to know which one trained them: ``inputs = prompt + (l - 1) answer-slot tokens`` and the
logits at positions ``eq_position .. eq_position + l - 1`` predict the l targets. An
objective only chooses what goes into the answer slots, in which order the answer is
emitted, which targets carry loss, and how to decode. Targets and predictions are kept in
*emission order* inside an objective; ``to_path_order`` maps them back to r1..rl so that
every metric is reported in forward path order.

Adding an objective is one new subclass here plus its line in ``OBJECTIVES``.
"""

from __future__ import annotations

from typing import Callable, ClassVar

import torch
from jaxtyping import Float, Int
from torch import Tensor

from workbench.task import GraphSpec

Model = Callable[[Tensor], Tensor]  # tokens (batch, pos) -> logits (batch, pos, d_vocab)


def answer_logits(logits: Float[Tensor, "batch pos d_vocab"], spec: GraphSpec) -> Float[Tensor, "batch l d_vocab"]:
    """The logits that predict the l answer targets (those at '=' and the l-1 slots after it)."""
    start = spec.eq_position
    return logits[:, start : start + spec.path_length]


class Objective:
    """Next-token prediction with teacher forcing: the base every objective refines."""

    name: ClassVar[str] = "next_token"
    feeds_answer: ClassVar[bool] = True  # whether answer tokens are model inputs (teacher forcing)

    def targets(self, answer: Int[Tensor, "batch l"]) -> Int[Tensor, "batch l"]:
        """The answer in the order the model emits it."""
        return answer

    def to_path_order(self, emitted: Tensor) -> Tensor:
        """Inverse of ``targets`` along dim 1: emission order -> r1..rl."""
        return emitted

    def emitted_positions(self, path_length: int) -> list[str]:
        """Path-order name (r1..rl) of each token in emission order (reverse: rl first)."""
        order = self.to_path_order(torch.arange(1, path_length + 1)[None])[0]
        return [f"r{k}" for k in order.tolist()]

    def answer_slots(self, targets: Int[Tensor, "batch l"], spec: GraphSpec) -> Int[Tensor, "batch l_minus_1"]:
        """Tokens fed after '=': the previous targets under teacher forcing."""
        return targets[:, :-1]

    def loss_mask(self, spec: GraphSpec) -> Tensor:
        """(l,) bool in emission order: which targets carry training loss."""
        return torch.ones(spec.path_length, dtype=torch.bool)

    def inputs(self, prompt: Int[Tensor, "batch p"], targets: Int[Tensor, "batch l"], spec: GraphSpec) -> Tensor:
        return torch.cat([prompt, self.answer_slots(targets, spec)], dim=1)

    @torch.no_grad()
    def decode(
        self,
        model: Model,
        prompt: Int[Tensor, "batch p"],
        spec: GraphSpec,
        teacher_forced: tuple[Tensor, Tensor] | None = None,
    ) -> Int[Tensor, "batch l"]:
        """Greedy free-running decoding; returns tokens in emission order.

        ``teacher_forced`` = (targets, teacher-forced argmax), both in emission order, lets
        rows whose greedy prefix still equals the targets reuse the teacher-forced prediction:
        the model is causal, so its inputs, and hence its output, are the same there. Only
        rows that have left the target path are run again, which makes evaluation of a
        model that fails at r2 about twice as fast.
        """
        batch = prompt.shape[0]
        emitted = torch.empty(batch, spec.path_length, dtype=prompt.dtype, device=prompt.device)
        for k in range(spec.path_length):
            if teacher_forced is None:
                rerun = torch.ones(batch, dtype=torch.bool, device=prompt.device)
            else:
                targets, tf_pred = teacher_forced
                rerun = (emitted[:, :k] != targets[:, :k]).any(dim=1)
                emitted[:, k] = tf_pred[:, k]
            if rerun.any():
                tokens = torch.cat([prompt[rerun], emitted[rerun, :k]], dim=1)
                emitted[rerun, k] = model(tokens)[:, -1].argmax(dim=-1)
        return emitted


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
        return answer_logits(model(torch.cat([prompt, slots], dim=1)), spec).argmax(dim=-1)


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


OBJECTIVES: dict[str, Objective] = {cls.name: cls() for cls in (NextToken, Teacherless, Reverse, FirstDecisionOnly)}


def get_objective(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; expected one of {sorted(OBJECTIVES)}")
    return OBJECTIVES[name]
