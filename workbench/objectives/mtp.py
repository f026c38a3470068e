"""Multi-token prediction (Gloeckle et al. 2024, arXiv 2404.19737).

The model is the shared trunk; its own unembedding is the next-token head. Each extra head
o = 2..k is one causal transformer block on the trunk's final residual stream whose output
goes through the model's own final norm and unembedding (shared, as in the paper) and
predicts the token o ahead. Every head is trained on every answer token it can reach: head o
predicts answer token e from position ``prompt_length + e - o``, so head 2 predicts r2 from
'=' itself, where no given answer token offers a shortcut. The loss is the sum of the
next-token loss and ``head_weight`` times each extra head's mean loss (the paper sums them).
Decoding is greedy with the next-token head; the extra heads are unused there, but evaluation
scores each of them on the answer tokens it predicts (``head{o}_accuracy``).

Choices the paper leaves open here: the extra heads are ``nn.TransformerEncoderLayer`` blocks
(pre-norm, GELU, 4x MLP, heads of width 32) for GPT and Mamba alike, so one objective serves
both archs; their targets are answer tokens only (prompt tokens are never targets in this
workbench).

Cost: each extra head is a transformer block as wide as a trunk layer. Only the l rows a
head is read at are computed in training (``CausalBlock.rows``: queries, attention output
and MLP there, keys and values at every row they read), but the trunk must run every row
in full, since its final residual is the heads' keys: on the 2-layer cpu preset a step is
about twice next_token's, whose last block computes only the answer rows
(``benchmarks/trainer_step.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from workbench.models import forward_with_residual, residual_to_logits
from workbench.objectives.base import Batch, LossTerms, Objective, answer_logits, check_range
from workbench.task import GraphSpec


@dataclass
class MTPParams:
    k: int = 3  # tokens predicted at each position: the next one and k-1 more
    head_weight: float = 1.0  # weight of each extra head's loss

    def __post_init__(self) -> None:
        check_range("mtp", "k", self.k, 2)
        check_range("mtp", "head_weight", self.head_weight, 0.0)


class CausalBlock(nn.Module):
    """One pre-norm causal transformer block on the residual stream."""

    def __init__(self, d_model: int):
        super().__init__()
        heads = max(1, d_model // 32)
        self.layer = nn.TransformerEncoderLayer(
            d_model, heads, dim_feedforward=4 * d_model, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )

    def forward(self, resid: Tensor) -> Tensor:
        mask = nn.Transformer.generate_square_subsequent_mask(resid.shape[1], device=resid.device, dtype=resid.dtype)
        return self.layer(resid, src_mask=mask, is_causal=True)

    def rows(self, resid: Tensor, start: int, stop: int) -> Tensor:
        """``forward(resid)[:, start:stop]``, computing queries, attention output and MLP at
        those rows alone (keys and values at rows < stop: all that a causal query there
        reads); equal to the full block's rows up to rounding (tests/test_remedies.py, the mtp
        loss against the full heads)."""
        layer = self.layer
        normed = layer.norm1(resid[:, :stop])
        mask = nn.Transformer.generate_square_subsequent_mask(stop, device=resid.device, dtype=resid.dtype)[start:stop]
        attended = layer.self_attn(normed[:, start:stop], normed, normed, attn_mask=mask, need_weights=False)[0]
        x = resid[:, start:stop] + layer.dropout1(attended)
        return x + layer.dropout2(layer.linear2(layer.dropout(layer.activation(layer.linear1(layer.norm2(x))))))


class MultiTokenPrediction(Objective):
    name = "mtp"
    Params = MTPParams

    def build_parts(self, d_model: int, spec: GraphSpec) -> nn.Module:
        if self.params.k > spec.path_length:
            raise ValueError(f"objective.k={self.params.k} (mtp): a G(.,{spec.path_length}) answer has {spec.path_length} tokens; expected k <= {spec.path_length}")
        return nn.ModuleDict({f"head{offset}": CausalBlock(d_model) for offset in self.offsets})

    @property
    def offsets(self) -> range:
        return range(2, self.params.k + 1)

    def head_positions(self, offset: int, spec: GraphSpec) -> slice:
        """Positions whose head-``offset`` output predicts answer tokens r1..rl (emission order)."""
        start = spec.prompt_length - offset
        return slice(start, start + spec.path_length)

    def head_logits(self, model: nn.Module, parts: nn.Module, resid: Tensor, spec: GraphSpec) -> dict[int, Tensor]:
        """{o: (batch, l, d_vocab) head o's logits for r1..rl}, from the trunk's final residual
        (each head computes only the rows it is read at)."""
        logits = {}
        for offset in self.offsets:
            rows = self.head_positions(offset, spec)
            logits[offset] = residual_to_logits(model, parts[f"head{offset}"].rows(resid, rows.start, rows.stop)).float()
        return logits

    def loss(self, model: nn.Module, parts: nn.Module, batch: Batch, spec: GraphSpec) -> LossTerms:
        logits, resid, _ = forward_with_residual(model, batch["inputs"])
        out = self.next_token_terms(answer_logits(logits, spec).float(), batch["targets"], spec)
        total, terms = out.total, dict(out.terms)
        for offset, head_logits in self.head_logits(model, parts, resid, spec).items():
            head_loss = F.cross_entropy(head_logits.transpose(1, 2), batch["targets"]) * self.params.head_weight
            terms[f"head{offset}"] = head_loss
            total = total + head_loss
        return LossTerms(total, out.position_loss, terms)

    @torch.no_grad()
    def head_predictions(self, model: nn.Module, parts: nn.Module | None, inputs: Tensor, spec: GraphSpec) -> dict[str, Tensor]:
        """{"head{o}": (batch, l) argmax of head o for r1..rl}: head o's guess at answer token
        e is read at position ``prompt_length + e - 1 - o`` (head 2's r2 at '=')."""
        if parts is None:
            raise ValueError("mtp: the extra heads are the objective's parts; pass the checkpoint's parts")
        _, resid, _ = forward_with_residual(model, inputs)
        return {f"head{o}": logits.argmax(-1) for o, logits in self.head_logits(model, parts, resid, spec).items()}
