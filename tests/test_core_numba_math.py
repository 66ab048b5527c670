"""The kernel's vectorizable exp and log against NumPy, over the whole float64 range."""

import numba
import numpy as np
import pytest

_math = pytest.importorskip("rln_core._numba_math")


@numba.njit
def _apply(fn_index, x, out):  # pragma: no cover - compiled
    for i in range(x.size):
        out[i] = _math.exp(x[i]) if fn_index == 0 else _math.log(x[i])


def _ulps(got, expected):
    with np.errstate(invalid="ignore"):
        return np.where(got == expected, 0.0, np.abs(got - expected) / np.spacing(np.abs(expected)))


def test_exp_is_within_one_ulp_of_numpy_including_underflow_and_overflow():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-40, 5, 20000), rng.uniform(-760, 720, 20000),
                        [-746.0, -745.2, -744.4, -708.5, -708.3, 0.0, 1e-300, -1e-300,
                         709.4, 709.78, 709.79, 720.0]])
    out = np.empty_like(x)
    _apply(0, x, out)
    with np.errstate(over="ignore"):
        expected = np.exp(x)
    assert _ulps(out, expected).max() <= 1


def test_log_is_within_one_ulp_of_numpy_including_subnormals():
    rng = np.random.default_rng(1)
    x = np.concatenate([np.abs(rng.normal(0, 0.05, 20000)), 10.0 ** rng.uniform(-320, 308, 20000),
                        rng.uniform(0.5, 2.0, 20000),
                        [5e-324, 1e-310, 2.2250738585072014e-308, 1.0, 1.0 + 2**-52, 1.0 - 2**-53,
                         np.sqrt(2.0), np.nextafter(np.sqrt(2.0), 2.0), 1.7976931348623157e308]])
    out = np.empty_like(x)
    _apply(1, x, out)
    assert _ulps(out, np.log(x)).max() <= 1
