"""What RLN did to a tensor: sparsity and per-input importance.

Which axis is the "input" axis depends on the framework's layout:

| layout                                   | shape              | input_axis |
|------------------------------------------|--------------------|------------|
| Keras Dense kernel, NumPy `x @ W`        | (in, out)          | 0          |
| PyTorch `nn.Linear.weight`               | (out, in)          | 1          |
| Keras Conv2D kernel                      | (kh, kw, in, out)  | -2         |
| PyTorch `nn.Conv2d.weight`               | (out, in, kh, kw)  | 1          |
"""

from __future__ import annotations

import numpy as np


def sparsity(weights: np.ndarray) -> float:
    """Fraction of the elements of `weights` that are exactly 0.0, in [0, 1].

    Raises:
        TypeError: `weights` is not a real numeric array (a string, None, complex).
        ValueError: an empty tensor.
    """
    weights = _real_array(weights)
    if weights.size == 0:
        raise ValueError("sparsity of an empty tensor is undefined")
    return float(np.count_nonzero(weights == 0) / weights.size)


def input_importance(weights: np.ndarray, input_axis: int = 0) -> np.ndarray:
    """Per-input importance: sum of |w| over every axis but `input_axis`.

    Args:
        weights: a first-layer weight tensor (see the module table for layouts).
        input_axis: the axis indexing the layer's inputs (0 for (in, out) kernels).

    Returns:
        float64 array of shape (n_inputs,); 0 means the input is cut off (inf where
        finite weights near float64's largest sum beyond it).

    Raises:
        TypeError: `weights` is not a real numeric array, or `input_axis` not an int.
        ValueError: a 0-d tensor, `input_axis` out of range, NaN or inf weights.
    """
    weights = _real_array(weights)
    if weights.ndim == 0:
        raise ValueError("a 0-d tensor has no input axis: per-input importance (and "
                         "active inputs) need a weight tensor with one")
    axis = _normalize_axis(input_axis, weights.ndim)
    if not np.isfinite(weights).all():
        raise ValueError("the weights contain NaN or inf: their importance is undefined")
    others = tuple(a for a in range(weights.ndim) if a != axis)
    with np.errstate(over="ignore"):  # finite weights near float64's largest: an inf sum
        return np.abs(weights.astype(np.float64)).sum(axis=others)


def active_inputs(weights: np.ndarray, input_axis: int = 0) -> np.ndarray:
    """Boolean mask of shape (n_inputs,): which inputs keep any non-zero weight.

    Args and errors as `input_importance` (NaN or inf weights have no mask either).
    """
    return input_importance(weights, input_axis) > 0


def _real_array(weights: object) -> np.ndarray:
    """`weights` as a NumPy array of real numbers (bool and integers allowed); raise otherwise.
    A torch tensor is read detached, from the CPU (a Parameter requires grad)."""
    if hasattr(weights, "detach") and hasattr(weights, "cpu"):
        weights = weights.detach().cpu()
    array = np.asarray(weights)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"expected an array of real numbers, got {type(weights).__name__} "
                        f"(dtype {array.dtype})")
    return array


def _normalize_axis(axis: int, ndim: int) -> int:
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"input_axis must be an int, got {type(axis).__name__} {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"input_axis {axis!r} is out of range for a {ndim}-D tensor")
    return int(axis) % ndim
