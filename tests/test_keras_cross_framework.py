"""The same short training run through rln_keras (TensorFlow) and rln_torch agrees.

Tiny float64 network, plain SGD, identical initial weights and batch order. TF
and torch sum in different orders, so the runs differ by float64 rounding,
which the weights feed back and the lambda step multiplies by nu; over a few
tens of mild steps that stays far below the stated tolerances (docs/RLN_SPEC.md,
"Training runs across frameworks": short and mild runs only).
"""

import keras
import numpy as np
import pytest
import torch

import rln_torch
from rln_keras import RLNCallback

N_ROWS, N_IN, N_HIDDEN, BATCH, EPOCHS = 32, 6, 5, 8, 8  # 32 optimizer steps
LEARNING_RATE = 0.0625  # exact in float32 and float64: Keras may keep it as float32
# Mild: the lambdas spread over about [-10, -4] (measured) and no weight is cut.
HYPERPARAMETERS = {"norm": 1, "avg_reg": -6.0, "learning_rate": 1e3}
# Measured agreement: ~1e-15 (weights) and ~1e-13 (lambdas); the tolerances
# leave room for other BLAS builds, not for a different method.
WEIGHT_ATOL, LAMBDA_ATOL = 1e-10, 1e-8


def data():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(N_ROWS, N_IN))
    y = x[:, :2] @ np.array([[1.5], [-2.0]]) + 0.1 * rng.normal(size=(N_ROWS, 1))
    return x, y


@pytest.fixture
def float64_keras():
    """Keras casts float arrays fed to fit to floatx: make it float64 for this test.

    The global dtype policy is restored too: Keras makes it from floatx on first
    use and keeps it, so a first layer built here would leave every later layer
    of the process float64.
    """
    floatx, policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    yield
    keras.config.set_floatx(floatx)
    keras.config.set_dtype_policy(policy)


def keras_run(x, y):
    """Train with the Keras callback; return (initial weights, final weights, lambdas)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((N_IN,), dtype="float64"),
        keras.layers.Dense(N_HIDDEN, activation="relu", dtype="float64"),
        keras.layers.Dense(1, dtype="float64")])
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE), loss="mse")
    initial = model.get_weights()
    callback = RLNCallback(model.layers[0], **HYPERPARAMETERS)
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
              callbacks=[callback])
    return initial, model.get_weights(), callback.lambdas()


def torch_run(x, y, initial, rln=True):
    """Train the same network in torch from the Keras initial weights (transposed)."""
    model = torch.nn.Sequential(torch.nn.Linear(N_IN, N_HIDDEN), torch.nn.ReLU(),
                                torch.nn.Linear(N_HIDDEN, 1)).double()
    with torch.no_grad():
        for linear, (kernel, bias) in zip((model[0], model[2]), zip(initial[::2], initial[1::2])):
            linear.weight.copy_(torch.from_numpy(kernel.T))
            linear.bias.copy_(torch.from_numpy(bias))
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    regularizer = rln_torch.RLN(model[0], **HYPERPARAMETERS) if rln else None
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(EPOCHS):
        for start in range(0, N_ROWS, BATCH):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(xt[start:start + BATCH]),
                                                yt[start:start + BATCH])
            loss.backward()
            optimizer.step()
            if regularizer is not None:
                regularizer.step()
    weights = [p.detach().numpy().copy() for p in model.parameters()]
    lambdas = None if regularizer is None else regularizer.lambdas.detach().numpy().T
    return [weights[0].T, weights[1], weights[2].T, weights[3]], lambdas


def test_a_short_run_agrees_between_keras_and_torch(float64_keras):
    x, y = data()
    initial, keras_weights, keras_lambdas = keras_run(x, y)
    torch_weights, torch_lambdas = torch_run(x, y, initial)
    for name, a, b in zip(["kernel0", "bias0", "kernel1", "bias1"], keras_weights, torch_weights):
        np.testing.assert_allclose(a, b, rtol=0, atol=WEIGHT_ATOL, err_msg=name)
    np.testing.assert_allclose(keras_lambdas, torch_lambdas, rtol=0, atol=LAMBDA_ATOL)

    # The comparison is not vacuous: RLN moved the lambdas and changed the run.
    assert np.ptp(keras_lambdas) > 1.0
    plain_weights, _ = torch_run(x, y, initial, rln=False)
    assert np.abs(plain_weights[0] - keras_weights[0]).max() > 1e3 * WEIGHT_ATOL
