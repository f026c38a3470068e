"""Training loop: AdamW, linear warmup then cosine decay, seeded, exactly resumable.

Batches are index draws from in-memory int tensors (no per-sample Python work). The order of
the training set in epoch e is a permutation seeded by (train.seed, e), so the batch at any
step is a pure function of the step: resuming needs only the step, the weights and the
optimizer moments, and a run killed and resumed ends with the same weights as one never
interrupted. Evaluation writes ``metrics.jsonl`` every ``train.eval_every`` steps; a
checkpoint is saved every ``train.save_every`` steps, at the end, and on Ctrl-C.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from workbench.checkpoint import (
    Checkpoint,
    CheckpointError,
    load,
    load_optimizer_state,
    read_metrics,
    save_checkpoint,
    save_snapshot,
    write_metrics,
)
from workbench.config import RunConfig, TaskConfig, TrainConfig
from workbench.data_files import load_data
from workbench.evaluate import evaluate
from workbench.models import build_model
from workbench.objectives import answer_logits, get_objective
from workbench.task import PathStarData, generate

TEST_SEED_OFFSET = 1_000_003  # the held-out set is drawn from another stream than the training set


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def task_data(task: TaskConfig) -> tuple[PathStarData, PathStarData]:
    """(train, test) graph sets: read from files where given, else generated from ``data_seed``."""
    spec = task.graph
    train = load_data(task.train_file, spec.num_nodes) if task.train_file else generate(spec, task.num_train, task.data_seed)
    test = load_data(task.test_file, spec.num_nodes) if task.test_file else held_out_graphs(task, task.num_test)
    for name, data in (("train", train), ("test", test)):
        if data.spec != spec:
            raise ValueError(f"task.{name}_file holds {data.spec} graphs, but the run is configured for {spec}")
    return train, test


def held_out_graphs(task: TaskConfig, num_graphs: int) -> PathStarData:
    """``num_graphs`` generated graphs of the held-out stream (another seed than training's)."""
    return generate(task.graph, num_graphs, task.data_seed + TEST_SEED_OFFSET)


def learning_rate(step: int, train: TrainConfig) -> float:
    """Linear warmup to ``lr`` over ``warmup_steps``, then cosine decay to ``lr * min_lr_ratio``."""
    if step < train.warmup_steps:
        return train.lr * (step + 1) / train.warmup_steps
    progress = min(1.0, (step - train.warmup_steps) / max(1, train.steps - train.warmup_steps))
    return train.lr * (train.min_lr_ratio + (1 - train.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


@dataclass
class BatchOrder:
    """Which training rows make up the batch at each step: epoch-wise seeded permutations."""

    num_rows: int
    batch_size: int
    seed: int

    def __post_init__(self) -> None:
        self._cache: dict[int, torch.Tensor] = {}

    def permutation(self, epoch: int) -> torch.Tensor:
        if epoch not in self._cache:
            generator = torch.Generator().manual_seed(self.seed * 1_000_033 + epoch)
            self._cache = {e: p for e, p in self._cache.items() if e >= epoch - 1}
            self._cache[epoch] = torch.randperm(self.num_rows, generator=generator)
        return self._cache[epoch]

    def indices(self, step: int) -> torch.Tensor:
        sample = torch.arange(step * self.batch_size, (step + 1) * self.batch_size)
        epoch, offset = sample // self.num_rows, sample % self.num_rows
        return torch.cat([self.permutation(int(e))[offset[epoch == e]] for e in epoch.unique()])


def _eval_record(model, test: PathStarData, config: RunConfig, device: torch.device) -> dict[str, dict[str, float]]:
    """The evaluation of ``workbench.evaluate`` as {metric: {position: value}} for metrics.jsonl."""
    frame = evaluate(model, test, get_objective(config.objective), device=device)
    record: dict[str, dict[str, float]] = {}
    for metric, position, value in frame[["metric", "position", "value"]].itertuples(index=False):
        record.setdefault(metric, {})[position] = value
    return record


def train(
    config: RunConfig, run_dir: str | Path, resume: bool = True, until_step: int | None = None, progress: bool = True
) -> Checkpoint:
    """Train (or resume) the run in ``run_dir``; returns the final checkpoint.

    ``until_step`` stops early at that step (saving a resumable checkpoint) without changing
    the schedule, which always spans ``config.train.steps``.
    """
    run_dir = Path(run_dir)
    cfg = config.train
    device = resolve_device(cfg.device)
    objective, spec = get_objective(config.objective), config.task.graph

    model = build_model(config, seed=cfg.seed).to(device)
    # no weight decay on vectors, nor on Mamba's A_log (as mamba-ssm)
    exempt = {n for n, p in model.named_parameters() if p.ndim < 2 or n.endswith("A_log")}
    decay = [p for n, p in model.named_parameters() if n not in exempt]
    no_decay = [p for n, p in model.named_parameters() if n in exempt]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2),
    )

    step, metrics = 0, []
    if (run_dir / "config.json").exists() or run_dir.with_name(f".{run_dir.name}.old").exists():
        if not resume:
            raise FileExistsError(f"{run_dir}: a checkpoint exists; resume it or choose another --out")
        checkpoint = load(run_dir, device=device)
        saved = checkpoint.config
        if _comparable(saved) != _comparable(config):
            raise CheckpointError(f"{run_dir}/config.json: the saved run differs from the requested one: {_diff(saved, config)}")
        model.load_state_dict(checkpoint.model.state_dict())
        step = load_optimizer_state(run_dir, optimizer)
        metrics = [m for m in read_metrics(run_dir) if m["step"] <= step]

    train_data, test_data = task_data(config.task)
    eval_data = test_data[: cfg.eval_graphs]
    targets = objective.targets(train_data.answer_tokens())
    inputs = objective.inputs(train_data.prompt_tokens(), targets, spec).to(device)
    targets = targets.to(device)
    mask = objective.loss_mask(spec).to(device)
    order = BatchOrder(len(train_data), cfg.batch_size, cfg.seed)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()

    last = min(cfg.steps, until_step if until_step is not None else cfg.steps)
    loss_sum = torch.zeros(spec.path_length, device=device)
    loss_count = 0
    started = time.time() - (metrics[-1]["elapsed_s"] if metrics else 0.0)

    def log_eval() -> None:
        record: dict[str, Any] = {"step": step, "lr": learning_rate(min(step, cfg.steps - 1), cfg), "elapsed_s": time.time() - started}
        if loss_count:
            per_position = objective.to_path_order((loss_sum / loss_count)[None])[0].tolist()
            record["train"] = {"loss": dict(zip(spec.positions, per_position))}
        record["test"] = _eval_record(model, eval_data, config, device)
        metrics.append(record)
        if run_dir.exists():
            write_metrics(run_dir, metrics)

    def save() -> None:
        save_checkpoint(run_dir, config, model, step, metrics, optimizer)

    if step == 0:
        log_eval()
        save()
    model.train()
    bar = tqdm(total=last, initial=step, disable=not progress, desc=f"{config.arch} {config.objective}", unit="step")
    try:
        while step < last:
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, cfg)
            rows = order.indices(step).to(device)
            with autocast:
                logits = answer_logits(model(inputs[rows]), spec).float()
            losses = F.cross_entropy(logits.transpose(1, 2), targets[rows], reduction="none")  # (batch, l)
            loss = losses[:, mask].mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            step += 1
            loss_sum += losses.detach().mean(0)
            loss_count += 1
            bar.update(1)
            if step % cfg.eval_every == 0 or step == cfg.steps:
                log_eval()
                loss_sum.zero_()
                loss_count = 0
                test = metrics[-1]["test"]
                bar.set_postfix(loss=f"{loss.item():.3f}", r2=f"{test['tf_accuracy']['r2']:.3f}", path=f"{test['greedy_accuracy']['path']:.3f}")
            if cfg.snapshot_every and step % cfg.snapshot_every == 0:
                save_snapshot(run_dir, config, model, step)
            if step % cfg.save_every == 0 or step == last:
                save()
    except KeyboardInterrupt:
        save()
        bar.close()
        raise
    bar.close()
    return load(run_dir, device=device)


def _comparable(config: RunConfig) -> dict[str, Any]:
    """The settings that must match to resume: everything but where and how it computes
    (device, and Mamba's scan implementation, which compute the same function)."""
    raw = config.to_dict()
    raw["train"].pop("device")
    raw["model"].pop("scan", None)
    return raw


def _diff(saved: RunConfig, wanted: RunConfig) -> str:
    a, b = _comparable(saved), _comparable(wanted)
    changes = [
        f"{section}.{key}: saved {a[section][key]!r}, requested {b[section][key]!r}"
        for section in a
        if isinstance(a[section], dict)
        for key in a[section]
        if a[section][key] != b[section].get(key)
    ]
    changes += [f"{key}: saved {a[key]!r}, requested {b[key]!r}" for key in a if not isinstance(a[key], dict) and a[key] != b[key]]
    return "; ".join(changes)
