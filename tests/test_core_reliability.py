"""No hang, no silent corruption: the core's answers to adversarial use (issue 11)."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import rln_core
from rln_core import inspection
from rln_core.state import check_steps

IMPLS = ["numba", "numpy", "array_api"]


def test_a_forked_child_updates_a_large_tensor_after_its_parent_did():
    """The kernel's thread pool does not survive fork(): the child must make its own."""
    script = textwrap.dedent("""
        import os, sys, time
        import numpy as np, rln_core
        w = np.random.default_rng(0).normal(0, 0.1, size=(1100, 1000))  # >= 2**19: threads
        state = rln_core.init(w)
        rln_core.update(w, state, impl="numba")
        pid = os.fork()
        if pid == 0:
            rln_core.update(w, state, impl="numba")
            os._exit(0 if state.steps == 2 else 3)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                print("child exit", os.waitstatus_to_exitcode(status))
                sys.exit(0)
            time.sleep(0.05)
        os.kill(pid, 9)
        print("child hung")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, env={"NUMBA_NUM_THREADS": "2", "PATH": ""}, check=True)
    assert out.stdout.split() == ["child", "exit", "0"], out.stdout + out.stderr


@pytest.mark.parametrize("impl", IMPLS)
def test_a_state_whose_arrays_alias_each_other_is_refused(impl):
    w = np.linspace(-1, 1, 6)
    state = rln_core.init(w)
    state.prev_reg = state.lambdas
    with pytest.raises(ValueError, match="state.lambdas and state.prev_reg share memory"):
        rln_core.update(w, state, impl=impl)
    state = rln_core.init(np.linspace(-1, 1, 12))
    state.prev_reg = state.lambdas[::-1]  # overlapping, not identical
    with pytest.raises(ValueError, match="share memory"):
        rln_core.update(np.linspace(-1, 1, 12), state, impl=impl)


@pytest.mark.parametrize("impl", IMPLS)
def test_writable_zero_stride_weights_are_refused(impl):
    cell = np.ones(1)
    w = np.lib.stride_tricks.as_strided(cell, shape=(5,), strides=(0,), writeable=True)
    state = rln_core.init(np.ones(5))
    with pytest.raises(ValueError, match="zero stride"):
        rln_core.update(w, state, impl=impl)
    assert state.steps == 0 and cell[0] == 1.0


def test_a_second_update_of_a_state_while_one_runs_is_refused():
    w = np.linspace(-1, 1, 6)
    state, other = rln_core.init(w), rln_core.init(w)
    with rln_core.checks.one_update_at_a_time(state):
        for _ in range(2):  # a refused update does not release the running one's claim
            with pytest.raises(RuntimeError, match="another thread"):
                rln_core.update(w.copy(), state)
        rln_core.update(w.copy(), other)  # another state: fine
    rln_core.update(w, state)  # released
    assert state.steps == 1 and other.steps == 1


def test_updates_of_different_tensors_in_parallel_threads_stay_exact():
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(5)
    weights = [rng.normal(0, 0.1, size=(300, 200)) for _ in range(4)]
    steps = [rng.normal(0, 1e-3, size=(10, 300, 200)) for _ in range(4)]

    def train(i, w):
        state = rln_core.init(w)
        for step in steps[i]:
            w += step
            rln_core.update(w, state)
        return w, state.lambdas

    serial = [train(i, w.copy()) for i, w in enumerate(weights)]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda i: train(i, weights[i].copy()), range(4)))
    for (w1, l1), (w2, l2) in zip(serial, parallel):
        np.testing.assert_array_equal(w1, w2)
        np.testing.assert_array_equal(l1, l2)


@pytest.mark.parametrize("impl", IMPLS)
def test_zero_d_weights_update_twice_and_stay_arrays(impl):
    w = np.array(0.3)
    state = rln_core.init(w)
    for _ in range(2):
        w += 1e-3
        rln_core.update(w, state, impl=impl)
    new_w, new_state = rln_core.reference.update(w, state)
    assert isinstance(new_w, np.ndarray) and new_w.shape == ()
    assert all(isinstance(getattr(new_state, k), np.ndarray)
               for k in ("lambdas", "prev_weights", "prev_reg"))
    assert state.steps == 2 and 0 < w < 0.302


def test_inspection_refuses_what_it_cannot_measure():
    with pytest.raises(TypeError, match="real numbers"):
        inspection.sparsity("abc")
    with pytest.raises(TypeError, match="real numbers"):
        inspection.sparsity(None)
    with pytest.raises(TypeError, match="real numbers"):
        inspection.input_importance(np.ones((3, 2)) * 1j)
    for axis in (True, 1.0, "0"):
        with pytest.raises(TypeError, match=f"input_axis must be an int, got .* {axis!r}"):
            inspection.input_importance(np.ones((3, 2)), input_axis=axis)
    w = np.ones((3, 2))
    w[1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        inspection.active_inputs(w)


def test_inspection_measures_huge_finite_weights_and_torch_parameters():
    huge = np.full((2, 3), 1.7e308)  # finite; each input's sum of |w| overflows float64
    np.testing.assert_array_equal(inspection.input_importance(huge, 1), [np.inf] * 3)
    np.testing.assert_array_equal(inspection.active_inputs(huge, 1), [True] * 3)
    torch = pytest.importorskip("torch")
    weight = torch.nn.Linear(3, 2).weight  # (out, in), requires grad: the README's layout
    np.testing.assert_allclose(inspection.input_importance(weight, 1),
                               weight.detach().abs().sum(0).numpy().astype(np.float64))


@pytest.mark.parametrize("field, steps", [("lambdas", 0), ("lambdas", 3), ("prev_weights", 3),
                                          ("prev_reg", 3)])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_state_with_non_finite_values_is_refused_at_load(field, steps, bad):
    weights = np.random.default_rng(4).normal(size=(5, 3)).astype(np.float32)
    saved = rln_core.init(weights).to_dict()
    saved["steps"] = steps
    saved[field][1, 2] = bad
    with pytest.raises(ValueError, match=rf"\['{field}'\] holds NaN or inf"):
        rln_core.RLNState.from_dict(saved)


def test_a_first_updates_prev_reg_may_hold_anything_at_load():
    """steps == 0: prev_reg is not read (the kit fills it with NaN), so it loads."""
    saved = rln_core.init(np.ones((2, 2), np.float32)).to_dict()
    saved["prev_reg"][...] = np.nan
    assert rln_core.RLNState.from_dict(saved).steps == 0


@pytest.mark.parametrize("compute_dtype", [None, np.float32])
def test_big_endian_arrays_update_in_place_through_numpy(compute_dtype):
    """A non-native byte order cannot be read by the numba kernel: "auto" takes the NumPy
    path (same result as native arrays), "numba" says what is wrong."""
    native = np.random.default_rng(5).normal(0, 0.1, size=(6, 5)).astype(np.float32)
    kwargs = {"avg_reg": -3.0, "learning_rate": 1e4, "compute_dtype": compute_dtype}
    state_dtype = np.float32 if compute_dtype else np.float64
    swapped = native.astype(native.dtype.newbyteorder(">" if np.little_endian else "<"))
    w_native, w_swapped = native.copy(), swapped.copy()
    s_native = rln_core.init(w_native, kwargs["avg_reg"], state_dtype)
    s_swapped = rln_core.init(w_swapped, kwargs["avg_reg"], state_dtype)
    for step in range(3):
        w_native -= np.float32(1e-3)
        w_swapped -= np.float32(1e-3)
        rln_core.update(w_native, s_native, impl="numpy", **kwargs)
        rln_core.update(w_swapped, s_swapped, **kwargs)
    assert w_swapped.dtype == swapped.dtype
    np.testing.assert_array_equal(w_swapped, w_native)
    np.testing.assert_array_equal(s_swapped.lambdas, s_native.lambdas)
    with pytest.raises(ValueError, match="byte order"):
        rln_core.update(w_swapped, s_swapped, impl="numba", **kwargs)


@pytest.mark.parametrize("compute_dtype", [None, np.float32])
@pytest.mark.parametrize("first", [True, False])
def test_numba_accepts_the_states_near_the_float_limit_the_reference_accepts(first, compute_dtype):
    """The kernel's cheap bound (a sum of |lambda| over the tensor) overflows where no
    lambda does; then the exact path decides: numba refuses exactly what the reference
    refuses, and otherwise gives the reference's result."""
    dtype = np.float32 if compute_dtype else np.float64
    big = float(np.finfo(dtype).max) / 4
    weights = np.full((5, 4), 0.5, np.float32)
    state = rln_core.init(weights, -10.0, state_dtype=dtype)
    # finite lambdas whose sum of |lambda| is not (their signed sum is 0)
    state.lambdas[...] = big * np.where(np.arange(20).reshape(5, 4) % 2, 1.0, -1.0)
    state.steps = 0 if first else 3
    kwargs = {"avg_reg": -10.0, "learning_rate": 0.0}
    expected_w, expected = rln_core.reference.update(weights.copy(), state.copy(), **kwargs)
    got_w, got = weights.copy(), state.copy()
    rln_core.update(got_w, got, impl="numba", compute_dtype=compute_dtype, **kwargs)
    np.testing.assert_array_equal(got_w, expected_w)
    np.testing.assert_allclose(got.lambdas, expected.lambdas, rtol=1e-6)
    # and an update the reference refuses is refused, leaving everything as it was
    state.steps, state.lambdas[0, 0] = 3, np.finfo(dtype).max
    kwargs["avg_reg"] = float(np.finfo(dtype).max) / 2
    with pytest.raises(ValueError, match="non-finite"):
        rln_core.reference.update(weights.copy(), state.copy(), **kwargs)
    before = state.copy()
    with pytest.raises(ValueError, match="non-finite"):
        rln_core.update(weights, state, impl="numba", compute_dtype=compute_dtype, **kwargs)
    np.testing.assert_array_equal(state.lambdas, before.lambdas)


def test_the_fused_step_decides_near_the_float_limit_as_the_unfused_one():
    """The fused kernel's bound trips the same way: the exact update then runs after the
    optimizer's step, as `rmsprop step; rln_core.update` would."""
    from rln_core import fused

    big = float(np.finfo(np.float64).max) / 4
    rng = np.random.default_rng(8)
    weights = rng.normal(0, 0.1, size=(5, 4)).astype(np.float32)
    grad = rng.normal(0, 0.1, size=(5, 4)).astype(np.float32)
    state = rln_core.init(weights, -10.0)
    state.lambdas[...] = big * np.where(np.arange(20).reshape(5, 4) % 2, 1.0, -1.0)
    kwargs = {"avg_reg": -10.0, "learning_rate": 0.0}
    square_avg = np.zeros_like(weights)
    got_w, got = weights.copy(), state.copy()
    fused.rmsprop_step(got_w, grad, got, square_avg=square_avg, lr=1e-2, **kwargs)
    stepped = (weights - np.float32(1e-2) * grad / (np.sqrt(np.float32(0.01) * grad * grad)
                                                   + np.float32(1e-8))).astype(np.float32)
    expected_w, expected = rln_core.reference.update(stepped, state.copy(), **kwargs)
    np.testing.assert_allclose(got_w, expected_w, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(got.lambdas, expected.lambdas, rtol=1e-6)
    assert got.steps == 1


@pytest.mark.parametrize("steps", [None, "abc", np.array([1, 2]), float("nan"), 2.7, "3", True,
                                   -1, 2.0])
def test_a_state_dict_with_odd_steps_is_refused_with_a_clear_error(steps):
    saved = rln_core.init(np.ones((2, 3), np.float32)).to_dict()
    saved["steps"] = steps
    with pytest.raises(ValueError, match=r"\['steps'\] must be an int >= 0"):
        rln_core.RLNState.from_dict(saved)


def test_a_step_count_of_one_element_in_one_dimension_is_refused_in_any_library():
    # torch takes a one-element tensor of any shape as an index; NumPy only a 0-d array:
    # the count is 0-d in both (as the docstring says), so neither library's [3] passes
    torch = pytest.importorskip("torch")
    assert [check_steps(count) for count in (3, np.array(3), torch.tensor(3))] == [3, 3, 3]
    for count in (np.array([3]), torch.tensor([3]), torch.tensor([[3]])):
        with pytest.raises(ValueError, match="must be an int >= 0"):
            check_steps(count)


def test_misuse_of_the_core_api_is_refused_naming_the_problem():
    """Error branches no other test reached: each names what is wrong, and an update it
    refuses leaves W and the state as they were."""
    torch = pytest.importorskip("torch")
    rln = rln_core.RLN()
    for read in (lambda: rln.lambdas, rln.sparsity, rln.input_importance):
        with pytest.raises(RuntimeError, match="call begin"):
            read()
    with pytest.raises(RuntimeError, match="before RLN.begin"):
        rln.update(np.ones((3, 2), np.float32))
    with pytest.raises(ValueError, match="empty tensor"):
        inspection.sparsity(np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="input axis"):
        inspection.input_importance(np.float32(1.0))

    weights = np.full((3, 2), 0.5, np.float32)
    state = rln_core.init(weights)
    with pytest.raises(TypeError, match="state must be an RLNState, got dict"):
        rln_core.update(weights, state.to_dict())
    with pytest.raises(TypeError, match="delta holds Tensor arrays but the weights are ndarray"):
        rln_core.update(weights, state, delta=torch.zeros(3, 2))
    state.lambdas.flags.writeable = False
    before = weights.copy(), state.copy()
    with pytest.raises(ValueError, match="state.lambdas is read-only"):
        rln_core.update(weights, state)
    np.testing.assert_array_equal(weights, before[0])
    np.testing.assert_array_equal(state.lambdas, before[1].lambdas)
    assert state.steps == 0


def test_a_broadcast_view_is_refused_and_a_length_one_zero_stride_axis_is_not():
    """Two elements on one memory cell cannot both be updated; an axis of length 1 with
    stride 0 (what NumPy makes of some reshapes) holds one element per cell."""
    cell = np.array([0.1, -0.2, 0.3])
    shared = np.lib.stride_tricks.as_strided(cell, shape=(2, 3), strides=(0, 8),
                                             writeable=True)
    state = rln_core.init(np.ascontiguousarray(shared), -10.0)
    with pytest.raises(ValueError, match="zero stride"):
        rln_core.update(shared, state, impl="numpy")
    one = np.lib.stride_tricks.as_strided(cell, shape=(1, 3), strides=(0, 8), writeable=True)
    rln_core.update(one, rln_core.init(one.copy(), -10.0), impl="numpy")


def test_weights_of_another_dtype_than_the_state_was_made_for_are_a_type_error():
    state = rln_core.init(np.ones((2, 3)), -10.0)  # made for float64 weights
    with pytest.raises(TypeError, match="weights have dtype float32 but the RLN state was made "
                                        "for float64"):
        rln_core.update(np.ones((2, 3), dtype=np.float32), state)


def test_a_state_whose_arrays_differ_in_shape_is_refused():
    state = rln_core.init(np.ones((2, 3)), -10.0)
    bad = rln_core.RLNState(lambdas=state.lambdas, prev_weights=state.prev_weights,
                            prev_reg=np.zeros((3, 2)), steps=0)
    with pytest.raises(ValueError, match="prev_reg"):
        rln_core.update(np.ones((2, 3)), bad)


def test_a_state_on_another_device_is_refused():
    """torch's meta device stands in for a GPU: W on the CPU, its state elsewhere."""
    torch = pytest.importorskip("torch")
    weights = torch.ones(2, 3)
    state = rln_core.RLNState(lambdas=torch.full((2, 3), -10.0, device="meta"),
                              prev_weights=torch.ones(2, 3, device="meta"),
                              prev_reg=torch.zeros(2, 3, device="meta"), steps=0)
    with pytest.raises(ValueError, match="the RLN state is on meta but the weights are on cpu"):
        rln_core.array_api.update(weights, state)


def test_loaded_and_copied_states_share_no_memory_with_their_source():
    state = rln_core.init(np.ones((2, 3)), -10.0)
    fields = state.to_dict()
    loaded = rln_core.RLNState.from_dict(fields)
    copied = state.copy()
    for name in ("lambdas", "prev_weights", "prev_reg"):
        assert not np.shares_memory(getattr(loaded, name), fields[name]), name
        assert not np.shares_memory(getattr(copied, name), getattr(state, name)), name
