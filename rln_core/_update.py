"""`rln_core.update`: one RLN update, in place on NumPy arrays, by the resolved implementation."""

from __future__ import annotations

from typing import Optional

import numpy as np

from rln_core import array_api, implementations, reference
from rln_core._numba_kernel_codes import BAD_LAMBDAS, BAD_WEIGHTS
from rln_core.checks import (NON_FINITE_WEIGHTS_MESSAGE, check_update_inputs,
                             non_finite_lambdas_message, one_update_at_a_time)
from rln_core.hyperparameters import DEFAULTS, Hyperparameters
from rln_core.state import RLNState


def update(weights: np.ndarray, state: RLNState, *, avg_reg: float = DEFAULTS.avg_reg,
           learning_rate: float = DEFAULTS.learning_rate, norm: int = DEFAULTS.norm,
           impl: str = "auto", delta: Optional[np.ndarray] = None) -> RLNState:
    """One RLN update, in place on `weights` and `state`.

    Same semantics and arguments as `rln_core.reference.update`; the weights
    and the state's arrays are overwritten and `state.steps` advances. On any
    error nothing is modified.

    Args:
        weights: W after the optimizer step, writable float32/float64 ndarray
            (any shape, C/F-contiguous or strided view).
        state: the state of W, updated in place.
        avg_reg: Theta (natural log). learning_rate: nu (>= 0). norm: 1 or 2.
        impl: "auto", "numba", "numpy" or "array_api" (`rln_core.implementations`).
        delta: the weight change the lambda step learns from (W's shape), or
            None for W - state.prev_weights. Read only.

    Returns:
        `state` itself, for chaining.
    """
    hyperparameters = Hyperparameters(avg_reg, learning_rate, norm)
    if not isinstance(weights, np.ndarray):
        raise TypeError(f"rln_core.update updates NumPy arrays in place, got "
                        f"{type(weights).__name__}; use an adapter (rln_torch, rln_jax, "
                        "rln_keras) or the pure rln_core.array_api.update")
    chosen = implementations.resolve(impl, weights)
    check_update_inputs(weights, state, delta, in_place=True)
    with one_update_at_a_time(state):
        if chosen == "numba" and _update_with_numba(weights, state, hyperparameters, delta):
            return state
        if impl == "numba":
            raise ValueError(
                f"impl='numba' cannot update weights of shape {weights.shape} and strides "
                f"{weights.strides} in place; pass a contiguous array or use impl='auto'")
        pure = array_api.update if chosen == "array_api" else reference.update
        new_weights, new_state = pure(weights, state, delta=delta, **hyperparameters.asdict())
        weights[...] = new_weights
        for name in ("lambdas", "prev_weights", "prev_reg"):
            getattr(state, name)[...] = getattr(new_state, name)
        state.steps = new_state.steps
    return state


def _update_with_numba(weights: np.ndarray, state: RLNState, hyperparameters: Hyperparameters,
                       delta: Optional[np.ndarray]) -> bool:
    """Run the numba kernel; False if the layout needs the NumPy path."""
    code = implementations.numba_kernel().update_in_place(
        weights, state.lambdas, state.prev_weights, state.prev_reg, delta,
        int(state.steps) == 0, hyperparameters)
    if code is None:
        return False
    if code == BAD_WEIGHTS:
        raise ValueError(NON_FINITE_WEIGHTS_MESSAGE)
    if code == BAD_LAMBDAS:
        raise ValueError(non_finite_lambdas_message(hyperparameters.learning_rate))
    state.steps = int(state.steps) + 1
    return True
