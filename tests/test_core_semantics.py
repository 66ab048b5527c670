"""Hand-computed RLN updates: the spec's steps checked one at a time, on every implementation."""

import math

import numpy as np
import pytest

import rln_core
from rln_core import testing

IMPLS = ["reference", "numpy", "numba", "array_api"]


def run_update(impl, weights, state, **kwargs):
    """One update through `impl`; returns (weights, state) after it."""
    if impl == "reference":
        return rln_core.reference.update(weights, state, **kwargs)
    rln_core.update(weights, state, impl=impl, **kwargs)
    return weights, state


@pytest.mark.parametrize("impl", IMPLS)
def test_first_call_l1_has_no_lambda_step_and_clips(impl):
    w = np.array([0.5, -0.2, 0.0, 1e-6])
    state = rln_core.init(w, avg_reg=-2.0)
    new_w, state = run_update(impl, w.copy(), state, avg_reg=-2.0, learning_rate=10.0, norm=1)

    e = math.exp(-2.0)
    np.testing.assert_array_equal(new_w, [0.5 - e, -0.2 + e, 0.0, 0.0])
    # The tiny weight's lambda is clipped to log|w|; the others stay at Theta.
    np.testing.assert_array_equal(state.lambdas, [-2.0, -2.0, -2.0, math.log(1e-6)])
    np.testing.assert_array_equal(state.prev_reg, [e, -e, 0.0, 1e-6])
    np.testing.assert_array_equal(state.prev_weights, new_w)
    assert state.steps == 1
    assert new_w[3] == 0.0  # exactly, not a rounding residue


@pytest.mark.parametrize("impl", IMPLS)
def test_first_call_reads_neither_prev_weights_nor_prev_reg(impl):
    """No lambda step on the first call (steps == 0): NaN in prev_weights and prev_reg
    change nothing."""
    w = np.array([0.5, -0.2, 0.0, 1e-6] * 8)
    expected_w, expected = rln_core.reference.update(w.copy(), rln_core.init(w, avg_reg=-2.0),
                                                     avg_reg=-2.0, learning_rate=10.0)
    state = rln_core.init(w, avg_reg=-2.0)
    state.prev_weights[...] = np.nan
    state.prev_reg[...] = np.nan
    new_w, state = run_update(impl, w.copy(), state, avg_reg=-2.0, learning_rate=10.0, norm=1)
    np.testing.assert_array_equal(new_w, expected_w)
    np.testing.assert_array_equal(state.lambdas, expected.lambdas)
    np.testing.assert_array_equal(state.prev_reg, expected.prev_reg)


@pytest.mark.parametrize("impl", IMPLS)
def test_second_call_l1_steps_translates_and_clips(impl):
    theta, nu = -2.0, 10.0
    w0 = np.array([0.5, -0.9, 0.0, 0.3])
    state = rln_core.init(w0, avg_reg=theta)
    w1, state = run_update(impl, w0.copy(), state, avg_reg=theta, learning_rate=nu, norm=1)
    step = np.array([0.01, 0.0, 0.02, -0.002])
    w2_in = w1 + step
    w2, state = run_update(impl, w2_in.copy(), state, avg_reg=theta, learning_rate=nu, norm=1)

    e = math.exp(theta)
    prev_reg = [e, -e, 0.0, e]
    stepped = [theta - nu * d * r for d, r in zip(step, prev_reg)]
    shift = theta - sum(stepped) / 4
    translated = [l + shift for l in stepped]
    # w2_in[2] = 0.02 (it was 0) has its cap log(0.02) below its lambda: clipped to
    # the cap, and the weight lands on exactly 0. The others are below their caps.
    assert translated[2] > math.log(0.02)
    assert all(translated[i] < math.log(abs(w2_in[i])) for i in (0, 1, 3))
    expected_lambdas = [translated[0], translated[1], math.log(0.02), translated[3]]
    np.testing.assert_allclose(state.lambdas, expected_lambdas, rtol=1e-12)
    signs = np.sign(w2_in)
    expected_w = [w2_in[i] - signs[i] * math.exp(translated[i]) for i in (0, 1)] + [
        0.0, w2_in[3] - math.exp(translated[3])]
    np.testing.assert_allclose(w2, expected_w, rtol=1e-12)
    assert w2[2] == 0.0
    # The mean is taken before the clip, so it ends at or below Theta.
    assert np.mean(state.lambdas) < theta
    assert state.steps == 2


@pytest.mark.parametrize("impl", IMPLS)
def test_l2_uses_twice_the_weight_and_caps_at_half(impl):
    w = np.array([0.4, -0.3, 0.0], dtype=np.float32)
    state = rln_core.init(w, avg_reg=-1.0)
    state.lambdas[1] = 0.5  # above log(1/2): clipped, the weight lands on 0
    new_w, state = run_update(impl, w.copy(), state, avg_reg=-1.0, learning_rate=1e3, norm=2)

    e = math.exp(-1.0)
    expected = np.array([0.4 - 2 * 0.4 * e, 0.0, 0.0])
    np.testing.assert_array_equal(new_w, expected.astype(np.float32))
    np.testing.assert_array_equal(state.lambdas, [-1.0, math.log(0.5), -1.0])
    assert new_w.dtype == np.float32 and state.prev_weights.dtype == np.float32
    assert state.lambdas.dtype == np.float64


@pytest.mark.parametrize("impl", IMPLS)
def test_mean_translation_restores_theta_before_clip(impl):
    rng = np.random.default_rng(3)
    w = rng.normal(0, 1.0, size=(20, 10))  # large weights: nothing gets clipped
    state = rln_core.init(w, avg_reg=-9.0)
    w, state = run_update(impl, w.copy(), state, avg_reg=-9.0, learning_rate=1e6, norm=1)
    w = w + rng.normal(0, 1e-3, size=w.shape)
    w, state = run_update(impl, w, state, avg_reg=-9.0, learning_rate=1e6, norm=1)
    assert np.std(state.lambdas) > 0.01  # the lambdas did move ...
    assert np.mean(state.lambdas) == pytest.approx(-9.0, abs=1e-12)  # ... around Theta


@pytest.mark.parametrize("impl", IMPLS)
def test_zero_learning_rate_keeps_lambdas_at_theta(impl):
    rng = np.random.default_rng(4)
    w = rng.normal(0, 1.0, size=(6, 5))
    state = rln_core.init(w, avg_reg=-6.0)
    for _ in range(3):
        w, state = run_update(impl, w + 0.01, state, avg_reg=-6.0, learning_rate=0.0, norm=2)
    np.testing.assert_allclose(state.lambdas, -6.0, atol=1e-13)


def test_reference_never_mutates_its_inputs():
    rng = np.random.default_rng(5)
    w = rng.normal(size=(4, 3)).astype(np.float32)
    state = rln_core.init(w)
    w_in, state_in = w.copy(), state.copy()
    for _ in range(2):
        new_w, new_state = rln_core.reference.update(w, state, learning_rate=1e6)
        np.testing.assert_array_equal(w, w_in)
        for key, value in state_in.to_dict().items():
            np.testing.assert_array_equal(state.to_dict()[key], value)
        w, state = new_w + np.float32(1e-3), new_state
        w_in, state_in = w.copy(), state.copy()


def test_in_place_update_writes_into_the_callers_arrays():
    w = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    state = rln_core.init(w, avg_reg=-3.0)
    ids = (id(state.lambdas), id(state.prev_weights))
    returned = rln_core.update(w, state, avg_reg=-3.0)
    assert returned is state
    assert (id(state.lambdas), id(state.prev_weights)) == ids
    np.testing.assert_array_equal(state.prev_weights, w)
    assert not np.array_equal(w, np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4))


@pytest.mark.parametrize("impl", ["numpy", "numba"])
@pytest.mark.parametrize("layout", ["transposed", "strided", "conv4d_permuted"])
def test_views_are_updated_in_place(impl, layout):
    rng = np.random.default_rng(6)
    base = rng.normal(0, 0.1, size=(6, 8, 3, 3)).astype(np.float32)
    view = {"transposed": base[:, :, 0, 0].T,
            "strided": base[:, ::2, 1, :],
            "conv4d_permuted": base.transpose(2, 3, 1, 0)}[layout]
    expected_w, expected_state = rln_core.reference.update(
        view.copy(), rln_core.init(view, -4.0), avg_reg=-4.0)
    state = rln_core.init(view, -4.0)
    rln_core.update(view, state, avg_reg=-4.0, impl=impl)
    testing.assert_update_matches(layout, expected_w, expected_state, view, state)
    assert np.count_nonzero(view == 0) > 0  # the clip was exercised through the view


def test_the_kernel_views_are_the_same_before_and_after_numpy_2_1(monkeypatch):
    # ndarray.reshape(copy=False) exists from NumPy 2.1: before, a view's shape is set in
    # place. Either way the views walk each array's memory in the lead array's order, share
    # it, and are None where that needs a copy (on NumPy < 2.1 only the second way runs)
    from rln_core import _layout

    base = np.arange(4 * 6 * 6, dtype=np.float64).reshape(4, 6, 6)
    layouts = {"F": np.asfortranarray(base), "strided": base[:, ::2, ::2],
               "last axis cut": base[:, :, :3], "permuted": base.transpose(2, 0, 1),
               "reversed": base[::-1, ::-1, ::-1], "0-size": base[:, :0],
               "cannot merge": base[:, :3, :3]}
    ways = (True, False) if _layout._RESHAPE_TAKES_COPY else (False,)
    for name, array in layouts.items():
        results = []
        for takes_copy in ways:
            monkeypatch.setattr(_layout, "_RESHAPE_TAKES_COPY", takes_copy)
            other = np.zeros_like(array, np.float32)
            views = _layout.as_2d_views([array, other])
            results.append(None if views is None else [(v.shape, v.strides) for v in views])
            if views is None:
                continue
            order = sorted(range(array.ndim), key=lambda axis: -abs(array.strides[axis]))
            np.testing.assert_array_equal(views[0].ravel(), array.transpose(order).ravel())
            views[1][...] = views[0]  # writes reach the other array's own memory
            np.testing.assert_array_equal(other, array)
            assert array.size == 0 or all(np.shares_memory(v, a)
                                          for v, a in zip(views, (array, other)))
        assert all(result == results[0] for result in results), name
        assert (results[0] is None) == (name == "cannot merge"), name


def test_numba_refuses_a_layout_it_cannot_walk_in_place_and_auto_falls_back():
    base = np.zeros((4, 6, 5), dtype=np.float64)
    base[...] = np.random.default_rng(7).normal(size=base.shape)
    view = base[:, ::2, ::2].transpose(1, 0, 2)  # leading axes cannot merge without a copy
    state = rln_core.init(view, -4.0)
    state.lambdas = np.ascontiguousarray(state.lambdas)  # a layout unlike the weights'
    before = view.copy()
    with pytest.raises(ValueError, match="in place"):
        rln_core.update(view, state, avg_reg=-4.0, impl="numba")
    np.testing.assert_array_equal(view, before)
    rln_core.update(view, state, avg_reg=-4.0, impl="auto")
    assert not np.array_equal(view, before)
    assert state.steps == 1
