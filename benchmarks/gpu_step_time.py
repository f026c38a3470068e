"""Training step time on a GPU at a preset's size (bf16 autocast, as the trainer runs it),
with the time the preset's whole schedule would take, and peak GPU memory.

    python benchmarks/gpu_step_time.py                                  # paper preset, GPT and Mamba
    python benchmarks/gpu_step_time.py --preset cpu --steps 100
    python benchmarks/gpu_step_time.py --archs mamba --scans compiled mamba_ssm torch

A step is the trainer's: the objective's batch, its loss under autocast, backward, clip,
AdamW; timed after warm-up steps (which also absorb torch.compile), synchronised.
"""

from __future__ import annotations

import argparse
import time

import torch

from workbench.factory import build_model_and_parts
from workbench.config import RunConfig, apply_overrides, preset_config
from workbench.config import objective_of
from workbench.objectives import step_generator
from workbench.task import generate


def step_time(config: RunConfig, steps: int, warmup: int) -> tuple[float, float]:
    """(seconds per step, peak GiB)."""
    spec, obj, batch = config.task.graph, objective_of(config), config.train.batch_size
    model, parts = build_model_and_parts(config, device="cuda")
    params = list(model.parameters()) + (list(parts.parameters()) if parts is not None else [])
    optimizer = torch.optim.AdamW(params, lr=config.train.lr)
    data = generate(spec, batch * 4, seed=0)
    batches = [obj.training_batch(data[i * batch : (i + 1) * batch], step_generator(0, i)) for i in range(4)]
    batches = [{k: v.cuda() for k, v in b.items()} for b in batches]
    torch.cuda.reset_peak_memory_stats()

    def one(i: int) -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            terms = obj.loss(model, parts, batches[i % 4], spec)
        optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        torch.nn.utils.clip_grad_norm_(params, config.train.grad_clip)
        optimizer.step()

    for i in range(warmup):
        one(i)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(steps):
        one(i)
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps, torch.cuda.max_memory_allocated() / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--archs", nargs="+", default=["gpt", "mamba"])
    parser.add_argument("--objective", default="next_token")
    parser.add_argument("--scans", nargs="+", default=["compiled", "mamba_ssm"], help="Mamba's selective-scan implementations to time")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--set", nargs="+", default=[], dest="extra", metavar="SECTION.FIELD=VALUE")
    args = parser.parse_args()
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, preset {args.preset}, {args.objective}, G(2,5,50), bf16 autocast")
    for arch in args.archs:
        for scan in args.scans if arch == "mamba" else [None]:
            extra = args.extra + ([f"model.scan={scan}"] if scan else [])
            config = apply_overrides(preset_config(args.preset, objective=args.objective, arch=arch), extra)
            try:
                seconds, peak = step_time(config, args.steps, args.warmup)
            except (ImportError, ValueError, RuntimeError) as error:
                print(f"  {arch:5} {scan or '':9} failed: {str(error).splitlines()[0]}")
                continue
            schedule = config.train.steps * seconds / 60
            print(f"  {arch:5} {scan or '':9} {seconds * 1e3:8.1f} ms/step  {config.train.batch_size / seconds:9.0f} seq/s  peak {peak:5.2f} GiB"
                  f"  {config.train.steps:,} steps = {schedule:.0f} min")


if __name__ == "__main__":
    main()
