"""Per-parameter RLN state as torch tensors, and its state_dict form.

The CPU path keeps the core's `rln_core.RLNState` (NumPy arrays, updated in
place by the numba kernel); the torch-native path keeps a `TensorState` with
the same fields on the parameter's device. Both are saved in one format,
`state_to_dict` / `load_state_into`, so a checkpoint does not depend on the
implementation that wrote it.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Union

import numpy as np
import rln_core
import torch

NUMPY_DTYPES = {torch.float64: np.dtype(np.float64), torch.float32: np.dtype(np.float32)}
STATE_DTYPES = tuple(NUMPY_DTYPES)
STATE_KEYS = frozenset({"lambdas", "prev_weights", "prev_reg", "steps"})


@dataclasses.dataclass
class TensorState:
    """State of RLN for one tensor W, as torch tensors on W's device.

    Attributes:
        lambdas: log regularization coefficients, shape=W.shape, dtype=state dtype.
        prev_weights: W as written back by the previous update, shape=W.shape, dtype=W.dtype.
        prev_reg: regularization step of the previous update, shape=W.shape,
            dtype=state dtype; None before the first update.
        steps: number of updates applied so far.
    """

    lambdas: torch.Tensor
    prev_weights: torch.Tensor
    prev_reg: Optional[torch.Tensor] = None
    steps: int = 0


AnyState = Union[TensorState, rln_core.RLNState]


def init_tensor_state(weights: torch.Tensor, avg_reg: float,
                      state_dtype: torch.dtype) -> TensorState:
    """The torch twin of `rln_core.init`: lambdas = Theta, prev_weights = a copy of W."""
    weights = weights.detach()
    lambdas = torch.empty_like(weights, dtype=state_dtype)
    lambdas.fill_(avg_reg)
    return TensorState(lambdas=lambdas, prev_weights=weights.clone())


def init_numpy_state(weights: torch.Tensor, avg_reg: float,
                     state_dtype: torch.dtype) -> rln_core.RLNState:
    """`rln_core.init` on a CPU tensor (the state's arrays keep W's memory order)."""
    return rln_core.init(weights.detach().numpy(), avg_reg, state_dtype=NUMPY_DTYPES[state_dtype])


def as_tensor(array: Union[np.ndarray, torch.Tensor]) -> torch.Tensor:
    """A tensor sharing memory with `array` (a NumPy array or a tensor)."""
    return torch.from_numpy(array) if isinstance(array, np.ndarray) else array


def state_to_dict(state: AnyState) -> dict:
    """Copies of a state's tensors: {"lambdas", "prev_weights", ["prev_reg"], "steps"}."""
    out = {"lambdas": as_tensor(state.lambdas).clone(),
           "prev_weights": as_tensor(state.prev_weights).clone(),
           "steps": int(state.steps)}
    if state.prev_reg is not None:
        out["prev_reg"] = as_tensor(state.prev_reg).clone()
    return out


def check_state_entry(entry: object, state: AnyState, where: str) -> None:
    """Raise unless `entry` (one `state_to_dict` output) fits `state`; writes nothing."""
    if not isinstance(entry, dict):
        raise TypeError(f"{where} must be a dict, got {type(entry).__name__}")
    keys = set(entry)
    if not {"lambdas", "prev_weights", "steps"} <= keys <= STATE_KEYS:
        raise ValueError(f"{where} has keys {sorted(keys)}; expected lambdas, prev_weights, "
                         "steps and, after the first update, prev_reg")
    for key in sorted(keys - {"steps"}):
        value, like = entry[key], as_tensor(
            state.prev_weights if key == "prev_weights" else state.lambdas)
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{where}[{key!r}] must be a tensor, got {type(value).__name__}")
        if value.shape != like.shape:
            raise ValueError(f"{where}[{key!r}] has shape {tuple(value.shape)} but this RLN's "
                             f"tensor has shape {tuple(like.shape)}")
        if value.dtype != like.dtype:
            raise TypeError(f"{where}[{key!r}] has dtype {value.dtype}, expected {like.dtype}")
    steps = _steps(entry)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"{where}['steps'] must be an int >= 0, got {steps!r}")
    if (steps > 0) != ("prev_reg" in entry):
        raise ValueError(f"{where} has steps={steps} but "
                         f"{'no' if steps > 0 else 'a'} prev_reg")


def load_state_into(state: AnyState, entry: dict) -> None:
    """Copy a checked entry into `state`'s own tensors/arrays (device and memory kept)."""
    as_tensor(state.lambdas).copy_(entry["lambdas"])
    as_tensor(state.prev_weights).copy_(entry["prev_weights"])
    if "prev_reg" not in entry:
        state.prev_reg = None
    else:
        if state.prev_reg is None:
            state.prev_reg = empty_like(state.lambdas)
        as_tensor(state.prev_reg).copy_(entry["prev_reg"])
    state.steps = int(_steps(entry))


def _steps(entry: dict) -> object:
    """An entry's "steps", unwrapped from a one-element tensor (as torch.load may give it)."""
    steps = entry["steps"]
    return steps.item() if isinstance(steps, torch.Tensor) and steps.numel() == 1 else steps


def empty_like(array: Union[np.ndarray, torch.Tensor]) -> Union[np.ndarray, torch.Tensor]:
    """An uninitialized array or tensor of `array`'s kind, shape, dtype and memory order."""
    return np.empty_like(array) if isinstance(array, np.ndarray) else torch.empty_like(array)
