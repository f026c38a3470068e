"""Train every objective x arch on the given graphs at the cpu preset (the main job's
schedule: GPT 1,500 steps, Mamba 1,000) and write one tidy table of held-out results.

    python scripts/remedies_table.py --graphs 2,3,50 2,5,50 --out runs/remedies
    python scripts/remedies_table.py --graphs 2,3,50 --archs gpt --objectives mtp token_dropout
    python scripts/remedies_table.py --graphs 2,3,50 2,4,50 2,5,50 --objectives mlm_u masked_diffusion bst \
        --out runs/bidirectional          # an objective that does not apply to an arch is skipped
    python scripts/remedies_table.py --graphs 2,3,50 --archs gpt --objectives token_dropout \
        --set objective.p=0.9 --set train.steps=3000 --tag p0.9-3k     # a variant: its own runs

Each run lands in OUT/checkpoints/{arch}-{objective}[-variant]-G{d}_{l}_{N} and resumes if
it is there; OUT/remedies.csv gets one row per (run, metric, position) on 5,000 held-out
graphs plus the training time. This is the README's remedy table until `workbench study`
(the studies issue) runs such grids on Ray.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from workbench.config import apply_overrides, preset_config
from workbench.evaluate import evaluate
from workbench.main_job import MAIN_JOB_SCHEDULE
from workbench.objectives import OBJECTIVES, objective_class
from workbench.task import GraphSpec
from workbench.text_format import atomic_write_text
from workbench.train import task_data, train

VARIANTS = {"structured": ["train.structured_samples=true"]}


def run(arch: str, objective: str, variant: str | None, spec: GraphSpec, out: Path, overrides: list[str], tag: str) -> pd.DataFrame:
    config = preset_config("cpu", objective=objective, arch=arch, degree=spec.degree, path_length=spec.path_length, num_nodes=spec.num_nodes)
    steps, every = MAIN_JOB_SCHEDULE[arch]
    config = apply_overrides(config, [f"train.steps={steps}", f"train.eval_every={every}", f"train.save_every={every}", *VARIANTS.get(variant, []), *overrides])
    variant = "-".join(v for v in (variant, tag) if v) or None
    name = f"{arch}-{objective}" + (f"-{variant}" if variant else "") + f"-G{spec.degree}_{spec.path_length}_{spec.num_nodes}"
    started = time.perf_counter()
    checkpoint = train(config, out / "checkpoints" / name, progress=False)
    _, test = task_data(config.task)
    frame = evaluate(checkpoint.model, test, checkpoint.objective)
    train_seconds = checkpoint.metrics[-1]["elapsed_s"]
    value = frame.set_index(["metric", "position"])["value"]
    print(f"{name}: r2 tf {value['tf_accuracy', 'r2']:.3f} greedy {value['greedy_accuracy', 'r2']:.3f}, path greedy "
          f"{value['greedy_accuracy', 'path']:.3f}, trained {train_seconds:.0f} s (this call {time.perf_counter() - started:.0f} s)", flush=True)
    identity = dict(arch=arch, objective=objective, variant=variant or "", overrides=" ".join(overrides), degree=spec.degree, path_length=spec.path_length,
                    num_nodes=spec.num_nodes, steps=checkpoint.step, train_seconds=train_seconds)
    return frame.assign(**identity)


IDENTITY = ["arch", "objective", "variant", "degree", "path_length", "num_nodes"]


def merged(table: Path, new: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``new`` plus those of an earlier call's table for runs this call did not make
    (each call adds its runs to OUT/remedies.csv instead of replacing the others')."""
    if not table.exists():
        return new
    old = pd.read_csv(table, keep_default_na=False)
    runs = set(new[IDENTITY].astype(str).itertuples(index=False))
    kept = old[[row not in runs for row in old[IDENTITY].astype(str).itertuples(index=False)]]
    return pd.concat([kept, new], ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--graphs", nargs="+", type=GraphSpec.parse, default=[GraphSpec(2, 3, 50), GraphSpec(2, 5, 50)])
    parser.add_argument("--archs", nargs="+", default=["gpt", "mamba"])
    parser.add_argument("--objectives", nargs="+", default=["next_token", "reverse", "mtp", "token_dropout", "future_bow", "nextlat", "next_token:structured"])
    parser.add_argument("--out", default="runs/remedies")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override for every run of this call (repeatable), e.g. objective.p=0.9 or model.n_layers=4")
    parser.add_argument("--tag", default="", help="names the variant that --set makes (required with --set: runs are told apart by name)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (1 keeps a run steady beside other work)")
    args = parser.parse_args()
    if args.overrides and not args.tag:
        parser.error("--set needs --tag, so that the variant's runs do not resume the plain runs' checkpoints")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    frames = []
    table = out / "remedies.csv"
    for spec in args.graphs:
        for arch in args.archs:
            for item in args.objectives:
                objective, _, variant = item.partition(":")
                if objective not in OBJECTIVES:
                    raise SystemExit(f"unknown objective {objective!r}")
                if arch not in objective_class(objective).archs:
                    print(f"{arch}-{objective}: does not apply to {arch} (skipped)", flush=True)
                    continue
                frames.append(run(arch, objective, variant or None, spec, out, args.overrides, args.tag))
                atomic_write_text(table, merged(table, pd.concat(frames, ignore_index=True)).to_csv(index=False))
    print(f"wrote {table}")


if __name__ == "__main__":
    main()
