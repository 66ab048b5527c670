"""One RLN per kernel per fit: refuse a second registration before it doubles the updates.

RLN is once per optimizer step. Registered twice over one kernel (the same
`RLNCallback` twice in `callbacks`, two callbacks over one layer or over tied
kernels, a callback over a variable that an `RLNOptimizer` already
regularizes) every step would regularize it twice and learn twice from one
weight change, silently. Each `RLNCallback` claims its kernels for the fit at
train begin (or, for a layer Keras builds in the first step, at that step's
end), before it starts or changes any state; a second claim on the same
memory raises `ValueError` naming both.

A fit is told apart by its `params` dict: Keras builds one per `fit` and hands
the same object to every callback of that fit (`Callback.set_params`). Claims
of an earlier fit (one that ended, or raised) are dropped when a new one
starts, so reusing a callback in the next fit, of the same model or of another
one holding the layer, continues its run.
"""

from __future__ import annotations

import weakref
from typing import Any, List, NamedTuple

import keras
import numpy as np

from rln_keras._optimizer import refuse_if_regularized


class _Claim(NamedTuple):
    variable: keras.Variable
    owner: Any  # the RLNCallback
    layer_name: str


class _Fit(NamedTuple):
    token: Any  # the fit's `params` dict (compared by identity)
    claims: List[_Claim]


_FITS: "weakref.WeakKeyDictionary[keras.Model, _Fit]" = weakref.WeakKeyDictionary()


def same_memory(first: keras.Variable, second: keras.Variable) -> bool:
    """Whether updating one variable updates the other: the same variable, the same
    backend value, or (torch on CPU) tensors whose memory overlaps."""
    if first is second or first.value is second.value:
        return True
    if keras.backend.backend() != "torch":
        return False
    a, b = first.value, second.value
    if a.device.type != "cpu" or b.device.type != "cpu":
        return False
    return bool(np.may_share_memory(a.detach().numpy(), b.detach().numpy()))


def claim(model: keras.Model, token: Any, owner: Any, variable: keras.Variable,
          layer_name: str) -> None:
    """Claim `variable` (the kernel of `layer_name`) for `owner` in the fit `token` of `model`.

    Raises:
        ValueError: another claim of this fit covers the same memory (by `owner`
            itself: a tied kernel listed twice; by another RLNCallback), or an
            RLNOptimizer of the model regularizes it; nothing is claimed then.
    """
    refuse_if_regularized(getattr(model, "optimizer", None), variable,
                          f"RLNCallback on layer {layer_name!r}")
    fit = _FITS.get(model)
    if fit is None or fit.token is not token:
        fit = _Fit(token, [])
        _FITS[model] = fit
    for other in fit.claims:
        if not same_memory(other.variable, variable):
            continue
        if other.owner is owner:
            raise ValueError(
                f"RLNCallback: the kernels of layers {other.layer_name!r} and {layer_name!r} "
                "are the same memory (tied weights); each step would update it twice. "
                "List one of the layers")
        raise ValueError(
            f"RLNCallback on layer {layer_name!r}: its kernel is regularized by another "
            f"RLNCallback in this fit (on layer {other.layer_name!r}); each step would "
            "update it twice. Pass one RLNCallback per kernel")
    fit.claims.append(_Claim(variable, owner, layer_name))


def release(model: keras.Model, owner: Any) -> None:
    """Drop `owner`'s claims on `model` (at train end)."""
    fit = _FITS.get(model)
    if fit is not None:
        fit.claims[:] = [each for each in fit.claims if each.owner is not owner]
