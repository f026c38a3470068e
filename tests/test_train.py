import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import tiny_config
from workbench.checkpoint import CheckpointError
from workbench.config import TrainConfig, apply_overrides
from workbench.evaluate import evaluate
from workbench.train import BatchOrder, learning_rate, train


def test_learning_rate_warms_up_then_decays_to_the_floor():
    cfg = TrainConfig(steps=1000, lr=1.0, warmup_steps=100, min_lr_ratio=0.1)
    assert learning_rate(0, cfg) == pytest.approx(0.01)
    assert learning_rate(99, cfg) == pytest.approx(1.0)
    assert learning_rate(550, cfg) == pytest.approx(0.55)
    assert learning_rate(1000, cfg) == pytest.approx(0.1)


def test_batch_order_covers_each_epoch_once_and_crosses_epochs():
    order = BatchOrder(num_rows=10, batch_size=4, seed=0)
    rows = torch.cat([order.indices(s) for s in range(5)])  # 20 samples = 2 epochs
    assert sorted(rows[:10].tolist()) == list(range(10)) and sorted(rows[10:].tolist()) == list(range(10))
    assert not torch.equal(rows[:10], rows[10:])
    assert torch.equal(BatchOrder(10, 4, 0).indices(3), order.indices(3))


def test_killed_and_resumed_run_ends_with_the_same_weights(tmp_path):
    config = tiny_config(steps=30, eval_every=10, save_every=10, device="cpu")  # bit-exact resume is a CPU claim
    train(config, tmp_path / "straight", progress=False)
    train(config, tmp_path / "resumed", until_step=17, progress=False)  # stops mid-interval, as a kill after a save would
    assert json.loads((tmp_path / "resumed" / "config.json").read_text())["step"] == 17
    train(config, tmp_path / "resumed", progress=False)
    for name in ("model.safetensors", "optimizer.safetensors"):
        a, b = load_file(tmp_path / "straight" / name), load_file(tmp_path / "resumed" / name)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
    steps = [json.loads(line)["step"] for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 10, 20, 30]


def test_a_run_resumed_from_its_step_0_save_logs_step_0_once(tmp_path):
    config = tiny_config(steps=20, eval_every=10, save_every=10)
    train(config, tmp_path / "run", until_step=0, progress=False)  # as a kill right after the first save
    train(config, tmp_path / "run", progress=False)
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 10, 20]


def test_a_run_resumed_with_other_intervals_trains_the_same_weights(tmp_path, capsys):
    """Evaluations, saves and snapshots are written on the way and never change the weights,
    so a resume may ask for other intervals (a study that adopts a finished run trained with
    other ones reuses it)."""
    config = tiny_config(steps=30, eval_every=10, save_every=10, device="cpu")
    train(config, tmp_path / "straight", progress=False)
    train(config, tmp_path / "resumed", until_step=10, progress=False)
    other = ["train.snapshot_every=10", "train.eval_every=5", "train.eval_graphs=32", "train.save_every=5"]
    capsys.readouterr()
    train(apply_overrides(config, other), tmp_path / "resumed", progress=False)
    said = capsys.readouterr().out  # a resume says so, and which settings it takes from the request
    assert f"{tmp_path / 'resumed'}: resuming from step 10 of 30; settings that cannot change the weights now as requested: " in said
    assert "train.eval_every 10 -> 5, train.eval_graphs 64 -> 32, train.save_every 10 -> 5, train.snapshot_every 0 -> 10" in said
    a, b = load_file(tmp_path / "straight" / "model.safetensors"), load_file(tmp_path / "resumed" / "model.safetensors")
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert sorted(p.name for p in (tmp_path / "resumed" / "snapshots").iterdir()) == ["step_0000020", "step_0000030"]
    steps = [json.loads(line)["step"] for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 10, 15, 20, 25, 30]


def test_training_with_the_compiled_forward_follows_the_eager_run_and_resumes_it(tmp_path, capsys):
    """``model.compile=true`` trains through ``torch.compile``'s trace of the unhooked forward
    (one graph: ``fullgraph``). It computes the same function, so the run's losses and weights
    follow the eager run's up to rounding, and it is not part of the run's identity: an eager
    run resumes compiled."""
    from torch._dynamo.utils import counters

    config = tiny_config(steps=20, eval_every=10, save_every=10, device="cpu")
    eager = train(config, tmp_path / "eager", progress=False)
    torch._dynamo.reset()
    counters.clear()
    train(config, tmp_path / "compiled", until_step=10, progress=False)
    compiled = train(apply_overrides(config, ["model.compile=true"]), tmp_path / "compiled", progress=False)
    assert "model.compile False -> True" in capsys.readouterr().out
    assert counters["stats"]["unique_graphs"] >= 1  # the training steps ran the traced forward
    losses = [torch.tensor([list(m["train"]["loss"].values()) for m in run.metrics if "train" in m]) for run in (eager, compiled)]
    assert losses[0].shape == (2, 3)  # steps 1-10 and 11-20, r1..r3
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-4, atol=1e-5)
    for (name, a), b in zip(eager.model.state_dict().items(), compiled.model.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4, msg=name)


def test_a_non_finite_gradient_stops_training_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    """A NaN gradient at step 13 (injected by a hook on one weight) stops the run before the
    optimiser step, names the run, the step and the checkpoint kept; the saved weights are
    finite and resuming retrains from them."""
    import workbench.train as trainer

    build = trainer.build_model_and_parts
    calls = {"n": 0}

    def poisoned(config, device):
        model, parts = build(config, device)

        def hook(grad):
            calls["n"] += 1
            return grad * float("nan") if calls["n"] == 14 else grad  # the 14th backward is step 13

        next(model.parameters()).register_hook(hook)
        return model, parts

    monkeypatch.setattr(trainer, "build_model_and_parts", poisoned)
    config = tiny_config(steps=30, eval_every=10, save_every=5, device="cpu")
    with pytest.raises(FloatingPointError, match=r"run: step 13: the gradient's norm is nan .*checkpoint of step 10 is kept"):
        train(config, tmp_path / "run", progress=False)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["step"] == 10
    assert all(torch.isfinite(w).all() for w in load_file(tmp_path / "run" / "model.safetensors").values())
    monkeypatch.setattr(trainer, "build_model_and_parts", build)
    train(config, tmp_path / "run", progress=False)  # resumes from step 10 and finishes
    assert json.loads((tmp_path / "run" / "config.json").read_text())["step"] == 30


def test_resume_refuses_a_different_config(tmp_path):
    config = tiny_config(steps=4)
    train(config, tmp_path / "run", progress=False)
    with pytest.raises(CheckpointError, match="train.lr: saved 0.003, requested 0.1"):
        train(apply_overrides(config, ["train.lr=0.1"]), tmp_path / "run", progress=False)


def test_a_finished_run_without_its_optimizer_state_is_returned_as_it_is(tmp_path):
    """Weights trained on another machine (a GPU) come back without their optimizer state; a
    study then computes their stages here. A run short of its schedule still needs it."""
    config = tiny_config(steps=20, eval_every=10, save_every=10, device="cpu")
    for name, until in (("finished", None), ("unfinished", 10)):
        train(config, tmp_path / name, until_step=until, progress=False)
        for file in ("optimizer.safetensors", "trainer_state.json"):
            (tmp_path / name / file).unlink()
    weights = (tmp_path / "finished" / "model.safetensors").read_bytes()
    checkpoint = train(config, tmp_path / "finished", progress=False)
    assert checkpoint.step == 20 and [m["step"] for m in checkpoint.metrics] == [0, 10, 20]
    assert (tmp_path / "finished" / "model.safetensors").read_bytes() == weights  # not trained, not rewritten
    with pytest.raises(CheckpointError, match="trainer_state.json: not found; this checkpoint cannot be resumed"):
        train(config, tmp_path / "unfinished", progress=False)
    with pytest.raises(CheckpointError, match="train.steps: saved 20, requested 30"):  # a longer schedule is another run
        train(apply_overrides(config, ["train.steps=30"]), tmp_path / "finished", progress=False)

    from workbench.stopping import PlateauRule

    rule = PlateauRule(window=10, min_fall=0.99, solved=1.0)  # r2's loss never falls 99% in 10 steps: stops at step 10
    train(config, tmp_path / "stopped", progress=False, stop_when=rule)
    for file in ("optimizer.safetensors", "trainer_state.json"):
        (tmp_path / "stopped" / file).unlink()
    assert train(config, tmp_path / "stopped", progress=False, stop_when=rule).step == 10  # finished by its rule


@pytest.mark.parametrize("objective", ["next_token", "reverse", "teacherless"])
def test_a_small_model_memorises_a_handful_of_graphs(tmp_path, objective):
    config = apply_overrides(
        tiny_config(objective, steps=300, batch_size=16, lr=1e-2, eval_every=1000, save_every=1000),
        ["task.num_train=16", "model.d_model=64", "model.n_layers=2", "model.n_heads=4"],
    )
    checkpoint = train(config, tmp_path / "run", progress=False)
    from workbench.datasets import training_graphs

    train_graphs = training_graphs(config.task)
    frame = evaluate(checkpoint.model, train_graphs, checkpoint.objective)
    assert frame.query("metric == 'greedy_accuracy' and position == 'path'").value.item() >= 15 / 16  # training is float32: allow one of the 16 graphs on another CPU
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in log] == [0, 300] and set(log[-1]["train"]["loss"]) == {"r1", "r2", "r3"}
