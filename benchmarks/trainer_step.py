"""The trainer's whole step beside a plain PyTorch GPT of the same size, in one process.

    python benchmarks/trainer_step.py                       # cpu preset, G(2,5,50), eager and compiled
    python benchmarks/trainer_step.py --objectives next_token mtp bst --no-compile
    python benchmarks/trainer_step.py --profile             # where one trainer step's time goes
    python benchmarks/trainer_step.py --flops --objectives next_token mtp bst   # arithmetic per step

The workbench's step is what ``workbench train`` does per step: the batch indices, the
objective's batch (its own randomness), the loss under the objective, backward, clipping,
AdamW, and the running loss sums it logs (``train.training_step`` and the loop around it);
evaluations every ``eval_every`` steps are not part of it. The plain loop is a nanoGPT-style
GPT of the same shape (pre-LN, learned positions, tanh-GELU, biases, untied head) with
``F.scaled_dot_product_attention``, fed the same token tensors, with the same loss, clip and
AdamW; it computes every row, as such a loop does. A second plain loop computes its last
block on the answer rows alone, as the workbench's GPT does (``logits_of``'s ``first``), so
that the lead over the first is seen for what it is. Rounds of ``--steps`` steps alternate
between the loops, so a slow phase of the machine falls on all of them; each figure is the
median of the per-round ratios to the first plain loop, with its quartiles. Run it alone: two
processes using both cores slow each other many times over.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from workbench.factory import build_model_and_parts
from workbench.config import apply_overrides, objective_of, preset_config
from workbench.datasets import training_graphs
from workbench.objectives import answer_logits, get_objective
from workbench.models.gpt import compile_training
from workbench.publish import device_name
from workbench.train import BatchOrder, _RunningLoss, build_optimizer, graphs_per_step, trainable, training_step


class PlainBlock(nn.Module):
    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv, self.out = nn.Linear(d_model, 3 * d_model), nn.Linear(d_model, d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(approximate="tanh"), nn.Linear(4 * d_model, d_model))

    def forward(self, x: torch.Tensor, first: int = 0) -> torch.Tensor:
        """Rows ``first:`` of the block's output (queries there, keys and values everywhere)."""
        batch, pos, d_model = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d_model, dim=-1)
        heads = [t.view(batch, pos, self.n_heads, -1).transpose(1, 2) for t in (q, k, v)]
        if first:
            allowed = torch.ones(pos, pos, dtype=torch.bool, device=x.device).tril()[first:]
            attended = F.scaled_dot_product_attention(heads[0][:, :, first:], *heads[1:], attn_mask=allowed)
        else:
            attended = F.scaled_dot_product_attention(*heads, is_causal=True)
        x = x[:, first:] + self.out(attended.transpose(1, 2).reshape(batch, pos - first, d_model))
        return x + self.mlp(self.ln2(x))


class PlainGPT(nn.Module):
    """The same function as the workbench's GPT, written the plain way."""

    def __init__(self, vocab: int, n_ctx: int, d_model: int, n_layers: int, n_heads: int) -> None:
        super().__init__()
        self.embed, self.pos = nn.Embedding(vocab, d_model), nn.Embedding(n_ctx, d_model)
        self.blocks = nn.ModuleList(PlainBlock(d_model, n_heads) for _ in range(n_layers))
        self.ln_final, self.unembed = nn.LayerNorm(d_model), nn.Linear(d_model, vocab)
        for parameter in self.parameters():
            if parameter.ndim > 1:
                nn.init.normal_(parameter, std=0.02)

    def forward(self, tokens: torch.Tensor, first: int = 0) -> torch.Tensor:
        """Logits of rows ``first:``; the last block computes only those rows."""
        x = self.embed(tokens) + self.pos(torch.arange(tokens.shape[1], device=tokens.device))
        for i, block in enumerate(self.blocks):
            x = block(x, first if i == len(self.blocks) - 1 else 0)
        return self.unembed(self.ln_final(x))


def trainer_config(objective: str):
    """The cpu preset under ``objective``, on the CPU: the trainer every mode of this benchmark times."""
    return apply_overrides(preset_config("cpu", objective=objective), ["train.device=cpu"])


def trainer_rounds(config, compiled: bool, rounds: int, steps: int) -> list[float]:
    """Sequences per second of each round of the workbench's own steps (a generator: one
    round per ``next``)."""
    torch.manual_seed(0)
    device = torch.device("cpu")
    objective = objective_of(config)
    model, parts = build_model_and_parts(config, device)
    optimizer, params = build_optimizer(config.train, model, parts), [p for _, p in trainable(model, parts)]
    data = training_graphs(config.task)
    order = BatchOrder(len(data), graphs_per_step(config), config.train.seed)
    running = _RunningLoss(device)
    if compiled:  # what `--set model.compile=true` trains with: the unhooked forward, traced whole
        compile_training(model, parts)
    step = 0
    for _ in range(3):  # warm-up (and the compile)
        running.add(training_step(config, objective, model, parts, optimizer, params, data[order.indices(step)], step, device))
        step += 1
    while True:
        start = time.perf_counter()
        for _ in range(steps):
            running.add(training_step(config, objective, model, parts, optimizer, params, data[order.indices(step)], step, device))
            step += 1
        yield steps * config.train.batch_size / (time.perf_counter() - start)


def plain_rounds(config, compiled: bool, steps: int, answer_rows_only: bool = False):
    """The same for the plain SDPA GPT on next_token's inputs and loss; every row, or with
    ``answer_rows_only`` the last block on the answer rows alone, as the workbench's GPT."""
    torch.manual_seed(0)
    spec, objective = config.task.graph, get_objective("next_token")
    model = PlainGPT(spec.vocab_size, spec.prompt_length + spec.path_length - 1, config.model.d_model, config.model.n_layers, config.model.n_heads)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay)
    forward = torch.compile(model) if compiled else model
    data = training_graphs(config.task)
    batch = config.train.batch_size
    inputs = objective.inputs(data.prompt_tokens(), data.answer_tokens(), spec)
    targets = data.answer_tokens()
    step = 0

    def one_step() -> None:
        nonlocal step
        rows = torch.randint(0, len(data), (batch,), generator=torch.Generator().manual_seed(step))
        if answer_rows_only:
            logits = forward(inputs[rows], spec.eq_position)[:, : spec.path_length]
        else:
            logits = answer_logits(forward(inputs[rows]), spec)
        loss = F.cross_entropy(logits.transpose(1, 2), targets[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
        optimizer.step()
        step += 1

    for _ in range(3):
        one_step()
    while True:
        start = time.perf_counter()
        for _ in range(steps):
            one_step()
        yield steps * batch / (time.perf_counter() - start)


def compare(objectives: list[str], compiled: bool, rounds: int, steps: int) -> dict[str, float]:
    """Rounds alternate between the plain loop and each objective's trainer; each round of an
    objective is divided by the plain round just before it, and the median of those ratios
    (with the quartiles: a shared machine's speed drifts by 10-20% between rounds) is the figure.
    Returns each loop's median sequences/s."""
    base = preset_config("cpu", objective="next_token")
    plain, plain_answer = plain_rounds(base, compiled, steps), plain_rounds(base, compiled, steps, answer_rows_only=True)
    trainers = {o: trainer_rounds(trainer_config(o), compiled, rounds, steps) for o in objectives}
    rates: dict[str, list[float]] = {"plain": [], "plain_answer": [], **{o: [] for o in objectives}}
    for _ in range(rounds):  # interleaved
        rates["plain"].append(next(plain))
        rates["plain_answer"].append(next(plain_answer))
        for objective, rounds_of in trainers.items():
            rates[objective].append(next(rounds_of))
    mode = "compiled" if compiled else "eager"
    print(f"\n{mode}: {device_name()}, torch {torch.__version__}; GPT cpu preset (2 x 128), batch {base.train.batch_size} of G(2,5,50), {torch.get_num_threads()} threads, "
          f"{rounds} interleaved rounds of {steps} steps; ratio: median over rounds [quartiles]")
    print(f"  {'plain SDPA GPT loop':<34} {statistics.median(rates['plain']):8,.0f} sequences/s   1.00x")
    labels = {"plain_answer": "plain loop, answer rows only", **{o: f"workbench trainer, {o}" for o in objectives}}
    for key, label in labels.items():
        ratios = [mine / theirs for mine, theirs in zip(rates[key], rates["plain"])]
        q1, q2, q3 = statistics.quantiles(ratios, n=4)
        versus = ""
        if key in objectives and "next_token" in rates and key != "next_token":
            slower = statistics.median(nt / mine for nt, mine in zip(rates["next_token"], rates[key]))
            versus = f"   {slower:.2f}x next_token's step time"
        print(f"  {label:<34} {statistics.median(rates[key]):8,.0f} sequences/s   "
              f"{statistics.median(ratios):.2f}x [{q1:.2f}, {q3:.2f}] the plain loop{versus}")
    return {key: statistics.median(values) for key, values in rates.items()}


def profile(objective: str, steps: int) -> None:
    """torch.profiler over ``steps`` trainer steps: the operators that take the time."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    rounds = trainer_rounds(trainer_config(objective), False, 1, steps)
    next(rounds)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        next(rounds)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


def arithmetic(objectives: list[str], steps: int) -> None:
    """Floating-point operations per trainer step (torch.profiler's count of the matrix
    products, forward and backward) and the time in those products, each beside the first
    objective's: how much of an objective's extra step time is arithmetic it must do.
    (``torch.utils.flop_counter`` would not do: its module hooks send the GPT down the hooked
    path, which computes every row.)"""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    first: tuple[float, float] | None = None
    print(f"\narithmetic per trainer step ({device_name()}, {torch.get_num_threads()} threads, {steps} steps profiled):")
    for objective in objectives:
        rounds = trainer_rounds(trainer_config(objective), False, 1, steps)
        next(rounds)
        with torch_profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
            next(rounds)
        events = prof.key_averages()
        flops = sum(e.flops for e in events) / steps
        matmul_ms = sum(e.self_cpu_time_total for e in events if e.key in ("aten::mm", "aten::addmm", "aten::bmm")) / steps / 1e3
        first = first or (flops, matmul_ms)
        print(f"  {objective:<12} {flops / 1e9:6.2f} GFLOP ({flops / first[0]:.2f}x)   in matrix products {matmul_ms:6.1f} ms ({matmul_ms / first[1]:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objectives", nargs="+", default=["next_token"])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-compile", action="store_true", help="eager only")
    parser.add_argument("--profile", action="store_true", help="profile the trainer's step of the first objective instead")
    parser.add_argument("--flops", action="store_true", help="count each objective's arithmetic per step instead")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.profile:
        profile(args.objectives[0], args.steps)
        return
    if args.flops:
        arithmetic(args.objectives, args.steps)
        return
    eager = compare(args.objectives, False, args.rounds, args.steps)
    if not args.no_compile:
        compiled = compare(args.objectives, True, args.rounds, args.steps)
        print("\ndoes compile pay (`--set model.compile=true`)? compiled / eager sequences/s, medians of separate phases:")
        for key in eager:
            print(f"  {key:<34} {compiled[key] / eager[key]:.2f}x")


if __name__ == "__main__":
    main()
