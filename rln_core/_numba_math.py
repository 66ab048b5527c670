"""exp and log for the numba kernel, written so LLVM can vectorize loops that call them.

numba lowers `math.exp` / `math.log` to libm calls, one element at a time; these
inline into the caller's loop as plain arithmetic. Two precisions:
- `exp`, `log` (float64; AVX2: 4 lanes): within 1 ulp of NumPy's over the whole
  float64 range (subnormals, overflow to inf and underflow to 0 included);
- `log_float32`: `log` of a float32 argument, by a table (`rln_core._numba_log_table`)
  and a short polynomial instead of fdlibm's division and longer one: within 1 ulp of
  NumPy's float64 log on every float32 > 0 (checked once on every 7th positive finite
  float32: 305M values; the tests check samples and the edges), 1.35x faster on the
  tutorial layer's weights (105 vs 142 us alone); `log_abs` takes it for float32
  arguments (the L1 cap log|W| of float32 weights), `log` for float64 ones;
- `exp32`, `log32`, `log32_positive`, `log32_normal` (float32 arithmetic only,
  int32 bit operations; AVX2: 8 lanes): within 1 ulp of float32 of the correctly
  rounded result (float32 of the float64 value) over the whole float32 range,
  subnormal results and inputs, overflow to inf, underflow to 0, log(0) = -inf
  included (checked once on every float32 input; the tests check samples and the
  edges). NumPy's own float32 exp and log are not correctly rounded (up to 2 and
  4 ulps off here), so against them the bound is theirs plus 1.
Every constant of the float32 functions is a float32 (or int32) global: a
Python float literal would promote the arithmetic to float64.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import types
from numba.extending import overload

from rln_core import _numba_log_table

LOG2E = 1.4426950408889634
LN2_HI = 6.93147180369123816490e-01  # ln 2 split so that k * LN2_HI is exact (fdlibm)
LN2_LO = 1.90821492927058770002e-10
ROUND_SHIFTER = 6755399441055744.0  # 1.5 * 2**52: x + it leaves round(x) in the low bits
EXP_ARG_MIN = -746.0  # exp(x) rounds to 0 below
EXP_ARG_MAX = 710.0  # exp(x) overflows to inf above
SCALE_SPLIT = 1000  # 2**k is built as 2**(k -/+ 1000) * 2**(+/-1000) beyond |k| > 1000
TWO_POW_1000 = 2.0 ** 1000
TWO_POW_M1000 = 2.0 ** -1000
# Taylor coefficients 1/n!: degree 13 on |r| <= ln(2)/2 leaves a truncation error < 1e-17.
(C13, C12, C11, C10, C9, C8, C7, C6, C5, C4, C3, C2) = (
    1.0 / math.factorial(n) for n in range(13, 1, -1))

SMALLEST_NORMAL = 2.2250738585072014e-308
TWO_POW_54 = 2.0 ** 54
TWO_POW_52 = 2.0 ** 52
SQRT2 = math.sqrt(2.0)
MANTISSA_BITS = (1 << 52) - 1
ONE_BITS = 0x3FF0000000000000  # the bits of 1.0
EXPONENT_AS_FLOAT_BITS = 0x4330000000000000  # 2**52 with the biased exponent in the mantissa
# fdlibm's log(1 + f) = f - f*f/2 + s * (f*f/2 + R(s*s)), s = f / (2 + f)
LG1, LG2, LG3, LG4, LG5, LG6, LG7 = (
    6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01,
    2.222219843214978396e-01, 1.818357216161805012e-01, 1.531383769920937332e-01,
    1.479819860511658591e-01)


@numba.njit(cache=True, fastmath={"contract"}, error_model="numpy")
def exp(x):  # pragma: no cover - compiled
    """e**x for a finite float64 x."""
    x = min(max(x, EXP_ARG_MIN), EXP_ARG_MAX)
    shifted = x * LOG2E + ROUND_SHIFTER
    k = shifted - ROUND_SHIFTER  # round(x / ln 2), as a float
    r = (x - k * LN2_HI) - k * LN2_LO
    p = C13
    p = p * r + C12
    p = p * r + C11
    p = p * r + C10
    p = p * r + C9
    p = p * r + C8
    p = p * r + C7
    p = p * r + C6
    p = p * r + C5
    p = p * r + C4
    p = p * r + C3
    p = p * r + C2
    p = p * r + 1.0
    p = p * r + 1.0
    low = k < -SCALE_SPLIT
    high = k > SCALE_SPLIT
    split = SCALE_SPLIT if low else (-SCALE_SPLIT if high else 0)
    post = TWO_POW_M1000 if low else (TWO_POW_1000 if high else 1.0)
    bits = np.float64(shifted).view(np.int64)  # round(x / ln 2) in the low bits
    scale = np.int64((bits + (1023 + split)) << 52).view(np.float64)
    return (p * scale) * post


@numba.njit(cache=True, fastmath={"contract"}, error_model="numpy")
def log(x):  # pragma: no cover - compiled
    """ln(x) for a finite float64 x > 0 (fdlibm's method)."""
    tiny = x < SMALLEST_NORMAL
    x = x * TWO_POW_54 if tiny else x
    bits = np.float64(x).view(np.int64)
    biased = np.int64((bits >> 52) | EXPONENT_AS_FLOAT_BITS).view(np.float64) - TWO_POW_52
    m = np.int64((bits & MANTISSA_BITS) | ONE_BITS).view(np.float64)  # in [1, 2)
    big = m > SQRT2
    m = m * 0.5 if big else m
    k = biased - (1023.0 + (54.0 if tiny else 0.0)) + (1.0 if big else 0.0)
    f = m - 1.0
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    r = z * (LG1 + w * (LG3 + w * (LG5 + w * LG7))) + w * (LG2 + w * (LG4 + w * LG6))
    half_f2 = 0.5 * f * f
    return k * LN2_HI - ((half_f2 - (s * (half_f2 + r) + k * LN2_LO)) - f)


# --- log of a float32, in float64 -----------------------------------------------------------
_LOG_TABLE_OFFSET_BITS = np.int32(_numba_log_table.OFFSET_BITS)
_LOG_TABLE_INVERSE = np.array([float.fromhex(inverse) for inverse, _ in _numba_log_table.ENTRIES])
_LOG_TABLE_NEG_LOG = np.array([float.fromhex(log) for _, log in _numba_log_table.ENTRIES])
_MANTISSA_BITS_F32 = 23
_ENTRY_SHIFT = _numba_log_table.ENTRY_SHIFT
_ENTRY_MASK = np.int32(len(_LOG_TABLE_INVERSE) - 1)
_SMALLEST_NORMAL_AS_F32 = np.float32(2.0 ** -126)
_SUBNORMAL_SCALE = 23  # a subnormal float32 times 2**23 is normal, exactly
_TWO_POW_23_F32 = np.float32(2.0 ** _SUBNORMAL_SCALE)
# log(1 + r) = r + r*r * P(r): the Taylor series to degree 7 (|r| < 2**-7.9: truncation
# below 2**-60 of the result)
(_LOG1P_P5, _LOG1P_P4, _LOG1P_P3, _LOG1P_P2, _LOG1P_P1, _LOG1P_P0) = (
    1.0 / 7, -1.0 / 6, 1.0 / 5, -1.0 / 4, 1.0 / 3, -0.5)


@numba.njit(cache=True, fastmath={"contract"}, error_model="numpy")
def log_float32(x):  # pragma: no cover - compiled
    """ln(x) as a float64 for a finite float32 x > 0 (subnormals included).

    x = 2**k * z (bit operations; a subnormal x is first scaled by 2**23, exactly),
    z = c_j (1 + r) with c_j the table's entry j (`rln_core._numba_log_table`), so
    ln(x) = k ln 2 + (-ln(inverse_j)) + log(1 + r), r = z * inverse_j - 1 exact.
    For x == 0 it returns a finite value of no meaning (callers that may pass 0
    select it away). The int32 results are narrowed with np.int32 (see `exp32`).
    """
    tiny = x < _SMALLEST_NORMAL_AS_F32
    y = x * _TWO_POW_23_F32 if tiny else x
    bits = np.float32(y).view(np.int32)
    from_offset = np.int32(bits - _LOG_TABLE_OFFSET_BITS)
    k = np.int32(from_offset >> _MANTISSA_BITS_F32)
    j = np.int32(np.int32(from_offset >> _ENTRY_SHIFT) & _ENTRY_MASK)
    z = np.int32(bits - np.int32(k << _MANTISSA_BITS_F32)).view(np.float32)
    r = np.float64(z) * _LOG_TABLE_INVERSE[j] - 1.0
    p = _LOG1P_P5
    p = p * r + _LOG1P_P4
    p = p * r + _LOG1P_P3
    p = p * r + _LOG1P_P2
    p = p * r + _LOG1P_P1
    p = p * r + _LOG1P_P0
    k_total = np.float64(k) - (np.float64(_SUBNORMAL_SCALE) if tiny else 0.0)
    return k_total * LN2_HI + (_LOG_TABLE_NEG_LOG[j] + (k_total * LN2_LO + (r + (r * r) * p)))


def log_abs(x: float) -> float:
    """ln|x| as a float64 for a finite nonzero float32 or float64 x; in jitted code
    `log_float32` for a float32 x, `log` for a float64 one (Python: math.log)."""
    return math.log(abs(x))


@overload(log_abs, jit_options={"fastmath": {"contract"}, "error_model": "numpy"})
def _log_abs_of_type(x):
    if x == types.float32:
        return lambda x: log_float32(abs(x))
    if isinstance(x, types.Float):
        return lambda x: log(abs(np.float64(x)))
    return None


# --- float32 -------------------------------------------------------------------------------
# Few constants on purpose: a loop calling exp32 and log32 runs out of the 16 AVX2
# registers, and every constant beyond them is reloaded on every iteration.
_F32, _I32 = np.float32, np.int32
EXP32_ARG_MIN = _F32(-104.0)  # exp(x) rounds to 0 below (half the smallest subnormal: -103.97)
EXP32_ARG_MAX = _F32(89.0)  # exp(x) overflows to inf above 88.73
LOG2E_F32 = _F32(LOG2E)
ROUND_SHIFTER_F32 = _F32(12582912.0)  # 1.5 * 2**23: x + it leaves round(x) in the low bits
ROUND_SHIFTER_BITS_F32 = _I32(0x4B400000)  # its bits: those of x + it, less round(x)
LN2_HI_F32 = _F32(0.693359375)  # ln 2 split so that k * LN2_HI_F32 is exact (9 bits; Cody-Waite)
LN2_LO_F32 = _F32(-2.12194440e-4)
# e**r = 1 + r + r*r * Q(r) on |r| <= ln(2)/2: Q fitted to (e**r - 1 - r) / r**2 (weighted
# least squares on Chebyshev nodes, coefficients rounded to float32), error < 0.07 of an ulp.
EXP32_Q0, EXP32_Q1, EXP32_Q2, EXP32_Q3, EXP32_Q4 = (
    _F32(0.4999999403953552), _F32(0.1666652113199234), _F32(0.04166838899254799),
    _F32(0.008368710055947304), _F32(0.0013814610429108143))
FLOAT32_BIAS = _I32(127)
ZERO_F32 = _F32(0.0)
HALF_F32 = _F32(0.5)
ONE_F32 = _F32(1.0)
TWO_F32 = _F32(2.0)
NEG_INF_F32 = _F32(-np.inf)

SMALLEST_NORMAL_F32 = _F32(2.0 ** -126)
SUBNORMAL_BIAS_F32 = _I32(127 + 149)  # a subnormal's bits, as an integer, are x * 2**149
MANTISSA_MASK_F32 = _I32(0x007FFFFF)
SQRT_HALF_BITS_F32 = _I32(0x3F3504F3)  # the bits of sqrt(1/2) in float32
REDUCE_BITS_F32 = _I32(0x3F800000 - 0x3F3504F3)  # moves the mantissa into [sqrt(1/2), sqrt(2))
LN2_F32 = _F32(math.log(2.0))  # k * LN2_F32 + ... in one fma: its error is < 0.1 ulp
# log(1 + f) = f - f*f/2 + f**3 * P(f) on f in [sqrt(1/2) - 1, sqrt(2) - 1]: P of degree 6
# fitted to (log(1 + f) - f + f*f/2) / f**3 (weighted least squares on Chebyshev nodes,
# coefficients rounded to float32), error < 0.6 of an ulp. No division (musl's logf has
# one: a division-free degree 7 measured 13% faster than it, degree 6 faster still).
LOG32_P0, LOG32_P1, LOG32_P2, LOG32_P3, LOG32_P4, LOG32_P5, LOG32_P6 = (
    _F32(0.3333390951156616), _F32(-0.2500133812427521), _F32(0.19963063299655914),
    _F32(-0.1657758504152298), _F32(0.14914777874946594), _F32(-0.14267480373382568),
    _F32(0.08700393885374069))


@numba.njit(cache=True, fastmath={"contract"}, error_model="numpy")
def exp32(x):  # pragma: no cover - compiled
    """e**x for a float32 x (finite or +-inf), in float32 arithmetic.

    The int32 results are narrowed with np.int32: numba widens int32
    arithmetic to int64, which LLVM cannot always narrow back (a loop would
    then run on 4 lanes).
    """
    x = min(max(x, EXP32_ARG_MIN), EXP32_ARG_MAX)
    shifted = x * LOG2E_F32 + ROUND_SHIFTER_F32
    k = shifted - ROUND_SHIFTER_F32  # round(x / ln 2), as a float
    r = (x - k * LN2_HI_F32) - k * LN2_LO_F32
    q = EXP32_Q4
    q = q * r + EXP32_Q3
    q = q * r + EXP32_Q2
    q = q * r + EXP32_Q1
    q = q * r + EXP32_Q0
    p = (q * (r * r) + r) + ONE_F32
    # 2**k as 2**(k // 2) * 2**(k - k // 2): both normal for k in [-150, 128], and the
    # second product rounds once (into the subnormals, or to inf)
    k_int = np.int32(np.float32(shifted).view(np.int32) - ROUND_SHIFTER_BITS_F32)
    half = np.int32(k_int >> 1)
    scale_1 = np.int32((half + FLOAT32_BIAS) << 23).view(np.float32)
    scale_2 = np.int32((k_int - half + FLOAT32_BIAS) << 23).view(np.float32)
    return (p * scale_1) * scale_2


@numba.njit(cache=True, fastmath={"contract"}, error_model="numpy", inline="always")
def _log32_reduced(bits, k_bias):  # pragma: no cover - compiled
    """ln(x) from the bits of a normal float32 x (those of x * 2**149 for a subnormal x,
    with k_bias 127 + 149 instead of 127)."""
    bits = np.int32(bits + REDUCE_BITS_F32)
    k = np.float32(np.int32((bits >> 23) - k_bias))
    m = np.int32((bits & MANTISSA_MASK_F32) + SQRT_HALF_BITS_F32).view(np.float32)
    f = m - ONE_F32
    z = f * f
    p = LOG32_P6
    p = p * f + LOG32_P5
    p = p * f + LOG32_P4
    p = p * f + LOG32_P3
    p = p * f + LOG32_P2
    p = p * f + LOG32_P1
    p = p * f + LOG32_P0
    return k * LN2_F32 + (f + ((f * z) * p - HALF_F32 * z))


@numba.njit(cache=True, fastmath={"contract"}, error_model="numpy")
def log32_normal(x):  # pragma: no cover - compiled
    """ln(x) for a finite normal float32 x >= 2**-126, in float32 arithmetic.

    x = 2**k * m with m in [sqrt(1/2), sqrt(2)) (bit operations), then
    ln(x) = k ln 2 + log(1 + f), f = m - 1, by the polynomial above. Wrong for
    subnormal x (`log32_positive`); the kernel uses it where no weight is subnormal.
    The int32 results are narrowed with np.int32 before shifts (see `exp32`).
    """
    return _log32_reduced(np.float32(x).view(np.int32), FLOAT32_BIAS)


@numba.njit(cache=True, fastmath={"contract"}, error_model="numpy")
def log32_positive(x):  # pragma: no cover - compiled
    """ln(x) for a finite float32 x > 0 (subnormals included), in float32 arithmetic;
    `log32` for x == 0 too."""
    bits = np.float32(x).view(np.int32)
    tiny = x < SMALLEST_NORMAL_F32
    y = np.float32(bits) if tiny else x  # a subnormal's bits, exactly: x * 2**149, normal
    return _log32_reduced(np.float32(y).view(np.int32),
                          SUBNORMAL_BIAS_F32 if tiny else FLOAT32_BIAS)


@numba.njit(cache=True, fastmath={"contract"}, error_model="numpy")
def log32(x):  # pragma: no cover - compiled
    """ln(x) for a finite float32 x >= 0 (log(0) = -inf), in float32 arithmetic."""
    out = log32_positive(x)
    return NEG_INF_F32 if x == ZERO_F32 else out
