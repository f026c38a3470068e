"""Next-token prediction plus a bag of the future (Mahajan et al. 2025, arXiv 2510.14751).

At each position that predicts an answer token, a linear head on the final normalised
residual stream also predicts the *set* of answer tokens after the next one (a multi-hot
vector over the N node labels, binary cross-entropy). At '=' that set is r2..rl: the goal's
arm, which a model can only know by planning; at the slot before the goal it is empty and
carries no loss. Decoding is greedy; the head is unused there.

Choices: the bag excludes the next token (the next-token loss already asks for it); the
loss sums the binary cross-entropy over the N labels and averages over graphs and
positions, times ``weight``; the head's bias starts at the prior log-odds of a label being
in a bag, so the auxiliary loss starts near its floor instead of at N ln 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from workbench.models import final_norm, forward_with_residual
from workbench.objectives.base import Batch, LossTerms, Objective, check_range
from workbench.task import GraphSpec


@dataclass
class FutureBowParams:
    weight: float = 1.0  # weight of the bag-of-words loss

    def __post_init__(self) -> None:
        check_range("future_bow", "weight", self.weight, 0.0)


def future_bags(targets: Tensor, num_nodes: int) -> Tensor:
    """(batch, l-1, N) multi-hot: at emission step e, the answer tokens e+1..l-1 (emission order)."""
    batch, length = targets.shape
    bags = torch.zeros(batch, length - 1, num_nodes, device=targets.device)
    for e in range(length - 1):
        bags[:, e].scatter_(1, targets[:, e + 1 :], 1.0)
    return bags


class FutureBagOfWords(Objective):
    name = "future_bow"
    Params = FutureBowParams

    def build_parts(self, d_model: int, spec: GraphSpec) -> nn.Module:
        head = nn.Linear(d_model, spec.num_nodes)
        nn.init.normal_(head.weight, std=0.02)
        prior = spec.path_length / 2 / spec.num_nodes  # bags hold l-1, l-2, ..., 1 tokens: l/2 of N on average
        nn.init.constant_(head.bias, math.log(prior / (1 - prior)))
        return nn.ModuleDict({"bow_head": head})

    def loss(self, model: nn.Module, parts: nn.Module, batch: Batch, spec: GraphSpec) -> LossTerms:
        # logits and residual of the answer positions alone: '=' and the l-1 slots after it
        logits, resid, _ = forward_with_residual(model, batch["inputs"], first=spec.eq_position)
        out = self.next_token_terms(logits[:, : spec.path_length].float(), batch["targets"], spec)
        bow_logits = parts["bow_head"](final_norm(model, resid[:, : spec.path_length - 1])).float()  # the last bag is empty
        bags = future_bags(batch["targets"], spec.num_nodes)
        bow = F.binary_cross_entropy_with_logits(bow_logits, bags, reduction="none").sum(-1).mean() * self.params.weight
        return LossTerms(out.total + bow, out.position_loss, {**out.terms, "bow": bow})
