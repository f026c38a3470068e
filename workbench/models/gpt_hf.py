"""Move GPT weights between the workbench's TransformerLens-native GPT and Hugging Face
``GPT2LMHeadModel`` (untied head), so a checkpoint opens in ``transformers`` and nnsight.

The two are the same function: pre-LN blocks, learned positions, tanh-GELU (``gelu_new``), biases,
1/sqrt(d_head) attention, LayerNorm eps 1e-5. The names map as follows (ours -> GPT-2's, where
GPT-2's ``Conv1D`` stores weights as (in, out), the transpose of ours):

    embed.weight                      transformer.wte.weight
    pos_embed.weight                  transformer.wpe.weight
    blocks.{i}.ln1.{weight,bias}      transformer.h.{i}.ln_1.{weight,bias}
    blocks.{i}.attn.{q,k,v}.weight    transformer.h.{i}.attn.c_attn.weight  ([q | k | v] along out, transposed)
    blocks.{i}.attn.{q,k,v}.bias      transformer.h.{i}.attn.c_attn.bias    ([q | k | v])
    blocks.{i}.attn.o.{weight,bias}   transformer.h.{i}.attn.c_proj.{weight (transposed),bias}
    blocks.{i}.ln2.{weight,bias}      transformer.h.{i}.ln_2.{weight,bias}
    blocks.{i}.mlp.in.{weight,bias}   transformer.h.{i}.mlp.c_fc.{weight (transposed),bias}
    blocks.{i}.mlp.out.{weight,bias}  transformer.h.{i}.mlp.c_proj.{weight (transposed),bias}
    ln_final.{weight,bias}            transformer.ln_f.{weight,bias}   (bias: see below)
    unembed.weight                    lm_head.weight

GPT-2's head has no bias, ours has one. It moves into the final LayerNorm's bias: logits =
W (g * x_hat + beta) + b = W (g * x_hat + beta') with beta' = beta + pinv(W) b, exact whenever W
(d_vocab x d_model) has full row rank, which d_vocab <= d_model makes generic (54 <= 128 at the
cpu preset for G(2,5,50)). The export checks the residual and refuses otherwise. So logits and
every residual stream agree; only ``ln_final``'s output (``hook_normalized``) carries the moved
bias. Importing back gives a zero head bias and the same logits.

Bidirectional models (``mlm_u``, ``masked_diffusion``) are not GPT-2s and are refused; an
objective's own parts (bst's backward encoder, mtp's heads) stay in the workbench checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

BIAS_TOLERANCE = 1e-4  # largest logit error the folded head bias may leave (float32)


def hf_config(model) -> GPT2Config:
    """GPT-2's config for a workbench GPT (a ``TransformerBridge`` built by ``build_gpt``)."""
    cfg = model.cfg
    if cfg.attention_dir != "causal":
        raise ValueError(f"a GPT with {cfg.attention_dir} attention is not a GPT-2 (causal); export-hf converts causal models")
    if cfg.act_fn != "gelu_new" or cfg.normalization_type != "LN":
        raise ValueError(f"act_fn={cfg.act_fn}, normalization={cfg.normalization_type}: expected gelu_new and LN (GPT-2's)")
    return GPT2Config(
        vocab_size=cfg.d_vocab, n_positions=cfg.n_ctx, n_embd=cfg.d_model, n_layer=cfg.n_layers, n_head=cfg.n_heads,
        n_inner=cfg.d_mlp, activation_function="gelu_new", layer_norm_epsilon=cfg.eps, resid_pdrop=0.0, embd_pdrop=0.0,
        attn_pdrop=0.0, tie_word_embeddings=False, bos_token_id=None, eos_token_id=None, scale_attn_weights=True,
    )


def fold_head_bias(unembed: torch.Tensor, bias: torch.Tensor, ln_bias: torch.Tensor) -> torch.Tensor:
    """The final LayerNorm bias beta' with W beta' = W beta + b (see the module docstring)."""
    shift = torch.linalg.lstsq(unembed.double(), bias.double().unsqueeze(1)).solution.squeeze(1)
    residual = (unembed.double() @ shift - bias.double()).abs().max().item()
    if residual > BIAS_TOLERANCE:
        raise ValueError(f"the head bias cannot be moved into the final LayerNorm (residual {residual:.2e}: d_vocab "
                         f"{unembed.shape[0]} > d_model {unembed.shape[1]} or a rank-deficient unembedding); GPT-2 has no head bias")
    return (ln_bias.double() + shift).to(ln_bias.dtype)


def to_hf(model) -> GPT2LMHeadModel:
    """A ``GPT2LMHeadModel`` computing the same logits as ``model``."""
    config = hf_config(model)
    ours = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    theirs = {
        "transformer.wte.weight": ours["embed.weight"], "transformer.wpe.weight": ours["pos_embed.weight"],
        "transformer.ln_f.weight": ours["ln_final.weight"],
        "transformer.ln_f.bias": fold_head_bias(ours["unembed.weight"], ours["unembed.bias"], ours["ln_final.bias"]),
        "lm_head.weight": ours["unembed.weight"],
    }
    for i in range(config.n_layer):
        a, h = f"blocks.{i}.", f"transformer.h.{i}."
        theirs.update({
            h + "ln_1.weight": ours[a + "ln1.weight"], h + "ln_1.bias": ours[a + "ln1.bias"],
            h + "attn.c_attn.weight": torch.cat([ours[a + f"attn.{p}.weight"] for p in "qkv"], dim=0).T,
            h + "attn.c_attn.bias": torch.cat([ours[a + f"attn.{p}.bias"] for p in "qkv"]),
            h + "attn.c_proj.weight": ours[a + "attn.o.weight"].T, h + "attn.c_proj.bias": ours[a + "attn.o.bias"],
            h + "ln_2.weight": ours[a + "ln2.weight"], h + "ln_2.bias": ours[a + "ln2.bias"],
            h + "mlp.c_fc.weight": ours[a + "mlp.in.weight"].T, h + "mlp.c_fc.bias": ours[a + "mlp.in.bias"],
            h + "mlp.c_proj.weight": ours[a + "mlp.out.weight"].T, h + "mlp.c_proj.bias": ours[a + "mlp.out.bias"],
        })
    hf = GPT2LMHeadModel(config)
    missing, unexpected = hf.load_state_dict({k: v.contiguous() for k, v in theirs.items()}, strict=False)
    if unexpected or [k for k in missing if not k.endswith(".attn.bias") and not k.endswith(".attn.masked_bias")]:
        raise ValueError(f"GPT-2 state dict mismatch: missing {missing}, unexpected {unexpected}")
    return hf.eval()


def state_dict_from_hf(hf: GPT2LMHeadModel) -> dict[str, torch.Tensor]:
    """Our GPT's state dict from a GPT-2's (head bias zero: it lives in ``ln_final.bias``)."""
    theirs, config = hf.state_dict(), hf.config
    d = config.n_embd
    ours = {
        "embed.weight": theirs["transformer.wte.weight"], "pos_embed.weight": theirs["transformer.wpe.weight"],
        "ln_final.weight": theirs["transformer.ln_f.weight"], "ln_final.bias": theirs["transformer.ln_f.bias"],
        "unembed.weight": theirs["lm_head.weight"], "unembed.bias": torch.zeros(config.vocab_size),
    }
    for i in range(config.n_layer):
        a, h = f"blocks.{i}.", f"transformer.h.{i}."
        qkv_weight, qkv_bias = theirs[h + "attn.c_attn.weight"].T, theirs[h + "attn.c_attn.bias"]
        for j, p in enumerate("qkv"):
            ours[a + f"attn.{p}.weight"], ours[a + f"attn.{p}.bias"] = qkv_weight[j * d:(j + 1) * d], qkv_bias[j * d:(j + 1) * d]
        ours.update({
            a + "ln1.weight": theirs[h + "ln_1.weight"], a + "ln1.bias": theirs[h + "ln_1.bias"],
            a + "attn.o.weight": theirs[h + "attn.c_proj.weight"].T, a + "attn.o.bias": theirs[h + "attn.c_proj.bias"],
            a + "ln2.weight": theirs[h + "ln_2.weight"], a + "ln2.bias": theirs[h + "ln_2.bias"],
            a + "mlp.in.weight": theirs[h + "mlp.c_fc.weight"].T, a + "mlp.in.bias": theirs[h + "mlp.c_fc.bias"],
            a + "mlp.out.weight": theirs[h + "mlp.c_proj.weight"].T, a + "mlp.out.bias": theirs[h + "mlp.c_proj.bias"],
        })
    return {k: v.contiguous().clone() for k, v in ours.items()}


def gpt_config_from_hf(config: GPT2Config):
    """Our ``GPTConfig`` for a GPT-2 config, refusing what our GPT does not compute."""
    from workbench.models.configs import GPTConfig

    if config.activation_function != "gelu_new" or not config.scale_attn_weights or config.scale_attn_by_inverse_layer_idx or config.reorder_and_upcast_attn:
        raise ValueError(f"GPT-2 config: activation {config.activation_function}, scale_attn_weights {config.scale_attn_weights}, "
                         "scale_attn_by_inverse_layer_idx / reorder_and_upcast_attn set: expected gelu_new and plain 1/sqrt(d_head) attention")
    if abs(config.layer_norm_epsilon - 1e-5) > 1e-12:
        raise ValueError(f"GPT-2 config: layer_norm_epsilon {config.layer_norm_epsilon}; our GPT uses 1e-5")
    d_mlp = None if config.n_inner in (None, 4 * config.n_embd) else config.n_inner  # None: 4 * d_model, as our presets say it
    return GPTConfig(n_layers=config.n_layer, d_model=config.n_embd, n_heads=config.n_head, d_mlp=d_mlp)


def load_hf_dir(path: str | Path) -> GPT2LMHeadModel:
    path = Path(path)
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path}/config.json: not found; expected a directory written by save_pretrained")
    return GPT2LMHeadModel.from_pretrained(str(path), local_files_only=True)
