"""The masked objectives (mlm_u, masked_diffusion) on the bidirectional GPT: attention both
ways, the mask token in the vocabulary, masking rates and weights on a fixed generator,
iterative unmasking in a known order, the unmasking order in the evaluation, exact resume."""

import json
import math

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from conftest import tiny_config, tiny_mamba_config
from test_remedies import test_killed_and_resumed_run_ends_with_the_same_weights as check_exact_resume
from test_task import hand_graph
from workbench.factory import build_model_and_parts
from workbench.checkpoint import load as load_checkpoint
from workbench.cli import main as cli_main
from workbench.config import RunConfig, apply_overrides
from workbench.evaluate import evaluate
from workbench.objectives import get_objective, step_generator
from workbench.objectives.masked import RATE_FLOOR
from workbench.task import GraphSpec, generate
from workbench.train import train

MASK = 14  # N + 4 for the G(2,3,10) example
PROMPT = [2, 8, 10, 5, 2, 10, 5, 9, 10, 9, 3, 12, 5, 8, 11]


def test_the_bidirectional_model_attends_both_ways_and_the_causal_one_does_not():
    tokens = torch.tensor([PROMPT + [MASK, MASK]])
    later = tokens.clone()
    later[0, -1] = 2  # change only the last position
    for objective, earlier_changes in (("mlm_u", True), ("next_token", False)):
        model, _ = build_model_and_parts(tiny_config(objective))
        model.eval()
        inputs, changed = (tokens, later) if objective == "mlm_u" else (tokens.clamp(max=13), later.clamp(max=13))
        a, b = model(inputs)[0, :-1], model(changed)[0, :-1]
        assert (not torch.allclose(a, b, atol=1e-6)) == earlier_changes, objective


def test_the_mask_token_extends_only_the_masked_objectives_vocabulary(tmp_path):
    for objective, d_vocab in (("mlm_u", 15), ("masked_diffusion", 15), ("next_token", 14)):
        model, _ = build_model_and_parts(tiny_config(objective))
        assert model.cfg.d_vocab == d_vocab
    config = apply_overrides(tiny_config("mlm_u", steps=2, eval_every=2, save_every=2), ["objective.order=left_to_right"])
    checkpoint = train(config, tmp_path / "run", progress=False)
    assert checkpoint.config.objective_params.order == "left_to_right"
    assert checkpoint.metrics[-1]["test"]["fill_step"] == {"r1": 1.0, "r2": 2.0, "r3": 3.0}  # logged at every evaluation
    payload = json.loads((tmp_path / "run" / "config.json").read_text())
    assert payload["tokenizer"] == {"nodes": "0..9", "|": 10, "=": 11, "/": 12, "$": 13, "[MASK]": 14}


def test_clean_layout_is_the_all_masked_answer_with_a_slot_for_the_goal():
    objective, data = get_objective("mlm_u"), hand_graph()
    assert objective.inputs(data.prompt_tokens(), objective.targets(data.answer_tokens()), data.spec).tolist() == [PROMPT + [MASK] * 3]
    assert objective.slot_names(3) == ["[MASK]"] * 3
    model, _ = build_model_and_parts(tiny_config("mlm_u"))
    assert model.cfg.n_ctx == len(PROMPT) + 3
    earlier = get_objective("mlm_u", get_objective("mlm_u").Params(goal_slot=False))  # the layout before the goal slot
    assert earlier.inputs(data.prompt_tokens(), earlier.targets(data.answer_tokens()), data.spec).tolist() == [PROMPT + [MASK] * 2]


def test_a_masked_checkpoint_written_before_the_goal_slot_loads_with_its_own_layout(tmp_path):
    checkpoint = train(tiny_config("mlm_u", steps=2, eval_every=2, save_every=2), tmp_path / "run", progress=False)
    assert checkpoint.config.objective_params.goal_slot and checkpoint.model.cfg.n_ctx == 18
    old = train(apply_overrides(tiny_config("mlm_u", steps=2, eval_every=2, save_every=2), ["objective.goal_slot=false"]), tmp_path / "old", progress=False)
    config_file = tmp_path / "old" / "config.json"
    payload = json.loads(config_file.read_text())
    del payload["run"]["objective_params"]["goal_slot"]  # as config.json was written then
    config_file.write_text(json.dumps(payload))
    weights = tmp_path / "old" / "model.safetensors"  # and the copy of the config in the weights
    tensors, metadata = load_file(weights), safe_open(str(weights), framework="pt").metadata()
    run = json.loads(metadata["run_config"])
    del run["objective_params"]["goal_slot"]
    save_file(tensors, weights, metadata | {"run_config": json.dumps(run)})
    loaded = load_checkpoint(tmp_path / "old")
    assert loaded.config.objective_params.goal_slot is False and loaded.model.cfg.n_ctx == 17
    tokens = torch.tensor([PROMPT + [MASK] * 2])
    torch.testing.assert_close(loaded.model(tokens), old.model(tokens))
    with pytest.raises(ValueError, match="goal_slot"):  # --set still checks the field
        apply_overrides(tiny_config("mlm_u"), ["objective.goal_slot=maybe"])


def test_masking_rates_slots_and_weights_on_a_fixed_generator():
    spec = GraphSpec(2, 4, 20)
    data = generate(spec, 4_000, seed=0)
    objective = get_objective("masked_diffusion")
    batch = objective.training_batch(data, step_generator(3, 7))
    again = objective.training_batch(data, step_generator(3, 7))
    assert all(torch.equal(batch[k], again[k]) for k in batch)
    # the draws: t ~ U(0,1) per sequence, p = (1 - floor) t + floor, each token masked with prob p
    generator = step_generator(3, 7)
    rate = (1 - RATE_FLOOR) * torch.rand(4_000, generator=generator) + RATE_FLOOR
    masked = torch.rand(4_000, 4, generator=generator) < rate[:, None]
    assert torch.equal(batch["rate"], rate) and torch.equal(batch["masked"], masked)
    slots, answer = batch["inputs"][:, spec.prompt_length :], data.answer_tokens()
    assert torch.equal(slots, torch.where(masked, spec.vocab_size, answer))  # the goal has a slot too
    assert torch.equal(batch["inputs"][:, : spec.prompt_length], data.prompt_tokens())
    assert abs(masked.float().mean().item() - 0.5) < 0.02  # E[p] = 1/2
    high, low = rate > 0.9, rate < 0.1
    assert masked[high].float().mean() > 0.9 and masked[low].float().mean() < 0.1


class ConstantModel(nn.Module):
    """Uniform logits everywhere: every cross-entropy is ln(d_vocab)."""

    def __init__(self, d_vocab: int):
        super().__init__()
        self.d_vocab, self.bias = d_vocab, nn.Parameter(torch.zeros(()))

    def forward(self, tokens):
        return torch.zeros(*tokens.shape, self.d_vocab) + self.bias


@pytest.mark.parametrize("name", ["mlm_u", "masked_diffusion"])
def test_loss_is_the_masked_tokens_cross_entropy_weighted_one_over_t_for_diffusion(name):
    spec = GraphSpec(2, 4, 20)
    data = generate(spec, 256, seed=1)
    objective = get_objective(name)
    batch = objective.training_batch(data, step_generator(0, 0))
    out = objective.loss(ConstantModel(spec.vocab_size + 1), None, batch, spec)
    ce, masked = math.log(spec.vocab_size + 1), batch["masked"].float()
    if name == "mlm_u":
        expected = ce  # the mean over masked tokens
    else:
        expected = ce * (masked / batch["rate"][:, None]).sum().item() / masked.numel()
    assert out.total.item() == pytest.approx(expected, rel=1e-5)
    torch.testing.assert_close(sum(out.terms.values()), out.total)
    assert list(out.terms) == ["r1", "r2", "r3", "r4"]
    torch.testing.assert_close(out.position_loss, torch.full((4,), ce))


class KnownConfidence(nn.Module):
    """Puts the true answer token of the hand graph at each answer output, with a fixed margin
    per position (r1: 2, r2: 1, r3: 3); the mask token always gets the highest logit, which
    decoding must never choose. Records every input it is given."""

    def __init__(self, margins=(2.0, 1.0, 3.0)):
        super().__init__()
        self.margins, self.seen = margins, []

    def forward(self, tokens):
        self.seen.append(tokens.clone())
        logits = torch.zeros(*tokens.shape, MASK + 1)
        logits[..., MASK] = 10.0
        for k, (token, margin) in enumerate(zip([5, 2, 8], self.margins)):
            if 14 + k < tokens.shape[1]:  # (a left-to-right decoder feeds shorter inputs)
                logits[:, 14 + k, token] = margin
        return logits


@pytest.mark.parametrize("order, fill", [("confidence", [2, 3, 1]), ("left_to_right", [1, 2, 3])])
def test_iterative_unmasking_fills_in_the_expected_order(order, fill):
    objective = get_objective("mlm_u", get_objective("mlm_u").Params(order=order))
    data, model = hand_graph(), KnownConfidence()
    emitted, fill_step = objective.decode_with_order(model, data.prompt_tokens(), data.spec)
    assert emitted.tolist() == [[5, 2, 8]] and fill_step.tolist() == [fill]
    assert len(model.seen) == 3  # one token per step
    slots = [seen[0, 15:].tolist() for seen in model.seen]
    if order == "confidence":  # r3 first into the goal's slot, then r1, then r2
        assert slots == [[MASK, MASK, MASK], [MASK, MASK, 8], [5, MASK, 8]]
    else:
        assert slots == [[MASK, MASK, MASK], [5, MASK, MASK], [5, 2, MASK]]


def test_evaluation_records_the_unmasking_order():
    data = hand_graph()
    frame = evaluate(KnownConfidence(), data, get_objective("mlm_u")).set_index(["metric", "position"])["value"]
    assert [frame["fill_step", p] for p in ("r1", "r2", "r3")] == [2.0, 3.0, 1.0]
    assert frame["greedy_accuracy", "path"] == 1.0
    plain = evaluate(KnownConfidence(), data, get_objective("next_token"))
    assert "fill_step" not in set(plain["metric"])


def test_masked_objectives_do_not_apply_to_mamba(tmp_path, capsys):
    raw = tiny_mamba_config().to_dict()
    raw["objective"] = "mlm_u"
    with pytest.raises(ValueError, match="objective 'mlm_u' does not apply to arch 'mamba'.*bidirectional"):
        RunConfig.from_dict(raw)
    with pytest.raises(SystemExit):
        cli_main(["train", "--objective", "masked_diffusion", "--arch", "mamba", "--graph", "2,3,10", "--out", str(tmp_path / "run")])
    assert "does not apply to arch 'mamba'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("objective, extra", [("mlm_u", []), ("masked_diffusion", ["objective.order=left_to_right"])])
def test_killed_and_resumed_masked_run_ends_with_the_same_weights(tmp_path, objective, extra):
    check_exact_resume(tmp_path, objective, extra)
