"""Probes say whether they converged, choose C as GridSearchCV did, and never score on a graph
they were fitted on."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, KFold

from conftest import tiny_config
from workbench.checkpoint import load, save_checkpoint
from workbench.config import apply_overrides
from workbench.factory import build_model
from workbench.probes import linear, probe_checkpoint
from workbench.probes.sweep import probe_graphs
from workbench.datasets import training_graphs


def planted(n: int = 600, width: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, width))
    return features, (features[:, :6] @ rng.normal(size=(6, 3))).argmax(axis=1)


def test_convergence_is_recorded_not_hidden(monkeypatch):
    x, y = planted()
    fit = linear.fit_probe_checked(x, y)
    assert fit.converged and 0 < fit.n_iter < linear.MAX_ITER
    monkeypatch.setattr(linear, "MAX_ITER", 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # caught where it is recorded, not let out
        starved = linear.fit_probe_checked(x, y)
        score = linear.score_probe(x[:400], y[:400], x[400:], y[400:])
    assert not starved.converged and starved.n_iter == 3
    assert not score.converged and score.n_iter == 3


def test_cross_validation_picks_the_C_that_grid_search_picked():
    for seed in range(3):
        x, y = planted(seed=seed)
        y = np.where(np.random.default_rng(seed).random(len(y)) < 0.3, 0, y)  # noisy labels: C matters
        search = GridSearchCV(linear.make_probe(), {"logisticregression__C": list(linear.DEFAULT_CS)}, cv=KFold(3, shuffle=True, random_state=0))
        expected = search.fit(x, y).best_estimator_
        got = linear.fit_probe(x, y)
        assert linear.chosen_C(got) == linear.chosen_C(expected)
        np.testing.assert_allclose(got[-1].coef_, expected[-1].coef_, rtol=1e-6, atol=1e-8)


def test_sweep_rows_carry_convergence(tmp_path, monkeypatch):
    config = tiny_config()
    save_checkpoint(tmp_path / "ckpt", config, build_model(config, seed=0), step=0, metrics=[])
    settings = dict(positions=["eq"], targets=["arm", "on_path"], n_train=300, n_test=200, n_jobs=1)
    table = probe_checkpoint(tmp_path / "ckpt", **settings)
    assert table["converged"].all() and table["controls_converged"].all() and (table["n_iter"] > 0).all()
    monkeypatch.setattr(linear, "MAX_ITER", 2)  # n_jobs=1: the fits run in this process
    starved = probe_checkpoint(tmp_path / "ckpt", hooks=["resid_post"], **settings)
    assert not starved["converged"].any() and not starved["controls_converged"].any() and (starved["n_iter"] == 2).all()


def prompts(data) -> set[tuple[int, ...]]:
    return {tuple(row) for row in data.prompt_tokens().tolist()}


@pytest.mark.parametrize("test_file", [False, True], ids=["held-out stream", "test file"])
def test_probe_train_and_test_graphs_are_disjoint_and_held_out(tmp_path, test_file):
    task = ["task.degree=2", "task.path_length=5", "task.num_nodes=50", "task.num_train=5000", "task.num_test=6000"]
    config = apply_overrides(tiny_config(), task)
    if test_file:
        from workbench.data_files import save_data
        from workbench.task import generate

        save_data(generate(config.task.graph, 6_000, seed=99), tmp_path / "test.safetensors")
        config = apply_overrides(config, [f"task.test_file={tmp_path / 'test.safetensors'}"])
    save_checkpoint(tmp_path / "ckpt", config, build_model(config, seed=0), step=0, metrics=[])
    train, test = probe_graphs(load(tmp_path / "ckpt"), n_train=3_000, n_test=2_000)
    assert (len(train), len(test)) == (3_000, 2_000)
    fit_on, scored_on = prompts(train), prompts(test)
    assert len(fit_on) == 3_000 and len(scored_on) == 2_000  # no graph twice on one side either
    assert not fit_on & scored_on
    assert not (fit_on | scored_on) & prompts(training_graphs(config.task))  # nor a graph the model trained on
