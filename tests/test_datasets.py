"""One definition of the training and test graphs (workbench.datasets)."""

import time

import pytest
import torch

from conftest import TEST_DATA
from workbench.config import TaskConfig
from workbench.datasets import held_out_graphs, evaluation_graphs, training_graphs
from workbench.text_format import read_graphs


def test_the_held_out_stream_is_prefix_stable_and_disjoint_from_training_seeds():
    task = TaskConfig(degree=2, path_length=3, num_nodes=50)
    short, long = held_out_graphs(task, 2_000), held_out_graphs(task, 5_000)
    assert len(short) == 2_000 and len(long) == 5_000
    assert torch.equal(short.path, long.path[:2_000]) and torch.equal(short.edges, long.edges[:2_000])
    assert not torch.equal(held_out_graphs(task, 1_500).path[1_000:], long.path[:500])  # blocks differ


def test_the_test_graphs_never_build_the_training_set():
    task = TaskConfig(degree=2, path_length=5, num_nodes=50, num_train=10**9, num_test=5_000)  # a training set no machine could draw
    start = time.perf_counter()
    data = evaluation_graphs(task, 2_000)
    assert len(data) == 2_000 and time.perf_counter() - start < 30
    assert torch.equal(data.path, evaluation_graphs(task).path[:2_000])  # a prefix of the default test set (task.num_test)


def test_a_test_file_is_the_test_set_and_asking_for_more_than_it_holds_is_an_error():
    file = TEST_DATA / "deg_2_path_3_nodes_10_test_300.txt"
    task = TaskConfig(degree=2, path_length=3, num_nodes=10, test_file=str(file))
    whole = read_graphs(file)
    assert torch.equal(evaluation_graphs(task).path, whole.path) and torch.equal(evaluation_graphs(task, 100).path, whole.path[:100])
    with pytest.raises(ValueError, match="holds 300 graphs; 301 are needed"):
        evaluation_graphs(task, 301)
    other = TEST_DATA / "deg_2_path_5_nodes_50_test_300.txt"
    with pytest.raises(ValueError, match=r"task.test_file holds G\(2,5,50\) graphs, but the run is configured for G\(2,3,50\)"):
        evaluation_graphs(TaskConfig(degree=2, path_length=3, num_nodes=50, test_file=str(other)))


def test_training_graphs_are_generated_from_the_data_seed():
    task = TaskConfig(degree=2, path_length=3, num_nodes=50, num_train=300)
    a, b = training_graphs(task), training_graphs(TaskConfig(degree=2, path_length=3, num_nodes=50, num_train=300, data_seed=1))
    assert len(a) == 300 and torch.equal(a.path, training_graphs(task).path) and not torch.equal(a.path, b.path)
