"""The one place that picks the implementation of the update for a tensor.

Precedence (`resolve_kernel`):
1. impl="torch": the torch-native kernel (`_torch_kernel.update`), any device.
2. impl="numba" or "numpy": that kernel of `rln_core.update`, on a NumPy view
   of the tensor's own memory (zero copy); CPU tensors only.
3. impl="auto": CPU tensors go to `rln_core.update(impl="auto")` (numba when it
   can be imported and can walk the memory layout, else NumPy); tensors on any
   other device (CUDA, MPS, ...) go to the torch-native kernel.

Every kernel has the signature of `rln_core.update`:
`update(weights, state, *, avg_reg, learning_rate, norm)`, in place; CPU
kernels take NumPy arrays and an `rln_core.RLNState`, the torch kernel takes
tensors and a `TensorState`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import rln_core
import torch

from rln_torch import _torch_kernel

IMPLS = ("auto", "numba", "numpy", "torch")


@dataclasses.dataclass(frozen=True)
class Kernel:
    """A resolved implementation.

    Attributes:
        name: "torch", or the `impl` passed to `rln_core.update` ("auto", "numba", "numpy").
        on_numpy: True when it runs on NumPy views (the core), False for torch tensors.
        update: the update function, signature of `rln_core.update` without `impl`.
    """

    name: str
    on_numpy: bool
    update: Callable[..., object]


TORCH_KERNEL = Kernel("torch", on_numpy=False, update=_torch_kernel.update)


def check_impl(impl: str) -> None:
    """Raise unless `impl` is one of `IMPLS`."""
    if impl not in IMPLS:
        raise ValueError(f"Invalid impl: {impl!r}; expected one of {IMPLS}")


def resolve_kernel(impl: str, device: torch.device) -> Kernel:
    """The kernel for `impl` and a tensor on `device` (precedence: module docstring)."""
    check_impl(impl)
    if impl == "torch" or (impl == "auto" and device.type != "cpu"):
        return TORCH_KERNEL
    if device.type != "cpu":
        raise ValueError(f"impl={impl!r} runs on CPU tensors only, got a tensor on {device}; "
                         "use impl='auto' or 'torch'")
    return Kernel(impl, on_numpy=True, update=functools.partial(rln_core.update, impl=impl))
