"""The fused, in-place numba kernel of one RLN update.

Importing this module imports numba (slow); `rln_core` imports it lazily, on
the first update that asks for it. Compiled code is cached on disk, and each
driver compiles on its first use only.

Two passes over memory, so a refused update leaves every array untouched:
1. `_stats` (read only): sum of the stepped lambdas (for the mean), the sum of
   their absolute values and the count of non-finite weights (for the checks);
2. `_write`: translate, clip, regularize; weights, lambdas, prev_weights, prev_reg.
Both work on a block of rows and vectorize (SIMD): `_stats` by letting LLVM
reassociate its sums, `_write` by using `_numba_math`'s exp and log, with an
exact scalar path for the rare element whose clip decision is within rounding.
`_update_serial` runs them over all rows; `_update_threaded` over row chunks
on Python threads (the kernels release the GIL; large tensors only).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional

import numba
import numpy as np

from rln_core import _numba_math as _math
from rln_core._layout import as_2d_views
from rln_core._numba_kernel_codes import BAD_LAMBDAS, BAD_WEIGHTS, OK

LOG_HALF = math.log(0.5)
CLIP_BAND = 1e-13  # |lambda - cap| <= CLIP_BAND * (1 + |cap|): decide exactly, with libm log
BLOCK = 512  # row elements per SIMD loop (bounds the scratch of unsure flags)
# Smaller tensors run on one thread: on 2 shared cores, threads did not speed up
# a 181k-element update and compete with the training framework's own threads.
PARALLEL_MIN_ELEMENTS = 1 << 20
ELEMENTS_PER_CHUNK_MIN = 1 << 15  # a parallel chunk holds at least this many elements


@numba.njit(cache=True, nogil=True, fastmath={"reassoc"})
def _stats(weights, lambdas, prev_weights, prev_reg, first, learning_rate, row_begin,
           row_end):  # pragma: no cover - compiled
    """(sum of stepped lambdas, sum of their |.|, count of non-finite weights) over rows.

    "reassoc" lets LLVM split the sums into SIMD lanes (the mean's rounding
    changes, within the spec's tolerance); it does not assume finite values.
    """
    total = 0.0
    total_abs = 0.0
    n_bad = 0
    for i in range(row_begin, row_end):
        w_row, lam_row, prev_w_row, prev_reg_row = (
            weights[i], lambdas[i], prev_weights[i], prev_reg[i])
        for j in range(w_row.size):
            w = np.float64(w_row[j])
            n_bad += not math.isfinite(w)
            lam = np.float64(lam_row[j])
            if not first:
                lam -= learning_rate * (w - np.float64(prev_w_row[j])) * np.float64(
                    prev_reg_row[j])
            total += lam
            total_abs += abs(lam)
    return total, total_abs, n_bad


@numba.njit(cache=True, nogil=True)
def _write_one(weights, lambdas, prev_weights, prev_reg, j, first, learning_rate, shift,
               norm):  # pragma: no cover - compiled
    """Steps 3 to 5 on element j of 1-D rows, exactly (libm exp and log)."""
    w = np.float64(weights[j])
    lam = np.float64(lambdas[j])
    if not first:
        lam = lam - learning_rate * (w - np.float64(prev_weights[j])) * np.float64(
            prev_reg[j]) + shift
    reg = 0.0
    if w != 0.0:
        if norm == 1:
            direction = 1.0 if w > 0.0 else -1.0
            limit = abs(w)
        else:
            direction = 2.0 * w
            limit = 0.5
        cap = math.log(abs(w)) if norm == 1 else LOG_HALF
        if lam >= cap:
            lam = cap
            step = limit
        else:
            step = min(math.exp(lam), limit)
        reg = direction * step
    weights[j] = w - reg
    prev_weights[j] = w - reg
    lambdas[j] = lam
    prev_reg[j] = reg


@numba.njit(cache=True, nogil=True, inline="always")
def _write_block(w_blk, lam_blk, prev_w_blk, prev_reg_blk, unsure, first, learning_rate, shift,
                 norm):  # pragma: no cover - compiled
    """The SIMD loop of `_write` on 1-D blocks; returns the count of unsure elements.

    Inlined where `norm` is a constant, so each norm gets its own loop.
    """
    n_unsure = 0
    for j in range(w_blk.size):
        w = np.float64(w_blk[j])
        old_lam = np.float64(lam_blk[j])
        old_prev_w = prev_w_blk[j]
        old_prev_reg = prev_reg_blk[j]
        lam = old_lam
        if not first:
            lam = lam - learning_rate * (w - np.float64(old_prev_w)) * np.float64(
                old_prev_reg) + shift
        if norm == 1:
            direction = 1.0 if w > 0.0 else -1.0
            limit = abs(w)
            cap = _math.log(limit)
            near = abs(lam - cap) <= CLIP_BAND * (1.0 + abs(cap))
        else:
            direction = 2.0 * w
            limit = 0.5
            cap = LOG_HALF
            near = False
        nonzero = w != 0.0
        clipped = nonzero & (lam >= cap)
        growth = _math.exp(lam)
        step = limit if clipped else min(growth, limit)
        reg = direction * step if nonzero else 0.0
        is_unsure = nonzero & near
        unsure[j] = is_unsure
        n_unsure += is_unsure
        new_w = w if is_unsure else w - reg
        w_blk[j] = new_w
        prev_w_blk[j] = old_prev_w if is_unsure else new_w
        lam_blk[j] = old_lam if is_unsure else (cap if clipped else lam)
        prev_reg_blk[j] = old_prev_reg if is_unsure else reg
    return n_unsure


@numba.njit(cache=True, nogil=True)
def _write(weights, lambdas, prev_weights, prev_reg, first, learning_rate, shift, norm,
           row_begin, row_end):  # pragma: no cover - compiled
    """Steps 3 (translate) to 5 of the spec on rows [row_begin, row_end), in place.

    A SIMD loop (vectorizable exp and log) updates every element whose clip
    decision is clear; an element whose lambda lies within CLIP_BAND of its
    cap (where 1 ulp of log could flip the decision) is left untouched there
    and redone exactly by `_write_one`.
    """
    unsure = np.empty(BLOCK, dtype=np.bool_)
    for i in range(row_begin, row_end):
        for start in range(0, weights.shape[1], BLOCK):
            stop = min(weights.shape[1], start + BLOCK)
            w_blk, lam_blk, prev_w_blk, prev_reg_blk = (
                weights[i, start:stop], lambdas[i, start:stop],
                prev_weights[i, start:stop], prev_reg[i, start:stop])
            if norm == 1:
                n_unsure = _write_block(w_blk, lam_blk, prev_w_blk, prev_reg_blk, unsure, first,
                                        learning_rate, shift, 1)
            else:
                n_unsure = _write_block(w_blk, lam_blk, prev_w_blk, prev_reg_blk, unsure, first,
                                        learning_rate, shift, 2)
            if n_unsure:
                for j in range(stop - start):
                    if unsure[j]:
                        _write_one(w_blk, lam_blk, prev_w_blk, prev_reg_blk, j, first,
                                   learning_rate, shift, norm)


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


_POOL: Optional[ThreadPoolExecutor] = None


def _update_threaded(weights, lambdas, prev_weights, prev_reg, first, avg_reg, learning_rate,
                     norm, n_chunks):
    """`_update_serial` over `n_chunks` row chunks on Python threads (the kernels drop the GIL)."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=numba.config.NUMBA_NUM_THREADS,
                                   thread_name_prefix="rln")
    rows = weights.shape[0]
    chunk = (rows + n_chunks - 1) // n_chunks
    bounds = [(c * chunk, min(rows, (c + 1) * chunk)) for c in range(n_chunks)]
    parts = list(_POOL.map(lambda b: _stats(weights, lambdas, prev_weights, prev_reg, first,
                                            learning_rate, b[0], b[1]), bounds))
    status, shift = _shift(sum(p[0] for p in parts), sum(p[1] for p in parts),
                           sum(p[2] for p in parts), weights.size, first, avg_reg)
    if status == OK:
        list(_POOL.map(lambda b: _write(weights, lambdas, prev_weights, prev_reg, first,
                                        learning_rate, shift, norm, b[0], b[1]), bounds))
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
    n_chunks = 1
    if rows * cols >= PARALLEL_MIN_ELEMENTS:
        n_chunks = min(numba.get_num_threads(), rows, rows * cols // ELEMENTS_PER_CHUNK_MIN)
    driver = _update_threaded if n_chunks > 1 else _update_serial
    return driver(*views, bool(first), float(avg_reg), float(learning_rate), int(norm),
                  int(n_chunks))
