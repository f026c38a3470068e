"""Hand-built models with known behaviour, for tests of evaluation and analyses."""

from __future__ import annotations

import torch

from workbench.task import GraphSpec


class EdgeFollower(torch.nn.Module):
    """The Clever Hans cheat as a model: at '=' emit the source (or, with ``backwards``, the
    goal); at every later position emit the node joined by an edge to the current input token,
    taking the first such edge in prompt order. Forward it follows the edge out of the token,
    backwards the edge into it. Logits are one-hot."""

    def __init__(self, spec: GraphSpec, backwards: bool = False):
        super().__init__()
        self.spec, self.backwards = spec, backwards

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        spec = self.spec
        batch, pos = tokens.shape
        pairs = tokens[:, : 3 * spec.num_edges].reshape(batch, spec.num_edges, 3)[:, :, :2]
        key, value = (pairs[..., 1], pairs[..., 0]) if self.backwards else (pairs[..., 0], pairs[..., 1])
        predicted = torch.zeros(batch, pos, dtype=torch.long)
        eq = spec.eq_position
        predicted[:, eq] = tokens[:, eq - 1 if self.backwards else eq - 2]
        for t in range(eq + 1, pos):
            match = key == tokens[:, t : t + 1]
            first = match.float().argmax(dim=1)  # first listed edge that matches
            predicted[:, t] = torch.where(match.any(dim=1), value.gather(1, first[:, None])[:, 0], 0)
        return torch.nn.functional.one_hot(predicted, spec.vocab_size).float() * 10
