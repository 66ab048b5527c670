"""`RLN.attach(optimizer, fuse=True)`: the regularized tensors' optimizer step and RLN
update in one kernel (`rln_core.fused`), torch's optimizer for every other tensor.

How: a step pre-hook takes the regularized parameters' `.grad` away (torch's
optimizers skip a parameter whose grad is None), the optimizer steps the
others, and a step post-hook runs `rln_core.fused` on each regularized tensor
with its gradient, its param group's hyperparameters (read at every step:
schedulers change them; lr may be a tensor) and `optimizer.state[p]` in torch's
own keys and layout, initialized as torch does on a tensor's first step; then
it gives the gradients back. So `optimizer.state_dict()` and `RLN.state_dict()`
keep their formats, and a checkpoint of a fused run resumes fused or unfused.

Supported: torch.optim.RMSprop (alpha, eps, weight_decay, momentum, centered),
Adam and AdamW (betas, eps, weight_decay, amsgrad), SGD (momentum, dampening,
nesterov, weight_decay), each with maximize; CPU tensors, impl "auto" or
"numba", mode "delta". Anything else is refused at attach time (and param groups with
fused, capturable or differentiable on, or settings the fused step refuses:
`rln_core.fused.check_settings`, torch.optim's rules plus finite numbers, so lr=inf,
which torch takes, too). The pre-hook refuses, before torch steps
anything: a sparse gradient, one of another shape or dtype, `optimizer.step(closure)`,
and a param group changed since attach to one that attach or torch.optim would refuse (a
flag above switched on, a setting out of range: `rln_core.fused.check_settings`) or
whose settings need optimizer state this tensor does not have (momentum switched on
mid-run: torch's own step fails on that too) or hold it in another shape, dtype or
device (a state_dict of another model). A gradient, or an optimizer state tensor,
in another memory order than its parameter (torch allows both: SGD clones its momentum
buffer from the gradient) is used as a copy in the parameter's order (the state tensor
replaced by it in `optimizer.state`). The result equals "optimizer.step() then
RLN.step()" within rounding (torch's CPU sqrt is not correctly rounded;
tests/test_torch_fused.py states the tolerances). If torch's own step raises (for
another parameter), or a step pre-hook registered after this attachment does, the
post-hook does not run: the regularized tensors are not stepped and their `.grad` stays
None.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

import numpy as np
import rln_core
import torch
from rln_core import fused

from rln_torch._eager import eager

# Param group flags that change torch's step beyond what rln_core.fused reproduces.
_REFUSED_FLAGS = ("fused", "capturable", "differentiable")


def check_fusable(rln: Any, optimizer: torch.optim.Optimizer) -> None:
    """Raise ValueError, naming the problem, unless `optimizer` and `rln` can be fused.

    Reads only: called before any hook is registered.
    """
    kind = type(optimizer)
    if kind not in OPTIMIZERS:
        names = ", ".join(f"torch.optim.{cls.__name__}" for cls in OPTIMIZERS)
        raise ValueError(f"fuse=True supports {names}, got {kind.__module__}.{kind.__name__}; "
                         "attach without fuse")
    if rln.mode != "delta":
        raise ValueError(f"fuse=True learns from the optimizer's own step (mode='delta'), got "
                         f"mode={rln.mode!r}")
    if rln.impl not in ("auto", "numba"):
        raise ValueError(f"fuse=True runs the numba kernel, got impl={rln.impl!r}; use "
                         "impl='auto' or 'numba'")
    if not rln_core.numba_available():
        raise ValueError("fuse=True needs the numba kernel, but "
                         f"{rln_core.implementations.NUMBA_UNAVAILABLE}; attach without fuse")
    fused_kind = OPTIMIZERS[kind]
    for slot in rln._slots:
        param = slot.param
        where = _where(slot)
        if param.device.type != "cpu":
            raise ValueError(f"{where} is on {param.device}; fuse=True runs on CPU tensors")
        if not _is_dense(param):
            raise ValueError(f"{where} has strides {param.stride()}, not one dense block; "
                             "fuse=True needs a contiguous tensor (in any memory order)")
        group = _group_of(optimizer, param)
        _check_flags(group, lambda: where)
        _check_settings(fused_kind, _settings_of(fused_kind, group), lambda: where)


def _where(slot: Any) -> str:
    """A regularized tensor as messages name it."""
    return f"{slot.name} {tuple(slot.param.shape)}"


def _check_flags(group: Dict[str, Any], where: Callable[[], str]) -> None:
    """Refuse a param group with a flag of `_REFUSED_FLAGS` on (at attach time and, as a
    group may be changed, at every step); `where()` names the tensor, called only to
    refuse (the per-step check formats nothing)."""
    for flag in _REFUSED_FLAGS:
        if group.get(flag):
            raise ValueError(f"the param group of {where()} has {flag}=True, which fuse=True "
                             "does not reproduce; attach without fuse")


def _settings_of(kind: "_Kind", group: Dict[str, Any]) -> Dict[str, Any]:
    """The group's settings of the fused step, as numbers (`_number`)."""
    return {name: _number(value) for name, value in kind.settings(group).items()}


def _check_settings(kind: "_Kind", settings: Dict[str, Any], where: Callable[[], str]) -> None:
    """Refuse settings the fused step would refuse (`rln_core.fused.check_settings`: those
    torch.optim refuses when made, and non-finite ones), naming the tensor (`where()`)."""
    try:
        fused.check_settings(kind.method, **settings)
    except (TypeError, ValueError) as error:
        raise type(error)(f"the param group of {where()}: {error}") from None


def _is_dense(tensor: torch.Tensor) -> bool:
    """Whether the tensor's elements fill one block of memory (contiguous in some order)."""
    span = sum((size - 1) * abs(stride) for size, stride in zip(tensor.shape, tensor.stride()))
    return span + 1 == tensor.numel()


def _group_of(optimizer: torch.optim.Optimizer, param: torch.Tensor,
              where: Optional[Dict[int, Tuple[int, int]]] = None) -> Dict[str, Any]:
    """The param group training `param` (looked up at every step: load_state_dict
    replaces the group dicts). `where`: {id(param): (group index, index in the group)}
    of earlier look-ups, tried first (checked by identity) and updated."""
    groups = optimizer.param_groups
    key = id(param)
    if where is not None and key in where:
        group_index, index = where[key]
        if group_index < len(groups):
            params = groups[group_index]["params"]
            if index < len(params) and params[index] is param:
                return groups[group_index]
    for group_index, group in enumerate(groups):
        for index, candidate in enumerate(group["params"]):
            if candidate is param:
                if where is not None:
                    where[key] = (group_index, index)
                return group
    raise ValueError(f"a tensor of shape {tuple(param.shape)} is no longer trained by this "
                     f"{type(optimizer).__name__}")


class FusedHooks:
    """The pre and post step hooks of a fused attachment; `remove()` removes both."""

    def __init__(self, rln: Any, optimizer: torch.optim.Optimizer):
        check_fusable(rln, optimizer)
        self._rln = rln
        self._kind = OPTIMIZERS[type(optimizer)]
        # between the two hooks: each slot's gradient (None: it has none)
        self._grads: Optional[List[Optional[torch.Tensor]]] = None
        # per slot: its `rln_core.fused.FusedStep` (made again when the slot's weights or
        # state are other objects) and NumPy views of the optimizer's state tensors (the
        # same ndarrays while the tensors and their memory are, so FusedStep checks them
        # once): {key: (tensor, `_memory(tensor)`, view)}
        self._prepared: Dict[int, fused.FusedStep] = {}
        self._arrays: Dict[int, Dict[str, tuple]] = {}
        self._groups: Dict[int, Tuple[int, int]] = {}  # `_group_of`'s earlier look-ups
        # per slot: the settings (as numbers) `rln_core.fused.check_settings` last passed
        self._checked: Dict[int, Dict[str, Any]] = {}
        self._pre = optimizer.register_step_pre_hook(self._before)
        self._post = optimizer.register_step_post_hook(self._after)

    def remove(self) -> None:
        """Remove both hooks (idempotent)."""
        self._pre.remove()
        self._post.remove()

    @eager
    def _before(self, optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        """Check every regularized tensor, its gradient and its param group (its flags, its
        settings as `rln_core.fused.check_settings` does: one torch.optim would have
        refused when made, set since; the state tensors its settings need and read: there,
        of W's shape, dtype and device), then take the
        gradients from the optimizer. A refusal here leaves every tensor and state as it
        was, the other parameters unstepped. (The settings are read again for the step,
        after any pre-hook that runs after this one.)"""
        closure = args[1] if len(args) > 1 else kwargs.get("closure")  # args[0]: the optimizer
        if self._rln.mode != "delta":  # a loaded state_dict may have changed it
            raise ValueError(f"this RLN is now in mode={self._rln.mode!r} (a loaded "
                             "state_dict?), but fuse=True learns from the optimizer's own "
                             "step (mode='delta'); remove the fused attachment and attach "
                             "without fuse")
        if closure is not None:
            raise ValueError("a fused RLN does not support optimizer.step(closure): the "
                             "closure's backward would give the optimizer the gradients "
                             "the fused step takes; call backward() before step()")
        grads = []
        for slot in self._rln._slots:
            slot.check(needs_grad=False)
            param, grad = slot.param, slot.param.grad
            if grad is not None:
                if grad.layout != torch.strided or grad.is_sparse:
                    raise ValueError(f"{slot.name}.grad has layout {grad.layout}; fuse=True "
                                     "needs dense gradients")
                if grad.dtype != param.dtype or grad.shape != param.shape:
                    raise TypeError(f"{slot.name}.grad has dtype {grad.dtype} and shape "
                                    f"{tuple(grad.shape)}; the parameter {param.dtype} and "
                                    f"{tuple(param.shape)}")
                self._check_group(slot, _group_of(optimizer, param, self._groups),
                                  optimizer.state.get(param, {}))
            grads.append(grad)
        for slot in self._rln._slots:
            slot.param.grad = None
        self._grads = grads

    def _check_group(self, slot: Any, group: Dict[str, Any],
                     state: Dict[str, Any]) -> Dict[str, Any]:
        """The param group of a tensor about to be stepped: flags, settings, and the state
        tensors its settings need (a setting switched on mid-run, momentum or centered or
        amsgrad, finds its tensor missing; torch's own step fails on it too) and read (of
        W's shape, dtype and device: fused, a wrong one was refused after torch had stepped
        the other parameters and counted this one's step). Returns the settings as numbers
        (`_number`), checked again only when they differ from the last ones of this slot
        that passed (each check costs ~10 us in training)."""
        _check_flags(group, lambda: _where(slot))
        settings = _settings_of(self._kind, group)
        if settings != self._checked.get(id(slot)):
            _check_settings(self._kind, settings, lambda: _where(slot))
            self._checked[id(slot)] = settings
        missing = [name for name in self._kind.slots(group) if state and name not in state]
        if missing:
            raise ValueError(f"the param group of {_where(slot)} asks for optimizer state "
                             f"{', '.join(missing)}, which torch's state of this tensor does "
                             "not hold (a setting switched on mid-run?); torch.optim's own "
                             "step fails on it too")
        param = slot.param
        for name in self._kind.reads(group):
            value = state.get(name)
            if value is not None and not (isinstance(value, torch.Tensor)
                                          and value.shape == param.shape
                                          and value.dtype == param.dtype
                                          and value.device == param.device):
                found = (f"{value.dtype} {tuple(value.shape)} on {value.device}"
                         if isinstance(value, torch.Tensor) else type(value).__name__)
                raise ValueError(f"optimizer.state of {_where(slot)}: {name} is {found}; the "
                                 f"step needs the parameter's dtype, shape and device "
                                 f"({param.dtype} on {param.device}; a state_dict of another "
                                 "model?)")
        return settings

    @eager
    def _after(self, optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        """The fused step of every regularized tensor; the gradients given back.

        Like "optimizer.step() then RLN.step()": every tensor gets its optimizer step;
        if the RLN update of tensor k is refused, tensors before k are regularized,
        the others not, and the error is raised. (A setting or an optimizer state tensor
        that a step pre-hook registered later changed is refused before this tensor's state
        is advanced: it gets no optimizer step, the other parameters have had theirs.)
        """
        grads, self._grads = self._grads, None
        hyperparameters = self._rln.hyperparameters
        error: Optional[Exception] = None
        try:
            for slot, grad in zip(self._rln._slots, grads):
                try:
                    if grad is None:  # no optimizer step: RLN alone, as unfused
                        if error is None:
                            slot.update(hyperparameters)
                        continue
                    self._step_one(optimizer, slot, grad, hyperparameters,
                                   regularize=error is None)
                except (ValueError, TypeError) as caught:
                    if error is not None:
                        raise
                    error = slot.refused(caught)
        finally:
            for slot, grad in zip(self._rln._slots, grads):
                slot.param.grad = grad
        if error is not None:
            raise error

    def _step_one(self, optimizer: torch.optim.Optimizer, slot: Any, grad: torch.Tensor,
                  hyperparameters: Any, regularize: bool) -> None:
        """One tensor's fused step, its group's settings read now (as torch's step reads
        them, after every pre-hook) and checked again before torch's state is advanced."""
        param = slot.param
        grad = _in_order_of(param, grad)
        fused_step = self._fused_step(slot)  # W and the RLN state checked before any write
        group = _group_of(optimizer, param, self._groups)
        numbers = dict(self._check_group(slot, group, optimizer.state.get(param, {})))
        tensors, read = self._kind.advance(group, optimizer.state, param)
        numbers.update(read)
        arrays = self._arrays.setdefault(id(slot), {})
        for key, value in tensors.items():
            if value is not None:
                memory = _memory(value)
                cached = arrays.get(key)
                if cached is None or cached[0] is not value or cached[1] != memory:
                    # (torch's SGD clones its momentum buffer from a gradient, whose memory
                    # order may differ; the keywords are torch's state keys)
                    ordered = _in_order_of(param, value)
                    if ordered is not value:
                        value = optimizer.state[param][key] = ordered
                        memory = _memory(value)
                    cached = arrays[key] = (value, memory, value.numpy())
                value = cached[2]
            numbers[key] = value
        # (detach only where needed: create_graph=True; each torch call costs 1-5 us here)
        grad_array = (grad.detach() if grad.requires_grad else grad).numpy()
        getattr(fused_step, self._kind.method)(grad_array, hyperparameters,
                                               regularize=regularize, **numbers)

    def _fused_step(self, slot: Any) -> fused.FusedStep:
        """The slot's FusedStep, made again if its weights or state are other objects
        (then the optimizer state's views are made again too: a rebind may have changed
        the parameter's memory order, which they must follow)."""
        prepared = self._prepared.get(id(slot))
        if not slot.made_for(prepared):
            prepared = self._prepared[id(slot)] = fused.FusedStep(
                slot.weights, slot.state, slot.compute_dtype)
            self._arrays.pop(id(slot), None)
        return prepared


def _in_order_of(param: torch.Tensor, tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` itself if it has the parameter's strides, else a copy in them: the fused
    kernel walks the parameter, its gradient and its optimizer state in one memory order.
    A tensor of another shape or dtype is returned as it is (`rln_core.fused` refuses it,
    naming it; a copy would broadcast or cast it)."""
    if tensor.stride() == param.stride() or tensor.shape != param.shape \
            or tensor.dtype != param.dtype:
        return tensor
    return torch.empty_like(param).copy_(tensor)


def _memory(tensor: torch.Tensor) -> tuple:
    """What a NumPy view of `tensor` depends on besides its identity: `.data = ...`,
    `set_` and `resize_` keep the object and change these."""
    return tensor.data_ptr(), tensor.shape, tensor.stride(), tensor.dtype


_PLAIN = frozenset((float, int, bool))


def _number(value: Any) -> Any:
    """A setting as the fused step takes it: a tensor or NumPy array (torch takes a tensor
    lr, momentum or betas) as a Python number (one element) or a tuple of them; a tuple or
    list item by item; anything else as it is."""
    if type(value) in _PLAIN:  # the common case, first (this runs ~14 times a step)
        return value
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else tuple(value.tolist())
    if isinstance(value, np.ndarray):
        return value.item() if value.size == 1 else tuple(value.tolist())
    if isinstance(value, (tuple, list)):
        return tuple(map(_number, value))
    return value


def _zeros_like(param: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(param, memory_format=torch.preserve_format)


def _scalar_dtype() -> torch.dtype:
    """The dtype torch gives state["step"] (torch.optim.optimizer._get_scalar_dtype)."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


Arguments = Tuple[Dict[str, Optional[torch.Tensor]], Dict[str, Any]]
"""A step's optimizer state: (its tensors by FusedStep keyword, None where unused; the
numbers read from it by keyword)."""


class _Kind(NamedTuple):
    """How one torch optimizer class maps onto `rln_core.fused.FusedStep`."""

    method: str
    """The FusedStep method."""
    settings: Callable[[Dict[str, Any]], Dict[str, Any]]
    """param group -> the method's settings and flags by keyword, as the group holds them
    (`_number` makes them plain); reads only."""
    slots: Callable[[Dict[str, Any]], Tuple[str, ...]]
    """param group -> the state tensors its settings need, made on a tensor's first step
    (a setting switched on later finds its tensor missing: torch's own step fails then)."""
    reads: Callable[[Dict[str, Any]], Tuple[str, ...]]
    """param group -> the state tensors its step reads where they exist (checked before any
    tensor is stepped: W's shape, dtype and device)."""
    advance: Callable[[Dict[str, Any], Dict[Any, Dict[str, Any]], torch.Tensor], Arguments]
    """(param group, optimizer.state, param) -> the state this step reads and writes, after
    torch's own bookkeeping of a step (the state made on the first, the step counted):
    (its tensors by keyword, None where unused; the numbers read from it). Touches
    optimizer.state[param] only where torch's step does (SGD without momentum keeps no
    state: its entry is not made, so `optimizer.state_dict()` is torch's)."""


def _first_state(states: dict, param: torch.Tensor, slots: Tuple[str, ...]) -> dict:
    """torch's `_init_group` for RMSprop and Adam: optimizer.state[param], made on the first
    step (a step count and zeros for each slot)."""
    state = states[param]
    if len(state) == 0:
        state["step"] = torch.zeros((), dtype=_scalar_dtype())
        for key in slots:
            state[key] = _zeros_like(param)
    return state


def _rmsprop_settings(group: dict) -> Dict[str, Any]:
    """`_Kind.settings` of RMSprop."""
    return {key: group[key] for key in ("lr", "alpha", "eps", "weight_decay", "momentum",
                                        "centered", "maximize")}


def _rmsprop_slots(group: dict) -> Tuple[str, ...]:
    """`_Kind.slots` of RMSprop."""
    return (("square_avg",) + (("momentum_buffer",) if group["momentum"] > 0 else ())
            + (("grad_avg",) if group["centered"] else ()))


def _rmsprop_advance(group: dict, states: dict, param: torch.Tensor) -> Arguments:
    """`_Kind.advance` of RMSprop."""
    state = _first_state(states, param, _rmsprop_slots(group))
    state["step"] += 1
    return {key: state.get(key) for key in ("square_avg", "momentum_buffer", "grad_avg")}, {}


def _adam_settings(group: dict, decoupled: bool = False) -> Dict[str, Any]:
    """`_Kind.settings` of Adam and AdamW. `decoupled`: the weight decay's kind where the
    group does not say (torch before 2.6 wrote no "decoupled_weight_decay" in a group:
    AdamW's was decoupled, Adam's not)."""
    return {"decoupled_weight_decay": group.get("decoupled_weight_decay", decoupled),
            **{key: group[key] for key in ("lr", "betas", "eps", "weight_decay", "amsgrad",
                                           "maximize")}}


def _adam_slots(group: dict) -> Tuple[str, ...]:
    """`_Kind.slots` of Adam and AdamW."""
    return ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if group["amsgrad"] else ())


def _adam_advance(group: dict, states: dict, param: torch.Tensor) -> Arguments:
    """`_Kind.advance` of Adam and AdamW; the step count as torch's float state["step"]
    holds it."""
    state = _first_state(states, param, _adam_slots(group))
    state["step"] += 1
    return ({key: state.get(key) for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")},
            {"step": state["step"].item()})


def _sgd_settings(group: dict) -> Dict[str, Any]:
    """`_Kind.settings` of SGD."""
    return {key: group[key] for key in ("lr", "momentum", "dampening", "nesterov",
                                        "weight_decay", "maximize")}


def _sgd_advance(group: dict, states: dict, param: torch.Tensor) -> Arguments:
    """`_Kind.advance` of SGD: its momentum buffer, made where torch makes it (at the first
    step with momentum, as a clone of the gradient: `first_momentum`)."""
    if group["momentum"] == 0:
        return {"momentum_buffer": None}, {"first_momentum": False}
    state = states[param]
    first = state.get("momentum_buffer") is None
    if first:
        state["momentum_buffer"] = _zeros_like(param)
    return {"momentum_buffer": state["momentum_buffer"]}, {"first_momentum": first}


# The optimizer classes whose CPU step `rln_core.fused` reproduces (exact types: a
# subclass may change the step).
OPTIMIZERS: Dict[type, _Kind] = {
    torch.optim.RMSprop: _Kind("rmsprop", _rmsprop_settings, _rmsprop_slots, _rmsprop_slots,
                               _rmsprop_advance),
    torch.optim.Adam: _Kind("adam", _adam_settings, _adam_slots, _adam_slots, _adam_advance),
    torch.optim.AdamW: _Kind("adam", functools.partial(_adam_settings, decoupled=True),
                             _adam_slots, _adam_slots, _adam_advance),
    # (SGD's momentum buffer is made at its first step with momentum, not the first step)
    torch.optim.SGD: _Kind("sgd", _sgd_settings, lambda group: (),
                           lambda group: ("momentum_buffer",) if group["momentum"] != 0 else (),
                           _sgd_advance),
}
