"""Turn what a user passes to `RLN` into a checked list of parameters."""

from __future__ import annotations

from typing import List, Sequence, Tuple, Union

import torch

from rln_torch._state import STATE_DTYPES as WEIGHT_DTYPES

Target = Union[torch.nn.Module, torch.Tensor]


def collect_params(target: Union[Target, Sequence[Target]]) -> List[torch.Tensor]:
    """The tensors to regularize: a module's `.weight`, a Parameter, or a list of either.

    Raises:
        TypeError, ValueError: naming the item, for a module without a `.weight`
            tensor, a non-float tensor, a frozen (requires_grad=False) or
            non-leaf tensor, an empty or sparse one, or the same memory twice (one
            tensor, or two Parameters over one storage, e.g. tied weights).
    """
    items = list(target) if isinstance(target, (list, tuple)) else [target]
    if not items:
        raise ValueError("RLN needs at least one module or parameter, got an empty list")
    params: List[torch.Tensor] = []
    for index, item in enumerate(items):
        where = "target" if len(items) == 1 and not isinstance(target, (list, tuple)) \
            else f"target[{index}]"
        param = _param_of(item, where)
        for seen_index, seen in enumerate(params):
            if overlap(param, seen):
                raise ValueError(f"{where} shares memory with item {seen_index} of the list "
                                 "(the same tensor, or tied weights); regularize it once")
        params.append(param)
    return params


def memory_range(tensor: torch.Tensor) -> Tuple[torch.device, int, int]:
    """(device, first byte, one past the last byte) of the memory `tensor` can reach."""
    if tensor.numel() == 0:
        return tensor.device, 0, 0
    start = tensor.data_ptr()
    span = sum((size - 1) * abs(stride) for size, stride in zip(tensor.shape, tensor.stride()))
    return tensor.device, start, start + (span + 1) * tensor.element_size()


def overlap(first: torch.Tensor, second: torch.Tensor) -> bool:
    """Whether two tensors may share memory (ranges intersect on one device)."""
    (device_a, start_a, end_a), (device_b, start_b, end_b) = (memory_range(first),
                                                              memory_range(second))
    return device_a == device_b and start_a < end_b and start_b < end_a


def _param_of(item: object, where: str) -> torch.Tensor:
    if isinstance(item, torch.nn.Module):
        weight = getattr(item, "weight", None)
        if not isinstance(weight, torch.Tensor):
            raise TypeError(
                f"{where} is a {type(item).__name__} without a .weight tensor; pass a layer "
                "with a weight (e.g. model[0]) or the Parameter itself")
        where, item = f"{where}.weight", weight
    if not isinstance(item, torch.Tensor):
        raise TypeError(f"{where} must be an nn.Module with a .weight or a Parameter, "
                        f"got {type(item).__name__}")
    if item.dtype not in WEIGHT_DTYPES:
        raise TypeError(f"{where} has dtype {item.dtype}; RLN regularizes float32 or float64 "
                        "tensors")
    if not item.requires_grad:
        raise ValueError(f"{where} is frozen (requires_grad=False): no optimizer trains it, "
                         "so there is nothing to regularize")
    if not item.is_leaf:
        raise ValueError(f"{where} is not a leaf tensor (it is computed from others); pass "
                         "the Parameter the optimizer updates")
    if item.layout != torch.strided:
        raise ValueError(f"{where} has layout {item.layout}; RLN needs a dense tensor")
    if item.numel() == 0:
        raise ValueError(f"{where} is empty (shape {tuple(item.shape)})")
    return item
