"""The Belief State Transformer objective on the G(2,3) example of ``workbench.task``
(2,8|5,2|5,9|9,3/5,8=5,2,8; '=' at 14, r1 15, r2 16, r3 17, the empty suffix 18): its pair
set and both targets, its loss against a pair-by-pair hand computation (each prefix and each
reversed suffix run on its own), its backward encoder as a saved part, and exact resume."""

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from conftest import tiny_config, tiny_mamba_config
from test_remedies import test_killed_and_resumed_run_ends_with_the_same_weights as check_exact_resume
from test_task import hand_graph
import workbench
from workbench.factory import build_model_and_parts
from workbench.config import RunConfig
from workbench.models import final_norm, forward_with_residual
from workbench.objectives import get_objective, step_generator
from workbench.objectives.bst import backward_tokens, belief_pairs, pair_targets
from workbench.train import train

FILLER = 13


def bst_config(arch: str, **train_settings) -> RunConfig:
    raw = (tiny_config(**train_settings) if arch == "gpt" else tiny_mamba_config(**train_settings)).to_dict()
    raw["objective"] = "bst"
    if arch == "mamba":
        raw["model"]["scan"] = "torch"  # no compile: seconds
    return RunConfig.from_dict(raw)


def test_pairs_are_the_answer_span_with_the_suffix_two_or_more_ahead():
    assert belief_pairs(hand_graph().spec) == [(14, 16), (14, 17), (14, 18), (15, 17), (15, 18), (16, 18)]


def test_both_targets_of_every_pair():
    data, objective = hand_graph(), get_objective("bst")
    batch = objective.training_batch(data, step_generator(0, 0))
    next_targets, prev_targets = pair_targets(batch["inputs"], batch["targets"], data.spec)
    assert next_targets.tolist() == [[5, 5, 5, 2, 2, 8]]  # x_{t+1}
    assert prev_targets.tolist() == [[5, 2, 8, 2, 8, 8]]  # x_{k-1}
    assert backward_tokens(batch["targets"], data.spec).tolist() == [[FILLER, 8, 2]]  # '$' r3 r2


@pytest.mark.parametrize("arch", ["gpt", "mamba"])
def test_loss_against_a_pair_by_pair_hand_computation(arch):
    config = bst_config(arch)
    model, parts = build_model_and_parts(config)
    assert type(parts["backward"]) is type(model)  # the backward encoder has the run's arch
    data, objective = hand_graph(), get_objective("bst")
    batch = objective.training_batch(data, step_generator(0, 0))
    out = objective.loss(model, parts, batch, data.spec)
    sequence = data.prompt_tokens()[0].tolist() + data.answer_tokens()[0].tolist()  # 18 tokens, end = 18

    def state(encoder, tokens):
        _, resid, _ = forward_with_residual(encoder, torch.tensor([tokens]))
        return final_norm(encoder, resid)[0, -1]

    next_losses, prev_losses = [], []
    for t, k in belief_pairs(data.spec):
        forward_state = state(model, sequence[: t + 1])  # reads x_0..x_t
        backward_state = state(parts["backward"], [FILLER] + sequence[k:][::-1])  # '$' then x_end-1 .. x_k
        next_logits, prev_logits = parts["head"](forward_state, backward_state)
        if k == 18:  # the empty suffix's next token is the forward model's own
            next_logits = model(torch.tensor([sequence[: t + 1]]))[0, -1]
        next_losses.append(F.cross_entropy(next_logits[None], torch.tensor([sequence[t + 1]])))
        prev_losses.append(F.cross_entropy(prev_logits[None], torch.tensor([sequence[k - 1]])))
    expected = (sum(next_losses) + sum(prev_losses)) / 6
    torch.testing.assert_close(out.total, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(sum(out.terms.values()), out.total)
    assert set(out.terms) == {"r1", "r2", "r3", "next", "prev"}
    torch.testing.assert_close(out.terms["prev"], sum(prev_losses) / 6, rtol=1e-4, atol=1e-5)
    # r1..r3: the empty-suffix pairs (14,18), (15,18), (16,18), the model's own next-token loss
    torch.testing.assert_close(out.position_loss, torch.stack([next_losses[2], next_losses[4], next_losses[5]]), rtol=1e-4, atol=1e-5)


def test_greedy_decoding_is_the_forward_model_alone():
    """B on the empty suffix is a constant; its next-token output is the model's own, so the
    decoder is next_token's greedy one on the forward model."""
    config = bst_config("gpt")
    model, _ = build_model_and_parts(config)
    data = hand_graph()
    assert torch.equal(get_objective("bst").decode(model, data.prompt_tokens(), data.spec), get_objective("next_token").decode(model, data.prompt_tokens(), data.spec))


@pytest.mark.parametrize("arch", ["gpt", "mamba"])
def test_backward_encoder_is_saved_as_a_part_and_loads_strictly(tmp_path, arch):
    checkpoint = train(bst_config(arch, steps=2, eval_every=2, save_every=2), tmp_path / "run", progress=False)
    state = load_file(tmp_path / "run" / "model.safetensors")
    assert any(k.startswith("objective.backward.") for k in state) and any(k.startswith("objective.head.") for k in state)
    assert not any(k.startswith("backward.") for k in state)  # the forward model's own names are unchanged
    assert set(checkpoint.metrics[-1]["train"]["aux_loss"]) == {"next", "prev"}
    loaded = workbench.load(tmp_path / "run")
    for (name, a), b in zip(checkpoint.parts.state_dict().items(), loaded.parts.state_dict().values()):
        assert torch.equal(a.cpu(), b), name  # trained where "auto" put it, loaded on the CPU


@pytest.mark.parametrize("arch", ["gpt", "mamba"])
def test_killed_and_resumed_bst_run_ends_with_the_same_weights(tmp_path, arch):
    if arch == "gpt":
        check_exact_resume(tmp_path, "bst", [])
        return
    config = bst_config("mamba", steps=6, eval_every=3, save_every=3, device="cpu")  # bit-exact: a CPU claim
    train(config, tmp_path / "straight", progress=False)
    train(config, tmp_path / "resumed", until_step=3, progress=False)
    train(config, tmp_path / "resumed", progress=False)
    a, b = load_file(tmp_path / "straight" / "model.safetensors"), load_file(tmp_path / "resumed" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_backward_encoder_is_saved_once_under_its_own_names_and_the_aliased_format_still_loads(tmp_path):
    """A bridge nested in the parts is saved through its own state_dict (not every internal alias
    of each weight, which made a 4-layer bst checkpoint 16.7 MB instead of 7); a checkpoint
    written the old way loads to the same weights."""
    from safetensors.torch import save_file
    from torch import nn

    config = bst_config("gpt", steps=2, eval_every=2, save_every=2)
    checkpoint = train(config, tmp_path / "run", progress=False)
    saved = load_file(str(tmp_path / "run" / "model.safetensors"))
    backward = {k for k in saved if k.startswith("objective.backward.")}
    assert backward == {f"objective.backward.{k}" for k in checkpoint.model.state_dict()}  # the forward model's names, once each
    # the old format: every alias of the backward encoder's weights
    legacy = {k: v for k, v in saved.items() if not k.startswith("objective.")}
    legacy.update({f"objective.{k}": v.detach().clone().contiguous() for k, v in nn.Module.state_dict(checkpoint.parts).items()})
    assert len(legacy) > len(saved) + len(backward)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "run" / "model.safetensors"), framework="pt") as handle:
        metadata = handle.metadata()
    save_file(legacy, str(tmp_path / "run" / "model.safetensors"), metadata=metadata)
    reloaded = workbench.load(tmp_path / "run")
    for key, value in checkpoint.parts.state_dict().items():
        assert torch.equal(value, reloaded.parts.state_dict()[key]), key
