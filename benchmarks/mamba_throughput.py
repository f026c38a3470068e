"""Mamba training throughput next to Hugging Face's slow path and a GPT of the same width, in
one process (sequences/s, AdamW step on real G(2,5,50) batches). Each model is called the way
next-token training calls it (``workbench.objectives.answer_logits_of``: the GPT's last block
and head compute the answer rows alone; Mamba's scan runs every position, its logits are
sliced).

    python benchmarks/mamba_throughput.py                       # 4 layers x 128, batch 256
    python benchmarks/mamba_throughput.py --layers 2 --batch 128 --rounds 3

Rounds alternate between the models (``--steps`` steps each, ``--hf-steps`` for the slow
path, which takes seconds per step), so a slow phase of the machine falls on all of them; the
figures are each model's median rate over the rounds and the median of the per-round ratios.
Run it alone: two processes using both cores slow each other many times over.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F

from workbench.models.gpt import GPTConfig, build_gpt
from workbench.models.mamba import HookedMamba, MambaConfig
from workbench.objectives import answer_logits, answer_logits_of, get_objective
from workbench.publish import device_name
from workbench.task import GraphSpec, generate

SPEC = GraphSpec(2, 5, 50)


def hf_mamba(cfg: MambaConfig) -> tuple[Callable, torch.nn.Module]:
    from transformers import MambaConfig as HFMambaConfig, MambaForCausalLM

    hf = MambaForCausalLM(HFMambaConfig(
        vocab_size=SPEC.vocab_size, hidden_size=cfg.d_model, state_size=cfg.d_state, num_hidden_layers=cfg.n_layers,
        expand=cfg.expand, conv_kernel=cfg.d_conv, time_step_rank=cfg.resolved_dt_rank, use_bias=False,
        use_conv_bias=True, layer_norm_epsilon=cfg.norm_eps, tie_word_embeddings=True,
    ))
    return (lambda tokens: answer_logits(hf(tokens).logits, SPEC)), hf


def rounds(forward: Callable, parameters, batch: int, steps: int) -> Iterator[float]:
    """Sequences per second of each round of ``steps`` training steps of ``forward`` (tokens
    to the answer logits), one round per ``next``; the first call also runs two warm-up steps."""
    objective = get_objective("next_token")
    data = generate(SPEC, batch * 64, seed=0)
    inputs = objective.inputs(data.prompt_tokens(), data.answer_tokens(), SPEC)
    targets = data.answer_tokens()
    optimizer = torch.optim.AdamW(list(parameters), lr=1e-3)
    step = 0

    def train_step() -> None:
        nonlocal step
        rows = slice((step % 64) * batch, (step % 64 + 1) * batch)
        loss = F.cross_entropy(forward(inputs[rows]).transpose(1, 2), targets[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1

    for _ in range(2):
        train_step()
    while True:
        start = time.perf_counter()
        for _ in range(steps):
            train_step()
        yield steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--hf-steps", type=int, default=1, help="the HF slow path takes seconds per step")
    args = parser.parse_args()
    print(f"{device_name()}, torch {torch.__version__}; {args.layers} layers x {args.width}, d_state 16, batch {args.batch}, 31 tokens, {torch.get_num_threads()} threads, "
          f"{args.rounds} rounds of {args.steps} steps ({args.hf_steps} for the HF slow path)")
    models = {}
    for name, scan in (("HookedMamba, C++ scan kernel (default)", "cpp"), ("HookedMamba, compiled scan", "compiled"),
                       ("HookedMamba, eager scan", "torch")):
        model = HookedMamba(MambaConfig(n_layers=args.layers, d_model=args.width, scan=scan), SPEC.vocab_size, seed=0)
        models[name] = rounds(lambda tokens, model=model: answer_logits_of(model, tokens, SPEC), model.parameters(), args.batch, args.steps)
    gpt = build_gpt(GPTConfig(n_layers=args.layers, d_model=args.width, n_heads=4), SPEC, seed=0)
    models["GPT of the same width and depth"] = rounds(lambda tokens: answer_logits_of(gpt, tokens, SPEC), gpt.parameters(), args.batch, args.steps)
    forward, hf = hf_mamba(MambaConfig(n_layers=args.layers, d_model=args.width))
    models["HF MambaForCausalLM slow path"] = rounds(forward, hf.parameters(), args.batch, args.hf_steps)
    rates: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, model_rounds in models.items():
            rates[name].append(next(model_rounds))
    for name, values in rates.items():
        print(f"{name:>40}: {statistics.median(values):8,.0f} sequences/s")
    ours, gpt_name, hf_name = "HookedMamba, C++ scan kernel (default)", "GPT of the same width and depth", "HF MambaForCausalLM slow path"

    def ratio(a: str, b: str) -> str:
        per_round = sorted(x / y for x, y in zip(rates[a], rates[b]))
        quartiles = statistics.quantiles(per_round, n=4) if len(per_round) > 1 else per_round * 3
        return f"{statistics.median(per_round):.2f}x [{quartiles[0]:.2f}, {quartiles[2]:.2f}]"

    print(f"HookedMamba (C++ kernel) / HF slow path: {ratio(ours, hf_name)}")
    print(f"HookedMamba (C++ kernel) / GPT:          {ratio(ours, gpt_name)}")
    print(f"HookedMamba (compiled scan) / GPT:       {ratio('HookedMamba, compiled scan', gpt_name)}")


if __name__ == "__main__":
    main()
