"""The float32 compute mode, `rln_core.update(..., compute_dtype=np.float32)`, against the reference.

Its stated tolerance (per update, same inputs; `rln_core.checks.F32_LAMBDA_RTOL`):
- lambdas within F32_LAMBDA_RTOL * max(1, |lambda_ref|, |lambda_in|, |nu * delta * prev_reg|)
  plus one float32 ulp of lambda_ref: the scale is the magnitude of the terms the
  float32 arithmetic adds (the kit's 1e-9 is relative to max(1, |lambda_ref|));
- weights and prev_reg within one ulp, plus what that lambda tolerance implies
  (2 |reg| * tolerance), plus the smallest normal float32 (as the kit);
- every weight the reference sets to exactly 0 is exactly 0, and prev_weights is
  the weights as written (as the kit).
The float64 default keeps the kit's own tolerances (tests/test_core_equivalence.py).
"""

import dataclasses
import functools

import numpy as np
import pytest

import rln_core
from rln_core import testing
from rln_core.checks import LOG_HALF

F32_LAMBDA_RTOL = 3e-6  # restated: a change to the core's figure must be deliberate
F32 = np.float32
IMPLS = ["numba", "numpy", "array_api"]


TOLERANCE = testing.FLOAT32_COMPUTE_TOLERANCE


def check_f32_update(fn, cases, lambda_rtol=F32_LAMBDA_RTOL):
    """The kit's `check_update` with the float32 mode's tolerance (or a stricter rtol)."""
    return testing.check_update(fn, cases, tolerance=dataclasses.replace(
        TOLERANCE, lambda_rtol=lambda_rtol))


KIT_CASES = list(testing.FLOAT32_CASES)  # the kit's float32-weight cases, float32 state


def _own_cases():
    cases = []
    for seed, (shape, norm, first) in enumerate(
            [(s, n, f) for s in [(7,), (13, 7), (5, 4, 3, 2), (1, 1), (3, 1000), (257,)]
             for n in (1, 2) for f in (False, True)], 800):
        cases.append(testing.UpdateCase(
            name=f"own_{norm=}_{'x'.join(map(str, shape))}{'_first' if first else ''}",
            shape=shape, norm=norm, first=first, state_dtype="float32", seed=seed))
    extremes = [(-3.0, 1e7), (-4.0, 1e7), (-20.0, 1e5), (-10.0, 0.0), (-8.0, 1e6), (-1.0, 1e8),
                (-25.0, 1.0)]
    for seed, ((avg_reg, nu), norm) in enumerate(
            [(e, n) for e in extremes for n in (1, 2)], 900):
        cases.append(testing.UpdateCase(
            name=f"own_extreme_{norm=}_theta{avg_reg}_nu{nu:g}", shape=(30, 17), norm=norm,
            avg_reg=avg_reg, learning_rate=nu, state_dtype="float32", seed=seed))
    for seed, (norm, first) in enumerate([(n, f) for n in (1, 2) for f in (True, False)], 950):
        cases.append(testing.UpdateCase(
            name=f"own_at_cap_{norm=}_{'first' if first else 'translated'}", shape=(60, 50),
            norm=norm, first=first, learning_rate=1e6 if first else 0.0, at_cap=True,
            state_dtype="float32", seed=seed))
    for seed, (delta, norm, layout) in enumerate(
            [(d, n, lay) for d in ("float32", "float64") for n in (1, 2)
             for lay in ("C", "F", "strided")], 970):
        cases.append(testing.UpdateCase(
            name=f"own_delta_{delta}_{norm=}_{layout}", shape=(12, 9), norm=norm, delta=delta,
            layout=layout, state_dtype="float32", seed=seed))
    for seed, zeros in enumerate((0.0, 0.5, 1.0), 990):
        cases.append(testing.UpdateCase(name=f"own_zero_fraction_{zeros}", shape=(40, 7),
                                        zero_fraction=zeros, state_dtype="float32", seed=seed))
    cases.append(testing.UpdateCase(name="own_tutorial_1013x179", shape=(1013, 179),
                                    state_dtype="float32", seed=999))
    return cases


OWN_CASES = _own_cases()
ALL_CASES = KIT_CASES + OWN_CASES


def f32_update(impl):
    return functools.partial(rln_core.update, impl=impl, compute_dtype=np.float32)


def test_the_stated_tolerance_is_the_cores():
    assert rln_core.checks.F32_LAMBDA_RTOL == F32_LAMBDA_RTOL == TOLERANCE.lambda_rtol
    assert rln_core.checks.CLIP_MARGIN_F32 < F32_LAMBDA_RTOL / 2


def test_the_kits_float32_cases_are_the_float32_weight_cases_with_a_float32_state():
    assert len(KIT_CASES) >= 50
    assert all(c.dtype == "float32" and c.state_dtype == "float32" and c.delta != "float64"
               for c in KIT_CASES)
    assert len(KIT_CASES) == sum(c.dtype == "float32" and c.delta != "float64"
                                 for c in testing.CASES)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("cases", [KIT_CASES, OWN_CASES], ids=["kit", "own"])
def test_float32_mode_matches_the_reference_within_its_tolerance(impl, cases):
    assert check_f32_update(f32_update(impl), cases) == len(cases)


@pytest.mark.parametrize("impl", IMPLS)
def test_float32_mode_is_not_within_the_float64_tolerance_it_does_not_claim(impl):
    """Sanity of the helper: the float32 arithmetic is measurably looser than the kit's
    1e-9, so the stated tolerance is doing work (the float64 default passes 1e-9)."""
    with pytest.raises(AssertionError, match=r"state.lambdas\["):
        check_f32_update(f32_update(impl), OWN_CASES, lambda_rtol=1e-10)
    check_f32_update(functools.partial(rln_core.update, impl=impl), OWN_CASES,
                     lambda_rtol=testing.LAMBDA_RTOL)


def test_the_helper_catches_a_residue_where_the_reference_lands_on_zero():
    def leaves_a_residue(weights, state, **kwargs):
        new_w, new_state = rln_core.reference.update(weights, state, **kwargs)
        landed = (new_w == 0) & (weights != 0)
        new_w[landed] = np.finfo(weights.dtype).smallest_subnormal
        new_state.prev_weights[...] = new_w
        return new_w, new_state
    with pytest.raises(AssertionError, match="lands on exactly 0.0"):
        check_f32_update(leaves_a_residue, OWN_CASES)


# --- the numba kernel's other paths ------------------------------------------------------

def _case_inputs(shape, seed, norm=1, change=None, **kwargs_changes):
    case = testing.UpdateCase("x", shape, norm=norm, state_dtype="float32", seed=seed)
    weights, state, kwargs = case.inputs()
    if change is not None:
        change(weights, state)
    kwargs.update(kwargs_changes)
    return weights, state, kwargs


def _check_one(name, weights, state, kwargs, impl="numba"):
    scale = testing.input_scale(weights, state, kwargs)
    expected_w, expected = rln_core.reference.update(weights.copy(), state.copy(), **kwargs)
    f32_update(impl)(weights, state, **kwargs)
    testing.assert_update_matches(name, expected_w, expected, weights, state,
                                  lambda_rtol=TOLERANCE.lambda_rtol, scale=scale)


@pytest.mark.parametrize("norm", [1, 2])
def test_subnormal_weights(norm):
    """log32_normal takes normal weights: with a subnormal weight the float64 write runs."""
    def subnormal(weights, state):
        flat = weights.reshape(-1)
        flat[::7] = F32(3e-39) * np.where(flat[::7] < 0, F32(-1), F32(1))
        flat[3] = F32(1.4e-45)
    _check_one(f"subnormal_{norm=}", *_case_inputs((20, 9), 1001, norm, subnormal))


@pytest.mark.parametrize("norm", [1, 2])
def test_huge_weights_and_weight_changes(norm):
    """|W| near float32's largest: the step 2W * step of L2 stays finite, and a weight
    change whose float32 lambda step could overflow runs the float64 write."""
    def huge(weights, state):
        weights.reshape(-1)[:20] = np.linspace(-3.4e38, 3.4e38, 20, dtype=F32)
        state.prev_weights.reshape(-1)[:20] = -weights.reshape(-1)[:20]  # |change| ~ 6.8e38
        state.prev_reg.reshape(-1)[:20] = 1e-40
        state.lambdas.reshape(-1)[:20] = np.linspace(-90, 90, 20)
    weights, state, kwargs = _case_inputs((10, 8), 1002, norm, huge, learning_rate=1.0)
    _check_one(f"huge_{norm=}", weights, state, kwargs)


def test_large_lambdas():
    def large(weights, state):
        flat = state.lambdas.reshape(-1)
        flat[::5] = np.linspace(-1e30, 1e30, flat[::5].size, dtype=F32)
    _check_one("large_lambdas", *_case_inputs((10, 10), 1003, 1, large))


@pytest.mark.parametrize("impl", IMPLS)
def test_large_lambda_steps_elsewhere_do_not_move_every_lambda(impl):
    """A quarter of the elements take lambda steps of ~1e6 (nu 1e8), in +/- pairs: the mean
    is summed from float64 terms (the spec's float32 mode), so the float32 rounding of those
    steps does not reach the other lambdas through the translation. (The array-API path
    summed lambdas already stepped in float32: 92x the tolerance, found by a fuzzer.)"""
    n = 20000
    rng = np.random.default_rng(0)
    weights = rng.normal(0, 0.05, n).astype(F32)
    state = rln_core.init(weights, -8.0, state_dtype=np.float32)
    state.lambdas[...] = -8.0 + rng.normal(0, 1, n)
    state.prev_weights[...] = weights - rng.normal(0, 1e-3, n).astype(F32)
    state.prev_reg[...] = np.sign(state.prev_weights) * np.exp(-8.0 + rng.normal(0, 1, n))
    state.steps = 5
    delta = rng.normal(0, 1e-3, n).astype(F32)
    quarter = n // 4
    for array in (weights, state.prev_weights, state.prev_reg, state.lambdas):
        array[quarter:2 * quarter] = array[:quarter]
    delta[:quarter] = rng.uniform(0.5, 1.0, quarter).astype(F32) * 30.0
    delta[quarter:2 * quarter] = -delta[:quarter] * F32(1.0000001)
    kwargs = {"avg_reg": -8.0, "learning_rate": 1e8, "norm": 1, "delta": delta}
    _check_one(f"large_lambda_steps_{impl}", weights, state, kwargs, impl=impl)


@pytest.mark.parametrize("norm", [1, 2])
@pytest.mark.parametrize("impl", IMPLS)
def test_lambdas_stepped_far_onto_their_cap_clip_as_the_references(impl, norm):
    """The float32 clip margin is relative to max(1, |cap|, |lambda in|, |lambda step|):
    20000 lambdas stepped by ~40 (from 1 to 41) land up to 1e-5 above their cap log(0.5)
    after the translation (|W| = 0.5, so L1's cap is L2's), where float32 rounding (an
    ulp of 41 is 4e-6) decides either way. With the lambda step left out of the scale,
    1243 of the 16940 weights the reference zeroes kept a residue (measured, both norms'
    numba writes and the array-API path)."""
    n, near = 60000, 20000
    theta, nu = -10.0, 1e6
    rng = np.random.default_rng(21)
    weights = rng.normal(0, 0.05, n).astype(F32)
    weights[:near] = np.where(rng.random(near) < 0.5, F32(-0.5), F32(0.5))
    weights[weights == 0] = F32(0.01)
    state = rln_core.init(weights, theta, state_dtype=np.float32)
    state.steps = 1
    prev_reg = rng.uniform(0.5e-3, 2e-3, n)
    state.prev_reg[...] = prev_reg * (1.0 if norm == 2 else np.sign(weights))
    offsets = rng.uniform(0.0, 1e-5, near)
    delta = np.zeros(n)
    delta[:near] = -(40.0 + offsets) / (nu * state.prev_reg[:near].astype(np.float64))
    lambdas = np.empty(n)
    lambdas[:near] = 1.0  # stepped to 41 + offset
    # the others set so that the translation takes 41 to log(0.5)
    lambdas[near:] = ((theta + 41.0 - LOG_HALF) * n - near * 41.0) / (n - near)
    state.lambdas[...] = lambdas
    kwargs = {"avg_reg": theta, "learning_rate": nu, "norm": norm, "delta": delta.astype(F32)}
    expected_w, _ = rln_core.reference.update(weights.copy(), state.copy(), **kwargs)
    assert (expected_w[:near] == 0).sum() > near * 3 // 4, "the case no longer reaches the cap"
    _check_one(f"stepped_onto_the_cap_{norm=}_{impl}", weights, state, kwargs, impl=impl)


@pytest.mark.parametrize("norm", [1, 2])
def test_numba_threaded_path(norm):
    """Tensors of >= 2**19 elements run on chunks in a thread pool (when numba has threads)."""
    case = testing.UpdateCase(f"threaded_{norm=}", (1100, 1000), norm=norm, avg_reg=-4.0,
                              learning_rate=1e7, state_dtype="float32", seed=1100 + norm)
    check_f32_update(f32_update("numba"), [case])


def test_auto_uses_the_float32_mode_too():
    check_f32_update(f32_update("auto"), KIT_CASES[:12] + OWN_CASES[:6])


# --- trajectories: float32 mode vs the float64 default ----------------------------------

TRAJECTORY_SHAPES = [(7,), (13, 7), (4, 3, 5), (64, 32), (179, 101)]


def _trajectories(seed, shape, norm, learning_rate, n_updates=200):
    """The same recorded optimizer steps (|W| ~ 0.1, steps ~ 1e-3) through the float32
    mode and the default (float64 math on the same float32 state): how far apart they end."""
    rng = np.random.default_rng(1200 + seed)
    weights = rng.normal(0, 0.1, size=shape).astype(F32)
    kwargs = {"avg_reg": -10.0, "learning_rate": learning_rate, "norm": norm}
    state64 = rln_core.init(weights, kwargs["avg_reg"], state_dtype="float32")
    state32 = rln_core.init(weights, kwargs["avg_reg"], state_dtype="float32")
    w64, w32 = weights.copy(), weights.copy()
    for _ in range(n_updates):
        step = rng.normal(0, 1e-3, size=shape).astype(F32)
        w64 += step
        w32 += step
        rln_core.update(w64, state64, impl="numba", **kwargs)
        rln_core.update(w32, state32, impl="numba", compute_dtype=np.float32, **kwargs)
    assert state32.steps == state64.steps == n_updates
    lam64 = state64.lambdas.astype(np.float64)
    lam_rel = np.abs(state32.lambdas - lam64) / np.maximum(1.0, np.abs(lam64))
    return lam_rel, np.abs(w32.astype(np.float64) - w64), (w32 == 0) != (w64 == 0)


@pytest.mark.parametrize("seed, shape", list(enumerate(TRAJECTORY_SHAPES)))
def test_l2_trajectories_of_200_updates_stay_within_float32_rounding(seed, shape):
    """L2 (Theta -10, nu 1e5): after 200 updates every lambda is within 2e-5 relative
    (of max(1, |lambda|)) of the default's, every weight within 5e-7, the same exact zeros
    (measured: 2.2e-6 and 1.2e-7 at most)."""
    lam_rel, w_diff, zeros_differ = _trajectories(seed, shape, 2, 1e5)
    assert lam_rel.max() <= 2e-5
    assert w_diff.max() <= 5e-7
    assert not zeros_differ.any()


@pytest.mark.parametrize("seed, shape", list(enumerate(TRAJECTORY_SHAPES)))
def test_l1_trajectories_of_200_updates_stay_close_in_distribution(seed, shape):
    """L1 (the tutorial's Theta -10, nu 1e6): the lambda step multiplies weight
    differences by nu, so any rounding difference grows (docs/RLN_SPEC.md) -- a float32
    state alone departs from a float64 state about as much as the float32 mode departs
    from the default. Stated bound after 200 updates: the median lambda within 2e-3
    relative, the 99th percentile within 0.2, every weight within 2e-2, exact zeros
    differing in at most 0.5% of the elements (measured: 6e-4, 0.065, 5.3e-3, 0.07%)."""
    lam_rel, w_diff, zeros_differ = _trajectories(seed, shape, 1, 1e6)
    assert np.median(lam_rel) <= 2e-3
    assert np.quantile(lam_rel, 0.99) <= 0.2
    assert w_diff.max() <= 2e-2
    assert zeros_differ.mean() <= 5e-3


# --- refusals: nothing written -----------------------------------------------------------

def _with_f32_state(build):
    """A kit error case with its state in float32 (the float32 mode's only input)."""
    def with_f32_state():
        weights, state, kwargs = build()
        with np.errstate(over="ignore"):
            state = rln_core.RLNState(lambdas=state.lambdas.astype(F32),
                                      prev_weights=state.prev_weights,
                                      prev_reg=state.prev_reg.astype(F32), steps=state.steps)
        return weights, state, kwargs
    return with_f32_state


def _f64_state():
    weights, state = testing.UpdateCase("f64_state", (6, 4), seed=1300).make()
    return weights, state, rln_core.DEFAULTS.asdict()


def _f64_weights():
    weights, state = testing.UpdateCase("f64_weights", (6, 4), dtype="float64",
                                        state_dtype="float32", seed=1301).make()
    return weights, state, rln_core.DEFAULTS.asdict()


def _bad_compute_dtype(value):
    def build():
        weights, state = testing.UpdateCase("f32", (6, 4), state_dtype="float32",
                                            seed=1302).make()
        return weights, state, {**rln_core.DEFAULTS.asdict(), "compute_dtype": value}
    return build


F32_ERROR_CASES = tuple(
    dataclasses.replace(case, name=f"f32_{case.name}", build=_with_f32_state(case.build))
    for case in testing.ERROR_CASES
    # float64 weights: the mode refuses them before the case's own check
    if case.name != "norm2_weight_overflows"
) + (
    testing.ErrorCase("float64_state", _f64_state, (TypeError,), match="float32 state"),
    testing.ErrorCase("float64_weights", _f64_weights, (TypeError,), match="float32 state"),
    testing.ErrorCase("compute_dtype_float16", _bad_compute_dtype(np.float16), (TypeError,),
                      match="compute_dtype"),
    testing.ErrorCase("compute_dtype_int", _bad_compute_dtype(np.int32), (TypeError,),
                      match="compute_dtype"),
    testing.ErrorCase("compute_dtype_nonsense", _bad_compute_dtype("banana"), (TypeError,),
                      match="compute_dtype"),
)


@pytest.mark.parametrize("impl", IMPLS)
def test_bad_input_is_refused_and_nothing_changes(impl):
    """`testing.check_rejects_bad_input` on the kit's error cases with a float32 state,
    and the mode's own refusals (compute_dtype, float64 state or weights)."""
    def update(weights, state, compute_dtype=np.float32, **kwargs):
        return rln_core.update(weights, state, impl=impl, compute_dtype=compute_dtype, **kwargs)
    assert testing.check_rejects_bad_input(update, F32_ERROR_CASES) == len(F32_ERROR_CASES)


@pytest.mark.parametrize("value", [np.float32, "float32", np.dtype("float32")])
def test_the_array_api_update_takes_every_float32_spelling(value):
    """`rln_core.array_api.update` compared `compute_dtype == xp.float32`, so "float32" ran
    float32 arithmetic with the float64 clip margin (a weight the reference sets to 0
    landed on -1.5e-8), and np.float16 or "int64" ran unchecked."""
    update = functools.partial(rln_core.array_api.update, compute_dtype=value,
                               mean_dtype=np.float64)
    cases = testing.FLOAT32_CASES
    assert testing.check_update(update, cases, testing.FLOAT32_COMPUTE_TOLERANCE) == len(cases)


def test_the_array_api_update_refuses_what_update_refuses():
    """Its compute_dtype and the float32 mode's dtypes checked as `rln_core.update`'s."""
    def update(weights, state, compute_dtype=np.float32, **kwargs):
        return rln_core.array_api.update(weights, state, compute_dtype=compute_dtype,
                                         mean_dtype=np.float64, **kwargs)
    assert testing.check_rejects_bad_input(update, F32_ERROR_CASES) == len(F32_ERROR_CASES)


@pytest.mark.parametrize("value", [None, np.float64, "float64", np.dtype("float64")])
def test_compute_dtype_none_and_float64_are_the_default(value):
    case = KIT_CASES[0]
    weights, state, kwargs = case.inputs()
    other_w, other, _ = case.inputs()
    rln_core.update(weights, state, impl="numba", compute_dtype=value, **kwargs)
    rln_core.update(other_w, other, impl="numba", **kwargs)
    np.testing.assert_array_equal(weights, other_w)
    np.testing.assert_array_equal(state.lambdas, other.lambdas)


@pytest.mark.parametrize("value", [np.float32, "float32", np.dtype("float32")])
def test_compute_dtype_float32_spellings(value):
    case = KIT_CASES[0]
    weights, state, kwargs = case.inputs()
    other_w, other, _ = case.inputs()
    rln_core.update(weights, state, impl="numba", compute_dtype=value, **kwargs)
    rln_core.update(other_w, other, impl="numba", compute_dtype=np.float32, **kwargs)
    np.testing.assert_array_equal(weights, other_w)
    np.testing.assert_array_equal(state.lambdas, other.lambdas)


def test_the_float32_modes_rule_is_one_check_naming_each_dtype_of_any_library():
    """`rln_core.checks.check_float32_dtypes`: the rule every adapter's float32 mode refuses
    by (the torch, Keras and JAX adapters call it, with their own words for the fix)."""
    from rln_core.checks import check_float32_dtypes

    check_float32_dtypes(({"weights": np.dtype(">f4"), "state": "float32"}, "fix"))  # big-endian
    with pytest.raises(TypeError) as caught:
        check_float32_dtypes(({"weights": np.float32, "the kernel": np.dtype(np.float64)}, "W"),
                             ({"state_dtype": "float64"}, "S"), ({"other": "float32"}, "O"),
                             who="RLNCallback")
    assert str(caught.value) == ("RLNCallback: compute_dtype=float32 needs float32 weights and "
                                 "a float32 state; got the kernel float64, state_dtype "
                                 "float64; W; S")
    weights = np.ones(3, np.float32)
    state = rln_core.init(weights)
    with pytest.raises(TypeError, match=r"^compute_dtype=float32 needs .*; got state.lambdas "
                                        r"float64, state.prev_reg float64; make the state with "
                                        r"rln_core.init\(\.\.\., state_dtype='float32'\)$"):
        rln_core.update(weights, state, compute_dtype=np.float32)
    with pytest.raises(TypeError, match=r"got weights float64; float32 weights, or "
                                        r"compute_dtype=None for float64 arithmetic$"):
        rln_core.update(weights.astype(np.float64), rln_core.init(
            weights.astype(np.float64), state_dtype="float32"), compute_dtype=np.float32)
    with pytest.raises(TypeError, match=r"got weights float64, state.lambdas float64, "
                                        r"state.prev_reg float64; float32 weights, .*; make "):
        rln_core.update(weights.astype(np.float64), rln_core.init(weights.astype(np.float64)),
                        compute_dtype=np.float32)


def test_the_float32_modes_rule_names_the_scalar_types_of_another_library():
    from rln_core.checks import check_float32_dtypes

    jnp = pytest.importorskip("jax.numpy")  # (a fresh process: not cached)
    check_float32_dtypes(({"state_dtype": jnp.float32}, ""))
    with pytest.raises(TypeError, match="got state_dtype bfloat16$"):
        check_float32_dtypes(({"state_dtype": jnp.bfloat16}, ""))
