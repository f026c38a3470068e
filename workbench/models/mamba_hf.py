"""Move Mamba weights between HookedMamba and Hugging Face ``MambaForCausalLM``.

The parameter names are the same on both sides, so this is a config translation and a strict
``load_state_dict``; an exported model opens in the HF ecosystem and in TransformerLens'
Mamba bridge. Nothing is fetched from a hub: ``from_pretrained`` reads a local directory.
"""

from __future__ import annotations

from pathlib import Path

from transformers import MambaConfig as HFMambaConfig
from transformers import MambaForCausalLM

from workbench.models.mamba import HookedMamba, MambaConfig


def hf_config(cfg: MambaConfig, vocab: int) -> HFMambaConfig:
    return HFMambaConfig(
        vocab_size=vocab, hidden_size=cfg.d_model, state_size=cfg.d_state, num_hidden_layers=cfg.n_layers,
        expand=cfg.expand, conv_kernel=cfg.d_conv, time_step_rank=cfg.resolved_dt_rank, use_bias=False,
        use_conv_bias=True, layer_norm_epsilon=cfg.norm_eps, tie_word_embeddings=cfg.tie_embeddings,
    )


def to_hf(model: HookedMamba) -> MambaForCausalLM:
    vocab = model.backbone.embeddings.num_embeddings
    hf = MambaForCausalLM(hf_config(model.cfg, vocab))
    hf.load_state_dict(model.state_dict(), strict=True)
    return hf.eval()


def config_from_hf(config: HFMambaConfig) -> MambaConfig:
    if config.use_bias or not config.use_conv_bias:
        raise ValueError(f"HF Mamba config: use_bias={config.use_bias}, use_conv_bias={config.use_conv_bias}; expected False, True (Mamba-1)")
    return MambaConfig(
        n_layers=config.num_hidden_layers, d_model=config.hidden_size, d_state=config.state_size,
        expand=config.intermediate_size // config.hidden_size, d_conv=config.conv_kernel,
        dt_rank=int(config.time_step_rank), tie_embeddings=bool(config.tie_word_embeddings), norm_eps=config.layer_norm_epsilon,
    )


def from_hf(hf: MambaForCausalLM) -> HookedMamba:
    model = HookedMamba(config_from_hf(hf.config), hf.config.vocab_size)
    model.load_state_dict(hf.state_dict(), strict=True)
    return model.eval()


def load_hf_dir(path: str | Path) -> MambaForCausalLM:
    path = Path(path)
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path}/config.json: not found; expected a directory written by save_pretrained")
    return MambaForCausalLM.from_pretrained(str(path), local_files_only=True)
