"""The reference checkpoints shipped in ``checkpoints/``, opened by name.

    checkpoints/manifest.csv      one row per checkpoint: name, what trained it (the recorded
                                  command, commit, steps, seconds), sha256 of its weights (``identity.weights_sha256``), and
                                  its accuracy on the paper's test file of its graph (``reference_set``)
    checkpoints/{name}/           config.json, model.safetensors, metrics.jsonl (no optimizer)

``workbench.load("gpt-next_token-G2_5_50")`` resolves a manifest name as well as a path, and
refuses a file whose sha256 differs from its row. Each trained checkpoint has an untrained
twin (``{name}-untrained``: the same config and seed at step 0), the probes' control. A twin
is not stored: initialisation is a pure function of the config and seed, so it is rebuilt on
first use into ``runs/untrained/{name}`` (beside ``checkpoints/``) and checked against its row's sha256 like any other.

``ship`` writes a trained run in (weights, config and metrics; no optimizer), evaluates it on the reference
file of its graph (or, where the paper has none, on 20,000 graphs of its held-out stream) and writes its row; the command, commit and training time come from the provenance the
job recorded when it trained the run (``workbench.publish``), never typed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from workbench.identity import weights_sha256
from workbench.publish import SOURCE_ROOT
from workbench.files import atomic_write_text

MANIFEST = "manifest.csv"
COLUMNS = ("name", "untrained_twin_of", "arch", "objective", "graph", "n_layers", "seed", "step", "command", "run", "commit",
           "train_seconds", "weights_sha256", "reference_file", "n_graphs", "r2_tf", "r2_greedy", "path_tf", "path_greedy")
REFERENCE_DATA = SOURCE_ROOT.parent / "shared" / "reference-data"
TWIN_SUFFIX = "-untrained"

if TYPE_CHECKING:
    from workbench.task import PathStarData


def store() -> Path:
    """The checkpoints folder: ``./checkpoints`` where it holds a manifest (a clone's root),
    else the one beside the installed source."""
    here = Path("checkpoints")
    return here.resolve() if (here / MANIFEST).exists() else SOURCE_ROOT / "checkpoints"


def manifest(folder: Path | None = None) -> pd.DataFrame:
    path = (folder or store()) / MANIFEST
    if not path.exists():
        return pd.DataFrame(columns=COLUMNS)
    return pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"commit": str})


def reference_file(graph) -> Path:
    """The paper's test file of ``graph`` beside the repository (``../shared/reference-data``)."""
    return REFERENCE_DATA / f"deg_{graph.degree}_path_{graph.path_length}_nodes_{graph.num_nodes}_test_20000.txt"


def load(path_or_name: str | Path, device: str = "auto"):
    """A checkpoint directory, or a shipped checkpoint by its manifest name (its sha256 checked):
    ``workbench.load``, and what every verb that takes a checkpoint opens."""
    from workbench.checkpoint import load as load_directory

    path = Path(path_or_name)
    if not path.exists() and str(path_or_name) == path.name:  # not a path: a manifest name
        path = resolve(path.name)
    return load_directory(path, device=device)


def resolve(name: str) -> Path:
    """The checked directory of a manifest name (rebuilding an untrained twin on first use).
    Raises ``FileNotFoundError`` listing the names that exist, ``ValueError`` naming a file
    whose sha256 differs from its row."""
    folder = store()
    table = manifest(folder)
    rows = table[table["name"] == name]
    if not len(rows):
        names = ", ".join(table["name"]) if len(table) else "none (no checkpoints/manifest.csv here)"
        raise FileNotFoundError(f"{name}: not a checkpoint directory nor a shipped checkpoint; shipped: {names}")
    row = rows.iloc[0]
    path = folder / name if pd.isna(row["untrained_twin_of"]) else _twin(folder, row)
    weights = path / "model.safetensors"
    found = weights_sha256(weights)
    if found != row["weights_sha256"]:
        raise ValueError(f"{weights}: sha256 {found[:16]}... differs from its row in {folder / MANIFEST} "
                         f"({row['weights_sha256'][:16]}...); refusing a changed shipped checkpoint")
    return path


def _twin(folder: Path, row: pd.Series) -> Path:
    """Build (once) the untrained twin of ``row['untrained_twin_of']``: its config at step 0."""
    from workbench.factory import build_model_and_parts
    from workbench.checkpoint import read_config, save_checkpoint

    target = folder.parent / "runs" / "untrained" / row["name"]
    if not (target / "model.safetensors").exists():
        config, _ = read_config(folder / row["untrained_twin_of"])
        model, parts = build_model_and_parts(config)
        save_checkpoint(target, config, model, step=0, metrics=[], parts=parts)
    return target


HELD_OUT_REFERENCE = 20_000  # graphs of the held-out stream that score a checkpoint of a graph the paper published no test file of


def reference_set(config) -> tuple[str, PathStarData]:
    """(its name in the manifest, the graphs) a shipped checkpoint is scored on: the paper's
    test file of its graph where there is one; else (G(2,4,50) has none) the first 20,000
    graphs of the run's held-out stream (``workbench.datasets``: never its training set),
    named ``held-out:20000``."""
    from workbench.data_files import load_data
    from workbench.datasets import held_out_graphs

    data_file = reference_file(config.task.graph)
    if data_file.exists():
        return data_file.name, load_data(data_file)
    return f"held-out:{HELD_OUT_REFERENCE}", held_out_graphs(config.task, HELD_OUT_REFERENCE)


def evaluate_on_reference(checkpoint) -> dict:
    """r2 and path accuracy, teacher-forced and greedy, on the checkpoint's ``reference_set``
    (the manifest's columns)."""
    from workbench.evaluate import evaluate

    name, data = reference_set(checkpoint.config)
    frame = evaluate(checkpoint.model, data, checkpoint.objective).set_index(["metric", "position"])["value"]
    scores = {"r2_tf": ("tf_accuracy", "r2"), "r2_greedy": ("greedy_accuracy", "r2"), "path_tf": ("tf_accuracy", "path"), "path_greedy": ("greedy_accuracy", "path")}
    return {"reference_file": name, "n_graphs": len(data), **{column: round(float(frame[key]), 6) for column, key in scores.items()}}


def ship(source: Path, name: str, results: Path, folder: Path | None = None) -> pd.DataFrame:
    """Copy the trained checkpoint ``source`` into the store as ``name`` with its untrained twin,
    evaluate both on the reference file, and write their manifest rows. ``results`` is the
    published job (``results/{job}``) whose provenance names ``source``'s run."""
    from workbench.checkpoint import load, save_checkpoint

    folder = folder or Path("checkpoints")  # shipping writes into the current checkout's store
    record = json.loads((Path(results) / "provenance.json").read_text())
    runs = {r["run"]: r for r in record["runs"]}
    if source.name not in runs:
        raise ValueError(f"{results}/provenance.json: no run {source.name!r} (its runs: {', '.join(runs)})")
    target = folder / name
    source_checkpoint = load(source)  # written again in the current format: weights, config and metrics, no optimizer
    save_checkpoint(target, source_checkpoint.config, source_checkpoint.model, source_checkpoint.step, source_checkpoint.metrics,
                    parts=source_checkpoint.parts)
    checkpoint = load(target)
    config, run = checkpoint.config, runs[source.name]
    shared = dict(arch=config.arch, objective=config.objective, graph=str(config.task.graph), n_layers=config.model.n_layers,
                  seed=config.train.seed, command=record["command"], run=source.name, commit=record.get("commit"))
    trained = {"name": name, **shared, "step": checkpoint.step, "train_seconds": run.get("train_seconds"),
               "weights_sha256": weights_sha256(target / "model.safetensors"), **evaluate_on_reference(checkpoint)}
    twin_name = name + TWIN_SUFFIX
    table = manifest(folder)
    table = table[~table["name"].isin([name, twin_name])]
    twin_path = _twin(folder, pd.Series({"name": twin_name, "untrained_twin_of": name}))
    twin = load(twin_path)
    untrained = {"name": twin_name, "untrained_twin_of": name, **shared, "step": 0, "train_seconds": 0.0,
                 "weights_sha256": weights_sha256(twin_path / "model.safetensors"), **evaluate_on_reference(twin)}
    rows = pd.concat([table, pd.DataFrame([trained, untrained])], ignore_index=True).reindex(columns=COLUMNS)
    atomic_write_text(folder / MANIFEST, rows.to_csv(index=False))
    return rows[rows["name"].isin([name, twin_name])]
