"""Per-column standardization that neither overflows nor underflows.

`StandardScaler` squares the values: a column of |x| ~ 1e160 gets an infinite
variance (NaN after scaling) and one of |x| ~ 1e-310 a variance of 0 (treated
as constant). Here each column is first divided by its largest |value|, so the
mean and standard deviation are computed on numbers of order 1 and scaled back.
"""

from __future__ import annotations

import numpy as np


def fit_standardization(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and scale of `values`, shape (n_samples, n_columns), finite.

    Returns:
        (mean, scale), float64 shape (n_columns,): the column mean and standard
        deviation; a column whose values are all equal gets its value as mean
        and scale 1 (so it maps to exactly 0).
    """
    values = np.asarray(values, dtype=np.float64)
    peak = np.max(np.abs(values), axis=0)
    peak = np.where(peak > 0, peak, 1.0)
    unit = values / peak
    mean = unit.mean(axis=0) * peak
    std = unit.std(axis=0) * peak
    constant = (np.ptp(values, axis=0) == 0) | ~(std > 0)
    mean = np.where(constant, values[0], mean)
    return mean, np.where(constant, 1.0, std)


def standardize(values: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(values - mean) / scale, computed as values / scale - mean / scale (no overflow
    of the difference when |values| and |mean| are both near the float64 limit)."""
    with np.errstate(over="ignore"):
        return np.asarray(values, dtype=np.float64) / scale - mean / scale


def unstandardize(values: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The inverse of `standardize`: values * scale + mean."""
    return np.asarray(values, dtype=np.float64) * scale + mean
