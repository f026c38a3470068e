"""Typed run configuration, presets, and ``key=value`` overrides.

A run is (arch, objective, task, model, train). Presets fix model and training settings,
one line each; the graph and objective are chosen separately. A checkpoint stores the whole
``RunConfig`` as JSON, so a model is rebuilt from its directory alone.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from workbench.devices import check_device
from workbench.models.configs import GPTConfig, MambaConfig
from workbench.objectives import REGISTRY, get_objective, objective_class

if TYPE_CHECKING:
    from workbench.objectives.base import Objective
    from workbench.task import GraphSpec

MODEL_CONFIGS: dict[str, type] = {"gpt": GPTConfig, "mamba": MambaConfig}
ARCHS = tuple(MODEL_CONFIGS)


@dataclass
class TaskConfig:
    """Where the graphs come from: generated from ``data_seed`` unless files are given."""

    degree: int = 2
    path_length: int = 5
    num_nodes: int = 50
    num_train: int = 200_000
    num_test: int = 5_000
    data_seed: int = 0
    train_file: str | None = None  # paper-format .txt or .safetensors; overrides num_train/data_seed
    test_file: str | None = None

    def __post_init__(self) -> None:
        for name in ("num_train", "num_test"):
            _at_least(f"task.{name}", getattr(self, name), 1)

    @property
    def graph(self) -> GraphSpec:
        from workbench.task import GraphSpec

        return GraphSpec(self.degree, self.path_length, self.num_nodes)


@dataclass
class TrainConfig:
    """Optimisation; every interval is counted in optimizer steps."""

    steps: int = 3_000
    batch_size: int = 128
    lr: float = 1e-3
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio at ``steps``
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.999
    grad_clip: float = 1.0
    eval_every: int = 250
    eval_graphs: int = 2_000  # held-out graphs scored at each evaluation
    save_every: int = 500
    snapshot_every: int = 0  # >0: also keep a model-only copy every this many steps (for analyses over training)
    seed: int = 0
    device: str = "auto"  # workbench.devices: auto -> cuda if available, else cpu
    structured_samples: bool = False  # each graph d times in a batch, once per arm as the goal's (Frydenlund 2024)

    def __post_init__(self) -> None:
        for name, low in (("steps", 1), ("batch_size", 1), ("warmup_steps", 0), ("eval_every", 1), ("eval_graphs", 1),
                          ("save_every", 1), ("snapshot_every", 0), ("grad_clip", 0), ("weight_decay", 0)):
            _at_least(f"train.{name}", getattr(self, name), low)
        if not self.lr > 0:
            raise ValueError(f"train.lr={self.lr!r}: expected a learning rate > 0")
        for name in ("beta1", "beta2", "min_lr_ratio"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"train.{name}={getattr(self, name)!r}: expected a value in [0, 1]")
        check_device(self.device, "train.device")


def _at_least(field_name: str, value: float, low: float) -> None:
    if value < low:
        raise ValueError(f"{field_name}={value!r}: expected a value >= {low}")


@dataclass
class RunConfig:
    arch: str = "gpt"
    objective: str = "next_token"
    preset: str = "cpu"
    task: TaskConfig = field(default_factory=TaskConfig)
    model: GPTConfig | MambaConfig = field(default_factory=GPTConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    objective_params: Any = None  # the objective's Params dataclass; None -> its defaults

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; expected one of {ARCHS}")
        if not isinstance(self.model, MODEL_CONFIGS[self.arch]):
            raise ValueError(f"arch {self.arch!r} needs a {MODEL_CONFIGS[self.arch].__name__}, got {type(self.model).__name__}")
        objective = objective_class(self.objective)  # raises on unknown names
        if self.arch not in objective.archs:
            raise ValueError(f"objective {self.objective!r} does not apply to arch {self.arch!r} (it needs {objective.attention} attention; applies to {', '.join(objective.archs)})")
        params_type = objective.Params
        if self.objective_params is None:
            self.objective_params = params_type()
        if not isinstance(self.objective_params, params_type):
            raise ValueError(f"objective {self.objective!r} takes {params_type.__name__}, got {type(self.objective_params).__name__}")
        spec = self.task.graph  # validates the graph spec
        if self.train.structured_samples and self.train.batch_size % spec.degree:
            raise ValueError(f"train.batch_size={self.train.batch_size}: with train.structured_samples it must be a multiple of the degree {spec.degree}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = "config", complete: bool = False) -> RunConfig:
        """Rebuild from ``to_dict``'s output; ``complete`` also rejects missing fields (a
        checkpoint's config.json must say everything: a default there would be a guess)."""
        return _build(cls, raw, where, complete)


# One line per preset and arch: (model, training). Sizes from the paper and its code's README.
_PAPER_TRAIN = TrainConfig(steps=78_200, batch_size=256, lr=5e-4, warmup_steps=1_000, eval_every=2_000, save_every=2_000)
PRESETS: dict[str, dict[str, tuple[GPTConfig | MambaConfig, TrainConfig]]] = {
    "gpt": {
        # Small enough for a 2-core CPU (~1,000 sequences/s), large enough to show the failure;
        # the main job's schedule (see DEFAULT_OBJECTIVES below).
        "cpu": (GPTConfig(n_layers=2, d_model=128, n_heads=4), TrainConfig(steps=1_500, batch_size=128, lr=1e-3, eval_every=500, save_every=500)),
        # GPT-mini as follow-up work restates the paper: 12 x 384, 6 heads, lr 5e-4, batch 256;
        # 100 epochs of 200k graphs.
        "paper": (GPTConfig(n_layers=12, d_model=384, n_heads=6), _PAPER_TRAIN),
        # The paper code's README command: 6 layers, lr 1e-4.
        "paper-readme": (GPTConfig(n_layers=6, d_model=384, n_heads=6), replace(_PAPER_TRAIN, lr=1e-4)),
    },
    "mamba": {
        # Same width as the GPT's cpu preset. At the GPT's lr 1e-3 Mamba needed ~3,000 steps to
        # leave its plateau; at 5e-3 it shows the signature by step 750 and its reverse run is
        # at 99.6% by step 900 (3e-3: 1,000 and 1,250 steps; measured 2026-11-25). The GPT
        # itself stayed on its plateau at 2e-3.
        "cpu": (MambaConfig(n_layers=2, d_model=128), TrainConfig(steps=1_000, batch_size=128, lr=5e-3, eval_every=250, save_every=250)),
        # Parameter-matched to GPT-mini (a Mamba layer has about half a transformer layer's
        # weights, so two per transformer layer, as the Mamba paper counts).
        "paper": (MambaConfig(n_layers=24, d_model=384), _PAPER_TRAIN),
    },
}


def objective_of(config: RunConfig) -> Objective:
    """The objective a run was configured with, parameters included."""
    return get_objective(config.objective, config.objective_params)


# The main job's default (``workbench main``): both archs under these objectives, on the cpu
# presets, whose schedules are cut to fit the whole job into 40 minutes of a 2-core CPU
# (measured 2026-11-25): the GPT shows the signature by step 500, and its reverse run reaches
# 99.9% by step 1,500; Mamba (lr 5e-3) shows it by step 750, and its reverse run is at 99.6%
# by step 900. The presets hold the schedule: the main job, the studies and their estimates
# read it from there.
DEFAULT_OBJECTIVES = ("next_token", "reverse", "teacherless", "first_decision_only")
DEFAULT_JOBS = tuple((arch, objective) for arch in ("gpt", "mamba") for objective in DEFAULT_OBJECTIVES)

# Graphs per probe, (fitted on, scored on), from the held-out stream. Probes of finished models
# (``workbench probe``, the main job's probe stage): 2,000 scored graphs give a 95% interval of
# about +-2 points. Probes that run per snapshot or per run of a grid (along training, studies)
# use fewer.
PROBE_GRAPHS = (3_000, 2_000)
LIGHT_PROBE_GRAPHS = (2_000, 1_000)


def preset_config(preset: str, objective: str = "next_token", arch: str = "gpt", **task: Any) -> RunConfig:
    if arch not in PRESETS:
        raise ValueError(f"unknown arch {arch!r}; expected one of {ARCHS}")
    if preset not in PRESETS[arch]:
        raise ValueError(f"unknown preset {preset!r} for {arch}; expected one of {sorted(PRESETS[arch])}")
    model, train = PRESETS[arch][preset]
    return RunConfig(arch, objective, preset, TaskConfig(**task), replace(model), replace(train))


SECTIONS = {"task": "task", "model": "model", "train": "train", "objective": "objective_params"}


def apply_overrides(config: RunConfig, overrides: list[str]) -> RunConfig:
    """Apply ``section.field=value`` strings (e.g. ``train.steps=500``, ``objective.k=4``);
    unknown keys and unreadable or out-of-range values are errors naming the field."""
    raw = config.to_dict()
    for item in overrides:
        key, sep, value = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) != 2 or parts[0] not in SECTIONS:
            raise ValueError(f"override {item!r}: expected section.field=value with section in {', '.join(SECTIONS)}")
        section, name = parts
        known = raw[SECTIONS[section]]
        if name not in known:
            expected = ", ".join(sorted(known)) or f"none: objective {config.objective!r} has no parameters"
            raise ValueError(f"override {item!r}: unknown field {name!r} of {section}; expected one of {expected}")
        known[name] = _parse_value(value.strip(), _field_type(type(getattr(config, SECTIONS[section])), name), item)
    return RunConfig.from_dict(raw)


def _field_type(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def _parse_value(text: str, annotation: Any, where: str) -> Any:
    options = typing.get_args(annotation) or (annotation,)
    if type(None) in options and text.lower() in ("none", "null", ""):
        return None
    for kind in options:
        if kind is bool:
            if text.lower() in ("true", "1", "yes"):
                return True
            if text.lower() in ("false", "0", "no"):
                return False
        elif kind in (int, float, str):
            try:
                return kind(text)
            except ValueError:
                continue
    raise ValueError(f"{where}: cannot read {text!r} as {annotation}")


def with_legacy_params(run: dict[str, Any]) -> dict[str, Any]:
    """A saved run (config.json, or the copy in the weights) with the objective parameters
    added since it was written set to what they meant then (``Params.LEGACY``), not to
    today's defaults: e.g. a masked run saved before ``goal_slot`` had no goal slot."""
    if not isinstance(run, dict):
        return run  # from_dict names the problem
    name, params = run.get("objective"), run.get("objective_params")
    if name not in REGISTRY or not (params is None or isinstance(params, dict)):
        return run  # from_dict names the problem
    legacy = getattr(objective_class(name).Params, "LEGACY", {})
    return {**run, "objective_params": {**legacy, **(params or {})}} if legacy else run


def _build(cls: type, raw: Any, where: str, complete: bool = False) -> Any:
    """Rebuild a (nested) dataclass from a dict, rejecting unknown and mistyped fields (and,
    if ``complete``, missing ones). Every bad field is named in one error, not only the first."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected an object, found {raw!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    problems = []
    unknown = set(raw) - names
    if unknown:
        problems.append(f"{where}: unknown field(s) {sorted(unknown)}; expected {sorted(names)}")
    missing = names - set(raw) - set(getattr(cls, "SAVED_WITHOUT", ()))
    if complete and missing:
        problems.append(f"{where}: field(s) {sorted(missing)} missing")
    values = {}
    for name, value in raw.items():
        if name not in names:
            continue
        try:
            values[name] = _build_field(cls, raw, name, value, hints[name], where, complete)
        except ValueError as error:
            problems.append(str(error))
    if problems:
        raise ValueError("; ".join(problems))
    try:
        return cls(**values)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


def _build_field(cls: type, raw: dict, name: str, value: Any, hint: Any, where: str, complete: bool) -> Any:
    """One field of ``_build``: a nested dataclass, or a value checked against its type hint."""
    if cls is RunConfig and name == "model":  # its type depends on the arch
        arch = raw.get("arch", "gpt")
        if arch not in MODEL_CONFIGS:
            raise ValueError(f"{where}.arch: unknown arch {arch!r}; expected one of {ARCHS}")
        return _build(MODEL_CONFIGS[arch], value, f"{where}.{name}", complete)
    if cls is RunConfig and name == "objective_params":  # its type depends on the objective
        params_type = objective_class(raw.get("objective", "next_token")).Params
        return None if value is None else _build(params_type, value, f"{where}.{name}", complete)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, f"{where}.{name}", complete)
    options = typing.get_args(hint) or (hint,)
    ok = any(
        (value is None and kind is type(None))
        or (kind is float and isinstance(value, (int, float)) and not isinstance(value, bool))
        or (kind is not float and isinstance(value, kind) and not (kind is int and isinstance(value, bool)))
        for kind in options
    )
    if not ok:
        raise ValueError(f"{where}.{name}: expected {hint}, found {value!r}")
    return float(value) if float in options and isinstance(value, int) and int not in options else value
