"""The default experiment, end to end: the README's main job.

Trains ``cpu``-preset models (GPT by default; ``archs`` adds Mamba) on G(2,5,50) under each objective, evaluates every model on its
held-out graphs, and writes ``results.csv`` (one row per measurement) next to the
checkpoints. Training resumes, so a second call reuses every finished stage.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from workbench.config import preset_config
from workbench.evaluate import evaluate, format_table
from workbench.train import task_data, train

DEFAULT_OBJECTIVES = ("next_token", "reverse", "teacherless")


def run_main_job(
    out: Path, objectives: list[str] | tuple[str, ...] = DEFAULT_OBJECTIVES, archs: list[str] | tuple[str, ...] = ("gpt",), progress: bool = True
) -> pd.DataFrame:
    frames = []
    for arch, objective in ((a, o) for a in archs for o in objectives):
        config = preset_config("cpu", objective=objective, arch=arch)
        run_dir = out / "checkpoints" / f"{config.arch}-{objective}"
        checkpoint = train(config, run_dir, progress=progress)
        _, test = task_data(config.task)
        frame = evaluate(checkpoint.model, test, checkpoint.objective)
        print(f"\n{config.arch} / {objective}, step {checkpoint.step}, {len(test)} held-out graphs:\n{format_table(frame)}")
        spec = config.task.graph
        identity = dict(arch=config.arch, objective=objective, degree=spec.degree, path_length=spec.path_length, num_nodes=spec.num_nodes, seed=config.train.seed, step=checkpoint.step)
        frames.append(frame.assign(**identity)[[*identity, *frame.columns]])
    results = pd.concat(frames, ignore_index=True)
    results.to_csv(out / "results.csv", index=False)
    print(f"\nwrote {out / 'results.csv'}")
    return results
