"""The RLN update written once over an array namespace: torch, JAX, keras.ops, NumPy, ...

`step` is the pure math of one update (docs/RLN_SPEC.md steps 1-5) in the
functions every array library shares: `xp.abs`, `xp.exp`, `xp.where`,
`xp.mean`, ... It never raises on values and never branches on them, so it
runs eagerly or inside a compiled step (`jax.jit`, a Keras train step): it
returns the new arrays and whether they are finite, and the caller decides.
`update` is the eager, checked form with the signature of
`rln_core.reference.update`, for any array library `array-api-compat` knows.

The namespace is detected (`array_api_compat.array_namespace`) or passed as
`xp`: anything with the few functions used here, e.g. `keras.ops` through
`rln_keras`'s shim. The math runs in `compute_dtype` (float64 by default,
as the spec says; float32 where a device or a configuration has no float64:
MPS, JAX without `jax_enable_x64`). The clip is decided with `CLIP_MARGIN`
(`CLIP_MARGIN_F32` in float32 arithmetic, as the numba kernel's float32 mode).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Optional, Tuple

import numpy as np

from rln_core.checks import (CLIP_MARGIN, CLIP_MARGIN_F32, D_SCALE, LOG_HALF,
                             NON_FINITE_WEIGHTS_MESSAGE, check_float32_inputs,
                             check_update_inputs, float32_arithmetic, namespace,
                             non_finite_lambdas_message)
from rln_core.hyperparameters import DEFAULTS, Hyperparameters
from rln_core.state import RLNState


class Step(NamedTuple):
    """What one update computes (arrays of the input's library).

    Attributes:
        weights: W after the update, shape and dtype of W.
        lambdas: the new lambdas, the state's dtype.
        reg: the regularization step just applied (the next prev_reg), the state's dtype.
        weights_finite: 0-d bool, W had no NaN/inf.
        lambdas_finite: 0-d bool, the lambdas after the lambda step are finite.
        ok: 0-d bool, both: the update may be applied.
    """

    weights: Any
    lambdas: Any
    reg: Any
    weights_finite: Any
    lambdas_finite: Any
    ok: Any


def step(weights: Any, lambdas: Any, prev_weights: Any, prev_reg: Any, steps: Any,
         hyperparameters: Hyperparameters, *, delta: Optional[Any] = None,
         xp: Optional[Any] = None, compute_dtype: Optional[Any] = None,
         mean_dtype: Optional[Any] = None) -> Step:
    """One RLN update as a pure function of arrays; nothing is checked or raised.

    Args:
        weights: W after the optimizer step, any shape, float32/float64.
        lambdas, prev_weights, prev_reg: the state's arrays (shape of W);
            prev_weights is not read when `delta` is given (pass None then).
        steps: updates applied so far: an int, or a 0-d integer array under jit;
            0 means no lambda step (prev_reg is then not used).
        hyperparameters: Theta, nu and the norm.
        delta: the weight change to learn from (shape of W), or None for
            W - prev_weights.
        xp: the array namespace; detected from `weights` when None.
        compute_dtype: the dtype of the arithmetic, xp's own: xp.float64 (or None) or
            xp.float32 (float32 weights and state). Not checked here (a traced step
            cannot raise): `update` checks it, and names it (np.float32, "float32")
            as xp's.
        mean_dtype: the dtype the mean of step 3 is summed in; compute_dtype when
            None. With float32 arithmetic pass xp.float64 where the library has
            it (the spec's float32 mode sums the mean in float64, as the numba
            kernel does; XLA's float32 sums drift by ~1e-6 on 1e5 elements).

    Returns:
        A `Step`; its arrays are meaningful only where `ok` is true.
    """
    xp = namespace(weights) if xp is None else xp
    dtype = xp.float64 if compute_dtype is None else compute_dtype
    avg_reg, learning_rate = hyperparameters.avg_reg, hyperparameters.learning_rate
    w = xp.astype(weights, dtype)
    lam = xp.astype(lambdas, dtype)

    # Steps 1-3: the lambda step and the translation back to mean Theta; on the
    # first update (steps == 0) a select keeps the lambdas as they are.
    change = w - xp.astype(prev_weights, dtype) if delta is None else xp.astype(delta, dtype)
    lambda_step = learning_rate * change * xp.astype(prev_reg, dtype)
    stepped = lam - lambda_step
    if mean_dtype is None:
        mean = xp.mean(stepped)
    else:
        # the mean of terms computed in mean_dtype from the inputs, as the numba kernel's
        # float32 mode sums them: lambdas stepped in float32 would carry their rounding (up
        # to an ulp of the lambda step each) into every lambda through the translation
        def wide(x: Any) -> Any:
            return xp.astype(x, mean_dtype)

        wide_change = wide(weights) - wide(prev_weights) if delta is None else wide(delta)
        terms = wide(lambdas) - learning_rate * wide_change * wide(prev_reg)
        mean = xp.astype(xp.mean(terms), dtype)
    stepped = stepped + (avg_reg - mean)
    first = steps == 0
    lam_in = lam
    lam = _select(xp, first, lam, stepped)
    finite_w = xp.isfinite(D_SCALE[hyperparameters.norm] * w)
    finite_lam = xp.isfinite(xp.astype(lam, lambdas.dtype))  # in the state's dtype
    weights_finite = xp.all(finite_w)
    lambdas_finite = xp.all(finite_lam)
    # `ok` reduced from both masks at once: under jit, where only `ok` is read (rln_jax,
    # RLNOptimizer), the two flags above are dead code and one reduction remains
    ok = xp.all(xp.logical_and(finite_w, finite_lam))

    # Steps 4-5: clip at log|W / D| (no cap where W == 0; CLIP_MARGIN, see
    # rln_core.checks), regularize; a clipped weight lands on exactly 0. Where
    # W == 0 the step is 0 whatever the lambda (D == 0), so the exp is taken of
    # min(lambda, 0) there: no overflow.
    nonzero = w != 0
    abs_w = xp.abs(w)
    zeros = xp.zeros_like(w)
    if hyperparameters.norm == 1:
        direction = xp.sign(w)
        limit = abs_w
        cap = xp.log(xp.where(nonzero, abs_w, 1.0))
    else:
        direction = 2.0 * w
        limit = zeros + 0.5
        cap = xp.where(nonzero, zeros + LOG_HALF, zeros)
    if dtype == xp.float32:
        # the float32 margin, relative to max(1, |cap|, |lambda in|, |lambda step|)
        step_size = _select(xp, first, zeros, xp.abs(lambda_step))
        scale = _maximum(xp, _maximum(xp, xp.abs(cap), xp.abs(lam_in)),
                         _maximum(xp, step_size, zeros + 1.0))
        margin = CLIP_MARGIN_F32 * scale
    else:
        margin = CLIP_MARGIN * (1.0 + xp.abs(cap))
    clipped = xp.logical_and(nonzero, lam >= cap - margin)
    # The step's size exp(lambda), +inf where clipped: min(size, limit) is then the
    # limit, so the weight lands on exactly 0. Elsewhere, wherever W is finite, the size
    # is finite (a lambda below its cap <= log(largest float); where W == 0 the exp of a
    # number <= 0), so `size == inf` is the clip decision read back (where W is not
    # finite `ok` is false and the outputs are not used). XLA keeps the exp's result in
    # memory and the three outputs read it instead of each recomputing the clip decision
    # from its inputs (W, lambdas, prev_reg, delta): rln_jax's update of the tutorial's
    # kernel measured about 25% faster in float32.
    size = xp.exp(xp.where(clipped, math.inf, xp.where(nonzero, lam, xp.minimum(lam, zeros))))
    lam = xp.where(size == math.inf, cap, lam)
    reg = direction * xp.minimum(size, limit)
    return Step(weights=xp.astype(w - reg, weights.dtype), lambdas=xp.astype(lam, lambdas.dtype),
                reg=xp.astype(reg, lambdas.dtype), weights_finite=weights_finite,
                lambdas_finite=lambdas_finite, ok=ok)


def _arithmetic(xp: Any, compute_dtype: Any) -> Optional[Any]:
    """`compute_dtype` as `step` takes it: None for float64, xp.float32 for float32.

    Raises:
        TypeError: another dtype, or not a dtype (`rln_core.checks.float32_arithmetic`).
    """
    if compute_dtype is None or compute_dtype == xp.float64:
        return None
    if compute_dtype == xp.float32 or float32_arithmetic(compute_dtype):
        return xp.float32
    return None  # float64 by another name ("float64", np.float64)


def _select(xp: Any, condition: Any, if_true: Any, if_false: Any) -> Any:
    """`if_true` where `condition` (a Python bool or a 0-d bool array), else `if_false`."""
    if isinstance(condition, bool):
        return if_true if condition else if_false
    return xp.where(condition, if_true, if_false)


def _maximum(xp: Any, x1: Any, x2: Any) -> Any:
    """Elementwise maximum by `where` (the few functions `step` asks of a namespace)."""
    return xp.where(x2 > x1, x2, x1)


def update(weights: Any, state: RLNState, *, avg_reg: float = DEFAULTS.avg_reg,
           learning_rate: float = DEFAULTS.learning_rate, norm: int = DEFAULTS.norm,
           delta: Optional[Any] = None, compute_dtype: Optional[Any] = None,
           mean_dtype: Optional[Any] = None
           ) -> Tuple[Any, RLNState]:
    """One checked RLN update without side effects, for arrays of any library.

    Same arguments, checks and errors as `rln_core.reference.update`, with W,
    the state and delta as arrays of one library on one device (the checks
    read the finiteness flags, one host sync). `compute_dtype`: None or float64
    (the spec's arithmetic), or float32 (float32 weights and state only), as
    NumPy's (np.float32, "float32") or the library's (torch.float32) dtype.
    `mean_dtype` as in `step` (the spec's float32 mode sums the mean in float64:
    pass the library's float64 where it has one).

    Raises:
        TypeError: as `rln_core.reference.update`; a compute_dtype other than
            float64/float32, or float32 with float64 weights or state.
        ValueError: as `rln_core.reference.update`.

    Returns:
        (new_weights, new_state): new arrays of W's library, none sharing memory
        (new_state.prev_weights is equal to new_weights, not the same array).
    """
    hyperparameters = Hyperparameters(avg_reg, learning_rate, norm)
    check_update_inputs(weights, state, delta, in_place=False)
    xp = namespace(weights)
    arithmetic = _arithmetic(xp, compute_dtype)
    if arithmetic is not None:
        check_float32_inputs(weights, state)
    with np.errstate(over="ignore", invalid="ignore"):  # NumPy arrays: checked just below
        result = step(weights, state.lambdas, None if delta is not None else state.prev_weights,
                      state.prev_reg, int(state.steps), hyperparameters, delta=delta, xp=xp,
                      compute_dtype=arithmetic, mean_dtype=mean_dtype)
    if not bool(result.weights_finite):
        raise ValueError(NON_FINITE_WEIGHTS_MESSAGE)
    if not bool(result.lambdas_finite):
        raise ValueError(non_finite_lambdas_message(learning_rate))
    # prev_weights its own copy: a caller that then steps the weights in place (NumPy,
    # torch) must not move prev_weights with them (the next weight change would read 0)
    prev_weights = xp.asarray(result.weights, copy=True)
    return result.weights, RLNState(lambdas=result.lambdas, prev_weights=prev_weights,
                                    prev_reg=result.reg, steps=int(state.steps) + 1)
