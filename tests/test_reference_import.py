"""A checkpoint written by the paper's code imports with identical logits.

``PaperGPT`` below re-implements the paper code's forward independently of TransformerLens,
from its parameter names and the facts of its model (tanh-GELU, LayerNorm eps 1e-5, learned
positions created after init so left at N(0, 1), 1/sqrt(head_dim) scaling, causal mask, no
dropout, LM head tied to the token embedding)."""

import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import TEST_DATA
from workbench.evaluate import evaluate
from workbench.objectives import get_objective
from workbench.reference_import import import_reference
from workbench.task import GraphSpec
from workbench.text_format import read_graphs


class PaperBlock(nn.Module):
    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.ln_1, self.ln_2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = nn.Module()
        for name in ("queries_linear", "keys_linear", "values_linear", "proj"):
            setattr(self.attn, name, nn.Linear(d_model, d_model))
        self.mlp = nn.Module()
        self.mlp.expand, self.mlp.proj = nn.Linear(d_model, 4 * d_model), nn.Linear(4 * d_model, d_model)

    def forward(self, x):
        batch, pos, width = x.shape
        h = self.ln_1(x)
        split = lambda t: t.view(batch, pos, self.n_heads, width // self.n_heads).transpose(1, 2)  # noqa: E731
        q, k, v = (split(getattr(self.attn, n)(h)) for n in ("queries_linear", "keys_linear", "values_linear"))
        scores = q @ k.transpose(-2, -1) / math.sqrt(width // self.n_heads)
        scores = scores.masked_fill(torch.ones(pos, pos).triu(1).bool(), float("-inf"))
        x = x + self.attn.proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, pos, width))
        return x + self.mlp.proj(F.gelu(self.mlp.expand(self.ln_2(x)), approximate="tanh"))


class PaperGPT(nn.Module):
    def __init__(self, vocab: int, block_size: int, d_model: int, n_layers: int, n_heads: int):
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab, d_model)
        for p in self.parameters():
            nn.init.normal_(p, std=0.3)
        self.pos_encoding = nn.Embedding(block_size, d_model)  # after init: N(0, 1), as in the paper's code
        self.layers = nn.ModuleList(PaperBlock(d_model, n_heads) for _ in range(n_layers))
        self.final_layernorm = nn.LayerNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab, bias=False)
        self.lm_head.weight = self.embed_tokens.weight
        for p in self.parameters():  # non-trivial LayerNorm and bias values
            if p.ndim == 1:
                nn.init.normal_(p, mean=float(p.mean() > 0.5), std=0.1)

    def forward(self, tokens):
        x = self.embed_tokens(tokens) + self.pos_encoding(torch.arange(tokens.shape[1]))
        for layer in self.layers:
            x = layer(x)
        return self.lm_head(self.final_layernorm(x))


@pytest.fixture
def paper_checkpoint(tmp_path):
    torch.manual_seed(0)
    spec = GraphSpec(2, 5, 50)
    model = PaperGPT(spec.vocab_size, block_size=32, d_model=48, n_layers=2, n_heads=6).eval()
    path = tmp_path / "paper_model.pt"
    torch.save(model.state_dict(), path)
    return spec, model, path


def test_imported_checkpoint_gives_the_original_logits(paper_checkpoint, tmp_path):
    spec, original, path = paper_checkpoint
    assert "lm_head.weight" in torch.load(path, weights_only=True)  # tied weights are saved under both names
    imported = import_reference(path, spec, tmp_path / "imported", n_heads=6)
    data = read_graphs(TEST_DATA / "deg_2_path_5_nodes_50_test_300.txt")
    objective = get_objective("next_token")
    tokens = objective.inputs(data.prompt_tokens(), data.answer_tokens(), spec)
    with torch.no_grad():
        expected, got = original(tokens), imported.model(tokens)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)
    top2 = expected.topk(2, dim=-1).values
    clear = top2[..., 0] - top2[..., 1] > 1e-3  # a near-tie may break either way on another CPU
    assert clear.float().mean() > 0.9 and torch.equal(got.argmax(-1)[clear], expected.argmax(-1)[clear])
    ours = evaluate(imported.model, data, objective)
    theirs = evaluate(original, data, objective)
    # float32 forward passes: a loss may differ in the 7th digit between CPUs (9.5e-7 seen)
    pd.testing.assert_frame_equal(ours, theirs, check_exact=False, rtol=1e-4, atol=1e-5)
    assert (tmp_path / "imported" / "model.safetensors").exists()
    assert imported.config.model.n_layers == 2 and imported.config.model.d_model == 48


def test_import_rejects_wrong_graph_and_unknown_keys(paper_checkpoint, tmp_path):
    spec, original, path = paper_checkpoint
    with pytest.raises(ValueError, match="needs N\\+4 = 34"):
        import_reference(path, GraphSpec(2, 5, 30), tmp_path / "x")
    state = original.state_dict()
    state["layers.0.attn.rotary.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "odd.pt")
    with pytest.raises(ValueError, match="unexpected parameter"):
        import_reference(tmp_path / "odd.pt", spec, tmp_path / "y")


class RunsCode:
    """A pickle payload that would run code on load (it must never be unpickled)."""

    def __reduce__(self):
        return (print, ("this must not run",))


@pytest.mark.parametrize("content", ["random bytes", "a pickle that runs code"])
def test_a_file_that_is_not_a_weights_only_state_dict_is_refused_in_one_line(tmp_path, capsys, content):
    import pickle

    from workbench.cli import main as cli_main

    file = tmp_path / "model.pt"
    file.write_bytes(bytes(range(256)) * 8 if content == "random bytes" else pickle.dumps({"w": RunsCode()}))
    with pytest.raises(SystemExit) as exit_:
        cli_main(["import-reference", str(file), "--graph", "2,5,50", "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert exit_.value.code == 2 and "this must not run" not in captured.out
    assert captured.err.count("\n") == 1 and f"{file}: not a weights-only PyTorch state dict" in captured.err
    assert "weights_only=False" not in captured.err and not (tmp_path / "out").exists()
