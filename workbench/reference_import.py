"""Import checkpoints written by the paper's code (``train.py``: ``torch.save(model.state_dict())``).

Its GPT is nanoGPT-style: tanh-GELU, LayerNorm eps 1e-5, learned positions, attention scaled
by 1/sqrt(head_dim) with a causal mask, no dropout, vocabulary N+4, and the LM head tied to
the token embedding. Parameter names map one to one onto TransformerLens' native GPT:

    embed_tokens.weight                    -> embed.weight  (and unembed.weight: tied)
    pos_encoding.weight                    -> pos_embed.weight (first n_ctx rows)
    layers.{i}.ln_1 / ln_2                 -> blocks.{i}.ln1 / ln2
    layers.{i}.attn.queries_linear / keys_linear / values_linear / proj
                                           -> blocks.{i}.attn.q / k / v / o
    layers.{i}.mlp.expand / proj           -> blocks.{i}.mlp.in / out
    final_layernorm                        -> ln_final

The file is read with ``torch.load(weights_only=True)``, which refuses anything but tensors
and plain containers, so importing runs no code from the file.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from workbench.checkpoint import Checkpoint, load, save_checkpoint
from workbench.config import RunConfig, TaskConfig
from workbench.models.gpt import GPTConfig, build_gpt, context_length
from workbench.task import GraphSpec

_LAYER_MAP = {
    "ln_1": "ln1",
    "ln_2": "ln2",
    "attn.queries_linear": "attn.q",
    "attn.keys_linear": "attn.k",
    "attn.values_linear": "attn.v",
    "attn.proj": "attn.o",
    "mlp.expand": "mlp.in",
    "mlp.proj": "mlp.out",
}


def paper_to_workbench(state: dict[str, torch.Tensor], n_ctx: int) -> dict[str, torch.Tensor]:
    """Rename (and untie) a paper state dict into TransformerLens names."""
    mapped: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        layer = re.fullmatch(r"layers\.(\d+)\.(.+)\.(weight|bias)", key)
        if key == "embed_tokens.weight":
            mapped["embed.weight"] = value
        elif key == "lm_head.weight":
            mapped["unembed.weight"] = value
        elif key == "pos_encoding.weight":
            mapped["pos_embed.weight"] = value[:n_ctx]
        elif key.startswith("final_layernorm."):
            mapped["ln_final." + key.split(".", 1)[1]] = value
        elif layer and layer.group(2) in _LAYER_MAP:
            mapped[f"blocks.{layer.group(1)}.{_LAYER_MAP[layer.group(2)]}.{layer.group(3)}"] = value
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"unexpected parameter(s) for the paper's GPT: {unknown[:8]}")
    mapped.setdefault("unembed.weight", mapped["embed.weight"])  # tied in the paper's model
    return {k: v.detach().clone().float().contiguous() for k, v in mapped.items()}


_SHAPE_KEYS = {"embed_tokens.weight": 2, "pos_encoding.weight": 2, "layers.0.mlp.expand.weight": 2}


def _check_shape_keys(file: Path, state: dict) -> None:
    """The parameters the model's shape is read from, present, as matrices; and every value a
    tensor. An incomplete state dict is named here rather than as a KeyError."""
    odd = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if odd:
        raise ValueError(f"{file}: expected a state dict of named tensors; entries that are not: {odd[:8]}")
    missing = [k for k in _SHAPE_KEYS if k not in state]
    if missing:
        raise ValueError(f"{file}: incomplete state dict of the paper's GPT: {missing} missing")
    flat = [f"{k} {tuple(state[k].shape)}" for k, ndim in _SHAPE_KEYS.items() if state[k].ndim != ndim]
    if flat:
        raise ValueError(f"{file}: expected 2-d weight matrices, found {flat}")


def import_reference(
    file: str | Path, spec: GraphSpec, out_dir: str | Path, objective: str = "next_token", n_heads: int = 6
) -> Checkpoint:
    """Turn a paper checkpoint into a workbench checkpoint directory whose logits are the original's.

    The number of heads is not recorded in the paper's file (its weights are the same for any
    split of the width), so it must be given; the paper's runs use 6.
    """
    file = Path(file)
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for unreadable or unsafe files
        # One line, without PyTorch's own text: its advice to rerun with weights_only=False is
        # wrong for a file of random bytes and dangerous for a pickle that would run code.
        raise ValueError(f"{file}: not a weights-only PyTorch state dict (torch.save(model.state_dict()) of the paper's GPT); "
                         f"refused unread ({type(error).__name__})") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict) or "embed_tokens.weight" not in state:
        raise ValueError(f"{file}: expected the paper's GPT state dict with 'embed_tokens.weight'; found keys {list(state)[:5] if isinstance(state, dict) else type(state).__name__}")

    _check_shape_keys(file, state)
    vocab, d_model = state["embed_tokens.weight"].shape
    if vocab != spec.vocab_size:
        raise ValueError(f"{file}: embedding has {vocab} rows, but {spec} needs N+4 = {spec.vocab_size}")
    n_layers = len({k.split(".")[1] for k in state if k.startswith("layers.")})
    d_mlp = state["layers.0.mlp.expand.weight"].shape[0]
    n_ctx = context_length(spec)
    if state["pos_encoding.weight"].shape[0] < n_ctx:
        raise ValueError(f"{file}: {state['pos_encoding.weight'].shape[0]} positions, {spec} needs {n_ctx}")
    if d_model % n_heads:
        raise ValueError(f"--n-heads {n_heads} does not divide the width {d_model} of {file}")

    model_config = GPTConfig(n_layers=n_layers, d_model=d_model, n_heads=n_heads, d_mlp=d_mlp)
    model = build_gpt(model_config, spec, seed=0)
    weights = paper_to_workbench(state, n_ctx)
    expected = {k for k in model.state_dict() if k != "unembed.bias"}
    if set(weights) != expected:
        raise ValueError(
            f"{file}: incomplete state dict of the paper's {n_layers}-layer GPT: missing (as named here) "
            f"{sorted(expected - set(weights))[:8]}, unexpected {sorted(set(weights) - expected)[:8]}"
        )
    weights["unembed.bias"] = torch.zeros(vocab)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    wrong = [f"{k} {tuple(v.shape)} (expected {tuple(shapes[k])})" for k, v in weights.items() if v.shape != shapes[k]]
    if wrong:
        raise ValueError(f"{file}: parameter shapes do not fit one GPT of width {d_model}: {wrong[:4]}")
    model.load_state_dict(weights)

    task = TaskConfig(degree=spec.degree, path_length=spec.path_length, num_nodes=spec.num_nodes)
    config = RunConfig(arch="gpt", objective=objective, preset=f"imported:{file.name}", task=task, model=model_config)
    save_checkpoint(out_dir, config, model, step=0, metrics=[])
    return load(out_dir)
