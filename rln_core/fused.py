"""A fused optimizer + RLN step on NumPy arrays: the optimizer's step and the RLN update
in one numba kernel (two passes over memory), as "optimizer step, then `rln_core.update`".

    rln_core.fused.rmsprop_step(W, grad, state, square_avg=sq, lr=1e-3, **hp.asdict())

The optimizer math is torch.optim's single-tensor CPU step, op by op in W's dtype
(`rmsprop_step`, `adam_step` for Adam and AdamW, `sgd_step`), on the optimizer
state arrays handed in (torch's keys, updated in place). The RLN update is then
exactly `rln_core.update`'s after a separate optimizer step (the weight change
inferred as W - prev_weights, the same kernel), without the optimizer's extra
passes over memory nor the update's separate read-only pass. Against torch's own
step: the optimizer's results within a few ulp (torch's CPU sqrt is not correctly
rounded, so RMSprop and Adam differ in the last bit of some steps; SGD matches bit
for bit where torch's loops use FMA, as its AVX2/AVX512 builds do); the RLN state
then within the kit's tolerance plus nu * (that difference) * |prev_reg|.

Needs numba (`rln_core.implementations.numba_available()`) and arrays of one
dense layout (C- or F-contiguous, or any permutation of a contiguous block).

Errors: every input is checked before anything is written (ValueError /
TypeError naming it). A refused RLN update (non-finite weights after the
optimizer's step, or lambdas that would overflow) raises the ValueError of
`rln_core.update` after the optimizer's step has been applied (weights and
optimizer state as the optimizer alone leaves them), with the RLN state untouched:
what "optimizer.step() then RLN.step()" leaves.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import numpy as np

from rln_core import implementations
from rln_core._numba_kernel_codes import BAD_WEIGHTS, LAMBDAS_UNSURE, OK
from rln_core._update import _check_float32_compute, update
from rln_core.checks import (NON_FINITE_WEIGHTS_MESSAGE, check_update_inputs,
                             float32_arithmetic, one_update_at_a_time)
from rln_core.hyperparameters import DEFAULTS, Hyperparameters
from rln_core.state import RLNState

OPTIMIZERS = ("rmsprop", "adam", "sgd")
_N_NUMBERS = 10  # the numbers of every optimizer's element function (the most: Adam's)


def rmsprop_step(weights: np.ndarray, grad: np.ndarray, state: RLNState, *,
                 square_avg: np.ndarray, momentum_buffer: Optional[np.ndarray] = None,
                 grad_avg: Optional[np.ndarray] = None, lr: float, alpha: float = 0.99,
                 eps: float = 1e-8, weight_decay: float = 0.0, momentum: float = 0.0,
                 centered: bool = False, maximize: bool = False,
                 avg_reg: float = DEFAULTS.avg_reg,
                 learning_rate: float = DEFAULTS.learning_rate, norm: int = DEFAULTS.norm,
                 compute_dtype: Optional[Any] = None, regularize: bool = True) -> RLNState:
    """torch.optim.RMSprop's step of one tensor, then the RLN update, in place.

    Args:
        weights: W before the step, a writable float32/float64 array (any shape).
        grad: its gradient (W's shape and dtype), read only.
        state: W's `RLNState`, updated in place (skipped when `regularize` is False).
        square_avg: torch's state["square_avg"] (W's shape and dtype), updated.
        momentum_buffer: state["momentum_buffer"], required when momentum > 0.
        grad_avg: state["grad_avg"], required when centered.
        lr, alpha, eps, weight_decay, momentum, centered, maximize: the param group's.
        avg_reg, learning_rate, norm: RLN's hyperparameters (`rln_core.update`).
        compute_dtype: None or np.float32, as in `rln_core.update`.
        regularize: False applies the optimizer's step alone (the RLN state untouched).

    Returns:
        `state`.
    """
    dtype = _weights_dtype(weights)
    with_momentum = momentum > 0
    one_minus_alpha = dtype(1 - alpha)
    lerp_rest, lerp_small = _lerp_terms(one_minus_alpha)
    h = _numbers(dtype, (-lr, alpha, one_minus_alpha, lerp_rest, eps, weight_decay, momentum,
                         _sign(maximize)), lerp_small)
    slots = (("square_avg", square_avg, True), ("momentum_buffer", momentum_buffer, with_momentum),
             ("grad_avg", grad_avg, bool(centered)))
    return _step("rmsprop", (bool(centered), with_momentum), h, weights, grad, slots, state,
                 Hyperparameters(avg_reg, learning_rate, norm), compute_dtype, regularize)


def adam_step(weights: np.ndarray, grad: np.ndarray, state: RLNState, *,
              exp_avg: np.ndarray, exp_avg_sq: np.ndarray,
              max_exp_avg_sq: Optional[np.ndarray] = None, step: int, lr: float,
              betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
              weight_decay: float = 0.0, decoupled_weight_decay: bool = False,
              amsgrad: bool = False, maximize: bool = False,
              avg_reg: float = DEFAULTS.avg_reg, learning_rate: float = DEFAULTS.learning_rate,
              norm: int = DEFAULTS.norm, compute_dtype: Optional[Any] = None,
              regularize: bool = True) -> RLNState:
    """torch.optim.Adam's (AdamW's: decoupled_weight_decay) step of one tensor, then the
    RLN update, in place.

    Args:
        exp_avg, exp_avg_sq: torch's state entries (W's shape and dtype), updated.
        max_exp_avg_sq: state["max_exp_avg_sq"], required with amsgrad.
        step: the step count after this step (torch's state["step"] once incremented, >= 1).
        lr, betas, eps, weight_decay, decoupled_weight_decay, amsgrad, maximize: the
            param group's.
        Others: as `rmsprop_step`.

    Returns:
        `state`.
    """
    dtype = _weights_dtype(weights)
    beta1, beta2 = betas
    one_minus_beta1 = dtype(1 - beta1)
    bias_correction1 = 1 - beta1 ** step
    bias_correction2 = 1 - beta2 ** step
    decoupled = bool(decoupled_weight_decay) and weight_decay != 0
    lerp_rest, lerp_small = _lerp_terms(one_minus_beta1)
    h = _numbers(dtype, (-(lr / bias_correction1), one_minus_beta1, lerp_rest, beta2,
                         1 - beta2, bias_correction2 ** 0.5, eps,
                         0.0 if decoupled_weight_decay else weight_decay,
                         1 - lr * weight_decay if decoupled else 1.0, _sign(maximize)),
                 lerp_small)
    slots = (("exp_avg", exp_avg, True), ("exp_avg_sq", exp_avg_sq, True),
             ("max_exp_avg_sq", max_exp_avg_sq, bool(amsgrad)))
    return _step("adam", (bool(amsgrad), False), h, weights, grad, slots, state,
                 Hyperparameters(avg_reg, learning_rate, norm), compute_dtype, regularize)


def sgd_step(weights: np.ndarray, grad: np.ndarray, state: RLNState, *,
             momentum_buffer: Optional[np.ndarray] = None, first_momentum: bool = False,
             lr: float, momentum: float = 0.0, dampening: float = 0.0, nesterov: bool = False,
             weight_decay: float = 0.0, maximize: bool = False,
             avg_reg: float = DEFAULTS.avg_reg, learning_rate: float = DEFAULTS.learning_rate,
             norm: int = DEFAULTS.norm, compute_dtype: Optional[Any] = None,
             regularize: bool = True) -> RLNState:
    """torch.optim.SGD's step of one tensor, then the RLN update, in place.

    Args:
        momentum_buffer: state["momentum_buffer"] (W's shape and dtype), required when
            momentum != 0; with `first_momentum` it does not exist in torch yet (its
            contents are ignored and it becomes the gradient, as torch's clone).
        lr, momentum, dampening, nesterov, weight_decay, maximize: the param group's.
        Others: as `rmsprop_step`.

    Returns:
        `state`.
    """
    dtype = _weights_dtype(weights)
    with_momentum = momentum != 0
    h = _numbers(dtype, (-lr, weight_decay, momentum, 1 - dampening, _sign(maximize)),
                 bool(first_momentum))
    slots = (("momentum_buffer", momentum_buffer, with_momentum),)
    return _step("sgd", (with_momentum, bool(nesterov) and with_momentum), h, weights, grad,
                 slots, state, Hyperparameters(avg_reg, learning_rate, norm), compute_dtype,
                 regularize)


def _weights_dtype(weights: Any) -> type:
    """The scalar type of W's dtype (the optimizer's numbers are rounded to it)."""
    if not isinstance(weights, np.ndarray):
        raise TypeError(f"a fused step updates NumPy arrays in place, got "
                        f"{type(weights).__name__}")
    if weights.dtype not in (np.float32, np.float64):
        raise TypeError(f"weights must be float32 or float64, got dtype {weights.dtype}")
    return weights.dtype.type


def _lerp_terms(weight: np.floating) -> Tuple[np.floating, bool]:
    """(1 - weight, |weight| < 0.5) in weight's type: what torch's lerp rounds with."""
    return type(weight)(1) - weight, bool(abs(weight) < 0.5)


def _sign(maximize: bool) -> float:
    return -1.0 if maximize else 1.0


def _numbers(dtype: type, values: Sequence[float], flag: bool) -> tuple:
    """The kernel's h: _N_NUMBERS values in W's dtype (padded with zeros), then the flag:
    one type for every optimizer."""
    padded = list(values) + [0.0] * (_N_NUMBERS - len(values))
    return (*(dtype(value) for value in padded), bool(flag))


def _step(optimizer: str, variant: Tuple[bool, ...], h: tuple, weights: np.ndarray,
          grad: np.ndarray, slots: Sequence[tuple], state: RLNState,
          hyperparameters: Hyperparameters,
          compute_dtype: Optional[Any], regularize: bool) -> RLNState:
    """Check everything, then run the fused kernel; raise the update's errors."""
    compute32 = float32_arithmetic(compute_dtype)
    if implementations.numba_kernel() is None:
        raise ImportError("a fused optimizer + RLN step needs numba (pip install numba)")
    check_update_inputs(weights, state, in_place=True)
    if compute32:
        _check_float32_compute(weights, state)
    arrays = _check_optimizer_arrays(weights, grad, slots, state)
    from rln_core import _numba_fused

    with one_update_at_a_time(state):
        code = _numba_fused.step_in_place(
            optimizer, variant, h, arrays, int(state.steps) == 0,
            hyperparameters if regularize else None, compute32)
        if code is None:
            raise ValueError(
                f"a fused step needs the weights, gradient, optimizer state and RLN state "
                f"in one dense memory layout; got weights of shape {weights.shape} and "
                f"strides {weights.strides}, gradient strides {grad.strides}")
        if code == BAD_WEIGHTS:
            raise ValueError(NON_FINITE_WEIGHTS_MESSAGE)
        if code == OK and regularize:
            state.steps = int(state.steps) + 1
    if code == LAMBDAS_UNSURE:
        # the optimizer's step is applied and the RLN state untouched (prev_weights is W
        # before it): the exact NumPy update decides, as after an unfused step
        update(weights, state, impl="numpy", compute_dtype=compute_dtype,
               **hyperparameters.asdict())
    return state


def _check_optimizer_arrays(weights: np.ndarray, grad: Any, slots: Sequence[tuple],
                            state: RLNState) -> Sequence[np.ndarray]:
    """The kernel's arrays: W, grad, three slots (unused ones: the grad), the RLN state.

    Args:
        slots: (name, array or None, whether the variant uses it), in the kernel's order.

    Raises:
        TypeError, ValueError: naming the array: a used slot missing, not a NumPy array
            of W's shape and dtype, read-only, or sharing memory with another array of
            the step.
    """
    for name, array, used in slots:
        if used and array is None:
            raise ValueError(f"{name} is required by this optimizer's settings, got None")
    named = {"grad": grad, **{name: array for name, array, used in slots if used}}
    for name, array in named.items():
        if not isinstance(array, np.ndarray):
            raise TypeError(f"{name} must be a NumPy array, got {type(array).__name__}")
        if array.shape != weights.shape or array.dtype != weights.dtype:
            raise ValueError(f"{name} has shape {array.shape} and dtype {array.dtype}; it must "
                             f"have the weights' shape {weights.shape} and dtype {weights.dtype}")
        if name != "grad" and not array.flags.writeable:
            raise ValueError(f"{name} is read-only; the optimizer's step updates it in place")
    written = [weights, state.lambdas, state.prev_weights, state.prev_reg,
               *(array for name, array in named.items() if name != "grad")]
    for name, array in named.items():
        if any(other is not array and np.may_share_memory(array, other) for other in written):
            raise ValueError(f"{name} shares memory with another array of the fused step; "
                             "each must be its own")
    padded = [array if used else grad for _, array, used in slots]
    padded += [grad] * (3 - len(padded))
    return [weights, grad, *padded, state.lambdas, state.prev_weights, state.prev_reg]
