"""Print timings: graph generation, training throughput per preset, evaluation speed.

    python benchmarks/throughput.py                 # cpu and paper presets, 20 timed steps each
    python benchmarks/throughput.py --presets cpu --steps 50

Training throughput is measured on real G(2,5,50) batches with the trainer's own step
(forward, loss on the answer tokens, backward, clip, AdamW), after 3 warm-up steps.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from workbench.config import preset_config
from workbench.evaluate import evaluate
from workbench.factory import build_model
from workbench.objectives import answer_logits, get_objective
from workbench.task import GraphSpec, generate
from workbench.devices import resolve_device

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference-data" / "deg_2_path_5_nodes_50_test_20000.txt"


def time_generation(spec: GraphSpec, num_graphs: int) -> float:
    start = time.perf_counter()
    generate(spec, num_graphs, seed=0)
    return time.perf_counter() - start


def training_throughput(preset: str, steps: int, device: torch.device) -> float:
    config = preset_config(preset)
    spec, objective = config.task.graph, get_objective(config.objective)
    model = build_model(config, seed=0).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.lr)
    batch = config.train.batch_size
    data = generate(spec, batch * (steps + 3), seed=0)
    targets = data.answer_tokens().to(device)
    inputs = objective.inputs(data.prompt_tokens(), data.answer_tokens(), spec).to(device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    for step in range(steps + 3):
        if step == 3:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        rows = slice(step * batch, (step + 1) * batch)
        with autocast:
            logits = answer_logits(model(inputs[rows]), spec).float()
        loss = F.cross_entropy(logits.transpose(1, 2), targets[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["cpu", "paper"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"generate 200,000 graphs of G(2,5,50): {time_generation(GraphSpec(2, 5, 50), 200_000):.2f} s")
    for preset in args.presets:
        config = preset_config(preset)
        m = config.model
        rate = training_throughput(preset, args.steps, device)
        print(f"train {preset:>12} ({m.n_layers} x {m.d_model}, batch {config.train.batch_size}): {rate:,.0f} sequences/s")
    if REFERENCE.exists():
        from workbench.text_format import read_graphs

        start = time.perf_counter()
        data = read_graphs(REFERENCE)
        read_s = time.perf_counter() - start
        config = preset_config("cpu")
        model = build_model(config, seed=0).to(device)
        start = time.perf_counter()
        evaluate(model, data, get_objective("next_token"), device=device)
        print(f"read {REFERENCE.name}: {read_s:.2f} s; evaluate a cpu-preset model on it: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
