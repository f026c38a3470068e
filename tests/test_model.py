import pytest
import torch

from workbench import models

from workbench.models import gpt
from workbench.models.gpt import GPTConfig, build_gpt, context_length, unhooked_forward
from workbench.task import GraphSpec, generate

SPEC = GraphSpec(2, 5, 50)


def test_hook_names_and_shapes_are_transformer_lens_ones():
    model = build_gpt(GPTConfig(n_layers=2, d_model=64, n_heads=4), SPEC, seed=0)
    tokens = generate(SPEC, 3, seed=0).prompt_tokens()
    logits, cache = model.run_with_cache(tokens)
    assert logits.shape == (3, 27, 54)
    for name in ["hook_embed", "hook_pos_embed", "ln_final.hook_normalized"] + [
        f"blocks.{i}.{hook}" for i in range(2) for hook in ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "attn.hook_pattern", "mlp.hook_post")
    ]:
        assert name in cache, name
    assert cache["blocks.1.hook_resid_post"].shape == (3, 27, 64)
    assert cache["blocks.0.attn.hook_pattern"].shape == (3, 4, 27, 27)
    torch.testing.assert_close(cache["blocks.0.attn.hook_pattern"].sum(-1), torch.ones(3, 4, 27))


def test_model_is_causal():
    model = build_gpt(GPTConfig(n_layers=2, d_model=64, n_heads=4), SPEC, seed=0)
    tokens = generate(SPEC, 4, seed=1).prompt_tokens()
    changed = tokens.clone()
    changed[:, 20] = (changed[:, 20] + 1) % 50
    a, b = model(tokens), model(changed)
    torch.testing.assert_close(a[:, :20], b[:, :20])
    assert (a[:, 20:] - b[:, 20:]).abs().max() > 1e-4


def test_seeded_init_with_small_positions():
    a = build_gpt(GPTConfig(), SPEC, seed=1).state_dict()
    b = build_gpt(GPTConfig(), SPEC, seed=1).state_dict()
    c = build_gpt(GPTConfig(), SPEC, seed=2).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["embed.weight"], c["embed.weight"])
    assert a["pos_embed.weight"].shape == (context_length(SPEC), 128)
    assert 0.015 < a["pos_embed.weight"].std() < 0.025  # not the paper code's N(0, 1)


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("attention", ["causal", "bidirectional"])
def test_unhooked_path_is_bit_identical_to_the_hooked_model(attention):
    """Training and decoding skip the bridge when no hook is attached: the logits, the final
    residual, the embeddings and every gradient must equal the hooked forward's exactly."""
    model = build_gpt(GPTConfig(n_layers=2, d_model=64, n_heads=4), SPEC, seed=0, attention=attention)
    model.train()
    tokens = generate(SPEC, 8, seed=3).prompt_tokens()
    hooked_logits, cache = model.run_with_cache(tokens, names_filter=["hook_embed", "blocks.1.hook_resid_post"])
    model(tokens).square().mean().backward()
    hooked_grads = _grads(model)
    model.zero_grad()

    assert not models._hooked(model)
    logits, resid, embed = unhooked_forward(model, tokens)
    assert torch.equal(logits, hooked_logits)
    assert torch.equal(resid, cache["blocks.1.hook_resid_post"])
    assert torch.equal(embed, cache["hook_embed"])
    models.logits_of(model, tokens).square().mean().backward()
    assert all(torch.equal(hooked_grads[name], grad) for name, grad in _grads(model).items())


@pytest.mark.parametrize("attention", ["causal", "bidirectional"])
@pytest.mark.parametrize("n_layers", [1, 2])
def test_answer_rows_alone_match_the_full_forward(attention, n_layers):
    """``first`` spares the last block the rows before it: its rows of the logits and the
    residual, and every gradient of a loss on them, must match the full forward's (up to the
    rounding of matrix products of another shape), and the hooked path must slice the same."""
    model = build_gpt(GPTConfig(n_layers=n_layers, d_model=64, n_heads=4), SPEC, seed=0, attention=attention)
    tokens = generate(SPEC, 8, seed=3).prompt_tokens()
    first = SPEC.eq_position
    full_logits, full_resid, _ = unhooked_forward(model, tokens)
    full_logits[:, first:].square().mean().backward()
    full_grads = _grads(model)
    model.zero_grad()

    logits, resid, embed = unhooked_forward(model, tokens, first)
    assert logits.shape == (8, tokens.shape[1] - first, SPEC.vocab_size)
    torch.testing.assert_close(logits, full_logits[:, first:], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(resid, full_resid[:, first:], rtol=1e-5, atol=1e-6)
    logits.square().mean().backward()
    for name, grad in _grads(model).items():
        torch.testing.assert_close(grad, full_grads[name], rtol=1e-4, atol=1e-7, msg=name)
    hooked = model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.hook_mlp_out", lambda tensor, hook: tensor)])
    torch.testing.assert_close(hooked[:, first:], logits, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="first=13"):
        models.logits_of(model, tokens[:, :13], first=13)


def test_logits_of_honours_hooks():
    """A hook attached by the user must see (and may change) what training computes."""
    model = build_gpt(GPTConfig(n_layers=2, d_model=64, n_heads=4), SPEC, seed=0)
    tokens = generate(SPEC, 4, seed=1).prompt_tokens()
    clean = models.logits_of(model, tokens)
    zero_mlp = lambda tensor, hook: torch.zeros_like(tensor)
    with model.hooks(fwd_hooks=[("blocks.0.hook_mlp_out", zero_mlp)]):
        patched = models.logits_of(model, tokens)
        _, resid, _ = models.forward_with_residual(model, tokens)
    assert (patched - clean).abs().max() > 1e-4
    torch.testing.assert_close(patched, model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.hook_mlp_out", zero_mlp)]))
    assert not models._hooked(model)  # the context removed it
    torch.testing.assert_close(models.residual_to_logits(model, resid), patched)


def test_the_unhooked_forward_traces_as_one_graph():
    """``torch.compile`` of the unhooked forward must not break its graph (the bridge's own
    attribute lookup did, once per block): Dynamo alone (backend "eager") with fullgraph=True
    raises at a break, and the traced function gives the eager one's logits."""
    model = build_gpt(GPTConfig(n_layers=2, d_model=64, n_heads=4), SPEC, seed=0)
    tokens = generate(SPEC, 4, seed=3).prompt_tokens()
    traced = torch.compile(gpt.plain_forward, backend="eager", fullgraph=True, dynamic=False)
    modules = gpt.plain_modules(model)
    for first in (0, SPEC.eq_position):
        torch.testing.assert_close(traced(modules, tokens, first)[0], unhooked_forward(model, tokens, first)[0])
    assert gpt.plain_modules(model) is modules  # looked up once per model
