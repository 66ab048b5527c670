"""`keras.ops` as the array namespace of `rln_core.array_api.step`.

The core writes the RLN update once over an array namespace `xp`; this shim
maps the few functions it uses onto `keras.ops`, so the same math runs inside
a compiled Keras train step on TensorFlow, torch and JAX. Nothing of the
update is restated here. Two functions are not the `keras.ops` ones of the
same name, because those lose float64 precision off TensorFlow (Keras 3's
type promotion turns float64 into float32 there): `mean` is a sum over the
element count and `minimum` a `where`. The conformance kit
(`rln_core.testing`) holds the shim to the spec's float64 tolerances.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import keras
from keras import ops


def _astype(x: Any, dtype: Any) -> Any:
    """`x` cast to `dtype` (a name, or a backend's own dtype: tf.float32, torch.float32, ...)."""
    return ops.cast(x, keras.backend.standardize_dtype(dtype))


def _mean(x: Any) -> Any:
    """The mean of every element, in x's dtype.

    Not `keras.ops.mean`: on the torch and JAX backends it computes in
    float32 even for a float64 tensor (Keras' `result_type(x.dtype, "float32")`
    gives float32), an error of ~1e-7 in the lambdas' translation.
    """
    return ops.sum(x) / math.prod(x.shape)


def _minimum(x1: Any, x2: Any) -> Any:
    """Elementwise minimum in the inputs' dtype (NaN in x1 propagates).

    Not `keras.ops.minimum`: on the torch backend it casts float64 inputs to
    float32 first (Keras' type promotion maps float64 to float32 off TensorFlow).
    """
    return ops.where(x2 < x1, x2, x1)


KERAS_OPS = SimpleNamespace(
    float32="float32",
    float64="float64",
    astype=_astype,
    abs=ops.abs,
    sign=ops.sign,
    log=ops.log,
    exp=ops.exp,
    where=ops.where,
    minimum=_minimum,
    mean=_mean,
    isfinite=ops.isfinite,
    all=ops.all,
    logical_and=ops.logical_and,
    zeros_like=ops.zeros_like,
)
"""The namespace handed to `rln_core.array_api.step(..., xp=KERAS_OPS)`."""


def float64_available(example: Any = None) -> bool:
    """Whether the current Keras backend computes in float64 (on `example`'s device).

    TensorFlow and torch do (torch on Apple MPS excepted: no float64 there);
    JAX only with `jax_enable_x64` (JAX_ENABLE_X64=1), else it truncates to float32.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return bool(jax.config.jax_enable_x64)
    if backend == "torch" and example is not None:
        device = getattr(getattr(example, "device", None), "type", None)
        return device != "mps"
    return True
