"""The NumPy reference of one RLN update: pure, readable, the oracle.

It follows `docs/RLN_SPEC.md` step by step, in float64, and never mutates its
inputs. Every other implementation (the numba kernel, the array-API function
on torch / JAX / keras.ops, a user's adapter via `rln_core.testing`) is checked
against this function.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from rln_core.checks import (D_SCALE, LOG_HALF, NON_FINITE_WEIGHTS_MESSAGE, check_update_inputs,
                             non_finite_lambdas_message)
from rln_core.hyperparameters import DEFAULTS, Hyperparameters
from rln_core.state import RLNState


def update(weights: np.ndarray, state: RLNState, *, avg_reg: float = DEFAULTS.avg_reg,
           learning_rate: float = DEFAULTS.learning_rate, norm: int = DEFAULTS.norm,
           delta: Optional[np.ndarray] = None) -> Tuple[np.ndarray, RLNState]:
    """One RLN update, after an optimizer step, without side effects.

    Args:
        weights: W after the optimizer step, any shape, float32 or float64.
        state: the state of W (from `rln_core.init` or a previous update).
        avg_reg: Theta, the mean the lambdas are translated back to (natural log).
        learning_rate: nu, the step size of the lambdas (>= 0).
        norm: 1 (L1) or 2 (L2).
        delta: the weight change the lambda step learns from (W's shape, float32
            or float64), e.g. a fused optimizer's step or -eta * grad; None: the
            inferred W - state.prev_weights (spec step 1).

    Returns:
        (new_weights, new_state): new arrays; new_weights has W's dtype and
        new_state.prev_weights is equal to it.

    Raises:
        ValueError, TypeError: invalid hyperparameters or inputs, non-finite
            weights, or an update that would make the lambdas non-finite.
    """
    Hyperparameters(avg_reg, learning_rate, norm)
    check_update_inputs(weights, state, delta, in_place=False)
    w = weights.astype(np.float64)
    with np.errstate(over="ignore"):
        if not np.isfinite(D_SCALE[norm] * w).all():
            raise ValueError(NON_FINITE_WEIGHTS_MESSAGE)

    # Steps 1-3: the lambda step and the translation back to mean Theta,
    # skipped on the first update (steps == 0; prev_reg is not read then).
    lambdas = state.lambdas.astype(np.float64)
    if state.steps > 0:
        change = w - state.prev_weights.astype(np.float64) if delta is None \
            else delta.astype(np.float64)
        with np.errstate(over="ignore", invalid="ignore"):  # checked just below
            lambdas = lambdas - learning_rate * change * state.prev_reg.astype(np.float64)
            lambdas = lambdas + (avg_reg - np.mean(lambdas))
    with np.errstate(over="ignore"):  # finite in the state's dtype, where they are stored
        if not np.isfinite(lambdas.astype(state.lambdas.dtype)).all():
            raise ValueError(non_finite_lambdas_message(learning_rate))

    # Steps 4-5: clip at log|W / D| (no cap where W == 0) and regularize. A
    # clipped weight takes the step |W / D| itself, so it lands on exactly 0.
    nonzero = w != 0
    abs_w = np.abs(w)
    if norm == 1:
        direction = np.sign(w)
        limit = abs_w
        with np.errstate(divide="ignore"):
            cap = np.where(nonzero, np.log(abs_w), np.inf)
    else:
        direction = 2.0 * w
        limit = np.full_like(w, 0.5)
        cap = np.where(nonzero, LOG_HALF, np.inf)
    clipped = lambdas >= cap
    lambdas = np.where(clipped, cap, lambdas)
    with np.errstate(over="ignore"):  # exp(huge lambda) only where W == 0, D == 0
        step = np.where(clipped, limit, np.minimum(np.exp(lambdas), limit))
    reg = np.asarray(direction * step)  # asarray: 0-d inputs give NumPy scalars
    new_weights = np.asarray(w - reg).astype(weights.dtype)

    state_dtype = state.lambdas.dtype
    new_state = RLNState(
        lambdas=np.asarray(lambdas).astype(state_dtype),
        prev_weights=new_weights.copy(),
        prev_reg=reg.astype(state_dtype),
        steps=int(state.steps) + 1,
    )
    return new_weights, new_state
