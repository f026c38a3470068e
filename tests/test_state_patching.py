"""Patching Mamba's SSM state h_t: the default patch flows forward through the recurrence
(checked against the recurrence written out step by step), "local" reaches only y_t."""

from collections.abc import Callable

import pytest
import torch
from torch import Tensor
from transformer_lens import ActivationCache

from conftest import tiny_mamba_config
from workbench.factory import build_model
from workbench.models.mamba import HookedMamba, MambaConfig
from workbench.models.selective_scan import propagate_patch, scan_states
from workbench.task import GraphSpec, generate

SPEC = GraphSpec(2, 5, 50)
STATE = "blocks.0.mixer.hook_ssm_state"


def recurrence(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, pinned: dict[int, Tensor]) -> Tensor:
    """y of the scan, one step at a time; ``pinned[t]`` replaces h_t, and h_{t+1} continues from it."""
    h = torch.zeros(x.shape[0], x.shape[2], A.shape[1])
    ys = []
    for t in range(x.shape[1]):
        h = torch.exp(dt[:, t, :, None] * A) * h + (dt[:, t] * x[:, t])[:, :, None] * B[:, t, None, :]
        h = pinned.get(t, h)
        ys.append((h * C[:, t, None, :]).sum(-1) + D * x[:, t])
    return torch.stack(ys, dim=1)


def setting(t_to_state: dict[int, Tensor]) -> Callable:
    """A hook that sets h_t at the given positions, in place (as TransformerLens hooks often do)."""
    def hook(states, hook):
        for t, state in t_to_state.items():
            states[:, :, t] = state
        return states
    return hook


@pytest.fixture
def one_layer() -> tuple[HookedMamba, Tensor, ActivationCache]:
    model = HookedMamba(MambaConfig(n_layers=1, d_model=32, d_state=8, scan="torch"), SPEC.vocab_size, seed=2).eval()
    tokens = generate(SPEC, 3, seed=0).prompt_tokens()
    _, cache = model.run_with_cache(tokens)
    return model, tokens, cache


def scan_inputs(model: HookedMamba, cache: ActivationCache) -> list[Tensor]:
    """Layer 0's scan inputs (x, dt, A, B, C, D) of a clean run: a state patch leaves them as they are."""
    mixer = model.backbone.layers[0].mixer
    A = -torch.exp(mixer.A_log.detach())
    return [cache[f"blocks.0.mixer.hook_{n}"] for n in ("x", "dt")] + [A] + [cache[f"blocks.0.mixer.hook_{n}"] for n in ("B", "C")] + [mixer.D.detach()]


def run_y(model: HookedMamba, tokens: Tensor, hook: Callable) -> tuple[Tensor, Tensor]:
    """(logits, hook_y of layer 0) of a run with ``hook`` on layer 0's states."""
    got = {}
    with model.hooks(fwd_hooks=[(STATE, hook), ("blocks.0.mixer.hook_y", lambda y, hook: got.update(y=y))]):
        logits = model(tokens)
    return logits, got["y"]


@pytest.mark.parametrize("positions", [(10,), (10, 14)], ids=["one", "two"])
def test_a_patched_state_flows_on_as_the_step_by_step_recurrence(one_layer, positions):
    model, tokens, cache = one_layer
    g = torch.Generator().manual_seed(0)
    pinned = {t: torch.randn(3, 64, 8, generator=g) for t in positions}
    logits, y = run_y(model, tokens, setting(pinned))
    expected = recurrence(*scan_inputs(model, cache), pinned)
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)
    clean_y, clean_logits = cache["blocks.0.mixer.hook_y"], model(tokens)
    first = positions[0]
    torch.testing.assert_close(y[:, :first], clean_y[:, :first], rtol=0, atol=1e-6)
    assert ((y[:, first:] - clean_y[:, first:]).abs().amax(dim=(0, 2)) > 1e-4).all()  # every later output moved
    changed = (logits - clean_logits).abs().amax(dim=(0, 2)) > 1e-5
    assert changed.nonzero().flatten().tolist() == list(range(first, tokens.shape[1]))


def test_a_patch_of_some_channels_pins_those_and_the_rest_follow_the_recurrence():
    g = torch.Generator().manual_seed(1)
    u, dt, B = torch.randn(2, 7, 5, generator=g), torch.rand(2, 7, 5, generator=g), torch.randn(2, 7, 3, generator=g)
    A, C, D = -torch.rand(5, 3, generator=g), torch.zeros(2, 7, 3), torch.zeros(5)
    computed = scan_states(u, dt, A, B)
    patched = computed.clone()
    patched[:, 1, 3] = 7.0  # channel 1 only, at position 3
    got = propagate_patch(computed, patched, u, dt, A, B)
    h = computed[:, :, 2]
    for t in range(3, 7):
        h = torch.exp(dt[:, t, :, None] * A) * h + (dt[:, t] * u[:, t])[:, :, None] * B[:, t, None, :]
        if t == 3:
            h[:, 1] = 7.0
        torch.testing.assert_close(got[:, :, t], h)
    torch.testing.assert_close(got[:, :, :3], computed[:, :, :3], rtol=0, atol=0)
    torch.testing.assert_close(got[:, [0, 2, 3, 4]], computed[:, [0, 2, 3, 4]], rtol=0, atol=0)  # channels are independent
    assert propagate_patch(computed, computed.clone(), u, dt, A, B).equal(computed)


def test_local_mode_changes_only_the_patched_position(one_layer):
    model, tokens, cache = one_layer
    model.ssm_state_patch = "local"
    state = torch.randn(3, 64, 8)
    patched, y = run_y(model, tokens, setting({10: state}))
    unpatched, _ = run_y(model, tokens, lambda states, hook: states)
    assert ((patched - unpatched).abs().amax(dim=(0, 2)) > 1e-6).nonzero().flatten().tolist() == [10]
    x, _, _, _, C, D = scan_inputs(model, cache)
    torch.testing.assert_close(y[:, 10], (state * C[:, 10, None, :]).sum(-1) + D * x[:, 10])
    with pytest.raises(ValueError, match="ssm_state_patch"):
        model.ssm_state_patch = "forward"


@pytest.mark.parametrize("mode", ["propagate", "local"])
def test_a_hook_that_changes_nothing_leaves_the_logits_as_they_are(one_layer, mode):
    model, tokens, _ = one_layer
    model.ssm_state_patch = mode
    reading, _ = model.run_with_cache(tokens, names_filter=STATE)
    returning = model.run_with_hooks(tokens, fwd_hooks=[(STATE, lambda states, hook: states)])
    copying = model.run_with_hooks(tokens, fwd_hooks=[(STATE, lambda states, hook: states.clone())])
    assert torch.equal(returning, reading) and torch.equal(copying, reading)
    torch.testing.assert_close(returning, model(tokens), rtol=0, atol=1e-5)  # the fast scan, no hook


@torch.no_grad()
def test_patching_the_last_layers_state_reaches_the_next_position_only_when_it_propagates():
    config = tiny_mamba_config()
    config.model.n_layers = 2
    model = build_model(config, seed=0).eval()
    data, other = (generate(config.task.graph, 8, seed=seed) for seed in (0, 1))
    tokens, other = (torch.cat([d.prompt_tokens(), d.answer_tokens()[:, :-1]], dim=1) for d in (data, other))  # teacher-forced
    t = data.spec.eq_position  # as in goal patching: the state at '=', read at r1's slot, which predicts r2
    donor = model.run_with_cache(other, names_filter="blocks.1.mixer.hook_ssm_state")[1]["blocks.1.mixer.hook_ssm_state"]
    patch = setting({t: donor[:, :, t]})
    for mode, reached in (("propagate", True), ("local", False)):
        model.ssm_state_patch = mode
        clean = model.run_with_hooks(tokens, fwd_hooks=[("blocks.1.mixer.hook_ssm_state", lambda states, hook: states)])
        patched = model.run_with_hooks(tokens, fwd_hooks=[("blocks.1.mixer.hook_ssm_state", patch)])
        assert torch.equal(patched[:, :t], clean[:, :t]) and (patched[:, t] - clean[:, t]).abs().max() > 1e-4
        assert ((patched[:, t + 1] - clean[:, t + 1]).abs().max() > 1e-4) == reached, mode
