"""`RLN`: Regularization Learning for PyTorch parameters, stepped after the optimizer."""

from __future__ import annotations

import weakref
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from rln_core import DEFAULTS, Hyperparameters, inspection
from rln_core.checks import check_float32_dtypes
from rln_core.hyperparameters import WithHyperparameters
from torch.utils.hooks import RemovableHandle

from rln_torch._eager import eager
from rln_torch._fused import FusedHooks
from rln_torch._impls import check_impl, resolve
from rln_torch._params import Target, collect_params, overlap
from rln_torch._slot import ParamSlot
from rln_torch._state import (STATE_DTYPES, as_tensor, check_state_entry, load_state_into,
                              state_to_dict)

MODES = ("delta", "gradient")
# Per optimizer, the RLNs attached to it: a second one over the same memory would
# update those weights twice per step. And those attached with fuse=True (delta mode only).
# Weak: an optimizer dropped without `remove()` leaves no attachment behind.
_ATTACHED: "weakref.WeakKeyDictionary[torch.optim.Optimizer, list]" = weakref.WeakKeyDictionary()
_FUSED: "weakref.WeakKeyDictionary[torch.optim.Optimizer, list]" = weakref.WeakKeyDictionary()


def _optimizers_of(rln: "RLN", registry: weakref.WeakKeyDictionary) -> list:
    """The live optimizers `rln` is attached to in `registry`."""
    return [optimizer for optimizer, rlns in list(registry.items())
            if any(other is rln for other in rlns)]


def check_mode(mode: str) -> None:
    """`mode` must be one of MODES."""
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"Invalid mode: {mode!r}; expected one of {MODES}")


def check_compute_dtype(compute_dtype: Optional[torch.dtype],
                        state_dtype: torch.dtype) -> Optional[torch.dtype]:
    """None for float64 arithmetic (None or torch.float64 given), torch.float32 for float32.

    Raises:
        TypeError: another dtype, or torch.float32 with a float64 state.
    """
    if compute_dtype is None or compute_dtype == torch.float64:
        return None
    if compute_dtype != torch.float32:
        raise TypeError(f"Invalid compute_dtype: {compute_dtype!r}; expected None (float64) "
                        "or torch.float32")
    check_float32_dtypes(({"state_dtype": state_dtype},
                          "ask for RLN(..., state_dtype=torch.float32)"), who="RLN")
    return torch.float32


class RLN(WithHyperparameters):
    """Regularization Learning Networks (Shavitt & Segal, 2018) for torch tensors.

    Every element of each regularized tensor W gets its own L1/L2 coefficient
    exp(lambda); the lambdas learn from each optimizer step (see docs/RLN_SPEC.md).
    Call `step()` after every optimizer step, or `attach(optimizer)` once.

    Example:
        rln = RLN(model[0], norm=1, avg_reg=-10.0, learning_rate=1e6)
        for x, y in loader:
            opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()
            rln.step()

    Weights are updated in place; the Parameter object is never replaced, so
    optimizers, hooks, `DistributedDataParallel` (every rank applies the same
    update to the same weights, bit for bit on one CPU type and numba thread
    count) and `torch.compile`d models
    (regularize the original module's layer; the compiled one shares its
    Parameters) all see the regularized tensor.

    Calling `step()` twice with no optimizer step in between is legal: in delta
    mode the weight change is zero, so the lambdas are only translated back to
    mean `avg_reg` (then clipped) and the weights are regularized a second time;
    in gradient mode the same .grad is used again (a full lambda step).

    Gradient mode gives the update the weight change delta = -grad (the
    core's `delta` input), so the lambda step is nu * grad * prev_reg: it
    assumes the optimizer descends (`attach` refuses a param group with
    maximize=True, whose step is +lr * grad; delta mode learns from either).

    Args:
        target: a module with a `.weight` (e.g. `model[0]`), a Parameter, or a
            list of either; each tensor gets its own state.
        norm: 1 (L1) or 2 (L2).
        avg_reg: Theta, the mean of the lambdas (natural log).
        learning_rate: nu, the step size of the lambdas (>= 0). In gradient
            mode it multiplies the gradient, so it plays nu * eta.
        mode: "delta" (the spec: learn from the weight change) or "gradient"
            (learn from `param.grad`, i.e. -delta / eta for plain SGD).
        impl: "auto", "numba", "numpy" or "torch" (precedence in `rln_torch._impls`,
            decided by `rln_core.implementations.resolve`).
        state_dtype: torch.float64 (default) or torch.float32 for lambdas and prev_reg.
        compute_dtype: the arithmetic of the update. None (default): float64, as
            the spec says (the kit's per-update tolerances). torch.float32 (float32
            parameters and state_dtype=torch.float32 only): float32 arithmetic,
            1.7-2.2x faster per update on CPU (README, Benchmarks), lambdas within
            `rln_core.checks.F32_LAMBDA_RTOL` (3e-6) of max(1, |lambda|,
            |lambda in|, |lambda step|) per update; every weight the float64 update
            sets to exactly 0 is exactly 0. (On MPS the arithmetic is float32 anyway.)

    Raises:
        ValueError, TypeError: naming the argument, before anything is built.
    """

    def __init__(self, target: Union[Target, Sequence[Target]], norm: int = DEFAULTS.norm,
                 avg_reg: float = DEFAULTS.avg_reg, learning_rate: float = DEFAULTS.learning_rate,
                 *, mode: str = "delta", impl: str = "auto",
                 state_dtype: torch.dtype = torch.float64,
                 compute_dtype: Optional[torch.dtype] = None):
        hyperparameters = Hyperparameters(avg_reg, learning_rate, norm)
        check_mode(mode)
        check_impl(impl)
        if state_dtype not in STATE_DTYPES:
            raise TypeError(f"Invalid state_dtype: {state_dtype!r}; expected torch.float64 "
                            "or torch.float32")
        compute_dtype = check_compute_dtype(compute_dtype, state_dtype)
        params = collect_params(target)
        if compute_dtype is not None:
            check_float32_dtypes(({f"parameter {index}": param.dtype
                                   for index, param in enumerate(params)},
                                  "float32 parameters, or compute_dtype=None for float64 "
                                  "arithmetic"), who="RLN")
        implementations = [resolve(impl, param) for param in params]
        for index, param in enumerate(params):
            if param.device.type == "mps" and state_dtype == torch.float64:
                raise TypeError(f"parameter {index} is on MPS, which has no float64; "
                                "pass state_dtype=torch.float32")
        self.hyperparameters = hyperparameters
        self.mode = mode
        self.impl = impl
        self.state_dtype = state_dtype
        self.compute_dtype = compute_dtype
        self._single = not isinstance(target, (list, tuple))
        self._slots = [ParamSlot(param, implementation, avg_reg, state_dtype,
                                 f"parameter {index}", compute32=compute_dtype is not None)
                       for index, (param, implementation) in enumerate(zip(params,
                                                                           implementations))]

    @property
    def params(self) -> List[torch.Tensor]:
        """The regularized tensors (the Parameter objects themselves)."""
        return [slot.param for slot in self._slots]

    @property
    def resolved_impls(self) -> List[str]:
        """Per tensor: "torch" or the `impl` handed to `rln_core.update`."""
        return [slot.implementation.name for slot in self._slots]

    @eager
    def step(self) -> None:
        """One RLN update of every tensor; call it after each optimizer step.

        Every tensor is checked (shape, dtype, device, .grad in gradient mode)
        before any is updated. Each tensor's update is all-or-nothing; if the
        update refuses tensor k (e.g. NaN weights), tensors before k are updated.

        Raises:
            ValueError, TypeError: a tensor whose shape, dtype or device changed, or an
                update `rln_core.update` refuses (non-finite weights, lambdas that would
                overflow), naming the tensor.
            RuntimeError: gradient mode and a tensor without `.grad`.
        """
        gradient = self.mode == "gradient"
        for slot in self._slots:
            slot.check(needs_grad=gradient)
        hyperparameters = self.hyperparameters
        for slot in self._slots:
            try:
                if gradient:
                    slot.update_from_gradient(hyperparameters)
                else:
                    slot.update(hyperparameters)
            except (ValueError, TypeError) as error:
                raise slot.refused(error) from error

    def attach(self, optimizer: torch.optim.Optimizer, fuse: bool = False) -> "Attachment":
        """Run `step()` after every `optimizer.step()`; `handle.remove()` detaches.

        Args:
            optimizer: the optimizer training the regularized tensors.
            fuse: run the regularized tensors' optimizer step and RLN update as one
                kernel (`rln_torch._fused`: RMSprop, Adam, AdamW, SGD on CPU), the
                same result as unfused within rounding, faster.

        Raises:
            ValueError: a regularized tensor is not in the optimizer's param_groups
                (or, in gradient mode, is in one with maximize=True),
                or this RLN (or another one over the same memory) is attached to
                this optimizer already: the weights would be updated twice per step;
                with fuse, an optimizer, flag or setting it does not support (settings
                `rln_core.fused.check_settings` refuses, e.g. lr=inf, which torch takes).
        """
        trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
        for slot in self._slots:
            if id(slot.param) not in trained:
                raise ValueError(f"{slot.name} {tuple(slot.param.shape)} is not trained by "
                                 f"this {type(optimizer).__name__}; RLN would never see a step")
        if self.mode == "gradient":
            self._refuse_gradient_mode_under(optimizer)
        attached = _ATTACHED.setdefault(optimizer, [])
        for other in attached:
            if other is self:
                raise ValueError(f"this RLN is attached to this {type(optimizer).__name__} "
                                 "already; attach once (handle.remove() detaches)")
            for slot in self._slots:
                if any(overlap(slot.param, param) for param in other.params):
                    raise ValueError(
                        f"{slot.name} {tuple(slot.param.shape)} is regularized by another RLN "
                        f"attached to this {type(optimizer).__name__}; it would be updated "
                        "twice per step")
        if fuse:
            hook = FusedHooks(self, optimizer)  # checks, then registers its hooks
        else:
            hook = optimizer.register_step_post_hook(lambda opt, args, kwargs: self.step())
        registries = [attached, _FUSED.setdefault(optimizer, [])] if fuse else [attached]
        for registered in registries:
            registered.append(self)
        return Attachment(hook, registries, self)

    def _refuse_gradient_mode_under(self, optimizer: torch.optim.Optimizer) -> None:
        """Raise ValueError if `optimizer` trains a regularized tensor with maximize=True:
        its step is +lr * grad, and gradient mode learns from -grad."""
        for slot in self._slots:
            for group in optimizer.param_groups:
                if group.get("maximize", False) and any(p is slot.param for p in group["params"]):
                    raise ValueError(f"{slot.name} is trained with maximize=True, so its weight "
                                     "change is +lr * grad, but mode='gradient' learns from "
                                     "-grad (a descent step); use mode='delta'")

    @property
    def lambdas(self) -> Union[torch.Tensor, List[torch.Tensor]]:
        """The log coefficients: tensors sharing memory with the state (one per tensor,
        or a single one when RLN was given a single module or Parameter)."""
        return self._per_tensor([as_tensor(slot.state.lambdas) for slot in self._slots])

    def sparsity(self) -> Union[float, List[float]]:
        """Fraction of each tensor exactly 0 after the last update."""
        return self._per_tensor([inspection.sparsity(w) for w in self._weights_after_update()])

    def input_importance(self, input_axis: int = 1) -> Union[np.ndarray, List[np.ndarray]]:
        """Per-input sum of |w| after the last update, float64 NumPy of shape (n_inputs,).

        Args:
            input_axis: 1 for nn.Linear (out, in) and nn.Conv (out, in, ...) weights.
        """
        return self._per_tensor([inspection.input_importance(w, input_axis)
                                 for w in self._weights_after_update()])

    def state_dict(self) -> Dict[str, Any]:
        """Hyperparameters (plain Python values: numbers and the mode's name, so
        `torch.load(weights_only=True)` reads them) and each tensor's state in the core's
        serialized form (copies)."""
        return {
            "hyperparameters": {**self.hyperparameters.asdict(), "mode": self.mode},
            "states": [state_to_dict(slot.state) for slot in self._slots],
        }

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restore `state_dict()` output (hyperparameters included), like an optimizer.

        Everything is checked before anything is written: a state for another
        shape, dtype or number of tensors, or mode='gradient' while this RLN is
        attached with fuse=True or to a maximize=True group, raises and leaves this RLN
        unchanged.
        Entries written before prev_reg was allocated at init (no prev_reg at
        steps 0) load too.
        """
        if not isinstance(state_dict, dict) or set(state_dict) != {"hyperparameters", "states"}:
            found = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict)
            raise ValueError("an RLN state_dict has exactly the keys 'hyperparameters' and "
                             f"'states', got {found}")
        hyper = dict(state_dict["hyperparameters"])
        expected = set(Hyperparameters.fields()) | {"mode"}
        if set(hyper) != expected:
            raise ValueError(f"state_dict['hyperparameters'] has keys {sorted(hyper)}; "
                             f"expected {sorted(expected)}")
        mode = hyper.pop("mode")
        hyperparameters = Hyperparameters(**hyper)
        check_mode(mode)
        if mode == "gradient":
            if _optimizers_of(self, _FUSED):
                raise ValueError(f"the state_dict has mode={mode!r}, but this RLN is attached "
                                 "with fuse=True, which learns from the optimizer's own step "
                                 "(mode='delta'); remove the fused attachment first")
            for optimizer in _optimizers_of(self, _ATTACHED):
                self._refuse_gradient_mode_under(optimizer)
        states = state_dict["states"]
        if not isinstance(states, (list, tuple)) or len(states) != len(self._slots):
            found = len(states) if isinstance(states, (list, tuple)) else type(states)
            raise ValueError(f"state_dict['states'] must list {len(self._slots)} states, one "
                             f"per regularized tensor; got {found}")
        checked = [check_state_entry(entry, slot.state, f"state_dict['states'][{index}]")
                   for index, (slot, entry) in enumerate(zip(self._slots, states))]
        for slot, fields in zip(self._slots, checked):
            load_state_into(slot.state, fields)
        self.hyperparameters, self.mode = hyperparameters, mode

    def _weights_after_update(self) -> List[np.ndarray]:
        return [np.asarray(as_tensor(slot.state.prev_weights).detach().cpu())
                for slot in self._slots]

    def _per_tensor(self, values: list) -> Any:
        return values[0] if self._single else values

    def __repr__(self) -> str:
        shapes = ", ".join(str(tuple(slot.param.shape)) for slot in self._slots)
        extra = "" if self.compute_dtype is None else f", compute_dtype={self.compute_dtype}"
        return (f"RLN([{shapes}], norm={self.norm}, avg_reg={self.avg_reg}, "
                f"learning_rate={self.learning_rate}, mode={self.mode!r}, impl={self.impl!r}"
                f"{extra})")


class Attachment:
    """The handle `RLN.attach` returns: `remove()` detaches RLN from the optimizer."""

    def __init__(self, hook: Union[RemovableHandle, FusedHooks], registries: List[list],
                 rln: RLN):
        self._hook, self._registries, self._rln = hook, registries, rln

    def remove(self) -> None:
        """Stop stepping RLN after the optimizer's steps (idempotent)."""
        self._hook.remove()
        for registered in self._registries:  # this optimizer's entries in the registries
            registered[:] = [other for other in registered if other is not self._rln]

    def __enter__(self) -> "Attachment":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()
