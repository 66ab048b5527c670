"""The authors' callback steps in pandas, the baseline our benchmarks beat.

The original Keras callback (Shavitt & Segal, 2018) keeps the lambdas, the
previous weights and the previous regularization step in pandas DataFrames of
the transposed kernel, and does every step as DataFrame arithmetic, allocating
new frames on every batch. `PandasRLN` repeats those steps one for one, on
today's pandas (`clip(upper=...)` for the removed `clip_upper`), without Keras:
the caller reads the kernel, calls `update`, and writes the result back, as the
callback does with `K.eval` and `K.set_value`. Benchmarks only; it is not part
of the package and not the spec (see `rln_core.reference` for that).

    baseline = PandasRLN(avg_reg=-10.0, learning_rate=1e6, norm=1)
    baseline.begin(kernel)                # at train begin
    kernel = baseline.update(kernel)      # after every optimizer step
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from pandas import DataFrame


class PandasRLN:
    """RLN on one 2-D kernel, with the original callback's pandas formulation.

    Args:
        avg_reg: Theta, the mean of the lambdas (natural log).
        learning_rate: nu, the step size of the lambdas.
        norm: 1 (L1) or 2 (L2).
    """

    def __init__(self, avg_reg: float = -10.0, learning_rate: float = 1e6, norm: int = 1):
        if norm not in (1, 2):
            raise ValueError(f"Invalid norm: {norm!r}; expected 1 or 2")
        self.avg_reg = avg_reg
        self.learning_rate = learning_rate
        self.norm = norm
        self.lambdas: Optional[DataFrame] = None
        self._weights: Optional[DataFrame] = None
        self._prev_regularization: Optional[DataFrame] = None

    def begin(self, weights_2d: np.ndarray) -> None:
        """Start on a kernel of shape (in, out): lambdas = Theta, shape (out, in)."""
        self.lambdas = DataFrame(np.ones(weights_2d.T.shape) * self.avg_reg)
        self._weights = DataFrame(weights_2d.T)
        self._prev_regularization = None

    def update(self, weights_2d: np.ndarray) -> np.ndarray:
        """One update of the kernel after an optimizer step.

        Args:
            weights_2d: the kernel (in, out) as the optimizer left it.

        Returns:
            The new kernel, shape (in, out), in the dtype of `weights_2d`
            (the cast `K.set_value` does in the original).
        """
        if self.lambdas is None:
            raise RuntimeError("PandasRLN.update() called before begin(weights_2d)")
        prev_weights = self._weights
        self._weights = DataFrame(weights_2d.T)
        gradients = self._weights - prev_weights

        if self.norm == 1:
            norms_derivative = np.sign(self._weights)
        else:
            norms_derivative = self._weights * 2

        if self._prev_regularization is not None:
            lambda_gradients = gradients.multiply(self._prev_regularization)
            self.lambdas -= self.learning_rate * lambda_gradients
            translation = self.avg_reg - self.lambdas.mean().mean()
            self.lambdas += translation

        max_lambda_values = np.log(np.abs(self._weights / norms_derivative)).fillna(np.inf)
        self.lambdas = self.lambdas.clip(upper=max_lambda_values)

        regularization = norms_derivative.multiply(np.exp(self.lambdas))
        self._weights -= regularization
        self._prev_regularization = regularization
        return self._weights.values.T.astype(weights_2d.dtype)

    def lambdas_2d(self) -> np.ndarray:
        """The lambdas in the kernel's layout (in, out), float64."""
        if self.lambdas is None:
            raise RuntimeError("PandasRLN has no state yet; call begin(weights_2d) first")
        return self.lambdas.values.T
