"""`eager`: run RLN's hooks and `RLN.step` outside `torch.compile`'s tracing.

RLN's update reads tensors as NumPy arrays and calls numba (or, off the CPU, checks
values on the host): nothing TorchDynamo can trace. A compiled `optimizer.step()`
(`torch.compile(optimizer.step)`, as torch's optimizer tutorials compile it) runs the
optimizer's step hooks inside the traced function, where the fused hooks failed after
the other parameters' step had been counted. Under tracing, `eager` hands the call to
`torch.compiler.disable`: TorchDynamo breaks the graph there and runs it as ordinary
Python. Outside tracing it adds one flag read, and `rln_torch` does not import
TorchDynamo (about 1.3 s) for users who never compile.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

import torch

F = TypeVar("F", bound=Callable[..., Any])


def eager(function: F) -> F:
    """`function`, run as ordinary Python even when called inside a compiled function."""

    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> Any:
        if torch.compiler.is_compiling():
            return torch.compiler.disable(function)(*args, **kwargs)
        return function(*args, **kwargs)

    return run  # type: ignore[return-value]
