"""Which package may import which: the run config knows the objectives, never the reverse."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "workbench"


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (inside functions and TYPE_CHECKING too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_objectives_never_import_the_run_config():
    """config.py validates objective parameters through the registry, so an objective that
    imported the config (even for a type hint) would close a circle config -> objectives -> config."""
    files = sorted((PACKAGE / "objectives").glob("*.py"))
    assert len(files) >= 8
    offenders = {f.name: sorted(m for m in imported_modules(f) if m == "workbench.config" or m.startswith("workbench.config.")) for f in files}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_imported_modules_sees_imports_inside_functions_and_type_checking(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from a.b import C\ndef f():\n    import d.e\n")
    assert imported_modules(source) == {"typing", "a.b", "d.e"}


def test_no_library_module_sets_a_matplotlib_backend():
    """Choosing the backend is the program's business (a notebook shows figures inline, a script
    on a headless machine falls back to Agg by itself): importing the library must not change it."""
    offenders = [f.relative_to(PACKAGE).as_posix() for f in PACKAGE.rglob("*.py") if "matplotlib.use(" in f.read_text()]
    assert offenders == []


def test_importing_every_figure_module_leaves_the_backend_alone():
    import subprocess
    import sys

    code = ("import matplotlib; matplotlib.use('svg'); import workbench.analyses.run, workbench.study.figures, workbench.probes.plots, "
            "workbench.findings.figures; print(matplotlib.get_backend())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "svg"


def package_graph() -> dict[str, set[str]]:
    """Which top-level module or subpackage of workbench imports which (any import, at any
    depth: inside functions and TYPE_CHECKING too, since an import cycle kept alive only by
    function-level imports is still a cycle)."""
    def unit(module: str) -> str:
        return ".".join(module.split(".")[:2])

    edges: dict[str, set[str]] = {}
    for file in PACKAGE.rglob("*.py"):
        module = ".".join(file.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        for imported in imported_modules(file):
            if imported.startswith("workbench") and unit(imported) != unit(module):
                edges.setdefault(unit(module), set()).add(unit(imported))
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt, path + [nxt])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_no_import_cycle_between_the_packages_modules():
    edges = package_graph()
    assert len(edges) > 15
    assert find_cycle(edges) is None, " -> ".join(find_cycle(edges))


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}}) is None


def test_the_model_code_knows_nothing_of_runs_and_the_config_nothing_of_models_beyond_their_configs():
    edges = package_graph()
    assert edges.get("workbench.models", set()) <= {"workbench.task"}
    assert edges.get("workbench.config", set()) <= {"workbench.models", "workbench.objectives", "workbench.devices", "workbench.task"}
    assert "workbench.config" not in edges.get("workbench.objectives", set())
