"""Both exports open in nnsight: the residual stream it traces at '=' is ours, layer by layer."""

import pytest
import torch

from conftest import tiny_mamba_config
from test_hf_export import gpt_with_biases, teacher_forced_tokens
from workbench.factory import build_model_and_parts

nnsight = pytest.importorskip("nnsight", reason="the nnsight extra: pip install '.[nnsight]' (scripts/setup.sh installs it)")


def traced_residuals(hf, blocks: str, n_layers: int, tokens: torch.Tensor) -> list[torch.Tensor]:
    """The output of every block of an HF model (``blocks``: the attribute path of its block
    list), read through nnsight's tracer as a user would write it."""
    model = nnsight.NNsight(hf)
    layers = model
    for name in blocks.split("."):
        layers = getattr(layers, name)
    saved = []
    with model.trace(tokens):
        for i in range(n_layers):
            saved.append(layers[i].output.save())
    return [s[0] if isinstance(s, tuple) else s for s in saved]


@pytest.mark.parametrize("arch", ["gpt", "mamba"])
def test_the_export_residual_stream_at_eq_in_nnsight_equals_our_hooks(arch):
    if arch == "gpt":
        from workbench.models.gpt_hf import to_hf

        config, model = gpt_with_biases()
        blocks = "transformer.h"
    else:
        from workbench.models.mamba_hf import to_hf

        config = tiny_mamba_config()
        model, _ = build_model_and_parts(config)
        blocks = "backbone.layers"
    tokens, eq = teacher_forced_tokens(config), config.task.graph.eq_position
    residuals = traced_residuals(to_hf(model), blocks, config.model.n_layers, tokens)
    _, cache = model.run_with_cache(tokens)
    assert len(residuals) == config.model.n_layers
    for layer, residual in enumerate(residuals):
        torch.testing.assert_close(residual[:, eq], cache[f"blocks.{layer}.hook_resid_post"][:, eq], rtol=0, atol=1e-5)
