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
using `_numba_math`'s exp and log. `_update` runs them on one thread, or on
chunks in a thread pool (the kernels release the GIL; large tensors only).

The clip is decided with `_clip.CLIP_MARGIN` (see there): a weight the
reference sets to exactly 0 is exactly 0 here too.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional, Sequence, Tuple

import numba
import numpy as np

from rln_core import _numba_math as _math
from rln_core._layout import as_2d_views
from rln_core._numba_kernel_codes import BAD_LAMBDAS, BAD_WEIGHTS, OK
from rln_core.checks import CLIP_MARGIN, D_SCALE, LOG_HALF
from rln_core.hyperparameters import Hyperparameters

# Smaller tensors run on one thread: on 2 shared cores, threads did not speed up
# a 181k-element update and compete with the training framework's own threads.
PARALLEL_MIN_ELEMENTS = 1 << 20
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
            w = np.float64(w_row[j])
            n_bad += not math.isfinite(d_scale * w)
            lam = np.float64(lam_row[j]) - _lambda_step(
                w, prev_w_row[j], delta_row[j], given, prev_reg_row[j], stepped, learning_rate)
            total += lam
            total_abs += abs(lam)
    return total, total_abs, n_bad


@numba.njit(cache=True, nogil=True, fastmath={"contract"}, error_model="numpy",
            inline="always")
def _write_row(w_row, lam_row, prev_w_row, prev_reg_row, delta_row, given, stepped,
               learning_rate, shift, norm):  # pragma: no cover - compiled
    """Steps 3 (translate) to 5 of the spec on 1-D rows, in place: one SIMD loop.

    Inlined where `norm` is a constant, so each norm gets its own loop. The
    clip is decided with CLIP_MARGIN (`rln_core._clip`).
    """
    for j in range(w_row.size):
        w = np.float64(w_row[j])
        lam = np.float64(lam_row[j]) - _lambda_step(
            w, prev_w_row[j], delta_row[j], given, prev_reg_row[j], stepped,
            learning_rate) + shift
        nonzero = w != 0.0
        if norm == 1:
            limit = abs(w)
            cap = _math.log(limit)
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
        for i in range(weights.shape[0]):
            _write_row(weights[i], lambdas[i], prev_weights[i], prev_reg[i], delta[i], given,
                       stepped, learning_rate, shift, norm)
    return write


_WRITE = {(norm, given): _make_write(norm, given) for norm in (1, 2) for given in (False, True)}


def _shift(total: float, total_abs: float, n_bad: int, n: int, first: bool,
           avg_reg: float, lambda_max: float) -> Tuple[int, float]:
    """(status, shift): the translation back to mean Theta, or why the update is refused.

    Every translated lambda is at most total_abs + |shift| in magnitude, so that
    sum within `lambda_max` (the state dtype's largest value) keeps them all
    finite where they are stored (conservative by the sum over the tensor).
    """
    if n_bad:
        return BAD_WEIGHTS, 0.0
    shift = 0.0 if first else avg_reg - total / n
    if not total_abs + abs(shift) <= lambda_max:
        return BAD_LAMBDAS, 0.0
    return OK, shift


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
            learning_rate: float, norm: int, n_chunks: int) -> int:
    """Both passes over `n_chunks` chunks of the views, on this thread (1 chunk) or on
    Python threads (the kernels drop the GIL); returns OK or an error code."""
    flags = (not first, learning_rate)
    write = _WRITE[norm, given]
    checks = (given, D_SCALE[norm])
    lambda_max = float(np.finfo(views[1].dtype).max)
    if n_chunks == 1:
        status, shift = _shift(*_stats(*views, *checks, *flags), views[0].size, first, avg_reg,
                               lambda_max)
        if status == OK:
            write(*views, *flags, shift)
        return status
    parts = _chunks(views, n_chunks)
    sums = list(_pool().map(lambda part: _stats(*part, *checks, *flags), parts))
    status, shift = _shift(*(sum(s[k] for s in sums) for k in range(3)), views[0].size, first,
                           avg_reg, lambda_max)
    if status == OK:
        list(_pool().map(lambda part: write(*part, *flags, shift), parts))
    return status


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=numba.config.NUMBA_NUM_THREADS,
                                   thread_name_prefix="rln")
    return _POOL


def update_in_place(weights: np.ndarray, lambdas: np.ndarray, prev_weights: np.ndarray,
                    prev_reg: np.ndarray, delta: Optional[np.ndarray], first: bool,
                    hyperparameters: Hyperparameters) -> Optional[int]:
    """Run the kernel on validated arrays of one shape; return OK or an error code.

    On the first update (`first`: no lambda step, no translation) `prev_reg`,
    `prev_weights` and `delta` are not used (prev_reg and prev_weights are
    overwritten). Returns None (nothing done) when the arrays cannot be walked
    in place without a copy.
    """
    given = delta is not None
    views = as_2d_views([weights, lambdas, prev_weights, prev_reg,
                         delta if given else prev_weights])
    if views is None:
        return None
    size = views[0].size
    n_chunks = 1
    if size >= PARALLEL_MIN_ELEMENTS:
        n_chunks = max(1, min(numba.get_num_threads(), size // ELEMENTS_PER_CHUNK_MIN))
    return _update(views, given, bool(first), hyperparameters.avg_reg,
                   hyperparameters.learning_rate, hyperparameters.norm, n_chunks)
