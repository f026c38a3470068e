"""Next-token prediction plus next-latent prediction (Teoh et al. 2025, arXiv 2511.05963).

A transition MLP predicts the next position's final hidden state from the current one and
the next token's embedding: h'_{t+1} = h_t + MLP([h_t; e(x_{t+1})]). It is trained with a
smooth-L1 loss to the stop-gradient h_{t+1} and with the KL divergence from the model's own
stop-gradient next distribution at t+1 to the unembedding of h'_{t+1}. With ``horizon`` H > 1
the transition is rolled out H steps from each h_t on its own predictions (the loss of each
step averaged). The trunk is thereby pushed to make h_t a state from which the future
follows by a learned dynamics: a belief state rather than a lookup. Decoding is greedy; the
MLP is unused there.

Choices: h is the last layer's residual stream before the final norm; e is the model's token
embedding (``hook_embed``); the transitions start at every position from '=' on whose next
token is an input (the answer span, where next_token's loss is too); the KL goes through the
model's own final norm and unembedding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from workbench.models import forward_with_residual, residual_to_logits
from workbench.objectives.base import Batch, LossTerms, Objective, check_range
from workbench.task import GraphSpec


@dataclass
class NextLatParams:
    latent_weight: float = 1.0  # smooth-L1 to the next hidden state
    kl_weight: float = 1.0  # KL to the next distribution
    horizon: int = 1  # transition steps rolled out from each position

    def __post_init__(self) -> None:
        check_range("nextlat", "latent_weight", self.latent_weight, 0.0)
        check_range("nextlat", "kl_weight", self.kl_weight, 0.0)
        check_range("nextlat", "horizon", self.horizon, 1)


class Transition(nn.Module):
    """Residual MLP: (h_t, e_{t+1}) -> h'_{t+1}."""

    def __init__(self, d_model: int):
        super().__init__()
        self.norm = nn.LayerNorm(2 * d_model)
        self.mlp = nn.Sequential(nn.Linear(2 * d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))

    def forward(self, hidden: Tensor, next_embed: Tensor) -> Tensor:
        return hidden + self.mlp(self.norm(torch.cat([hidden, next_embed], dim=-1)))


class NextLatentPrediction(Objective):
    name = "nextlat"
    Params = NextLatParams

    def build_parts(self, d_model: int, spec: GraphSpec) -> nn.Module:
        if self.params.horizon > spec.path_length - 1:
            raise ValueError(f"objective.horizon={self.params.horizon} (nextlat): the answer span has {spec.path_length - 1} transitions; expected horizon <= {spec.path_length - 1}")
        return nn.ModuleDict({"transition": Transition(d_model)})

    def loss(self, model: nn.Module, parts: nn.Module, batch: Batch, spec: GraphSpec) -> LossTerms:
        start, length = spec.eq_position, batch["inputs"].shape[1]
        # logits and residual of positions '=' .. the last input alone (index 0 is '=')
        logits, resid, embed = forward_with_residual(model, batch["inputs"], embed=True, first=start)
        out = self.next_token_terms(logits[:, : spec.path_length].float(), batch["targets"], spec)
        target_hidden, target_logp = resid.detach(), logits.detach().float().log_softmax(-1)
        latent, kl, count = 0.0, 0.0, 0
        predicted = resid[:, : length - 1 - start]  # h_t for t = '=' .. second-to-last input
        for step in range(1, self.params.horizon + 1):
            first, n = start + step, predicted.shape[1]  # the position the first rolled-out state stands for
            predicted = parts["transition"](predicted, embed[:, first : first + n])
            latent = latent + F.smooth_l1_loss(predicted, target_hidden[:, step : step + n])
            pred_logp = residual_to_logits(model, predicted).float().log_softmax(-1)
            kl = kl + F.kl_div(pred_logp, target_logp[:, step : step + n], log_target=True, reduction="none").sum(-1).mean()
            count += 1
            predicted = predicted[:, :-1]  # the last state has no next input to roll on
        latent, kl = latent / count * self.params.latent_weight, kl / count * self.params.kl_weight
        return LossTerms(out.total + latent + kl, out.position_loss, {**out.terms, "latent": latent, "kl": kl})
