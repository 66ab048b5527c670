"""RLN registered twice over one kernel is refused before it doubles the updates (TensorFlow
backend, in this process; tests/test_keras_backends.py runs the same refusals on torch and JAX).

Doubled: the same RLNCallback twice in one fit's callbacks, two RLNCallbacks over
one layer or over tied kernels, an RLNCallback over a variable the model's
RLNOptimizer regularizes, an RLNOptimizer wrapping another over the same
variable. Legitimate: one callback reused in the next fit of the same model, or
of another model holding its layer (the run continues), after a fit that raised.
"""

import keras
import numpy as np
import pytest

import rln_core
from rln_keras import RLNCallback, RLNOptimizer

N_ROWS, N_IN, BATCH = 24, 6, 8  # 3 batches per epoch
STRONG = {"norm": 1, "avg_reg": -6.0, "learning_rate": 1e5}


@pytest.fixture(autouse=True, scope="module")
def tensorflow_backend():
    if keras.backend.backend() != "tensorflow":
        pytest.skip(f"this file reads TF tensors; this process runs {keras.backend.backend()}")


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N_ROWS, N_IN)).astype("float32")
    return x, x[:, :2].sum(axis=1, keepdims=True)


def tiny_model(optimizer=None, seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((N_IN,)), keras.layers.Dense(4, activation="relu"),
                              keras.layers.Dense(1)])
    model.compile(optimizer=optimizer or keras.optimizers.SGD(0.05), loss="mse")
    return model


def fit(model, callbacks, epochs=1, initial_epoch=0):
    model.fit(*data(), batch_size=BATCH, epochs=epochs, initial_epoch=initial_epoch,
              shuffle=False, verbose=0, callbacks=callbacks)


def refused(model, callbacks, match):
    """The fit raises `match` before any weight or RLN state changed."""
    weights = [w.copy() for w in model.get_weights()]
    states = [cb.get_state() if cb._kernels[0].rln.state is not None else None
              for cb in callbacks if isinstance(cb, RLNCallback)]
    with pytest.raises(ValueError, match=match):
        fit(model, callbacks)
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(after, before)
    for cb, before in zip([cb for cb in callbacks if isinstance(cb, RLNCallback)], states):
        if before is None:
            continue
        for key, value in before.items():
            np.testing.assert_array_equal(cb.get_state()[key], value, err_msg=key)


def test_the_same_callback_twice_in_one_fit_is_refused():
    model = tiny_model()
    callback = RLNCallback(model.layers[0], **STRONG)
    refused(model, [callback, callback], "in this fit's callbacks twice")
    fit(model, [callback])  # refused once, the callback still works in the next fit
    assert callback.get_state()["layer0/steps"] == N_ROWS // BATCH


def test_two_callbacks_over_one_layer_are_refused():
    model = tiny_model()
    first = RLNCallback(model.layers[0], **STRONG)
    fit(model, [first])
    second = RLNCallback([model.layers[1], model.layers[0]], **STRONG)
    refused(model, [first, second], "regularized by another RLNCallback in this fit")
    assert second._kernels[1].rln.state is None  # nothing started for the refused one


class TiedDense(keras.layers.Layer):
    """A Dense whose kernel is another Dense's variable (tied weights)."""

    def __init__(self, tied_to):
        super().__init__()
        self.tied_to = tied_to

    @property
    def kernel(self):
        return self.tied_to.kernel

    def call(self, inputs):
        return keras.ops.matmul(inputs, keras.ops.transpose(self.kernel))


def tied_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((N_IN,))
    encoder = keras.layers.Dense(N_IN, use_bias=False)
    hidden = encoder(inputs)
    decoder = TiedDense(encoder)
    outputs = keras.layers.Dense(1)(decoder(hidden))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    return model, encoder, decoder


def test_tied_kernels_are_refused_in_one_callback_and_across_two():
    model, encoder, decoder = tied_model()
    assert decoder.kernel is encoder.kernel
    refused(model, [RLNCallback([encoder, decoder], **STRONG)], "the same memory")
    refused(model, [RLNCallback(encoder, **STRONG), RLNCallback(decoder, **STRONG)],
            "regularized by another RLNCallback")


def test_a_callback_over_a_variable_the_rln_optimizer_regularizes_is_refused():
    model = tiny_model()
    model.compile(optimizer=RLNOptimizer(keras.optimizers.SGD(0.05), model.layers[0]),
                  loss="mse")
    refused(model, [RLNCallback(model.layers[0], **STRONG)],
            "regularized by the RLNOptimizer .* already")
    # Other layers are free: the optimizer RLNs the first, the callback the second.
    callback = RLNCallback(model.layers[1], **STRONG)
    fit(model, [callback])
    assert callback.get_state()["layer0/steps"] == model.optimizer.state(0).steps == 3


def test_an_rln_optimizer_wrapping_another_over_the_same_variable_is_refused():
    model = tiny_model()
    inner = RLNOptimizer(keras.optimizers.SGD(0.05), model.layers[0].kernel.path)
    outer = RLNOptimizer(inner, model.layers[0])
    with pytest.raises(ValueError, match="regularized by the RLNOptimizer .* already"):
        outer.build(model.trainable_variables)
    assert RLNOptimizer(inner, model.layers[1]).regularizes(model.layers[1].kernel)


def test_a_second_fit_with_the_same_callback_continues_the_run():
    whole = tiny_model()
    whole_callback = RLNCallback(whole.layers[0], **STRONG)
    fit(whole, [whole_callback], epochs=2)
    model = tiny_model()
    callback = RLNCallback(model.layers[0], **STRONG)
    fit(model, [callback])
    fit(model, [callback], epochs=2, initial_epoch=1)
    assert callback.get_state()["layer0/steps"] == 2 * N_ROWS // BATCH
    np.testing.assert_allclose(model.layers[0].kernel.numpy(), whole.layers[0].kernel.numpy(),
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(callback.lambdas(), whole_callback.lambdas(), atol=1e-6)


def test_a_fit_that_raised_does_not_block_the_next_one():
    model = tiny_model()
    callback = RLNCallback(model.layers[0], **STRONG)

    class Fails(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            raise RuntimeError("stop")  # the fit ends without on_train_end

    with pytest.raises(RuntimeError, match="stop"):
        fit(model, [callback, Fails()])
    assert callback.get_state()["layer0/steps"] == 1
    fit(model, [callback])
    assert callback.get_state()["layer0/steps"] == 1 + N_ROWS // BATCH
    other = RLNCallback(model.layers[0], **STRONG)  # the raised fit's claim is gone too
    fit(model, [other])


def test_one_callback_on_two_models_holding_its_layer_continues_on_each():
    shared = keras.layers.Dense(4, activation="relu")
    models = []
    for seed in (0, 1):
        keras.utils.set_random_seed(seed)
        model = keras.Sequential([keras.Input((N_IN,)), shared, keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
        models.append(model)
    callback = RLNCallback(shared, **STRONG)
    before = Recorder(callback)
    after = Recorder(callback)
    for model in models:
        fit(model, [before, callback, after])
    assert callback.get_state()["layer0/steps"] == 2 * N_ROWS // BATCH
    for t, (seen, done) in enumerate(zip(before.records, after.records)):
        expected_w, expected = rln_core.reference.update(seen[0], seen[1], **STRONG)
        np.testing.assert_allclose(done[0], expected_w, rtol=1e-6, atol=1e-9,
                                   err_msg=f"batch {t}")


class Recorder(keras.callbacks.Callback):
    """The shared kernel and the RLN state at every batch end."""

    def __init__(self, rln_callback):
        super().__init__()
        self.rln_callback, self.records = rln_callback, []

    def on_train_batch_end(self, batch, logs=None):
        state = rln_core.RLNState.from_dict(
            {k.split("/")[1]: v for k, v in self.rln_callback.get_state().items()})
        self.records.append((self.rln_callback.layers[0].kernel.numpy().copy(), state))
