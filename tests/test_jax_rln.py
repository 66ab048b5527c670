"""rln_jax in JAX's default float32 mode: the transform, jit, optax.masked, training,
non-finite updates, checkpoints, validation. (The float64 spec tests: test_jax_x64.py.)

Every test runs inside `jax.enable_x64(False)` (an autouse fixture), so a test module
that turns x64 on for its process cannot change what these check.
"""

import functools
import inspect
import io
import re
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import rln_core
import rln_jax
from rln_core import reference, testing
from rln_core.checks import NON_FINITE_WEIGHTS_MESSAGE, non_finite_lambdas_message
from rln_jax._transform import NO_PARAMS_MESSAGE, regularize

# jax.enable_x64 from jax 0.8 on; jax.experimental.enable_x64 before (the declared floor is older)
enable_x64 = jax.enable_x64 if hasattr(jax, "enable_x64") else jax.experimental.enable_x64


@pytest.fixture(autouse=True)
def float32_mode():
    with enable_x64(False):
        assert not jax.config.jax_enable_x64
        yield


# --- a 2-layer MLP in plain JAX ---------------------------------------------------------

def _mlp(key, sizes=(60, 32, 1)):
    params = {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        key, sub = jax.random.split(key)
        params[f"layer{i}"] = {"kernel": jax.random.normal(sub, (n_in, n_out)) / np.sqrt(n_in),
                               "bias": jnp.zeros(n_out)}
    return params


def _forward(params, x):
    hidden = jax.nn.relu(x @ params["layer0"]["kernel"] + params["layer0"]["bias"])
    return hidden @ params["layer1"]["kernel"] + params["layer1"]["bias"]


def _loss(params, x, y):
    return jnp.mean((_forward(params, x) - y) ** 2)


def _first_kernel(tree):
    """The mask of the paper's setting: only the input layer's kernel."""
    return {name: {"kernel": name == "layer0", "bias": False} for name in tree}


def _tx(**hyperparameters):
    return optax.chain(optax.rmsprop(1e-3),
                       optax.masked(rln_jax.rln(**hyperparameters), _first_kernel))


def _grads(seed, params, n):
    rng = np.random.default_rng(seed)
    return [jax.tree_util.tree_map(
        lambda p: jnp.asarray(rng.normal(0.0, 1.0, p.shape).astype(np.float32)), params)
        for _ in range(n)]


def _as_numpy(tree):
    return jax.tree_util.tree_map(np.asarray, tree)


def _assert_trees_equal(a, b):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# --- float32 math against the float64 reference ----------------------------------------

class _TracedHyperparameters(NamedTuple):
    avg_reg: jax.Array
    learning_rate: jax.Array
    norm: int


@functools.lru_cache(maxsize=None)
def _traced_body(norm):
    """`regularize` (rln's update body) jitted with Theta and nu as arguments: the kit's
    cases then share XLA compiles (`rln` itself bakes them in as constants)."""
    return jax.jit(lambda w, d, state, avg_reg, nu: regularize(
        w, d, state, _TracedHyperparameters(avg_reg, nu, norm)))


def _float32_tolerances(weights, case_state, delta, learning_rate, expected):
    """`rln_jax.FLOAT32_TOLERANCE` as its docstring states it."""
    tol = rln_jax.FLOAT32_TOLERANCE
    lam_in = case_state.lambdas.astype(np.float64)
    stepped = lam_in if case_state.steps == 0 else (
        lam_in - learning_rate * delta.astype(np.float64) * case_state.prev_reg)
    lam_tol = tol * (1.0 + np.abs(expected.lambdas) + np.abs(stepped))
    implied = np.abs(expected.prev_reg.astype(np.float64)) * lam_tol  # d exp(l) = exp(l) dl
    tiny = np.finfo(np.float32).tiny
    reg_tol = implied + 2 * np.spacing(np.abs(expected.prev_reg).astype(np.float32)) + tiny
    w_tol = implied + 2 * np.spacing(np.abs(weights).astype(np.float32)) + tiny
    return lam_tol, reg_tol, w_tol


def test_float32_mode_matches_the_reference_within_the_stated_tolerance():
    """The kit's float32 cases with a float32 state: float32 math vs the float64 reference
    on the same float32 inputs, within FLOAT32_TOLERANCE (and not within 1e-9: it is
    float32 math)."""
    cases = testing.FLOAT32_CASES
    assert len(cases) >= 40
    for case in cases:
        weights, state, kwargs = case.inputs()
        delta = kwargs.pop("delta", None)
        if delta is None:
            delta = (weights - state.prev_weights).astype(np.float32)
        expected_w, expected = reference.update(weights.copy(), state.copy(), delta=delta,
                                                **kwargs)
        js = rln_jax.RLNState(jnp.asarray(state.lambdas), jnp.asarray(state.prev_reg),
                              jnp.asarray(state.steps, jnp.int32), jnp.zeros([], jnp.int32))
        new_w, new_state, ok = _traced_body(case.norm)(
            jnp.asarray(weights), jnp.asarray(delta), js, jnp.float32(case.avg_reg),
            jnp.float32(case.learning_rate))
        assert bool(ok)
        got = {"lambdas": np.asarray(new_state.lambdas),
               "prev_reg": np.asarray(new_state.prev_reg), "weights": np.asarray(new_w)}
        assert all(value.dtype == np.float32 for value in got.values())
        tolerances = _float32_tolerances(weights, state, delta, case.learning_rate, expected)
        for (field, value), ref, tol in zip(got.items(), (expected.lambdas, expected.prev_reg,
                                                          expected_w), tolerances):
            diff = np.abs(value.astype(np.float64) - ref.astype(np.float64))
            worst = np.argmax(diff / tol)
            assert (diff <= tol).all(), (f"[{case.name}] {field} off by {diff.flat[worst]:.3g}, "
                                         f"tolerance {tol.flat[worst]:.3g}")
        if not case.at_cap:  # away from the cap the clip decisions agree: exact zeros
            np.testing.assert_array_equal(got["weights"] == 0, expected_w == 0, case.name)
    # and it is float32 math: the kit's float64 tolerance would not hold
    lam_diff = np.abs(got["lambdas"] - expected.lambdas.astype(np.float64))
    assert lam_diff.max() > testing.LAMBDA_RTOL * np.abs(expected.lambdas).max()


# --- init and validation ----------------------------------------------------------------

def test_init_state_has_a_fixed_structure_of_plain_arrays():
    params = _mlp(jax.random.PRNGKey(0))
    tx = rln_jax.rln()
    state = tx.init(params)
    assert isinstance(state, rln_jax.RLNState)
    assert set(state._fields) - {"skipped"} <= set(rln_core.STATE_FIELDS)
    for leaf in jax.tree_util.tree_leaves(state.lambdas):
        assert leaf.dtype == jnp.float32
        np.testing.assert_array_equal(leaf, rln_core.DEFAULTS.avg_reg)
    for leaf, p in zip(jax.tree_util.tree_leaves(state.prev_reg),
                       jax.tree_util.tree_leaves(params)):
        assert leaf.shape == p.shape and leaf.dtype == jnp.float32 and not np.asarray(leaf).any()
    for counter in (state.steps, state.skipped):
        assert counter.shape == () and counter.dtype == jnp.int32 and int(counter) == 0
    _assert_trees_equal(jax.jit(tx.init)(params), state)


def test_defaults_are_rln_cores():
    signature = inspect.signature(rln_jax.rln)
    assert {name: signature.parameters[name].default
            for name in rln_core.Hyperparameters.fields()} == rln_core.DEFAULTS.asdict()


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(norm=3), ValueError, "norm"),
    (dict(norm=True), ValueError, "norm"),
    (dict(learning_rate=-1.0), ValueError, "learning_rate"),
    (dict(avg_reg=float("nan")), ValueError, "avg_reg"),
    (dict(state_dtype="int32"), TypeError, "state_dtype"),
    (dict(state_dtype=np.float16), TypeError, "state_dtype"),
    (dict(state_dtype="bogus"), TypeError, "state_dtype"),  # once a float32 state
])
def test_rln_validates_its_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        rln_jax.rln(**kwargs)


def test_float64_state_needs_x64():
    tx = rln_jax.rln(state_dtype=np.float64)  # valid; refused at init without x64
    with pytest.raises(TypeError, match="jax_enable_x64"):
        tx.init({"w": jnp.ones(3)})
    assert rln_jax.rln(state_dtype="float32").init({"w": jnp.ones(3)}).lambdas["w"].dtype \
        == jnp.float32


@pytest.mark.parametrize("leaf, error, match", [
    (jnp.ones((3, 2), jnp.int32), TypeError, "float32 or float64"),
    (jnp.ones((3, 2), jnp.bfloat16), TypeError, "float32 or float64"),
    (jnp.ones((0, 2)), ValueError, "empty"),
    (1.5, TypeError, "must be an array"),
])
def test_init_rejects_bad_params_naming_the_leaf(leaf, error, match):
    params = _mlp(jax.random.PRNGKey(0))
    params["layer0"]["kernel"] = leaf
    with pytest.raises(error, match=re.escape("params['layer0']['kernel']") + ".*" + match):
        rln_jax.rln().init(params)


def test_update_needs_params_and_matching_trees():
    params = _mlp(jax.random.PRNGKey(0))
    tx = rln_jax.rln()
    state = tx.init(params)
    grads = _grads(0, params, 1)[0]
    with pytest.raises(ValueError, match=re.escape(NO_PARAMS_MESSAGE)):
        tx.update(grads, state)
    with pytest.raises(ValueError, match="not a tree like the params"):
        tx.update({"layer0": grads["layer0"]}, state, {"layer0": params["layer0"]})
    wrong = jax.tree_util.tree_map(lambda g: g, grads)
    wrong["layer1"]["kernel"] = jnp.zeros((2, 16))
    with pytest.raises(ValueError, match=re.escape("updates['layer1']['kernel'] has shape")):
        tx.update(wrong, state, params)


def test_hyperparameters_given_as_jax_arrays_are_refused_saying_so():
    # optax.inject_hyperparams would pass them as arrays: RLN's are fixed numbers
    with pytest.raises(ValueError, match="learning_rate.*got an array, .*Array.*fixed Python"):
        rln_jax.rln(learning_rate=jnp.asarray(1e6))
    injected = optax.inject_hyperparams(rln_jax.rln, static_args=("norm",))(
        avg_reg=-10.0, learning_rate=1e6)
    with pytest.raises(ValueError, match="avg_reg.*fixed Python or NumPy numbers"):
        injected.init({"kernel": jnp.ones((3, 2))})


def test_init_refuses_a_theta_beyond_the_float32_state():
    with pytest.raises(ValueError, match="does not fit a float32 state"):
        rln_jax.rln(avg_reg=1e39).init({"kernel": jnp.ones((3, 2))})


def test_update_refuses_a_state_it_cannot_use():
    params = {"w": jnp.ones((3, 2), jnp.float32)}
    grads = {"w": jnp.full((3, 2), 1e-3, jnp.float32)}
    tx = rln_jax.rln()
    with pytest.raises(TypeError, match="must be an rln_jax.RLNState"):
        tx.update(grads, tuple(tx.init(params)), params)
    state = tx.init(params)
    other_reg = state._replace(prev_reg={"w": state.prev_reg["w"].astype(jnp.bfloat16)})
    with pytest.raises(TypeError, match=re.escape("state.prev_reg['w'] has dtype bfloat16")):
        tx.update(grads, other_reg, params)
    with enable_x64(True):
        state64 = tx.init(params)  # float64 lambdas
        assert state64.lambdas["w"].dtype == jnp.float64
        with pytest.raises(TypeError, match="compute_dtype=float32 needs .* got the state's lambdas float64"):
            rln_jax.rln(compute_dtype=np.float32).update(grads, state64, params)
    with pytest.raises(TypeError, match="jax_enable_x64 is off"):
        tx.update(grads, state64, params)


# --- jit, optax.masked, training ---------------------------------------------------------

def test_jit_and_eager_agree():
    """Six updates of chain(rmsprop, masked(rln)) on an MLP, eagerly and under jit.

    Under jit XLA fuses the optimizer into W = params + updates (an FMA), so W can
    differ by half an ulp of the updates; the rest is the same float32 math."""
    params0 = _mlp(jax.random.PRNGKey(1))
    tx = _tx(avg_reg=-6.0, learning_rate=1e5)
    results = []
    for update in (tx.update, jax.jit(tx.update)):
        params, state = params0, tx.init(params0)
        for grads in _grads(1, params0, 6):
            updates, state = update(grads, state, params)
            params = optax.apply_updates(params, updates)
        results.append((params, state))
    (eager_p, eager_s), (jit_p, jit_s) = results
    for a, b in zip(jax.tree_util.tree_leaves(eager_p), jax.tree_util.tree_leaves(jit_p)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-7)
    lam_eager, lam_jit = (np.asarray(rln_jax.lambdas(s)["layer0"]["kernel"]) for s in
                          (eager_s, jit_s))
    np.testing.assert_allclose(lam_jit, lam_eager, rtol=0, atol=1e-4)  # natural logs
    zeros = np.asarray(eager_p["layer0"]["kernel"]) == 0
    assert zeros.sum() > 10  # the clip happened
    # a lambda within rounding of its cap may clip on one side only (observed: none)
    assert ((np.asarray(jit_p["layer0"]["kernel"]) == 0) != zeros).mean() < 0.01
    assert int(rln_jax.rln_state(jit_s).steps) == int(rln_jax.rln_state(eager_s).steps) == 6


def test_masked_regularizes_only_the_first_kernel():
    params0 = _mlp(jax.random.PRNGKey(2))
    tx, plain = _tx(avg_reg=-6.0, learning_rate=1e5), optax.rmsprop(1e-3)
    params, state = params0, tx.init(params0)
    plain_params, plain_state = params0, plain.init(params0)
    update = jax.jit(tx.update)
    for grads in _grads(2, params0, 5):
        updates, state = update(grads, state, params)
        params = optax.apply_updates(params, updates)
        plain_updates, plain_state = jax.jit(plain.update)(grads, plain_state)
        plain_params = optax.apply_updates(plain_params, plain_updates)
    kernel, plain_kernel = params["layer0"]["kernel"], plain_params["layer0"]["kernel"]
    assert not np.array_equal(kernel, plain_kernel)
    assert (np.asarray(kernel) == 0).any() and not (np.asarray(plain_kernel) == 0).any()
    for name, leaf in (("layer0", "bias"), ("layer1", "kernel"), ("layer1", "bias")):
        np.testing.assert_array_equal(params[name][leaf], plain_params[name][leaf])
    lambdas = rln_jax.lambdas(state)
    assert lambdas["layer0"]["kernel"].shape == (60, 32)
    assert not np.all(np.asarray(lambdas["layer0"]["kernel"]) == -6.0)  # learned
    for name, leaf in (("layer0", "bias"), ("layer1", "kernel"), ("layer1", "bias")):
        assert isinstance(lambdas[name][leaf], optax.MaskedNode)
    assert int(rln_jax.rln_state(state).steps) == 5


def test_a_mask_that_selects_nothing_passes_the_updates_through():
    params = _two_tensors()
    tx = optax.masked(rln_jax.rln(), lambda tree: jax.tree_util.tree_map(lambda _: False, tree))
    state = tx.init(params)
    updates = jax.tree_util.tree_map(lambda p: jnp.full_like(p, 1e-3), params)
    for update in (tx.update, jax.jit(tx.update)):
        out, new_state = update(updates, state, params)
        _assert_trees_equal(out, updates)
        assert int(rln_jax.rln_state(new_state).steps) == 1


def test_training_sparsifies_the_first_layer_and_lowers_the_loss():
    """The tutorial's setting, small: diabetes + 50 noise columns, an MLP in plain JAX,
    rmsprop, batch 10, five epochs, RLN on the first kernel, all under jit."""
    x, y = pytest.importorskip("sklearn.datasets").load_diabetes(return_X_y=True)
    rng = np.random.default_rng(0)
    x = (x - x.mean(0)) / x.std(0)
    x = np.hstack([x, rng.normal(size=(len(x), 50))]).astype(np.float32)
    y = ((y - y.mean()) / y.std()).astype(np.float32)[:, None]
    params = _mlp(jax.random.PRNGKey(0))
    tx = _tx(avg_reg=-10.0, learning_rate=1e6)
    state = tx.init(params)

    @jax.jit
    def train_step(params, state, xb, yb):
        grads = jax.grad(_loss)(params, xb, yb)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    start = float(_loss(params, x, y))
    for _ in range(5):
        order = rng.permutation(len(x))
        for i in range(0, len(x) - 9, 10):
            params, state = train_step(params, state, x[order[i:i + 10]], y[order[i:i + 10]])
    kernel = np.asarray(params["layer0"]["kernel"])
    assert rln_core.sparsity(kernel) > 0.0
    assert float(_loss(params, x, y)) < 0.75 * start
    found = rln_jax.rln_state(state)
    assert int(found.steps) == 5 * 44 and int(found.skipped) == 0
    assert np.isfinite(np.asarray(found.lambdas["layer0"]["kernel"])).all()


# --- non-finite updates -------------------------------------------------------------------

def _after_one_update(tx, params):
    state = tx.init(params)
    updates = jax.tree_util.tree_map(lambda p: jnp.full_like(p, 1e-3), params)
    _, state = tx.update(updates, state, params)
    assert int(state.steps) == 1
    return state


def _two_tensors():
    rng = np.random.default_rng(5)
    return {"a": jnp.asarray(rng.normal(0.0, 0.05, (6, 4)).astype(np.float32)),
            "b": jnp.asarray(rng.normal(0.0, 0.05, (5,)).astype(np.float32))}


def test_non_finite_weights_skip_the_update_under_jit():
    params = _two_tensors()
    tx = rln_jax.rln(avg_reg=-8.0)
    state = _after_one_update(tx, params)
    updates = {"a": jnp.full((6, 4), 1e-3).at[2, 1].set(jnp.nan), "b": jnp.full((5,), 1e-3)}
    out, new_state = jax.jit(tx.update)(updates, state, params)
    _assert_trees_equal(out, updates)  # the optimizer's updates, every tensor's, unchanged
    _assert_trees_equal(new_state._replace(skipped=state.skipped), state)
    assert int(new_state.skipped) == 1
    inf = {"a": jnp.full((6, 4), 1e-3), "b": jnp.full((5,), 1e-3).at[0].set(-jnp.inf)}
    out, new_state = jax.jit(tx.update)(inf, new_state, params)
    _assert_trees_equal(out, inf)
    assert int(new_state.skipped) == 2 and int(new_state.steps) == 1
    good = jax.tree_util.tree_map(lambda p: jnp.full_like(p, 1e-3), params)
    out, new_state = jax.jit(tx.update)(good, new_state, params)
    assert int(new_state.steps) == 2 and int(new_state.skipped) == 2
    assert not np.array_equal(out["a"], good["a"])  # applied again


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_non_finite_lambdas_skip_the_update_under_jit():
    params = _two_tensors()
    tx = rln_jax.rln(learning_rate=1e300)  # finite, but the lambda step overflows
    state = _after_one_update(tx, params)  # the first update has no lambda step
    updates = jax.tree_util.tree_map(lambda p: jnp.full_like(p, 1e-3), params)
    out, new_state = jax.jit(tx.update)(updates, state, params)
    _assert_trees_equal(out, updates)
    _assert_trees_equal(new_state._replace(skipped=state.skipped), state)
    assert int(new_state.skipped) == 1


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_non_finite_updates_raise_eagerly():
    params = _two_tensors()
    tx = rln_jax.rln(avg_reg=-8.0)
    state = _after_one_update(tx, params)
    updates = {"a": jnp.full((6, 4), 1e-3), "b": jnp.full((5,), 1e-3).at[3].set(jnp.nan)}
    with pytest.raises(ValueError, match=re.escape(NON_FINITE_WEIGHTS_MESSAGE) + ".*'b'"):
        tx.update(updates, state, params)
    both = {"a": updates["a"].at[0, 0].set(jnp.nan), "b": updates["b"]}
    with pytest.raises(ValueError, match=re.escape(NON_FINITE_WEIGHTS_MESSAGE) + r".*\['a'\]"):
        tx.update(both, state, params)  # the first bad leaf is named
    big = rln_jax.rln(learning_rate=1e300)
    state = _after_one_update(big, params)
    updates = jax.tree_util.tree_map(lambda p: jnp.full_like(p, 1e-3), params)
    with pytest.raises(ValueError, match=re.escape(non_finite_lambdas_message(1e300))):
        big.update(updates, state, params)
    with pytest.raises(ValueError, match=re.escape(NON_FINITE_WEIGHTS_MESSAGE)):
        optax.chain(optax.sgd(1.0), big).update(
            {"a": jnp.full((6, 4), jnp.inf), "b": jnp.zeros(5)},
            optax.chain(optax.sgd(1.0), big).init(params), params)


# --- checkpoints and lookup ---------------------------------------------------------------

def test_a_step_skipping_wrapper_goes_around_the_chain():
    # README: optax.MultiSteps(optax.chain(opt, rln), k) steps RLN once per optimizer
    # step; chained after MultiSteps, RLN steps on every call (the zero updates of the
    # left-out steps included), as the README warns
    params = {"w": jnp.linspace(-0.1, 0.1, 12)}
    grads = {"w": jnp.linspace(0.3, -0.2, 12)}

    def rln_steps(tx, calls=8):
        state = tx.init(params)
        p = params
        for _ in range(calls):
            updates, state = tx.update(grads, state, p)
            p = optax.apply_updates(p, updates)
        return int(rln_jax.rln_state(state).steps)

    inside = optax.MultiSteps(optax.chain(optax.sgd(1e-2), rln_jax.rln(avg_reg=-6.0)), 2)
    after = optax.chain(optax.MultiSteps(optax.sgd(1e-2), 2).gradient_transformation(),
                        rln_jax.rln(avg_reg=-6.0))
    assert rln_steps(inside) == 4
    assert rln_steps(after) == 8


def test_checkpoint_round_trip_continues_exactly():
    params0 = _mlp(jax.random.PRNGKey(3))
    tx = _tx(avg_reg=-6.0, learning_rate=1e5)
    update = jax.jit(tx.update)
    grads = _grads(3, params0, 6)

    def run(params, state, grads):
        for g in grads:
            updates, state = update(g, state, params)
            params = optax.apply_updates(params, updates)
        return params, state

    params, state = run(params0, tx.init(params0), grads[:3])
    buffer = io.BytesIO()
    np.savez(buffer, *[np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(state)])
    buffer.seek(0)
    with np.load(buffer) as saved:
        arrays = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    assert all(isinstance(a, np.ndarray) for a in arrays)
    restored = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(tx.init(params0)),
                                            [jnp.asarray(a) for a in arrays])
    _assert_trees_equal(restored, state)
    assert rln_jax.rln_state(restored).steps.dtype == jnp.int32
    expected = run(params, state, grads[3:])
    resumed = run(params, restored, grads[3:])
    _assert_trees_equal(resumed, expected)


def test_rln_state_is_found_once_or_refused():
    params = _two_tensors()
    with pytest.raises(ValueError, match="found 0"):
        rln_jax.rln_state(optax.sgd(1.0).init(params))
    twice = optax.chain(rln_jax.rln(), rln_jax.rln())
    with pytest.raises(ValueError, match="found 2"):
        rln_jax.lambdas(twice.init(params))
    assert rln_jax.lambdas(optax.chain(optax.sgd(1.0), rln_jax.rln()).init(params))["a"].shape \
        == (6, 4)
