"""Every core implementation against the reference: the conformance kit, then hypothesis."""

import functools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rln_core
from rln_core import testing

IN_PLACE_IMPLS = ["numpy", "numba", "array_api"]


@pytest.mark.parametrize("impl", IN_PLACE_IMPLS)
def test_conformance_kit_passes(impl):
    assert testing.check_update(functools.partial(rln_core.update, impl=impl)) == len(testing.CASES)


@pytest.mark.parametrize("norm", [1, 2])
def test_numba_threaded_path_matches_on_a_large_tensor(norm):
    """Tensors of >= 2**19 elements run on row chunks in a thread pool (when numba has threads)."""
    case = testing.UpdateCase(f"threaded_{norm=}", (1100, 1000), norm=norm, avg_reg=-4.0,
                              learning_rate=1e7, seed=600 + norm)
    testing.check_update(functools.partial(rln_core.update, impl="numba"), [case])


def test_the_threaded_path_repeats_itself_bit_for_bit():
    """README: the same thread count repeats a run bit for bit (on tensors of 2**19+
    elements, split over numba's threads: the chunks, and so the mean's sum, are set by
    the thread count alone)."""
    case = testing.UpdateCase("threaded_repeat", (1100, 1000), avg_reg=-4.0,
                              learning_rate=1e7, seed=610)
    runs = []
    for _ in range(2):
        weights, state, kwargs = case.inputs()
        for step in range(3):
            weights += np.float32(1e-4 * (step + 1))
            rln_core.update(weights, state, impl="numba", **kwargs)
        runs.append((weights, state))
    (weights, state), (again, again_state) = runs
    assert weights.tobytes() == again.tobytes()
    assert state.lambdas.tobytes() == again_state.lambdas.tobytes()
    assert state.prev_reg.tobytes() == again_state.prev_reg.tobytes()


@pytest.mark.parametrize("impl", IN_PLACE_IMPLS)
def test_the_kits_trajectories_pass(impl):
    update = functools.partial(rln_core.update, impl=impl)
    assert testing.check_trajectory(update) == len(testing.TRAJECTORY_CASES)
    assert testing.check_trajectory(rln_core.reference.update) == len(testing.TRAJECTORY_CASES)


class RemembersTheFirstPrevWeights:
    """A broken in-place implementation: it keeps the prev_weights of its first call on
    a state and learns every later weight change from them (a stale cache)."""

    def __init__(self):
        self.first = {}

    def __call__(self, weights, state, **hyperparameters):
        _, remembered = self.first.setdefault(id(state), (state, state.prev_weights.copy()))
        state.prev_weights[...] = remembered
        rln_core.update(weights, state, impl="numpy", **hyperparameters)


def test_the_kits_trajectories_catch_what_one_update_cannot():
    assert testing.check_update(RemembersTheFirstPrevWeights()) == len(testing.CASES)
    with pytest.raises(AssertionError, match=r"\[trajectory_norm=1_float32 after 60 updates\]"):
        testing.check_trajectory(RemembersTheFirstPrevWeights())


def _counting(count):
    """The reference, its step count handed back as `count(steps)`."""
    def update(weights, state, **kwargs):
        new_weights, new_state = rln_core.reference.update(weights, state, **kwargs)
        new_state.steps = count(new_state.steps)
        return new_weights, new_state
    return update


FIRST_UPDATE = [case for case in testing.CASES if case.first][:1]


@pytest.mark.parametrize("count", [float, np.float32, bool, lambda n: np.array([n]),
                                   lambda n: np.array(n, dtype=bool)])
def test_the_kit_refuses_a_step_count_that_is_not_an_integer(count):
    """int() would pass 2.0, True and [2]: the kit asks for an integer count."""
    with pytest.raises(AssertionError, match=r"state\.steps: got .*expected the integer 1"):
        testing.check_update(_counting(count), FIRST_UPDATE)


@pytest.mark.parametrize("count", [int, np.int64, np.uint8, np.array])
def test_the_kit_takes_any_integer_step_count(count):
    """NumPy integers and 0-d integer arrays (what adapters hand back) are counts."""
    assert testing.check_update(_counting(count), FIRST_UPDATE) == 1


def test_conformance_kit_passes_the_reference_itself():
    assert testing.check_update(rln_core.reference.update) == len(testing.CASES)


def three_ulps_off(weights, state, **kwargs):
    """A broken implementation: one non-zero weight is 3 ulps away from the reference's."""
    new_w, new_state = rln_core.reference.update(weights, state, **kwargs)
    index = np.flatnonzero(new_w)[:1]
    flat = new_w.reshape(-1)
    flat[index] += 3 * np.spacing(np.abs(flat[index]))
    new_state.prev_weights[...] = new_w
    return new_w, new_state


def skips_the_translation(weights, state, *, avg_reg, **kwargs):
    """A broken implementation: it forgets to translate the lambdas back to Theta."""
    return rln_core.reference.update(weights, state, avg_reg=avg_reg - 1e-6, **kwargs)


def leaves_a_residue(weights, state, **kwargs):
    """A broken implementation: clipped weights keep a tiny residue instead of 0.0."""
    new_w, new_state = rln_core.reference.update(weights, state, **kwargs)
    landed = (new_w == 0) & (weights != 0)
    new_w[landed] = np.finfo(weights.dtype).smallest_subnormal
    new_state.prev_weights[...] = new_w
    return new_w, new_state


def clips_differently(weights, state, *, avg_reg, learning_rate, norm, delta=None, cap_ulps=0,
                      margin=0.0):
    """The reference's math with a broken clip decision: the cap taken `cap_ulps` ulps
    high, or lambdas up to `margin` * (1 + |cap|) below it clipped too."""
    w = weights.astype(np.float64)
    lam = state.lambdas.astype(np.float64)
    if state.steps > 0:
        change = w - state.prev_weights if delta is None else delta.astype(np.float64)
        lam = lam - learning_rate * change * state.prev_reg
        lam = lam + (avg_reg - np.mean(lam))
    with np.errstate(divide="ignore"):
        cap = np.log(np.abs(w)) if norm == 1 else np.full_like(w, np.log(0.5))
    for _ in range(cap_ulps):
        cap = np.nextafter(cap, np.inf)
    with np.errstate(invalid="ignore"):
        clipped = (lam >= cap - margin * (1.0 + np.abs(cap))) & (w != 0)
    lam = np.where(clipped, cap, lam)
    limit = np.abs(w) if norm == 1 else np.full_like(w, 0.5)
    with np.errstate(over="ignore"):
        step = np.where(clipped, limit, np.minimum(np.exp(lam), limit))
    reg = (np.sign(w) if norm == 1 else 2.0 * w) * step
    new_w = (w - reg).astype(weights.dtype)
    state_dtype = state.lambdas.dtype
    return new_w, rln_core.RLNState(lambdas=lam.astype(state_dtype), prev_weights=new_w.copy(),
                                    prev_reg=reg.astype(state_dtype), steps=state.steps + 1)


def keeps_float64_prev_weights(weights, state, **hyperparameters):
    """The reference, but prev_weights kept in float64 whatever W's dtype (the spec keeps
    it in the model's dtype; the next update would refuse such a state)."""
    new_w, new_state = rln_core.reference.update(weights, state, **hyperparameters)
    new_state.prev_weights = new_state.prev_weights.astype(np.float64)
    return new_w, new_state


def prev_weights_is_the_weights(weights, state, **hyperparameters):
    """The reference, but the new state's prev_weights is the new weights' array itself
    (after an in-place optimizer step the weight change would read 0: no learning)."""
    new_w, new_state = rln_core.reference.update(weights, state, **hyperparameters)
    new_state.prev_weights = new_w
    return new_w, new_state


def rounds_theta_to_float32(weights, state, *, avg_reg, **kwargs):
    """The reference, with Theta held as a float32."""
    return rln_core.reference.update(weights, state, avg_reg=float(np.float32(avg_reg)),
                                     **kwargs)


def rounds_nu_to_float32(weights, state, *, learning_rate, **kwargs):
    """The reference, with nu held as a float32."""
    return rln_core.reference.update(weights, state,
                                     learning_rate=float(np.float32(learning_rate)), **kwargs)


def assumes_one_memory_order(weights, state, **hyperparameters):
    """The reference, on state arrays (and delta) whose memory is read in the weights'
    order: a kernel that walks every input by the weights' strides."""
    order = "F" if weights.flags.f_contiguous and not weights.flags.c_contiguous else "C"

    def misread(array):
        if array.ndim < 2 or not (array.flags.c_contiguous or array.flags.f_contiguous):
            return array
        own = "F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C"
        return np.frombuffer(array.tobytes(order=own), dtype=array.dtype).reshape(
            array.shape, order=order).copy()

    if hyperparameters.get("delta") is not None:
        hyperparameters["delta"] = misread(hyperparameters["delta"])
    return rln_core.reference.update(weights, rln_core.RLNState(
        lambdas=misread(state.lambdas), prev_weights=misread(state.prev_weights),
        prev_reg=misread(state.prev_reg), steps=state.steps), **hyperparameters)


def keeps_the_old_prev_weights(weights, state, **hyperparameters):
    """The reference, but prev_weights left at W before the update (the next weight change
    would then count this update's regularization step as learning)."""
    new_w, new_state = rln_core.reference.update(weights, state, **hyperparameters)
    new_state.prev_weights = weights.copy()
    return new_w, new_state


def does_not_count_the_update(weights, state, **hyperparameters):
    """The reference, but steps left as it was (the next update would be a first one again)."""
    new_w, new_state = rln_core.reference.update(weights, state, **hyperparameters)
    new_state.steps = state.steps
    return new_w, new_state


def reads_prev_reg_on_the_first_update(weights, state, **hyperparameters):
    """The reference, but on the first update prev_reg enters the lambdas (times 0: the
    kit's first-update cases fill prev_reg with NaN, which this carries through)."""
    new_w, new_state = rln_core.reference.update(weights, state, **hyperparameters)
    if state.steps == 0:
        new_state.lambdas = (new_state.lambdas + 0.0 * state.prev_reg).astype(
            new_state.lambdas.dtype)
    return new_w, new_state


def shrinks_by_a_millionth_more(weights, state, **hyperparameters):
    """The reference, but every nonzero weight moved by a further 1e-6 of its
    regularization step (prev_weights kept equal to the weights written): beyond the
    weights' tolerance, one ulp plus what the lambdas' implies."""
    new_w, new_state = rln_core.reference.update(weights, state, **hyperparameters)
    shifted = np.where(new_w != 0, new_w.astype(np.float64) - 1e-6 * new_state.prev_reg, 0.0)
    new_w = shifted.astype(new_w.dtype)
    new_state.prev_weights = new_w.copy()
    return new_w, new_state


def no_scalars(weights, state, **hyperparameters):
    """The reference, refusing 0-d weights (an implementation that assumes an axis)."""
    if weights.ndim == 0:
        raise ValueError("weights need at least one axis")
    return rln_core.reference.update(weights, state, **hyperparameters)


@pytest.mark.parametrize("broken, message", [
    (three_ulps_off, r"\] weights\[.*tolerance"),
    (prev_weights_is_the_weights, r"weights and state.prev_weights: share memory"),
    (rounds_theta_to_float32, r"\[inexact_norm=1_theta-10.3.*state.lambdas\["),
    (rounds_nu_to_float32, r"\[inexact_norm=1_theta-3.1.*state.lambdas\["),
    (assumes_one_memory_order, r"\[layout_F_state_C\]"),
    (no_scalars, r"\[scalar\] raised ValueError\(weights need at least one axis"),
    (skips_the_translation, r"state.lambdas\["),
    (leaves_a_residue, r"lands on exactly 0.0"),
    (keeps_float64_prev_weights, r"state.prev_weights.dtype: got float64, expected float32"),
    (keeps_the_old_prev_weights, r"state.prev_weights: at .*not the weight"),
    (does_not_count_the_update, r"state.steps: got 1, expected the integer 2"),
    (reads_prev_reg_on_the_first_update, r"_first\] state.lambdas\[.*nan"),
    (shrinks_by_a_millionth_more, r"float64.*\] weights\["),
])
def test_conformance_kit_catches_broken_implementations(broken, message):
    with pytest.raises(AssertionError, match=message):
        testing.check_update(broken)


# (the float64 state's: a float32 state rounds the lambdas placed within ulps of the cap)
AT_CAP_CASES = [case for case in testing.CASES if case.at_cap and case.state_dtype == "float64"]


def test_clips_differently_without_a_change_is_the_reference():
    assert testing.check_update(clips_differently) == len(testing.CASES)


@pytest.mark.parametrize("case", [c for c in AT_CAP_CASES if c.norm == 1], ids=lambda c: c.name)
def test_the_at_cap_cases_catch_a_clip_decided_on_a_log_one_ulp_high(case):
    with pytest.raises(AssertionError, match=r"lands on exactly 0.0"):
        testing.check_update(functools.partial(clips_differently, cap_ulps=1), [case])


@pytest.mark.parametrize("case", AT_CAP_CASES, ids=lambda c: c.name)
def test_the_at_cap_cases_catch_a_clip_margin_near_the_tolerance(case):
    """The numba kernel's margin is 1e-11; one at the 1e-9 tolerance must not pass."""
    with pytest.raises(AssertionError, match=r"state.lambdas\["):
        testing.check_update(functools.partial(clips_differently, margin=1e-9), [case])


def test_the_kernels_margin_zeroes_weights_where_its_log_is_one_ulp_above_numpys():
    """The numba kernel's log of a float32 weight is within 1 ulp of NumPy's, one ulp
    above it for ~2% of weights: with the lambda exactly at the reference's cap log|W|
    the reference clips (W -> exactly 0), and only CLIP_MARGIN makes the kernel clip
    too (with a margin of 0 these weights kept residues)."""
    import numba

    from rln_core import _numba_math

    @numba.njit
    def kernel_logs(x):
        out = np.empty(x.size)
        for i in range(x.size):
            out[i] = _numba_math.log_abs(x[i])
        return out

    rng = np.random.default_rng(5)
    drawn = (rng.standard_normal(200_000) * 0.1).astype(np.float32)
    drawn = drawn[drawn != 0]
    caps = np.log(np.abs(drawn).astype(np.float64))  # the reference's
    high = kernel_logs(drawn) > caps
    assert high.sum() > 100, ("no weight where the kernel's log is above NumPy's: find "
                              "another way to test the clip margin")
    weights = np.ascontiguousarray(drawn[high][:512])
    state = rln_core.init(weights, avg_reg=-10.0)
    state.lambdas[:] = caps[high][:512]  # first update: the lambdas are used as they are
    expected_w, _ = rln_core.reference.update(weights, state.copy(), avg_reg=-10.0,
                                              learning_rate=1e6, norm=1)
    assert (expected_w == 0).all()
    rln_core.update(weights, state, impl="numba", avg_reg=-10.0, learning_rate=1e6, norm=1)
    assert (weights == 0).all(), np.flatnonzero(weights)[:10]


@pytest.mark.parametrize("impl", IN_PLACE_IMPLS)
def test_bad_input_is_refused_and_nothing_changes(impl):
    assert testing.check_rejects_bad_input(
        functools.partial(rln_core.update, impl=impl)) == len(testing.ERROR_CASES)


def test_reference_refuses_bad_input_too():
    assert testing.check_rejects_bad_input(rln_core.reference.update) == len(testing.ERROR_CASES)


def test_rejection_kit_catches_an_implementation_that_accepts_everything():
    def lenient(weights, state, **kwargs):
        return None
    with pytest.raises(AssertionError, match=r"\[norm_3\] was accepted"):
        testing.check_rejects_bad_input(lenient)


def _counts_then_checks(weights, state, **kwargs):
    state.steps += 1
    return rln_core.reference.update(weights, state, **kwargs)


def _zeroes_the_lambdas_then_checks(weights, state, **kwargs):
    state.lambdas[...] = 0.0
    return rln_core.reference.update(weights, state, **kwargs)


def _steps_the_weights_then_checks(weights, state, **kwargs):
    weights[...] = weights * 0.5
    return rln_core.reference.update(weights, state, **kwargs)


@pytest.mark.parametrize("writes_first", [_counts_then_checks, _zeroes_the_lambdas_then_checks,
                                          _steps_the_weights_then_checks])
def test_rejection_kit_catches_an_implementation_that_writes_before_it_raises(writes_first):
    with pytest.raises(AssertionError, match=r"\] raised but modified the weights or the state"):
        testing.check_rejects_bad_input(writes_first)


# --- property-based: random shapes, dtypes, layouts, zeros, norms, extreme hyperparameters ---

shapes = st.lists(st.integers(1, 6), min_size=1, max_size=4).map(tuple)


@st.composite
def update_inputs(draw):
    case = testing.UpdateCase(
        name="hypothesis",
        shape=draw(shapes),
        dtype=draw(st.sampled_from(["float32", "float64"])),
        norm=draw(st.sampled_from([1, 2])),
        avg_reg=draw(st.floats(-25.0, -1.0)),
        learning_rate=draw(st.sampled_from([0.0, 1.0, 1e5, 1e6, 1e7, 1e8])),
        first=draw(st.booleans()),
        layout=draw(st.sampled_from(["C", "F", "strided"])),
        state_dtype=draw(st.sampled_from(["float64", "float32"])),
        zero_fraction=draw(st.sampled_from([0.0, 0.3, 1.0])),
        seed=draw(st.integers(0, 2**31)),
    )
    return case


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=update_inputs())
def test_numba_matches_reference_on_random_inputs(case):
    testing.check_update(functools.partial(rln_core.update, impl="numba"), [case])


TRAJECTORY_SHAPES = [(7,), (13, 7), (4, 3, 5), (2, 2, 3, 4), (64, 32)]


@pytest.mark.parametrize("seed, shape", list(enumerate(TRAJECTORY_SHAPES)))
@pytest.mark.parametrize("norm", [1, 2])
@pytest.mark.parametrize("dtype, n_updates", [(np.float32, 200), (np.float64, 50)])
def test_mild_trajectories_agree_over_many_updates(seed, shape, norm, dtype, n_updates):
    """Same recorded inputs through numba and the reference: the updates stay together.

    float32 weights absorb the implementations' 1e-16 differences in rounding,
    so they agree over hundreds of updates; float64 weights carry them, and a
    weight that comes near its clip boundary amplifies them, so a shorter run.

    Fixed seeds, not hypothesis: a random trajectory can bring a weight within
    rounding of its clip boundary, where two correct implementations part ways
    for good (docs/RLN_SPEC.md: trajectories agree given the same inputs, in the
    typical case; the per-update property above is the universal one).
    """
    rng = np.random.default_rng(seed)
    weights = rng.normal(0, 0.1, size=shape).astype(dtype)
    kwargs = {"avg_reg": -10.0, "learning_rate": 1e6 if norm == 1 else 1e5, "norm": norm}
    ref_state = rln_core.init(weights, kwargs["avg_reg"])
    state = rln_core.init(weights, kwargs["avg_reg"])
    ref_w, w = weights.copy(), weights.copy()
    for _ in range(n_updates):
        step = rng.normal(0, 1e-3, size=shape).astype(dtype)
        ref_w, ref_state = rln_core.reference.update(ref_w + step, ref_state, **kwargs)
        w += step
        rln_core.update(w, state, impl="numba", **kwargs)
    if dtype == np.float32:
        # docs/RLN_SPEC.md: "lambdas within ~1e-11 and float32 weights identical over
        # hundreds of updates" (measured: within 4e-13, weights equal)
        np.testing.assert_allclose(state.lambdas, ref_state.lambdas, rtol=1e-11)
        np.testing.assert_array_equal(w, ref_w)
    else:  # float64 weights carry the gap: |reg| (~5e-5) * 1e-8 per update, summed
        np.testing.assert_allclose(state.lambdas, ref_state.lambdas, rtol=1e-8)
        np.testing.assert_allclose(w, ref_w, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(w == 0, ref_w == 0)


def test_float32_state_tracks_float64_state_within_documented_tolerance():
    """state_dtype=float32: per update, lambdas within 4e-7 relative of the float64 state's."""
    rng = np.random.default_rng(11)
    weights = rng.normal(0, 0.1, size=(64, 32)).astype(np.float32)
    for norm in (1, 2):
        for _ in range(20):
            state64 = rln_core.init(weights, -10.0)
            state64.lambdas[...] += rng.normal(0, 1, size=weights.shape)
            state64.prev_reg = np.sign(weights) * np.exp(state64.lambdas)
            state64.steps = 1
            state32 = rln_core.RLNState(
                lambdas=state64.lambdas.astype(np.float32),
                prev_weights=state64.prev_weights.copy(),
                prev_reg=state64.prev_reg.astype(np.float32), steps=1)
            # the float64 reference starts from the float32-rounded state, so the
            # comparison measures the update, not the rounding of its inputs
            state64.lambdas[...] = state32.lambdas
            state64.prev_reg[...] = state32.prev_reg
            w_in = weights + rng.normal(0, 1e-3, size=weights.shape).astype(np.float32)
            ref_w, ref = rln_core.reference.update(w_in, state64, norm=norm,
                                                   learning_rate=1e6 if norm == 1 else 1e5)
            w = w_in.copy()
            rln_core.update(w, state32, norm=norm, learning_rate=1e6 if norm == 1 else 1e5,
                            impl="numba")
            np.testing.assert_allclose(state32.lambdas, ref.lambdas, rtol=4e-7)
            tol = np.spacing(np.abs(ref_w)) + 1e-6 * np.abs(ref.prev_reg)
            assert np.all(np.abs(w - ref_w) <= tol)


def test_at_cap_cases_must_not_take_a_lambda_step():
    with pytest.raises(ValueError, match="at_cap needs first=True or learning_rate=0"):
        testing.UpdateCase("bad", (3, 2), at_cap=True).make()
