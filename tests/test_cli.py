import pandas as pd
import pytest

from conftest import TEST_DATA
from workbench.cli import build_parser, main

TINY = ["model.n_layers=1", "model.d_model=32", "model.n_heads=2", "train.steps=6", "train.eval_every=3",
        "train.eval_graphs=32", "train.batch_size=16", "task.num_train=64", "task.num_test=32"]


def test_data_generate_convert_train_eval(tmp_path, capsys):
    main(["data", "generate", "--graph", "2,3,10", "--num-graphs", "50", "--seed", "1", "--out", str(tmp_path / "g.txt")])
    main(["data", "convert", str(tmp_path / "g.txt"), str(tmp_path / "g.safetensors"), "--num-nodes", "10"])
    assert len((tmp_path / "g.txt").read_text().splitlines()) == 50
    run = tmp_path / "run"
    main(["train", "--graph", "2,3,10", "--objective", "reverse", "--out", str(run), "--no-progress", "--set", *TINY])
    assert "r2 (first decision)" in capsys.readouterr().out
    csv = tmp_path / "eval.csv"
    main(["eval", str(run), "--data", str(TEST_DATA / "deg_2_path_3_nodes_10_test_300.txt"), str(tmp_path / "g.safetensors"), "--csv", str(csv)])
    frame = pd.read_csv(csv)
    assert set(frame.data.str.rsplit("/", n=1).str[-1]) == {"deg_2_path_3_nodes_10_test_300.txt", "g.safetensors"}
    assert list(frame.columns[:9]) == ["checkpoint", "arch", "objective", "degree", "path_length", "num_nodes", "seed", "step", "data"]
    assert set(frame.objective) == {"reverse"} and set(frame.step) == {6}
    assert len(frame) == 2 * (3 * 3 + 2)


def test_errors_are_one_clear_line(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--out", str(tmp_path / "r"), "--set", "train.stepz=3"])
    assert "unknown field 'stepz' of train" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["data", "convert", str(tmp_path / "missing.txt"), str(tmp_path / "x.txt")])
    assert "missing.txt: no such data file" in capsys.readouterr().err


def every_verb(parser=None, prefix=()) -> list[list[str]]:
    """Every verb of the parser, nested ones (data generate) included."""
    import argparse

    parser = parser or build_parser()
    verbs = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = every_verb(sub, (*prefix, name))
                verbs += nested or [[*prefix, name]]
    return verbs


def test_every_verb_is_listed():
    assert {" ".join(v) for v in every_verb()} >= {"data generate", "data convert", "train", "eval", "import-reference", "export-hf",
                                                     "import-hf", "probe", "inspect", "main", "study", "report", "findings", "ship"}


@pytest.mark.parametrize("verb", every_verb(), ids=" ".join)
def test_every_verb_has_help(verb, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*verb, "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and f"usage: workbench {' '.join(verb)}" in out and len(out.splitlines()) > 4


def test_eval_on_another_graphs_file_is_an_input_error(tmp_path, capsys):
    run = tmp_path / "run"
    main(["train", "--graph", "2,3,10", "--out", str(run), "--no-progress", "--set", *TINY])
    capsys.readouterr()
    other = TEST_DATA / "deg_2_path_5_nodes_50_test_300.txt"
    with pytest.raises(SystemExit) as exit_:
        main(["eval", str(run), "--data", str(other)])
    assert exit_.value.code == 2  # as every other input error
    assert f"error: {other} holds G(2,5,50) graphs, but {run} was trained on G(2,3,10)" in capsys.readouterr().err
