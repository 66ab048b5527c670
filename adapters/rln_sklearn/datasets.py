"""The tutorial's benchmark data: a real table plus columns of pure noise.

RLN's claim is that it finds the few informative inputs among many useless
ones; the authors' tutorial shows it on Boston housing with 1000 N(0, 1) noise
columns appended. Here the same construction, for any table. The built-in
tables need no network: Boston housing ships with this package
(`rln_sklearn/data/boston.csv`, ISLP's copy; provenance and licence in
`rln_sklearn/data/README.md`), diabetes and breast cancer with scikit-learn.
"""

from __future__ import annotations

import csv
import dataclasses
from importlib import resources

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.model_selection import train_test_split

__all__ = ["BOSTON_TARGET", "BUILTIN", "CLASSIFICATION", "NoisyTable", "Split",
           "add_noise_features", "load_noisy", "load_table", "split_for_selection"]

BOSTON_TARGET = "medv"


def _load_boston() -> tuple[np.ndarray, np.ndarray, list[str]]:
    with resources.files("rln_sklearn").joinpath("data", "boston.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    header, values = rows[0], np.array(rows[1:], dtype=np.float64)
    target = header.index(BOSTON_TARGET)
    names = [name for i, name in enumerate(header) if i != target]
    return np.delete(values, target, axis=1), values[:, target], names


def _from_sklearn(loader):
    def load() -> tuple[np.ndarray, np.ndarray, list[str]]:
        bunch = loader()
        return bunch.data, bunch.target, [str(name) for name in bunch.feature_names]
    return load


BUILTIN = {"boston": _load_boston, "diabetes": _from_sklearn(load_diabetes),
           "breast_cancer": _from_sklearn(load_breast_cancer)}
CLASSIFICATION = frozenset({"breast_cancer"})
"""The built-in tables whose target is a class label."""


@dataclasses.dataclass
class NoisyTable:
    """A table with noise columns appended after its real ones.

    Attributes:
        X: float64, shape (n_samples, n_real + n_noise); real columns first.
        y: targets, shape (n_samples,).
        feature_names: n_real real names, then "noise_0", "noise_1", ...
        n_real: number of real (informative) columns.
    """

    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    n_real: int

    @property
    def is_real(self) -> np.ndarray:
        """Boolean mask over columns: True for the real ones, shape (n_features,)."""
        return np.arange(self.X.shape[1]) < self.n_real


def add_noise_features(X: np.ndarray, y: np.ndarray, feature_names: list[str],
                       n_noise: int, rng: np.random.RandomState) -> NoisyTable:
    """Append `n_noise` columns of N(0, 1) noise to X (drawn from `rng`).

    Raises:
        ValueError: n_noise not an int >= 0.
    """
    X = np.asarray(X, dtype=np.float64)
    if isinstance(n_noise, bool) or not isinstance(n_noise, (int, np.integer)) \
            or n_noise < 0:
        raise ValueError(f"Invalid n_noise: {n_noise!r}; expected an int >= 0")
    noise = rng.standard_normal((X.shape[0], n_noise))
    names = list(feature_names) + [f"noise_{i}" for i in range(n_noise)]
    return NoisyTable(np.hstack([X, noise]), np.asarray(y), names, X.shape[1])


def load_noisy(name: str, n_noise: int = 1000, seed: int = 0) -> NoisyTable:
    """A built-in table ("boston", "diabetes" or "breast_cancer") plus noise columns.

    All three ship with this package or scikit-learn, so nothing is downloaded.

    Raises:
        ValueError: an unknown name, or n_noise not an int >= 0.
    """
    X, y, names = load_table(name)
    return add_noise_features(X, y, names, n_noise, np.random.RandomState(seed))


def load_table(name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(X, y, feature names) of a built-in table.

    "boston": Boston housing, 506 rows, 12 inputs (crim ... lstat; no `black`
    column), target medv in $1000s. "diabetes": scikit-learn's, 442 rows, 10
    inputs. "breast_cancer": scikit-learn's, 569 rows, 30 inputs, target 0/1.

    Raises:
        ValueError: an unknown name.
    """
    if name not in BUILTIN:
        raise ValueError(f"Unknown data set {name!r}; expected one of {sorted(BUILTIN)}")
    return BUILTIN[name]()


@dataclasses.dataclass
class Split:
    """Rows to fit on, to pick hyperparameters on, and to report on, as they are
    (the RLN estimators standardize their inputs with the fit rows' statistics)."""

    X_fit: np.ndarray
    y_fit: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


def split_for_selection(X: np.ndarray, y: np.ndarray, seed: int, *,
                        stratify: bool = False) -> Split:
    """80/20 train/test, then a quarter of train held out for validation.

    Args:
        X, y: the whole table.
        seed: seeds both splits.
        stratify: keep class proportions in every part (classification).
    """
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, random_state=seed, stratify=y if stratify else None)
    X_fit, X_val, y_fit, y_val = train_test_split(
        X_train, y_train, test_size=0.25, random_state=seed,
        stratify=y_train if stratify else None)
    return Split(X_fit, y_fit, X_val, y_val, X_test, y_test)
