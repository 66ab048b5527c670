"""The per-tensor RLN state: plain arrays, easy to checkpoint and inspect."""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from rln_core._validation import check_avg_reg, check_weights

STATE_DTYPES = (np.dtype(np.float64), np.dtype(np.float32))


@dataclasses.dataclass
class RLNState:
    """State of RLN for one regularized tensor W.

    The dataclass is mutable on purpose: the in-place update (`rln_core.update`)
    fills `prev_reg` on its first call and advances `steps`. The pure reference
    (`rln_core.reference.update`) never mutates it and returns a new one.

    Attributes:
        lambdas: log regularization coefficients, shape=W.shape,
            dtype=state dtype (float64 by default, float32 optionally).
        prev_weights: W as written back by the previous update,
            shape=W.shape, dtype=W.dtype.
        prev_reg: regularization step applied by the previous update,
            shape=W.shape, dtype=state dtype; None before the first update.
        steps: number of updates applied so far.
    """

    lambdas: np.ndarray
    prev_weights: np.ndarray
    prev_reg: Optional[np.ndarray] = None
    steps: int = 0

    def to_dict(self) -> dict:
        """Return the state as a flat dict of arrays (for `np.savez`, checkpoints)."""
        out = {"lambdas": self.lambdas, "prev_weights": self.prev_weights,
               "steps": np.int64(self.steps)}
        if self.prev_reg is not None:
            out["prev_reg"] = self.prev_reg
        return out

    @classmethod
    def from_dict(cls, arrays: dict) -> "RLNState":
        """Rebuild a state from `to_dict()` output (copies every array)."""
        missing = {"lambdas", "prev_weights", "steps"} - set(arrays)
        if missing:
            raise ValueError(f"RLN state dict is missing {sorted(missing)}")
        prev_reg = arrays.get("prev_reg")
        state = cls(
            lambdas=np.array(arrays["lambdas"]),
            prev_weights=np.array(arrays["prev_weights"]),
            prev_reg=None if prev_reg is None else np.array(prev_reg),
            steps=int(arrays["steps"]),
        )
        check_state_arrays(state)
        return state

    def copy(self) -> "RLNState":
        """Deep copy (every array copied)."""
        return dataclasses.replace(
            self,
            lambdas=self.lambdas.copy(),
            prev_weights=self.prev_weights.copy(),
            prev_reg=None if self.prev_reg is None else self.prev_reg.copy(),
        )


def init(weights: np.ndarray, avg_reg: float = -10.0,
         state_dtype: "np.typing.DTypeLike" = np.float64) -> RLNState:
    """Create the RLN state for a weight tensor.

    Args:
        weights: the regularized tensor W, any shape, float32 or float64.
        avg_reg: Theta, the initial value and the mean of the lambdas (natural log).
        state_dtype: dtype of `lambdas` and `prev_reg`: float64 (exact, the
            default) or float32 (half the memory traffic; see README for its tolerance).

    Returns:
        lambdas = Theta everywhere, prev_weights = a copy of W, no prev_reg, steps = 0.
        The arrays keep W's memory order, so views of W and state line up.
    """
    weights = np.asarray(weights)
    check_weights(weights, writable=False)
    check_avg_reg(avg_reg)
    dtype = check_state_dtype(state_dtype)
    lambdas = np.empty_like(weights, dtype=dtype)
    lambdas.fill(avg_reg)
    return RLNState(lambdas=lambdas, prev_weights=weights.copy(order="K"))


def check_state_dtype(state_dtype: "np.typing.DTypeLike") -> np.dtype:
    """The state dtype as a NumPy dtype: float64 or float32; raise otherwise."""
    dtype = np.dtype(state_dtype)
    if dtype not in STATE_DTYPES:
        raise TypeError(f"state_dtype must be float64 or float32, got {dtype}")
    return dtype


def check_state_arrays(state: RLNState) -> None:
    """Check the state is self-consistent (dtypes, shapes); raise otherwise."""
    if not isinstance(state, RLNState):
        raise TypeError(f"state must be an RLNState, got {type(state).__name__}")
    lambdas = state.lambdas
    if not isinstance(lambdas, np.ndarray) or lambdas.dtype not in STATE_DTYPES:
        raise TypeError("state.lambdas must be a float64 or float32 ndarray")
    check_weights(state.prev_weights, writable=False, name="state.prev_weights")
    if state.prev_weights.shape != lambdas.shape:
        raise ValueError(
            f"state.prev_weights has shape {state.prev_weights.shape}, "
            f"state.lambdas has shape {lambdas.shape}")
    if state.prev_reg is not None:
        prev_reg = state.prev_reg
        if not isinstance(prev_reg, np.ndarray) or prev_reg.dtype != lambdas.dtype:
            raise TypeError(
                f"state.prev_reg must be an ndarray of the lambdas' dtype {lambdas.dtype}")
        if prev_reg.shape != lambdas.shape:
            raise ValueError(
                f"state.prev_reg has shape {prev_reg.shape}, expected {lambdas.shape}")
    if not isinstance(state.steps, (int, np.integer)) or state.steps < 0:
        raise ValueError(f"state.steps must be a non-negative int, got {state.steps!r}")
    if state.steps > 0 and state.prev_reg is None:
        raise ValueError(f"state.steps is {state.steps} but state.prev_reg is None")
