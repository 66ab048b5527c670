"""The in-place RLN update and the one place that picks its implementation.

Implementations, all with the signature of `update` and all checked against
`rln_core.reference.update` by `rln_core.testing.check_update`:
- "numba": the fused two-pass kernel in `_numba_kernel` (fast, in place).
- "numpy": the reference, then a write-back into the caller's arrays.
Precedence for impl="auto": numba when it can be imported and the arrays can
be walked in place, otherwise numpy. Without numba, "auto" warns once.
Set the environment variable RLN_DISABLE_NUMBA=1 to make "auto" skip numba.
"""

from __future__ import annotations

import functools
import os
import warnings
from types import ModuleType
from typing import Optional

import numpy as np

from rln_core import reference
from rln_core._numba_kernel_codes import BAD_LAMBDAS, BAD_WEIGHTS
from rln_core._state import RLNState
from rln_core._validation import (NON_FINITE_WEIGHTS_MESSAGE, check_hyperparameters,
                                  check_update_inputs, non_finite_lambdas_message)

IMPLS = ("auto", "numba", "numpy")


class NumbaUnavailableWarning(RuntimeWarning):
    """numba could not be imported; RLN falls back to the NumPy implementation."""


def update(weights: np.ndarray, state: RLNState, *, avg_reg: float = -10.0,
           learning_rate: float = 1e6, norm: int = 1, impl: str = "auto") -> RLNState:
    """One RLN update, in place on `weights` and `state`.

    Same semantics and arguments as `rln_core.reference.update`; the weights
    and the state's arrays are overwritten, `state.prev_reg` is created on the
    first call and `state.steps` advances. On any error nothing is modified.

    Args:
        weights: W after the optimizer step, writable float32/float64 ndarray
            (any shape, C/F-contiguous or strided view).
        state: the state of W, updated in place.
        avg_reg: Theta (natural log). learning_rate: nu (>= 0). norm: 1 or 2.
        impl: "auto", "numba" or "numpy" (see the module docstring).

    Returns:
        `state` itself, for chaining.
    """
    check_impl(impl)
    check_hyperparameters(avg_reg, learning_rate, norm)
    check_update_inputs(weights, state, in_place=True)
    kernel = _numba_kernel() if impl in ("auto", "numba") else None
    if impl == "numba" and kernel is None:
        raise ImportError("impl='numba' was requested but numba cannot be imported")
    if kernel is not None and _update_with_numba(kernel, weights, state, avg_reg,
                                                 learning_rate, norm):
        return state
    if impl == "numba":
        raise ValueError(
            f"impl='numba' cannot update weights of shape {weights.shape} and strides "
            f"{weights.strides} in place; pass a contiguous array or use impl='auto'")
    return _update_with_numpy(weights, state, avg_reg, learning_rate, norm)


def check_impl(impl: str) -> None:
    """`impl` must name one of `IMPLS`."""
    if impl not in IMPLS:
        raise ValueError(f"Invalid impl: {impl!r}; expected one of {IMPLS}")


def _update_with_numba(kernel: ModuleType, weights: np.ndarray, state: RLNState,
                       avg_reg: float, learning_rate: float, norm: int) -> bool:
    """Run the numba kernel; False if the layout needs the NumPy path."""
    first = state.prev_reg is None
    prev_reg = np.empty_like(state.lambdas) if first else state.prev_reg
    code = kernel.update_in_place(weights, state.lambdas, state.prev_weights, prev_reg,
                                  first, avg_reg, learning_rate, norm)
    if code is None:
        return False
    if code == BAD_WEIGHTS:
        raise ValueError(NON_FINITE_WEIGHTS_MESSAGE)
    if code == BAD_LAMBDAS:
        raise ValueError(non_finite_lambdas_message(learning_rate))
    state.prev_reg = prev_reg
    state.steps = int(state.steps) + 1
    return True


def _update_with_numpy(weights: np.ndarray, state: RLNState, avg_reg: float,
                       learning_rate: float, norm: int) -> RLNState:
    new_weights, new_state = reference.update(
        weights, state, avg_reg=avg_reg, learning_rate=learning_rate, norm=norm)
    weights[...] = new_weights
    state.lambdas[...] = new_state.lambdas
    state.prev_weights[...] = new_state.prev_weights
    if state.prev_reg is None:
        state.prev_reg = new_state.prev_reg
    else:
        state.prev_reg[...] = new_state.prev_reg
    state.steps = new_state.steps
    return state


@functools.lru_cache(maxsize=None)
def _numba_kernel() -> Optional[ModuleType]:
    """Import the numba kernel module once; None (with one warning) if impossible."""
    if os.environ.get("RLN_DISABLE_NUMBA", "") not in ("", "0"):
        return None
    try:
        from rln_core import _numba_kernel
    except ImportError as error:
        warnings.warn(
            f"numba is not available ({error}); RLN uses its NumPy implementation, "
            "which is correct but several times slower. `pip install numba` to speed it up.",
            NumbaUnavailableWarning, stacklevel=3)
        return None
    return _numba_kernel


def numba_available() -> bool:
    """Whether impl="auto" uses the numba kernel (imports numba on first call)."""
    return _numba_kernel() is not None
