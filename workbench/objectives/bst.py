"""The Belief State Transformer (Hu et al. 2024, arXiv 2410.23506), for GPT and Mamba.

Two encoders of the run's arch: the forward one is the hooked model itself (F_t: its final
normed residual stream at t, reading x_0..x_t); the backward one (``parts["backward"]``, a
second model of the same config, its own seed) reads the suffix x_k..x_end reversed, after an
end marker, so B_k is its final normed residual stream at the token x_k and B_end (the empty
suffix) its output at the marker alone. The marker is the filler '$', which no answer holds,
so the vocabulary is the task's. A head on [F_t; B_k] (k - t >= 2) predicts x_{t+1} (next)
and x_{k-1} (previous). Since x_{t+1} and x_{k-1} lie between the prefix and the suffix,
F_t must carry what any suffix needs to be continued backwards: a belief state.

Pairs are restricted to the answer span: t from '=' to the slot of r_{l-1} (the positions
whose next token is an answer token) and k from r2's position to the end (empty suffix), so
the backward encoder reads only answer tokens (one pass over l tokens) and there are
l(l+1)/2 pairs. On the G(2,3) example (positions: '=' 14, r1 15, r2 16, r3 17, end 18)::

    (t, k)      (14,16) (14,17) (14,18) (15,17) (15,18) (16,18)
    next x_t+1     5       5       5       2       2       8
    prev x_k-1     5       2       8       2       8       8

Choice: with the empty suffix, B_end is a constant, so any head on [F_t; B_end] is a
function of F_t alone; the next-token output there is the forward model's own final norm and
unembedding (every other (pair, output) goes through the head, an MLP). So the hooked forward
model, by itself, is BST's greedy decoder with the backward encoder on the empty suffix:
decoding, evaluation, probes, patching and the cheat test read it unchanged. The loss is the
mean over pairs of both cross-entropies; its terms are r1..rl (next token on the empty
suffix), ``next`` (next token on the other suffixes) and ``prev``.

Cost: every t is an answer position, so the forward model computes its last block and head
at the answer rows alone, as next_token does. On top come the backward encoder (l tokens)
and the head over l(l+1)/2 pairs (15 on G(2,5,50); its first layer once per state,
``BeliefHead.pairs``): work that does not shrink with the rows next_token skips, 1.42x
next_token's arithmetic per step, and about 1.6x its step time on the cpu preset
(``benchmarks/trainer_step.py --flops``). The backward
encoder's own unembedding is unused (it gets no gradient).

Hooks: the forward encoder's are the model's own names; the backward encoder is a hooked
model too (``parts["backward"].run_with_cache(tokens)``, same names), but ``workbench
probe`` and the patching analysis address the forward encoder only.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from workbench.models import final_norm, forward_with_residual
from workbench.objectives.base import Batch, LossTerms, Objective
from workbench.task import GraphSpec


def belief_pairs(spec: GraphSpec) -> list[tuple[int, int]]:
    """(t, k) sequence positions of the trained pairs: t in '=' .. slot of r_{l-1}, k in
    r2 .. end (prompt_length + l, the empty suffix), k - t >= 2."""
    eq, end = spec.eq_position, spec.prompt_length + spec.path_length
    return [(t, k) for t in range(eq, eq + spec.path_length) for k in range(t + 2, end + 1)]


def pair_targets(inputs: Tensor, targets: Tensor, spec: GraphSpec) -> tuple[Tensor, Tensor]:
    """(batch, pairs) each: x_{t+1} and x_{k-1} of every pair of ``belief_pairs``, read from the
    whole sequence (the teacher-forced inputs and the last answer token)."""
    sequence = torch.cat([inputs, targets[:, -1:]], dim=1)
    pairs = belief_pairs(spec)
    return sequence[:, [t + 1 for t, _ in pairs]], sequence[:, [k - 1 for _, k in pairs]]


def backward_tokens(answer: Tensor, spec: GraphSpec) -> Tensor:
    """(batch, l): the backward encoder's input, '$' then r_l, r_{l-1}, .., r2; its output at
    index i is B_k for k = prompt_length + l - i (i = 0: the empty suffix)."""
    marker = torch.full_like(answer[:, :1], spec.filler)
    return torch.cat([marker, answer[:, 1:].flip(1)], dim=1)


class BeliefHead(nn.Module):
    """[F_t; B_k] -> (next logits, previous logits)."""

    def __init__(self, d_model: int, d_vocab: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * d_model, 4 * d_model), nn.GELU())
        self.next = nn.Linear(4 * d_model, d_vocab)
        self.prev = nn.Linear(4 * d_model, d_vocab)

    def forward(self, forward_state: Tensor, backward_state: Tensor) -> tuple[Tensor, Tensor]:
        hidden = self.mlp(torch.cat([forward_state, backward_state], dim=-1))
        return self.next(hidden), self.prev(hidden)

    def pairs(self, forward_states: Tensor, backward_states: Tensor, t_index: Tensor, k_index: Tensor) -> tuple[Tensor, Tensor]:
        """``forward(forward_states[:, t_index], backward_states[:, k_index])`` for many pairs
        of few states: the first layer on [F; B] is W_F F + W_B B + b, so each state goes
        through its half once and the pairs add the results (l + l rows instead of l(l+1)/2
        pairs; equal up to rounding)."""
        first = self.mlp[0]
        w_forward, w_backward = first.weight.split(forward_states.shape[-1], dim=1)
        from_forward = forward_states @ w_forward.t()
        from_backward = torch.addmm(first.bias, backward_states.flatten(0, 1), w_backward.t()).view(*backward_states.shape[:2], -1)
        hidden = self.mlp[1](from_forward[:, t_index] + from_backward[:, k_index])
        return self.next(hidden), self.prev(hidden)


class ModelParts(nn.ModuleDict):
    """Objective parts that hold whole models: each child's state dict in its own names.

    A TransformerLens bridge names its weights cleanly in its own ``state_dict`` (22 tensors for
    a 1-layer GPT); nested in a plain ``ModuleDict`` it would be saved through PyTorch's
    recursion, which also writes every ``_original_component`` alias of the same tensors (62
    for that model, over four times the bytes). Checkpoints saved before this class hold those
    aliases; ``load_legacy_state_dict`` reads them."""

    def state_dict(self, *args, destination=None, prefix: str = "", keep_vars: bool = False):
        state = {} if destination is None else destination
        for name, child in self.items():
            for key, value in child.state_dict(keep_vars=keep_vars).items():
                state[f"{prefix}{name}.{key}"] = value
        return state

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        unknown = sorted({key.split(".", 1)[0] for key in state_dict} - set(self))
        if unknown:
            raise KeyError(f"unexpected parts {unknown}; expected {sorted(self)}")
        for name, child in self.items():
            child.load_state_dict({k[len(name) + 1:]: v for k, v in state_dict.items() if k.startswith(name + ".")}, strict=strict)

    def load_legacy_state_dict(self, state_dict) -> None:
        """A state dict saved through PyTorch's recursion (aliases included)."""
        nn.Module.load_state_dict(self, state_dict, strict=True)


class BeliefStateTransformer(Objective):
    name = "bst"

    def build_run_parts(self, model: nn.Module, spec: GraphSpec, new_model: Callable[[], nn.Module]) -> nn.Module:
        backward = new_model()  # same arch and config, its own init
        return ModelParts({"backward": backward, "head": BeliefHead(model.cfg.d_model, self.vocab_size(spec))})

    def loss(self, model: nn.Module, parts: nn.Module, batch: Batch, spec: GraphSpec) -> LossTerms:
        inputs, targets = batch["inputs"], batch["targets"]
        eq = spec.eq_position  # every t of a pair is an answer position: the forward model runs those rows alone
        logits, resid, _ = forward_with_residual(model, inputs, first=eq)
        forward_states = final_norm(model, resid)  # (batch, l, d_model): F_t at index t - eq
        _, back_resid, _ = forward_with_residual(parts["backward"], backward_tokens(targets, spec))
        backward_states = final_norm(parts["backward"], back_resid)  # (batch, l, d_model)

        pairs, end = belief_pairs(spec), spec.prompt_length + spec.path_length
        device = inputs.device
        t_index = torch.tensor([t - eq for t, _ in pairs], device=device)
        k_index = torch.tensor([k for _, k in pairs], device=device)
        next_logits, prev_logits = parts["head"].pairs(forward_states, backward_states, t_index, end - k_index)
        next_targets, prev_targets = pair_targets(inputs, targets, spec)
        next_loss = F.cross_entropy(next_logits.float().transpose(1, 2), next_targets, reduction="none").mean(0)  # (pairs,)
        prev_loss = F.cross_entropy(prev_logits.float().transpose(1, 2), prev_targets, reduction="none").mean(0)
        # the empty suffix's next token: the forward model's own logits (see the module docstring)
        position_loss = F.cross_entropy(logits[:, : spec.path_length].float().transpose(1, 2), targets, reduction="none").mean(0)  # (l,)
        count = len(pairs)
        terms = {name: position_loss[j] / count for j, name in enumerate(spec.positions)}
        terms["next"] = next_loss[k_index != end].sum() / count
        terms["prev"] = prev_loss.sum() / count
        return LossTerms(sum(terms.values()), position_loss, terms)
