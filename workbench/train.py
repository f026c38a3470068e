"""Training loop: AdamW, linear warmup then cosine decay, seeded, exactly resumable.

Batches are index draws from in-memory int tensors (no per-sample Python work). The order of
the training set in epoch e is a permutation seeded by (train.seed, e), and the objective
builds each batch (``Objective.training_batch``) with a generator seeded by (train.seed,
step), so the batch at any step is a pure function of the step: resuming needs only the
step, the weights, the optimizer moments and the running loss sums, and a run killed and
resumed ends with the same weights as one never interrupted. The objective computes the
loss (``Objective.loss``) and may bring trainable parts of its own, optimised with the model. Evaluation writes ``metrics.jsonl`` every ``train.eval_every`` steps; a
checkpoint is saved every ``train.save_every`` steps, at the end, and on Ctrl-C.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from workbench.checkpoint import (
    Checkpoint,
    CheckpointError,
    load,
    load_optimizer_state,
    read_metrics,
    read_trainer_state,
    save_checkpoint,
    saved_step,
    save_snapshot,
    write_metrics,
)
from workbench.config import RunConfig, TaskConfig, TrainConfig, objective_of
from workbench.run_folder import recover, run_lock
from workbench.datasets import evaluation_graphs, training_graphs
from workbench.factory import build_model_and_parts
from workbench.models.gpt import compile_training
from workbench.devices import resolve_device
from workbench.identity import comparable_settings, incidental_changes, same_run, setting_changes
from workbench.evaluate import evaluate
from workbench.objectives import LossTerms, Objective, step_generator
from workbench.stopping import first_stop
from workbench.task import PathStarData, arm_paths

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


def _eval_record(model, test: PathStarData, objective: Objective, device: torch.device, parts: torch.nn.Module | None = None) -> dict[str, dict[str, float]]:
    """The evaluation of ``workbench.evaluate`` as {metric: {position: value}} for metrics.jsonl."""
    frame = evaluate(model, test, objective, device=device, parts=parts)
    record: dict[str, dict[str, float]] = {}
    for metric, position, value in frame[["metric", "position", "value"]].itertuples(index=False):
        record.setdefault(metric, {})[position] = value
    return record


def structured_samples(graphs: PathStarData) -> PathStarData:
    """Each graph d times, once with each arm's leaf as the goal (Frydenlund 2024, EMNLP):
    the batch then holds every answer of the same edge list, so no arm is a cue."""
    arms = arm_paths(graphs)  # (batch, d, l)
    d = graphs.spec.degree
    path = arms.reshape(-1, graphs.spec.path_length)
    return PathStarData(graphs.spec, graphs.edges.repeat_interleave(d, dim=0), graphs.source.repeat_interleave(d), path[:, -1].clone(), path.contiguous())


class _RunningLoss:
    """Sums of the logged training losses since the last evaluation; saved with the
    checkpoint so that the first line after a resume still covers the whole interval."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.count, self.sums = device, 0, {}

    def add(self, terms: LossTerms) -> None:
        values = {"position": terms.position_loss.detach(), **{k: v.detach().reshape(1) for k, v in terms.aux.items()}}
        for name, value in values.items():
            self.sums[name] = self.sums.get(name, torch.zeros_like(value)) + value
        self.count += 1

    def record(self, positions: list[str]) -> dict[str, dict[str, float]]:
        if not self.count:
            return {}
        out = {"loss": dict(zip(positions, (self.sums["position"] / self.count).tolist()))}
        aux = {name: (value / self.count).item() for name, value in self.sums.items() if name != "position"}
        return out | ({"aux_loss": aux} if aux else {})

    def reset(self) -> None:
        self.count, self.sums = 0, {}

    def state(self) -> dict[str, Any]:
        return {"loss_count": self.count, "loss_sums": {k: v.tolist() for k, v in self.sums.items()}}

    def restore(self, state: dict[str, Any]) -> None:
        self.count = int(state.get("loss_count", 0))
        self.sums = {k: torch.tensor(v, dtype=torch.float32, device=self.device) for k, v in state.get("loss_sums", {}).items()}


StopRule = Callable[[list[dict[str, Any]]], "str | None"]


def train(
    config: RunConfig, run_dir: str | Path, resume: bool = True, until_step: int | None = None, progress: bool = True,
    stop_when: StopRule | None = None,
) -> Checkpoint:
    """Train (or resume) the run in ``run_dir``; returns the final checkpoint.

    ``until_step`` stops early at that step (saving a resumable checkpoint) without changing
    the schedule, which always spans ``config.train.steps``. ``stop_when`` (e.g.
    ``workbench.stopping.PlateauRule``) is asked after each evaluation, with the metrics so
    far, whether to stop there; a reason ends training with a checkpoint at that step, and a
    resumed run whose last evaluation already gives one trains no further. The run folder is
    locked while training (a second process training into it is refused at once). A run
    that finished (its schedule, or where ``stop_when`` stopped it) needs no optimizer state to
    be returned: the weights of runs trained on another machine (a GPU) come back without it.
    """
    if until_step is not None and until_step < 0:
        raise ValueError(f"until_step={until_step}: expected a step >= 0")
    run_dir = Path(run_dir)
    with run_lock(run_dir):
        return _train_locked(config, run_dir, resume, until_step, progress, stop_when)


def trainable(model: torch.nn.Module, parts: torch.nn.Module | None) -> list[tuple[str, torch.nn.Parameter]]:
    """The model's parameters, then the objective's parts' (``objective.``-prefixed)."""
    return list(model.named_parameters()) + ([(f"objective.{n}", p) for n, p in parts.named_parameters()] if parts is not None else [])


def build_optimizer(cfg: TrainConfig, model: torch.nn.Module, parts: torch.nn.Module | None) -> torch.optim.AdamW:
    """AdamW over the model and the objective's parts; no weight decay on vectors, nor on
    Mamba's A_log (as mamba-ssm). ``foreach``: one kernel per operation over all tensors
    (bit-identical to the per-tensor loop, which is torch's default on CPU)."""
    named = trainable(model, parts)
    exempt = {n for n, p in named if p.ndim < 2 or n.endswith("A_log")}
    return torch.optim.AdamW(
        [{"params": [p for n, p in named if n not in exempt], "weight_decay": cfg.weight_decay},
         {"params": [p for n, p in named if n in exempt], "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2),
        foreach=True,
    )


def graphs_per_step(config: RunConfig) -> int:
    """Graphs drawn per step: the batch, or batch / degree with structured samples (each
    graph then gives one sequence per arm)."""
    cfg = config.train
    return cfg.batch_size // config.task.graph.degree if cfg.structured_samples else cfg.batch_size


def training_step(
    config: RunConfig, objective: Objective, model: torch.nn.Module, parts: torch.nn.Module | None,
    optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter], graphs: PathStarData, step: int, device: torch.device,
) -> LossTerms:
    """One optimiser step at ``step`` on ``graphs`` (``graphs_per_step`` of them): the
    schedule's learning rate, the objective's batch (its randomness seeded by (seed, step))
    and loss under bf16 autocast on CUDA, backward, gradient clipping over ``params`` (in
    ``trainable`` order, listed once by the caller), AdamW. A gradient that is not finite
    raises ``FloatingPointError`` before the optimiser step, so the weights stay as they were:
    one NaN step would otherwise turn every weight to NaN and the run would train on, at chance."""
    cfg = config.train
    for group in optimizer.param_groups:
        group["lr"] = learning_rate(step, cfg)
    if cfg.structured_samples:
        graphs = structured_samples(graphs)
    batch = {k: v.to(device) for k, v in objective.training_batch(graphs, step_generator(cfg.seed, step)).items()}
    with torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext():
        terms = objective.loss(model, parts, batch, config.task.graph)
    optimizer.zero_grad(set_to_none=True)
    terms.total.backward()
    norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else math.inf)  # no clipping at inf
    if not torch.isfinite(norm):
        raise FloatingPointError(f"step {step}: the gradient's norm is {norm.item()} (loss {terms.total.item():.4g})")
    optimizer.step()
    return terms


def _train_locked(config: RunConfig, run_dir: Path, resume: bool, until_step: int | None, progress: bool, stop_when: StopRule | None) -> Checkpoint:
    cfg = config.train
    device = resolve_device(cfg.device)
    objective, spec = objective_of(config), config.task.graph

    model, parts = build_model_and_parts(config, device)
    if getattr(config.model, "compile", False):
        compile_training(model, parts)
    optimizer, params = build_optimizer(cfg, model, parts), [p for _, p in trainable(model, parts)]

    step, metrics = 0, []
    running = _RunningLoss(device)
    recover(run_dir)
    if (run_dir / "config.json").exists():
        if not resume:
            raise FileExistsError(f"{run_dir}: a checkpoint exists; resume it or choose another --out")
        checkpoint = load(run_dir, device=device)
        saved = checkpoint.config
        if not same_run(saved, config):
            changes = setting_changes(comparable_settings(saved), comparable_settings(config))
            raise CheckpointError(f"{run_dir}/config.json: the saved run differs from the requested one: "
                                  + "; ".join(f"{key}: saved {a!r}, requested {b!r}" for key, a, b in changes))
        stopped = first_stop(stop_when, checkpoint.metrics) if stop_when is not None else None
        finished = stopped[0] == checkpoint.step if stopped is not None else checkpoint.step >= cfg.steps
        if finished and not (run_dir / "optimizer.safetensors").exists():
            return checkpoint  # finished, and brought here without its optimizer state (trained on another machine)
        model.load_state_dict(checkpoint.model.state_dict())
        if parts is not None:
            parts.load_state_dict(checkpoint.parts.state_dict())
        step = load_optimizer_state(run_dir, optimizer)
        running.restore(read_trainer_state(run_dir))
        metrics = [m for m in read_metrics(run_dir) if m["step"] <= step]
        changed = ", ".join(f"{key} {a!r} -> {b!r}" for key, a, b in incidental_changes(saved, config))
        print(f"{run_dir}: resuming from step {step} of {cfg.steps}"
              + (f"; settings that cannot change the weights now as requested: {changed}" if changed else ""), flush=True)

    train_data = training_graphs(config.task)
    eval_data = evaluation_graphs(config.task)[: cfg.eval_graphs]
    order = BatchOrder(len(train_data), graphs_per_step(config), cfg.seed)

    last = min(cfg.steps, until_step if until_step is not None else cfg.steps)
    if stop_when is not None:
        if hasattr(stop_when, "check_schedule"):
            stop_when.check_schedule(cfg.eval_every, "train.eval_every")
        stopped = first_stop(stop_when, metrics)
        if stopped is not None and stopped[0] < step:
            raise CheckpointError(f"{run_dir}: trained to step {step}, past step {stopped[0]}, where the stopping rule stops it "
                                  f"({stopped[1]}); train under this rule in a fresh folder")
        if stopped is not None:
            last = step  # stopped here by the rule before
    started = time.time() - (metrics[-1]["elapsed_s"] if metrics else 0.0)

    def log_eval() -> None:
        record: dict[str, Any] = {"step": step, "lr": learning_rate(min(step, cfg.steps - 1), cfg), "elapsed_s": time.time() - started}
        if running.count:
            record["train"] = running.record(spec.positions)
        record["test"] = _eval_record(model, eval_data, objective, device, parts)
        metrics.append(record)
        if run_dir.exists():
            write_metrics(run_dir, metrics)

    def save() -> None:
        save_checkpoint(run_dir, config, model, step, metrics, optimizer, parts=parts, trainer_state=running.state())

    if step == 0 and not metrics:  # a fresh run (a run resumed from its step-0 save has this record)
        log_eval()
        save()
    model.train()
    bar = tqdm(total=last, initial=step, disable=not progress, desc=f"{config.arch} {config.objective}", unit="step")
    try:
        while step < last:
            terms = training_step(config, objective, model, parts, optimizer, params, train_data[order.indices(step)], step, device)
            step += 1
            running.add(terms)
            bar.update(1)
            if step % cfg.eval_every == 0 or step == cfg.steps:
                log_eval()
                running.reset()
                test = metrics[-1]["test"]
                bar.set_postfix(loss=f"{terms.total.item():.3f}", r2=f"{test['tf_accuracy']['r2']:.3f}", path=f"{test['greedy_accuracy']['path']:.3f}")
                if stop_when is not None and step < last and stop_when(metrics):
                    last = step
            if cfg.snapshot_every and step % cfg.snapshot_every == 0:
                save_snapshot(run_dir, config, model, step, parts)
            if step % cfg.save_every == 0 or step == last:
                save()
    except KeyboardInterrupt:
        bar.close()
        save()
        raise TrainingInterrupted(run_dir, step) from None
    except FloatingPointError as error:
        bar.close()
        raise FloatingPointError(f"{run_dir}: {error}; stopped before that optimiser step, the checkpoint of step {saved_step(run_dir)} "
                                 "is kept (a lower train.lr or grad_clip, or another seed, may train on)") from None
    bar.close()
    return load(run_dir, device=device)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, after the checkpoint at ``step`` was saved."""

    def __init__(self, run_dir: Path, step: int) -> None:
        super().__init__(f"interrupted: saved step {step} to {run_dir}; run the same command again to resume")
        self.run_dir, self.step = run_dir, step


