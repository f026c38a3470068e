"""Masked any-order training on a bidirectional GPT: MLM-U (Kitouni et al. 2024, "The
Factorization Curse", arXiv 2406.05183) and absorbing-state masked diffusion (Sahoo et al.
2024, arXiv 2406.07524; Ye et al. 2024, arXiv 2410.14157 on planning).

The model is the TransformerLens GPT with ``attention_dir="bidirectional"``, so every hook,
cache and patching tool works as on the causal one. Its vocabulary has one token more, the
mask ``[MASK]`` (id N+4); no other objective's vocabulary changes.

Layout: the workbench's own (``Objective``), the output at '=' + k - 1 predicts r_k, with
one slot per answer token: prompt + l slots, slot k (at '=' + k) holding r_k or the mask.
So the output that predicts r_k sits one position before r_k's slot, and its left
neighbour r_{k-1} is the token at its own position. The goal r_l has a slot as in MLM-U's
sequences (its last slot's output predicts nothing): a filled goal sits next to r_{l-1}, so
"r_{l-1} is the node whose edge leads to the token after it" is the same relation at every
slot, and decoding can chain back from the goal. ``goal_slot=false`` is the layout before
2026-11-26 (l-1 slots, the goal never an input), which checkpoints of that time keep. The
clean layout (evaluation's teacher-forced pass, probes, patching) is the all-masked answer:
what the model sees before it fills anything, so teacher-forced accuracy here is one
parallel pass from the all-masked answer.

Training: per sequence t ~ U(0, 1), each of the l answer tokens masked with probability
p = (1 - 1e-3) t + 1e-3 (LLaDA's floor: with p = t exactly, the 1/t weight has infinite
variance). Cross-entropy on the masked tokens only: ``mlm_u`` averages it over the masked
tokens of the batch; ``masked_diffusion`` weights each sequence's by 1/p and divides by
batch * l (the diffusion ELBO's Monte Carlo estimate). All draws come from the trainer's
per-step generator, so resume is exact.

Decoding: from the all-masked answer, l steps of one token each; at each step the model
predicts every still-masked position (the mask token itself is never a candidate) and
``order`` picks which one is filled: ``confidence`` (default) the position whose top
probability is highest, ``left_to_right`` the first masked one. The step at which each
position was filled is evaluation's ``fill_step`` metric (1 = filled first).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from workbench.objectives.base import Batch, LossTerms, Model, Objective, answer_logits, answer_logits_of, check_choice
from workbench.models import logits_of
from workbench.task import GraphSpec, PathStarData

ORDERS = ("confidence", "left_to_right")
MASK = "[MASK]"
RATE_FLOOR = 1e-3  # p = (1 - RATE_FLOOR) t + RATE_FLOOR


@dataclass
class MaskedParams:
    order: str = "confidence"  # decoding: confidence (most confident masked position first) | left_to_right
    goal_slot: bool = True  # the goal r_l has an answer slot (false: l-1 slots, the earlier layout)

    LEGACY = {"goal_slot": False}  # what a saved run without the field meant (config.with_legacy_params)

    def __post_init__(self) -> None:
        check_choice("masked", "order", self.order, ORDERS)


def mask_rates(batch: int, generator: torch.Generator) -> Tensor:
    """(batch,) masking probability p = (1 - floor) t + floor, t ~ U(0, 1) per sequence."""
    return (1 - RATE_FLOOR) * torch.rand(batch, generator=generator) + RATE_FLOOR


class MaskedLanguageModel(Objective):
    """MLM-U: uniform-rate masking, cross-entropy averaged over the masked tokens."""

    name = "mlm_u"
    Params = MaskedParams
    feeds_answer = False  # the clean layout holds masks, not answer tokens
    attention = "bidirectional"
    archs = ("gpt",)  # Mamba is causal
    extra_tokens = (MASK,)

    def mask_id(self, spec: GraphSpec) -> int:
        return spec.vocab_size  # the first (only) extra token

    def slot_count(self, path_length: int) -> int:
        return path_length if self.params.goal_slot else path_length - 1

    def slot_names(self, path_length: int) -> list[str]:
        return [MASK] * self.slot_count(path_length)

    def answer_slots(self, targets: Tensor, spec: GraphSpec) -> Tensor:
        return torch.full_like(targets[:, : self.slot_count(spec.path_length)], self.mask_id(spec))

    def training_batch(self, graphs: PathStarData, generator: torch.Generator) -> Batch:
        spec = graphs.spec
        targets = self.targets(graphs.answer_tokens())
        rate = mask_rates(len(graphs), generator)
        masked = torch.rand(targets.shape, generator=generator) < rate[:, None]  # (batch, l)
        n = self.slot_count(spec.path_length)
        slots = torch.where(masked[:, :n], self.mask_id(spec), targets[:, :n])
        return {"inputs": torch.cat([graphs.prompt_tokens(), slots], dim=1), "targets": targets, "masked": masked, "rate": rate}

    def token_weights(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """(batch, l) weight of each token's cross-entropy in the sum, and the divisor."""
        masked = batch["masked"].float()
        return masked, masked.sum().clamp_min(1.0)

    def loss(self, model: nn.Module, parts: nn.Module | None, batch: Batch, spec: GraphSpec) -> LossTerms:
        logits = answer_logits_of(model, batch["inputs"], spec).float()
        losses = F.cross_entropy(logits.transpose(1, 2), batch["targets"], reduction="none")  # (batch, l)
        weights, divisor = self.token_weights(batch)
        per_term = (losses * weights).sum(0) / divisor  # each position's share of the total
        masked = batch["masked"].float()
        position_loss = (losses * masked).sum(0) / masked.sum(0).clamp_min(1.0)  # mean CE where masked
        terms = {name: per_term[k] for k, name in enumerate(spec.positions)}
        return LossTerms(per_term.sum(), position_loss, terms)

    # --- decoding ----------------------------------------------------------------------------
    @torch.no_grad()
    def decode(self, model: Model, prompt: Tensor, spec: GraphSpec, teacher_forced: tuple[Tensor, Tensor] | None = None) -> Tensor:
        return self.decode_with_order(model, prompt, spec, teacher_forced)[0]

    @torch.no_grad()
    def decode_with_order(self, model: Model, prompt: Tensor, spec: GraphSpec, teacher_forced: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """Iterative unmasking, one token per step (``teacher_forced`` is not used: every
        step after the first sees the model's own fills)."""
        batch, length = prompt.shape[0], spec.path_length
        rows = torch.arange(batch, device=prompt.device)
        n = self.slot_count(length)
        slots = torch.full((batch, n), self.mask_id(spec), dtype=prompt.dtype, device=prompt.device)
        emitted = torch.zeros(batch, length, dtype=prompt.dtype, device=prompt.device)
        fill_step = torch.zeros(batch, length, dtype=torch.long, device=prompt.device)
        for step in range(1, length + 1):
            logits = answer_logits(logits_of(model, torch.cat([prompt, slots], dim=1)), spec)[..., : spec.vocab_size].float()
            confidence, predicted = logits.softmax(-1).max(-1)  # (batch, l)
            open_ = fill_step == 0
            if self.params.order == "confidence":
                chosen = confidence.masked_fill(~open_, -1.0).argmax(-1)
            else:
                chosen = open_.float().argmax(-1)  # the first still-masked position
            emitted[rows, chosen] = predicted[rows, chosen]
            fill_step[rows, chosen] = step
            into_slot = chosen < n  # without goal_slot, r_l has no slot
            slots[rows[into_slot], chosen[into_slot]] = predicted[rows[into_slot], chosen[into_slot]]
        return emitted, fill_step


class MaskedDiffusion(MaskedLanguageModel):
    """Absorbing-state masked diffusion: MLM-U's masking, each masked token's cross-entropy
    weighted 1/p, the sum divided by batch * l."""

    name = "masked_diffusion"

    def token_weights(self, batch: Batch) -> tuple[Tensor, Tensor]:
        masked = batch["masked"].float()
        return masked / batch["rate"][:, None], torch.tensor(float(masked.numel()), device=masked.device)
