"""The core's public API around the update: init, state round trips, RLN, inspection, fallback."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import rln_core
from rln_core import RLN, RLNState


def test_init_makes_theta_lambdas_and_a_copy_of_the_weights():
    w = np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4))
    state = rln_core.init(w, avg_reg=-7.5)
    assert state.lambdas.dtype == np.float64 and np.all(state.lambdas == -7.5)
    assert state.prev_reg.dtype == np.float64 and np.all(state.prev_reg == 0)
    assert state.steps == 0 and state.prev_reg.flags.f_contiguous
    np.testing.assert_array_equal(state.prev_weights, w)
    assert not np.shares_memory(state.prev_weights, w)
    assert state.lambdas.flags.f_contiguous  # the weights' memory order, for in-place walks


@pytest.mark.parametrize("kwargs, error, match", [
    ({"avg_reg": float("nan")}, ValueError, "avg_reg"),
    ({"state_dtype": np.float16}, TypeError, "state_dtype"),
    # NumPy cannot parse these; they once passed (np.dtype("float64") == None is True)
    ({"state_dtype": "bogus"}, TypeError, "Invalid state_dtype: 'bogus'"),
    ({"state_dtype": object()}, TypeError, "Invalid state_dtype"),
])
def test_init_refuses_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        rln_core.init(np.ones(3), **kwargs)


@pytest.mark.parametrize("weights, error, match", [
    (np.ones(3, dtype=np.int64), TypeError, "float32 or float64"),
    (np.ones(0), ValueError, "empty"),
])
def test_init_refuses_bad_weights(weights, error, match):
    with pytest.raises(error, match=match):
        rln_core.init(weights)


def test_update_refuses_a_list():
    with pytest.raises(TypeError, match="NumPy arrays"):
        rln_core.update([1.0, 2.0], rln_core.init(np.ones(2)))


def test_read_only_weights_are_refused_before_anything_changes():
    w = np.linspace(-1, 1, 6)
    state = rln_core.init(w)
    w.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        rln_core.update(w, state)
    assert state.steps == 0 and np.all(state.prev_reg == 0)


def test_state_sharing_memory_with_the_weights_is_refused():
    w = np.linspace(-1, 1, 6)
    state = rln_core.init(w)
    state.prev_weights = w
    with pytest.raises(ValueError, match="share memory"):
        rln_core.update(w, state)


def test_unknown_impl_is_refused():
    w = np.ones(3)
    with pytest.raises(ValueError, match="impl"):
        rln_core.update(w, rln_core.init(w), impl="cuda")


def test_state_dict_round_trip_resumes_the_same_run(tmp_path):
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.1, size=(5, 4)).astype(np.float32)
    steps = rng.normal(0, 1e-3, size=(6,) + w.shape).astype(np.float32)
    straight, state = w.copy(), rln_core.init(w)
    for step in steps:
        straight += step
        rln_core.update(straight, state)

    resumed, first = w.copy(), rln_core.init(w)
    for step in steps[:3]:
        resumed += step
        rln_core.update(resumed, first)
    np.savez(tmp_path / "state.npz", **first.to_dict())
    loaded = RLNState.from_dict(dict(np.load(tmp_path / "state.npz")))
    for step in steps[3:]:
        resumed += step
        rln_core.update(resumed, loaded)
    np.testing.assert_array_equal(resumed, straight)
    np.testing.assert_array_equal(loaded.lambdas, state.lambdas)
    assert loaded.steps == state.steps == 6


def test_from_dict_refuses_an_incomplete_or_inconsistent_state():
    state = rln_core.init(np.ones((2, 3)))
    with pytest.raises(ValueError, match="has fields \\['lambdas'\\]"):
        RLNState.from_dict({"lambdas": state.lambdas})
    without_prev_reg = {k: v for k, v in state.to_dict().items() if k != "prev_reg"}
    with pytest.raises(ValueError, match="steps=3 but no prev_reg"):
        RLNState.from_dict({**without_prev_reg, "steps": 3})
    with pytest.raises(ValueError, match="steps.*int >= 0"):
        RLNState.from_dict({**state.to_dict(), "steps": 1.5})
    with pytest.raises(TypeError, match="prev_reg"):
        RLNState.from_dict({**state.to_dict(), "prev_reg": state.prev_reg.astype(np.float32)})
    # a field it does not know (a typo, another library's extra) is refused, not dropped
    with pytest.raises(ValueError, match="has fields .*'lambda'.*expected"):
        RLNState.from_dict({**state.to_dict(), "lambda": state.lambdas})


def test_rln_class_is_the_functions_in_an_object():
    rng = np.random.default_rng(1)
    w = rng.normal(0, 0.1, size=(6, 3))
    expected, state = w.copy(), rln_core.init(w, -5.0)
    rln = RLN(avg_reg=-5.0, learning_rate=1e5, norm=2)
    rln.begin(w)
    for _ in range(4):
        step = rng.normal(0, 1e-3, size=w.shape)
        expected += step
        rln_core.update(expected, state, avg_reg=-5.0, learning_rate=1e5, norm=2)
        w += step
        assert rln.update(w) is w
    np.testing.assert_array_equal(w, expected)
    np.testing.assert_array_equal(rln.lambdas, state.lambdas)
    assert rln.sparsity() == rln_core.sparsity(expected)


def test_rln_class_validates_before_building_and_needs_begin():
    with pytest.raises(ValueError, match="norm"):
        RLN(norm=3)
    with pytest.raises(ValueError, match="learning_rate"):
        RLN(learning_rate=float("nan"))
    with pytest.raises(ValueError, match="impl"):
        RLN(impl="cuda")
    with pytest.raises(TypeError, match="state_dtype"):
        RLN(state_dtype=np.float16)
    with pytest.raises(RuntimeError, match="begin"):
        RLN().update(np.ones(3))


def test_inspection_per_input_axis():
    w = np.array([[0.0, 0.0, 0.0], [1.0, -2.0, 0.0]])  # (in=2, out=3)
    assert rln_core.sparsity(w) == pytest.approx(4 / 6)
    np.testing.assert_array_equal(rln_core.input_importance(w, input_axis=0), [0.0, 3.0])
    np.testing.assert_array_equal(rln_core.active_inputs(w, input_axis=0), [False, True])
    np.testing.assert_array_equal(rln_core.input_importance(w.T, input_axis=1), [0.0, 3.0])
    conv = np.zeros((3, 3, 4, 2))  # Keras Conv2D (kh, kw, in, out)
    conv[:, :, 2, :] = -1.0
    np.testing.assert_array_equal(rln_core.active_inputs(conv, input_axis=-2),
                                  [False, False, True, False])
    with pytest.raises(ValueError, match="input_axis"):
        rln_core.input_importance(w, input_axis=2)
    # the default axis is 0 (Keras, NumPy x @ W); -ndim is the first axis too
    np.testing.assert_array_equal(rln_core.input_importance(w), [0.0, 3.0])
    np.testing.assert_array_equal(rln_core.input_importance(w, input_axis=-2), [0.0, 3.0])
    # exactly 0 only: a tiny weight is a weight
    assert rln_core.sparsity(np.array([1e-30, 0.0, 1.0, -1e-12])) == 0.25


def test_input_importance_sums_float32_weights_in_float64():
    """Two float32 weights of 3e38 on one input sum to 6e38: beyond float32's range (inf
    if summed in float32), not float64's."""
    w = np.array([[3e38, 0.0], [3e38, 1.0]], dtype=np.float32)  # column 0: one input
    importance = rln_core.input_importance(w, input_axis=1)
    assert importance.dtype == np.float64
    np.testing.assert_allclose(importance, [6e38, 1.0], rtol=1e-7)


def run_python(code, env=None):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, check=True,
                          env=None if env is None else {**os.environ, **env}).stdout


def test_import_is_cheap_numba_loads_on_first_update():
    out = run_python("""
        import sys, numpy as np, rln_core
        print('numba' in sys.modules)
        w = np.ones(4); rln_core.update(w, rln_core.init(w))
        print('numba' in sys.modules)
    """)
    assert out.split() == ["False", "True"]


@pytest.mark.parametrize("value, disabled", [("1", True), ("0", False), ("", False)])
def test_rln_disable_numba_makes_auto_run_numpy_without_importing_numba(value, disabled):
    out = run_python("""
        import sys, warnings
        import numpy as np, rln_core
        w = np.linspace(-1, 1, 8); state = rln_core.init(w)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            rln_core.update(w, state)
        print(rln_core.numba_available(), 'numba' in sys.modules, len(caught))
        try:
            rln_core.update(w, state, impl='numba')
            print('ran')
        except ImportError as error:
            print('RLN_DISABLE_NUMBA' in str(error))
    """, env={"RLN_DISABLE_NUMBA": value})
    expected = ["False", "False", "0", "True"] if disabled else ["True", "True", "0", "ran"]
    assert out.split() == expected


def test_without_numba_the_numpy_path_runs_with_one_warning():
    out = run_python("""
        import sys, warnings
        sys.modules['numba'] = None  # as if numba were not installed
        import numpy as np, rln_core
        w = np.linspace(-1, 1, 8); state = rln_core.init(w)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            for _ in range(3):
                rln_core.update(w, state)
        print(len(caught), caught[0].category.__name__, state.steps, rln_core.numba_available())
        try:
            rln_core.update(w, state, impl='numba')
        except ImportError as error:
            print('refused')
    """)
    assert out.split() == ["1", "NumbaUnavailableWarning", "3", "False", "refused"]


def test_where_numba_cannot_cache_the_numpy_path_runs_with_advice():
    # a read-only install with a read-only home: numba finds no folder for its cache and
    # raised a RuntimeError at the kernel's import, through every update
    out = run_python("""
        import warnings
        from numba.core import caching
        for impl in (caching.CacheImpl, caching.CompileResultCacheImpl):
            impl._locator_classes = []  # as if no cache folder were writable
        import numpy as np, rln_core
        w = np.linspace(-1, 1, 8); state = rln_core.init(w)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            for _ in range(3):
                rln_core.update(w, state)
        print(len(caught), 'NUMBA_CACHE_DIR' in str(caught[0].message), state.steps)
        try:
            rln_core.update(w, state, impl='numba')
        except ImportError as error:
            print('refused')
    """)
    assert out.split() == ["1", "True", "3", "refused"]
