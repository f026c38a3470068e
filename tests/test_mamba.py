"""HookedMamba: the fast scans against the reference, Hugging Face equivalence both ways,
hook names, and training/resume through the same trainer as the GPT."""

import json

import pytest
import torch
from transformers import MambaForCausalLM

from conftest import tiny_mamba_config
import workbench
from workbench.checkpoint import save_checkpoint
from workbench.models.mamba import HookedMamba, MambaConfig, causal_depthwise_conv
from workbench.models.mamba_hf import from_hf, hf_config, to_hf
from workbench.models.selective_scan import SelectiveScan, selective_scan, selective_scan_ref
from workbench.task import GraphSpec, generate
from workbench.train import train

SPEC = GraphSpec(2, 5, 50)


def scan_inputs(batch, pos, d_inner, d_state, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(batch, pos, d_inner, generator=g, dtype=dtype)
    dt = torch.nn.functional.softplus(torch.randn(batch, pos, d_inner, generator=g, dtype=dtype) - 1)
    A = -2 * torch.rand(d_inner, d_state, generator=g, dtype=dtype)
    B, C = (torch.randn(batch, pos, d_state, generator=g, dtype=dtype) for _ in range(2))
    D = torch.randn(d_inner, generator=g, dtype=dtype)
    return [x.requires_grad_() for x in (u, dt, A, B, C, D)]


def test_scan_backward_passes_gradcheck():
    assert torch.autograd.gradcheck(lambda *a: SelectiveScan.apply(*a, False), scan_inputs(2, 6, 4, 3, torch.float64))


@pytest.mark.parametrize("impl,shape", [
    ("torch", (3, 11, 8, 4)), ("compiled", (3, 11, 8, 4)),
    # the kernel works on blocks of 16 channels: one block, a partial one, two and a partial one
    ("cpp", (3, 11, 8, 4)), ("cpp", (2, 7, 16, 16)), ("cpp", (4, 13, 37, 5)),
])
def test_fast_scan_equals_reference_values_and_gradients(impl, shape):
    inputs = scan_inputs(*shape, torch.float32, seed=1)
    expected = selective_scan_ref(*inputs)
    upstream = torch.randn_like(expected)
    expected_grads = torch.autograd.grad(expected, inputs, upstream)
    got = selective_scan(*inputs, impl=impl)
    got_grads = torch.autograd.grad(got, inputs, upstream)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    for name, a, b in zip("u dt A B C D".split(), got_grads, expected_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=name)


def test_cpp_scan_gradients_do_not_depend_on_the_thread_count_and_nan_propagates():
    inputs = scan_inputs(5, 9, 20, 4, torch.float32, seed=2)
    upstream = torch.randn(5, 9, 20)

    def grads():
        return torch.autograd.grad(selective_scan(*inputs, impl="cpp"), inputs, upstream)

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = grads()
        torch.set_num_threads(2)
        two = grads()
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(one, two):
        assert torch.equal(a, b)
    u, *rest = (x.detach().clone() for x in inputs)
    u[1, 3, 7] = float("nan")
    y = selective_scan(u, *rest, impl="cpp")
    assert y[1, 3:, 7].isnan().all() and not y[0].isnan().any() and not y[1, :3].isnan().any()


def test_shifted_conv_equals_torch_depthwise_conv_values_and_gradients():
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(6, 6, 4, groups=6, padding=3, bias=True).double()
    x = torch.randn(2, 9, 6, dtype=torch.float64, requires_grad=True)
    expected = conv(x.transpose(1, 2))[..., :9].transpose(1, 2)
    got = causal_depthwise_conv(x, conv.weight, conv.bias)
    torch.testing.assert_close(got, expected)
    upstream = torch.randn_like(got)
    for a, b in zip(torch.autograd.grad(got, (x, conv.weight, conv.bias), upstream), torch.autograd.grad(expected, (x, conv.weight, conv.bias), upstream)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("batch,pos,d_inner,d_conv", [(2, 9, 6, 4), (3, 2, 37, 4), (2, 31, 256, 3)])
def test_cpp_conv_silu_equals_the_tensor_ops_values_and_gradients(batch, pos, d_inner, d_conv):
    from workbench.models.selective_scan_cpu import CppConvSiLU

    g = torch.Generator().manual_seed(4)
    xz = torch.randn(batch, pos, 2 * d_inner, generator=g, requires_grad=True)  # x is a strided view, as in the mixer
    weight = torch.randn(d_inner, 1, d_conv, generator=g, requires_grad=True)
    bias = torch.randn(d_inner, generator=g, requires_grad=True)
    x = xz[..., :d_inner]
    expected = torch.nn.functional.silu(causal_depthwise_conv(x, weight, bias))
    got = CppConvSiLU.apply(x, weight, bias)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    upstream = torch.randn(expected.shape, generator=g)
    want = torch.autograd.grad(expected, (xz, weight, bias), upstream)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = torch.autograd.grad(CppConvSiLU.apply(x, weight, bias), (xz, weight, bias), upstream)
        torch.set_num_threads(2)
        two = torch.autograd.grad(CppConvSiLU.apply(x, weight, bias), (xz, weight, bias), upstream)
    finally:
        torch.set_num_threads(threads)
    for name, a, b, c in zip(("xz", "weight", "bias"), one, two, want):
        assert torch.equal(a, b), name  # the batch sums are torch's: no dependence on the thread count
        torch.testing.assert_close(a, c, rtol=1e-4, atol=1e-4, msg=name)
    assert (one[0][..., d_inner:] == 0).all()  # z's half gets no gradient from the conv


def assert_gated_scan_matches_the_tensor_ops(u, dt_raw, A, B, C, D, xz, g, value_tol, grad_tol):
    """The kernel with softplus and gate z (the second half of ``xz``, a strided view as in the
    mixer) against the tensor ops: values, and every input's gradient, finite and close."""
    from workbench.models.selective_scan_cpu import CppSelectiveScan

    z = xz[..., u.shape[2]:]
    inputs = (u, dt_raw, A, B, C, D, xz)
    expected = selective_scan_ref(u, torch.nn.functional.softplus(dt_raw), A, B, C, D) * torch.nn.functional.silu(z)
    got = CppSelectiveScan.apply(u, dt_raw, A, B, C, D, z, True)
    torch.testing.assert_close(got, expected, rtol=value_tol, atol=value_tol)
    upstream = torch.randn(expected.shape, generator=g)
    for name, a, b in zip("u dt A B C D xz".split(), torch.autograd.grad(got, inputs, upstream), torch.autograd.grad(expected, inputs, upstream)):
        assert torch.isfinite(a).all(), name
        torch.testing.assert_close(a, b, rtol=grad_tol, atol=grad_tol, msg=name)


@pytest.mark.parametrize("shape", [(3, 11, 8, 4), (4, 13, 37, 5)])
def test_cpp_scan_with_gate_and_softplus_equals_the_tensor_ops(shape):
    u, dt, A, B, C, D = scan_inputs(*shape, torch.float32, seed=3)
    g = torch.Generator().manual_seed(5)
    dt_raw = torch.randn(dt.shape, generator=g).sub(1).requires_grad_()
    xz = torch.randn(*u.shape[:2], 2 * u.shape[2], generator=g, requires_grad=True)
    assert_gated_scan_matches_the_tensor_ops(u, dt_raw, A, B, C, D, xz, g, value_tol=1e-5, grad_tol=1e-4)


def test_mixer_runs_the_fused_kernels_unless_a_hook_reads_between_and_both_agree():
    model = HookedMamba(MambaConfig(n_layers=2, d_model=32, d_state=8, scan="cpp"), SPEC.vocab_size, seed=1)
    with torch.no_grad():
        for block in model.backbone.layers:
            block.mixer.conv1d.weight.normal_()
            block.mixer.conv1d.bias.normal_()
    tokens = generate(SPEC, 8, seed=0).prompt_tokens()
    seen = []

    def logits_and_grads(hooks):
        model.zero_grad()
        logits = model.run_with_hooks(tokens, fwd_hooks=hooks)
        logits.pow(2).mean().backward()
        return logits.detach(), [p.grad.clone() for p in model.parameters()]

    fused = logits_and_grads([])
    for hook in ("hook_conv", "hook_x", "hook_z", "hook_dt", "hook_y"):
        seen.clear()
        ops = logits_and_grads([(f"blocks.{i}.mixer.{hook}", lambda t, hook: seen.append(hook.name)) for i in range(2)])
        assert seen == [f"blocks.0.mixer.{hook}", f"blocks.1.mixer.{hook}"]  # a hook there is called: the tensor-ops path
        torch.testing.assert_close(ops[0], fused[0], rtol=1e-5, atol=1e-5)
        for a, b in zip(ops[1], fused[1]):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("tied", [True, False])
def test_logits_agree_with_hugging_face_both_ways(tied):
    cfg = MambaConfig(n_layers=2, d_model=32, d_state=8, tie_embeddings=tied, scan="torch")
    tokens = generate(SPEC, 4, seed=0).prompt_tokens()
    ours = HookedMamba(cfg, SPEC.vocab_size, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(to_hf(ours)(tokens).logits, ours(tokens), rtol=0, atol=1e-4)
        torch.manual_seed(5)
        hf = MambaForCausalLM(hf_config(cfg, SPEC.vocab_size)).eval()
        back = from_hf(hf)
        torch.testing.assert_close(back(tokens), hf(tokens).logits, rtol=0, atol=1e-4)
    assert set(ours.state_dict()) == set(hf.state_dict())
    assert back.cfg.tie_embeddings == tied and back.cfg.d_state == 8


def test_hook_names_shapes_and_materialised_states_agree_with_the_fast_path():
    model = HookedMamba(MambaConfig(n_layers=1, d_model=32, d_state=8, scan="torch"), SPEC.vocab_size)
    tokens = generate(SPEC, 3, seed=0).prompt_tokens()
    logits, cache = model.run_with_cache(tokens)
    mixer = [f"blocks.0.mixer.hook_{h}" for h in ("in_proj", "conv", "x", "z", "dt", "B", "C", "ssm_state", "y", "ssm_out")]
    assert list(cache.keys()) == ["hook_embed", "blocks.0.hook_resid_pre", "blocks.0.norm.hook_normalized", *mixer,
                                  "blocks.0.hook_resid_post", "ln_final.hook_normalized"]
    assert cache["blocks.0.mixer.hook_ssm_state"].shape == (3, 64, 27, 8)  # (batch, d_inner, pos, d_state)
    assert cache["blocks.0.mixer.hook_B"].shape == (3, 27, 8) and cache["blocks.0.hook_resid_post"].shape == (3, 27, 32)
    torch.testing.assert_close(logits, model(tokens), rtol=0, atol=1e-5)  # the cached (materialised) path = the fast path
    y = torch.einsum("bcts,bts->btc", cache["blocks.0.mixer.hook_ssm_state"], cache["blocks.0.mixer.hook_C"])
    torch.testing.assert_close(y + cache["blocks.0.mixer.hook_x"] * model.backbone.layers[0].mixer.D, cache["blocks.0.mixer.hook_y"])


@pytest.mark.parametrize("mode", ["propagate", "local"])
def test_patching_the_state_changes_that_position_and_flows_on_unless_local(mode):
    model = HookedMamba(MambaConfig(n_layers=1, d_model=32, d_state=8), SPEC.vocab_size)
    model.ssm_state_patch = mode
    tokens = generate(SPEC, 2, seed=0).prompt_tokens()

    def zero_state(states, hook):
        states[:, :, 10] = 0
        return states

    patched = model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.mixer.hook_ssm_state", zero_state)])
    clean = model(tokens)
    changed = (patched - clean).abs().amax(dim=(0, 2)) > 1e-6
    assert changed.nonzero().flatten().tolist() == ([10] if mode == "local" else list(range(10, tokens.shape[1])))


def test_mamba_is_causal_and_seeded():
    cfg = MambaConfig(n_layers=2, d_model=32)
    model = HookedMamba(cfg, SPEC.vocab_size, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), HookedMamba(cfg, SPEC.vocab_size, seed=1).state_dict().values()))
    tokens = generate(SPEC, 3, seed=1).prompt_tokens()
    changed = tokens.clone()
    changed[:, 15] = (changed[:, 15] + 1) % 50
    with torch.no_grad():
        a, b = model(tokens), model(changed)
    torch.testing.assert_close(a[:, :15], b[:, :15])
    assert (a[:, 15:] - b[:, 15:]).abs().max() > 1e-5


mamba_config = tiny_mamba_config


def test_mamba_checkpoint_round_trip_and_exact_resume(tmp_path):
    config = mamba_config(steps=12, eval_every=6, save_every=6, device="cpu")  # bit-exact resume is a CPU claim
    straight = train(config, tmp_path / "straight", progress=False)
    train(config, tmp_path / "resumed", until_step=7, progress=False)
    resumed = train(config, tmp_path / "resumed", progress=False)
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    loaded = workbench.load(tmp_path / "straight")
    assert isinstance(loaded.model, HookedMamba) and loaded.config.arch == "mamba"
    assert loaded.model.lm_head.weight is loaded.model.backbone.embeddings.weight  # still tied after loading
    assert json.loads((tmp_path / "straight" / "config.json").read_text())["run"]["model"]["d_state"] == 8


def test_export_and_import_hf_through_the_cli(tmp_path):
    from workbench.cli import main

    config = mamba_config()
    model = HookedMamba(config.model, config.task.graph.vocab_size, seed=2)
    save_checkpoint(tmp_path / "ckpt", config, model, step=0, metrics=[])
    main(["export-hf", str(tmp_path / "ckpt"), "--out", str(tmp_path / "hf")])
    main(["import-hf", str(tmp_path / "hf"), "--graph", "2,3,10", "--out", str(tmp_path / "back")])
    tokens = generate(config.task.graph, 4, seed=0).prompt_tokens()
    with torch.no_grad():
        torch.testing.assert_close(workbench.load(tmp_path / "back").model(tokens), model(tokens), rtol=0, atol=1e-5)


def test_cpp_kernels_stay_finite_where_exp_overflows():
    """A pre-softplus step, a gate or a conv output below -88 overflows exp(-x); the kernels'
    sigmoid must still give 0 there, not NaN (a Mamba on G(2,5,50) under bst reached dt = -93
    and trained on NaN gradients from then on)."""
    from workbench.models.selective_scan_cpu import CppConvSiLU

    u, dt, A, B, C, D = scan_inputs(2, 7, 37, 4, torch.float32, seed=6)
    g = torch.Generator().manual_seed(7)
    extremes = torch.tensor([-120.0, -93.0, -89.0, 0.0, 89.0, 120.0])
    pick = lambda shape: extremes[torch.randint(len(extremes), shape, generator=g)]  # noqa: E731
    dt_raw = pick(dt.shape).requires_grad_()
    xz = torch.cat([torch.randn(u.shape, generator=g), pick(u.shape)], dim=-1).requires_grad_()
    assert_gated_scan_matches_the_tensor_ops(u, dt_raw, A, B, C, D, xz, g, value_tol=1e-4, grad_tol=1e-3)

    x = pick((2, 9, 37)).requires_grad_()
    weight, bias = torch.ones(37, 1, 4).requires_grad_(), torch.zeros(37).requires_grad_()
    expected = torch.nn.functional.silu(causal_depthwise_conv(x, weight, bias))
    got = CppConvSiLU.apply(x, weight, bias)
    torch.testing.assert_close(got, expected)
    upstream = torch.randn(expected.shape, generator=g)
    for name, a, b in zip(("x", "weight", "bias"), torch.autograd.grad(got, (x, weight, bias), upstream),
                          torch.autograd.grad(expected, (x, weight, bias), upstream)):
        assert torch.isfinite(a).all(), name
        if name == "weight":
            # a sum over batch and positions of terms up to |x| = 120 that cancel to a few units:
            # the float32 error scales with the sum of |terms| (bounded via |x|, |upstream| and
            # SiLU' <= 1.1), not with the result (the kernel's vectorised exp differs by CPU)
            terms = torch.autograd.grad(causal_depthwise_conv(x.detach().abs(), weight, bias), weight, upstream.abs())[0] * 1.1
            assert ((a - b).abs() <= 1e-4 * terms + 1e-3).all(), (a - b).abs().max()
        else:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-3, msg=name)


def test_a_kernel_build_lock_left_by_a_killed_process_is_cleared(tmp_path, capsys):
    """torch's extension builder waits without a timeout for its lock to go away: a lock older
    than any build (a stopped study killed while it held one) is removed, a fresh one is kept."""
    import os
    import time

    from workbench.models.selective_scan_cpu import STALE_LOCK_S, clear_stale_lock

    lock = tmp_path / "lock"
    assert not clear_stale_lock(tmp_path)  # no lock
    lock.touch()
    assert not clear_stale_lock(tmp_path) and lock.exists()  # another process building now
    old = time.time() - STALE_LOCK_S - 60
    os.utime(lock, (old, old))
    assert clear_stale_lock(tmp_path) and not lock.exists()
    assert "removing the kernel builder's lock" in capsys.readouterr().out
