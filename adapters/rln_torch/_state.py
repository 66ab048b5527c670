"""Per-parameter RLN state (the core's `RLNState`) and its state_dict entry.

The state of a CPU tensor updated through NumPy views holds NumPy arrays
(`rln_core.init`, in the tensor's memory order); on the torch path it holds
tensors on the parameter's device. Both are saved as the core's serialized
form (`RLNState.to_dict`) with tensors, so a checkpoint does not depend on the
implementation that wrote it, and older entries (no prev_reg at steps 0) load.
"""

from __future__ import annotations

from typing import Any, Dict, Union

import numpy as np
import rln_core
import torch
from rln_core.checks import dtype_name
from rln_core.state import STATE_FIELDS, check_avg_reg_fits, check_values, complete_fields

NUMPY_DTYPES = {torch.float64: np.dtype(np.float64), torch.float32: np.dtype(np.float32)}
STATE_DTYPES = tuple(NUMPY_DTYPES)
ARRAY_FIELDS = STATE_FIELDS[:3]


def init_state(weights: torch.Tensor, avg_reg: float, state_dtype: torch.dtype,
               on_numpy: bool) -> rln_core.RLNState:
    """lambdas = Theta, prev_weights = a copy of W, prev_reg = zeros, steps = 0.

    NumPy arrays (`rln_core.init` on a view of the CPU tensor) when `on_numpy`,
    else tensors on W's device with W's memory order.
    """
    weights = weights.detach()
    if on_numpy:
        return rln_core.init(weights.numpy(), avg_reg, state_dtype=NUMPY_DTYPES[state_dtype])
    check_avg_reg_fits(avg_reg, NUMPY_DTYPES[state_dtype])
    lambdas = torch.empty_like(weights, dtype=state_dtype)
    lambdas.fill_(avg_reg)
    return rln_core.RLNState(lambdas=lambdas, prev_weights=weights.clone(),
                             prev_reg=torch.zeros_like(lambdas))


def as_tensor(array: Union[np.ndarray, torch.Tensor]) -> torch.Tensor:
    """A tensor sharing memory with `array` (a NumPy array or a tensor)."""
    return torch.from_numpy(array) if isinstance(array, np.ndarray) else array


def state_to_dict(state: rln_core.RLNState) -> Dict[str, Any]:
    """The core's serialized form with tensors: copies of the arrays, "steps" an int."""
    return {key: as_tensor(value) if key in ARRAY_FIELDS else value
            for key, value in state.to_dict().items()}


def check_state_entry(entry: object, state: rln_core.RLNState, where: str) -> Dict[str, Any]:
    """An entry of `state_dict()["states"]`, checked against `state` and completed
    (`rln_core.state.complete_fields`); writes nothing.

    Raises:
        TypeError, ValueError: naming the entry and the field.
    """
    if not isinstance(entry, dict):
        raise TypeError(f"{where} must be a dict, got {type(entry).__name__}")
    fields = complete_fields(entry, where)
    for key in ARRAY_FIELDS:
        value, like = fields[key], getattr(state, key)
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{where}[{key!r}] must be a tensor, got {type(value).__name__}")
        if tuple(value.shape) != tuple(like.shape):
            raise ValueError(f"{where}[{key!r}] has shape {tuple(value.shape)} but this RLN's "
                             f"tensor has shape {tuple(like.shape)}")
        if dtype_name(value) != dtype_name(like):
            raise TypeError(f"{where}[{key!r}] has dtype {dtype_name(value)}, expected "
                            f"{dtype_name(like)}")
        if value.layout != torch.strided or value.device.type == "meta":
            raise ValueError(f"{where}[{key!r}] is a {value.layout} tensor on {value.device}; "
                             "expected a dense tensor with values")
    check_values(fields, where)
    return fields


def load_state_into(state: rln_core.RLNState, fields: Dict[str, Any]) -> None:
    """Copy checked fields into `state`'s own tensors/arrays (device and memory kept)."""
    for key in ARRAY_FIELDS:
        as_tensor(getattr(state, key)).copy_(fields[key])
    state.steps = fields["steps"]
