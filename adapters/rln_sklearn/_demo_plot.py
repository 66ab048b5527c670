"""The demo's figure: where RLN's lambdas went, and which inputs kept weight."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


def write_demo_figure(path: Path, lambdas: np.ndarray, importances: dict[str, np.ndarray],
                      is_real: np.ndarray, avg_reg: float) -> Path:
    """Write a PNG: a histogram of RLN's lambdas, then per-input importance per method.

    Args:
        path: where the PNG goes (its folder must exist).
        lambdas: RLN's log coefficients of the first layer, any shape.
        importances: method name -> per-input share of sum |w|, shape (n_features,).
        is_real: True for the real (non-noise) inputs, shape (n_features,).
        avg_reg: Theta, marked on the histogram.

    Returns:
        `path`.
    """
    figure = Figure(figsize=(11, 3.2 * (1 + len(importances))), layout="constrained")
    axes = figure.subplots(1 + len(importances), 1)
    histogram = axes[0]
    histogram.hist(lambdas.ravel(), bins=100, color="tab:blue")
    histogram.axvline(avg_reg, color="black", linestyle="--", label=f"Theta = {avg_reg:g}")
    histogram.set_yscale("log")
    histogram.set_xlabel("lambda (log of the per-weight L1 coefficient)")
    histogram.set_ylabel("weights")
    histogram.set_title("RLN: the learned regularization coefficients of the first layer")
    histogram.legend()
    columns = np.arange(len(is_real))
    for axis, (method, importance) in zip(axes[1:], importances.items()):
        axis.scatter(columns[~is_real], importance[~is_real], s=4, color="tab:gray",
                     label="noise inputs")
        axis.scatter(columns[is_real], importance[is_real], s=30, color="tab:red",
                     marker="D", label="real inputs")
        share = importance[is_real].sum()
        axis.set_title(f"{method}: share of first-layer sum |w| per input "
                       f"({100 * share:.1f}% on the {int(is_real.sum())} real inputs)")
        axis.set_xlabel("input column (the real ones first)")
        axis.set_ylabel("share of sum |w|")
        axis.legend(loc="upper right")
    figure.savefig(path, dpi=100)
    return path
