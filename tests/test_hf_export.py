"""The GPT as a Hugging Face GPT2LMHeadModel (untied head): same logits, and back."""

import pytest
import torch

import workbench
from conftest import tiny_config
from workbench.factory import build_model_and_parts
from workbench.checkpoint import save_checkpoint
from workbench.cli import main
from workbench.config import apply_overrides, objective_of
from workbench.models.gpt_hf import fold_head_bias, to_hf
from workbench.task import generate


def gpt_with_biases(objective: str = "next_token"):
    """A tiny GPT whose every bias is non-zero (a fresh model's are zero: they would hide a mapping error)."""
    config = apply_overrides(tiny_config(objective), ["model.n_layers=2"])  # a hidden layer between embedding and head
    model, _ = build_model_and_parts(config)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(0)
        for name, parameter in model.named_parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * (0.2 if name.endswith("bias") else 0.05))
    return config, model


def teacher_forced_tokens(config, n: int = 64) -> torch.Tensor:
    spec, objective = config.task.graph, objective_of(config)
    data = generate(spec, n, seed=1)
    return objective.inputs(data.prompt_tokens(), objective.targets(data.answer_tokens()), spec)


def test_gpt_exports_to_gpt2_with_equal_logits_and_imports_back(tmp_path):
    config, model = gpt_with_biases()
    save_checkpoint(tmp_path / "ckpt", config, model, step=0, metrics=[])
    main(["export-hf", str(tmp_path / "ckpt"), "--out", str(tmp_path / "hf")])
    from transformers import GPT2LMHeadModel

    hf = GPT2LMHeadModel.from_pretrained(str(tmp_path / "hf"), local_files_only=True)
    assert not hf.config.tie_word_embeddings and hf.lm_head.weight.data_ptr() != hf.transformer.wte.weight.data_ptr()
    tokens = teacher_forced_tokens(config)
    with torch.no_grad():
        ours = model(tokens)
        torch.testing.assert_close(hf(tokens).logits, ours, rtol=0, atol=1e-4)
        # every residual stream is the same; only the final norm carries the moved head bias
        _, cache = model.run_with_cache(tokens)
        hidden = hf(tokens, output_hidden_states=True).hidden_states
        for layer in range(config.model.n_layers - 1):  # GPT-2's last hidden state is after ln_f
            torch.testing.assert_close(hidden[layer + 1], cache[f"blocks.{layer}.hook_resid_post"], rtol=0, atol=1e-5)
    main(["import-hf", str(tmp_path / "hf"), "--graph", "2,3,10", "--out", str(tmp_path / "back")])
    back = workbench.load(tmp_path / "back")
    with torch.no_grad():
        torch.testing.assert_close(back.model(tokens), ours, rtol=0, atol=1e-4)
    assert back.config.model == config.model


def test_the_head_bias_moves_into_the_final_norm_exactly_when_the_unembedding_has_full_row_rank():
    generator = torch.Generator().manual_seed(0)
    unembed, bias, beta = torch.randn(6, 8, generator=generator), torch.randn(6, generator=generator), torch.randn(8, generator=generator)
    folded = fold_head_bias(unembed, bias, beta)
    torch.testing.assert_close(unembed @ folded, unembed @ beta + bias, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="cannot be moved into the final LayerNorm"):
        fold_head_bias(torch.randn(10, 8, generator=generator), torch.randn(10, generator=generator), beta)  # d_vocab > d_model


def test_bidirectional_models_are_refused(tmp_path):
    config = apply_overrides(tiny_config("mlm_u"), [])
    model, _ = build_model_and_parts(config)
    with pytest.raises(ValueError, match="bidirectional attention is not a GPT-2"):
        to_hf(model)


def test_import_hf_refuses_another_kind_of_model(tmp_path):
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(SystemExit) as exit_:
        main(["import-hf", str(tmp_path / "hf"), "--graph", "2,3,10", "--out", str(tmp_path / "back")])
    assert exit_.value.code == 2
