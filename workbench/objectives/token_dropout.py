"""Token dropout on the teacher-forced answer (Frydenlund 2025, ACL, arXiv 2503.10542).

Training inputs are next_token's with some answer-slot tokens corrupted; the targets stay
clean. With the previous answer token sometimes missing or wrong, following the edge out of
it (the Clever Hans cheat) no longer fits the later tokens, so they must be predicted from
the prompt, which is what r2 needs too. Evaluation and decoding use clean inputs.

- ``mode``: ``dropout`` replaces a corrupted token by the filler '$'; ``replacement`` by a
  node label drawn uniformly from 0..N-1 (it may equal the true one); ``mixed`` picks one of
  the two per token, with equal odds.
- ``masking``: ``independent`` corrupts each slot with probability ``p``; ``span`` corrupts
  one contiguous span per sequence whose length is Binomial(l-1, p) (so the expected share
  is ``p`` in both), starting uniformly where it fits.

All draws come from the trainer's per-step generator, so a resumed run sees the same batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from workbench.objectives.base import Batch, Objective, check_choice, check_range
from workbench.task import GraphSpec, PathStarData

MODES = ("dropout", "replacement", "mixed")
MASKINGS = ("independent", "span")


@dataclass
class TokenDropoutParams:
    p: float = 0.5  # share of answer-slot inputs corrupted
    mode: str = "dropout"  # dropout | replacement | mixed
    masking: str = "independent"  # independent | span

    def __post_init__(self) -> None:
        check_range("token_dropout", "p", self.p, 0.0, 1.0)
        check_choice("token_dropout", "mode", self.mode, MODES)
        check_choice("token_dropout", "masking", self.masking, MASKINGS)


class TokenDropout(Objective):
    name = "token_dropout"
    Params = TokenDropoutParams

    def corruption_mask(self, batch: int, slots: int, generator: torch.Generator) -> Tensor:
        """(batch, slots) bool: which answer-slot inputs are corrupted."""
        p = self.params.p
        if self.params.masking == "independent":
            return torch.rand(batch, slots, generator=generator) < p
        lengths = torch.binomial(torch.full((batch,), float(slots)), torch.full((batch,), p), generator=generator).long()
        starts = (torch.rand(batch, generator=generator) * (slots - lengths + 1)).long()
        index = torch.arange(slots)[None]
        return (index >= starts[:, None]) & (index < (starts + lengths)[:, None])

    def corrupt(self, slots: Tensor, spec: GraphSpec, generator: torch.Generator) -> Tensor:
        """The answer-slot tokens with the corrupted ones replaced as ``mode`` says."""
        mask = self.corruption_mask(*slots.shape, generator)
        filler = torch.full_like(slots, spec.filler)
        random_nodes = torch.randint(0, spec.num_nodes, slots.shape, generator=generator)
        if self.params.mode == "dropout":
            replacement = filler
        elif self.params.mode == "replacement":
            replacement = random_nodes
        else:
            replacement = torch.where(torch.rand(slots.shape, generator=generator) < 0.5, filler, random_nodes)
        return torch.where(mask, replacement, slots)

    def training_batch(self, graphs: PathStarData, generator: torch.Generator) -> Batch:
        spec = graphs.spec
        targets = self.targets(graphs.answer_tokens())
        slots = self.corrupt(self.answer_slots(targets, spec), spec, generator)
        return {"inputs": torch.cat([graphs.prompt_tokens(), slots], dim=1), "targets": targets}
