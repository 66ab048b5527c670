"""Argument checks shared by every implementation; all raise before any write."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from rln_core._state import RLNState

WEIGHT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_avg_reg(avg_reg: float) -> None:
    """Theta must be a finite real number."""
    if not _is_real(avg_reg) or not math.isfinite(avg_reg):
        raise ValueError(f"Invalid avg_reg (Theta): {avg_reg!r}; expected a finite number")


def check_hyperparameters(avg_reg: float, learning_rate: float, norm: int) -> None:
    """Validate Theta, nu and the norm; written so NaN fails too."""
    check_avg_reg(avg_reg)
    if not _is_real(learning_rate) or not 0.0 <= learning_rate < math.inf:
        raise ValueError(
            f"Invalid learning_rate (nu): {learning_rate!r}; expected a finite number >= 0")
    if isinstance(norm, bool) or norm not in (1, 2):
        raise ValueError(f"Invalid norm: {norm!r}; expected 1 or 2")


def check_weights(weights: np.ndarray, *, writable: bool, name: str = "weights") -> None:
    """A float32/float64 ndarray (writable when it is to be updated in place)."""
    if not isinstance(weights, np.ndarray):
        raise TypeError(f"{name} must be a numpy ndarray, got {type(weights).__name__}")
    if weights.dtype not in WEIGHT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got dtype {weights.dtype}")
    if weights.size == 0:
        raise ValueError(f"{name} is empty (shape {weights.shape})")
    if writable and not weights.flags.writeable:
        raise ValueError(f"{name} is read-only; RLN updates it in place")


def check_update_inputs(weights: np.ndarray, state: "RLNState", *, in_place: bool) -> None:
    """Check W against its state: shape, dtype, writability (in place only)."""
    from rln_core._state import check_state_arrays

    check_weights(weights, writable=in_place)
    check_state_arrays(state)
    if weights.shape != state.lambdas.shape:
        raise ValueError(
            f"weights have shape {weights.shape} but the RLN state was made for "
            f"shape {state.lambdas.shape}")
    if weights.dtype != state.prev_weights.dtype:
        raise TypeError(
            f"weights have dtype {weights.dtype} but the RLN state was made for "
            f"{state.prev_weights.dtype}")
    if in_place:
        arrays = [state.lambdas, state.prev_weights]
        if state.prev_reg is not None:
            arrays.append(state.prev_reg)
        for array in arrays:
            if not array.flags.writeable:
                raise ValueError("an RLN state array is read-only; it is updated in place")
            if np.may_share_memory(array, weights):
                raise ValueError("an RLN state array shares memory with the weights")


NON_FINITE_WEIGHTS_MESSAGE = "weights contain NaN or inf; RLN update refused"


def non_finite_lambdas_message(learning_rate: float) -> str:
    """The error every implementation raises when the lambdas would not be finite."""
    return (f"the RLN lambdas are non-finite after the lambda step (learning_rate "
            f"{learning_rate!r} too large, or a state holding NaN/inf?); weights and state "
            "left unchanged")


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
