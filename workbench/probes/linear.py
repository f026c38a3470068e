"""Linear probes: scikit-learn logistic regression on standardised features.

The regularisation strength C is chosen by k-fold cross-validation on the training graphs
only; the refitted probe is scored on held-out graphs. Accuracy comes with a 95% percentile
bootstrap interval over test graphs, a chance level (1 / size of the label space) and a
majority baseline (always predict the most frequent training label).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

DEFAULT_CS = (0.1, 1.0, 10.0)
# lbfgs iterations. The default sweep's fits took at most 114 (cpu-preset GPT after 300 steps
# and an untrained cpu-preset Mamba, 4,096 SSM-state features included; 3,000 graphs, tol
# 1e-3); a fit that converges stops there, so the limit only bounds the ones that do not.
MAX_ITER = 1_000


def make_probe(C: float = 1.0, tol: float = 1e-3, max_iter: int | None = None) -> Pipeline:
    """StandardScaler + multinomial logistic regression (lbfgs; ``max_iter`` defaults to
    ``MAX_ITER``). ``tol`` 1e-3 instead of scikit-learn's 1e-4 halves the time on 50-way node
    targets; held-out accuracy moved by less than 0.01 where we compared."""
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, tol=tol, max_iter=max_iter or MAX_ITER))


@dataclass
class ProbeFit:
    """A fitted probe, and whether every lbfgs fit behind it (the cross-validation fits and
    the refit) converged: an unconverged probe's accuracy is a lower bound, not a measurement."""

    probe: Pipeline | _Constant
    n_iter: int  # the most lbfgs iterations any of those fits took
    converged: bool


def fit_probe(features: np.ndarray, labels: np.ndarray, Cs: tuple[float, ...] = DEFAULT_CS, folds: int = 3, seed: int = 0) -> Pipeline:
    """A probe refitted on all of ``features`` with C chosen by ``folds``-fold CV on them."""
    return fit_probe_checked(features, labels, Cs, folds, seed).probe


def fit_probe_checked(features: np.ndarray, labels: np.ndarray, Cs: tuple[float, ...] = DEFAULT_CS, folds: int = 3, seed: int = 0) -> ProbeFit:
    """``fit_probe`` with its convergence record.

    A single class in the training labels leaves nothing to learn: the probe then predicts
    that class (scikit-learn's LogisticRegression refuses one class). C is the first of the
    best mean fold accuracy, as GridSearchCV picks it; the folds are fitted here so that each
    fit's convergence can be read.
    """
    if len(np.unique(labels)) == 1:
        return ProbeFit(_Constant(labels[0]), 0, True)
    fits: list[tuple[int, bool]] = []
    C = Cs[0] if len(Cs) == 1 else _cross_validated_C(features, labels, Cs, KFold(folds, shuffle=True, random_state=seed), fits)
    probe = _fit(make_probe(C), features, labels, fits)
    return ProbeFit(probe, max(n for n, _ in fits), all(ok for _, ok in fits))


def _fit(probe: Pipeline, features: np.ndarray, labels: np.ndarray, fits: list[tuple[int, bool]]) -> Pipeline | _Constant:
    """Fit ``probe`` and append (lbfgs iterations, converged) to ``fits``.

    scikit-learn's ConvergenceWarning (iteration limit, or a line search that failed) is
    caught here because it is recorded, and the table carries it; other warnings pass on.
    """
    if len(np.unique(labels)) == 1:  # a CV fold can hold one class of a rare-class target
        return _Constant(labels[0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        probe.fit(features, labels)
    for w in caught:
        if not issubclass(w.category, ConvergenceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    fits.append((int(np.max(probe[-1].n_iter_)), not any(issubclass(w.category, ConvergenceWarning) for w in caught)))
    return probe


def _cross_validated_C(features: np.ndarray, labels: np.ndarray, Cs: tuple[float, ...], folds: KFold, fits: list[tuple[int, bool]]) -> float:
    """The C of the best mean held-out fold accuracy (the first on ties)."""
    splits = list(folds.split(features))
    means = [np.mean([(_fit(make_probe(C), features[tr], labels[tr], fits).predict(features[te]) == labels[te]).mean() for tr, te in splits]) for C in Cs]
    return Cs[int(np.argmax(means))]


def chosen_C(probe: Pipeline) -> float:
    return float(probe[-1].C) if isinstance(probe, Pipeline) else float("nan")


class _Constant:
    """Predicts one label: the probe of a target that is constant on the training graphs."""

    def __init__(self, label):
        self.label = label

    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.full(len(features), self.label)


def bootstrap_interval(correct: np.ndarray, seed: int = 0, resamples: int = 1_000, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the mean of ``correct`` (one value per test graph)."""
    rng = np.random.default_rng(seed)
    means = correct[rng.integers(0, len(correct), size=(resamples, len(correct)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def majority_accuracy(train_labels: np.ndarray, test_labels: np.ndarray) -> float:
    values, counts = np.unique(train_labels, return_counts=True)
    return float((test_labels == values[counts.argmax()]).mean())


@dataclass
class ProbeScore:
    """One target's probe on one (hook, position): correctness per test graph and the Cs used."""

    correct: np.ndarray  # (n_test,) in [0, 1]; the mean over slots for per-slot targets
    Cs: np.ndarray  # (slots,) the C of each slot's probe
    majority: float
    n_iter: int = 0  # the most lbfgs iterations of any fit behind it (all slots, CV included)
    converged: bool = True  # every one of those fits converged

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean())

    @property
    def C(self) -> float:
        """The chosen C (geometric mean over slots for per-slot targets)."""
        return float(np.exp(np.log(self.Cs).mean()))


def score_probe(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
    Cs: tuple[float, ...] = DEFAULT_CS, folds: int = 3, seed: int = 0, fixed_Cs: np.ndarray | None = None,
) -> ProbeScore:
    """Fit on train, score on test. Labels (n,) give one probe; (n, slots) one probe per slot.

    ``fixed_Cs`` (one per slot) skips cross-validation: the control task is probed with the
    same regularisation as the real one, as Hewitt & Liang prescribe.
    """
    train_y2, test_y2 = train_y.reshape(len(train_y), -1), test_y.reshape(len(test_y), -1)
    correct, chosen, majority, fits = [], [], [], []
    for j in range(train_y2.shape[1]):
        grid = Cs if fixed_Cs is None or np.isnan(fixed_Cs[j]) else (float(fixed_Cs[j]),)
        fit = fit_probe_checked(train_x, train_y2[:, j], grid, folds, seed)
        probe = fit.probe
        correct.append((probe.predict(test_x) == test_y2[:, j]).astype(float))
        chosen.append(chosen_C(probe) if isinstance(probe, Pipeline) else grid[0] if len(grid) == 1 else float("nan"))
        majority.append(majority_accuracy(train_y2[:, j], test_y2[:, j]))
        fits.append(fit)
    return ProbeScore(
        np.mean(correct, axis=0), np.array(chosen), float(np.mean(majority)),
        n_iter=max(f.n_iter for f in fits), converged=all(f.converged for f in fits),
    )
