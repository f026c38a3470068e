"""Training objectives, one unit each (see ``workbench.objectives.base`` for what a unit
decides). The G(2,3) graph of ``workbench.task`` (2,8|5,2|5,9|9,3/5,8=5,2,8; prompt of 15
tokens ending with '=' at position 14, answer 5 2 8) under each::

                   fed after '='   emitted    trained to predict, besides
    next_token     5 2             5 2 8      -
    teacherless    $ $             5 2 8      - (one parallel pass)
    reverse        8 2             8 2 5      - (goal first)
    first_decision_only  5 2       5 2 8      r2 alone carries loss
    mtp (k=3)      5 2             5 2 8      head 2 at positions 13,14,15 (goal, '=', r1 slot)
                                              -> 5 2 8; head 3 at 12,13,14 -> 5 2 8
    token_dropout  5 2 corrupted   5 2 8      - (e.g. '$ 2' or '5 7': targets stay clean)
    future_bow     5 2             5 2 8      bags of later answer tokens: at '=' {2, 8},
                                              at the r1 slot {8}
    nextlat        5 2             5 2 8      h(15) from [h(14); e(5)], h(16) from [h(15); e(2)]
    mlm_u          M M M           5 2 8      (bidirectional; M = [MASK], id N+4; one slot per
                                              answer token) trained on e.g. '5 M 8' -> the
                                              masked 2; decoded by unmasking one per step
    masked_diffusion  as mlm_u                as mlm_u, each masked token weighted 1/t
    bst            5 2             5 2 8      a backward encoder reads '$ 8 2' (the reversed
                                              answer after an end marker); a head on
                                              [F_t; B_k] predicts x_t+1 and x_k-1

``train.structured_samples`` (any objective) puts each graph in a batch once per arm as the
goal's: here also 2,8|5,2|5,9|9,3/5,3=5,9,3.

``REGISTRY`` maps each name to the class that implements it. Adding an objective is one new
module (or class) in this package plus its line here; the CLI, the config, the trainer, the
evaluation and the analyses find it through this table.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workbench.objectives.base import Objective

# name -> "module:class". Strings, so that the names are known without importing torch
# (the CLI lists them in --help); a class is imported when it is first asked for.
REGISTRY: dict[str, str] = {
    "next_token": "classic:NextToken",
    "teacherless": "classic:Teacherless",
    "reverse": "classic:Reverse",
    "first_decision_only": "classic:FirstDecisionOnly",
    "mtp": "mtp:MultiTokenPrediction",
    "token_dropout": "token_dropout:TokenDropout",
    "future_bow": "future_bow:FutureBagOfWords",
    "nextlat": "nextlat:NextLatentPrediction",
    "mlm_u": "masked:MaskedLanguageModel",
    "masked_diffusion": "masked:MaskedDiffusion",
    "bst": "bst:BeliefStateTransformer",
}
OBJECTIVES = tuple(REGISTRY)  # every name, in the order above


def objective_class(name: str) -> type[Objective]:
    if name not in REGISTRY:
        raise ValueError(f"unknown objective {name!r}; expected one of {', '.join(REGISTRY)}")
    module, _, cls = REGISTRY[name].partition(":")
    found = getattr(importlib.import_module(f"workbench.objectives.{module}"), cls)
    if found.name != name:
        raise ValueError(f"REGISTRY[{name!r}] points to {REGISTRY[name]}, whose name is {found.name!r}")
    return found


def get_objective(name: str, params: Any = None) -> Objective:
    """The objective ``name`` with ``params`` (its ``Params`` dataclass, or None: defaults)."""
    return objective_class(name)(params)


def params_fields(name: str) -> dict[str, Any]:
    """{field: default} of an objective's parameters (empty if it has none)."""
    return {f.name: getattr(objective_class(name).Params(), f.name) for f in dataclasses.fields(objective_class(name).Params)}


_BASE = ("Batch", "LossTerms", "NoParams", "Objective", "answer_logits", "answer_logits_of", "step_generator")


def __getattr__(name: str) -> Any:
    if name in _BASE:
        from workbench.objectives import base

        return getattr(base, name)
    raise AttributeError(f"module 'workbench.objectives' has no attribute {name!r}")


__all__ = [
    "Batch", "LossTerms", "NoParams", "OBJECTIVES", "Objective", "REGISTRY", "answer_logits", "answer_logits_of", "get_objective",
    "objective_class", "params_fields", "step_generator",
]
