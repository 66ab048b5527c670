"""exp and log for the numba kernel, written so LLVM can vectorize loops that call them.

numba lowers `math.exp` / `math.log` to libm calls, one element at a time; these
inline into the caller's loop as plain arithmetic (AVX2: 4 doubles per
instruction). Both are within 1 ulp of NumPy's over the whole float64 range
(subnormals, overflow to inf and underflow to 0 included); see the tests.
"""

from __future__ import annotations

import math

import numba
import numpy as np

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
