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
