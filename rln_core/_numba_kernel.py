"""The fused, in-place numba kernel of one RLN update.

Importing this module imports numba (slow); `rln_core` imports it lazily, on
the first update that asks for it. Compiled code is cached on disk, and each
driver compiles on its first use only.

Two passes over memory, so a refused update leaves every array untouched:
1. `_stats` (read only): sum of the stepped lambdas (for the mean), the sum of
   their absolute values and the count of non-finite weights (for the checks);
2. `_write`: translate, clip, regularize; weights, lambdas, prev_weights, prev_reg.
Both work on a block of rows; `_update_serial` runs them over all rows,
`_update_parallel` over row chunks on numba's threads (large tensors only).
"""

from __future__ import annotations

import math
from typing import List, Optional

import numba
import numpy as np

from rln_core._layout import as_2d_views
from rln_core._numba_kernel_codes import BAD_LAMBDAS, BAD_WEIGHTS, OK

LOG_HALF = math.log(0.5)
NEAR_CAP = 1.0 - 1e-12  # exp(lambda) below limit * NEAR_CAP is surely not clipped
PARALLEL_MIN_ELEMENTS = 1 << 16  # smaller tensors: threads cost more than they save
ELEMENTS_PER_CHUNK_MIN = 1 << 15  # a parallel chunk holds at least this many elements


@numba.njit(cache=True, nogil=True)
def _stats(weights, lambdas, prev_weights, prev_reg, first, learning_rate, row_begin,
           row_end):  # pragma: no cover - compiled
    """(sum of stepped lambdas, sum of their |.|, count of non-finite weights) over rows."""
    total = 0.0
    total_abs = 0.0
    n_bad = 0
    for i in range(row_begin, row_end):
        for j in range(weights.shape[1]):
            w = np.float64(weights[i, j])
            if not math.isfinite(w):
                n_bad += 1
            lam = np.float64(lambdas[i, j])
            if not first:
                lam -= learning_rate * (w - np.float64(prev_weights[i, j])) * np.float64(
                    prev_reg[i, j])
            total += lam
            total_abs += abs(lam)
    return total, total_abs, n_bad


@numba.njit(cache=True, nogil=True)
def _write(weights, lambdas, prev_weights, prev_reg, first, learning_rate, shift, norm,
           row_begin, row_end):  # pragma: no cover - compiled
    """Steps 3 (translate) to 5 of the spec on rows [row_begin, row_end), in place."""
    for i in range(row_begin, row_end):
        for j in range(weights.shape[1]):
            w = np.float64(weights[i, j])
            lam = np.float64(lambdas[i, j])
            if not first:
                lam = lam - learning_rate * (w - np.float64(prev_weights[i, j])) * np.float64(
                    prev_reg[i, j]) + shift
            reg = 0.0
            if w != 0.0:
                if norm == 1:
                    direction = 1.0 if w > 0.0 else -1.0
                    limit = abs(w)
                else:
                    direction = 2.0 * w
                    limit = 0.5
                step = math.exp(lam)
                if step >= limit * NEAR_CAP:  # at or near the cap: decide exactly
                    cap = math.log(abs(w)) if norm == 1 else LOG_HALF
                    if lam >= cap:
                        lam = cap
                        step = limit
                reg = direction * min(step, limit)
            weights[i, j] = w - reg
            prev_weights[i, j] = weights[i, j]
            lambdas[i, j] = lam
            prev_reg[i, j] = reg


@numba.njit(cache=True, nogil=True)
def _shift(total, total_abs, n_bad, n, first, avg_reg):  # pragma: no cover - compiled
    """(status, shift): the translation back to mean Theta, or why the update is refused."""
    if n_bad:
        return BAD_WEIGHTS, 0.0
    shift = 0.0 if first else avg_reg - total / n
    if not math.isfinite(total_abs + abs(shift)):
        return BAD_LAMBDAS, 0.0
    return OK, shift


@numba.njit(cache=True, nogil=True)
def _update_serial(weights, lambdas, prev_weights, prev_reg, first, avg_reg, learning_rate,
                   norm, n_chunks):  # pragma: no cover - compiled
    rows = weights.shape[0]
    total, total_abs, n_bad = _stats(weights, lambdas, prev_weights, prev_reg, first,
                                     learning_rate, 0, rows)
    status, shift = _shift(total, total_abs, n_bad, weights.size, first, avg_reg)
    if status == OK:
        _write(weights, lambdas, prev_weights, prev_reg, first, learning_rate, shift, norm,
               0, rows)
    return status


@numba.njit(cache=True, parallel=True)
def _update_parallel(weights, lambdas, prev_weights, prev_reg, first, avg_reg, learning_rate,
                     norm, n_chunks):  # pragma: no cover - compiled
    rows = weights.shape[0]
    chunk = (rows + n_chunks - 1) // n_chunks
    total = 0.0
    total_abs = 0.0
    n_bad = 0
    for c in numba.prange(n_chunks):
        t, t_abs, bad = _stats(weights, lambdas, prev_weights, prev_reg, first, learning_rate,
                               c * chunk, min(rows, (c + 1) * chunk))
        total += t
        total_abs += t_abs
        n_bad += bad
    status, shift = _shift(total, total_abs, n_bad, weights.size, first, avg_reg)
    if status == OK:
        for c in numba.prange(n_chunks):
            _write(weights, lambdas, prev_weights, prev_reg, first, learning_rate, shift, norm,
                   c * chunk, min(rows, (c + 1) * chunk))
    return status


def update_in_place(weights: np.ndarray, lambdas: np.ndarray, prev_weights: np.ndarray,
                    prev_reg: np.ndarray, first: bool, avg_reg: float,
                    learning_rate: float, norm: int) -> Optional[int]:
    """Run the kernel on validated arrays of one shape; return OK or an error code.

    `prev_reg` is only read when `first` is False. Returns None (nothing done)
    when the arrays cannot be walked in place without a copy.
    """
    views: Optional[List[np.ndarray]] = as_2d_views([weights, lambdas, prev_weights, prev_reg])
    if views is None:
        return None
    rows, cols = views[0].shape
    n_chunks = min(numba.get_num_threads(), rows, rows * cols // ELEMENTS_PER_CHUNK_MIN)
    driver = _update_parallel if rows * cols >= PARALLEL_MIN_ELEMENTS and n_chunks > 1 \
        else _update_serial
    return driver(*views, bool(first), float(avg_reg), float(learning_rate), int(norm),
                  max(1, int(n_chunks)))
