"""Probe experiments as small declarative TOML files, run with ``workbench probe --spec FILE``.

    # probes/goal_arm.toml: is the goal arm decodable at '=' or r1?
    description = "the goal arm at eq and r1, every residual layer and the SSM state"
    checkpoints = ["runs/default/checkpoints/gpt-*", "runs/default/checkpoints/mamba-*"]
    hooks = ["embed", "resid_post", "ssm_state"]
    positions = ["eq", "r1"]
    targets = ["arm"]
    out = "runs/probes/goal_arm"

Every key is optional except that ``checkpoints`` or ``runs`` must name something; a key
left out takes the default below, the same as the flag of ``workbench probe`` it mirrors:

    description   free text, printed and kept with the table                      ""
    checkpoints   checkpoint directories, glob patterns (each must match) or     []
                  names of shipped checkpoints (checkpoints/manifest.csv)
    runs          experiment directories (``workbench main --out``): every
                  checkpoint in RUN/checkpoints/                                  []
    snapshots     also probe the untrained model and every snapshot of each
                  checkpoint (``train.snapshot_every``): probes along training    false
    hooks         hook names or shortcuts embed, resid_post, ssm_state; a model
                  without SSM states skips ``ssm_state``     embed, resid_post (+ ssm_state)
    positions     eq, r1..r{l-1}                                                  eq, r1
    targets       arm, node_r2..node_r{l}, goal, source, on_path                   all
    controls      control task and untrained model beside every probe             true
    n_train       graphs each probe is fitted on                                  3000
    n_test        held-out graphs it is scored on                                 2000
    seed          CV folds, bootstrap and control tasks                           0
    data          a graph file to probe on instead of the held-out graphs         none
    num_nodes     node labels of ``data``, when its file name does not say        none
    cache         cache activations under OUT/activation_cache                    true
    device        where the models run (auto, cpu, cuda, cuda:N, mps)             "auto"
    jobs          worker processes fitting probes (-1: one per core)              -1
    out           output directory: probes.csv, figures, spec.toml                "runs/probes"

Relative paths (``checkpoints``, ``runs``, ``data``, ``out``) are read from the current
directory, not from the spec file's folder, so the shipped files run from the repository
root. Flags given beside ``--spec`` override the file's values (checkpoints given on the
command line replace both ``checkpoints`` and ``runs``); the spec actually run is written to
OUT/spec.toml, so ``workbench probe --spec OUT/spec.toml`` repeats it.

An unknown key or a bad value raises ``ValueError`` naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.config import PROBE_GRAPHS
from workbench.devices import DEVICE_PATTERN, DEVICES
from workbench.probes.activations import DEFAULT_POSITIONS

POSITION = re.compile(r"eq|r[1-9]\d*")
TARGET = re.compile(r"arm|goal|source|on_path|node_r[1-9]\d*")


@dataclass(frozen=True)
class ProbeSpec:
    """One probe experiment; see the module docstring for what each field means."""

    description: str = ""
    checkpoints: tuple[str, ...] = ()
    runs: tuple[str, ...] = ()
    snapshots: bool = False
    hooks: tuple[str, ...] | None = None  # None: embedding, every layer, and the SSM states of a Mamba
    positions: tuple[str, ...] = tuple(DEFAULT_POSITIONS)
    targets: tuple[str, ...] | None = None  # None: every target
    controls: bool = True
    n_train: int = PROBE_GRAPHS[0]
    n_test: int = PROBE_GRAPHS[1]
    seed: int = 0
    data: str | None = None
    num_nodes: int | None = None
    cache: bool = True
    device: str = "auto"
    jobs: int = -1
    out: str = "runs/probes"
    source: str = field(default="command line", compare=False)  # where the values came from, for messages

    def __post_init__(self) -> None:
        for key in KEYS:
            _check(self.source, key, getattr(self, key))
        if not self.checkpoints and not self.runs:
            raise ValueError(f"{self.source}: no models to probe; give 'checkpoints' (directories or glob patterns) or 'runs'")

    def override(self, values: dict[str, Any], source: str = "command line") -> ProbeSpec:
        """This spec with ``values`` replaced (checked as the file's are); checkpoints given
        here replace the file's ``checkpoints`` and ``runs``."""
        unknown = sorted(set(values) - set(KEYS))
        if unknown:
            raise ValueError(f"{source}: unknown key(s) {unknown}; expected some of {list(KEYS)}")
        for key, value in values.items():
            _check(source, key, _as_tuple(value))
        values = {key: _as_tuple(value) for key, value in values.items()}
        if values.get("checkpoints"):
            values.setdefault("runs", ())
        label = self.source if not values else f"{self.source}, with {', '.join(sorted(values))} from the {source}"
        return dataclasses.replace(self, **values, source=label)

    def to_toml(self) -> str:
        """The spec as a TOML file that ``load_spec`` reads back to an equal spec."""
        lines = [f"# written by workbench probe from {self.source}"]
        for key in KEYS:
            value = getattr(self, key)
            if value is not None:
                lines.append(f"{key} = {_toml_value(value)}")
        return "\n".join(lines) + "\n"


KEYS = tuple(f.name for f in dataclasses.fields(ProbeSpec) if f.name != "source")


def load_spec(path: str | Path) -> ProbeSpec:
    """Read and check a probe spec file; errors name the file and the key."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: probe spec not found") from None
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path}: not valid TOML ({error})") from None
    unknown = [key for key in raw if key not in KEYS]
    if unknown:
        raise ValueError(f"{path}: unknown key {unknown[0]!r}; expected one of {', '.join(KEYS)}")
    return ProbeSpec(**{key: _as_tuple(value) for key, value in raw.items()}, source=str(path))


def _as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _check(source: str, key: str, value: Any) -> None:
    """Raise a one-line ValueError naming ``source`` and ``key`` when ``value`` is not allowed."""

    def bad(expected: str) -> ValueError:
        shown = list(value) if isinstance(value, tuple) else value  # as the file wrote it
        return ValueError(f"{source}: key {key!r}: expected {expected}, found {shown!r}")

    def strings(allow_none: bool, pattern: re.Pattern | None = None, what: str = "strings") -> None:
        if value is None and allow_none:
            return
        if not isinstance(value, tuple) or not all(isinstance(v, str) and v for v in value):
            raise bad(f"a list of {what}")
        if pattern is not None:
            wrong = [v for v in value if not pattern.fullmatch(v)]
            if wrong:
                raise bad(f"a list of {what}, not {wrong[0]!r}")

    if key in ("checkpoints", "runs"):
        strings(False, what="paths or glob patterns")
    elif key == "hooks":
        strings(True, what="hook names or embed, resid_post, ssm_state")
        if value is not None and not value:
            raise bad("at least one hook (leave the key out for the default hooks)")
    elif key == "positions":
        strings(False, POSITION, "positions eq, r1, r2, ...")
        if not value:
            raise bad("at least one position")
    elif key == "targets":
        strings(True, TARGET, "targets arm, node_r2.., goal, source, on_path")
        if value is not None and not value:
            raise bad("at least one target (leave the key out for every target)")
    elif key in ("snapshots", "controls", "cache"):
        if not isinstance(value, bool):
            raise bad("true or false")
    elif key in ("n_train", "n_test"):
        if not isinstance(value, int) or isinstance(value, bool) or value < 2:
            raise bad("a whole number of graphs, at least 2")
    elif key == "seed":
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise bad("a whole number >= 0")
    elif key == "jobs":
        if not isinstance(value, int) or isinstance(value, bool) or value == 0:
            raise bad("a whole number of processes (-1: one per core)")
    elif key == "num_nodes":
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise bad("a whole number of node labels")
    elif key == "data":
        if value is not None and (not isinstance(value, str) or not value):
            raise bad("a path to a graph file")
    elif key == "device":
        if not isinstance(value, str) or not DEVICE_PATTERN.fullmatch(value):
            raise bad(f"one of {', '.join(DEVICES)}")
    elif key in ("description", "out"):
        if not isinstance(value, str) or (key != "description" and not value):
            raise bad("a string")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value) if isinstance(value, str) else str(value)


def resolve_checkpoints(spec: ProbeSpec) -> list[Path]:
    """The checkpoint directories a spec names, in its order, each once. Relative paths are
    read from the current directory; a pattern or run that finds nothing is an error."""
    where = f"(relative paths are read from the current directory, {Path.cwd()})"
    if any("runs/default" in entry for entry in (*spec.checkpoints, *spec.runs)):
        where += "; `workbench main` writes runs/default"
    found: list[Path] = []
    for entry in spec.checkpoints:
        if glob.has_magic(entry):
            matches = [Path(p) for p in sorted(glob.glob(str(Path(entry).expanduser()))) if (Path(p) / "config.json").exists()]
            if not matches:
                raise ValueError(f"{spec.source}: key 'checkpoints': {entry!r} matches no checkpoint directory {where}")
            found += matches
        else:
            path = Path(entry).expanduser()
            if not path.is_dir() and entry == path.name:  # a shipped checkpoint's name (checkpoints/manifest.csv)
                from workbench.shipped import resolve

                try:
                    path = resolve(entry)
                except FileNotFoundError as error:
                    raise ValueError(f"{spec.source}: key 'checkpoints': {error}") from None
            if not path.is_dir():
                raise ValueError(f"{spec.source}: key 'checkpoints': {entry!r} is not a directory {where}")
            found.append(path)
    for entry in spec.runs:
        matches = sorted(p.parent for p in (Path(entry).expanduser() / "checkpoints").glob("*/config.json"))
        if not matches:
            raise ValueError(f"{spec.source}: key 'runs': {entry!r} has no checkpoints in {entry}/checkpoints/ {where}")
        found += matches
    return list(dict.fromkeys(found))


def _hooks_for(model: Any, hooks: tuple[str, ...] | None) -> list[str] | None:
    """The spec's hooks for one model: ``ssm_state`` only where the model has SSM states."""
    if hooks is None:
        return None
    has_state = any(name.endswith("mixer.hook_ssm_state") for name in model.hook_dict)
    return [h for h in hooks if h != "ssm_state" or has_state]


def run_spec(spec: ProbeSpec, progress: bool = True) -> pd.DataFrame:
    """Probe every checkpoint of ``spec``; write OUT/probes.csv, the figures and OUT/spec.toml."""
    from workbench.checkpoint import load
    from workbench.data_files import load_data
    from workbench.probes.plots import plot_probe_heatmaps
    from workbench.probes.sweep import probe_sweep
    from workbench.files import atomic_write_text

    paths = resolve_checkpoints(spec)
    out = Path(spec.out)
    data = load_data(spec.data, num_nodes=spec.num_nodes) if spec.data else None
    if progress:
        print(f"{spec.source}: {spec.description or 'probe experiment'}; {len(paths)} checkpoint(s) -> {out}", flush=True)
    settings = dict(
        positions=list(spec.positions), targets=list(spec.targets) if spec.targets else None, data=data,
        n_train=spec.n_train, n_test=spec.n_test, controls=spec.controls, seed=spec.seed, device=spec.device, n_jobs=spec.jobs,
        cache_dir=out / "activation_cache" if spec.cache else None,
    )
    tables = []
    for path in paths:
        if spec.snapshots:
            from workbench.probes.over_training import training_checkpoints

            checkpoints = training_checkpoints(path)
        else:
            checkpoints = [load(path, device=spec.device)]
        for checkpoint in checkpoints:
            hooks = _hooks_for(checkpoint.model, spec.hooks)
            if hooks == []:
                if progress:
                    print(f"skipped {path}: it has none of the hooks {list(spec.hooks)}", flush=True)
                continue
            try:
                tables.append(probe_sweep([checkpoint], hooks=hooks, progress=progress, **settings))
            except ValueError as error:  # a hook, position or target this model or graph does not have
                raise ValueError(f"{spec.source}: {path}: {error}") from None
    if not tables:
        raise ValueError(f"{spec.source}: key 'hooks': no checkpoint has any of {list(spec.hooks or ())}")
    table = pd.concat(tables, ignore_index=True)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "probes.csv", table.to_csv(index=False))
    atomic_write_text(out / "spec.toml", spec.to_toml())
    if spec.snapshots:
        from workbench.probes.over_training import plot_probes_over_training

        figures = [plot_probes_over_training(table, out / "probes_over_training.png")]
    else:
        figures = plot_probe_heatmaps(table, out)
    if progress:
        index = ["arch", "objective", "step", "target"] if spec.snapshots else ["arch", "objective", "target"]
        shown = table.pivot_table(index=index, columns=["position", "site", "layer"], values="accuracy", sort=False)
        print(shown.to_string(float_format=lambda v: f"{v:.2f}"))
        print(f"wrote {out / 'probes.csv'} ({len(table)} probes), {out / 'spec.toml'} and {len(figures)} figure(s) in {out}", flush=True)
    return table
