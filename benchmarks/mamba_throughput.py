"""Mamba training throughput next to Hugging Face's slow path and a GPT of the same width,
measured back to back in one process (sequences/s, AdamW step on real G(2,5,50) batches).
Each model is called the way training calls it (``workbench.models.logits_of``).

    python benchmarks/mamba_throughput.py                       # 4 layers x 128, batch 256
    python benchmarks/mamba_throughput.py --layers 2 --batch 128 --steps 10
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from workbench.models import logits_of
from workbench.models.gpt import GPTConfig, build_gpt
from workbench.models.mamba import HookedMamba, MambaConfig
from workbench.objectives import answer_logits, get_objective
from workbench.task import GraphSpec, generate

SPEC = GraphSpec(2, 5, 50)


def hf_mamba(cfg: MambaConfig) -> torch.nn.Module:
    from transformers import MambaConfig as HFMambaConfig, MambaForCausalLM

    hf = MambaForCausalLM(HFMambaConfig(
        vocab_size=SPEC.vocab_size, hidden_size=cfg.d_model, state_size=cfg.d_state, num_hidden_layers=cfg.n_layers,
        expand=cfg.expand, conv_kernel=cfg.d_conv, time_step_rank=cfg.resolved_dt_rank, use_bias=False,
        use_conv_bias=True, layer_norm_epsilon=cfg.norm_eps, tie_word_embeddings=True,
    ))
    return lambda tokens, _hf=hf: _hf(tokens).logits, hf  # type: ignore[return-value]


def throughput(forward, parameters, batch: int, steps: int) -> float:
    objective = get_objective("next_token")
    data = generate(SPEC, batch * (steps + 2), seed=0)
    inputs = objective.inputs(data.prompt_tokens(), data.answer_tokens(), SPEC)
    targets = data.answer_tokens()
    optimizer = torch.optim.AdamW(parameters, lr=1e-3)
    for step in range(steps + 2):
        if step == 2:
            start = time.perf_counter()
        rows = slice(step * batch, (step + 1) * batch)
        loss = F.cross_entropy(answer_logits(forward(inputs[rows]), SPEC).transpose(1, 2), targets[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--hf-steps", type=int, default=2, help="the HF slow path takes seconds per step")
    args = parser.parse_args()
    cfg = MambaConfig(n_layers=args.layers, d_model=args.width)
    print(f"{args.layers} layers x {args.width}, d_state {cfg.d_state}, batch {args.batch}, 31 tokens, {torch.get_num_threads()} threads")
    ours = HookedMamba(cfg, SPEC.vocab_size, seed=0)
    eager = HookedMamba(MambaConfig(n_layers=args.layers, d_model=args.width, scan="torch"), SPEC.vocab_size, seed=0)
    gpt = build_gpt(GPTConfig(n_layers=args.layers, d_model=args.width, n_heads=4), SPEC, seed=0)
    forward, hf = hf_mamba(cfg)
    rates = {
        "HookedMamba (compiled scan)": throughput(ours, ours.parameters(), args.batch, args.steps),
        "HookedMamba (eager scan)": throughput(eager, eager.parameters(), args.batch, args.steps),
        "GPT (TransformerLens native)": throughput(lambda tokens: logits_of(gpt, tokens), gpt.parameters(), args.batch, args.steps),
        "HF MambaForCausalLM slow path": throughput(forward, hf.parameters(), args.batch, args.hf_steps),
    }
    for name, rate in rates.items():
        print(f"{name:>30}: {rate:8,.0f} sequences/s")
    mamba, base = rates["HookedMamba (compiled scan)"], rates["HF MambaForCausalLM slow path"]
    print(f"HookedMamba / HF slow path: {mamba / base:.1f}x; GPT / HookedMamba: {rates['GPT (TransformerLens native)'] / mamba:.2f}x")


if __name__ == "__main__":
    main()
