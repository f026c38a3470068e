"""Print how fast graph sets are made and checked: the generator, the structure check, reading
the text file back, and the whole `workbench data generate` command as a user runs it.

    python benchmarks/generation.py                      # 200,000 graphs of G(2,5,50)
    python benchmarks/generation.py --graph 5,10,100 --num-graphs 50000

Budget (the paper's training set, 200,000 graphs): the command under 10 s on 2 CPU cores.
In-process figures are the best of ``--repeats`` runs; the command is timed once.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from workbench.task import GraphSpec, check_structure, generate
from workbench.text_format import read_graphs


def best_time(work: Callable[[], object], repeats: int) -> float:
    """The fastest of ``repeats`` runs, in seconds (the least disturbed by other processes)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def command_time(spec: GraphSpec, num_graphs: int, out: Path) -> float:
    """Wall time of the CLI command, interpreter start and imports included."""
    graph = f"{spec.degree},{spec.path_length},{spec.num_nodes}"
    command = [sys.executable, "-m", "workbench.cli", "data", "generate", "--graph", graph,
               "--num-graphs", str(num_graphs), "--seed", "0", "--out", str(out)]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--graph", type=GraphSpec.parse, default=GraphSpec(2, 5, 50))
    parser.add_argument("--num-graphs", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    spec, n = args.graph, args.num_graphs
    print(f"{n:,} graphs of {spec}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    seconds = best_time(lambda: generate(spec, n, seed=0), args.repeats)
    print(f"generate:        {seconds:6.2f} s  {n / seconds:12,.0f} graphs/s")
    data = generate(spec, n, seed=0)
    seconds = best_time(lambda: check_structure(data), args.repeats)
    print(f"check_structure: {seconds:6.2f} s  {n / seconds:12,.0f} graphs/s")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"deg_{spec.degree}_path_{spec.path_length}_nodes_{spec.num_nodes}_train_{n}.txt"
        seconds = command_time(spec, n, out)
        print(f"workbench data generate --graph ... --num-graphs {n}: {seconds:.2f} s (whole command)")
        seconds = best_time(lambda: read_graphs(out), 1)
        print(f"read_graphs of that file (parse + check): {seconds:.2f} s  {n / seconds:,.0f} graphs/s")


if __name__ == "__main__":
    main()
