"""The fused, in-place numba kernel of one RLN update.

Importing this module imports numba (slow); `rln_core` imports it lazily, on
the first update that asks for it. Compiled code is cached on disk, and each
driver compiles on its first use only.

Two passes over memory, so a refused update leaves every array untouched:
1. `_stats` (read only): sum of the stepped lambdas (for the mean), the sum of
   their absolute values and the count of non-finite weights (for the checks);
2. `write` (one per norm): translate, clip, regularize; weights, lambdas,
   prev_weights, prev_reg.
The lambda step learns from a given weight change `delta` or from
W - prev_weights: a select per element (without `delta`, the kernel is handed
prev_weights in its place, so no extra memory is read).
Both walk 2-D views row by row (contiguous arrays are one long row) and
vectorize (SIMD): `_stats` by letting LLVM reassociate its sums, `write` by
using `_numba_math`'s exp and log (`log_abs`: for float32 weights the table-driven
`log_float32`, which made the float64 L1 write of the tutorial layer 410 -> 355 us
alone); the write drivers ask for 512-bit vectors
(`rln_core._numba_vectors`: 18-30% faster where the CPU has AVX-512, except
Skylake-SP-era cores; `_stats`, memory-bound, keeps LLVM's width).
`_update` runs them on one thread, or on chunks in a thread pool (the kernels
release the GIL; large tensors only).

The clip is decided with `rln_core.checks.CLIP_MARGIN` (see there): a weight
the reference sets to exactly 0 is exactly 0 here too.

Float32 compute (`compute32`, float32 weights and state only): the same two
passes with float32 arithmetic in `write` (`_numba_math.exp32` / `log32`, 8
lanes on AVX2) and the mean accumulated in float64 from float64 terms (as in
the float64 kernel, so the translation is the reference's up to the order of
the sum). Its clip margin is `rln_core.checks.CLIP_MARGIN_F32` (see there); the
tolerance it meets is `rln_core.checks.F32_LAMBDA_RTOL`.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numba
import numpy as np

from rln_core import _numba_math as _math
from rln_core._layout import as_2d_views
from rln_core._numba_kernel_codes import BAD_WEIGHTS, LAMBDAS_UNSURE, OK
from rln_core._numba_vectors import AVX512, wide_vectors
from rln_core.checks import CLIP_MARGIN, CLIP_MARGIN_F32, D_SCALE, LOG_HALF
from rln_core.hyperparameters import Hyperparameters

# Smaller tensors run on one thread: on 2 shared cores, threads did not speed up
# a 181k-element update and compete with the training framework's own threads;
# they made a 1e6-element one 1.48x faster, a 6e5-element one 1.18x.
PARALLEL_MIN_ELEMENTS = 1 << 19
ELEMENTS_PER_CHUNK_MIN = 1 << 15  # a parallel chunk holds at least this many elements


@numba.njit(cache=True, nogil=True, inline="always")
def _lambda_step(w, prev_w, delta, given, prev_reg, stepped,
                 learning_rate):  # pragma: no cover - compiled
    """nu * delta * prev_reg (spec step 3), delta given or W - prev_weights; 0 on the
    first update.

    Selects, not branches, so the loops stay vectorized; on the first update
    whatever prev_reg and prev_weights hold is discarded.
    """
    change = np.float64(delta) if given else w - np.float64(prev_w)
    step = learning_rate * change * np.float64(prev_reg)
    return step if stepped else 0.0


@numba.njit(cache=True, nogil=True, inline="always")
def stats_terms(w_in, lam_in, prev_w, prev_reg, delta, given, d_scale, stepped,
                learning_rate):  # pragma: no cover - compiled
    """One element's share of `_stats`: (its stepped lambda, whether W is non-finite).

    Inlined into the caller's loop (its fast-math flags apply: `_stats`', or the fused
    step's, `rln_core._numba_fused`, which sums the same terms in its own loop)."""
    w = np.float64(w_in)
    lam = np.float64(lam_in) - _lambda_step(w, prev_w, delta, given, prev_reg, stepped,
                                            learning_rate)
    return lam, not math.isfinite(d_scale * w)


@numba.njit(cache=True, nogil=True, fastmath={"reassoc"})
def _stats(weights, lambdas, prev_weights, prev_reg, delta, given, d_scale, stepped,
           learning_rate):  # pragma: no cover - compiled
    """(sum of the (stepped) lambdas, sum of their |.|, count of non-finite weights).

    "reassoc" lets LLVM split the sums into SIMD lanes (the mean's rounding
    changes, within the spec's tolerance); it does not assume finite values.
    """
    total = 0.0
    total_abs = 0.0
    n_bad = 0
    for i in range(weights.shape[0]):
        w_row, lam_row, prev_w_row, prev_reg_row, delta_row = (
            weights[i], lambdas[i], prev_weights[i], prev_reg[i], delta[i])
        for j in range(w_row.size):
            lam, bad = stats_terms(w_row[j], lam_row[j], prev_w_row[j], prev_reg_row[j],
                                   delta_row[j], given, d_scale, stepped, learning_rate)
            n_bad += bad
            total += lam
            total_abs += abs(lam)
    return total, total_abs, n_bad


@numba.njit(cache=True, nogil=True, fastmath={"contract"}, error_model="numpy",
            inline="always")
def _write_row(w_row, lam_row, prev_w_row, prev_reg_row, delta_row, given, stepped,
               learning_rate, shift, norm):  # pragma: no cover - compiled
    """Steps 3 (translate) to 5 of the spec on 1-D rows, in place: one SIMD loop.

    Inlined where `norm` is a constant, so each norm gets its own loop. The
    clip is decided with CLIP_MARGIN (`rln_core.checks.CLIP_MARGIN`).
    """
    for j in range(w_row.size):
        w = np.float64(w_row[j])
        lam = np.float64(lam_row[j]) - _lambda_step(
            w, prev_w_row[j], delta_row[j], given, prev_reg_row[j], stepped,
            learning_rate) + shift
        nonzero = w != 0.0
        if norm == 1:
            limit = abs(w)
            cap = _math.log_abs(w_row[j])
            direction = math.copysign(1.0, w)
        else:
            limit = 0.5
            cap = LOG_HALF
            direction = 2.0 * w
        clipped = nonzero & (lam >= cap - CLIP_MARGIN * (1.0 + abs(cap)))
        step = limit if clipped else min(_math.exp(lam), limit)
        reg = direction * step if nonzero else 0.0
        new_w = w - reg
        w_row[j] = new_w
        prev_w_row[j] = new_w
        lam_row[j] = cap if clipped else lam
        prev_reg_row[j] = reg


@numba.njit(cache=True, nogil=True, fastmath={"contract"}, error_model="numpy",
            inline="always")
def _write_row_l1_split(w_row, lam_row, prev_w_row, prev_reg_row, delta_row, given, stepped,
                        learning_rate, shift):  # pragma: no cover - compiled
    """`_write_row` for L1 and a float64 state in two loops (they measure faster: a loop
    with both log and exp is short of registers).

    The first writes the lambdas and, in prev_reg (float64, so exactly), the
    argument of the exp: +inf where clipped, so the step is |W| and the weight
    lands on exactly 0. The second takes the step, with W's sign; 0 where W == 0.
    """
    for j in range(w_row.size):
        w = np.float64(w_row[j])
        lam = np.float64(lam_row[j]) - _lambda_step(
            w, prev_w_row[j], delta_row[j], given, prev_reg_row[j], stepped,
            learning_rate) + shift
        cap = _math.log_abs(w_row[j])
        clipped = (w != 0.0) & (lam >= cap - CLIP_MARGIN * (1.0 + abs(cap)))
        lam_row[j] = cap if clipped else lam
        prev_reg_row[j] = math.inf if clipped else lam
    for j in range(w_row.size):
        w = np.float64(w_row[j])
        reg = math.copysign(min(_math.exp(prev_reg_row[j]), abs(w)), w)
        new_w = w - reg
        w_row[j] = new_w
        prev_w_row[j] = new_w
        prev_reg_row[j] = reg


_F32 = np.float32
_MARGIN_F32 = _F32(CLIP_MARGIN_F32)
_LOG_HALF_F32 = _F32(LOG_HALF)
_ZERO_F32 = _math.ZERO_F32
_ONE_F32 = _math.ONE_F32
_TWO_F32 = _math.TWO_F32
_HALF_F32 = _math.HALF_F32
_SIGN_BIT_F32 = np.int32(-2 ** 31)
_INF_F32 = _F32(np.inf)
_I32_ZERO = np.int32(0)
_I32_ONE = np.int32(1)
_ABS_BITS_F32 = np.int32(0x7FFFFFFF)
_LARGEST_FINITE_BITS_F32 = np.int32(0x7F7FFFFF)
_LARGEST_SUBNORMAL_BITS_F32 = np.int32(0x007FFFFF)
_LARGEST = {np.dtype(t): float(np.finfo(t).max) for t in (np.float32, np.float64)}
"""The largest finite value of each state dtype (`decide` runs per update: no np.finfo)."""
_F32_MAX = _LARGEST[np.dtype(np.float32)]
_L1_ONE_LOOP_F32 = AVX512  # see `_write_row32` (a compile-time constant, as the CPU is)
# The float32 lambda step cannot overflow while learning_rate * sum|change| and
# sum|change| stay below this (each |change| and |learning_rate * change| then does).
_F32_STEP_SAFE = _F32_MAX / 4


@numba.njit(cache=True, nogil=True, inline="always")
def _lambda_step32(w, prev_w, delta, given, prev_reg, stepped,
                   learning_rate):  # pragma: no cover - compiled
    """`_lambda_step` in float32 arithmetic (learning_rate a float32)."""
    change = np.float32(delta) if given else w - prev_w
    step = learning_rate * change * prev_reg
    return step if stepped else _ZERO_F32


@numba.njit(cache=True, nogil=True, inline="always")
def stats32_terms(w_in, lam_in, prev_w, prev_reg, delta, given, stepped,
                  learning_rate):  # pragma: no cover - compiled
    """One element's share of `_stats32`: (its stepped lambda, |its weight change|, a
    word whose sign bit says W is non-finite, one whose sign bit says W is subnormal).

    The words are or-ed over the tensor (bit operations on 8 lanes; counting compares
    measured 50% slower). Inlined into the caller's loop, as `stats_terms`."""
    magnitude = np.int32(np.float32(w_in).view(np.int32) & _ABS_BITS_F32)
    bad = np.int32(_LARGEST_FINITE_BITS_F32 - magnitude)
    subnormal = ~np.int32(np.int32(magnitude - _I32_ONE)
                          | np.int32(_LARGEST_SUBNORMAL_BITS_F32 - magnitude))
    w = np.float64(w_in)
    change = np.float64(delta) if given else w - np.float64(prev_w)
    step = learning_rate * change * np.float64(prev_reg)
    lam = np.float64(lam_in) - (step if stepped else 0.0)
    return lam, abs(change), bad, np.int32(subnormal)


@numba.njit(cache=True, nogil=True, fastmath={"reassoc"})
def _stats32(weights, lambdas, prev_weights, prev_reg, delta, given, d_scale, stepped,
             learning_rate):  # pragma: no cover - compiled
    """`_stats` of the float32 compute mode: (sum, sum of |.|, count of non-finite
    weights, sum of |weight change|, count of subnormal weights).

    The sums are the float64 kernel's (float64 terms and accumulators), so the
    translation is the reference's up to the order of the sum. The sum of
    |weight change| and the subnormal count tell `_update` whether the float32
    write may run (the float32 lambda step cannot overflow where the float64
    one does not; `log32_normal` takes normal weights only). Weights need only
    be finite (`_write_row32` never forms D = 2W); `d_scale` is unused.
    """
    total = 0.0
    total_abs = 0.0
    change_abs = 0.0
    bad_bits = _I32_ZERO
    subnormal_bits = _I32_ZERO
    for i in range(weights.shape[0]):
        w_row, lam_row, prev_w_row, prev_reg_row, delta_row = (
            weights[i], lambdas[i], prev_weights[i], prev_reg[i], delta[i])
        for j in range(w_row.size):
            lam, change, bad, subnormal = stats32_terms(
                w_row[j], lam_row[j], prev_w_row[j], prev_reg_row[j], delta_row[j], given,
                stepped, learning_rate)
            bad_bits = np.int32(bad_bits | bad)
            subnormal_bits = np.int32(subnormal_bits | subnormal)
            total += lam
            total_abs += abs(lam)
            change_abs += change
    return total, total_abs, int(bad_bits < 0), change_abs, int(subnormal_bits < 0)


@numba.njit(cache=True, nogil=True, fastmath={"contract"}, error_model="numpy",
            inline="always")
def _l1_lambda32(w, lam_in, prev_w, delta, given, prev_reg, stepped, learning_rate,
                 shift):  # pragma: no cover - compiled
    """One element's L1 lambda in float32: (the lambda written, whether it is clipped,
    the translated lambda before the clip)."""
    step_lam = _lambda_step32(w, prev_w, delta, given, prev_reg, stepped, learning_rate)
    lam = (lam_in - step_lam) + shift
    cap = _math.log32_normal(abs(w))
    scale = max(max(_ONE_F32, abs(cap)), max(abs(lam_in), abs(step_lam)))
    clipped = (w != _ZERO_F32) & (lam >= cap - _MARGIN_F32 * scale)
    return (cap if clipped else lam), clipped, lam


@numba.njit(cache=True, nogil=True, inline="always")
def _signed32(step, w):  # pragma: no cover - compiled
    """|step| with W's sign, by a bit operation (step >= 0)."""
    return np.int32(np.float32(step).view(np.int32)
                    | (np.float32(w).view(np.int32) & _SIGN_BIT_F32)).view(np.float32)


@numba.njit(cache=True, nogil=True, fastmath={"contract"}, error_model="numpy",
            inline="always")
def _write_row32(w_row, lam_row, prev_w_row, prev_reg_row, delta_row, given, stepped,
                 learning_rate, shift, norm):  # pragma: no cover - compiled
    """`_write_row` in float32 arithmetic (learning_rate and shift float32).

    The clip is decided with CLIP_MARGIN_F32. L1 runs two loops where the target
    has 16 vector registers (AVX2: a loop with both log and exp is short of them,
    and two measured faster): the first writes the lambdas and, in prev_reg, the
    argument of the exp (+inf where clipped, so the step is |W|); the second the
    step, with W's sign. With AVX-512's 32 registers (`_L1_ONE_LOOP_F32`) one loop
    does both, the same operations on each element (the tutorial layer's write:
    155 vs 163 us). The L2 step is W * (2 * step), equal to (2 W) * step and
    finite for every finite W. Both are 0 where W == 0 (the step limit is 0,
    or W is), so no select is needed there. The weights must be normal or 0
    (`log32_normal`; `_update` checks).
    """
    if norm == 1 and _L1_ONE_LOOP_F32:
        for j in range(w_row.size):
            w = w_row[j]
            lam_row[j], clipped, lam = _l1_lambda32(w, lam_row[j], prev_w_row[j], delta_row[j],
                                                    given, prev_reg_row[j], stepped,
                                                    learning_rate, shift)
            reg = _signed32(abs(w) if clipped else min(_math.exp32(lam), abs(w)), w)
            new_w = w - reg
            w_row[j] = new_w
            prev_w_row[j] = new_w
            prev_reg_row[j] = reg
    elif norm == 1:
        for j in range(w_row.size):
            lam_row[j], clipped, lam = _l1_lambda32(w_row[j], lam_row[j], prev_w_row[j],
                                                    delta_row[j], given, prev_reg_row[j],
                                                    stepped, learning_rate, shift)
            prev_reg_row[j] = _INF_F32 if clipped else lam
        for j in range(w_row.size):
            w = w_row[j]
            reg = _signed32(min(_math.exp32(prev_reg_row[j]), abs(w)), w)
            new_w = w - reg
            w_row[j] = new_w
            prev_w_row[j] = new_w
            prev_reg_row[j] = reg
    else:
        for j in range(w_row.size):
            w = w_row[j]
            lam_in = lam_row[j]
            step_lam = _lambda_step32(w, prev_w_row[j], delta_row[j], given, prev_reg_row[j],
                                      stepped, learning_rate)
            lam = (lam_in - step_lam) + shift
            scale = max(max(_ONE_F32, -_LOG_HALF_F32), max(abs(lam_in), abs(step_lam)))
            clipped = (w != _ZERO_F32) & (lam >= _LOG_HALF_F32 - _MARGIN_F32 * scale)
            step = _HALF_F32 if clipped else min(_math.exp32(lam), _HALF_F32)
            reg = w * (_TWO_F32 * step)
            new_w = w - reg
            w_row[j] = new_w
            prev_w_row[j] = new_w
            lam_row[j] = _LOG_HALF_F32 if clipped else lam
            prev_reg_row[j] = reg


def _make_write32(norm: int, given: bool):
    """`_make_write` of the float32 compute mode; a single row (any contiguous array)
    walked outside the loop over rows (as `_make_write_rows`: 318 -> 244 us there)."""
    @numba.njit(cache=True, nogil=True, fastmath={"contract"}, error_model="numpy")
    def write32(weights, lambdas, prev_weights, prev_reg, delta, stepped, learning_rate,
                shift):  # pragma: no cover - compiled
        wide_vectors()
        learning_rate32 = np.float32(learning_rate)
        shift32 = np.float32(shift)
        if weights.shape[0] == 1:
            _write_row32(weights[0], lambdas[0], prev_weights[0], prev_reg[0], delta[0], given,
                         stepped, learning_rate32, shift32, norm)
            return
        for i in range(weights.shape[0]):
            _write_row32(weights[i], lambdas[i], prev_weights[i], prev_reg[i], delta[i], given,
                         stepped, learning_rate32, shift32, norm)
    return write32


def _make_write(norm: int, given: bool):
    """The jitted driver of `_write_row` for one norm and one source of the weight
    change (constants, so one loop each).

    `given` must be a constant: without a delta the kernel is handed prev_weights
    in its place, and a loop that may read the array it writes does not
    vectorize (LLVM's run-time alias check fails); as a constant, the read is gone.
    Called with 2-D views; compiled and cached per variant on first use.
    """
    @numba.njit(cache=True, nogil=True, fastmath={"contract"}, error_model="numpy")
    def write(weights, lambdas, prev_weights, prev_reg, delta, stepped, learning_rate,
              shift):  # pragma: no cover - compiled
        wide_vectors()
        for i in range(weights.shape[0]):
            _write_row(weights[i], lambdas[i], prev_weights[i], prev_reg[i], delta[i], given,
                       stepped, learning_rate, shift, norm)
    return write


def _make_write_rows(norm: int, given: bool):
    """`_make_write` for a float64 state: L1 in two loops (`_write_row_l1_split`), and a
    single row (any contiguous array) walked outside the loop over rows: inlined into
    that loop, the same row loops measured 15-25% slower. Measured on the tutorial layer
    (whole update, one thread): L1 1.36 -> 1.13 ms, L2 0.99 -> 0.83 ms. With a float32
    state, neither change measured faster, so it keeps `_make_write`.
    """
    @numba.njit(cache=True, nogil=True, fastmath={"contract"}, error_model="numpy")
    def write(weights, lambdas, prev_weights, prev_reg, delta, stepped, learning_rate,
              shift):  # pragma: no cover - compiled
        wide_vectors()
        if weights.shape[0] == 1:
            if norm == 1:
                _write_row_l1_split(weights[0], lambdas[0], prev_weights[0], prev_reg[0],
                                    delta[0], given, stepped, learning_rate, shift)
            else:
                _write_row(weights[0], lambdas[0], prev_weights[0], prev_reg[0], delta[0],
                           given, stepped, learning_rate, shift, norm)
            return
        for i in range(weights.shape[0]):
            if norm == 1:
                _write_row_l1_split(weights[i], lambdas[i], prev_weights[i], prev_reg[i],
                                    delta[i], given, stepped, learning_rate, shift)
            else:
                _write_row(weights[i], lambdas[i], prev_weights[i], prev_reg[i], delta[i],
                           given, stepped, learning_rate, shift, norm)
    return write


# (writer, norm, given): "float64" (float64 math, float32 state), "float64 rows"
# (float64 math, float64 state), "float32" (float32 math); each compiles on first use.
_WRITE = {}
for _norm in (1, 2):
    for _given in (False, True):
        _WRITE["float64", _norm, _given] = _make_write(_norm, _given)
        _WRITE["float64 rows", _norm, _given] = _make_write_rows(_norm, _given)
        _WRITE["float32", _norm, _given] = _make_write32(_norm, _given)


def _shift(total: float, total_abs: float, n_bad: int, n: int, first: bool,
           avg_reg: float, lambda_max: float) -> Tuple[int, float]:
    """(status, shift): the translation back to mean Theta, or why the update is refused.

    Every translated lambda is at most total_abs + |shift| in magnitude, so that
    sum within `lambda_max` (the state dtype's largest value) keeps them all
    finite where they are stored. The bound is conservative (by the sum over the
    tensor, which can overflow where no lambda does): where it trips, the status
    is LAMBDAS_UNSURE and the caller decides on the exact path.
    """
    if n_bad:
        return BAD_WEIGHTS, 0.0
    shift = 0.0 if first else avg_reg - total / n
    if not total_abs + abs(shift) <= lambda_max:
        return LAMBDAS_UNSURE, 0.0
    return OK, shift


def _shift32(total: float, total_abs: float, n_bad: int, change_abs: float, n_subnormal: int,
             n: int, first: bool, avg_reg: float, learning_rate: float,
             norm: int) -> Tuple[int, float, bool]:
    """`_shift` of the float32 compute mode: (status, shift, whether the float32 write may run).

    The float32 write adds the shift as a float32 to lambdas stepped in float32
    (each within 6 units of roundoff, plus 4 of float32's largest value, of the
    float64 ones): the bound gets a 1e-6 allowance on both sides. The float64
    write runs instead (slower, within the float32 mode's tolerance) where the
    float32 lambda step could overflow (learning_rate * sum|change| or
    sum|change| beyond float32's largest / 4) and, for L1, where a weight is
    subnormal (`log32_normal`).
    """
    if n_bad:
        return BAD_WEIGHTS, 0.0, True
    shift = 0.0 if first else avg_reg - total / n
    # (rounding the shift to float32 is within the allowance)
    if not (total_abs + abs(shift)) * (1.0 + 1e-6) <= _F32_MAX * (1.0 - 1e-6):
        return LAMBDAS_UNSURE, 0.0, True
    safe = first or (change_abs <= _F32_STEP_SAFE and learning_rate * change_abs <= _F32_STEP_SAFE)
    return OK, shift, safe and not (norm == 1 and n_subnormal)


_POOL: Optional[ThreadPoolExecutor] = None


def _forget_the_pool() -> None:
    """In a fork()ed child: the parent's pool came along without its threads (a task
    sent to it would wait forever), so the child makes its own on first use."""
    global _POOL
    _POOL = None


os.register_at_fork(after_in_child=_forget_the_pool)


def _chunks(views: Sequence[np.ndarray], n_chunks: int) -> List[List[np.ndarray]]:
    """Split same-shaped 2-D views into `n_chunks` parts: by rows, or a single row by columns."""
    rows, cols = views[0].shape
    if rows >= n_chunks:
        size = -(-rows // n_chunks)
        return [[v[start:start + size] for v in views] for start in range(0, rows, size)]
    size = -(-cols // n_chunks)
    return [[v[:, start:start + size] for v in views] for start in range(0, cols, size)]


def _update(views: Sequence[np.ndarray], given: bool, first: bool, avg_reg: float,
            learning_rate: float, norm: int, n_chunks: int, compute32: bool = False) -> int:
    """Both passes over `n_chunks` chunks of the views, on this thread (1 chunk) or on
    Python threads (the kernels drop the GIL); returns OK or an error code."""
    stepped = not first
    stats = _stats32 if compute32 else _stats
    sums = add_up(in_chunks(stats, views, n_chunks, given, D_SCALE[norm], stepped,
                            learning_rate))
    status, shift, writer = decide(sums, views[0].size, first, avg_reg, learning_rate, norm,
                                   compute32, views[1].dtype)
    if status == OK:
        write = _WRITE[writer, norm, given]
        in_chunks(write, views, n_chunks, stepped, learning_rate, shift)
    return status


def add_up(per_chunk: Sequence[Sequence[float]]) -> Tuple[float, ...]:
    """The sums of `_stats` (or `_stats32`) over all chunks, from each chunk's."""
    if len(per_chunk) == 1:
        return tuple(per_chunk[0])
    return tuple(sum(s[k] for s in per_chunk) for k in range(len(per_chunk[0])))


def decide(sums: Sequence[float], n: int, first: bool, avg_reg: float, learning_rate: float,
           norm: int, compute32: bool, state_dtype: np.dtype) -> Tuple[int, float, str]:
    """(status, shift, writer) from the sums of `_stats` (or `_stats32` when `compute32`)
    over all n elements: OK or an error code, the translation, the `_WRITE` variant."""
    if compute32:
        status, shift, safe = _shift32(*sums, n, first, avg_reg, learning_rate, norm)
    else:
        status, shift = _shift(*sums, n, first, avg_reg, _LARGEST[state_dtype])
        safe = False
    return status, shift, _writer(safe, state_dtype)


def _writer(compute32: bool, state_dtype: np.dtype) -> str:
    """The `_WRITE` variant for float32 math or else the state's dtype."""
    if compute32:
        return "float32"
    return "float64 rows" if state_dtype == np.float64 else "float64"


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=numba.config.NUMBA_NUM_THREADS,
                                   thread_name_prefix="rln")
    return _POOL


def views_of(weights: np.ndarray, lambdas: np.ndarray, prev_weights: np.ndarray,
             prev_reg: np.ndarray, delta: Optional[np.ndarray]) -> Optional[list]:
    """The kernel's 2-D views of the arrays, or None when they cannot be walked in place
    without a copy. Without `delta`, prev_weights stands in for it (see the module)."""
    return as_2d_views([weights, lambdas, prev_weights, prev_reg,
                        prev_weights if delta is None else delta])


def chunk_count(size: int) -> int:
    """In how many chunks (threads) to update a tensor of `size` elements: 1 below
    PARALLEL_MIN_ELEMENTS, else up to numba's thread count, each chunk at least
    ELEMENTS_PER_CHUNK_MIN elements."""
    if size < PARALLEL_MIN_ELEMENTS:
        return 1
    return max(1, min(numba.get_num_threads(), size // ELEMENTS_PER_CHUNK_MIN))


def in_chunks(function: Callable[..., Any], views: Sequence[np.ndarray], n_chunks: int,
              *numbers: Any) -> List[Any]:
    """[function(*part, *numbers) for each of `n_chunks` parts of the views] (`_chunks`),
    on this thread (1 chunk) or on the pool's threads (the kernels drop the GIL).

    The kernel and its scalar arguments are passed apart, not bound in a closure: this
    runs twice per update, and a closure made per call costs more than the call."""
    if n_chunks == 1:
        return [function(*views, *numbers)]
    return list(_pool().map(lambda part: function(*part, *numbers), _chunks(views, n_chunks)))


def update_views(views: Sequence[np.ndarray], given: bool, first: bool,
                 hyperparameters: Hyperparameters, compute32: bool = False) -> int:
    """Run the kernel on `views_of`'s views of validated arrays (in `chunk_count` chunks,
    decided now: numba's thread count may have changed); OK or an error code.

    `given`: the last view is a delta (else prev_weights standing in for it). On the
    first update (`first`: no lambda step, no translation) prev_reg, prev_weights and
    delta are not read (prev_reg and prev_weights are overwritten). `compute32`:
    float32 arithmetic (float32 weights and state, checked by the caller).
    """
    return _update(views, given, bool(first), hyperparameters.avg_reg,
                   hyperparameters.learning_rate, hyperparameters.norm,
                   chunk_count(views[0].size), bool(compute32))
