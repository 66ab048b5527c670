"""`rln`: RLN as an optax transformation, after the optimizer in a chain.

The math is `rln_core.array_api.step` on `jax.numpy` (docs/RLN_SPEC.md, with
the weight change given: delta = the optimizer's updates); this module only
maps it over the tree, keeps the state and decides what a non-finite update does.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from rln_core import array_api
from rln_core.checks import (NON_FINITE_WEIGHTS_MESSAGE, check_float32_dtypes, check_weights,
                             float32_arithmetic, non_finite_lambdas_message)
from rln_core.hyperparameters import DEFAULTS, Hyperparameters
from rln_core.state import check_avg_reg_fits, check_state_dtype

from rln_jax._state import (FLOAT32_STATE, PyTree, RLNState, compute_dtype_for, state_dtype_now,
                            x64_enabled)

FLOAT32_TOLERANCE = 1e-5
"""The relative tolerance of one update in float32 mode (`jax_enable_x64` off).

Without x64 the lambdas are float32 and the math runs in float32. Given the
same float32 inputs (W, delta, lambdas, prev_reg), one update matches the
float64 reference (`rln_core.reference.update`, float32 state) within:

- lambdas: tol = FLOAT32_TOLERANCE * (1 + |lambda| + |lambda_in - nu * delta * prev_reg|),
  absolute (the lambdas are natural logs); the last term is the stepped
  lambdas before the translation, whose float32 rounding the translation keeps;
- prev_reg (the new reg): |reg| * tol + 2 float32 ulps of reg;
- weights: |reg| * tol + 2 float32 ulps of W (the weights the update is given);
  both plus the smallest normal float32 (XLA flushes subnormals).

So a weight the reference sets to exactly 0 is 0 here too unless its lambda
ends within float32 rounding of the cap log|W / D|: then either side may clip
and the other lands on a residue below FLOAT32_TOLERANCE * |W|. Measured on
`rln_core.testing.CASES` (float32 weights and state) the lambdas and prev_reg
stay 5x below these bounds, the weights 2x (about one float32 ulp).
With x64 on, the kit's float64 tolerances hold instead (1e-9 relative lambdas).
"""

NO_PARAMS_MESSAGE = ("rln_jax.rln needs the params: call update(updates, state, params) "
                     "(optax.chain and optax.masked pass them on)")


def rln(avg_reg: float = DEFAULTS.avg_reg, learning_rate: float = DEFAULTS.learning_rate,
        norm: int = DEFAULTS.norm, *, state_dtype: Optional[Any] = None,
        compute_dtype: Optional[Any] = None) -> optax.GradientTransformation:
    """RLN after an optimizer: `optax.chain(optax.rmsprop(1e-3), rln_jax.rln())`.

    The incoming updates are the optimizer's step: RLN learns from them
    (delta = updates) and returns the updates W_new - params that land the
    weights on the regularized values, where W = params + updates (the weights
    after the optimizer step, computed as `optax.apply_updates` does) and
    W_new = W - reg (docs/RLN_SPEC.md). Every leaf the transform sees is
    regularized: wrap it in `optax.masked` to pick the tensors (the paper
    regularizes the first layer's kernel). A wrapper that leaves steps out
    (`optax.MultiSteps`, `optax.apply_if_finite`) wraps the whole chain: after
    one, RLN would take a step on each left-out (zero) update.

    Rounding: the returned update keeps the incoming update's dtype (as optax's
    transforms do: `optax.apply_if_finite`'s `lax.cond` needs it; the difference is
    taken in the wider of that dtype and the params' and rounded once), so
    `optax.apply_updates` lands within half an ulp of that update of W_new. Where
    the updates have the params' dtype, that is exactly on W_new wherever W_new and
    params are within a factor 2 of each other, and exactly on 0 for every weight
    RLN sets to 0; a weight that shrinks below half of itself in one step can land
    off W_new (with float32 updates beyond the spec's per-update tolerance, and a
    run then drifts from the spec's trajectory: README, "JAX / optax"). Float64
    updates of float32 params (under x64) land exactly wherever |W_new| >= about
    2**-29 |params| (float64 holds the difference exactly). Float32 updates of
    float64 params leave a float32 rounding of the params instead, up to ~1e-8
    here: give the optimizer gradients in the params' dtype where exact zeros
    matter. Under `jax.jit`
    XLA may fuse the optimizer's last multiply into W = params + updates (an
    FMA); W then differs from the rounded sum by up to half an ulp of the updates.

    dtypes: with `jax_enable_x64` on, the lambdas are float64 and the math is
    float64, matching the spec per update (`rln_core.testing` tolerances).
    With it off, lambdas and math are float32; per update this matches the
    float64 reference within `FLOAT32_TOLERANCE` (see there).

    Non-finite updates: if any regularized weight after the optimizer step is
    NaN/inf, or any new lambda would be, the update is refused, for every
    tensor of the tree at once (`steps` is one counter for the tree, so all
    tensors take an update or none does; the first update is `steps == 0`).
    Under a trace (`jax.jit`, `jax.vmap`, `jax.grad`: the finiteness flags are
    `jax.core.Tracer`s), where nothing can raise, it is skipped: the
    optimizer's updates are returned unchanged, lambdas, prev_reg and steps
    stay, and `skipped` counts it. Eagerly (the flags are concrete arrays) it
    raises the ValueError of the other adapters
    (`rln_core.checks.NON_FINITE_WEIGHTS_MESSAGE`, checked first, then
    `rln_core.checks.non_finite_lambdas_message`), naming the parameter.

    Args:
        avg_reg: Theta, the mean of the lambdas (natural log of a coefficient).
        learning_rate: nu, the lambdas' step size (>= 0; 1e5..1e7 is typical).
        norm: 1 (L1) or 2 (L2).
        state_dtype: float32 or float64 for the lambdas and prev_reg; None:
            float64 under `jax_enable_x64`, float32 otherwise (read at `init`),
            and float32 with compute_dtype=float32.
        compute_dtype: None (default): float64 arithmetic under x64. float32:
            the spec's float32 mode under x64 too (float32 params and state; the
            mean of the lambdas summed in float64), per update within
            `rln_core.testing.FLOAT32_COMPUTE_TOLERANCE`. Without x64 the
            arithmetic is float32 whatever is asked.

    Returns:
        An `optax.GradientTransformation` whose state is an `RLNState`; its
        `update` needs `params`.

    Raises:
        ValueError: invalid hyperparameters (`rln_core.Hyperparameters`).
        TypeError: a state_dtype other than float32/float64, a compute_dtype
            other than None/float32/float64, float32 arithmetic with a float64
            state, or (at init) with float64 params, or state_dtype float64 while
            `jax_enable_x64` is off; at update, a state that is not an `RLNState`,
            params or updates that are not float32/float64, or prev_reg of another
            dtype than the lambdas.
        ValueError: (at update) no `params`, or params that are not the tree `init`
            saw (structure or shapes); eagerly, non-finite weights or lambdas, naming
            the leaf.
    """
    hyperparameters = Hyperparameters(avg_reg, learning_rate, norm)
    requested = None if state_dtype is None else check_state_dtype(state_dtype)
    float32 = float32_arithmetic(compute_dtype)
    if float32:
        if requested is not None:
            check_float32_dtypes(({"state_dtype": requested}, FLOAT32_STATE), who="rln_jax.rln")
        requested = np.dtype(np.float32)

    def init_fn(params: PyTree) -> RLNState:
        dtype = state_dtype_now(requested)
        check_avg_reg_fits(hyperparameters.avg_reg, dtype)
        for path, leaf in jax.tree_util.tree_leaves_with_path(params):
            name = f"params{jax.tree_util.keystr(path)}"
            check_weights(leaf, name=name)
            if float32:
                check_float32_dtypes(({name: leaf.dtype}, "float32 params, or compute_dtype=None"),
                                     who="rln_jax.rln")
        return RLNState(
            lambdas=jax.tree_util.tree_map(
                lambda p: jnp.full_like(p, hyperparameters.avg_reg, dtype=dtype), params),
            prev_reg=jax.tree_util.tree_map(lambda p: jnp.zeros_like(p, dtype=dtype), params),
            steps=jnp.zeros([], jnp.int32), skipped=jnp.zeros([], jnp.int32))

    def update_fn(updates: PyTree, state: RLNState, params: Optional[PyTree] = None
                  ) -> Tuple[PyTree, RLNState]:
        if params is None:
            raise ValueError(NO_PARAMS_MESSAGE)
        _check_trees(updates, state, params)
        weights = jax.tree_util.tree_map(
            lambda p, u: jnp.asarray(p + u).astype(jnp.asarray(p).dtype), params, updates)
        new_weights, new_state, ok = regularize(weights, updates, state, hyperparameters,
                                                float32)
        new_updates = jax.tree_util.tree_map(
            lambda w, p, u: jnp.where(ok, _difference(w, p, u.dtype), u), new_weights, params,
            updates)
        return new_updates, new_state

    return optax.GradientTransformation(init_fn, update_fn)


def _difference(new_weights: jax.Array, params: jax.Array, dtype: Any) -> jax.Array:
    """new_weights - params in `dtype` (the incoming update's), subtracted in the wider of
    `dtype` and the params' and rounded once: float64 updates of float32 params are then
    the exact difference (a float32 subtraction rounded it, and W landed an ulp off)."""
    params = jnp.asarray(params)
    wide = jnp.promote_types(params.dtype, dtype)
    return (new_weights.astype(wide) - params.astype(wide)).astype(dtype)


def regularize(weights: PyTree, delta: PyTree, state: RLNState,
               hyperparameters: Hyperparameters,
               float32: bool = False) -> Tuple[PyTree, RLNState, jax.Array]:
    """One RLN update of a tree of weights: the body of `rln`'s update.

    Args:
        weights: W after the optimizer step, a tree like `state.lambdas`
            (float32/float64 leaves).
        delta: the weight change to learn from (leaves shaped like W's).
        state: the `RLNState` of these weights.
        hyperparameters: Theta, nu and the norm.
        float32: the float32 mode (float32 arithmetic under x64 too).

    Returns:
        (new_weights, new_state, ok): W_new (leaves in W's dtype), the new
        state, and a 0-d bool: the update was applied. Where it is false (only
        under a trace) new_weights are `weights` and new_state is `state`
        with `skipped` + 1.

    Raises:
        ValueError: eagerly, NaN/inf in W or in the new lambdas.
    """
    treedef = jax.tree_util.tree_structure(weights)
    paths = [jax.tree_util.keystr(path) for path, _ in
             jax.tree_util.tree_leaves_with_path(weights)]
    leaves = zip(treedef.flatten_up_to(weights), treedef.flatten_up_to(delta),
                 treedef.flatten_up_to(state.lambdas), treedef.flatten_up_to(state.prev_reg))
    wide = jnp.float64 if float32 and x64_enabled() else None  # the float32 mode's mean
    results = [array_api.step(w, lam, None, reg, state.steps, hyperparameters, delta=d, xp=jnp,
                              compute_dtype=compute_dtype_for(lam.dtype, float32),
                              mean_dtype=wide)
               for w, d, lam, reg in leaves]
    ok = jnp.all(jnp.stack([r.ok for r in results])) if results else jnp.asarray(True)
    if results and not isinstance(ok, jax.core.Tracer):  # eager: concrete flags
        _raise_if_not_finite(results, paths, hyperparameters.learning_rate)

    def pick(new: List[Any], old: PyTree) -> PyTree:
        return treedef.unflatten([jnp.where(ok, n, o) for n, o in
                                  zip(new, treedef.flatten_up_to(old))])

    new_state = RLNState(
        lambdas=pick([r.lambdas for r in results], state.lambdas),
        prev_reg=pick([r.reg for r in results], state.prev_reg),
        steps=jnp.where(ok, optax.safe_increment(state.steps), state.steps),
        skipped=jnp.where(ok, state.skipped, optax.safe_increment(state.skipped)))
    return pick([r.weights for r in results], weights), new_state, ok


def _raise_if_not_finite(results: List[array_api.Step], paths: List[str],
                         learning_rate: float) -> None:
    """Eagerly: raise the core's errors for the first leaf with NaN/inf weights, then lambdas."""
    flags = np.asarray(jnp.stack([jnp.stack([r.weights_finite, r.lambdas_finite])
                                  for r in results]))
    for column, message in ((0, NON_FINITE_WEIGHTS_MESSAGE),
                            (1, non_finite_lambdas_message(learning_rate))):
        bad = np.flatnonzero(~flags[:, column])
        if bad.size:
            raise ValueError(f"{message} (parameter {paths[bad[0]] or '<root>'})")


def _check_trees(updates: PyTree, state: RLNState, params: PyTree) -> None:
    """The trees fit one another and the state (static checks: shapes and dtypes only)."""
    if not isinstance(state, RLNState):
        raise TypeError(f"state must be an rln_jax.RLNState, got {type(state).__name__}")
    structure = jax.tree_util.tree_structure(params)
    for name, tree in (("updates", updates), ("state.lambdas", state.lambdas),
                       ("state.prev_reg", state.prev_reg)):
        if jax.tree_util.tree_structure(tree) != structure:
            raise ValueError(f"{name} is not a tree like the params: the RLN state was made "
                             "for other params (init and update with the same tree)")
    for (path, p), u, lam, reg in zip(jax.tree_util.tree_leaves_with_path(params),
                                      structure.flatten_up_to(updates),
                                      structure.flatten_up_to(state.lambdas),
                                      structure.flatten_up_to(state.prev_reg)):
        where = jax.tree_util.keystr(path)
        check_weights(p, name=f"params{where}")
        check_weights(u, name=f"updates{where}")
        for name, array in (("updates", u), ("state.lambdas", lam), ("state.prev_reg", reg)):
            if tuple(array.shape) != tuple(p.shape):
                raise ValueError(f"{name}{where} has shape {tuple(array.shape)}; the "
                                 f"parameter has shape {tuple(p.shape)}")
        if reg.dtype != lam.dtype:
            raise TypeError(f"state.prev_reg{where} has dtype {reg.dtype}; the lambdas "
                            f"have {lam.dtype}")
