"""The RLN update written once in torch ops: the path for CUDA and MPS tensors.

It follows `RLN_SPEC.md` like `rln_core.reference.update` does and has the
signature of `rln_core.update` (weights and state updated in place), with
torch tensors in place of NumPy arrays. It runs on any device, so it is checked
on CPU against the reference by `rln_core.testing.check_update`.

The math runs in float64, except on MPS, which has no float64: there it runs
in float32 and the state must be float32 (`rln_torch.RLN` checks this).
"""

from __future__ import annotations

import math

import torch
from rln_core._clip import CLIP_MARGIN
from rln_core._validation import (NON_FINITE_WEIGHTS_MESSAGE, check_hyperparameters,
                                  non_finite_lambdas_message)

from rln_torch._state import TensorState

WEIGHT_DTYPES = (torch.float32, torch.float64)
LOG_HALF = math.log(0.5)


def compute_dtype(device: torch.device) -> torch.dtype:
    """float64, or float32 on MPS (which has no float64)."""
    return torch.float32 if device.type == "mps" else torch.float64


@torch.no_grad()
def update(weights: torch.Tensor, state: TensorState, *, avg_reg: float = -10.0,
           learning_rate: float = 1e6, norm: int = 1) -> TensorState:
    """One RLN update, in place on `weights` and `state` (see `rln_core.update`).

    Args:
        weights: W after the optimizer step, float32/float64 tensor, any shape.
        state: the `TensorState` of W on W's device, updated in place.
        avg_reg: Theta (natural log). learning_rate: nu (>= 0). norm: 1 or 2.

    Returns:
        `state` itself.

    Raises:
        ValueError, TypeError: the core's checks (hyperparameters, shapes,
            dtypes, non-finite weights or lambdas); nothing is modified then.
    """
    check_hyperparameters(avg_reg, learning_rate, norm)
    _check_inputs(weights, state)
    w = weights.to(compute_dtype(weights.device))
    lambdas = state.lambdas.to(w.dtype)

    # Steps 1-3: the lambda step and the translation back to mean Theta.
    if state.prev_reg is not None:
        delta = w - state.prev_weights.to(w.dtype)
        lambdas = lambdas - learning_rate * delta * state.prev_reg.to(w.dtype)
        lambdas = lambdas + (avg_reg - lambdas.mean())
    finite = torch.stack([torch.isfinite(w).all(), torch.isfinite(lambdas).all()]).tolist()
    if not finite[0]:
        raise ValueError(NON_FINITE_WEIGHTS_MESSAGE)
    if not finite[1]:
        raise ValueError(non_finite_lambdas_message(learning_rate))

    # Steps 4-5: clip at log|W / D| (no cap where W == 0), regularize; a
    # clipped weight takes the step |W / D| itself, so it lands on exactly 0.
    nonzero = w != 0
    abs_w = w.abs()
    if norm == 1:
        direction = torch.sign(w)
        limit = abs_w
        cap = torch.where(nonzero, torch.log(abs_w), math.inf)
    else:
        direction = 2.0 * w
        limit = torch.full_like(w, 0.5)
        cap = torch.where(nonzero, torch.full_like(w, LOG_HALF), math.inf)
    clipped = lambdas >= cap - CLIP_MARGIN * (1.0 + cap.abs())  # see rln_core._clip
    lambdas = torch.where(clipped, cap, lambdas)
    step = torch.where(clipped, limit, torch.minimum(torch.exp(lambdas), limit))
    reg = direction * step

    weights.copy_(w - reg)
    state.prev_weights.copy_(weights)
    state.lambdas.copy_(lambdas)
    if state.prev_reg is None:
        state.prev_reg = torch.empty_like(state.lambdas)
    state.prev_reg.copy_(reg)
    state.steps = int(state.steps) + 1
    return state


def _check_inputs(weights: torch.Tensor, state: TensorState) -> None:
    """The core's input checks, for tensors: raise before anything is written."""
    if not isinstance(weights, torch.Tensor):
        raise TypeError(f"weights must be a torch.Tensor, got {type(weights).__name__}")
    if weights.dtype not in WEIGHT_DTYPES:
        raise TypeError(f"weights must be float32 or float64, got dtype {weights.dtype}")
    if weights.numel() == 0:
        raise ValueError(f"weights are empty (shape {tuple(weights.shape)})")
    if weights.shape != state.lambdas.shape:
        raise ValueError(
            f"weights have shape {tuple(weights.shape)} but the RLN state was made for "
            f"shape {tuple(state.lambdas.shape)}")
    if weights.dtype != state.prev_weights.dtype:
        raise TypeError(f"weights have dtype {weights.dtype} but the RLN state was made for "
                        f"{state.prev_weights.dtype}")
    tensors = [state.lambdas, state.prev_weights] + (
        [] if state.prev_reg is None else [state.prev_reg])
    for tensor in tensors:
        if tensor.shape != weights.shape or tensor.device != weights.device:
            raise ValueError(
                f"an RLN state tensor has shape {tuple(tensor.shape)} on {tensor.device}; "
                f"expected {tuple(weights.shape)} on {weights.device}")
    if state.prev_reg is not None and state.prev_reg.dtype != state.lambdas.dtype:
        raise TypeError(f"state.prev_reg has dtype {state.prev_reg.dtype}, expected the "
                        f"lambdas' dtype {state.lambdas.dtype}")
