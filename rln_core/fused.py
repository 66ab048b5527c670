"""A fused optimizer + RLN step on NumPy arrays: the optimizer's step and the RLN update
in one numba kernel (two passes over memory), as "optimizer step, then `rln_core.update`".

    rln_core.fused.rmsprop_step(W, grad, state, square_avg=sq, lr=1e-3, **hp.asdict())
    step = rln_core.fused.FusedStep(W, state)      # checked once: one call per step
    step.rmsprop(grad, hp, square_avg=sq, lr=1e-3)

The optimizer math is torch.optim's single-tensor CPU step, op by op in W's dtype
(`rmsprop_step`, `adam_step` for Adam and AdamW, `sgd_step`), on the optimizer
state arrays handed in (torch's keys, updated in place). The RLN update is then
`rln_core.update`'s after a separate optimizer step (the weight change inferred as
W - prev_weights, the same arithmetic; the mean of the lambdas summed in another
order, so within the kit's tolerance, not bit for bit), without the optimizer's extra
passes over memory nor the update's separate read-only pass. Against torch's own
step: the optimizer's results within a few ulp (torch's CPU sqrt is not correctly
rounded, so RMSprop and Adam differ in the last bit of some steps; SGD matches bit
for bit where torch's loops use FMA, as its AVX2/AVX512 builds do); the RLN state
then within the kit's tolerance plus nu * (that difference) * |prev_reg|.

Needs numba (`rln_core.implementations.numba_available()`) and arrays of one
dense layout (C- or F-contiguous, or any permutation of a contiguous block).
Tensors of 2**19 elements or more run on the kernel's thread pool, as
`rln_core.update` does.

Errors: every input is checked before anything is written (ValueError /
TypeError naming it), the optimizer's settings as torch.optim checks them when it
is made (lr, eps, weight_decay, momentum, alpha >= 0; betas in [0, 1); Nesterov
momentum needs momentum > 0 and dampening 0) and finite, Adam's step an integer
>= 1 (`check_settings`, public for a caller that must check before it moves
anything). A refused RLN update (non-finite weights after the
optimizer's step, or lambdas that would overflow) raises the ValueError of
`rln_core.update` after the optimizer's step has been applied (weights and
optimizer state as the optimizer alone leaves them), with the RLN state untouched:
what "optimizer.step() then RLN.step()" leaves.
"""

from __future__ import annotations

import math
import operator
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from rln_core import implementations
from rln_core._layout import as_2d_views
from rln_core._numba_kernel_codes import BAD_WEIGHTS, LAMBDAS_UNSURE, OK
from rln_core._update import update
from rln_core.checks import (NON_FINITE_WEIGHTS_MESSAGE, check_float32_inputs,
                             check_update_inputs, float32_arithmetic, one_update_at_a_time)
from rln_core.hyperparameters import DEFAULTS, Hyperparameters
from rln_core.state import RLNState, check_steps, holds, state_arrays

__all__ = ["FusedStep", "OPTIMIZERS", "check_settings", "rmsprop_step", "adam_step", "sgd_step"]

OPTIMIZERS = ("rmsprop", "adam", "sgd")
_N_NUMBERS = 10  # the numbers of every optimizer's element function (the most: Adam's)


class FusedStep:
    """The fused steps of one tensor: W and its RLN state checked once, then one call per
    training step (what `rmsprop_step`, `adam_step` and `sgd_step` do in one go).

        fused = rln_core.fused.FusedStep(W, state)
        hp = rln_core.Hyperparameters(avg_reg=-10.0, learning_rate=1e6, norm=1)
        for grad in gradients:
            fused.rmsprop(grad, hp, square_avg=sq, lr=1e-3)

    Construction checks W and the state as `rln_core.update` does. Each call checks the
    gradient, the optimizer's arrays when they are other objects than at the last call,
    and the state again when it holds other arrays than when last checked (a loaded
    checkpoint). Between calls W and those arrays must not be reshaped, retyped or made
    read-only in place (that is not re-checked): make a new FusedStep after such a change.

    Args:
        weights: W, a writable float32/float64 NumPy array (any dense layout), stepped in
            place by every call.
        state: W's `RLNState`, updated in place.
        compute_dtype: None or np.float32, as in `rln_core.update`.

    Raises:
        ImportError: the numba kernel is not available (`implementations.numba_kernel`).
        TypeError, ValueError: W or the state, naming the problem.
    """

    def __init__(self, weights: np.ndarray, state: RLNState, compute_dtype: Optional[Any] = None):
        self._dtype = _weights_dtype(weights)
        self.compute32 = float32_arithmetic(compute_dtype)
        if implementations.numba_kernel() is None:
            raise ImportError("a fused optimizer + RLN step needs the numba kernel, but "
                              f"{implementations.NUMBA_UNAVAILABLE}")
        self.weights = weights
        self.state = state
        self.compute_dtype = compute_dtype
        self._checked_state: Tuple[np.ndarray, ...] = ()
        self._checked_slots: Tuple[Optional[np.ndarray], ...] = ()
        # the kernel's (1, n) views, made by `_check_slots`: W, the three optimizer slots
        # (None: unused), the state's three arrays
        self._weights_view: Optional[np.ndarray] = None
        self._slot_views: List[Optional[np.ndarray]] = []
        self._state_views: List[np.ndarray] = []
        self._written: List[np.ndarray] = []  # the arrays the step writes
        self._numbers_key: tuple = ()  # `_numbers`' last settings and what it made of them
        self._h: tuple = ()
        from rln_core import _numba_fused  # imports numba (checked just above)

        self._kernel = _numba_fused
        self._check_state()

    def rmsprop(self, grad: np.ndarray, hyperparameters: Hyperparameters, *,
                square_avg: np.ndarray, momentum_buffer: Optional[np.ndarray] = None,
                grad_avg: Optional[np.ndarray] = None, lr: float, alpha: float = 0.99,
                eps: float = 1e-8, weight_decay: float = 0.0, momentum: float = 0.0,
                centered: bool = False, maximize: bool = False,
                regularize: bool = True) -> RLNState:
        """torch.optim.RMSprop's step of W, then the RLN update, in place.

        Args:
            grad: W's gradient (W's shape, dtype and strides), read only.
            hyperparameters: RLN's.
            square_avg: torch's state["square_avg"] (W's shape and dtype), updated.
            momentum_buffer: state["momentum_buffer"], required when momentum > 0.
            grad_avg: state["grad_avg"], required when centered.
            lr, alpha, eps, weight_decay, momentum, centered, maximize: the param group's.
            regularize: False applies the optimizer's step alone (the RLN state untouched).

        Returns:
            the RLN state.
        """
        h = self._numbers(_rmsprop_numbers, lr, alpha, eps, weight_decay, momentum, maximize)
        with_momentum = momentum > 0
        slots = (("square_avg", square_avg, True),
                 ("momentum_buffer", momentum_buffer, with_momentum),
                 ("grad_avg", grad_avg, bool(centered)))
        return self._step("rmsprop", (bool(centered), with_momentum), h, grad, slots,
                          hyperparameters, regularize)

    def adam(self, grad: np.ndarray, hyperparameters: Hyperparameters, *,
             exp_avg: np.ndarray, exp_avg_sq: np.ndarray,
             max_exp_avg_sq: Optional[np.ndarray] = None, step: int, lr: float,
             betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
             weight_decay: float = 0.0, decoupled_weight_decay: bool = False,
             amsgrad: bool = False, maximize: bool = False, regularize: bool = True) -> RLNState:
        """torch.optim.Adam's (AdamW's: decoupled_weight_decay) step of W, then the RLN
        update, in place.

        Args:
            exp_avg, exp_avg_sq: torch's state entries (W's shape and dtype), updated.
            max_exp_avg_sq: state["max_exp_avg_sq"], required with amsgrad.
            step: the step count after this step (torch's state["step"] once incremented,
                >= 1).
            lr, betas, eps, weight_decay, decoupled_weight_decay, amsgrad, maximize: the
                param group's.
            Others: as `rmsprop`.

        Returns:
            the RLN state.
        """
        dtype = self._dtype
        beta1, beta2 = betas = _pair(betas)  # (an iterator read once)
        check_settings("adam", step=step, lr=lr, betas=betas, eps=eps,
                       weight_decay=weight_decay)
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
        return self._step("adam", (bool(amsgrad), False), h, grad, slots, hyperparameters,
                          regularize)

    def sgd(self, grad: np.ndarray, hyperparameters: Hyperparameters, *,
            momentum_buffer: Optional[np.ndarray] = None, first_momentum: bool = False,
            lr: float, momentum: float = 0.0, dampening: float = 0.0, nesterov: bool = False,
            weight_decay: float = 0.0, maximize: bool = False,
            regularize: bool = True) -> RLNState:
        """torch.optim.SGD's step of W, then the RLN update, in place.

        Args:
            momentum_buffer: state["momentum_buffer"] (W's shape and dtype), required when
                momentum != 0; with `first_momentum` it does not exist in torch yet (its
                contents are ignored and it becomes the gradient, as torch's clone).
            lr, momentum, dampening, nesterov, weight_decay, maximize: the param group's.
            Others: as `rmsprop`.

        Returns:
            the RLN state.
        """
        h = self._numbers(_sgd_numbers, lr, weight_decay, momentum, dampening, maximize,
                          bool(first_momentum), bool(nesterov))
        with_momentum = momentum != 0
        slots = (("momentum_buffer", momentum_buffer, with_momentum),)
        return self._step("sgd", (with_momentum, bool(nesterov) and with_momentum), h, grad,
                          slots, hyperparameters, regularize)

    def _numbers(self, make: Callable[..., tuple], *settings: Any) -> tuple:
        """make(W's scalar type, *settings): the kernel's numbers, made again only when
        the settings' values differ from the last call's (a scheduler changes lr; a 0-d
        array changed in place is a new value: the key holds floats)."""
        try:
            key: Optional[tuple] = (make, tuple(map(_real, settings)))
        except (TypeError, ValueError):
            key = None  # not numbers: `make` names the setting
        if key is None or key != self._numbers_key:
            self._h = make(self._dtype, *settings)
            self._numbers_key = key
        return self._h

    def _check_state(self) -> None:
        """Check W against the state (as `rln_core.update`); the slots are checked again."""
        weights, state = self.weights, self.state
        check_update_inputs(weights, state, in_place=True)
        if self.compute32:
            check_float32_inputs(weights, state)
        self._checked_state = state_arrays(state)
        self._checked_slots = ()

    def _check_slots(self, slots: Sequence[tuple]) -> None:
        """Check the optimizer's arrays and make the kernel's views of everything but the
        gradient."""
        for name, array, used in slots:
            if used and array is None:
                raise ValueError(f"{name} is required by this optimizer's settings, got None")
        used = {name: array for name, array, is_used in slots if is_used}
        written = [self.weights, *self._checked_state, *used.values()]
        _check_arrays(self.weights, used, written, writable=True, first_own=4)
        views = as_2d_views([self.weights, *used.values(), *self._checked_state])
        if views is None or views[0].shape[0] != 1:
            raise ValueError(
                f"a fused step needs the weights, optimizer state and RLN state in one dense "
                f"memory layout; got weights of shape {self.weights.shape} and strides "
                f"{self.weights.strides}")
        slot_views = iter(views[1:1 + len(used)])
        self._slot_views = [next(slot_views) if is_used else None for _, _, is_used in slots]
        self._slot_views += [None] * (3 - len(slots))
        self._state_views = views[1 + len(used):]
        self._weights_view = views[0]
        self._written = written
        self._checked_slots = _slot_key(slots)

    def _grad_view(self, grad: np.ndarray) -> np.ndarray:
        """The gradient checked (W's shape, dtype and memory order, its own memory) and
        viewed as the kernel walks W."""
        weights = self.weights
        _check_arrays(weights, {"grad": grad}, self._written, writable=False)
        views = as_2d_views((weights, grad))
        if views is None or views[0].shape[0] != 1:
            raise ValueError(
                f"a fused step needs the gradient in the weights' dense memory layout; got "
                f"weights of shape {weights.shape} and strides {weights.strides}, "
                f"gradient strides {grad.strides}")
        return views[1]

    def _step(self, optimizer: str, variant: Tuple[bool, ...], h: tuple, grad: np.ndarray,
              slots: Sequence[tuple], hyperparameters: Hyperparameters,
              regularize: bool) -> RLNState:
        """Check what changed since the last call and the gradient, then run the kernel."""
        Hyperparameters.check(hyperparameters)
        state = self.state
        if holds(state, self._checked_state):
            check_steps(state.steps)
        else:
            self._check_state()
        current = _slot_key(slots)
        checked = self._checked_slots
        if len(current) != len(checked) or not all(map(operator.is_, current, checked)):
            self._check_slots(slots)
        grad_view = self._grad_view(grad)
        views = [self._weights_view, grad_view,
                 *[grad_view if view is None else view for view in self._slot_views],
                 *self._state_views]
        with one_update_at_a_time(state):
            code = self._kernel.step_in_place(
                optimizer, variant, h, views, int(state.steps) == 0,
                hyperparameters if regularize else None, self.compute32)
            if code == BAD_WEIGHTS:
                raise ValueError(NON_FINITE_WEIGHTS_MESSAGE)
            if code == OK and regularize:
                state.steps = int(state.steps) + 1
        if code == LAMBDAS_UNSURE:
            # the optimizer's step is applied and the RLN state untouched (prev_weights is
            # W before it): the exact NumPy update decides, as after an unfused step
            update(self.weights, state, impl="numpy", compute_dtype=self.compute_dtype,
                   **hyperparameters.asdict())
        return state


def rmsprop_step(weights: np.ndarray, grad: np.ndarray, state: RLNState, *,
                 avg_reg: float = DEFAULTS.avg_reg, learning_rate: float = DEFAULTS.learning_rate,
                 norm: int = DEFAULTS.norm, compute_dtype: Optional[Any] = None,
                 **settings: Any) -> RLNState:
    """torch.optim.RMSprop's step of one tensor, then the RLN update, in place:
    `FusedStep(weights, state, compute_dtype).rmsprop(grad, Hyperparameters(avg_reg,
    learning_rate, norm), **settings)`.

    Args:
        weights: W before the step, a writable float32/float64 array (any dense layout).
        grad: its gradient (W's shape and dtype), read only.
        state: W's `RLNState`, updated in place.
        avg_reg, learning_rate, norm: RLN's hyperparameters (`rln_core.update`).
        compute_dtype: None or np.float32, as in `rln_core.update`.
        settings: `FusedStep.rmsprop`'s keywords: square_avg (required), momentum_buffer,
            grad_avg, lr (required), alpha, eps, weight_decay, momentum, centered,
            maximize, regularize.

    Returns:
        `state`.
    """
    return FusedStep(weights, state, compute_dtype).rmsprop(
        grad, Hyperparameters(avg_reg, learning_rate, norm), **settings)


def adam_step(weights: np.ndarray, grad: np.ndarray, state: RLNState, *,
              avg_reg: float = DEFAULTS.avg_reg, learning_rate: float = DEFAULTS.learning_rate,
              norm: int = DEFAULTS.norm, compute_dtype: Optional[Any] = None,
              **settings: Any) -> RLNState:
    """torch.optim.Adam's (AdamW's) step of one tensor, then the RLN update, in place:
    `FusedStep(...).adam(grad, Hyperparameters(...), **settings)`.

    Args:
        settings: `FusedStep.adam`'s keywords: exp_avg, exp_avg_sq, step, lr (required),
            max_exp_avg_sq, betas, eps, weight_decay, decoupled_weight_decay, amsgrad,
            maximize, regularize.
        Others: as `rmsprop_step`.

    Returns:
        `state`.
    """
    return FusedStep(weights, state, compute_dtype).adam(
        grad, Hyperparameters(avg_reg, learning_rate, norm), **settings)


def sgd_step(weights: np.ndarray, grad: np.ndarray, state: RLNState, *,
             avg_reg: float = DEFAULTS.avg_reg, learning_rate: float = DEFAULTS.learning_rate,
             norm: int = DEFAULTS.norm, compute_dtype: Optional[Any] = None,
             **settings: Any) -> RLNState:
    """torch.optim.SGD's step of one tensor, then the RLN update, in place:
    `FusedStep(...).sgd(grad, Hyperparameters(...), **settings)`.

    Args:
        settings: `FusedStep.sgd`'s keywords: lr (required), momentum_buffer,
            first_momentum, momentum, dampening, nesterov, weight_decay, maximize,
            regularize.
        Others: as `rmsprop_step`.

    Returns:
        `state`.
    """
    return FusedStep(weights, state, compute_dtype).sgd(
        grad, Hyperparameters(avg_reg, learning_rate, norm), **settings)


_UNUSED = object()  # an unused slot in `_slot_key` (a used one may be None: refused)


def _slot_key(slots: Sequence[tuple]) -> tuple:
    """What `FusedStep` compares (by identity) to know the slots checked: each used
    slot's array (None if missing), `_UNUSED` for the others."""
    return tuple([array if used else _UNUSED for _, array, used in slots])


def _check_arrays(weights: np.ndarray, named: Dict[str, Any], written: Sequence[np.ndarray],
                  writable: bool, first_own: Optional[int] = None) -> None:
    """Each named array a NumPy array of W's shape and dtype (writable if `writable`),
    sharing memory with none of `written`; with `first_own`, the named arrays are
    written[first_own:] in order and each skips its own entry (and only that one: the
    same array passed twice shares memory with itself).

    Raises:
        TypeError, ValueError: naming the array.
    """
    for index, (name, array) in enumerate(named.items()):
        if not isinstance(array, np.ndarray):
            raise TypeError(f"{name} must be a NumPy array, got {type(array).__name__}")
        if array.shape != weights.shape or array.dtype != weights.dtype:
            raise ValueError(f"{name} has shape {array.shape} and dtype {array.dtype}; it must "
                             f"have the weights' shape {weights.shape} and dtype {weights.dtype}")
        if writable and not array.flags.writeable:
            raise ValueError(f"{name} is read-only; the optimizer's step updates it in place")
        own = -1 if first_own is None else first_own + index
        for k, other in enumerate(written):
            if k != own and np.may_share_memory(array, other):
                raise ValueError(f"{name} shares memory with another array of the fused "
                                 "step; each must be its own")


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


def _rmsprop_numbers(dtype: type, lr: float, alpha: float, eps: float, weight_decay: float,
                     momentum: float, maximize: bool) -> tuple:
    """RMSprop's h (`rln_core._numba_fused._rmsprop`)."""
    check_settings("rmsprop", lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                   momentum=momentum)
    one_minus_alpha = dtype(1 - alpha)
    lerp_rest, lerp_small = _lerp_terms(one_minus_alpha)
    return _numbers(dtype, (-lr, alpha, one_minus_alpha, lerp_rest, eps, weight_decay, momentum,
                            _sign(maximize)), lerp_small)


def _sgd_numbers(dtype: type, lr: float, weight_decay: float, momentum: float,
                 dampening: float, maximize: bool, first_momentum: bool,
                 nesterov: bool) -> tuple:
    """SGD's h (`rln_core._numba_fused._sgd`)."""
    check_settings("sgd", lr=lr, weight_decay=weight_decay, momentum=momentum,
                   dampening=dampening, nesterov=nesterov)
    return _numbers(dtype, (-lr, weight_decay, momentum, 1 - dampening, _sign(maximize)),
                    first_momentum)


def check_settings(optimizer: str, **settings: Any) -> None:
    """Raise, naming the setting, where a fused step of `optimizer` would refuse its
    settings: the checks `FusedStep`'s methods make before anything moves.

    For a caller that must refuse before it touches anything of its own (`rln_torch`
    checks a fused tensor's param group before torch steps the other tensors); the fused
    step checks again. The rules are torch.optim's when an optimizer is made, plus
    finiteness: lr, eps, weight_decay, momentum and alpha finite and >= 0, dampening
    finite, betas a pair in [0, 1), Nesterov momentum with momentum > 0 and dampening 0;
    Adam's step (the count after this step) an integer >= 1 (a 0-d array or an integral
    float, as torch keeps it, too).

    Args:
        optimizer: one of `OPTIMIZERS`.
        settings: that method's keywords, by name; those not given are not checked (their
            defaults are valid), and keywords other than the ones above (flags, arrays)
            are ignored.

    Raises:
        ValueError: an unknown optimizer, or a setting out of range.
        TypeError: a setting that is not a real number (betas not a pair).
    """
    label = _LABELS.get(optimizer)
    if label is None:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    for name in _NON_NEGATIVE[optimizer]:
        if name in settings:
            _check_number(label, name, settings[name], non_negative=True)
    if optimizer == "adam":
        if "betas" in settings:
            _check_betas(settings["betas"])
        if "step" in settings:
            _check_step(settings["step"])
    elif optimizer == "sgd":
        momentum, dampening = settings.get("momentum", 0.0), settings.get("dampening", 0.0)
        _check_number(label, "dampening", dampening, non_negative=False)
        if settings.get("nesterov") and (momentum <= 0 or dampening != 0):
            raise ValueError(f"SGD: Nesterov momentum requires a momentum and zero dampening "
                             f"(as torch.optim.SGD); got momentum={momentum!r}, "
                             f"dampening={dampening!r}")


_LABELS = {"rmsprop": "RMSprop", "adam": "Adam", "sgd": "SGD"}  # the names errors use
# The settings of each optimizer that torch.optim refuses when negative.
_NON_NEGATIVE = {"rmsprop": ("lr", "alpha", "eps", "weight_decay", "momentum"),
                 "adam": ("lr", "eps", "weight_decay"),
                 "sgd": ("lr", "weight_decay", "momentum")}


def _check_number(optimizer: str, name: str, value: Any, non_negative: bool) -> None:
    """A finite real number (a Python or NumPy number, a 0-d array), >= 0 where
    `non_negative`; a TypeError or ValueError naming it otherwise."""
    try:
        number = _real(value)
    except (TypeError, ValueError):
        raise TypeError(f"{optimizer}: {name} must be a real number, got {value!r}") from None
    if not math.isfinite(number) or (non_negative and number < 0):
        raise ValueError(f"{optimizer}: invalid {name} {value!r}; expected a finite "
                         f"number{' >= 0' if non_negative else ''}")


def _real(value: Any) -> float:
    """float(value) of a number; a TypeError for a string, even one float() reads (torch.optim
    refuses them), or ValueError / TypeError from float()."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"a string, {value!r}")
    return float(value)


def _pair(betas: Any) -> Tuple[Any, Any]:
    """Adam's betas as a tuple (beta1, beta2); a TypeError naming them if not a pair."""
    try:
        beta1, beta2 = betas
    except (TypeError, ValueError):
        raise TypeError(f"Adam: betas must be a pair of numbers, got {betas!r}") from None
    return beta1, beta2


def _check_betas(betas: Any) -> None:
    """Adam's (beta1, beta2), each in [0, 1) (as torch.optim.Adam); raise otherwise."""
    beta1, beta2 = _pair(betas)
    for index, (name, beta) in enumerate((("beta1", beta1), ("beta2", beta2))):
        _check_number("Adam", name, beta, non_negative=True)
        if not float(beta) < 1:
            raise ValueError(f"Adam: invalid beta parameter at index {index}: {beta!r}; "
                             "expected 0 <= beta < 1")


def _check_step(step: Any) -> None:
    """Adam's step count after this step: an integer >= 1."""
    try:
        number = _real(step)
    except (TypeError, ValueError):
        raise TypeError(f"Adam: step must be an integer >= 1, got {step!r}") from None
    if not (number >= 1 and number == int(number)):
        raise ValueError(f"Adam: step must be an integer >= 1 (the count after this step), "
                         f"got {step!r}")


def _numbers(dtype: type, values: Sequence[float], flag: bool) -> tuple:
    """The kernel's h: _N_NUMBERS values in W's dtype (padded with zeros), then the flag:
    one type for every optimizer."""
    padded = list(values) + [0.0] * (_N_NUMBERS - len(values))
    return (*(dtype(value) for value in padded), bool(flag))

