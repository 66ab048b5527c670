"""rln_jax with jax_enable_x64: the spec per update (rln_core's kit), and the chain.

Every test here runs inside `jax.enable_x64(True)` (an autouse fixture): the
flag is set for the test only (thread-local, restored after it), so the tests
that share its process (pytest-xdist runs several modules in one worker) keep
JAX's default, and test_jax_rln.py pins that default with `jax.enable_x64(False)`.
"""

import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import rln_core
import rln_jax
from rln_core import reference, testing
from rln_jax._transform import regularize

# jax.enable_x64 from jax 0.8 on; jax.experimental.enable_x64 before (the declared floor is older)
enable_x64 = jax.enable_x64 if hasattr(jax, "enable_x64") else jax.experimental.enable_x64


@pytest.fixture(autouse=True)
def x64():
    with enable_x64(True):
        assert jax.config.jax_enable_x64
        yield


def _jax_state(state: rln_core.RLNState) -> rln_jax.RLNState:
    return rln_jax.RLNState(lambdas=jnp.asarray(state.lambdas),
                            prev_reg=jnp.asarray(state.prev_reg),
                            steps=jnp.asarray(state.steps, jnp.int32),
                            skipped=jnp.zeros([], jnp.int32))


def _core_state(weights: np.ndarray, state: rln_jax.RLNState) -> rln_core.RLNState:
    return rln_core.RLNState(lambdas=np.asarray(state.lambdas), prev_weights=weights.copy(),
                             prev_reg=np.asarray(state.prev_reg), steps=int(state.steps))


class _TracedHyperparameters(NamedTuple):
    """Hyperparameters whose numbers are traced (`rln` bakes them in as constants)."""

    avg_reg: jax.Array
    learning_rate: jax.Array
    norm: int


@functools.lru_cache(maxsize=None)
def _update_body(how: str, hyperparameters: Optional[rln_core.Hyperparameters] = None,
                 norm: int = 1, float32: bool = False):
    """rln_jax's update body (`regularize`, what `rln`'s update runs after W = params + updates).

    how: "eager"; "jit" with the hyperparameters as constants, as `rln` compiles it (one XLA
    compile per case); "traced": jitted with Theta and nu as arguments, so the kit's cases
    share compiles (a case costs a compile, ~0.5 s, otherwise)."""
    if how == "traced":
        return jax.jit(lambda w, d, state, avg_reg, nu: regularize(
            w, d, state, _TracedHyperparameters(avg_reg, nu, norm), float32))
    body = functools.partial(regularize, hyperparameters=hyperparameters, float32=float32)
    return jax.jit(body) if how == "jit" else body


def _kit_update(weights, state, *, avg_reg, learning_rate, norm, delta=None, how="traced",
                float32=False):
    """The kit's update (NumPy arrays in and out) through rln_jax's update body.

    Without a given delta the spec's delta is W - prev_weights, computed here
    in float64 from the kit's arrays (exact for float32 weights)."""
    if delta is None:
        delta = weights.astype(np.float64) - state.prev_weights.astype(np.float64)
    inputs = (jnp.asarray(weights), jnp.asarray(delta), _jax_state(state))
    if how == "traced":
        new_weights, new_state, ok = _update_body(how, norm=norm, float32=float32)(
            *inputs, jnp.float64(avg_reg), jnp.float64(learning_rate))
    else:
        new_weights, new_state, ok = _update_body(
            how, rln_core.Hyperparameters(avg_reg, learning_rate, norm), float32=float32)(*inputs)
    assert bool(ok) and int(new_state.skipped) == 0
    new_weights = np.asarray(new_weights)
    return new_weights, _core_state(new_weights, new_state)


def _group(case: testing.UpdateCase) -> str:
    """Kit cases in groups of similar cost (pytest-xdist runs the groups in parallel)."""
    if case.name.startswith("delta"):
        return "delta"
    if case.shape in {(7,), (13, 7)}:
        return "default_small"
    return "default_large" if case.shape in {(5, 4, 3, 2), (1, 1)} else "other"


GROUPS = ("default_small", "default_large", "delta", "other")


@pytest.mark.parametrize("group", GROUPS)
def test_kit_conformance_under_jit(group):
    cases = [case for case in testing.CASES if _group(case) == group]
    assert len(cases) >= 16
    assert testing.check_update(_kit_update, cases) == len(cases)


def test_kit_groups_cover_every_case():
    assert {_group(case) for case in testing.CASES} == set(GROUPS)


def test_kit_conformance_with_constant_hyperparameters():
    """As `rln` compiles it (Theta and nu constants), one case of each kind."""
    names = {"norm=2_float64_13x7", "delta_float32_float64_norm=1",
             "state_float32_float32_norm=2", "at_cap_float32_norm=1_first",
             "extreme_norm=1_theta-3.0_nu1e+07"}
    cases = [case for case in testing.CASES if case.name in names]
    assert testing.check_update(functools.partial(_kit_update, how="jit"), cases) == len(names)


def test_kit_conformance_eager():
    """The same body called eagerly (no trace: the checked path) on the delta cases."""
    cases = [case for case in testing.CASES if case.name.startswith("delta_")
             and case.shape == (11, 7)]
    assert len(cases) == 16
    assert testing.check_update(functools.partial(_kit_update, how="eager"), cases) == len(cases)


def test_kit_detects_a_wrong_update():
    """The conformance check can fail: a slightly wrong learning rate is caught."""
    def off(weights, state, **kwargs):
        kwargs["learning_rate"] *= 1.0 + 1e-6
        return _kit_update(weights, state, **kwargs)

    with pytest.raises(AssertionError, match="lambdas"):
        testing.check_update(off, [c for c in testing.CASES if c.name == "norm=1_float32_13x7"])


class TransformOverARun:
    """`rln_jax.rln` as `check_trajectory` drives it: made and initialised at a run's first
    call (params: the kit's prev_weights, the weights its init saw), then per update the
    weights' in-place change as the optimizer's updates (float64: exact for float32
    weights) through the jitted `update`, and `optax.apply_updates`: lambdas, prev_reg
    and steps are the transform's own optax state over the run."""

    def __init__(self):
        self.weights = None

    def __call__(self, weights, state, *, avg_reg, learning_rate, norm):
        if self.weights is not weights:  # a new run
            self.weights = weights
            transform = rln_jax.rln(avg_reg, learning_rate, norm)
            self.update = jax.jit(transform.update)
            self.params = jnp.asarray(state.prev_weights)
            self.opt_state = transform.init(self.params)
        updates = jnp.asarray(weights.astype(np.float64) - np.asarray(self.params, np.float64))
        updates, self.opt_state = self.update(updates, self.opt_state, self.params)
        assert int(self.opt_state.skipped) == 0
        self.params = optax.apply_updates(self.params, updates)
        new_weights = np.asarray(self.params)
        return new_weights, _core_state(new_weights, self.opt_state)


def test_the_transform_keeps_its_state_over_a_run_of_updates():
    assert testing.check_trajectory(TransformOverARun()) == len(testing.TRAJECTORY_CASES)


def test_float64_updates_of_float32_params_land_exactly_on_the_new_weights():
    """The returned update is W_new - params taken in float64, the update's dtype: taken in
    float32 and then cast, it was rounded, and the params landed an ulp off W_new (where
    |W_new| and |params| are not within a factor 2): the next lambda step multiplied that
    ulp by nu, and a run drifted from the spec (the trajectory test above)."""
    rng = np.random.default_rng(5)
    params = rng.normal(0.0, 1e-3, 4000).astype(np.float32)
    updates = rng.normal(0.0, 1e-3, 4000)
    weights = (params + updates).astype(np.float32)  # what rln_jax regularizes
    expected, _ = reference.update(weights, rln_core.init(params, -8.0), avg_reg=-8.0,
                                   learning_rate=1e6, norm=1)
    transform = rln_jax.rln(-8.0, 1e6, 1)
    new_updates, _ = transform.update(jnp.asarray(updates), transform.init(jnp.asarray(params)),
                                      jnp.asarray(params))
    assert new_updates.dtype == jnp.float64
    np.testing.assert_array_equal(optax.apply_updates(jnp.asarray(params), new_updates), expected)


def test_float32_updates_land_within_half_an_ulp_of_the_update():
    """What the docstring promises for float32 updates of float32 params: within half an
    ulp of the returned update of W_new (not of W_new: a weight that shrinks below half
    of itself can land many of its ulps off), and exactly 0 where RLN sets 0."""
    rng = np.random.default_rng(5)
    params = rng.normal(0.0, 1e-3, 4000).astype(np.float32)
    updates = rng.normal(0.0, 1e-3, 4000).astype(np.float32)
    expected, _ = reference.update((params + updates).astype(np.float32),
                                   rln_core.init(params, -8.0), avg_reg=-8.0,
                                   learning_rate=1e6, norm=1, delta=updates)
    transform = rln_jax.rln(-8.0, 1e6, 1)
    new_updates, _ = transform.update(jnp.asarray(updates), transform.init(jnp.asarray(params)),
                                      jnp.asarray(params))
    landed = np.asarray(optax.apply_updates(jnp.asarray(params), new_updates))
    returned = np.asarray(new_updates)
    assert returned.dtype == np.float32 and (expected == 0).sum() > 100
    np.testing.assert_array_equal(landed[expected == 0], 0.0)
    off = np.abs(landed.astype(np.float64) - expected)
    assert np.all(off <= np.spacing(np.abs(returned)) / 2 + np.spacing(np.abs(expected)) / 2)


def test_float32_updates_of_float64_params_land_within_half_an_ulp_of_the_update():
    """The returned float32 update is W_new - params taken in float64 and rounded once:
    taken in float32 (the params rounded to float32 first) the params landed up to 1e-7
    off W_new, 4e4 to 7e4 times that half ulp (the params ~1, the returned updates
    ~2.5e-3: the regularization step exp(-6) dominates)."""
    rng = np.random.default_rng(0)
    params = 1.0 + rng.normal(0.0, 0.1, (50, 20))
    updates = rng.normal(0.0, 1e-3, (50, 20)).astype(np.float32)
    expected, _ = reference.update(params + updates, rln_core.init(params, -6.0), avg_reg=-6.0,
                                   learning_rate=1e6, norm=1, delta=updates)
    transform = rln_jax.rln(-6.0, 1e6, 1)
    new_updates, _ = transform.update(jnp.asarray(updates), transform.init(jnp.asarray(params)),
                                      jnp.asarray(params))
    returned = np.asarray(new_updates)
    landed = np.asarray(optax.apply_updates(jnp.asarray(params), new_updates))
    assert returned.dtype == np.float32 and landed.dtype == np.float64
    off = np.abs(landed - expected)
    assert np.all(off <= np.spacing(np.abs(returned)).astype(np.float64) / 2
                  + np.spacing(np.abs(expected)))


F32_CASES = testing.FLOAT32_CASES  # the float32 mode's only inputs


@pytest.mark.parametrize("how", ["traced", "eager"])
def test_the_float32_mode_meets_its_tolerance_under_x64(how):
    """compute_dtype=float32 under x64: float32 arithmetic, the mean summed in float64, within
    the kit's FLOAT32_COMPUTE_TOLERANCE (the tutorial's 1013 x 179 layer among the cases)."""
    assert any("tutorial" in case.name for case in F32_CASES)
    update = functools.partial(_kit_update, how=how, float32=True)
    assert testing.check_update(update, F32_CASES,
                                tolerance=testing.FLOAT32_COMPUTE_TOLERANCE) == len(F32_CASES)


def test_the_float32_mode_is_asked_for_and_checked():
    rng = np.random.default_rng(2)
    params = {"w": jnp.asarray(rng.normal(0, 0.1, (30, 7)), jnp.float32)}
    fast, default = rln_jax.rln(compute_dtype=np.float32), rln_jax.rln(state_dtype=np.float32)
    fast_state, default_state = fast.init(params), default.init(params)
    assert fast_state.lambdas["w"].dtype == jnp.float32
    for _ in range(5):
        updates = {"w": jnp.asarray(rng.normal(0, 1e-3, (30, 7)), jnp.float32)}
        _, fast_state = fast.update(updates, fast_state, params)
        _, default_state = default.update(updates, default_state, params)
        params = optax.apply_updates(params, updates)
    assert not np.array_equal(fast_state.lambdas["w"], default_state.lambdas["w"])
    np.testing.assert_allclose(fast_state.lambdas["w"], default_state.lambdas["w"], atol=1e-4)
    with pytest.raises(TypeError, match=r"rln_jax.rln: compute_dtype=float32 needs float32 weights .*got state_dtype float64"):
        rln_jax.rln(compute_dtype=np.float32, state_dtype=np.float64)
    with pytest.raises(TypeError, match="Invalid compute_dtype"):
        rln_jax.rln(compute_dtype=np.float16)
    with pytest.raises(TypeError, match=r"needs float32 weights .*got params\['w'\] float64"):
        fast.init({"w": jnp.ones((2, 2), jnp.float64)})


def test_state_is_float64_and_float32_on_request():
    params = {"w": jnp.ones((3, 2), jnp.float32)}
    assert rln_jax.rln().init(params).lambdas["w"].dtype == jnp.float64
    state = rln_jax.rln(state_dtype=np.float32).init(params)
    assert state.lambdas["w"].dtype == state.prev_reg["w"].dtype == jnp.float32


def _assert_applied(name, params_before, params_after, expected_weights, expected_state,
                    lambdas, prev_reg):
    """One update of the transform against the reference's (`expected_*`).

    lambdas and prev_reg: the kit's tolerances. The weights: optax applies
    updates by adding them, so they are expected_weights up to the kit's
    tolerance plus one rounding of the update (expected_weights - params_before),
    and exactly 0 where the reference lands on 0."""
    before = np.asarray(params_before)
    got = np.asarray(params_after)
    testing.assert_update_matches(
        name, expected_weights, expected_state, expected_weights,
        rln_core.RLNState(np.asarray(lambdas), expected_weights.copy(), np.asarray(prev_reg),
                          expected_state.steps))
    step = (expected_weights.astype(np.float64) - before).astype(before.dtype)
    implied = 2 * np.abs(expected_state.prev_reg) * testing.LAMBDA_RTOL * np.maximum(
        1.0, np.abs(expected_state.lambdas))  # as in the kit
    tol = (np.spacing(np.abs(expected_weights)).astype(np.float64) + implied
           + np.spacing(np.abs(step)) / 2 + np.finfo(before.dtype).tiny)
    diff = np.abs(got.astype(np.float64) - expected_weights)
    assert (diff <= tol).all(), f"[{name}] weights off by {diff.max():.3g} (> tolerance)"
    assert not ((expected_weights == 0) & (got != 0)).any(), f"[{name}] a 0 is not exact"


def test_first_update_makes_no_lambda_step_and_ignores_prev_reg():
    rng = np.random.default_rng(3)
    w0 = rng.normal(0.0, 0.05, (9, 4)).astype(np.float32)
    w0[0, 0] = 0.0
    params = {"w": jnp.asarray(w0)}
    tx = rln_jax.rln(avg_reg=-3.0, learning_rate=1e6)
    state = tx.init(params)
    assert int(state.steps) == 0
    state = state._replace(prev_reg={"w": jnp.full((9, 4), jnp.nan)})  # must not be read
    u = rng.normal(0.0, 1e-3, (9, 4)).astype(np.float32)
    updates, new_state = jax.jit(tx.update)({"w": jnp.asarray(u)}, state, params)

    weights = (w0 + u).astype(np.float32)
    lambdas = np.asarray(new_state.lambdas["w"])
    with np.errstate(divide="ignore"):
        cap = np.where(weights != 0, np.log(np.abs(weights.astype(np.float64))), np.inf)
    # Theta, clipped: no step (within an ulp of NumPy's log: XLA's log is another one)
    np.testing.assert_array_max_ulp(lambdas, np.minimum(-3.0, cap), maxulp=1)
    assert (lambdas < -3.0).any() and (lambdas == -3.0).any()
    assert int(new_state.steps) == 1 and int(new_state.skipped) == 0
    expected_w, expected = reference.update(weights, rln_core.init(w0, avg_reg=-3.0),
                                            avg_reg=-3.0, learning_rate=1e6, norm=1, delta=u)
    _assert_applied("first", w0, optax.apply_updates(params, updates)["w"], expected_w, expected,
                    new_state.lambdas["w"], new_state.prev_reg["w"])


@pytest.mark.parametrize("jit", [False, True])
def test_updates_keep_their_dtype_so_apply_if_finite_can_wrap_the_chain(jit):
    # float32 gradients of float64 params: the updates stay float32 (optax's convention),
    # which apply_if_finite's lax.cond needs (float64 updates from rln made it raise
    # "cond branches must have equal output types"); params in float64 exact zeros need
    # the gradients in float64 too
    rng = np.random.default_rng(0)
    params = jnp.asarray(rng.normal(0.0, 0.1, 50))
    tx = optax.apply_if_finite(
        optax.chain(optax.sgd(1e-3), rln_jax.rln(avg_reg=-2.0, learning_rate=1e3)), 3)
    update = jax.jit(tx.update) if jit else tx.update
    for dtype in (np.float32, np.float64):
        grads = jnp.asarray(rng.normal(0.0, 1.0, 50).astype(dtype))
        updates, _ = update(grads, tx.init(params), params)
        assert updates.dtype == dtype
        new_params = np.asarray(optax.apply_updates(params, updates))
        clipped = np.abs(np.asarray(params) - 1e-3 * np.asarray(grads)) <= np.exp(-2.0)
        assert clipped.sum() > 10
        if dtype == np.float64:
            np.testing.assert_array_equal(new_params[clipped], 0.0)
        else:  # a float32 rounding of -params is left
            np.testing.assert_allclose(new_params[clipped], 0.0, rtol=0, atol=1e-8)


def test_chain_equals_optimizer_then_reference_update():
    """optax.chain(rmsprop, rln) == rmsprop, then rln_core.reference.update(delta=updates).

    Eager: under jit XLA may fuse the optimizer's last multiply into W = params + updates
    (an FMA), so W differs from the reference's input by up to half an ulp of the
    updates (test_jax_rln.py checks jit against eager). Each update is compared on the same
    inputs: the reference starts from the transform's params, with its own state."""
    rng = np.random.default_rng(0)
    # "c": float32 params given float64 gradients: W is rounded to the params' dtype, as
    # apply_updates rounds it, before RLN learns from it
    shapes = {"a": ((12, 5), np.float32), "b": ((7,), np.float64), "c": ((6, 4), np.float32)}
    grad_dtypes = {"a": np.float32, "b": np.float64, "c": np.float64}
    params = {k: jnp.asarray(rng.normal(0.0, 0.05, s).astype(d)) for k, (s, d) in shapes.items()}
    hp = dict(avg_reg=-6.0, learning_rate=3e5, norm=1)
    tx = optax.chain(optax.rmsprop(1e-2), rln_jax.rln(**hp))
    opt = optax.rmsprop(1e-2)
    state, opt_state = tx.init(params), opt.init(params)
    core = {k: rln_core.init(np.asarray(p), avg_reg=hp["avg_reg"]) for k, p in params.items()}
    zeros = 0
    for t in range(8):
        grads = {k: jnp.asarray(rng.normal(0.0, 1.0, s).astype(grad_dtypes[k]))
                 for k, (s, _) in shapes.items()}
        updates, state = tx.update(grads, state, params)
        new_params = optax.apply_updates(params, updates)
        opt_updates, opt_state = opt.update(grads, opt_state)
        for k in shapes:
            before = np.asarray(params[k])
            delta = np.asarray(opt_updates[k])
            expected_w, core[k] = reference.update((before + delta).astype(before.dtype), core[k],
                                                   delta=delta, **hp)
            _assert_applied(f"step {t} {k}", before, new_params[k], expected_w, core[k],
                            state[1].lambdas[k], state[1].prev_reg[k])
            zeros += int((expected_w == 0).sum())
        params = new_params
    assert int(rln_jax.rln_state(state).steps) == 8
    assert zeros > 0  # the clip to exactly 0 was exercised


def _flag_case(name):
    """(weights, lambdas, delta, prev_reg, steps, hyperparameters, compute_dtype, flags) of
    one case of `test_step_flags_and_results_under_jit_are_numpys`: flags is the expected
    (weights_finite, lambdas_finite)."""
    rng = np.random.default_rng(11)
    w = rng.normal(0.0, 0.05, (4, 5)).astype(np.float32)
    w[0, :2] = 0.0
    lam = rng.normal(-6.0, 1.0, (4, 5))
    delta = rng.normal(0.0, 1e-3, (4, 5)).astype(np.float32)
    reg = rng.normal(0.0, 1e-4, (4, 5))
    hp, compute, flags = rln_core.Hyperparameters(-6.0, 1e4, 1), None, (True, True)
    steps = 3
    f32_max = float(np.finfo(np.float32).max)
    if name == "inf_weight":
        w[1, 2], flags = np.inf, (False, True)
    elif name == "nan_weight_l2":
        w[3, 4], hp, flags = np.nan, rln_core.Hyperparameters(-6.0, 1e4, 2), (False, True)
    elif name == "weight_whose_2w_overflows":  # a float64 weight: D = 2W is not finite
        w = w.astype(np.float64)
        w[2, 2], hp, flags = 1e308, rln_core.Hyperparameters(-6.0, 1e4, 2), (False, True)
    elif name == "nan_delta":
        delta[2, 3], flags = np.nan, (True, False)
    elif name == "nan_delta_first_update":  # delta and prev_reg are not read
        delta[2, 3], reg[0, 0], steps = np.nan, np.nan, 0
    elif name in ("lambda_over_float32_max", "lambda_over_float32_max_f64_state"):
        # finite in float64 arithmetic; in a float32 state one lambda overflows
        lam = lam.astype(np.float32).astype(np.float64)
        lam[1, 1], delta[1, 1], reg[1, 1] = f32_max, -1.0, 1e34
        flags = (True, name.endswith("f64_state"))
        if not name.endswith("f64_state"):
            lam = lam.astype(np.float32)
            reg = reg.astype(np.float32)
    elif name == "float32_compute_inf_lambda_step":
        lam, reg, compute = lam.astype(np.float32), reg.astype(np.float32), jnp.float32
        delta[3, 0], reg[3, 0], flags = 1.0, 1e38, (True, False)  # nu * delta * reg: inf
    elif name == "weights_near_the_float64_limit":  # the clip near log(largest float)
        w = np.array([[1.7e308, -1.7e308, 1e300, 0.0, 2.0]])
        lam = np.array([[709.0, np.log(1.7e308) - 1e-12, 709.0, 800.0, -1.0]])
        delta, reg, steps = np.zeros_like(w), np.zeros_like(w), 0
    return w, lam, delta, reg, steps, hp, compute, flags


@pytest.mark.parametrize("name", ["finite", "inf_weight", "nan_weight_l2",
                                  "weight_whose_2w_overflows", "nan_delta",
                                  "nan_delta_first_update", "lambda_over_float32_max",
                                  "lambda_over_float32_max_f64_state",
                                  "float32_compute_inf_lambda_step",
                                  "weights_near_the_float64_limit"])
def test_step_flags_and_results_under_jit_are_numpys(name):
    """`array_api.step` under jax.jit sets weights_finite, lambdas_finite and ok as it does
    eagerly on NumPy and as the cases say: ok is both. A non-finite W (for L2: 2W), a
    lambda non-finite in the state's dtype only (float64 math, float32 state), NaN in
    delta after the first update; not on the first update (delta, prev_reg unread). Where
    ok, the results agree, zeros exactly (near the float64 limit the exp of a lambda
    below its cap stays finite; a lambda above it lands the weight on exactly 0)."""
    from rln_core import array_api

    w, lam, delta, reg, steps, hp, compute, flags = _flag_case(name)
    eager_compute = None if compute is None else np.float32
    with np.errstate(all="ignore"):
        expected = array_api.step(w, lam, None, reg, steps, hp, delta=delta,
                                  compute_dtype=eager_compute)
    jitted = jax.jit(lambda w, lam, delta, reg, steps: array_api.step(
        w, lam, None, reg, steps, hp, delta=delta, xp=jnp, compute_dtype=compute))
    got = jitted(jnp.asarray(w), jnp.asarray(lam), jnp.asarray(delta), jnp.asarray(reg),
                 jnp.asarray(steps, jnp.int32))
    assert (bool(got.weights_finite), bool(got.lambdas_finite)) == flags
    assert (bool(expected.weights_finite), bool(expected.lambdas_finite)) == flags
    assert bool(got.ok) == bool(expected.ok) == all(flags)
    if all(flags):
        for field in ("weights", "lambdas", "reg"):
            g, e = np.asarray(getattr(got, field)), np.asarray(getattr(expected, field))
            assert g.dtype == e.dtype and np.isfinite(g).all()
            np.testing.assert_allclose(g, e, rtol=1e-12, atol=0, err_msg=field)
            np.testing.assert_array_equal(g == 0, e == 0, err_msg=field)
    if name == "weights_near_the_float64_limit":
        weights = np.asarray(got.weights)[0]
        np.testing.assert_array_equal(weights[1:4], [0.0, 0.0, 0.0])  # clipped; W == 0
        np.testing.assert_allclose(weights[[0, 4]], [1.7e308 - np.exp(709.0), 2.0 - np.exp(-1.0)],
                                   rtol=1e-15)
