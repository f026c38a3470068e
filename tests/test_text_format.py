import os

import pytest
import torch

from conftest import TEST_DATA, reference_files
from workbench.data_files import load_data, save_data
from workbench.task import GraphSpec, generate
from workbench.files import atomic_write_text
from workbench.text_format import DataFormatError, read_graphs, write_graphs


@pytest.mark.parametrize("path", reference_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_reference_files_round_trip_exactly(path, tmp_path):
    data = read_graphs(path)
    out = tmp_path / path.name
    write_graphs(data, out)
    assert out.read_bytes() == path.read_bytes()


def test_reference_line_parses_to_its_parts():
    data = read_graphs(TEST_DATA / "deg_2_path_5_nodes_50_test_300.txt")
    # 32,3|16,12|3,19|32,34|34,6|6,16|19,47|47,28/32,12=32,34,6,16,12
    assert data.spec == GraphSpec(2, 5, 50) and len(data) == 300
    assert data.edges[0].tolist() == [[32, 3], [16, 12], [3, 19], [32, 34], [34, 6], [6, 16], [19, 47], [47, 28]]
    assert (data.source[0].item(), data.goal[0].item()) == (32, 12)
    assert data.path[0].tolist() == [32, 34, 6, 16, 12]


def write(tmp_path, name, lines):
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines))
    return path


GOOD = "2,8|5,2|5,9|9,3/5,8=5,2,8"


@pytest.mark.parametrize(
    "lines, message",
    [
        ([GOOD, "2,8|5,2|5,9|9,3/5,8=5,2,"], r"line 2: expected a,b\|a,b"),
        ([GOOD, "2,8|5,2|5,9/5,8=5,2,8"], r"line 2: G\(2,3,10\) has 4 edges and a path of 3 nodes, this line has 3 edges"),
        (["2,8|5,2|5,9|9,3|3,7/5,8=5,2,8", GOOD], r"line 1: G\(2,3,10\) has 4 edges .* this line has 5 edges"),  # the first line breaks it
        ([GOOD, GOOD, "2,8|5,2|5,9|9,13/5,8=5,2,8"], "line 3: unknown token 13"),
        ([GOOD, "2,8|5,2|5,9|9,3/5,8=5,9,8"], "line 2: not a path-star graph"),
        (["2;8|5,2|5,9|9,3/5,8=5,2,8"], "line 1: expected"),
        ([], "empty file"),
    ],
)
def test_malformed_files_name_file_and_line(tmp_path, lines, message):
    path = write(tmp_path, "deg_2_path_3_nodes_10_test_3.txt", lines)
    with pytest.raises(DataFormatError, match=message) as error:
        read_graphs(path)
    assert str(path) in str(error.value)


def test_shape_must_agree_with_file_name(tmp_path):
    path = write(tmp_path, "deg_3_path_3_nodes_10_test_1.txt", [GOOD])
    with pytest.raises(DataFormatError, match="line 1: G\\(3,3,10\\) has 6 edges"):
        read_graphs(path)


def test_an_unnamed_file_takes_line_1_as_the_shape_and_names_the_line_that_breaks_it(tmp_path):
    path = write(tmp_path, "graphs.txt", [GOOD, GOOD, "2,8|5,2|5,9/5,8=5,2,8"])
    with pytest.raises(DataFormatError, match="line 3: line 1 has 4 edges and a path of 3 nodes, this line has 3 edges"):
        read_graphs(path, num_nodes=10)


def test_unnamed_file_needs_num_nodes(tmp_path):
    path = write(tmp_path, "graphs.txt", [GOOD])
    with pytest.raises(DataFormatError, match="num_nodes"):
        read_graphs(path)
    assert read_graphs(path, num_nodes=10).spec == GraphSpec(2, 3, 10)


def test_safetensors_round_trip(tmp_path):
    data = generate(GraphSpec(3, 4, 20), 100, seed=1)
    save_data(data, tmp_path / "g.safetensors")
    back = load_data(tmp_path / "g.safetensors")
    assert back.spec == data.spec
    for name in ("edges", "source", "goal", "path"):
        assert torch.equal(getattr(back, name), getattr(data, name))
    with pytest.raises(DataFormatError, match="suffix"):
        save_data(data, tmp_path / "g.csv")


def test_atomic_write_keeps_the_old_file_on_failure_and_honours_the_umask(tmp_path):
    path = tmp_path / "table.csv"
    atomic_write_text(path, "a,b\n1,2\n")
    mask = os.umask(0)
    os.umask(mask)
    assert path.read_text() == "a,b\n1,2\n" and path.stat().st_mode & 0o777 == 0o666 & ~mask
    with pytest.raises(UnicodeEncodeError):
        atomic_write_text(path, "a,b\n\u00e9,2\n")  # fails while writing
    assert path.read_text() == "a,b\n1,2\n" and [p.name for p in tmp_path.iterdir()] == ["table.csv"]
