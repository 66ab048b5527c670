"""The implementation of the update for a tensor, resolved by the core's one registry.

`rln_core.implementations.resolve` decides; this module only translates:
- impl="torch" is the core's "array_api" run on the tensor itself (any device;
  `torch_update`, the path for CUDA and MPS).
- impl="auto" on a CPU tensor, "numba" or "numpy": `rln_core.update` on a
  NumPy view of the tensor's own memory (zero copy; CPU tensors only), where
  the core resolves "auto" (numba when it can be imported, else NumPy).
- impl="auto" on any other device: "torch".

Every implementation has the signature of `rln_core.update`:
`update(weights, state, *, avg_reg, learning_rate, norm, delta=None,
compute_dtype=None)`, in place; on NumPy views it takes NumPy arrays (and
np.float32 as compute_dtype), the torch one takes tensors (and torch.float32).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Optional

import rln_core
import torch
from rln_core.checks import one_update_at_a_time

IMPLS = ("auto", "numba", "numpy", "torch")


@dataclasses.dataclass(frozen=True)
class Implementation:
    """A resolved implementation.

    Attributes:
        name: "torch", or the `impl` handed to `rln_core.update` ("auto", "numba", "numpy").
        on_numpy: True when it runs on NumPy views of the tensors, False on the tensors.
        update: the in-place update, signature of `rln_core.update` without `impl`.
        prepare: for NumPy views, `rln_core.PreparedUpdate` with this impl (W, the state
            and compute_dtype checked once, then one call per step); None for "torch".
    """

    name: str
    on_numpy: bool
    update: Callable[..., object]
    prepare: Optional[Callable[..., rln_core.PreparedUpdate]] = None


@torch.no_grad()
def torch_update(weights: torch.Tensor, state: rln_core.RLNState, *,
                 delta: Optional[torch.Tensor] = None,
                 compute_dtype: Optional[torch.dtype] = None,
                 **hyperparameters) -> rln_core.RLNState:
    """One RLN update in torch ops, in place on `weights` and `state` (any device).

    The core's array-API function (`rln_core.array_api.update`, checked, pure)
    computes the new tensors; they are then copied into W and the state's
    own tensors, so nothing is written when the update is refused.

    Args:
        weights: W after the optimizer step, float32/float64 tensor, any shape.
        state: an `rln_core.RLNState` of tensors on W's device.
        delta: the weight change to learn from (W's shape and device), or None.
        compute_dtype: None (float64 arithmetic) or torch.float32 (float32 weights and
            state only); always float32 on MPS, which has no float64.
        **hyperparameters: avg_reg, learning_rate, norm (`rln_core.Hyperparameters`).

    Returns:
        `state` itself.

    Raises:
        TypeError, ValueError: as `rln_core.array_api.update` (another compute_dtype,
            float32 arithmetic on float64 weights or state, bad inputs, non-finite
            results), before anything is written.
    """
    with one_update_at_a_time(state):
        mps = weights.device.type == "mps"  # no float64 there
        new_weights, new_state = rln_core.array_api.update(
            weights, state, delta=delta, compute_dtype=torch.float32 if mps else compute_dtype,
            mean_dtype=None if mps or compute_dtype is None else torch.float64,
            **hyperparameters)
        weights.copy_(new_weights)
        state.prev_weights.copy_(new_weights)
        state.lambdas.copy_(new_state.lambdas)
        state.prev_reg.copy_(new_state.prev_reg)
        state.steps = new_state.steps
    return state


TORCH = Implementation("torch", on_numpy=False, update=torch_update)


def check_impl(impl: str) -> None:
    """Raise unless `impl` is one of `IMPLS`."""
    if not isinstance(impl, str) or impl not in IMPLS:
        raise ValueError(f"Invalid impl: {impl!r}; expected one of {IMPLS}")


def resolve(impl: str, tensor: torch.Tensor) -> Implementation:
    """The implementation for `impl` and `tensor`, by `rln_core.implementations.resolve`.

    Raises:
        ValueError: an unknown impl, or "numba"/"numpy" for a tensor not on the CPU.
        ImportError: impl="numba" without numba.
    """
    check_impl(impl)
    core_impl = "array_api" if impl == "torch" else impl
    on_cpu = tensor.device.type == "cpu"
    if not on_cpu and core_impl in rln_core.implementations.NUMPY_ONLY:
        raise ValueError(f"impl={impl!r} runs on CPU tensors only, got a tensor on "
                         f"{tensor.device}; use impl='auto' or 'torch'")
    target = tensor.detach().numpy() if on_cpu and core_impl != "array_api" else tensor
    if rln_core.implementations.resolve(core_impl, target) == "array_api":
        return TORCH
    return Implementation(impl, on_numpy=True,
                          update=functools.partial(rln_core.update, impl=impl),
                          prepare=functools.partial(rln_core.PreparedUpdate, impl=impl))
