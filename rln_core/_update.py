"""`rln_core.update`: one RLN update, in place on NumPy arrays, by the resolved implementation."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from rln_core import array_api, implementations, reference
from rln_core._numba_kernel_codes import BAD_WEIGHTS, LAMBDAS_UNSURE
from rln_core.checks import (NON_FINITE_WEIGHTS_MESSAGE, check_delta, check_float32_inputs,
                             check_update_inputs, float32_arithmetic, one_update_at_a_time)
from rln_core.hyperparameters import DEFAULTS, Hyperparameters
from rln_core.state import RLNState, check_steps, holds, state_arrays


def update(weights: np.ndarray, state: RLNState, *, avg_reg: float = DEFAULTS.avg_reg,
           learning_rate: float = DEFAULTS.learning_rate, norm: int = DEFAULTS.norm,
           impl: str = "auto", delta: Optional[np.ndarray] = None,
           compute_dtype: Optional[Any] = None) -> RLNState:
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
        compute_dtype: the dtype of the arithmetic. None (or float64): float64,
            as the spec says, within the kit's tolerances. np.float32 (float32
            weights and a float32 state only): float32 arithmetic, faster, within
            a looser per-update tolerance (lambdas 3e-6 of max(1, |lambda|,
            |lambda in|, |lambda step|), `rln_core.checks.F32_LAMBDA_RTOL`);
            every weight the reference sets to exactly 0 is exactly 0. "numpy"
            and "array_api" then run `rln_core.array_api.update(...,
            compute_dtype=np.float32, mean_dtype=np.float64)` (the mean summed in
            float64, as the spec's float32 mode says).

    Returns:
        `state` itself, for chaining.

    Raises:
        ValueError, TypeError: as `rln_core.reference.update`; also (TypeError) a
            compute_dtype other than None/float64/float32, or float32 with
            float64 weights or state (before anything is written).
        ImportError: impl="numba" where numba cannot be imported (or
            RLN_DISABLE_NUMBA is set).
    """
    hyperparameters = Hyperparameters(avg_reg, learning_rate, norm)
    return PreparedUpdate(weights, state, impl=impl, compute_dtype=compute_dtype)(
        hyperparameters, delta)


class PreparedUpdate:
    """`rln_core.update` of one tensor, its weights and state checked once: call it after
    every optimizer step.

        prepared = rln_core.PreparedUpdate(W, state)
        hp = rln_core.Hyperparameters(avg_reg=-10.0, learning_rate=1e6, norm=1)
        for ...:
            optimizer_step(W)
            prepared(hp)          # rln_core.update(W, state, **hp.asdict())

    Construction checks W and the state as `rln_core.update` does and resolves the
    implementation; each call checks steps, the state again when it holds other arrays
    than when last checked (a loaded checkpoint), and a given `delta`
    (`rln_core.checks.check_delta`). Between
    calls W and the state's arrays must not be reshaped, retyped or made read-only in
    place (that is not re-checked): make a new PreparedUpdate after such a change.

    Args:
        weights: W, a writable float32/float64 ndarray (as `rln_core.update`).
        state: its `RLNState`, updated in place.
        impl, compute_dtype: as `rln_core.update`.

    Raises:
        ValueError, TypeError, ImportError: as `rln_core.update` (before anything is
            written).
    """

    def __init__(self, weights: np.ndarray, state: RLNState, *, impl: str = "auto",
                 compute_dtype: Optional[Any] = None):
        if not isinstance(weights, np.ndarray):
            raise TypeError(f"rln_core.update updates NumPy arrays in place, got "
                            f"{type(weights).__name__}; use an adapter (rln_torch, rln_jax, "
                            "rln_keras) or the pure rln_core.array_api.update")
        self.compute32 = float32_arithmetic(compute_dtype)
        self.compute_dtype = compute_dtype
        self.impl = impl
        self.resolved = implementations.resolve(impl, weights)
        self.weights = weights
        self.state = state
        self._checked: tuple = ()
        self._views: Optional[list] = None  # the numba kernel's views (None: cannot walk)
        self._check(None)

    def _check(self, delta: Optional[np.ndarray]) -> None:
        """Check everything (as `rln_core.update`); the views again for other state arrays."""
        weights, state = self.weights, self.state
        check_update_inputs(weights, state, delta, in_place=True)
        if self.compute32:
            check_float32_inputs(weights, state)
        if not holds(state, self._checked):
            self._checked = state_arrays(state)
            if self.resolved == "numba":
                self._views = implementations.numba_kernel().views_of(weights, *self._checked,
                                                                       None)

    def __call__(self, hyperparameters: Hyperparameters,
                 delta: Optional[np.ndarray] = None) -> RLNState:
        """One RLN update (`rln_core.update`), in place; returns the state.

        Args:
            hyperparameters: RLN's (a `Hyperparameters`).
            delta: the weight change to learn from, or None (W - prev_weights).
        """
        Hyperparameters.check(hyperparameters)
        state = self.state
        if not holds(state, self._checked):
            self._check(delta)
        else:
            check_steps(state.steps)
            if delta is not None:
                check_delta(self.weights, state, delta, in_place=True)
        weights, impl, compute32 = self.weights, self.impl, self.compute32
        with one_update_at_a_time(state):
            done = self.resolved == "numba" and self._update_with_numba(hyperparameters, delta)
            if done is True:
                return state
            if impl == "numba" and done is None:
                arrays = (weights, state.lambdas, state.prev_weights, state.prev_reg, delta)
                swapped = [a.dtype.str for a in arrays if a is not None and not a.dtype.isnative]
                if swapped:
                    raise ValueError(f"impl='numba' reads arrays in the machine's byte order, "
                                     f"got {swapped[0]}; convert them (a.astype(a.dtype."
                                     "newbyteorder('='))) or use impl='auto'")
                raise ValueError(
                    f"impl='numba' cannot update weights of shape {weights.shape} and strides "
                    f"{weights.strides} in place; pass a contiguous array or use impl='auto'")
            if compute32:
                new_weights, new_state = array_api.update(
                    weights, state, delta=delta, compute_dtype=np.float32,
                    mean_dtype=np.float64, **hyperparameters.asdict())
            else:
                pure = array_api.update if self.resolved == "array_api" else reference.update
                new_weights, new_state = pure(weights, state, delta=delta,
                                              **hyperparameters.asdict())
            weights[...] = new_weights
            for name in ("lambdas", "prev_weights", "prev_reg"):
                getattr(state, name)[...] = getattr(new_state, name)
            state.steps = new_state.steps
        return state

    def _update_with_numba(self, hyperparameters: Hyperparameters,
                           delta: Optional[np.ndarray]) -> Optional[bool]:
        """Run the numba kernel: True (done), None (a layout it cannot walk) or False (its
        bound on the lambdas tripped: nothing written, the exact NumPy path decides, so
        numba refuses exactly what the reference refuses)."""
        kernel, state = implementations.numba_kernel(), self.state
        views = self._views if delta is None else kernel.views_of(
            self.weights, state.lambdas, state.prev_weights, state.prev_reg, delta)
        if views is None:
            return None
        code = kernel.update_views(views, delta is not None, int(state.steps) == 0,
                                   hyperparameters, self.compute32)
        if code == BAD_WEIGHTS:
            raise ValueError(NON_FINITE_WEIGHTS_MESSAGE)
        if code == LAMBDAS_UNSURE:
            return False
        state.steps = int(state.steps) + 1
        return True

