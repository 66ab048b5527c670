"""The tutorial's network: its shape, its weights as arrays, and its forward pass."""

from __future__ import annotations

import dataclasses

import numpy as np


MIN_WIDTH = 6
"""The narrowest hidden layer: the tutorial's own narrowest (1010 inputs -> 179, 32, 6).
Without a floor, 2 inputs gave widths [2, 1, 1]: a one-unit ReLU bottleneck."""


def hidden_widths(n_features: int, layers: int, min_width: int = MIN_WIDTH) -> list[int]:
    """Widths of the hidden layers: a geometric series from the input width down.

    Args:
        n_features: width of the input.
        layers: number of Dense layers including the output layer (>= 1).
        min_width: no hidden layer is narrower than this.

    Returns:
        `layers - 1` widths, max(min_width, round(exp(log(n_features) * k /
        layers))) for k = layers-1 .. 1 (the tutorial's formula, with a floor);
        empty for layers == 1.
    """
    return [max(min_width, int(np.round(np.exp(np.log(n_features) * k / layers))))
            for k in range(layers - 1, 0, -1)]


@dataclasses.dataclass
class NetworkWeights:
    """The trained weights of a ReLU multilayer perceptron, framework-free.

    Attributes:
        coefs: one float32 array per Dense layer, shape (n_in, n_out) (the
            Keras/NumPy `x @ W` layout, as in `MLPRegressor.coefs_`).
        intercepts: one float32 array per layer, shape (n_out,).
        lambdas: RLN's log coefficients of the first layer, shape of
            coefs[0]; None when the network was trained without RLN.
    """

    coefs: list[np.ndarray]
    intercepts: list[np.ndarray]
    lambdas: np.ndarray | None = None


def forward(weights: NetworkWeights, X: np.ndarray) -> np.ndarray:
    """Raw network outputs (no output activation), shape (n_samples, n_outputs), float64.

    Computed in float64 from the float32 weights: BLAS's float32 products round a row
    differently with its position in the batch (by up to 1e-5 relative where the
    output nearly cancels, measured), so a prediction would depend on the other rows;
    in float64 that difference is about 1e-16.
    """
    activation = np.asarray(X, dtype=np.float64)
    last = len(weights.coefs) - 1
    for i, (coef, intercept) in enumerate(zip(weights.coefs, weights.intercepts)):
        activation = activation @ coef + intercept
        if i < last:
            np.maximum(activation, 0.0, out=activation)
    return activation
