"""Load and save graph sets by file suffix: the paper's ``.txt`` or a ``.safetensors`` tensor file.

The tensor file stores ``edges``, ``source``, ``goal`` and ``path`` as int64 and the graph
spec in its metadata; it loads ~100x faster than text for large training sets and, like
every artefact here, holds no pickle.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file, save_file

from workbench.task import GraphSpec, PathStarData, check_structure
from workbench.text_format import DataFormatError, read_graphs, write_graphs

SUFFIXES = (".txt", ".safetensors")


def load_data(path: str | Path, num_nodes: int | None = None) -> PathStarData:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such data file")
    if path.suffix == ".txt":
        return read_graphs(path, num_nodes=num_nodes)
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if "graph" not in meta:
            raise DataFormatError(f"{path}: metadata field 'graph' missing; not a workbench data file")
        spec = GraphSpec(**json.loads(meta["graph"]))
        tensors = load_file(str(path))
        missing = {"edges", "source", "goal", "path"} - tensors.keys()
        if missing:
            raise DataFormatError(f"{path}: tensors {sorted(missing)} missing")
        data = PathStarData(spec, tensors["edges"], tensors["source"], tensors["goal"], tensors["path"])
        if not check_structure(data).all():
            raise DataFormatError(f"{path}: graph {int((~check_structure(data)).nonzero()[0])} is not a path-star of {spec}")
        return data
    raise DataFormatError(f"{path}: unknown data file suffix {path.suffix!r}, expected one of {SUFFIXES}")


def save_data(data: PathStarData, path: str | Path) -> None:
    path = Path(path)
    if path.suffix == ".txt":
        write_graphs(data, path)
    elif path.suffix == ".safetensors":
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        spec = data.spec
        meta = {"graph": json.dumps({"degree": spec.degree, "path_length": spec.path_length, "num_nodes": spec.num_nodes})}
        tensors = {"edges": data.edges, "source": data.source, "goal": data.goal, "path": data.path}
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
        tmp.replace(path)
    else:
        raise DataFormatError(f"{path}: unknown data file suffix {path.suffix!r}, expected one of {SUFFIXES}")


def paper_filename(spec: GraphSpec, split: str, num_graphs: int) -> str:
    return f"deg_{spec.degree}_path_{spec.path_length}_nodes_{spec.num_nodes}_{split}_{num_graphs}.txt"
