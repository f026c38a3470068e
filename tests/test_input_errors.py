"""Bad input gives one line naming file, line or field and what was expected, never a traceback:
malformed graphs and odd bytes in text files, broken tensor data files, incomplete imports."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from workbench.cli import main as cli_main
from workbench.data_files import load_data, read_safetensors, read_safetensors_metadata, save_data
from workbench.reference_import import import_reference
from workbench.task import GraphSpec, generate
from workbench.text_format import DataFormatError, read_graphs

GOOD = "2,8|5,2|5,9|9,3/5,8=5,2,8"  # source 5, arms 5-2-8 and 5-9-3
TEXT_NAME = "deg_2_path_3_nodes_10_test_3.txt"


def write_lines(tmp_path, lines: list[str], name: str = TEXT_NAME):
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines))
    return path


@pytest.mark.parametrize(
    "line, expected",
    [
        ("2,8|5,2|5,9|3,3/5,8=5,2,8", "every arm has exactly 2 edges"),  # arm 5-9 cut, a self-loop instead
        ("2,8|5,2|5,9|4,3/5,8=5,2,8", "every arm has exactly 2 edges"),  # a detached edge
        ("2,8|5,2|5,9|9,5/5,8=5,2,8", "the source has 2 out-edges and no in-edge"),
        ("2,8|5,2|9,8|9,3/5,8=5,2,8", "the source has 2 out-edges"),
        ("2,8|5,2|5,9|9,8/5,8=5,2,8", "no other node has two out-edges or two in-edges"),
        ("2,8|5,2|5,9|9,3/5,3=5,2,8", "the answer starts at the source and ends at the goal"),
        ("2,8|5,2|5,9|9,3/5,3=5,9,3", None),  # the other arm as the answer is a path-star
    ],
)
def test_text_reader_names_line_and_what_is_wrong_with_a_graph(tmp_path, line, expected):
    path = write_lines(tmp_path, [GOOD, GOOD, line])
    if expected is None:
        assert len(read_graphs(path)) == 3
        return
    with pytest.raises(DataFormatError, match=f"line 3: not a path-star graph of G\\(2,3,10\\).*expected {expected}") as error:
        read_graphs(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_arms_of_2_and_6_nodes_are_rejected_with_their_line(tmp_path):
    lines = ["1,5|5,6|6,7|7,4|0,1|0,2/0,6=0,1,5,6"] * 2 + ["0,1|1,5|5,4|0,2|2,3|3,6/0,4=0,1,5,4"]
    path = write_lines(tmp_path, lines[::-1], "deg_2_path_4_nodes_10_test_3.txt")
    with pytest.raises(DataFormatError, match="line 2: .*every arm has exactly 3 edges"):
        read_graphs(path)


def test_a_byte_order_mark_is_accepted_and_other_odd_bytes_name_their_line(tmp_path):
    path = tmp_path / TEXT_NAME
    path.write_bytes(b"\xef\xbb\xbf" + (GOOD + "\n").encode() * 2)
    assert read_graphs(path).edges[0].tolist() == [[2, 8], [5, 2], [5, 9], [9, 3]]
    path.write_bytes((GOOD + "\n").encode() * 2 + "2,8|5,2|5,9|9,3/5,8=5,2,\u0668\n".encode())
    with pytest.raises(DataFormatError, match="line 3: non-ASCII byte 0xd9"):
        read_graphs(path)


def test_a_25_digit_number_names_its_line(tmp_path):
    path = write_lines(tmp_path, [GOOD, "2,8|5,2|5,9|9,3/5,8=5,2," + "9" * 25])
    with pytest.raises(DataFormatError, match=f"line 2: number {'9' * 25} is far too large"):
        read_graphs(path)
    path = write_lines(tmp_path, [GOOD, "2,8|5,2|5,9|9,3/5,8=5,2,123456789012"])
    with pytest.raises(DataFormatError, match="line 2: unknown token 123456789012"):
        read_graphs(path)


@pytest.fixture
def tensor_file(tmp_path):
    data = generate(GraphSpec(2, 3, 10), 20, seed=0)
    path = tmp_path / "g.safetensors"
    save_data(data, path)
    return data, path


def save_tensors(file, data, meta: dict | None = None, **replace: torch.Tensor) -> None:
    tensors = {"edges": data.edges, "source": data.source, "goal": data.goal, "path": data.path, **replace}
    graph = json.dumps({"degree": 2, "path_length": 3, "num_nodes": 10})
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(file), metadata={"graph": graph} if meta is None else meta)


def test_truncated_or_corrupt_tensor_files_are_named(tensor_file, tmp_path):
    _, path = tensor_file
    whole = path.read_bytes()
    for name, content in (("cut.safetensors", whole[: len(whole) // 2]), ("junk.safetensors", b"not a tensor file" * 4), ("empty.safetensors", b"")):
        broken = tmp_path / name
        broken.write_bytes(content)
        for reader in (load_data, read_safetensors, read_safetensors_metadata):
            with pytest.raises(DataFormatError, match=f"{broken}: not a readable safetensors file, truncated or corrupt"):
                reader(broken)
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        read_safetensors(tmp_path / "nothing.safetensors")
    assert read_safetensors(path).keys() == {"edges", "source", "goal", "path"}


def test_bad_tensors_in_a_data_file_name_tensor_and_graph(tensor_file):
    data, path = tensor_file
    negative, too_big = data.edges.clone(), data.path.clone()
    negative[3, 1, 0] = -4
    too_big[5, 2] = 10
    cases = [
        (dict(edges=negative), "tensor 'edges', graph 3 \\(0-based\\): node label -4 outside 0..9"),
        (dict(path=too_big), "tensor 'path', graph 5 \\(0-based\\): node label 10 outside 0..9"),
        (dict(goal=data.goal.float()), "tensor 'goal' has dtype torch.float32, expected integer node labels"),
        (dict(path=data.path[:-1]), "tensor 'path' has shape \\(19, 3\\), expected \\(20, 3\\)"),  # ragged
        (dict(edges=data.edges[:, :3]), "tensor 'edges' has shape \\(20, 3, 2\\), expected \\(20, 4, 2\\)"),
    ]
    for replace, message in cases:
        save_tensors(path, data, **replace)
        with pytest.raises(DataFormatError, match=f"{path}: {message}"):
            load_data(path)
    save_tensors(path, data, source=data.source.int(), goal=data.goal.to(torch.int16))  # narrower ints are fine
    assert load_data(path).source.dtype == torch.int64


def test_a_malformed_graph_in_a_data_file_is_named(tensor_file):
    data, path = tensor_file
    detached = torch.tensor([[[0, 1], [1, 2], [0, 3], [4, 4]]])  # arm 0-3 cut short, self-loop 4-4
    save_tensors(path, data[:1], edges=detached, source=torch.tensor([0]), goal=torch.tensor([2]), path=torch.tensor([[0, 1, 2]]))
    with pytest.raises(DataFormatError, match="graph 0 \\(0-based\\) is not a path-star graph of G\\(2,3,10\\).*every arm has exactly 2 edges"):
        load_data(path)


@pytest.mark.parametrize(
    "meta, message",
    [
        ({}, "metadata field 'graph' missing"),
        ({"graph": "{degree: 2"}, "metadata field 'graph' is not JSON"),
        ({"graph": json.dumps({"degree": 2, "path_length": 3})}, "must be a JSON object with integer degree, path_length, num_nodes"),
        ({"graph": json.dumps({"degree": 2, "path_length": 3, "num_nodes": "10"})}, "must be a JSON object with integer"),
        ({"graph": json.dumps([2, 3, 10])}, "must be a JSON object"),
        ({"graph": json.dumps({"degree": 2, "path_length": 3, "num_nodes": 4})}, "metadata field 'graph': num_nodes=4 is too small"),
    ],
)
def test_bad_metadata_names_the_field(tensor_file, meta, message):
    data, path = tensor_file
    save_tensors(path, data, meta=meta)
    with pytest.raises(DataFormatError, match=message) as error:
        load_data(path)
    assert str(error.value).startswith(f"{path}: ")


def test_cli_reports_a_broken_data_file_in_one_line(tensor_file, tmp_path, capsys):
    _, path = tensor_file
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(SystemExit) as exit_:
        cli_main(["data", "convert", str(path), str(tmp_path / "out.txt")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith(f"error: {path}: ") and err.count("\n") == 1 and "Traceback" not in err


def paper_state(n_layers: int = 2, d_model: int = 48, spec: GraphSpec = GraphSpec(2, 5, 50)) -> dict[str, torch.Tensor]:
    """A paper-named state dict of the right shapes (values do not matter here)."""
    state = {"embed_tokens.weight": torch.zeros(spec.vocab_size, d_model), "pos_encoding.weight": torch.zeros(32, d_model)}
    for i in range(n_layers):
        for ln in ("ln_1", "ln_2"):
            state[f"layers.{i}.{ln}.weight"], state[f"layers.{i}.{ln}.bias"] = torch.ones(d_model), torch.zeros(d_model)
        for name in ("queries_linear", "keys_linear", "values_linear", "proj"):
            state[f"layers.{i}.attn.{name}.weight"], state[f"layers.{i}.attn.{name}.bias"] = torch.zeros(d_model, d_model), torch.zeros(d_model)
        state[f"layers.{i}.mlp.expand.weight"], state[f"layers.{i}.mlp.expand.bias"] = torch.zeros(4 * d_model, d_model), torch.zeros(4 * d_model)
        state[f"layers.{i}.mlp.proj.weight"], state[f"layers.{i}.mlp.proj.bias"] = torch.zeros(d_model, 4 * d_model), torch.zeros(d_model)
    state["final_layernorm.weight"], state["final_layernorm.bias"] = torch.ones(d_model), torch.zeros(d_model)
    return state


@pytest.mark.parametrize(
    "drop, message",
    [
        ("pos_encoding.weight", "incomplete state dict of the paper's GPT: \\['pos_encoding.weight'\\] missing"),
        ("layers.0.mlp.expand.weight", "incomplete state dict.*'layers.0.mlp.expand.weight'\\] missing"),
        ("layers.1.attn.keys_linear.bias", "incomplete state dict of the paper's 2-layer GPT: missing .*blocks.1.attn.k.bias"),
        ("final_layernorm.weight", "missing .*ln_final.weight"),
    ],
)
def test_import_of_an_incomplete_state_dict_names_what_is_missing(tmp_path, drop, message):
    state = paper_state()
    del state[drop]
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match=message):
        import_reference(tmp_path / "partial.pt", GraphSpec(2, 5, 50), tmp_path / "out")


def test_import_of_odd_shapes_and_values_is_named(tmp_path):
    state = paper_state()
    state["layers.1.mlp.proj.weight"] = torch.zeros(48, 100)
    torch.save(state, tmp_path / "shapes.pt")
    with pytest.raises(ValueError, match="shapes.pt: parameter shapes do not fit.*blocks.1.mlp.out.weight"):
        import_reference(tmp_path / "shapes.pt", GraphSpec(2, 5, 50), tmp_path / "out")
    state = paper_state()
    state["pos_encoding.weight"] = torch.zeros(32)
    torch.save(state, tmp_path / "flat.pt")
    with pytest.raises(ValueError, match="flat.pt: expected 2-d weight matrices, found \\['pos_encoding.weight \\(32,\\)'\\]"):
        import_reference(tmp_path / "flat.pt", GraphSpec(2, 5, 50), tmp_path / "out")
    state = paper_state()
    state["step"] = 5
    torch.save(state, tmp_path / "extra.pt")
    with pytest.raises(ValueError, match="extra.pt: expected a state dict of named tensors.*'step'"):
        import_reference(tmp_path / "extra.pt", GraphSpec(2, 5, 50), tmp_path / "out")
