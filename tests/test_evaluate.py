import pytest
import torch

from conftest import SHARED_DATA, TEST_DATA
from oracles import EdgeFollower
from workbench.evaluate import evaluate, format_table, metrics_frame, predictions
from workbench.objectives import get_objective
from workbench.text_format import read_graphs


def values(frame, metric):
    rows = frame[frame.metric == metric]
    return dict(zip(rows.position, rows.value))


def first_listed_source_edge_is_on_path(data):
    out_of_source = data.edges[:, :, 0] == data.source[:, None]
    first = out_of_source.float().argmax(dim=1)
    return (data.edges[torch.arange(len(data)), first, 1] == data.path[:, 1]).float().mean().item()


@pytest.mark.parametrize("path", [TEST_DATA / "deg_2_path_5_nodes_50_test_300.txt", SHARED_DATA / "deg_2_path_5_nodes_50_test_20000.txt"])
def test_clever_hans_model_scores_the_paper_signature(path):
    if not path.exists():
        pytest.skip(f"{path} not present")
    data = read_graphs(path)
    frame = evaluate(EdgeFollower(data.spec), data, get_objective("next_token"))
    expected_r2 = first_listed_source_edge_is_on_path(data)
    assert 0.4 < expected_r2 < 0.6
    tf, greedy = values(frame, "tf_accuracy"), values(frame, "greedy_accuracy")
    assert tf["r1"] == 1.0 and tf["r2"] == pytest.approx(expected_r2)
    assert tf["r3"] == tf["r4"] == tf["r5"] == 1.0  # each given token has exactly one out-edge
    assert greedy["r2"] == pytest.approx(expected_r2) and greedy["path"] == pytest.approx(expected_r2)
    assert tf["path"] == pytest.approx(expected_r2)
    assert frame.loc[frame.position == "r2", "role"].unique().tolist() == ["first_decision"]
    assert "r2 (first decision)" in format_table(frame)


def test_reverse_edge_follower_solves_reverse_and_metrics_are_in_path_order():
    data = read_graphs(TEST_DATA / "deg_2_path_5_nodes_50_test_300.txt")
    frame = evaluate(EdgeFollower(data.spec, backwards=True), data, get_objective("reverse"))
    assert set(values(frame, "tf_accuracy").values()) == {1.0}
    assert set(values(frame, "greedy_accuracy").values()) == {1.0}
    assert list(values(frame, "tf_accuracy")) == ["r1", "r2", "r3", "r4", "r5", "path"]


def test_predictions_without_greedy_decoding_keep_the_teacher_forced_ones():
    """Callers that read only the teacher-forced predictions skip decoding; what they read is
    what the full call gives."""
    data = read_graphs(TEST_DATA / "deg_2_path_5_nodes_50_test_300.txt")
    model, objective = EdgeFollower(data.spec), get_objective("next_token")
    full, forced = predictions(model, data, objective, batch_size=128), predictions(model, data, objective, batch_size=128, greedy=False)
    assert set(forced) == {"tf_pred", "tf_loss"} and "greedy_pred" in full
    assert torch.equal(forced["tf_pred"], full["tf_pred"]) and torch.equal(forced["tf_loss"], full["tf_loss"])
    assert forced["tf_pred"].shape == (len(data), data.spec.path_length)


def test_metrics_frame_is_tidy():
    lines = [{"step": 5, "train": {"loss": {"r1": 1.0}}, "test": {"tf_accuracy": {"r1": 0.5, "path": 0.1}}}]
    frame = metrics_frame(lines)
    assert frame.to_dict("records") == [
        {"step": 5, "split": "train", "metric": "loss", "position": "r1", "value": 1.0},
        {"step": 5, "split": "test", "metric": "tf_accuracy", "position": "r1", "value": 0.5},
        {"step": 5, "split": "test", "metric": "tf_accuracy", "position": "path", "value": 0.1},
    ]
