"""The CUDA paths, skipped where there is no GPU (CI has none): mamba-ssm's selective-scan
kernel against the readable recurrence, and a bf16-autocast training run whose weights
evaluate alike on the GPU and the CPU. Run them on a GPU machine with
``pytest tests/test_cuda.py``; the rest of the suite runs there too (tiny configs ask for
``device="auto"``, which resolves to CUDA)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_config, tiny_mamba_config
from workbench import checkpoint
from workbench.evaluate import evaluate
from workbench.models.mamba import MambaConfig, _mamba_ssm_scan, build_mamba
from workbench.models.selective_scan import selective_scan_ref
from workbench.datasets import evaluation_graphs
from workbench.train import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _scan_inputs(dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    """u, dt, B, C in ``dtype`` and A, D in float32, as the mixer passes them."""
    g = torch.Generator(device="cuda").manual_seed(0)
    batch, pos, d_inner, d_state = 3, 22, 64, 16  # pos 22: G(2,5,50)'s sequence length
    u = torch.randn(batch, pos, d_inner, device="cuda", generator=g)
    dt = F.softplus(torch.randn(batch, pos, d_inner, device="cuda", generator=g) - 2)
    A = -torch.exp(0.5 * torch.randn(d_inner, d_state, device="cuda", generator=g))
    B, C = (torch.randn(batch, pos, d_state, device="cuda", generator=g) for _ in range(2))
    D = torch.randn(d_inner, device="cuda", generator=g)
    return [t.to(dtype) if t.dim() == 3 else t for t in (u, dt, A, B, C, D)]


def test_mamba_ssm_kernel_matches_the_recurrence_in_values_and_gradients():
    pytest.importorskip("mamba_ssm.ops.selective_scan_interface", reason="mamba-ssm's CUDA kernels are not installed")
    ours = [t.clone().requires_grad_() for t in _scan_inputs()]
    ref = [t.clone().requires_grad_() for t in _scan_inputs()]
    y, y_ref = _mamba_ssm_scan(*ours), selective_scan_ref(*ref)
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-4)
    upstream = torch.randn_like(y)
    (y * upstream).sum().backward()
    (y_ref * upstream).sum().backward()
    for name, a, b in zip("u dt A B C D".split(), ours, ref):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-3, atol=1e-3, msg=lambda m, n=name: f"d{n}: {m}")


def test_mamba_ssm_kernel_takes_bf16_inputs_as_under_autocast():
    pytest.importorskip("mamba_ssm.ops.selective_scan_interface", reason="mamba-ssm's CUDA kernels are not installed")
    inputs = _scan_inputs(torch.bfloat16)
    y = _mamba_ssm_scan(*inputs)
    y_ref = selective_scan_ref(*[t.float() for t in inputs])
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), y_ref, rtol=2e-2, atol=5e-2)


def test_a_mamba_model_gives_the_same_logits_with_every_scan():
    pytest.importorskip("mamba_ssm.ops.selective_scan_interface", reason="mamba-ssm's CUDA kernels are not installed")
    tokens = torch.randint(0, 54, (8, 22), generator=torch.Generator().manual_seed(0)).cuda()
    models = {scan: build_mamba(MambaConfig(n_layers=2, d_model=64, scan=scan), vocab=54, seed=0).cuda() for scan in ("torch", "compiled", "mamba_ssm")}
    logits = {scan: model(tokens) for scan, model in models.items()}
    torch.testing.assert_close(logits["mamba_ssm"], logits["torch"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(logits["compiled"], logits["torch"], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("arch", ["gpt", "mamba"])
def test_bf16_autocast_training_on_cuda_gives_weights_that_evaluate_alike_on_cpu(tmp_path, arch):
    config = (tiny_config if arch == "gpt" else tiny_mamba_config)(steps=60, device="cuda")
    trained = train(config, tmp_path, progress=False)
    assert next(trained.model.parameters()).device.type == "cuda"
    assert all(p.dtype == torch.float32 for p in trained.model.parameters())  # autocast keeps fp32 weights
    test = evaluation_graphs(config.task)
    on_gpu = evaluate(trained.model, test, trained.objective, device="cuda")
    on_cpu = evaluate(checkpoint.load(tmp_path).model, test, trained.objective, device="cpu")
    accuracy = lambda frame: frame[frame["metric"] != "tf_loss"]["value"].to_numpy()  # noqa: E731
    assert abs(accuracy(on_gpu) - accuracy(on_cpu)).max() <= 2 / len(test)  # a near tie may flip a token or two
    losses = lambda frame: frame[frame["metric"] == "tf_loss"]["value"].to_numpy()  # noqa: E731
    assert abs(losses(on_gpu) - losses(on_cpu)).max() < 1e-3
