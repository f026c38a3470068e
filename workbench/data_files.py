"""Load and save graph sets by file suffix: the paper's ``.txt`` or a ``.safetensors`` tensor file.

The tensor file stores ``edges``, ``source``, ``goal`` and ``path`` as int64 and the graph
spec in its metadata; it loads ~100x faster than text for large training sets and, like
every artefact here, holds no pickle.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from workbench.task import GraphSpec, PathStarData, structure_problem
from workbench.text_format import DataFormatError, read_graphs, write_graphs

SUFFIXES = (".txt", ".safetensors")


def load_data(path: str | Path, num_nodes: int | None = None) -> PathStarData:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such data file")
    if path.suffix == ".txt":
        return read_graphs(path, num_nodes=num_nodes)
    if path.suffix == ".safetensors":
        return _load_tensor_file(path)
    raise DataFormatError(f"{path}: unknown data file suffix {path.suffix!r}, expected one of {SUFFIXES}")


def read_safetensors(path: str | Path) -> dict[str, Tensor]:
    """``safetensors.torch.load_file``, with a truncated, corrupt or unreadable file reported
    as a ValueError naming it (the library's own errors name neither)."""
    with _safetensors_errors(path):
        return load_file(str(path))


def read_safetensors_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of a safetensors file ({} if it has none); errors as in ``read_safetensors``."""
    with _safetensors_errors(path), safe_open(str(path), framework="pt") as f:
        return f.metadata() or {}


@contextmanager
def _safetensors_errors(path: str | Path) -> Iterator[None]:
    """Turn safetensors' errors into a FileNotFoundError or a DataFormatError that name ``path``."""
    try:
        yield
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except (SafetensorError, OSError) as error:
        raise DataFormatError(f"{path}: not a readable safetensors file, truncated or corrupt? ({error})") from None


def _load_tensor_file(path: Path) -> PathStarData:
    """A graph set from a tensor file, every tensor checked before any indexing."""
    spec = _spec_from_metadata(path, read_safetensors_metadata(path))
    tensors = read_safetensors(path)
    missing = {"edges", "source", "goal", "path"} - tensors.keys()
    if missing:
        raise DataFormatError(f"{path}: tensors {sorted(missing)} missing")
    graphs = _checked_tensors(path, spec, tensors)
    data = PathStarData(spec, graphs["edges"], graphs["source"], graphs["goal"], graphs["path"])
    problem = structure_problem(data)
    if problem is not None:
        raise DataFormatError(f"{path}: graph {problem[0]} (0-based) is not a path-star graph of {spec} with its answer: expected {problem[1]}")
    return data


def _spec_from_metadata(path: Path, meta: dict[str, str]) -> GraphSpec:
    """The GraphSpec in metadata field 'graph', a JSON object {degree, path_length, num_nodes}."""
    if "graph" not in meta:
        raise DataFormatError(f"{path}: metadata field 'graph' missing; not a workbench data file")
    try:
        fields = json.loads(meta["graph"])
    except json.JSONDecodeError:
        raise DataFormatError(f"{path}: metadata field 'graph' is not JSON: {meta['graph'][:80]!r}") from None
    names = ("degree", "path_length", "num_nodes")
    if not isinstance(fields, dict) or sorted(fields) != sorted(names) or not all(type(fields[n]) is int for n in names):
        raise DataFormatError(
            f"{path}: metadata field 'graph' must be a JSON object with integer {', '.join(names)}, found {meta['graph'][:80]!r}"
        )
    try:
        return GraphSpec(**fields)
    except ValueError as error:
        raise DataFormatError(f"{path}: metadata field 'graph': {error}") from None


_INTEGER_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def _checked_tensors(path: Path, spec: GraphSpec, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """The four graph tensors as int64, after checking each: an integer dtype, the shape of
    ``spec`` with one batch length (edges (n, d*(l-1), 2), source and goal (n,), path (n, l))
    and node labels in 0..N-1."""
    n = len(tensors["source"]) if tensors["source"].ndim else 0
    shapes = {"edges": (n, spec.num_edges, 2), "source": (n,), "goal": (n,), "path": (n, spec.path_length)}
    checked = {}
    for name, shape in shapes.items():
        tensor = tensors[name]
        if tensor.dtype not in _INTEGER_DTYPES:
            raise DataFormatError(f"{path}: tensor '{name}' has dtype {tensor.dtype}, expected integer node labels (torch.int64)")
        if tuple(tensor.shape) != shape:
            raise DataFormatError(f"{path}: tensor '{name}' has shape {tuple(tensor.shape)}, expected {shape} for {n} graphs of {spec}")
        tensor = tensor.long()
        outside = (tensor < 0) | (tensor >= spec.num_nodes)
        if outside.any():
            graph, value = int(outside.nonzero()[0, 0]), int(tensor[outside][0])
            raise DataFormatError(f"{path}: tensor '{name}', graph {graph} (0-based): node label {value} outside 0..{spec.num_nodes - 1} of {spec}")
        checked[name] = tensor
    return checked


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
