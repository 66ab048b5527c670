"""RLNCallback on the other Keras 3 backends, each in its own Python process.

Keras picks its backend once per process (KERAS_BACKEND), so the torch and
JAX runs happen in a subprocess that imports this file and calls
`check_fit_matches_reference`; the TensorFlow backend is covered in process by
test_keras_callback.py and, for both ways of reaching a TF variable, here.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
HYPERPARAMETERS = {"norm": 1, "avg_reg": -6.0, "learning_rate": 1e5}
N_ROWS, N_IN, BATCH, EPOCHS = 24, 6, 8, 2


def check_fit_matches_reference(expected_access: Optional[str] = None) -> int:
    """Fit a tiny model with RLN on the current backend (one fit per epoch); check
    every update against the reference, and how the kernel was reached (by
    default: in place on torch, the raw ops on TensorFlow, a copy elsewhere).

    Returns:
        The number of updates checked.
    """
    import keras

    import rln_core
    from rln_core.testing import assert_update_matches
    from rln_keras import RLNCallback

    def kernel_now(layer):
        return np.array(keras.ops.convert_to_numpy(layer.kernel.value), copy=True)

    def state_of(flat):
        return rln_core.RLNState.from_dict({k.split("/")[1]: v for k, v in flat.items()})

    class Snapshot(keras.callbacks.Callback):
        def __init__(self, rln_callback):
            super().__init__()
            self.rln_callback, self.records = rln_callback, []

        def on_train_batch_end(self, batch, logs=None):
            layer = self.rln_callback.layers[0]
            self.records.append((kernel_now(layer), state_of(self.rln_callback.get_state())))

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N_ROWS, N_IN)).astype("float32")
    y = x[:, :2].sum(axis=1, keepdims=True)
    model = keras.Sequential([keras.Input((N_IN,)), keras.layers.Dense(4, activation="relu"),
                              keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    callback = RLNCallback(model.layers[0], **HYPERPARAMETERS)
    before, after = Snapshot(callback), Snapshot(callback)
    for epoch in range(EPOCHS):  # one fit per epoch: later fits continue the run
        model.fit(x, y, batch_size=BATCH, initial_epoch=epoch, epochs=epoch + 1, shuffle=False,
                  verbose=0, callbacks=[before, callback, after])

    assert len(after.records) == EPOCHS * N_ROWS // BATCH == after.records[-1][1].steps
    for t, ((seen_w, seen), (done_w, done)) in enumerate(zip(before.records, after.records)):
        expected_w, expected = rln_core.reference.update(seen_w, seen, **HYPERPARAMETERS)
        assert_update_matches(f"{keras.backend.backend()} batch {t}", expected_w, expected,
                              done_w, done)
    np.testing.assert_array_equal(kernel_now(model.layers[0]), after.records[-1][0])
    if expected_access is None:
        expected_access = {"torch": "in place", "tensorflow": "tensorflow"}.get(
            keras.backend.backend(), "copy")
    assert callback._kernels[0].access.name == expected_access
    assert np.std(callback.lambdas()) > 1e-3
    return len(after.records)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_callback_on_backend_matches_the_reference(backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"the {backend} package is not installed, so the Keras {backend} backend "
                    "cannot be tested")
    env = {**os.environ, "KERAS_BACKEND": backend,
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "adapters"),
                                          str(ROOT / "tests")])}
    code = ("import keras, test_keras_backends as t; "
            f"assert keras.backend.backend() == {backend!r}; "
            "print('updates checked:', t.check_fit_matches_reference())")
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert f"updates checked: {EPOCHS * N_ROWS // BATCH}" in run.stdout


@pytest.mark.parametrize("plain_tf_variable", [True, False])
def test_callback_on_tensorflow_matches_the_reference_through_either_access(
        plain_tf_variable, monkeypatch):
    """A plain TF variable is read and assigned by the raw ops; any other (e.g.
    distributed) variable goes through a copy and `assign`: both update the same."""
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("this process does not run the TensorFlow backend")
    from rln_keras import _kernel
    if not plain_tf_variable:
        monkeypatch.setattr(_kernel, "_is_plain_tf_variable", lambda value: False)
    checked = check_fit_matches_reference("tensorflow" if plain_tf_variable else "copy")
    assert checked == EPOCHS * N_ROWS // BATCH
