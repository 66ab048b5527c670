"""The kernel's vectorizable exp and log against NumPy: float64 over its whole range, the
float64 log of float32 arguments (`log_float32`, its table, `log_abs`), and the float32
functions (`exp32`, `log32`, `log32_positive`, `log32_normal`) over float32's."""

import numba
import numpy as np
import pytest

from rln_core import _numba_log_table

_math = pytest.importorskip("rln_core._numba_math")


@numba.njit
def _apply(fn_index, x, out):  # pragma: no cover - compiled
    for i in range(x.size):
        out[i] = _math.exp(x[i]) if fn_index == 0 else _math.log(x[i])


@numba.njit
def _apply32(fn_index, x, out):  # pragma: no cover - compiled
    for i in range(x.size):
        if fn_index == 0:
            out[i] = _math.exp32(x[i])
        elif fn_index == 1:
            out[i] = _math.log32(x[i])
        elif fn_index == 2:
            out[i] = _math.log32_positive(x[i])
        else:
            out[i] = _math.log32_normal(x[i])


def _ulps(got, expected):
    with np.errstate(invalid="ignore"):
        return np.where(got == expected, 0.0, np.abs(got - expected) / np.spacing(np.abs(expected)))


def _ulps32(got, expected):
    """Distance in float32 steps (counted across 0, the subnormals and up to inf)."""
    def ordered(a):
        bits = a.astype(np.float32).view(np.int32).astype(np.int64)
        return np.where(bits < 0, -(bits & 0x7FFFFFFF), bits)
    distance = np.abs(ordered(got) - ordered(expected))
    return np.where(got == expected, 0, distance)


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


# --- float32 ------------------------------------------------------------------------------
# Reference: the correctly rounded result, float32 of NumPy's float64 exp/log (1 ulp of
# float64 is far below half an ulp of float32). All four functions are within 1 float32
# ulp of it on every float32 input (checked once exhaustively: exp32 on every float32 in
# [-110, 95], log32 and log32_positive on every positive finite float32, log32_normal on
# every normal one); here on samples and the edges. NumPy's own float32 exp/log are not
# correctly rounded (up to 2 and 4 ulps off), so against them the bound is theirs plus 1.

F32 = np.float32
EXP32_EDGES = F32([0.0, -0.0, 1e-30, -1e-30, 1.0, -1.0, np.log(2.0), 0.5 * np.log(2.0),
                   -87.33654, -87.33655, -87.4, -88.0, -100.0, -103.2789, -103.9,
                   -103.972, -103.973, -104.0, -110.0, -1e30, -np.inf,
                   88.0, 88.37, 88.376, 88.7228, 88.72283, 88.72284, 88.7229, 89.0, 100.0,
                   1e30, np.inf])
LOG32_EDGES = F32([1.0, np.nextafter(F32(1.0), F32(2.0)), np.nextafter(F32(1.0), F32(0.0)),
                   0.70710677, 0.7071068, 1.4142135, 1.4142137, 2.0, 0.5, 3.4028235e38,
                   1.1754944e-38, 1.1754942e-38, 1e-40, 1e-45, 1.4e-45, 5.877472e-39,
                   1e-3, 0.05, 1e30])


def _sample_exp32():
    rng = np.random.default_rng(2)
    return np.concatenate([rng.uniform(-110, 95, 200_000), rng.uniform(-1, 1, 100_000),
                           rng.uniform(-104, -87, 100_000), rng.uniform(-30, 0, 100_000)]
                          ).astype(F32)


def _sample_log32(smallest=0):
    rng = np.random.default_rng(3)
    bits = rng.integers(max(smallest, 1), 0x7F800000, 300_000, dtype=np.int32)
    return np.concatenate([bits.view(F32), rng.uniform(0.5, 2.0, 100_000).astype(F32),
                           np.abs(rng.normal(0, 0.05, 100_000)).astype(F32) + F32(1e-30)])


def _run32(fn_index, x):
    out = np.empty_like(x)
    _apply32(fn_index, x, out)
    return out


def test_exp32_is_within_one_float32_ulp_of_the_correctly_rounded_result():
    x = np.concatenate([_sample_exp32(), EXP32_EDGES])
    with np.errstate(over="ignore"):
        exact = np.exp(x.astype(np.float64)).astype(F32)
    got = _run32(0, x)
    assert got.dtype == F32
    assert _ulps32(got, exact).max() <= 1


def test_exp32_edges_underflow_to_zero_overflow_to_inf_and_subnormal_results():
    got = _run32(0, F32([-np.inf, -1e30, -104.0, 0.0, 89.0, 1e30, np.inf, -100.0, -88.0]))
    assert got[0] == 0.0 and got[1] == 0.0 and got[2] == 0.0
    assert got[3] == 1.0
    assert np.isposinf(got[4:7]).all()
    tiny = np.finfo(F32).tiny
    assert 0.0 < got[7] < tiny and 0.0 < got[8] < tiny  # subnormal results, not flushed
    assert _ulps32(got[7:], np.exp(np.float64([-100.0, -88.0])).astype(F32)).max() <= 1
    largest = _run32(0, F32([88.72283]))  # the largest finite result
    assert np.isfinite(largest[0]) and largest[0] > 3.4e38


def test_exp32_is_within_numpys_own_float32_error_plus_one():
    x = _sample_exp32()
    with np.errstate(over="ignore"):
        exact = np.exp(x.astype(np.float64)).astype(F32)
        numpy32 = np.exp(x)
    numpy_error = _ulps32(numpy32, exact).max()
    assert _ulps32(_run32(0, x), numpy32).max() <= numpy_error + 1


@pytest.mark.parametrize("fn_index, name", [(1, "log32"), (2, "log32_positive")])
def test_log32_is_within_one_float32_ulp_including_subnormals(fn_index, name):
    x = np.concatenate([_sample_log32(), LOG32_EDGES])
    exact = np.log(x.astype(np.float64)).astype(F32)
    got = _run32(fn_index, x)
    assert got.dtype == F32
    assert _ulps32(got, exact).max() <= 1, name


def test_log32_normal_is_within_one_float32_ulp_on_normal_inputs():
    x = np.concatenate([_sample_log32(smallest=0x00800000),
                        LOG32_EDGES[LOG32_EDGES >= np.finfo(F32).tiny]])
    exact = np.log(x.astype(np.float64)).astype(F32)
    assert _ulps32(_run32(3, x), exact).max() <= 1


def test_log32_edges():
    got = _run32(1, F32([0.0, 1.0, 1.4e-45, 3.4028235e38]))
    assert np.isneginf(got[0])
    assert got[1] == 0.0
    assert got[2] == F32(np.log(1.401298464324817e-45))  # the smallest subnormal
    assert got[3] == F32(np.log(np.float64(F32(3.4028235e38))))


def test_log32_is_within_numpys_own_float32_error_plus_one():
    x = _sample_log32()
    exact = np.log(x.astype(np.float64)).astype(F32)
    numpy32 = np.log(x)
    numpy_error = _ulps32(numpy32, exact).max()
    assert _ulps32(_run32(1, x), numpy32).max() <= numpy_error + 1


@pytest.mark.parametrize("name", ["exp32", "log32", "log32_positive", "log32_normal"])
def test_float32_functions_compute_in_float32(name):
    """A float64 literal or a widened int would promote the arithmetic (and halve the
    SIMD lanes): the compiled functions take and return float32."""
    fn = getattr(_math, name)
    fn(F32(0.5))
    signatures = fn.nopython_signatures
    assert signatures and all(sig.return_type == numba.float32 for sig in signatures)


# --- log of a float32, in float64 ---------------------------------------------------------


@numba.njit
def _log_float32(x, out):  # pragma: no cover - compiled
    for i in range(x.size):
        out[i] = _math.log_float32(x[i])


@numba.njit
def _log_abs(x, out):  # pragma: no cover - compiled
    for i in range(x.size):
        out[i] = _math.log_abs(x[i])


def _table_edges():
    """Both sides of every entry's boundaries, over several binades, and the entries'
    centres (entry ONE's is 1.0)."""
    width = 1 << _numba_log_table.ENTRY_SHIFT
    boundaries = _numba_log_table.OFFSET_BITS + np.arange(129) * width
    bits = np.concatenate([boundaries - 1, boundaries, boundaries + width // 2])
    shifts = np.array([-125, -60, -7, -1, 0, 1, 9, 60, 127]) << 23
    bits = (bits[None, :] + shifts[:, None]).ravel()
    return bits[(bits > 0) & (bits < 0x7F800000)].astype(np.int32).view(F32)


def test_the_log_table_is_exact_where_it_claims():
    import decimal
    context = decimal.Context(prec=60)
    entries = _numba_log_table.ENTRIES
    assert len(entries) == 128
    width = 1 << _numba_log_table.ENTRY_SHIFT
    centres = (_numba_log_table.OFFSET_BITS + np.arange(128) * width + width // 2
               ).astype(np.int32).view(F32)
    assert centres[_numba_log_table.ONE] == 1.0
    for centre, (inverse_hex, log_hex) in zip(centres, entries):
        inverse, log = float.fromhex(inverse_hex), float.fromhex(log_hex)
        assert float(F32(inverse)) == inverse  # a float32: z * inverse is exact in float64
        assert abs(float(centre) * inverse - 1.0) < 2.0 ** -13
        exact = -decimal.Decimal(inverse).ln(context)
        if log == 0.0:
            assert inverse == 1.0
            continue
        ulp = decimal.Decimal(float(np.spacing(abs(log))))
        assert abs(decimal.Decimal(log) - exact) <= ulp * decimal.Decimal(2.0 ** -9)


def test_log_float32_is_within_one_ulp_of_numpy_on_float32_inputs():
    rng = np.random.default_rng(4)
    bits = rng.integers(1, 0x7F800000, 1_000_000, dtype=np.int32)
    one = F32(1.0)
    near_one = np.concatenate([one + np.arange(1, 3000, dtype=F32) * F32(2.0 ** -23),
                               one - np.arange(1, 3000, dtype=F32) * F32(2.0 ** -24)])
    x = np.concatenate([bits.view(F32), near_one, _table_edges(), LOG32_EDGES,
                        np.abs(rng.normal(0, 0.05, 100_000)).astype(F32) + F32(1e-30)])
    out = np.empty(x.size)
    _log_float32(x, out)
    assert _ulps(out, np.log(x.astype(np.float64))).max() <= 1
    _log_float32(F32([1.0, 2.0 ** -149]), out[:2])
    assert out[0] == 0.0
    assert out[1] == np.log(2.0 ** -149)


def test_log_abs_takes_the_float32_log_for_float32_and_log_for_float64():
    rng = np.random.default_rng(5)
    x64 = rng.normal(0, 0.05, 10_000)
    x32 = x64.astype(F32)
    got32, want32 = np.empty(x32.size), np.empty(x32.size)
    _log_abs(x32, got32)
    _log_float32(np.abs(x32), want32)
    np.testing.assert_array_equal(got32, want32)
    got64, want64 = np.empty(x64.size), np.empty(x64.size)
    _log_abs(x64, got64)
    _apply(1, np.abs(x64), want64)
    np.testing.assert_array_equal(got64, want64)
    assert _math.log_abs(-0.5) == np.log(0.5)  # the Python function
