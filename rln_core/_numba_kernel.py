"""The fused, in-place numba kernel of one RLN update.

Importing this module imports numba (slow); `rln_core` imports it lazily, on
the first update that asks for it. Compiled code is cached on disk.

Two passes over memory, so a refused update leaves every array untouched:
1. read only: sum of the stepped lambdas (for the mean), the sum of their
   absolute values and the count of non-finite weights (for the checks);
2. write: translate, clip, regularize; weights, lambdas, prev_weights, prev_reg.
"""

from __future__ import annotations

import math
from typing import Optional

import numba
import numpy as np

from rln_core._layout import as_2d_views
from rln_core._numba_kernel_codes import BAD_LAMBDAS, BAD_WEIGHTS, OK

LOG_HALF = math.log(0.5)
NEAR_CAP = 1.0 - 1e-12  # exp(lambda) below limit * NEAR_CAP is surely not clipped
ELEMENTS_PER_CHUNK_MIN = 1 << 15  # a parallel chunk holds at least this many elements


@numba.njit(cache=True, parallel=True, nogil=True)
def _fused_update(weights, lambdas, prev_weights, prev_reg, first, avg_reg,
                  learning_rate, norm, n_chunks):  # pragma: no cover - compiled
    rows, cols = weights.shape
    chunk = (rows + n_chunks - 1) // n_chunks
    total = 0.0
    total_abs = 0.0
    n_bad = 0
    for c in numba.prange(n_chunks):
        for i in range(c * chunk, min(rows, (c + 1) * chunk)):
            for j in range(cols):
                w = np.float64(weights[i, j])
                if not math.isfinite(w):
                    n_bad += 1
                lam = np.float64(lambdas[i, j])
                if not first:
                    delta = w - np.float64(prev_weights[i, j])
                    lam -= learning_rate * delta * np.float64(prev_reg[i, j])
                total += lam
                total_abs += abs(lam)
    if n_bad:
        return BAD_WEIGHTS
    shift = 0.0 if first else avg_reg - total / (rows * cols)
    if not math.isfinite(total_abs + abs(shift)):
        return BAD_LAMBDAS

    for c in numba.prange(n_chunks):
        for i in range(c * chunk, min(rows, (c + 1) * chunk)):
            for j in range(cols):
                w = np.float64(weights[i, j])
                lam = np.float64(lambdas[i, j])
                if not first:
                    delta = w - np.float64(prev_weights[i, j])
                    lam = lam - learning_rate * delta * np.float64(prev_reg[i, j]) + shift
                reg = 0.0
                if w != 0.0:
                    abs_w = abs(w)
                    if norm == 1:
                        direction = 1.0 if w > 0.0 else -1.0
                        limit = abs_w
                    else:
                        direction = 2.0 * w
                        limit = 0.5
                    step = math.exp(lam)
                    if step >= limit * NEAR_CAP:  # at or near the cap: decide exactly
                        cap = math.log(abs_w) if norm == 1 else LOG_HALF
                        if lam >= cap:
                            lam = cap
                            step = limit
                    reg = direction * min(step, limit)
                new_w = w - reg
                weights[i, j] = new_w
                prev_weights[i, j] = weights[i, j]
                lambdas[i, j] = lam
                prev_reg[i, j] = reg
    return OK


def update_in_place(weights: np.ndarray, lambdas: np.ndarray, prev_weights: np.ndarray,
                    prev_reg: np.ndarray, first: bool, avg_reg: float,
                    learning_rate: float, norm: int) -> Optional[int]:
    """Run the kernel on validated arrays of one shape; return OK or an error code.

    `prev_reg` is only read when `first` is False. Returns None (nothing
    done) when the arrays cannot be walked in place without a copy.
    """
    views = as_2d_views([weights, lambdas, prev_weights, prev_reg])
    if views is None:
        return None
    rows, cols = views[0].shape
    n_chunks = max(1, min(numba.get_num_threads(), rows * cols // ELEMENTS_PER_CHUNK_MIN, rows))
    return _fused_update(*views, bool(first), float(avg_reg), float(learning_rate),
                         int(norm), int(n_chunks))
