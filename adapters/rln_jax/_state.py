"""The optax state of `rln_jax.rln`, its dtypes, and how to find it in an optimizer's state."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from rln_core.checks import FLOAT_DTYPES, check_float32_dtypes

PyTree = Any


class RLNState(NamedTuple):
    """State of `rln_jax.rln`: fixed structure, plain arrays only (jit- and checkpoint-safe).

    The JAX form of `rln_core.RLNState` for a whole tree of parameters; the
    fields that mean the same keep its names (`rln_core.STATE_FIELDS`).
    `prev_weights` is not kept: the transform is given the weight change
    (`delta` = the incoming updates). `steps` and `skipped` are shared by
    every tensor of the tree: an update is applied or skipped as a whole.

    Attributes:
        lambdas: tree like the (masked) params; each leaf has its parameter's
            shape and the state dtype (float64 under `jax_enable_x64`, else
            float32). Natural log of each weight's coefficient; Theta at init.
        prev_reg: tree like `lambdas`, same shapes and dtype: the regularization
            step the previous applied update subtracted (units of the weights).
            Zeros at init; not read while `steps == 0`.
        steps: int32, shape (): RLN updates applied so far. 0 means the next
            update is the first one (no lambda step).
        skipped: int32, shape (): updates skipped because the weights after the
            optimizer step or the new lambdas were not finite (only under a
            trace, e.g. `jax.jit`; eagerly they raise).
    """

    lambdas: PyTree  # leaves: shape of the parameter, state dtype (float64 | float32)
    prev_reg: PyTree  # leaves: shape of the parameter, state dtype; zeros at init
    steps: jax.Array  # int32, shape (): updates applied
    skipped: jax.Array  # int32, shape (): updates skipped (non-finite)


def x64_enabled() -> bool:
    """Whether JAX makes float64 arrays now (`jax_enable_x64`, also inside `jax.enable_x64()`)."""
    return jax.dtypes.canonicalize_dtype(jnp.float64) == jnp.float64


FLOAT32_STATE = "ask for rln_jax.rln(state_dtype=None or float32)"
"""How a float32 state is asked for (the float32 mode's refusals say it)."""


def state_dtype_now(requested: Optional[np.dtype]) -> np.dtype:
    """The dtype of new lambdas: `requested`, or float64 under x64 and float32 otherwise.

    Raises:
        TypeError: float64 requested while `jax_enable_x64` is off.
    """
    if requested is None:
        return np.dtype(np.float64 if x64_enabled() else np.float32)
    if requested == np.float64 and not x64_enabled():
        raise TypeError("state_dtype float64 needs jax_enable_x64 (jax.config.update("
                        "'jax_enable_x64', True), or JAX_ENABLE_X64=1 in the environment "
                        "before JAX starts); without it use float32 or leave state_dtype=None")
    return requested


def compute_dtype_for(lambdas_dtype: Any, float32: bool = False) -> Any:
    """The dtype the update's math runs in: float64 under x64 unless `float32` (the
    float32 mode) is asked for, float32 otherwise.

    Raises:
        TypeError: the lambdas are not float32/float64, float64 lambdas while
            `jax_enable_x64` is off (init and update disagree on x64), or float64
            lambdas in the float32 mode.
    """
    name = np.dtype(lambdas_dtype).name
    if name not in FLOAT_DTYPES:
        raise TypeError(f"RLN state lambdas have dtype {name}; expected float32 or float64")
    if not x64_enabled():
        if name == "float64":
            raise TypeError("the RLN state holds float64 lambdas but jax_enable_x64 is off; "
                            "run init and update with the same x64 setting")
        return jnp.float32
    if float32:
        check_float32_dtypes(({"the state's lambdas": name}, FLOAT32_STATE), who="rln_jax.rln")
        return jnp.float32
    return jnp.float64


def rln_state(opt_state: PyTree) -> RLNState:
    """The one `RLNState` inside an optimizer's state (a chain, `optax.masked`, ...).

    Args:
        opt_state: the state of a transformation holding one `rln_jax.rln`.

    Raises:
        ValueError: no `RLNState`, or several (then index the state by hand).
    """
    found = [node for node in jax.tree_util.tree_leaves(
        opt_state, is_leaf=lambda node: isinstance(node, RLNState)) if isinstance(node, RLNState)]
    if len(found) != 1:
        raise ValueError(f"expected one rln_jax.RLNState in the optimizer state, found "
                         f"{len(found)}" + ("; index the state by hand" if found else ""))
    return found[0]


def lambdas(opt_state: PyTree) -> PyTree:
    """The lambdas of the one `rln_jax.rln` inside `opt_state`.

    Returns:
        A tree like the params given to `rln` (under `optax.masked`: an
        `optax.MaskedNode` where a parameter is not regularized); each leaf
        the natural log of its weights' coefficients, the parameter's shape.
    """
    return rln_state(opt_state).lambdas

