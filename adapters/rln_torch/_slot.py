"""One regularized parameter: the tensor, its state, its implementation and cached views.

The Parameter object is never replaced: the update writes into the tensor's
own memory, through a NumPy view of it (CPU) or a detached alias (torch path).
The views are made once and remade only if something rebinds the tensor's
memory (`param.data = ...`, `module.to(memory_format=...)`: then the state's
arrays follow the new memory order). `module.load_state_dict(..., assign=True)`
replaces the Parameter objects themselves: RLN keeps regularizing the old ones,
so make the RLN after it.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np
import rln_core
import torch

from rln_torch._impls import Implementation
from rln_torch._state import ARRAY_FIELDS, init_state


class ParamSlot:
    """RLN's view of one parameter, updated by `update` after each optimizer step.

    Args:
        param: the Parameter (checked by `collect_params`).
        implementation: the resolved implementation.
        avg_reg: Theta, the initial lambdas.
        state_dtype: torch.float64 or torch.float32.
        name: how errors name this parameter (e.g. "parameter 0").
        compute32: float32 arithmetic (float32 parameter and state, checked by `RLN`).
    """

    def __init__(self, param: torch.Tensor, implementation: Implementation, avg_reg: float,
                 state_dtype: torch.dtype, name: str, compute32: bool = False):
        self.param = param
        self.implementation = implementation
        self.name = name
        # in the array library the implementation runs on
        single = np.float32 if implementation.on_numpy else torch.float32
        self.compute_dtype = single if compute32 else None
        self.state = init_state(param, avg_reg, state_dtype, implementation.on_numpy)
        self._delta: Optional[torch.Tensor] = None  # gradient mode's -grad, reused
        self._prepared: Optional[rln_core.PreparedUpdate] = None  # see `_update`
        self._bind()

    def _bind(self) -> None:
        self.tensor = self.param.detach()
        self.weights = self.tensor.numpy() if self.implementation.on_numpy else self.tensor
        self.memory = self._memory()

    def _memory(self) -> Tuple[int, Tuple[int, ...]]:
        return self.param.data_ptr(), self.param.stride()

    def check(self, needs_grad: bool) -> None:
        """Raise if the parameter no longer fits its state; rebind moved memory."""
        param, lambdas = self.param, self.state.lambdas
        if param.shape != lambdas.shape:  # torch.Size compares with a tuple
            raise ValueError(
                f"{self.name} has shape {tuple(param.shape)} but its RLN state was made for "
                f"shape {tuple(lambdas.shape)}; make a new RLN for a resized layer")
        # A new dtype or device means new memory: `self.tensor` keeps the old
        # memory alive, so its address cannot be reused by the new one.
        if self._memory() != self.memory:
            if param.dtype != self.tensor.dtype or param.device != self.tensor.device:
                raise ValueError(
                    f"{self.name} is now {param.dtype} on {param.device} but its RLN state "
                    f"was made for {self.tensor.dtype} on {self.tensor.device}; create the "
                    "RLN after moving or casting the model")
            self._bind()
            self._follow_layout()
        if needs_grad:
            grad = param.grad
            if grad is None:
                raise RuntimeError(
                    f"{self.name} has no .grad; mode='gradient' needs step() after "
                    "loss.backward() and optimizer.step(), before zero_grad()")
            if grad.layout != torch.strided:
                raise ValueError(f"{self.name}.grad has layout {grad.layout}; mode='gradient' "
                                 "needs dense gradients")

    def _follow_layout(self) -> None:
        """After a rebind into another memory order (`module.to(memory_format=
        torch.channels_last)`): the state's arrays copied into the tensor's new order (the
        same values), so the kernels walk W and its state together; the state object is
        kept, its arrays replaced (`PreparedUpdate` and `FusedStep` check them again)."""
        order = _element_strides(self.weights)
        state = self.state
        for key in ARRAY_FIELDS:
            array = getattr(state, key)
            if _element_strides(array) != order:
                like = (np.empty_like(self.weights, dtype=array.dtype)
                        if isinstance(array, np.ndarray)
                        else torch.empty_like(self.tensor, dtype=array.dtype))
                like[...] = array
                setattr(state, key, like)

    def refused(self, error: Exception) -> Exception:
        """`error` (a refused update of this tensor) again, its message naming the tensor."""
        named = type(error)(f"RLN update of {self.name} {tuple(self.param.shape)}: {error}")
        named.__cause__ = error
        return named

    def update(self, hyperparameters: rln_core.Hyperparameters) -> None:
        """One update that learns from the weight change (mode="delta")."""
        self._update(hyperparameters, None)

    def _update(self, hyperparameters: rln_core.Hyperparameters,
                delta: Optional[Any]) -> None:
        """The implementation's update; on NumPy views through a `rln_core.PreparedUpdate`,
        made again when the weights or the state are other objects (`_bind`, a loaded
        checkpoint)."""
        prepare = self.implementation.prepare
        if prepare is None:
            self.implementation.update(self.weights, self.state, delta=delta,
                                       compute_dtype=self.compute_dtype,
                                       **hyperparameters.asdict())
            return
        prepared = self._prepared
        if not self.made_for(prepared):
            prepared = self._prepared = prepare(self.weights, self.state,
                                                compute_dtype=self.compute_dtype)
        prepared(hyperparameters, delta)

    def made_for(self, prepared: Any) -> bool:
        """Whether `prepared` (a `rln_core.PreparedUpdate` or `fused.FusedStep`, or None)
        was made for this slot's weights and state as they are now."""
        return prepared is not None and prepared.weights is self.weights \
            and prepared.state is self.state

    def update_from_gradient(self, hyperparameters: rln_core.Hyperparameters) -> None:
        """One update whose lambda step learns from delta = -grad (mode="gradient").

        The lambda step becomes `lambdas += learning_rate * grad * prev_reg`;
        -grad is written into a buffer kept for the next step (one pass).
        """
        grad = self.param.grad
        if self._delta is None or self._delta.dtype != grad.dtype \
                or self._delta.device != grad.device:
            self._delta = torch.empty_like(self.tensor)
        torch.neg(grad, out=self._delta)
        self._update(hyperparameters,
                     self._delta.numpy() if self.implementation.on_numpy else self._delta)


def _element_strides(array: Any) -> Tuple[int, ...]:
    """The strides of a NumPy array or a tensor in elements (what a memory order is)."""
    if isinstance(array, np.ndarray):
        return tuple(stride // array.itemsize for stride in array.strides)
    return tuple(array.stride())
