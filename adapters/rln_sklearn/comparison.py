"""Is a paired difference within seed noise? The project's one rule for it.

    from rln_sklearn.comparison import compare_paired
    comparison = compare_paired(rln_mse, l1_mse)  # one score per seed, paired by seed
    comparison.within_noise  # None for one pair, else |t| < t(0.975, n - 1)

`rln demo`, bench/bench_accuracy.py, bench/bench_agreement.py and
examples/tutorial_keras.py decide "within noise" with `compare_paired`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Tuple

import numpy as np
from numpy.typing import ArrayLike

CONFIDENCE = 0.95
"""Two-sided level of the test: "within noise" when the p-value is above 1 - CONFIDENCE."""


@dataclasses.dataclass(frozen=True)
class PairedComparison:
    """The paired t test of `compare_paired`: the differences first - second, pair by pair.

    With one pair only `n`, `mean_difference` and `differences` are known; the rest is
    None.
    """

    n: int
    mean_difference: float
    standard_error: Optional[float]  # sd(differences, ddof=1) / sqrt(n)
    t: Optional[float]  # mean_difference / standard_error
    critical_t: Optional[float]  # scipy.stats.t.ppf(0.975, n - 1)
    differences: Tuple[float, ...] = ()  # first[i] - second[i], shape (n,)

    @property
    def within_noise(self) -> Optional[bool]:
        """|t| < critical_t: no difference found at this many pairs; None for one pair."""
        if self.t is None or self.critical_t is None:
            return None
        return abs(self.t) < self.critical_t

    @property
    def spread(self) -> float:
        """The differences' standard deviation with ddof 0 (as a table's "mean +- std")."""
        return float(np.std(self.differences))

    @property
    def first_lower(self) -> int:
        """In how many pairs first < second."""
        return sum(difference < 0 for difference in self.differences)

    @property
    def rule(self) -> str:
        """The rule in words, with this test's critical value, for a report's legend."""
        if self.critical_t is None:
            return "a paired t test needs 2 pairs or more"
        return (f"a two-sided {100 * CONFIDENCE:.0f}% paired t test finds no difference, "
                f"|t| < t({1 - (1 - CONFIDENCE) / 2:g}, {self.n - 1}) = {self.critical_t:.3f}")


def compare_paired(first: ArrayLike, second: ArrayLike) -> PairedComparison:
    """A two-sided 95% paired Student t test of first - second.

    Rule: with the n differences d_i = first[i] - second[i], their mean, the standard
    error sd(d, ddof=1) / sqrt(n) and t = mean / standard error, the difference is
    "within noise" when |t| < t(0.975, n - 1), the Student t quantile with n - 1 degrees
    of freedom (4.303 for 3 pairs, 2.776 for 5, 2.262 for 10); where the standard error
    is above 0, that is exactly when `scipy.stats.ttest_rel(first, second).pvalue` is
    above 0.05. Where every pair differs by the same amount (standard error 0), t is 0
    if that amount is 0 (within noise), else +-inf (not). One pair gives no estimate of
    the noise: no standard error, t or verdict (`within_noise` None).

    Pair i must share what varies between repeats (the seed, the split, the noise
    inputs): the test then leaves out how hard each repeat is for both methods. It
    assumes the n differences independent of each other and roughly normal.

    "Within noise" means that no difference was detected at this many pairs, not that
    there is none: a true mean difference of 3 standard errors (3 sigma / sqrt(n), sigma
    the differences' true sd) is flagged in about 39% of runs with 3 pairs, 62% with 5
    and 76% with 10 (the noncentral t distribution; a simulation for
    bench/bench_agreement.py gave the same 62% and 76%). With no true difference it
    flags 5% of runs at any n; the rule it replaced, |mean| > 2 standard errors, flagged
    18% at 3 pairs and 12% at 5.

    Args:
        first, second: shape (n,), n >= 1, finite real numbers (scores per repeat, say;
            lists, NumPy arrays, pandas Series); pair i is (first[i], second[i]).

    Raises:
        ValueError: naming the problem: a sample that is not real numbers (or not
            representable in float64), not one-dimensional, empty, or holds NaN or
            inf; samples of different lengths; differences that overflow float64.
        ModuleNotFoundError: 2 pairs or more without SciPy (the t quantile; SciPy
            comes with rln's sklearn extra).
    """
    a, b = _sample("first", first), _sample("second", second)
    if len(a) != len(b):
        raise ValueError(f"compare_paired needs two equally long samples, paired element by "
                         f"element; got {len(a)} and {len(b)} values")
    with np.errstate(over="ignore"):
        difference = a - b
    if not np.isfinite(difference).all():
        raise ValueError("first - second overflows float64 (differences beyond 1.8e308)")
    n = len(difference)
    if n < 2:
        return PairedComparison(n, float(difference[0]), None, None, None,
                                (float(difference[0]),))
    from scipy import stats  # this module imports with numpy alone

    critical_t = float(stats.t.ppf(1 - (1 - CONFIDENCE) / 2, n - 1))
    scale = float(np.max(np.abs(difference)))
    if scale == 0:
        return PairedComparison(n, 0.0, 0.0, 0.0, critical_t, (0.0,) * n)
    unit = difference / scale  # in [-1, 1]: its squares cannot overflow
    mean, sd = float(unit.mean()), float(unit.std(ddof=1))
    t = mean / sd * math.sqrt(n) if sd > 0 else math.copysign(math.inf, mean)
    return PairedComparison(n, scale * mean, scale * sd / math.sqrt(n), t, critical_t,
                            tuple(difference.tolist()))


def _sample(name: str, values: ArrayLike) -> np.ndarray:
    """`values` as a 1-D float64 array of finite numbers, or a ValueError naming `name`."""
    raw = np.asarray(values)
    if raw.dtype.kind not in "iufO":  # booleans, complex numbers, strings, bytes, ...
        raise ValueError(f"compare_paired: {name} must be real numbers; got dtype "
                         f"{raw.dtype} ({type(values).__name__})")
    try:
        sample = raw.astype(np.float64)
    except (TypeError, ValueError, OverflowError) as error:  # objects: None, 10**400, ...
        raise ValueError(f"compare_paired: {name} must be real numbers (float64); "
                         f"{type(error).__name__}: {error}") from None
    if raw.dtype.kind == "O" and np.isnan(sample).any() and any(  # None became NaN
            value is None for value in raw.ravel()):
        raise ValueError(f"compare_paired: {name} holds None; scores must be real numbers")
    if sample.ndim != 1:
        raise ValueError(f"compare_paired: {name} must be one-dimensional (one score per "
                         f"pair); got shape {sample.shape}")
    if not len(sample):
        raise ValueError(f"compare_paired: {name} is empty; a comparison needs at least "
                         "one pair")
    bad = np.flatnonzero(~np.isfinite(sample))
    if len(bad):
        raise ValueError(f"compare_paired: {name} holds NaN or inf at position(s) "
                         f"{bad[:5].tolist()}{' ...' if len(bad) > 5 else ''}")
    return sample
