"""Print each objective's training step time next to next_token's, on the same model.

    python benchmarks/objective_step_time.py                    # cpu preset, GPT and Mamba, G(2,5,50)
    python benchmarks/objective_step_time.py --archs gpt --steps 40
    python benchmarks/objective_step_time.py --objectives next_token mlm_u bst

A step is the trainer's own: the objective's batch (``training_batch``) and loss (``loss``,
including its extra parts), backward, clip, AdamW; timed after 3 warm-up steps. An
objective costing more than 1.5x next_token's step should say why in its docstring.
"""

from __future__ import annotations

import argparse

import torch

from workbench.config import apply_overrides, preset_config
from workbench.objectives import OBJECTIVES, objective_class
from workbench.study.estimate import time_training_steps


def step_time(arch: str, objective: str, steps: int, extra: list[str]) -> float:
    """Seconds per trainer step of the cpu preset on the CPU (the study calibration's timer)."""
    return time_training_steps(apply_overrides(preset_config("cpu", objective=objective, arch=arch), [*extra, "train.device=cpu"]), steps, warmup=3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", default=["gpt", "mamba"])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--objectives", nargs="+", default=list(OBJECTIVES), help="which objectives (next_token is always timed first, as the baseline)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (1 beside other work)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    variants = [("next_token", [])] + [(o, []) for o in args.objectives if o != "next_token"]
    if args.objectives == list(OBJECTIVES):
        variants.append(("next_token", ["train.structured_samples=true"]))
    for arch in args.archs:
        base = None
        print(f"\n{arch}, cpu preset, G(2,5,50), batch 128, {args.steps} timed steps:")
        for objective, extra in variants:
            if arch not in objective_class(objective).archs:
                print(f"  {objective:36s} does not apply to {arch}")
                continue
            seconds = step_time(arch, objective, args.steps, extra)
            base = base or seconds
            label = objective + (" + structured samples" if extra else "")
            print(f"  {label:36s} {1000 * seconds:7.1f} ms/step  {seconds / base:4.2f}x next_token")


if __name__ == "__main__":
    main()
