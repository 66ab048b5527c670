"""The tutorial's benchmark data: a real table plus columns of pure noise.

RLN's claim is that it finds the few informative inputs among many useless
ones; the tutorial shows it on scikit-learn's diabetes set with 1000 N(0, 1)
noise columns appended. Here the same construction, for any table.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

BUILTIN = {"diabetes": load_diabetes, "breast_cancer": load_breast_cancer}


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
    """Append `n_noise` columns of N(0, 1) noise to X (drawn from `rng`)."""
    X = np.asarray(X, dtype=np.float64)
    if n_noise < 0:
        raise ValueError(f"Invalid n_noise: {n_noise!r}; expected an int >= 0")
    noise = rng.standard_normal((X.shape[0], n_noise))
    names = list(feature_names) + [f"noise_{i}" for i in range(n_noise)]
    return NoisyTable(np.hstack([X, noise]), np.asarray(y), names, X.shape[1])


def load_noisy(name: str, n_noise: int = 1000, seed: int = 0) -> NoisyTable:
    """A scikit-learn toy data set ("diabetes" or "breast_cancer") plus noise columns.

    Both ship with scikit-learn, so nothing is downloaded.
    """
    X, y, names = load_table(name)
    return add_noise_features(X, y, names, n_noise, np.random.RandomState(seed))


def load_table(name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(X, y, feature names) of a scikit-learn toy data set ("diabetes" or "breast_cancer")."""
    if name not in BUILTIN:
        raise ValueError(f"Unknown data set {name!r}; expected one of {sorted(BUILTIN)}")
    bunch = BUILTIN[name]()
    return bunch.data, bunch.target, list(bunch.feature_names)


@dataclasses.dataclass
class Split:
    """Rows to fit on, to pick hyperparameters on, and to report on; X standardized
    with the mean and std of the fit rows."""

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
    scaler = StandardScaler().fit(X_fit)
    return Split(scaler.transform(X_fit), y_fit, scaler.transform(X_val), y_val,
                 scaler.transform(X_test), y_test)
