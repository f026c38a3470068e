"""A study file: a grid of runs, read with tomllib, and the runs it expands to.

    [study]
    name = "remedies"
    figure = "remedies"                 # which page and figure: "remedies", "depth", "solvers" or "none"
    objectives = "all"                  # or a list; "all" = every objective of workbench.objectives.REGISTRY
    archs = ["gpt", "mamba"]
    graphs = ["2,3,50", "2,5,50"]
    presets = ["cpu"]
    seeds = [0, 1, 2]
    overrides = [[], ["model.n_layers=4"]]   # a grid axis: each entry is one variant (--set items)
    stages = ["evaluate", "probes", "patching"]

    [set]                               # --set items for every run ("all"), per arch, per objective
    all = ["train.eval_every=500"]      # (the preset's schedule otherwise: the main job's)
    mamba = ["train.lr=3e-3"]
    mtp = ["objective.k=3"]

    [subsets]                           # named --subset selections
    quick = ["seeds=0", "archs=gpt", "graphs=2,3,50"]

    [resources]
    cpus_per_run = 1
    gpus_per_run = "auto"               # 1 where the Ray cluster has a GPU, else 0

    [plateau]                           # optional: stop a run before train.steps (then the cap) by
    window = 1000                       # the plateau rule of workbench.stopping: r2's held-out loss
    min_fall = 0.02                     # fell by less than 2% over the last 1,000 steps,
    solved = 0.99                       # or r2 accuracy reached 0.99

    [probes]    n_train, n_test, hooks, positions, targets
    [evaluate]  n_graphs (default: the run's task.num_test)
    [patching]  n_graphs

A grid point whose objective does not apply to its arch (``Objective.archs``) is skipped with
a note. Every run gets a name unique in the grid, which is also its folder name.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.config import ARCHS, LIGHT_PROBE_GRAPHS, RunConfig, apply_overrides, preset_config
from workbench.identity import run_name
from workbench.objectives import OBJECTIVES, objective_class
from workbench.stopping import PlateauRule

STAGES = ("evaluate", "probes", "patching")
FIGURES = ("remedies", "depth", "solvers", "none")
IDENTITY = ("study", "objective", "arch", "graph", "preset", "overrides", "seed", "run")
SUBSET_KEYS = ("objectives", "archs", "graphs", "presets", "overrides", "seeds", "runs")


@dataclass(frozen=True)
class ProbeSettings:
    n_train: int = LIGHT_PROBE_GRAPHS[0]
    n_test: int = LIGHT_PROBE_GRAPHS[1]
    hooks: tuple[str, ...] = ("embed", "resid_post")
    positions: tuple[str, ...] = ("eq",)
    targets: tuple[str, ...] = ("arm", "goal")


@dataclass(frozen=True)
class StudyRun:
    """One grid point: its identity (the study.csv columns) and the config it trains."""

    study: str
    objective: str
    arch: str
    graph: str
    preset: str
    overrides: str  # the variant's --set items, space-separated ("" for none)
    seed: int
    name: str
    config: RunConfig = field(compare=False, repr=False)

    def identity(self) -> dict[str, Any]:
        return dict(study=self.study, objective=self.objective, arch=self.arch, graph=self.graph, preset=self.preset,
                    overrides=self.overrides, seed=self.seed, run=self.name)


@dataclass
class Study:
    name: str
    figure: str
    objectives: tuple[str, ...]
    archs: tuple[str, ...]
    graphs: tuple[str, ...]
    presets: tuple[str, ...]
    seeds: tuple[int, ...]
    overrides: tuple[tuple[str, ...], ...]
    stages: tuple[str, ...]
    sets: dict[str, tuple[str, ...]]
    subsets: dict[str, tuple[str, ...]]
    cpus_per_run: float = 1
    gpus_per_run: float | str = "auto"
    probes: ProbeSettings = field(default_factory=ProbeSettings)
    eval_graphs: int | None = None
    patching_graphs: int = 1_000
    plateau: PlateauRule | None = None
    source: Path | None = None

    def runs(self) -> tuple[list[StudyRun], list[str]]:
        """(the grid's runs, notes on the grid points skipped because the objective does not
        apply to the arch). Raises on a bad override, naming the run it was meant for."""
        runs, names = [], set()
        notes = self.skip_notes()
        for objective in self.objectives:
            for arch in self.archs:
                if arch not in objective_class(objective).archs:
                    continue
                for graph in self.graphs:
                    for preset in self.presets:
                        for variant in self.overrides:
                            for seed in self.seeds:
                                run = self._run(objective, arch, graph, preset, variant, seed)
                                if run.name in names:
                                    raise ValueError(f"{self.source}: two grid points share the run name {run.name!r}; make the overrides differ in field or value")
                                names.add(run.name)
                                runs.append(run)
        return runs, notes

    def skip_notes(self, subset: list[str] | None = None) -> list[str]:
        """A note for each grid point whose objective does not apply to its arch; with
        ``subset``, only for those the subset's objectives and archs ask for."""
        wanted = parse_subset(self.expand_subset(subset)) if subset else {}
        return [
            f"skipped {objective} on {arch}: the objective applies to {', '.join(objective_class(objective).archs)} only"
            for objective in self.objectives for arch in self.archs
            if arch not in objective_class(objective).archs
            and objective in wanted.get("objectives", {objective}) and arch in wanted.get("archs", {arch})
        ]

    def _run(self, objective: str, arch: str, graph: str, preset: str, variant: tuple[str, ...], seed: int) -> StudyRun:
        from workbench.task import GraphSpec

        spec = GraphSpec.parse(graph)
        config = preset_config(preset, objective=objective, arch=arch, degree=spec.degree, path_length=spec.path_length, num_nodes=spec.num_nodes)
        items = [*self.sets.get("all", ()), *self.sets.get(arch, ()), *self.sets.get(objective, ()), *variant, f"train.seed={seed}"]
        name = run_name(arch, objective, graph=spec, preset=preset, overrides=variant, seed=seed)
        try:
            config = apply_overrides(config, items)
            if self.plateau is not None:
                self.plateau.check_schedule(config.train.eval_every, "[plateau]")
        except ValueError as error:
            raise ValueError(f"{self.source}: run {name}: {error}") from None
        return StudyRun(self.name, objective, arch, str(spec), preset, " ".join(variant), seed, name, config)

    def select(self, runs: list[StudyRun], subset: list[str]) -> list[StudyRun]:
        """The runs matching every ``KEY=VALUE`` item of ``subset`` (or a named subset of the
        file). Values of one key are alternatives: ``seeds=0,1`` or ``graphs=2,3,50
        graphs=2,5,50``; a value outside the grid is an error naming the grid's values."""
        wanted = parse_subset(self.expand_subset(subset))
        grid = {
            "objectives": {r.objective for r in runs}, "archs": {r.arch for r in runs}, "graphs": {r.graph for r in runs},
            "presets": {r.preset for r in runs}, "overrides": {r.overrides for r in runs}, "seeds": {str(r.seed) for r in runs},
            "runs": {r.name for r in runs},
        }
        for key, values in wanted.items():
            unknown = sorted(values - grid[key])
            if unknown:
                raise ValueError(f"--subset {key}: {', '.join(map(repr, unknown))} not in the study's grid; it has {', '.join(sorted(map(repr, grid[key])))}")

        def value(run: StudyRun, key: str) -> str:
            return {"objectives": run.objective, "archs": run.arch, "graphs": run.graph, "presets": run.preset,
                    "overrides": run.overrides, "seeds": str(run.seed), "runs": run.name}[key]

        return [r for r in runs if all(value(r, key) in values for key, values in wanted.items())]

    def expand_subset(self, subset: list[str]) -> list[str]:
        items = []
        for item in subset:
            if "=" not in item:
                if item not in self.subsets:
                    raise ValueError(f"--subset {item!r}: expected KEY=VALUES or a named subset of {self.source} ({', '.join(self.subsets) or 'it has none'})")
                items.extend(self.subsets[item])
            else:
                items.append(item)
        return items


def parse_subset(items: list[str]) -> dict[str, set[str]]:
    """``["seeds=0,1", "graphs=2,3,50", "graphs=2,5,50"]`` -> {key: values}. Graphs keep their
    commas (one graph per item); other keys split on commas. Keys: ``SUBSET_KEYS``."""
    from workbench.task import GraphSpec

    wanted: dict[str, set[str]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or key not in SUBSET_KEYS:
            raise ValueError(f"--subset {item!r}: expected KEY=VALUES with KEY one of {', '.join(SUBSET_KEYS)}")
        if key == "graphs":
            values = {str(GraphSpec.parse(text.strip()))}
        elif key == "overrides":
            values = {text.strip()}
        else:
            values = {part.strip() for part in text.split(",") if part.strip()}
        wanted.setdefault(key, set()).update(values)
    return wanted


def load_study(path: str | Path) -> Study:
    """Read and check a study file; errors name the file and the field."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path}: not valid TOML ({error})") from None
    known = {"study", "set", "subsets", "resources", "probes", "evaluate", "patching", "plateau"}
    if set(raw) - known:
        raise ValueError(f"{path}: unknown table(s) {sorted(set(raw) - known)}; expected {sorted(known)}")
    head = raw.get("study")
    if not isinstance(head, dict):
        raise ValueError(f"{path}: a [study] table is required")
    fields = {"name", "figure", "objectives", "archs", "graphs", "presets", "seeds", "overrides", "stages"}
    if set(head) - fields:
        raise ValueError(f"{path}: [study] has unknown field(s) {sorted(set(head) - fields)}; expected {sorted(fields)}")

    def strings(section: dict, key: str, default: Any = None, where: str = "study") -> tuple[str, ...]:
        value = section.get(key, default)
        if value is None:
            raise ValueError(f"{path}: [{where}] {key} is required")
        if isinstance(value, str) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{path}: [{where}] {key} = {value!r}: expected a list of strings")
        return tuple(value)

    objectives = OBJECTIVES if head.get("objectives") == "all" else strings(head, "objectives")
    for name in objectives:
        if name not in OBJECTIVES:
            raise ValueError(f"{path}: [study] objectives: unknown objective {name!r}; expected one of {', '.join(OBJECTIVES)} (or \"all\")")
    archs = strings(head, "archs", ARCHS)
    for arch in archs:
        if arch not in ARCHS:
            raise ValueError(f"{path}: [study] archs: unknown arch {arch!r}; expected one of {', '.join(ARCHS)}")
    seeds = head.get("seeds", [0])
    if not isinstance(seeds, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise ValueError(f"{path}: [study] seeds = {seeds!r}: expected a list of integers >= 0")
    overrides = head.get("overrides", [[]])
    if not isinstance(overrides, list) or not all(isinstance(v, list) and all(isinstance(i, str) for i in v) for v in overrides):
        raise ValueError(f"{path}: [study] overrides = {overrides!r}: expected a list of lists of SECTION.FIELD=VALUE strings")
    stages = strings(head, "stages", ["evaluate"])
    for stage in stages:
        if stage not in STAGES:
            raise ValueError(f"{path}: [study] stages: unknown stage {stage!r}; expected some of {', '.join(STAGES)}")
    figure = head.get("figure", "none")
    if figure not in FIGURES:
        raise ValueError(f"{path}: [study] figure = {figure!r}: expected one of {', '.join(FIGURES)}")
    sets = {key: strings(raw.get("set", {}), key, where="set") for key in raw.get("set", {})}
    for key in sets:
        if key != "all" and key not in ARCHS and key not in OBJECTIVES:
            raise ValueError(f"{path}: [set] {key}: expected 'all', an arch ({', '.join(ARCHS)}) or an objective")
    subsets = {key: strings(raw.get("subsets", {}), key, where="subsets") for key in raw.get("subsets", {})}
    resources = raw.get("resources", {})
    if set(resources) - {"cpus_per_run", "gpus_per_run"}:
        raise ValueError(f"{path}: [resources] unknown field(s) {sorted(set(resources) - {'cpus_per_run', 'gpus_per_run'})}")
    gpus = resources.get("gpus_per_run", "auto")
    if gpus != "auto" and not (isinstance(gpus, (int, float)) and gpus >= 0):
        raise ValueError(f"{path}: [resources] gpus_per_run = {gpus!r}: expected \"auto\" or a number >= 0")
    probes = raw.get("probes", {})
    try:
        probe_settings = ProbeSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in probes.items()})
    except TypeError as error:
        raise ValueError(f"{path}: [probes]: {error}") from None
    plateau = raw.get("plateau")
    if plateau is not None:
        try:
            plateau = PlateauRule(**plateau)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: [plateau]: {error}") from None
    if figure == "solvers" and not ({"probes", "patching"} <= set(stages) and "node_r2" in probe_settings.targets):
        raise ValueError(f"{path}: figure = \"solvers\" sets the r2 node probe beside goal patching: it needs stages "
                         f"\"probes\" and \"patching\" and [probes] targets with \"node_r2\" (has stages {list(stages)}, targets {list(probe_settings.targets)})")
    study = Study(
        name=head.get("name", path.stem), figure=figure, objectives=tuple(objectives), archs=archs,
        graphs=strings(head, "graphs", ["2,5,50"]), presets=strings(head, "presets", ["cpu"]), seeds=tuple(seeds),
        overrides=tuple(tuple(v) for v in overrides), stages=stages, sets=sets, subsets=subsets,
        cpus_per_run=resources.get("cpus_per_run", 1), gpus_per_run=gpus, probes=probe_settings,
        eval_graphs=raw.get("evaluate", {}).get("n_graphs"), patching_graphs=raw.get("patching", {}).get("n_graphs", 1_000), plateau=plateau, source=path,
    )
    for subset in study.subsets.values():
        parse_subset(list(subset))
    return study
