"""rln_sklearn.comparison.compare_paired: the project's one rule for "within seed noise"."""

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from rln_sklearn.comparison import PairedComparison, compare_paired

ROOT = Path(__file__).resolve().parents[1]
# A Python process importing this checkout's packages, installed or not
SOURCE_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "adapters")])}


@pytest.mark.parametrize("n", [2, 3, 5, 10, 30])
def test_it_is_scipys_paired_t_test_two_sided_at_95_percent(n):
    rng = np.random.default_rng(n)
    for shift in (0.0, 0.3, 1.0, 3.0):
        first = rng.normal(10.0, 2.0, n)
        second = first - shift + rng.normal(0.0, 1.0, n)
        comparison = compare_paired(first, second)
        reference = stats.ttest_rel(first, second)
        difference = first - second
        assert comparison.n == n
        assert comparison.mean_difference == pytest.approx(difference.mean(), rel=1e-12)
        assert comparison.standard_error == pytest.approx(
            difference.std(ddof=1) / math.sqrt(n), rel=1e-12)
        assert comparison.t == pytest.approx(reference.statistic, rel=1e-10)
        assert comparison.critical_t == pytest.approx(stats.t.ppf(0.975, n - 1))
        assert comparison.within_noise == (reference.pvalue > 0.05)


def test_the_critical_t_has_n_minus_1_degrees_of_freedom_and_is_two_sided():
    # differences with a chosen t over 5 pairs: t(0.975, 4) = 2.776; a normal quantile
    # (1.96), n degrees of freedom (2.571) or a one-sided test (2.132) would flag 2.7
    z = np.array([-1.2, -0.4, 0.1, 0.6, 0.9])
    z = (z - z.mean()) / z.std(ddof=1)
    reference = np.array([3000.0, 2500.0, 3400.0, 2800.0, 3100.0])
    for t, within_noise in ((2.7, True), (-2.7, True), (2.85, False), (-2.85, False)):
        comparison = compare_paired(reference + t / np.sqrt(5) + z, reference)
        assert comparison.t == pytest.approx(t) and comparison.within_noise is within_noise
        assert comparison.critical_t == pytest.approx(2.7764451)


def test_three_repeats_need_t_above_4_30_not_2_standard_errors():
    # mean difference -2, sd 1, standard error 0.577: |t| 3.46 is beyond 2 standard errors
    # (the rule this replaced called it a difference) but within t(0.975, 2) = 4.303
    comparison = compare_paired([7.0, 9.0, 8.0], [10.0, 10.0, 10.0])
    assert abs(comparison.mean_difference) > 2 * comparison.standard_error
    assert comparison.t == pytest.approx(-2 * math.sqrt(3))
    assert comparison.critical_t == pytest.approx(4.3026527)
    assert comparison.within_noise is True
    assert compare_paired([5.0, 6.0, 7.0], [10.0, 10.0, 10.0]).within_noise is False  # t -8.7


def test_one_pair_has_no_noise_estimate_and_no_verdict():
    one = compare_paired([3100.0], [3000.0])
    assert one == PairedComparison(1, 100.0, None, None, None, (100.0,))
    assert one.within_noise is None


def test_zero_standard_error_is_no_difference_or_a_sure_one():
    same = compare_paired([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert (same.t, same.standard_error, same.within_noise) == (0.0, 0.0, True)
    shifted = compare_paired([2.0, 3.0, 4.0], [1.0, 2.0, 3.0])
    assert shifted.t == math.inf and shifted.within_noise is False
    assert compare_paired([1.0, 2.0, 3.0], [2.0, 3.0, 4.0]).t == -math.inf


def test_huge_scores_give_the_t_of_the_same_scores_scaled_down():
    first, second = np.array([3.0, 1.0, 2.5, 4.0]), np.array([1.0, 1.5, 0.5, 2.0])
    small = compare_paired(first, second)
    huge = compare_paired(first * 1e300, second * 1e300)  # their squares overflow float64
    assert huge.t == pytest.approx(small.t, rel=1e-12)
    assert huge.mean_difference == pytest.approx(small.mean_difference * 1e300, rel=1e-12)


@pytest.mark.parametrize("first, second, message", [
    ([1.0, 2.0], [1.0], "two equally long samples.*got 2 and 1"),
    ([], [], "first is empty"),
    ([1.0, float("nan")], [1.0, 2.0], r"first holds NaN or inf at position\(s\) \[1\]"),
    ([1.0, 2.0], [float("inf"), 2.0], r"second holds NaN or inf at position\(s\) \[0\]"),
    ([[1.0, 2.0]], [[1.0, 2.0]], r"first must be one-dimensional.*\(1, 2\)"),
    ([1e308, 0.0], [-1e308, 0.0], "overflows float64"),
])
def test_bad_samples_are_refused_naming_the_problem(first, second, message):
    with pytest.raises(ValueError, match=message):
        compare_paired(first, second)


def test_the_rule_in_words_and_the_differences():
    comparison = compare_paired([7.0, 9.0, 8.0], [10.0, 10.0, 10.0])
    assert comparison.rule == ("a two-sided 95% paired t test finds no difference, "
                               "|t| < t(0.975, 2) = 4.303")
    assert comparison.differences == (-3.0, -1.0, -2.0)
    assert compare_paired([1e300, -1e300], [0.0, 0.0]).differences == (1e300, -1e300)
    one = compare_paired([3.0], [1.0])
    assert one.rule == "a paired t test needs 2 pairs or more" and one.differences == (2.0,)
    assert compare_paired([2.0, 2.0], [2.0, 2.0]).differences == (0.0, 0.0)


@pytest.mark.parametrize("bad, message", [
    (["a", "b"], "first must be real numbers; got dtype <U1"),
    ([1j, 2.0], r"first must be real numbers; got dtype complex128"),
    ([True, False], r"first must be real numbers; got dtype bool"),
    (None, "first holds None"),
    ([1.0, None], "first holds None"),
    ([10 ** 400, 1], r"first must be real numbers \(float64\); OverflowError"),
])
def test_samples_that_are_not_real_numbers_are_refused_by_name(bad, message):
    with pytest.raises(ValueError, match=message):
        compare_paired(bad, [1.0, 2.0])


def test_the_module_imports_without_scipy_or_scikit_learn():
    code = ("import sys; sys.modules['scipy'] = sys.modules['sklearn'] = None; "
            "import rln_sklearn.comparison as c; print(c.compare_paired([1.0], [2.0]).n)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=SOURCE_ENV)
    assert done.returncode == 0 and done.stdout.strip() == "1", done.stderr


def test_first_lower_counts_strictly_lower_pairs_not_ties():
    """Differences 0, -1, 0, +1: the first is lower in one pair (a tie is not a win; `rln
    demo` prints this count as "RLN lower in k of n")."""
    assert compare_paired([1.0, 2.0, 3.0, 5.0], [1.0, 3.0, 3.0, 4.0]).first_lower == 1
