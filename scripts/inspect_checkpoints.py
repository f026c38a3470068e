"""The analyses of a trained model that need no training history, on any checkpoints: the
Clever Hans cheat test, attention onto the looked-up edge (GPT) and goal patching.

For checkpoints trained elsewhere (say on a GPU, where ``workbench main`` did not run), beside
``workbench probe`` on the same checkpoints:

    python scripts/inspect_checkpoints.py runs/gpu4/gpt-future_bow-L4-b512-G2_5_50 \\
        runs/default/checkpoints/gpt-next_token --out runs/gpu4/analyses

Writes cheat_test.csv, edge_lookup.csv and patching.csv (one row per measurement; a ``run``
column names the checkpoint directory) and patching.png into --out. All checkpoints must be
of one graph: the same held-out graphs (the run's own evaluation stream) go to each.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from workbench.analyses import clever_hans, patching
from workbench.checkpoint import load
from workbench.text_format import atomic_write_text
from workbench.train import evaluation_graphs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--out", required=True)
    parser.add_argument("--graphs", type=int, default=2_000, help="held-out graphs for the cheat test (patching and attention use half / a quarter)")
    args = parser.parse_args()

    checkpoints = [load(path) for path in args.checkpoints]
    graphs = {c.config.task.graph for c in checkpoints}
    if len(graphs) > 1:
        parser.error(f"the checkpoints are of different graphs: {sorted(map(str, graphs))}")
    data = evaluation_graphs(checkpoints[0].config.task, args.graphs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    tables: dict[str, list[pd.DataFrame]] = {"cheat_test": [], "edge_lookup": [], "patching": []}
    for c in checkpoints:
        who = dict(run=Path(c.path).name, arch=c.config.arch, objective=c.config.objective, layers=c.config.model.n_layers, step=c.step)
        tables["cheat_test"].append(clever_hans.cheat_test(c.model, data, c.objective).assign(**who))
        if c.config.arch == "gpt":
            tables["edge_lookup"].append(clever_hans.edge_lookup_attention(c.model, data[: args.graphs // 4], c.objective).assign(**who))
        tables["patching"].append(patching.goal_patching(c.model, data[: args.graphs // 2], c.objective).assign(**who))
        print(f"{c.path}: done", flush=True)
    for name, frames in tables.items():
        if frames:
            atomic_write_text(out / f"{name}.csv", pd.concat(frames, ignore_index=True).to_csv(index=False))
    patched = pd.concat(tables["patching"], ignore_index=True)
    patching.plot_patching(patched.assign(objective=patched["run"]), out / "patching.png")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
