"""The objective as one unit: everything that differs between training objectives.

An objective decides, in one class:

- its typed parameters (``Params``, a dataclass stored in config.json as ``objective_params``
  and set with ``--set objective.k=4``; ``__post_init__`` rejects bad values by field name);
- the **layout** of a teacher-forced sequence, which evaluation, probes and analyses read:
  ``inputs = prompt + slot_count(l) answer-slot tokens`` (l - 1: the last answer token is
  never an input; the masked objectives give the goal a slot too, so l) and the logits at
  positions ``eq_position .. eq_position + l - 1`` predict the l targets (``targets``, in
  *emission order*; ``to_path_order`` maps them back to r1..rl). Slot k sits at
  ``eq_position + k`` under every objective, so hooks and probes never need to know which
  one trained a model;
- how a **training batch** is built from graphs (``training_batch``), with any randomness
  drawn from the generator the trainer seeds by (run seed, step), so a resumed run is
  bit-identical to an uninterrupted one;
- extra **tokens** of its own (``extra_tokens``: the mask token of the masked objectives),
  given ids after the task's vocabulary (N+4, ...), so other objectives' vocabularies, and
  hence their weights, are untouched;
- its **loss** (``loss``): the scalar optimised, the per-position cross-entropy r1..rl that
  training logs, and ``terms``, named scalars summing to the total (trained positions and
  auxiliary terms), which the supervision analysis splits the gradient by;
- **extra trainable parts** (``build_parts``: heads, a transition MLP; ``build_run_parts``
  for parts that need the whole run config, such as a second encoder of the model's arch), optimised with it and saved in model.safetensors under ``objective.``;
- the **attention** it needs (``causal`` here; bidirectional objectives say so);
- **decoding** at evaluation (``decode``; greedy by default; ``decode_with_order`` also says
  at which step each answer token was filled, for objectives that do not decode left to right).

Adding an objective is one new module (or class) in this package plus its line in
``workbench.objectives.REGISTRY``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from workbench.models import logits_of
from workbench.task import GraphSpec, PathStarData

Model = Callable[[Tensor], Tensor]  # tokens (batch, pos) -> logits (batch, pos, d_vocab)
Batch = dict[str, Tensor]  # what ``training_batch`` gives and ``loss`` reads: at least inputs, targets


def answer_logits(logits: Float[Tensor, "batch pos d_vocab"], spec: GraphSpec) -> Float[Tensor, "batch l d_vocab"]:
    """The logits that predict the l answer targets (those at '=' and the l-1 slots after it)."""
    start = spec.eq_position
    return logits[:, start : start + spec.path_length]


def answer_logits_of(model: nn.Module, inputs: Int[Tensor, "batch pos"], spec: GraphSpec) -> Float[Tensor, "batch l d_vocab"]:
    """``answer_logits(model(inputs))`` computed for the answer positions alone where the
    model allows (``logits_of``'s ``first``): what a loss that reads only them calls."""
    return logits_of(model, inputs, first=spec.eq_position)[:, : spec.path_length]


def step_generator(seed: int, step: int) -> torch.Generator:
    """The generator of an objective's per-step randomness: a pure function of (seed, step)."""
    return torch.Generator().manual_seed(1_000_000_007 * (seed + 1) + step)


@dataclass
class NoParams:
    """An objective without parameters."""


@dataclass
class LossTerms:
    """What one training step of an objective computes.

    ``total`` is optimised. ``position_loss`` (l,) is the mean cross-entropy of each answer
    position in path order r1..rl, logged for every position, trained or not. ``terms`` are
    named scalars whose sum is ``total``: ``r1..rl`` for the trained positions (with their
    weight in the total) and the objective's auxiliary terms (e.g. ``head2``, ``bow``).
    """

    total: Tensor
    position_loss: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)

    @property
    def aux(self) -> dict[str, Tensor]:
        """The auxiliary terms (every term that is not an answer position)."""
        return {name: value for name, value in self.terms.items() if not (name[0] == "r" and name[1:].isdigit())}


class Objective:
    """Next-token prediction with teacher forcing: the base every objective refines."""

    name: ClassVar[str] = "next_token"
    Params: ClassVar[type] = NoParams
    feeds_answer: ClassVar[bool] = True  # whether answer tokens are model inputs (teacher forcing)
    attention: ClassVar[str] = "causal"  # or "bidirectional"
    archs: ClassVar[tuple[str, ...]] = ("gpt", "mamba")  # architectures it applies to
    extra_tokens: ClassVar[tuple[str, ...]] = ()  # its own tokens, ids spec.vocab_size + i

    def __init__(self, params: Any = None) -> None:
        self.params = self.Params() if params is None else params
        if not isinstance(self.params, self.Params):
            raise ValueError(f"objective {self.name!r} takes {self.Params.__name__}, got {type(self.params).__name__}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params})"

    def vocab_size(self, spec: GraphSpec) -> int:
        """The model's vocabulary: the task's N+4 tokens and the objective's own after them."""
        return spec.vocab_size + len(self.extra_tokens)

    def tokenizer(self, spec: GraphSpec) -> dict[str, Any]:
        """Token names to ids (config.json's ``tokenizer``)."""
        names = {"nodes": f"0..{spec.num_nodes - 1}", "|": spec.edge_sep, "=": spec.eq, "/": spec.slash, "$": spec.filler}
        return names | {token: spec.vocab_size + i for i, token in enumerate(self.extra_tokens)}

    # --- layout: what evaluation, probes and analyses read ---------------------------------
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

    def slot_count(self, path_length: int) -> int:
        """How many answer slots follow '=' (l-1: the last answer token is predicted, never fed)."""
        return path_length - 1

    def slot_names(self, path_length: int) -> list[str]:
        """What each of the ``slot_count`` answer slots holds in the clean layout (probes' ``input_token``)."""
        return self.emitted_positions(path_length)[:-1] if self.feeds_answer else ["$"] * (path_length - 1)

    def answer_slots(self, targets: Int[Tensor, "batch l"], spec: GraphSpec) -> Int[Tensor, "batch l_minus_1"]:
        """Tokens fed after '=': the previous targets under teacher forcing."""
        return targets[:, :-1]

    def loss_mask(self, spec: GraphSpec) -> Tensor:
        """(l,) bool in emission order: which targets carry the next-token loss."""
        return torch.ones(spec.path_length, dtype=torch.bool)

    def inputs(self, prompt: Int[Tensor, "batch p"], targets: Int[Tensor, "batch l"], spec: GraphSpec) -> Tensor:
        """The clean teacher-forced sequence (what evaluation and probes feed)."""
        return torch.cat([prompt, self.answer_slots(targets, spec)], dim=1)

    def head_predictions(self, model: nn.Module, parts: nn.Module | None, inputs: Tensor, spec: GraphSpec) -> dict[str, Tensor]:
        """{head: (batch, l) argmax for the answer tokens, emission order} of the objective's
        extra prediction heads, under teacher forcing; empty for objectives without any.
        Evaluation scores them beside the answer (``head{o}_accuracy``), because a head can
        know a token before the answer that is decoded does."""
        return {}

    # --- training ----------------------------------------------------------------------------
    def build_parts(self, d_model: int, spec: GraphSpec) -> nn.Module | None:
        """Trainable parts of the objective's own (None: it trains the model alone)."""
        return None

    def build_run_parts(self, model: nn.Module, spec: GraphSpec, new_model: Callable[[], nn.Module]) -> nn.Module | None:
        """The parts for a run: ``build_parts`` from the model's width, unless an objective
        needs a second model of the run's arch and config, which ``new_model()`` builds
        freshly initialised (bst's backward encoder). The objective never sees the run
        config: the config knows the objectives, not the other way round."""
        return self.build_parts(model.cfg.d_model, spec)

    def training_batch(self, graphs: PathStarData, generator: torch.Generator) -> Batch:
        """Model inputs and emission-order targets of one training step."""
        targets = self.targets(graphs.answer_tokens())
        return {"inputs": self.inputs(graphs.prompt_tokens(), targets, graphs.spec), "targets": targets}

    def loss(self, model: nn.Module, parts: nn.Module | None, batch: Batch, spec: GraphSpec) -> LossTerms:
        logits = answer_logits_of(model, batch["inputs"], spec).float()
        return self.next_token_terms(logits, batch["targets"], spec)

    def next_token_terms(self, logits: Tensor, targets: Tensor, spec: GraphSpec) -> LossTerms:
        """Cross-entropy of the answer logits, averaged over the trained positions."""
        losses = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")  # (batch, l), emission order
        mask = self.loss_mask(spec).to(losses.device)
        total = losses[:, mask].mean()
        per_position = losses.mean(0)
        names = self.emitted_positions(spec.path_length)
        terms = {names[e]: per_position[e] / int(mask.sum()) for e in range(spec.path_length) if mask[e]}
        return LossTerms(total, self.to_path_order(per_position[None])[0], dict(sorted(terms.items())))

    # --- decoding ----------------------------------------------------------------------------
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
                emitted[rerun, k] = logits_of(model, tokens)[:, -1].argmax(dim=-1)
        return emitted

    def decode_with_order(
        self, model: Model, prompt: Int[Tensor, "batch p"], spec: GraphSpec, teacher_forced: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Int[Tensor, "batch l"], Int[Tensor, "batch l"] | None]:
        """``decode`` and the step (1..l) at which each emitted token was filled; None where
        the order is the emission order itself (every left-to-right decoder)."""
        return self.decode(model, prompt, spec, teacher_forced), None


def check_choice(owner: str, field_name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"objective.{field_name}={value!r} ({owner}): expected one of {', '.join(map(str, choices))}")


def check_range(owner: str, field_name: str, value: float, low: float, high: float | None = None) -> None:
    if value < low or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"objective.{field_name}={value!r} ({owner}): expected a value {bound}")
