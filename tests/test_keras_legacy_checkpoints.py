"""RLNCallback state saved by the previous code (before the fixed-structure state) loads
and continues the same run (to rounding).

The fixtures in tests/data/legacy/ were written by tests/data/legacy/make_keras.py
on main at e06f0d7 (TensorFlow backend): the `get_state()` of a callback after
5 batches with the model's weights (keras_steps5.npz), the kernel and lambdas
after 5 more batches of that run (keras_expected10.npz), and a `get_state()`
taken before any update, which had no prev_reg then (keras_steps0.npz). The
continuation here repeats that script: the same data, network, SGD(0.05),
batch 8, shuffle=False.
"""

from pathlib import Path

import keras
import numpy as np
import pytest

import rln_core
from rln_keras import RLNCallback

LEGACY = Path(__file__).parent / "data" / "legacy"
FIXTURE_SETTINGS = {"norm": 1, "avg_reg": -8.0, "learning_rate": 1e5}  # make_keras.py's


@pytest.fixture(autouse=True)
def tensorflow_backend():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the fixtures were written on the TensorFlow backend; this process "
                    f"runs {keras.backend.backend()}")


def data():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 6)).astype(np.float32)
    y = rng.normal(size=(40, 1)).astype(np.float32)
    return x, y


def make():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, activation="relu"),
                              keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    return model


def fit_one_epoch(model, callback):
    model.fit(*data(), batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[callback])


def legacy_state(name):
    with np.load(LEGACY / name) as saved:
        return {key: saved[key] for key in saved.files}


def test_a_state_saved_after_five_updates_continues_the_same_run():
    saved = legacy_state("keras_steps5.npz")
    with np.load(LEGACY / "keras_expected10.npz") as expected:
        expected_kernel, expected_lambdas = expected["kernel"], expected["lambdas"]
    model = make()
    model.set_weights([saved.pop(f"weight{i}") for i in range(4)])
    callback = RLNCallback(model.layers[0], **FIXTURE_SETTINGS)
    callback.set_state(saved)

    state = callback.get_state()
    assert sorted(state) == sorted(f"layer0/{field}" for field in rln_core.STATE_FIELDS)
    assert state["layer0/steps"] == 5
    for key, value in saved.items():
        np.testing.assert_array_equal(state[key], value, err_msg=key)

    fit_one_epoch(model, callback)
    assert callback.get_state()["layer0/steps"] == 10
    # The numba kernel that wrote the fixtures has since changed its loops: the same
    # math, rounding-level differences only (as in tests/test_legacy_checkpoints.py),
    # which five SGD steps and nu = 1e5 carry to a few float32 ulps of the kernel
    # (measured 4e-7 relative) and, through the lambda step, to 5e-5 absolute or 1e-6
    # relative of lambdas that span -1058..47 (measured).
    np.testing.assert_allclose(model.layers[0].kernel.numpy(), expected_kernel, rtol=2e-6,
                               atol=0)
    np.testing.assert_allclose(callback.lambdas(), expected_lambdas, rtol=2e-6, atol=1e-4)
    assert np.ptp(expected_lambdas) > 1e-3  # the lambdas moved: a fresh state would not match


def test_a_state_saved_before_any_update_has_no_prev_reg_and_loads_as_a_fresh_start():
    saved = legacy_state("keras_steps0.npz")
    assert "layer0/prev_reg" not in saved and saved["layer0/steps"] == 0

    model = make()  # make_keras.py's second model: RLNCallback with the defaults
    callback = RLNCallback(model.layers[0])
    callback.set_state(saved)
    state = callback.get_state()
    np.testing.assert_array_equal(state["layer0/prev_reg"], np.zeros((6, 4)))
    assert state["layer0/prev_reg"].dtype == state["layer0/lambdas"].dtype == np.float64
    np.testing.assert_array_equal(state["layer0/lambdas"],
                                  np.full((6, 4), rln_core.ORIGINAL_CALLBACK_DEFAULTS.avg_reg))
    np.testing.assert_array_equal(state["layer0/prev_weights"], model.layers[0].kernel.numpy())

    fresh_model = make()
    fresh = RLNCallback(fresh_model.layers[0])
    fit_one_epoch(model, callback)
    fit_one_epoch(fresh_model, fresh)
    np.testing.assert_array_equal(model.layers[0].kernel.numpy(),
                                  fresh_model.layers[0].kernel.numpy())
    for key, value in fresh.get_state().items():
        np.testing.assert_array_equal(callback.get_state()[key], value, err_msg=key)
    assert callback.get_state()["layer0/steps"] == 5


def test_a_legacy_state_round_trips_through_the_core_serialized_form(tmp_path):
    """get_state wraps `RLNState.to_dict`; what it saves loads with `RLNState.from_dict`."""
    saved = legacy_state("keras_steps5.npz")
    callback = RLNCallback(make().layers[0], **FIXTURE_SETTINGS)
    callback.set_state({key: value for key, value in saved.items() if key.startswith("layer")})
    np.savez(tmp_path / "state.npz", **callback.get_state())
    with np.load(tmp_path / "state.npz") as saved:
        core = rln_core.RLNState.from_dict(
            {key.partition("/")[2]: saved[key] for key in saved.files})
    assert core.steps == 5 and core.prev_reg.dtype == np.float64
    np.testing.assert_array_equal(core.lambdas, callback.lambdas())
