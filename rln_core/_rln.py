"""`RLN`: a small object on top of `init` and `update`, for one tensor."""

from __future__ import annotations

from typing import Optional

import numpy as np

from rln_core import inspection
from rln_core._update import update
from rln_core.hyperparameters import DEFAULTS, Hyperparameters, WithHyperparameters
from rln_core.implementations import check_impl
from rln_core.state import RLNState, check_state_dtype, init


class RLN(WithHyperparameters):
    """Regularization Learning for one NumPy weight tensor, updated in place.

    Example:
        rln = RLN(avg_reg=-10.0, learning_rate=1e6, norm=1)
        rln.begin(W)            # at the start of training
        ...                     # after every optimizer step on W:
        rln.update(W)

    Args:
        avg_reg: Theta, the mean of the log coefficients (natural log).
        learning_rate: nu, the step size of the lambdas (>= 0).
        norm: 1 (L1) or 2 (L2).
        impl: "auto", "numba", "numpy" or "array_api" (see `rln_core.implementations`).
        state_dtype: float64 (default) or float32 for lambdas and prev_reg.

    Raises:
        ValueError: a bad hyperparameter or impl. TypeError: another state_dtype.
        RuntimeError: `update`, `lambdas`, `sparsity`, `input_importance` or
            `active_inputs` before `begin`. `begin` and `update` raise as `rln_core.init`
            and `rln_core.update` do (ImportError: impl="numba" without numba, at the
            first update).
    """

    def __init__(self, avg_reg: float = DEFAULTS.avg_reg,
                 learning_rate: float = DEFAULTS.learning_rate, norm: int = DEFAULTS.norm,
                 impl: str = "auto", state_dtype: "np.typing.DTypeLike" = np.float64):
        self.hyperparameters = Hyperparameters(avg_reg, learning_rate, norm)
        check_impl(impl)
        self.state_dtype = check_state_dtype(state_dtype)
        self.impl = impl
        self.state: Optional[RLNState] = None

    def begin(self, weights: np.ndarray) -> RLNState:
        """Start (or restart) RLN on `weights`: fresh state, lambdas = Theta."""
        self.state = init(weights, self.avg_reg, state_dtype=self.state_dtype)
        return self.state

    def update(self, weights: np.ndarray, delta: Optional[np.ndarray] = None) -> np.ndarray:
        """Apply one update to `weights` in place (after an optimizer step); return them.

        Args:
            weights: W after the optimizer step.
            delta: the weight change to learn from, or None for W - prev_weights.
        """
        if self.state is None:
            raise RuntimeError("RLN.update() called before RLN.begin(weights)")
        update(weights, self.state, impl=self.impl, delta=delta, **self.hyperparameters.asdict())
        return weights

    @property
    def lambdas(self) -> np.ndarray:
        """The current log coefficients (a view of the state; shape of W)."""
        if self.state is None:
            raise RuntimeError("RLN has no state yet; call begin(weights) first")
        return self.state.lambdas

    def sparsity(self) -> float:
        """Fraction of W exactly 0 after the last update."""
        return inspection.sparsity(self._weights_after_update())

    def input_importance(self, input_axis: int = 0) -> np.ndarray:
        """Per-input sum of |w| after the last update (see `rln_core.inspection`)."""
        return inspection.input_importance(self._weights_after_update(), input_axis)

    def active_inputs(self, input_axis: int = 0) -> np.ndarray:
        """Boolean mask (n_inputs,) of inputs that keep a non-zero weight (last update)."""
        return inspection.active_inputs(self._weights_after_update(), input_axis)

    def _weights_after_update(self) -> np.ndarray:
        if self.state is None:
            raise RuntimeError("RLN has no state yet; call begin(weights) first")
        return self.state.prev_weights
