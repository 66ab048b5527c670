"""One regularized parameter: the tensor, its state, its kernel and cached views.

The Parameter object is never replaced: the kernel writes into the tensor's
own memory, through a NumPy view of it (CPU) or a detached alias (torch path).
The views are made once and remade only if something rebinds the tensor's
memory (`param.data = ...`, `load_state_dict(..., assign=True)`).
"""

from __future__ import annotations

from typing import Tuple, Union

import numpy as np
import torch

from rln_torch._kernels import Kernel
from rln_torch._state import AnyState, as_tensor, empty_like, init_numpy_state, init_tensor_state


class ParamSlot:
    """RLN's view of one parameter, updated by `step` after each optimizer step.

    Args:
        param: the Parameter (checked by `collect_params`).
        kernel: the resolved implementation.
        avg_reg: Theta, the initial lambdas.
        state_dtype: torch.float64 or torch.float32.
        name: how errors name this parameter (e.g. "parameter 0").
    """

    def __init__(self, param: torch.Tensor, kernel: Kernel, avg_reg: float,
                 state_dtype: torch.dtype, name: str):
        self.param = param
        self.kernel = kernel
        self.name = name
        init = init_numpy_state if kernel.on_numpy else init_tensor_state
        self.state: AnyState = init(param, avg_reg, state_dtype)
        self.spare_prev_weights: Union[np.ndarray, torch.Tensor, None] = None
        self._bind()

    def _bind(self) -> None:
        self.tensor = self.param.detach()
        self.weights = self.tensor.numpy() if self.kernel.on_numpy else self.tensor
        self.memory = self._memory()

    def _memory(self) -> Tuple[int, Tuple[int, ...]]:
        return self.param.data_ptr(), self.param.stride()

    def check(self, needs_grad: bool) -> None:
        """Raise if the parameter no longer fits its state; rebind moved memory."""
        param, lambdas = self.param, self.state.lambdas
        if param.shape != lambdas.shape:
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
        if needs_grad:
            grad = param.grad
            if grad is None:
                raise RuntimeError(
                    f"{self.name} has no .grad; mode='gradient' needs step() after "
                    "loss.backward() and optimizer.step(), before zero_grad()")
            if grad.layout != torch.strided:
                raise ValueError(f"{self.name}.grad has layout {grad.layout}; mode='gradient' "
                                 "needs dense gradients")

    def update(self, hyperparameters: dict) -> None:
        """One update from the weight change (mode="delta")."""
        self.kernel.update(self.weights, self.state, **hyperparameters)

    def update_from_gradient(self, hyperparameters: dict) -> None:
        """One update whose lambda step uses .grad in place of the weight change.

        The kernel learns from delta = W - prev_weights, so it is handed
        prev_weights = W + grad (in W's dtype), which makes delta = -grad:
        the lambda step becomes `lambdas += learning_rate * grad * prev_reg`.
        That buffer and the real prev_weights swap roles (no copy); on an
        error the real one is put back, so nothing is modified.
        """
        state = self.state
        spare = self.spare_prev_weights
        if spare is None:
            spare = empty_like(state.prev_weights)
        torch.add(self.tensor, self.param.grad, out=as_tensor(spare))
        kept, state.prev_weights = state.prev_weights, spare
        try:
            self.kernel.update(self.weights, state, **hyperparameters)
        except Exception:
            state.prev_weights, self.spare_prev_weights = kept, spare
            raise
        self.spare_prev_weights = kept
