"""rln_keras on the TensorFlow backend, in this process: RLNCallback's semantics,
errors and state, and RLNOptimizer's arguments and errors (its runs on every
backend are in test_keras_backends.py).

Every model here is tiny (a handful of units, tens of rows) so the file runs in
seconds after TensorFlow's import.
"""

import dataclasses
import functools

import keras
import numpy as np
import pytest

import rln_core
from rln_core import RLNState
from rln_core.testing import (CASES, ERROR_CASES, FLOAT32_COMPUTE_TOLERANCE, TRAJECTORY_CASES,
                              assert_update_matches, check_rejects_bad_input, check_trajectory,
                              check_update)
from rln_keras import RLNCallback, RLNOptimizer


@pytest.fixture(autouse=True, scope="module")
def tensorflow_backend():
    if keras.backend.backend() != "tensorflow":
        pytest.skip(f"this file reads TF tensors; this process runs {keras.backend.backend()} "
                    "(test_keras_backends.py covers every backend)")

N_ROWS, N_IN, BATCH = 24, 6, 8  # 3 batches per epoch
STRONG = {"norm": 1, "avg_reg": -6.0, "learning_rate": 1e5}  # lambdas move visibly in 3 steps


def data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N_ROWS, N_IN)).astype("float32")
    y = (x[:, :2].sum(axis=1, keepdims=True) + 0.1 * rng.normal(size=(N_ROWS, 1))).astype("float32")
    return x, y


def tiny_model(seed=0, **compile_kwargs):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((N_IN,)), keras.layers.Dense(4, activation="relu"),
                              keras.layers.Dense(1)])
    compile_kwargs.setdefault("optimizer", keras.optimizers.SGD(0.05))
    model.compile(loss="mse", **compile_kwargs)
    return model


def kernel_of(layer):
    return layer.kernel.numpy().copy()  # TensorFlow backend: no NumPy 2 warning


class KernelHolder(keras.layers.Layer):
    """A layer whose `kernel` is any array (any shape and dtype), for per-update checks."""

    def __init__(self, values):
        super().__init__()
        self.kernel = self.add_weight(shape=values.shape, dtype=str(values.dtype),
                                      initializer="zeros")
        self.kernel.assign(values)

    def call(self, inputs):
        return inputs


def holder_callback(values, **options):
    """An RLNCallback(layer, **options) on a KernelHolder inside a model, past on_train_begin."""
    layer = KernelHolder(values)
    model = keras.Sequential([keras.Input((1,)), layer])
    callback = RLNCallback(layer, **options)
    callback.set_model(model)
    callback.on_train_begin()
    return layer, callback


def as_state_dict(state, layer=0):
    return {f"layer{layer}/{key}": value for key, value in state.to_dict().items()}


def update_through_callback(weights, state, *, avg_reg, learning_rate, norm, **options):
    """One update through the callback's hook (the conformance kit's signature; `options`
    go to RLNCallback, e.g. compute_dtype).

    On a refused update it also checks that the kernel variable and the
    callback's state are unchanged, then re-raises.
    """
    layer, callback = holder_callback(np.zeros_like(weights), norm=norm, avg_reg=avg_reg,
                                      learning_rate=learning_rate, **options)
    callback.set_state(as_state_dict(state))
    layer.kernel.assign(weights)  # W as the optimizer left it
    kernel_before, state_before = kernel_of(layer), callback.get_state()
    try:
        callback.on_train_batch_end(0)
    except ValueError:
        np.testing.assert_array_equal(kernel_of(layer), kernel_before)
        state_after = callback.get_state()
        assert state_after.keys() == state_before.keys()
        for key, value in state_before.items():
            np.testing.assert_array_equal(state_after[key], value, err_msg=key)
        raise
    new_state = {key.split("/")[1]: value for key, value in callback.get_state().items()}
    return kernel_of(layer), RLNState.from_dict(new_state)


def test_each_update_matches_the_reference_on_every_conformance_case():
    """Every case but those handing over a weight change: the callback infers it
    (W - prev_weights), as the spec's step 1 says; RLNOptimizer takes one."""
    cases = [case for case in CASES if not case.delta]
    assert check_update(update_through_callback, cases) >= 30


class CallbackOverARun:
    """RLNCallback as `check_trajectory` drives it: made at a run's first call on a layer
    holding the kit's initial weights (its on_train_begin starts the state the kit's init
    does), then per update the kernel set to the moved weights and one batch end: the
    callback keeps its own state (its buffers, its prepared update) over the run."""

    def __init__(self):
        self.weights = None

    def __call__(self, weights, state, *, avg_reg, learning_rate, norm):
        if self.weights is not weights:  # a new run
            self.weights, self.batch = weights, 0
            self.layer, self.callback = holder_callback(
                state.prev_weights, norm=norm, avg_reg=avg_reg, learning_rate=learning_rate)
        self.layer.kernel.assign(weights)  # W as the optimizer left it
        self.callback.on_train_batch_end(self.batch)
        self.batch += 1
        new_state = {key.split("/")[1]: value for key, value in self.callback.get_state().items()}
        return kernel_of(self.layer), RLNState.from_dict(new_state)


def test_the_callback_keeps_its_state_over_a_run_of_updates():
    assert check_trajectory(CallbackOverARun()) == len(TRAJECTORY_CASES)


FLOAT32 = {"state_dtype": np.float32, "compute_dtype": np.float32}
# The float32 mode's inputs: the kit's float32-weight cases that infer the weight
# change, each with a float32 state (the mode's only state).
FLOAT32_CASES = [dataclasses.replace(case, state_dtype="float32") for case in CASES
                 if case.dtype == "float32" and not case.delta]


def test_float32_compute_is_the_cores_float32_mode():
    """compute_dtype=np.float32 is `rln_core.update(..., compute_dtype=np.float32)`, bit
    for bit, so within the kit's float32 tolerance; the default (float64 arithmetic on
    the same float32 state) gives other lambdas."""
    in_float32 = functools.partial(update_through_callback, **FLOAT32)
    assert check_update(in_float32, FLOAT32_CASES, FLOAT32_COMPUTE_TOLERANCE) >= 20
    differ = 0
    for case in FLOAT32_CASES:
        weights, state, kwargs = case.inputs()
        got_w, got = in_float32(weights.copy(), state.copy(), **kwargs)
        core_w, core = weights.copy(), state.copy()
        rln_core.update(core_w, core, compute_dtype=np.float32, **kwargs)
        np.testing.assert_array_equal(got_w, core_w, err_msg=case.name)
        for field in ("lambdas", "prev_weights", "prev_reg"):
            np.testing.assert_array_equal(getattr(got, field), getattr(core, field),
                                          err_msg=f"{case.name}: {field}")
        _, default = update_through_callback(weights.copy(), state.copy(),
                                             state_dtype=np.float32, **kwargs)
        differ += np.count_nonzero(default.lambdas != got.lambdas)
    assert differ > 0, "compute_dtype=np.float32 gave the float64 default's lambdas"


def test_float32_compute_refuses_float64_before_anything_changes():
    layer = tiny_model().layers[0]
    for kwargs, match in [({"compute_dtype": np.float32}, "the state float64"),
                          ({"compute_dtype": "float16", "state_dtype": np.float32},
                           "Invalid compute_dtype"),
                          ({"compute_dtype": "complex64"}, "Invalid compute_dtype")]:
        with pytest.raises(TypeError, match=match):
            RLNCallback(layer, **kwargs)
    assert RLNCallback(layer, compute_dtype="float64").compute_dtype is None

    keras.utils.set_random_seed(0)
    double = keras.Sequential([keras.Input((N_IN,), dtype="float64"),
                               keras.layers.Dense(4, dtype="float64")])
    with pytest.raises(TypeError, match=r"kernel of layer 'dense.*' float64"):
        RLNCallback(double.layers[0], **FLOAT32)

    unbuilt = keras.Sequential([keras.layers.Dense(3, dtype="float64"), keras.layers.Dense(1)])
    unbuilt.compile(optimizer="sgd", loss="mse")
    callback = RLNCallback(unbuilt.layers[0], **FLOAT32)  # checked when it is resolved
    with pytest.raises(TypeError, match="the kernel float64"):
        unbuilt.fit(*data(), batch_size=BATCH, epochs=1, verbose=0, callbacks=[callback])
    with pytest.raises(RuntimeError, match="no RLN state yet"):
        callback.get_state()

    model = tiny_model()
    callback = RLNCallback(model.layers[0], **FLOAT32)
    default = RLNCallback(model.layers[0])
    default.set_model(model)
    default.on_train_begin()
    callback.set_model(model)
    callback.on_train_begin()
    before = callback.get_state()
    with pytest.raises(TypeError, match=r"layer0 \(layer 'dense.*'\): .*its lambdas float64"):
        callback.set_state(default.get_state())
    for key, value in callback.get_state().items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)


def test_bad_inputs_are_refused_before_the_kernel_or_state_change():
    cases = [case for case in ERROR_CASES if not case.name.startswith("delta_")]
    assert check_rejects_bad_input(update_through_callback, cases) >= 10


class Snapshot(keras.callbacks.Callback):
    """Records the first layer's kernel and the RLN state at every batch end."""

    def __init__(self, rln_callback):
        super().__init__()
        self.rln_callback = rln_callback
        self.records = []

    def on_train_batch_end(self, batch, logs=None):
        layer = self.rln_callback.layers[0]
        self.records.append((kernel_of(layer), self.rln_callback.get_state()))


def states_of(record):
    return RLNState.from_dict({key.split("/")[1]: value for key, value in record[1].items()})


def test_fit_updates_after_every_optimizer_step_as_the_reference_does():
    model = tiny_model()
    callback = RLNCallback(model.layers[0], **STRONG)
    before, after = Snapshot(callback), Snapshot(callback)
    model.fit(*data(), batch_size=BATCH, epochs=2, shuffle=False, verbose=0,
              callbacks=[before, callback, after])
    assert len(after.records) == 2 * N_ROWS // BATCH == states_of(after.records[-1]).steps
    for t, (seen, done) in enumerate(zip(before.records, after.records)):
        expected_w, expected = rln_core.reference.update(seen[0], states_of(seen), **STRONG)
        assert_update_matches(f"batch {t}", expected_w, expected, done[0], states_of(done))
    lambdas = callback.lambdas()
    assert lambdas.shape == (N_IN, 4) and np.std(lambdas) > 1e-3
    assert np.mean(lambdas) <= STRONG["avg_reg"] + 1e-12


def test_inspection_uses_the_kernel_layout_in_out():
    model = tiny_model()
    callback = RLNCallback(model.layers[0], norm=1, avg_reg=-1.0, learning_rate=0.0)
    model.fit(*data(), batch_size=BATCH, epochs=1, verbose=0, callbacks=[callback])
    kernel = kernel_of(model.layers[0])
    assert callback.sparsity() == np.mean(kernel == 0) > 0  # exp(-1) cuts small weights
    np.testing.assert_allclose(callback.input_importance(), np.abs(kernel).sum(axis=1))
    np.testing.assert_array_equal(callback.active_inputs(model.layers[0]),
                                  np.abs(kernel).sum(axis=1) > 0)
    with pytest.raises(IndexError, match="out of range"):
        callback.lambdas(1)
    with pytest.raises(ValueError, match="not regularized"):
        callback.lambdas(model.layers[1])


def test_a_list_of_layers_gets_one_state_per_layer():
    model = tiny_model()
    callback = RLNCallback(model.layers, **STRONG)
    model.fit(*data(), batch_size=BATCH, epochs=1, verbose=0, callbacks=[callback])
    state = callback.get_state()
    assert state["layer0/lambdas"].shape == (N_IN, 4) and state["layer1/lambdas"].shape == (4, 1)
    assert int(state["layer0/steps"]) == int(state["layer1/steps"]) == N_ROWS // BATCH
    np.testing.assert_array_equal(state["layer1/prev_weights"], kernel_of(model.layers[1]))


def test_an_unbuilt_layer_is_resolved_at_train_begin():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.Dense(3), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    callback = RLNCallback(model.layers[0], **STRONG)
    with pytest.raises(RuntimeError, match="no RLN state yet"):
        callback.get_state()
    model.fit(*data(), batch_size=BATCH, epochs=1, verbose=0, callbacks=[callback])
    assert callback.lambdas().shape == (N_IN, 3)


@pytest.mark.parametrize("state_dtype", ["float32", np.float32, np.dtype("float32")])
def test_optimizer_state_dtype_in_any_spelling_is_kept_by_name_and_saves(state_dtype, tmp_path):
    model = tiny_model()
    model.compile(optimizer=RLNOptimizer(keras.optimizers.SGD(0.05), model.layers[0],
                                         state_dtype=state_dtype), loss="mse")
    assert model.optimizer.get_config()["state_dtype"] == "float32"
    model.fit(*data(), batch_size=BATCH, epochs=1, verbose=0)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert loaded.optimizer.lambdas().dtype == np.float32
    np.testing.assert_array_equal(loaded.optimizer.lambdas(), model.optimizer.lambdas())


def test_optimizer_load_checks_every_saved_value_before_it_assigns_one(tmp_path):
    """Keras's own load assigned the values in order and failed at a wrong shape with the
    RLN state already overwritten, and took NaN lambdas (which no update can continue)."""
    model = tiny_model()
    model.compile(optimizer=RLNOptimizer(keras.optimizers.SGD(0.05), model.layers[0]),
                  loss="mse")
    model.fit(*data(), batch_size=BATCH, epochs=1, verbose=0)
    optimizer = model.optimizer
    saved = {str(i): np.array(v.numpy(), copy=True) for i, v in enumerate(optimizer.variables)}
    order = [v.path for v in optimizer.variables]
    lambdas_at = next(i for i, v in enumerate(optimizer.variables) if "lambdas" in v.path)
    other = {key: value + 1.0 if int(key) == lambdas_at else value
             for key, value in saved.items()}
    last = str(len(saved) - 1)
    for store, match in [
        ({**other, last: np.zeros(np.shape(saved[last]) + (2,))},
         f"the saved value of {order[-1]!r} has shape"),
        ({**other, str(lambdas_at): np.full_like(saved[str(lambdas_at)], np.nan)},
         "saved state of .*\\['lambdas'\\] holds NaN"),
    ]:
        with pytest.raises(ValueError, match=match):
            optimizer.load_own_variables(store)
        for key, variable in enumerate(optimizer.variables):
            np.testing.assert_array_equal(variable.numpy(), saved[str(key)])
    optimizer.load_own_variables(other)  # a good one loads
    np.testing.assert_array_equal(optimizer.lambdas(), saved[str(lambdas_at)] + 1.0)


def test_a_theta_beyond_a_float32_state_is_refused_before_training():
    model = tiny_model()
    optimizer = RLNOptimizer(keras.optimizers.SGD(), model.layers[0], avg_reg=1e39,
                             state_dtype="float32")
    with pytest.raises(ValueError, match="does not fit a float32 state"):
        optimizer.build(model.trainable_variables)
    before = kernel_of(model.layers[0])
    callback = RLNCallback(model.layers[0], avg_reg=1e39, state_dtype=np.float32)
    with pytest.raises(ValueError, match="does not fit a float32 state"):
        model.fit(*data(), epochs=1, verbose=0, callbacks=[callback])
    np.testing.assert_array_equal(kernel_of(model.layers[0]), before)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"norm": 3}, ValueError, "norm"),
    ({"norm": True}, ValueError, "norm"),
    ({"avg_reg": float("nan")}, ValueError, "avg_reg"),
    ({"learning_rate": -1.0}, ValueError, "learning_rate"),
    ({"learning_rate": float("inf")}, ValueError, "learning_rate"),
    ({"impl": "cuda"}, ValueError, "impl"),
    ({"state_dtype": "float16"}, TypeError, "state_dtype"),
])
def test_bad_hyperparameters_are_refused_at_construction(kwargs, error, match):
    with pytest.raises(error, match=match):
        RLNCallback(tiny_model().layers[0], **kwargs)


def test_layers_without_a_kernel_are_refused():
    with pytest.raises(ValueError, match="no kernel"):
        RLNCallback(keras.layers.Dropout(0.5))  # built at creation: refused at once
    with pytest.raises(TypeError, match="Keras layers"):
        RLNCallback(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="at least one"):
        RLNCallback([])
    layer = tiny_model().layers[0]
    with pytest.raises(ValueError, match="same layer twice"):
        RLNCallback([layer, layer])

    norm_layer = keras.layers.BatchNormalization()  # unbuilt: checked at train begin
    model = keras.Sequential([keras.Input((N_IN,)), norm_layer, keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="no kernel"):
        model.fit(*data(), epochs=1, verbose=0, callbacks=[RLNCallback(norm_layer)])


def test_a_layer_outside_the_trained_model_is_refused():
    other = tiny_model(seed=1)
    model = tiny_model()
    with pytest.raises(ValueError, match="not part of the model"):
        model.fit(*data(), epochs=1, verbose=0, callbacks=[RLNCallback(other.layers[0])])


def test_steps_per_execution_needs_an_explicit_opt_in():
    model = tiny_model(steps_per_execution=3)
    with pytest.raises(ValueError, match="steps_per_execution=3"):
        model.fit(*data(), batch_size=BATCH, epochs=1, verbose=0,
                  callbacks=[RLNCallback(model.layers[0])])
    callback = RLNCallback(model.layers[0], allow_steps_per_execution=True)
    model.fit(*data(), batch_size=BATCH, epochs=1, verbose=0, callbacks=[callback])
    assert int(callback.get_state()["layer0/steps"]) == 1  # 3 batches, one hook call


@pytest.mark.parametrize("wrapped", [False, True])
def test_gradient_accumulation_is_refused(wrapped):
    # wrapped: behind the LossScaleOptimizer that compile adds under mixed precision
    accumulating = keras.optimizers.SGD(0.05, gradient_accumulation_steps=2)
    optimizer = keras.optimizers.LossScaleOptimizer(accumulating) if wrapped else accumulating
    model = tiny_model(optimizer=optimizer)
    before = kernel_of(model.layers[0])
    with pytest.raises(ValueError, match="accumulates gradients over 2"):
        model.fit(*data(), epochs=1, verbose=0, callbacks=[RLNCallback(model.layers[0])])
    np.testing.assert_array_equal(kernel_of(model.layers[0]), before)


def test_a_refused_update_names_the_layer_and_batch():
    model = tiny_model()
    callback = RLNCallback(model.layers[0])
    callback.set_model(model)
    callback.on_train_begin()
    kernel = kernel_of(model.layers[0])
    kernel[1, 2] = np.nan
    model.layers[0].kernel.assign(kernel)
    with pytest.raises(ValueError, match=r"layer 'dense.*batch 5 refused: .*NaN or inf"):
        callback.on_train_batch_end(5)
    assert callback.get_state()["layer0/steps"] == 0


def test_set_state_checks_everything_before_replacing_anything():
    model = tiny_model()
    callback = RLNCallback(model.layers, **STRONG)
    model.fit(*data(), batch_size=BATCH, epochs=1, verbose=0, callbacks=[callback])
    good = callback.get_state()
    bad_shape = {**good, "layer1/lambdas": np.zeros((5, 1))}
    bad_dtype = {**good, "layer1/prev_weights": good["layer1/prev_weights"].astype("float64"),
                 "layer1/lambdas": good["layer1/lambdas"]}
    # one layer's arrays at odds with each other: the message names the layer
    at_odds = {**good, "layer1/prev_reg": good["layer1/prev_reg"].astype("float32")}
    for bad, error, match in [(bad_shape, ValueError, "shape"), (bad_dtype, TypeError, "dtype"),
                              (at_odds, TypeError, r"layer1 \(layer 'dense_\d+'\): state.prev_reg"),
                              ({**good, "layer2/lambdas": good["layer0/lambdas"]}, ValueError,
                               "unexpected keys"),
                              ({"layer0/lambdas": good["layer0/lambdas"]}, ValueError,
                               "has fields")]:
        with pytest.raises(error, match=match):
            callback.set_state(bad)
        after = callback.get_state()
        for key, value in good.items():
            np.testing.assert_array_equal(after[key], value, err_msg=key)


def fitted_two_layer_callback():
    model = tiny_model()
    callback = RLNCallback(model.layers, **STRONG)
    model.fit(*data(), batch_size=BATCH, epochs=1, verbose=0, callbacks=[callback])
    return model, callback


def assert_state_unchanged(callback, good):
    after = callback.get_state()
    assert after.keys() == good.keys()
    for key, value in good.items():
        np.testing.assert_array_equal(after[key], value, err_msg=key)


@pytest.mark.parametrize("key, value", [("layer1/lambdas", np.nan),
                                        ("layer1/prev_weights", np.inf),
                                        ("layer0/prev_reg", -np.inf)])
def test_set_state_refuses_non_finite_values_naming_the_layer(key, value):
    """Issue 11, item 19: a state that cannot continue is refused at load, before any
    layer's state is replaced (prev_reg once steps > 0)."""
    model, callback = fitted_two_layer_callback()
    good = callback.get_state()
    bad = {name: np.copy(value) for name, value in good.items()}
    bad[key][0, 0] = value
    prefix, _, field = key.partition("/")
    layer = model.layers[int(prefix[-1])].name
    with pytest.raises(ValueError, match=rf"{prefix} \(layer '{layer}'\)\['{field}'\] holds "
                                         "NaN or inf"):
        callback.set_state(bad)
    assert_state_unchanged(callback, good)


@pytest.mark.parametrize("steps", [-1, 1.5, "3", True, np.float64(2.0)])
def test_set_state_refuses_odd_steps_naming_the_layer(steps):
    model, callback = fitted_two_layer_callback()
    good = callback.get_state()
    with pytest.raises(ValueError, match=r"layer1.*\['steps'\] must be an int >= 0"):
        callback.set_state({**good, "layer1/steps": steps})
    assert_state_unchanged(callback, good)


def test_set_state_checks_shapes_before_values_and_ignores_prev_reg_at_steps_0():
    model, callback = fitted_two_layer_callback()
    good = callback.get_state()
    wrong = {**good, "layer0/lambdas": np.full((5, 4), np.nan)}
    with pytest.raises(ValueError, match="shape"):
        callback.set_state(wrong)
    assert_state_unchanged(callback, good)
    fresh = {**good, "layer0/steps": 0, "layer0/prev_reg": np.full((N_IN, 4), np.nan)}
    callback.set_state(fresh)  # a first update does not read prev_reg
    assert callback.get_state()["layer0/steps"] == 0


@pytest.mark.parametrize("state, error, match", [
    (None, TypeError, "takes a mapping .* got NoneType"),
    ([("layer0/lambdas", np.zeros((N_IN, 4)))], TypeError, "takes a mapping .* got list"),
    ({0: np.zeros((N_IN, 4))}, TypeError, r"keys are strings .* got 0 \(int\)"),
    ({("layer0", "lambdas"): np.zeros((N_IN, 4))}, TypeError, "keys are strings"),
    ({"layer0/lambdas": [[0.0] * 4] * N_IN, "layer0/prev_weights": np.zeros((N_IN, 4)),
      "layer0/prev_reg": np.zeros((N_IN, 4)), "layer0/steps": 0, "layer1/lambdas": np.zeros((4, 1)),
      "layer1/prev_weights": np.zeros((4, 1), "float32"), "layer1/steps": 0},
     TypeError, r"layer0 .*\['lambdas'\] must be a NumPy array, got list"),
])
def test_set_state_refuses_what_is_not_a_state_dict_by_name(state, error, match):
    """Issue 11, item 20: a clear TypeError naming the problem, not an AttributeError."""
    _, callback = fitted_two_layer_callback()
    good = callback.get_state()
    with pytest.raises(error, match=match):
        callback.set_state(state)
    assert_state_unchanged(callback, good)


def test_a_second_fit_continues_the_run_and_ignores_edits_between_fits():
    model = tiny_model()
    callback = RLNCallback(model.layers[0], **STRONG)
    model.fit(*data(), batch_size=BATCH, epochs=1, verbose=0, callbacks=[callback])
    lambdas = callback.lambdas()
    edited = kernel_of(model.layers[0]) * 0.5
    model.layers[0].kernel.assign(edited)
    callback.on_train_begin()  # what the next fit does first
    state = callback.get_state()
    np.testing.assert_array_equal(state["layer0/lambdas"], lambdas)
    np.testing.assert_array_equal(state["layer0/prev_weights"], edited)
    assert int(state["layer0/steps"]) == N_ROWS // BATCH


@pytest.mark.parametrize("options", [{}, FLOAT32], ids=["default", "float32 compute"])
def test_resuming_from_a_saved_model_and_state_continues_the_same_run(tmp_path, options):
    x, y = data()
    fit = {"batch_size": BATCH, "shuffle": False, "verbose": 0}
    whole = tiny_model()
    whole_callback = RLNCallback(whole.layers[0], **STRONG, **options)
    whole.fit(x, y, epochs=2, callbacks=[whole_callback], **fit)

    first = tiny_model()
    first_callback = RLNCallback(first.layers[0], **STRONG, **options)
    first.fit(x, y, epochs=1, callbacks=[first_callback], **fit)
    first.save(tmp_path / "model.keras")
    np.savez(tmp_path / "rln.npz", **first_callback.get_state())

    resumed = keras.models.load_model(tmp_path / "model.keras")
    resumed_callback = RLNCallback(resumed.layers[0], **STRONG, **options)
    resumed_callback.set_state(np.load(tmp_path / "rln.npz"))
    resumed.fit(x, y, initial_epoch=1, epochs=2, callbacks=[resumed_callback], **fit)

    np.testing.assert_allclose(kernel_of(resumed.layers[0]), kernel_of(whole.layers[0]),
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(resumed_callback.lambdas(), whole_callback.lambdas(),
                               rtol=0, atol=1e-6)
    assert np.ptp(whole_callback.lambdas()) > 0.1  # a fresh state would not match


def test_model_save_and_load_are_unaffected(tmp_path):
    model = tiny_model()
    callback = RLNCallback(model.layers[0], **STRONG)
    model.fit(*data(), batch_size=BATCH, epochs=1, verbose=0, callbacks=[callback])
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    for saved, restored in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(restored.numpy(), saved.numpy())
    np.testing.assert_array_equal(callback.get_state()["layer0/prev_weights"],
                                  kernel_of(loaded.layers[0]))


def test_get_config_records_the_hyperparameters():
    model = tiny_model()
    callback = RLNCallback(model.layers[0], norm=2, avg_reg=-8, learning_rate=1e5)
    assert callback.hyperparameters == rln_core.Hyperparameters(-8.0, 1e5, 2)
    assert callback.get_config() == {
        "layers": [model.layers[0].name], "avg_reg": -8.0, "learning_rate": 1e5, "norm": 2,
        "allow_steps_per_execution": False, "impl": "auto", "state_dtype": "float64",
        "compute_dtype": None}
    assert RLNCallback(model.layers[0], **FLOAT32).get_config()["compute_dtype"] == "float32"


def test_defaults_are_the_authors_callback_defaults():
    callback = RLNCallback(tiny_model().layers[0])
    assert callback.hyperparameters == rln_core.ORIGINAL_CALLBACK_DEFAULTS
    assert (callback.norm, callback.avg_reg, callback.learning_rate) == (1, -7.5, 6e5)


def test_get_state_wraps_the_core_serialized_state():
    model = tiny_model()
    callback = RLNCallback(model.layers, **STRONG)
    callback.set_model(model)
    callback.on_train_begin()
    state = callback.get_state()  # before any update: prev_reg allocated, zeros
    assert sorted(state) == sorted(f"layer{i}/{field}" for i in range(2)
                                   for field in rln_core.STATE_FIELDS)
    np.testing.assert_array_equal(state["layer0/prev_reg"], np.zeros((N_IN, 4)))
    assert state["layer0/steps"] == 0
    state["layer0/lambdas"][...] = 0.0  # a copy: the callback's state is untouched
    assert np.all(callback.lambdas() == STRONG["avg_reg"])


# --------------------------------------------------------------------------- RLNOptimizer


def test_optimizer_defaults_and_config_before_build():
    model = tiny_model()
    optimizer = RLNOptimizer(keras.optimizers.SGD(0.1), model.layers[0])
    assert optimizer.hyperparameters == rln_core.DEFAULTS
    config = optimizer.get_config()
    assert config["layers_or_variables"] == [model.layers[0].kernel.path]
    assert {k: config[k] for k in ("avg_reg", "learning_rate", "norm")} == \
        rln_core.DEFAULTS.asdict()
    assert config["inner_optimizer"]["class_name"] == "SGD"
    assert config["state_dtype"] is None and config["compute_dtype"] is None
    assert float(optimizer.learning_rate.numpy()) == pytest.approx(0.1)  # the inner one's
    optimizer.learning_rate = 0.2
    assert float(optimizer.inner_optimizer.learning_rate.numpy()) == pytest.approx(0.2)
    with pytest.raises(RuntimeError, match="before it is built"):
        optimizer.lambdas()


@pytest.mark.parametrize("kwargs, error, match", [
    ({"norm": 3}, ValueError, "norm"),
    ({"avg_reg": float("nan")}, ValueError, "avg_reg"),
    ({"learning_rate": -1.0}, ValueError, "learning_rate"),
    ({"state_dtype": "float16"}, TypeError, "state_dtype"),
    ({"compute_dtype": "float16"}, TypeError, "Invalid compute_dtype"),
    ({"compute_dtype": "float32", "state_dtype": "float64"}, TypeError,
     "needs float32 weights and a float32 state; got the state float64"),
])
def test_optimizer_refuses_bad_hyperparameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        RLNOptimizer(keras.optimizers.SGD(), tiny_model().layers[0], **kwargs)


def test_optimizer_refuses_bad_inner_optimizers_and_targets():
    layer = tiny_model().layers[0]
    with pytest.raises(TypeError, match="wraps a keras.optimizers.Optimizer"):
        RLNOptimizer("sgd", layer)
    for accumulating in (keras.optimizers.SGD(gradient_accumulation_steps=2),
                         keras.optimizers.LossScaleOptimizer(
                             keras.optimizers.SGD(gradient_accumulation_steps=2))):
        with pytest.raises(ValueError, match="accumulates gradients over 2"):
            RLNOptimizer(accumulating, layer)
    with pytest.raises(ValueError, match="at least one"):
        RLNOptimizer(keras.optimizers.SGD(), [])
    with pytest.raises(TypeError, match="layers, variables or variable paths"):
        RLNOptimizer(keras.optimizers.SGD(), np.zeros(3))
    with pytest.raises(ValueError, match="no kernel"):
        RLNOptimizer(keras.optimizers.SGD(), keras.layers.Dropout(0.5))


def test_optimizer_resolves_its_targets_at_build():
    model = tiny_model()
    variables = model.trainable_variables
    by_path = RLNOptimizer(keras.optimizers.SGD(), [model.layers[1].kernel.path,
                                                     model.layers[0].kernel])
    by_path.build(variables)
    assert by_path.regularized_variables == (model.layers[1].kernel, model.layers[0].kernel)
    assert by_path.lambdas(1).shape == (N_IN, 4) and by_path.state(0).steps == 0
    with pytest.raises(IndexError, match="out of range"):
        by_path.lambdas(2)
    # "layer/variable", the shortest form, for a kernel whose path has a model scope too
    kernel = model.layers[0].kernel
    short = f"{model.layers[0].name}/kernel"
    assert kernel.path.endswith("/" + short)
    by_short = RLNOptimizer(keras.optimizers.SGD(), short)
    by_short.build(variables)
    assert by_short.regularized_variables == (kernel,) and by_short.regularizes(kernel)
    for targets, match in [("no/such/kernel", "no single trained variable"),
                           (tiny_model(seed=1).layers[0], "not among the variables"),
                           ([model.layers[0], model.layers[0].kernel], "twice")]:
        with pytest.raises(ValueError, match=match):
            RLNOptimizer(keras.optimizers.SGD(), targets).build(variables)


def test_optimizer_keeps_the_inner_optimizers_state_and_iterations():
    model = tiny_model(optimizer=RLNOptimizer(keras.optimizers.Adam(0.01),
                                              tiny_model().layers[0]))
    with pytest.raises(ValueError, match="not among the variables"):
        model.fit(*data(), batch_size=BATCH, epochs=1, verbose=0)
    model = tiny_model()
    optimizer = RLNOptimizer(keras.optimizers.Adam(0.01), model.layers[0], **STRONG)
    model.compile(optimizer=optimizer, loss="mse")
    model.fit(*data(), batch_size=BATCH, epochs=1, verbose=0)
    assert int(optimizer.iterations.numpy()) == N_ROWS // BATCH == optimizer.state(0).steps
    n_own = len(optimizer.variables) - len(optimizer.inner_optimizer.variables)
    assert n_own == 2 + 4  # its unused iteration and learning rate; lambdas, prev_reg,
    assert optimizer.skipped(0) == 0  # steps and skipped of the one kernel


def test_optimizer_regularizes_kernels_of_several_shapes():
    """One RLNOptimizer over two kernels of different shapes, then models of other kernel
    shapes in turn, in one process: XLA's compiled update is traced per shape. (One trace
    with relaxed shapes, shared by every optimizer, failed on the second shape: an unknown
    dimension in the mean's element count, or mismatched dimensions at the fourth.)"""
    def check(model, optimizer, n_kernels):
        model.fit(*data(), batch_size=BATCH, epochs=1, verbose=0)
        for which in range(n_kernels):
            state = optimizer.state(which)
            assert state.steps == N_ROWS // BATCH and optimizer.skipped(which) == 0
            assert np.mean(state.lambdas) <= STRONG["avg_reg"] + 1e-9  # translated, clipped
            assert np.ptp(state.lambdas) > 0  # learned

    model = tiny_model()
    optimizer = RLNOptimizer(keras.optimizers.SGD(0.05), [model.layers[0], model.layers[1]],
                             **STRONG)
    model.compile(optimizer=optimizer, loss="mse")
    check(model, optimizer, 2)
    for width in (5, 3, 7):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((N_IN,)), keras.layers.Dense(width),
                                  keras.layers.Dense(1)])
        optimizer = RLNOptimizer(keras.optimizers.SGD(0.05), model.layers[0], **STRONG)
        model.compile(optimizer=optimizer, loss="mse")
        check(model, optimizer, 1)


def test_optimizer_float32_compute_needs_float32_variables_and_keeps_its_config():
    keras.utils.set_random_seed(0)
    double = keras.Sequential([keras.Input((N_IN,), dtype="float64"),
                               keras.layers.Dense(4, dtype="float64")])
    optimizer = RLNOptimizer(keras.optimizers.SGD(), double.layers[0], compute_dtype="float32")
    with pytest.raises(TypeError, match=r"variable '.*kernel' float64"):
        optimizer.build(double.trainable_variables)
    assert not optimizer.built

    model = tiny_model()
    optimizer = RLNOptimizer(keras.optimizers.SGD(), model.layers[0], compute_dtype=np.float32)
    assert optimizer.compute_dtype == optimizer.get_config()["compute_dtype"] == "float32"
    copy = RLNOptimizer.from_config(optimizer.get_config())
    assert copy.compute_dtype == "float32" and copy.get_config() == optimizer.get_config()
    optimizer.build(model.trainable_variables)  # state_dtype None: the arithmetic's, float32
    assert optimizer.lambdas().dtype == np.float32


def test_the_tensorflow_kernel_is_read_into_a_fresh_array_every_step():
    """TensorFlow may keep the array an assign hands it as the variable's own buffer
    (seen for 64-byte-aligned arrays), so the callback never writes an array it has
    assigned: every read gives a new, writable one."""
    from rln_keras._kernel import kernel_access

    kernel = tiny_model().layers[0].kernel
    access = kernel_access(kernel)
    assert access.name == "tensorflow"
    first = access.read()
    access.write(first)
    second = access.read()
    assert second.flags.writeable and not np.shares_memory(first, second)
    np.testing.assert_array_equal(second, first)


def test_set_state_copies_what_it_is_given():
    """Training after set_state(saved) must leave `saved` (a best state kept in memory) as it was."""
    x, y = data()
    model = tiny_model()
    callback = RLNCallback(model.layers[0], **STRONG)
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[callback])
    saved = callback.get_state()
    snapshot = {key: np.copy(value) for key, value in saved.items()}
    callback.set_state(saved)
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[callback])
    assert callback.get_state()["layer0/steps"] > snapshot["layer0/steps"]
    for key, value in snapshot.items():
        np.testing.assert_array_equal(saved[key], value, err_msg=key)
