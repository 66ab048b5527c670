"""rln_keras on every Keras 3 backend (TensorFlow, torch, JAX), in real `model.fit` runs.

Keras picks its backend once per process (KERAS_BACKEND), so each backend runs
in its own Python process, which imports this file and calls `run_checks`:
all the checks of one backend share one import of Keras and its backend.

What is checked on each backend:
- `RLNCallback`: every update of a fit matches `rln_core.reference.update`,
  and its writes are what training continues from: the test's inner optimizer
  (`RecordingSGD`) records in-graph the kernel each optimizer step starts
  from, which must be, bit for bit, the kernel the previous update wrote;
  weights the reference clips are exactly 0. With compute_dtype=float32 every
  update is, bit for bit, `rln_core.update(..., compute_dtype=np.float32)`.
- `RLNOptimizer` (the update inside the compiled train step):
  `rln_keras.graph_step` passes the conformance kit (`rln_core.testing`),
  eagerly and compiled (tf.function with XLA, jax.jit); in a fit every step
  matches the reference given the inner optimizer's weight change as `delta`
  (recorded in-graph by `RecordingSGD`); steps_per_execution > 1 gives the same
  run; a non-finite step is skipped and counted; wrapping a LossScaleOptimizer
  gives the same run as wrapping its inner optimizer; get_config/from_config and
  model.save/load_model round trip and the loaded run continues the same; over
  the kit's runs of updates (`check_trajectory`, float64 modes) one optimizer's
  state stays with the reference's (a stale prev_reg fails it).
  compute_dtype="float32": graph_step passes the kit's float32 cases within
  `FLOAT32_COMPUTE_TOLERANCE` (eagerly and compiled), every step of a fit is
  within it, differs from the default's float64 math on the same inputs, and
  the option survives get_config and model.save/load_model.
- Both ways agree on one run (same float64 math, the same weight change).

Modes: "tensorflow", "torch", "jax" (JAX's default float32: the in-graph math
is float32, compared with the stated FLOAT32 tolerances) and "jax-x64"
(JAX_ENABLE_X64=1: float64, the spec's tolerances).
"""

import dataclasses
import functools
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Optional

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
HYPERPARAMETERS = {"norm": 1, "avg_reg": -6.0, "learning_rate": 1e5}
# Theta -3: exp(-3) = 0.05 cuts the small weights of a Glorot kernel (exact zeros).
CLIPPING = {"norm": 1, "avg_reg": -3.0, "learning_rate": 1e4}
N_ROWS, N_IN, BATCH, EPOCHS = 24, 6, 8, 2
N_UPDATES = EPOCHS * N_ROWS // BATCH
# In-graph float32 arithmetic (JAX without x64) against the float64 spec, per
# update from the same inputs: lambdas within FLOAT32_LAMBDA_RTOL * (1 + |lambda|)
# (a few float32 ulps of the lambda step and the mean), weights within
# FLOAT32_WEIGHT_RTOL * |W| + 1 ulp (exp of that lambda error; a weight whose
# lambda ends within that error of its cap may land on a residue instead of 0).
FLOAT32_LAMBDA_RTOL, FLOAT32_WEIGHT_RTOL = 1e-5, 1e-5
MODES = ("tensorflow", "torch", "jax", "jax-x64")


# --------------------------------------------------------------------------- helpers


def to_numpy(value):
    """A NumPy copy of a backend tensor or Keras variable (TF: no NumPy 2 warning)."""
    import keras

    if isinstance(value, keras.Variable):
        value = value.value
    if keras.backend.backend() == "tensorflow":
        return np.array(value.numpy(), copy=True)
    return np.array(keras.ops.convert_to_numpy(value), copy=True)


def sync(model):
    """JAX: write the trainer's state into the variables (no-op elsewhere)."""
    if hasattr(model, "jax_state_sync"):
        model.jax_state_sync()


def recording_sgd(learning_rate=0.05):
    """SGD that records, as its own (in-graph) variables, every trainable variable
    before and after each of its steps: what the step started from, what it made."""
    import keras

    class RecordingSGD(keras.optimizers.SGD):
        def build(self, variables):
            if self.built:
                return
            super().build(variables)
            self.pre = [self.add_variable_from_reference(v, name="pre") for v in variables]
            self.post = [self.add_variable_from_reference(v, name="post") for v in variables]

        def apply(self, grads, trainable_variables=None):
            if not self.built:  # TensorFlow builds it in the first (traced) step
                self.build(list(trainable_variables))
            for variable, pre in zip(self._trainable_variables, self.pre):
                pre.assign(variable.value)
            super().apply(grads, trainable_variables)
            for variable, post in zip(self._trainable_variables, self.post):
                post.assign(variable.value)

    return RecordingSGD(learning_rate)


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N_ROWS, N_IN)).astype("float32")
    return x, x[:, :2].sum(axis=1, keepdims=True)


def tiny_model(optimizer, dtype="float32", **compile_kwargs):
    """A 6-4-1 ReLU network, the same initial weights each time, compiled with
    `optimizer` (or with `optimizer(model)`: an RLNOptimizer on its layers)."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((N_IN,), dtype=dtype),
                              keras.layers.Dense(4, activation="relu", dtype=dtype),
                              keras.layers.Dense(1, dtype=dtype)])
    if callable(optimizer) and not isinstance(optimizer, keras.optimizers.Optimizer):
        optimizer = optimizer(model)
    model.compile(optimizer=optimizer, loss="mse", **compile_kwargs)
    return model


def rln_optimizer(inner, **hyperparameters):
    """A factory for `tiny_model`: RLNOptimizer(inner, the first layer, ...)."""
    from rln_keras import RLNOptimizer

    return lambda model: RLNOptimizer(inner, model.layers[0], **hyperparameters)


def fit(model, epochs=EPOCHS, callbacks=(), initial_epoch=0, batch_size=BATCH):
    x, y = data()
    model.fit(x.astype(model.inputs[0].dtype), y.astype(model.inputs[0].dtype),
              batch_size=batch_size, initial_epoch=initial_epoch, epochs=epochs, shuffle=False,
              verbose=0, callbacks=list(callbacks))


def float64_in_graph():
    import keras

    from rln_keras._ops import float64_available
    return float64_available(keras.ops.zeros(1))


def assert_float32_update_matches(name, weights_in, expected_w, expected, got_w, got):
    """Per-update agreement of float32 in-graph math with the float64 reference
    (tolerances: FLOAT32_LAMBDA_RTOL, FLOAT32_WEIGHT_RTOL)."""
    assert int(got.steps) == int(expected.steps), name
    lam = expected.lambdas.astype(np.float64)
    bad = np.abs(got.lambdas - lam) > FLOAT32_LAMBDA_RTOL * (1 + np.abs(lam))
    assert not bad.any(), f"{name}: lambdas off by {np.abs(got.lambdas - lam).max():.3g}"
    w_tol = FLOAT32_WEIGHT_RTOL * np.abs(weights_in) + np.spacing(np.abs(expected_w))
    bad = np.abs(got_w.astype(np.float64) - expected_w) > w_tol
    assert not bad.any(), f"{name}: weights off by {np.abs(got_w - expected_w).max():.3g}"
    reg_tol = FLOAT32_WEIGHT_RTOL * np.abs(weights_in) + np.spacing(
        np.abs(weights_in).astype(np.float32)) + np.finfo(np.float32).tiny
    bad = np.abs(got.prev_reg - expected.prev_reg) > reg_tol
    off = np.abs(got.prev_reg - expected.prev_reg).max()
    assert not bad.any(), f"{name}: prev_reg off by {off:.3g}"
    np.testing.assert_array_equal(got.prev_weights, got_w, err_msg=name)


# --------------------------------------------------------------------------- the callback


def check_callback_fit(expected_access: Optional[str] = None,
                       hyperparameters=CLIPPING, compute_dtype=None) -> int:
    """Fit with RLNCallback (one fit per epoch: later fits continue the run); check
    every update against the reference, that the next optimizer step starts from
    the written kernel, and how the kernel was reached (by default: in place on
    torch, the raw ops on TensorFlow, a copy elsewhere). With compute_dtype=float32
    (and a float32 state) every update must equal, bit for bit, the core's float32
    mode on the same inputs, and be within its tolerance of the reference.

    Returns:
        The number of updates checked.
    """
    import keras

    import rln_core
    from rln_core.testing import FLOAT32_COMPUTE_TOLERANCE, assert_update_matches, input_scale
    from rln_keras import RLNCallback

    class Snapshot(keras.callbacks.Callback):
        def __init__(self, rln_callback):
            super().__init__()
            self.rln_callback, self.records = rln_callback, []

        def on_train_batch_end(self, batch, logs=None):
            sync(self.model)
            flat = self.rln_callback.get_state()
            state = rln_core.RLNState.from_dict({k.split("/")[1]: v for k, v in flat.items()})
            optimizer = self.model.optimizer
            self.records.append((to_numpy(self.model.layers[0].kernel), state,
                                 to_numpy(optimizer.pre[0]), to_numpy(optimizer.post[0])))

    model = tiny_model(recording_sgd())
    initial = to_numpy(model.layers[0].kernel)
    float32 = {} if compute_dtype is None else {"state_dtype": np.float32,
                                                "compute_dtype": compute_dtype}
    callback = RLNCallback(model.layers[0], **hyperparameters, **float32)
    before, after = Snapshot(callback), Snapshot(callback)
    for epoch in range(EPOCHS):
        fit(model, epoch + 1, [before, callback, after], initial_epoch=epoch)

    assert len(after.records) == N_UPDATES == after.records[-1][1].steps
    written = initial
    for t, ((seen_w, seen, pre, post), (done_w, done, _, _)) in enumerate(
            zip(before.records, after.records)):
        name = f"{keras.backend.backend()} callback batch {t}"
        np.testing.assert_array_equal(pre, written, err_msg=f"{name}: the optimizer step did "
                                      "not start from the kernel RLN wrote")
        np.testing.assert_array_equal(post, seen_w, err_msg=name)
        expected_w, expected = rln_core.reference.update(seen_w, seen, **hyperparameters)
        if compute_dtype is None:
            assert_update_matches(name, expected_w, expected, done_w, done)
        else:
            assert_update_matches(name, expected_w, expected, done_w, done,
                                  lambda_rtol=FLOAT32_COMPUTE_TOLERANCE.lambda_rtol,
                                  scale=input_scale(seen_w, seen, hyperparameters))
            core_w, core = seen_w.copy(), seen.copy()
            rln_core.update(core_w, core, compute_dtype=np.float32, **hyperparameters)
            np.testing.assert_array_equal(done_w, core_w, err_msg=name)
            for field in ("lambdas", "prev_reg", "prev_weights"):
                np.testing.assert_array_equal(getattr(done, field), getattr(core, field),
                                              err_msg=f"{name}: {field}")
        written = done_w
    np.testing.assert_array_equal(to_numpy(model.layers[0].kernel), written)
    if expected_access is None:
        expected_access = {"torch": "in place", "tensorflow": "tensorflow"}.get(
            keras.backend.backend(), "copy")
    assert callback._kernels[0].access.name == expected_access
    assert np.std(callback.lambdas()) > 1e-3
    if hyperparameters is CLIPPING:
        assert np.count_nonzero(written == 0) > 0, "no weight was clipped"
    return len(after.records)


# --------------------------------------------------------------------------- the optimizer


def update_in_graph(weights, state, *, avg_reg, learning_rate, norm, delta=None, compiled=False,
                    compute_dtype="float64"):
    """One `rln_keras.graph_step` in the conformance kit's signature (float64 math, or
    `compute_dtype`).

    Without a `delta` the kit's inferred change W - prev_weights is handed over.
    A skipped (non-finite) step raises, as the kit expects of a refused update.
    """
    import keras

    import rln_core
    from rln_keras import graph_step

    hyperparameters = rln_core.Hyperparameters(avg_reg, learning_rate, norm)
    if delta is None:
        delta = weights.astype(np.float64) - state.prev_weights.astype(np.float64)
    step = graph_step
    if compiled:
        step = compiled_graph_step()
    tensor = keras.ops.convert_to_tensor
    # (np.require, not np.ascontiguousarray, which makes a 0-d array 1-d)
    out = step(tensor(np.require(weights, requirements="C")),
               tensor(np.require(delta, requirements="C")),
               tensor(state.lambdas), tensor(state.prev_reg), tensor(np.int64(state.steps)),
               hyperparameters, compute_dtype)
    if int(to_numpy(out.skipped)):
        raise ValueError("non-finite: skipped")
    new_weights = to_numpy(out.weights)
    return new_weights, rln_core.RLNState(lambdas=to_numpy(out.lambdas),
                                          prev_weights=new_weights.copy(),
                                          prev_reg=to_numpy(out.prev_reg),
                                          steps=int(to_numpy(out.steps)))


_COMPILED = {}


def compiled_graph_step():
    """graph_step compiled as the backend's train step is: XLA on TF, jax.jit."""
    import keras

    from rln_keras import graph_step

    if "step" not in _COMPILED:
        backend = keras.backend.backend()
        if backend == "jax":
            import jax
            _COMPILED["step"] = jax.jit(graph_step, static_argnums=(5, 6))
        elif backend == "tensorflow":
            import tensorflow as tf
            _COMPILED["step"] = tf.function(graph_step, jit_compile=True)
        else:
            _COMPILED["step"] = graph_step  # the torch trainer runs eagerly
    return _COMPILED["step"]


def kit_cases():
    """The conformance cases this backend runs eagerly: all of them, except on JAX,
    whose eager ops compile once per shape and dtype (about a second each): there
    the cases of few shapes that cover a given delta of either dtype, first
    updates, both norms, the clip boundary and extreme hyperparameters."""
    import keras

    from rln_core.testing import CASES

    if keras.backend.backend() != "jax":
        return CASES
    return [case for case in CASES if case.delta and case.layout == "C" or case.at_cap
            or case.name.startswith("extreme_")]


COMPILED_CASES = ("delta_float32_float32_norm=1", "delta_float64_float32_norm=2_first",
                  "at_cap_float32_norm=1_first", "at_cap_float64_norm=2_translated")


def check_graph_step_conformance() -> int:
    """The conformance kit on graph_step (float64 modes only): eagerly, and compiled
    as a train step is (XLA on TensorFlow, jax.jit) on a few cases."""
    from rln_core.testing import CASES, check_update

    n = check_update(update_in_graph, kit_cases())
    compiled = [case for case in CASES if case.name in COMPILED_CASES]
    assert len(compiled) == len(COMPILED_CASES)
    n += check_update(functools.partial(update_in_graph, compiled=True), compiled)
    return n


def float32_cases(cases):
    """The float32 mode's inputs: the cases with float32 weights, each with a float32 state."""
    return [dataclasses.replace(case, state_dtype="float32") for case in cases
            if case.dtype == "float32"]


# The tutorial's kernel among them: XLA's float32 sum put its mean 3.5e-6 off.
COMPILED_FLOAT32_CASES = ("delta_float64_float32_norm=2_first",
                          "at_cap_float32_norm=1_translated", "tutorial_179x1013")


def check_graph_step_float32_conformance() -> int:
    """compute_dtype="float32" (every mode): graph_step within the kit's
    FLOAT32_COMPUTE_TOLERANCE on its float32 cases, eagerly, and compiled as a train
    step is on a few."""
    from rln_core.testing import CASES, FLOAT32_COMPUTE_TOLERANCE, check_update

    in_float32 = functools.partial(update_in_graph, compute_dtype="float32")
    n = check_update(in_float32, float32_cases(kit_cases()), FLOAT32_COMPUTE_TOLERANCE)
    compiled = [case for case in float32_cases(CASES) if case.name in COMPILED_FLOAT32_CASES]
    assert len(compiled) == len(COMPILED_FLOAT32_CASES)
    return n + check_update(functools.partial(in_float32, compiled=True), compiled,
                            FLOAT32_COMPUTE_TOLERANCE)


def check_optimizer_fit(hyperparameters=CLIPPING, dtype="float32", compute_dtype=None,
                        **compile_kwargs) -> int:
    """RLNOptimizer in a real fit: each step equals the reference handed the inner
    optimizer's change (recorded in-graph), and starts from the previous step's result.

    With compute_dtype="float32" each step is within FLOAT32_COMPUTE_TOLERANCE, and
    (where the default computes in float64) some lambda differs from what the
    default's math makes of the same inputs."""
    import keras

    import rln_core
    from rln_core.testing import FLOAT32_COMPUTE_TOLERANCE, assert_update_matches, input_scale

    class Record(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.records = []

        def on_train_batch_end(self, batch, logs=None):
            sync(self.model)
            optimizer = self.model.optimizer
            self.records.append((to_numpy(self.model.layers[0].kernel), optimizer.state(0),
                                 to_numpy(optimizer.inner_optimizer.pre[0]),
                                 to_numpy(optimizer.inner_optimizer.post[0]),
                                 optimizer.skipped(0)))

    model = tiny_model(rln_optimizer(recording_sgd(), compute_dtype=compute_dtype,
                                     **hyperparameters), dtype=dtype, **compile_kwargs)
    optimizer = model.optimizer
    kernel = model.layers[0].kernel
    initial = to_numpy(kernel)
    record = Record()
    for epoch in range(EPOCHS):
        fit(model, epoch + 1, [record], initial_epoch=epoch)
    assert optimizer.regularized_variables == (kernel,)

    float32_math = compute_dtype is not None or not float64_in_graph()
    state_dtype = np.float32 if float32_math else np.float64
    previous = rln_core.RLNState(
        lambdas=np.full(initial.shape, hyperparameters["avg_reg"], state_dtype),
        prev_weights=initial, prev_reg=np.zeros(initial.shape, state_dtype), steps=0)
    written, deviations, differ_from_default = initial, [], 0
    assert len(record.records) == N_UPDATES
    for t, (done_w, done, pre, post, skipped) in enumerate(record.records):
        name = f"{keras.backend.backend()} RLNOptimizer step {t}"
        assert skipped == 0 and done.steps == t + 1, name
        np.testing.assert_array_equal(pre, written, err_msg=f"{name}: did not start from the "
                                      "previous step's result")
        delta = post.astype(np.float64) - pre.astype(np.float64)
        expected_w, expected = rln_core.reference.update(post, previous, delta=delta,
                                                         **hyperparameters)
        if compute_dtype is not None:
            assert_update_matches(name, expected_w, expected, done_w, done,
                                  lambda_rtol=FLOAT32_COMPUTE_TOLERANCE.lambda_rtol,
                                  scale=input_scale(post, previous, {
                                      "delta": delta, **hyperparameters}))
            if float64_in_graph():
                _, default = update_in_graph(post, previous, delta=delta, **hyperparameters)
                differ_from_default += np.count_nonzero(default.lambdas != done.lambdas)
        elif float32_math:
            assert done.lambdas.dtype == np.float32, name
            assert_float32_update_matches(name, post, expected_w, expected, done_w, done)
        else:
            assert_update_matches(name, expected_w, expected, done_w, done)
        lam = expected.lambdas.astype(np.float64)
        deviations.append((np.max(np.abs(done.lambdas - lam) / (1 + np.abs(lam))),
                           np.max(np.abs(done_w.astype(np.float64) - expected_w)
                                  / np.maximum(np.abs(post), 1e-30))))
        previous, written = done, done_w
    assert np.std(optimizer.lambdas()) > 1e-3
    if hyperparameters is CLIPPING:
        assert np.count_nonzero(written == 0) > 0, "no weight was clipped"
    if compute_dtype is not None and float64_in_graph():
        assert differ_from_default > 0, "float32 compute gave the float64 default's lambdas"
    lam, w = np.max(deviations, axis=0)
    return (f"{len(record.records)} steps; max |dlambda|/(1+|lambda|) {lam:.2g}, "
            f"max |dW|/|W| {w:.2g}")


class OptimizerOverARun:
    """RLNOptimizer as `check_trajectory` drives it: made and built at a run's first
    call over a variable holding the kit's initial weights (its build starts the state
    the kit's init does); per update one `apply` whose inner optimizer moves the
    variable to the kit's moved weights (the "gradient" is the new value), then RLN in
    the same apply, learning from the change it saw: the optimizer keeps its own state
    (lambdas, prev_reg, steps) over the run."""

    def __init__(self):
        self.weights = None

    def __call__(self, weights, state, *, avg_reg, learning_rate, norm):
        import keras

        from rln_keras import RLNOptimizer

        class MovesTo(keras.optimizers.Optimizer):
            def update_step(self, gradient, variable, learning_rate):
                self.assign(variable, gradient)

        if self.weights is not weights:  # a new run
            self.weights = weights
            self.variable = keras.Variable(state.prev_weights, dtype=str(weights.dtype),
                                           name="kernel")
            self.optimizer = RLNOptimizer(MovesTo(learning_rate=1.0), self.variable,
                                          avg_reg=avg_reg, learning_rate=learning_rate,
                                          norm=norm)
            self.optimizer.build([self.variable])
        self.optimizer.apply([keras.ops.convert_to_tensor(weights)], [self.variable])
        assert self.optimizer.skipped() == 0
        return to_numpy(self.variable), self.optimizer.state()


def check_optimizer_over_a_run() -> int:
    """The kit's runs of updates (`check_trajectory`) through one RLNOptimizer each:
    its state, kept in optimizer variables between applies, stays with the reference's
    (float64 modes: the kit's float64 tolerances)."""
    from rln_core.testing import TRAJECTORY_CASES, check_trajectory

    n = check_trajectory(OptimizerOverARun())
    assert n == len(TRAJECTORY_CASES)
    return n


def check_optimizer_steps_per_execution() -> None:
    """With steps_per_execution=3 (3 optimizer steps per compiled call) RLN still
    updates after every optimizer step: the same run as steps_per_execution=1."""
    import keras

    if keras.backend.backend() == "torch":
        return "not on torch: Keras' torch trainer refuses steps_per_execution > 1"
    runs = []
    for steps in (1, 3):
        model = tiny_model(rln_optimizer(keras.optimizers.SGD(0.05), **HYPERPARAMETERS),
                           steps_per_execution=steps)
        optimizer = model.optimizer
        fit(model)
        state = optimizer.state(0)
        assert state.steps == N_UPDATES, (steps, state.steps)
        runs.append((to_numpy(model.layers[0].kernel), state.lambdas))
    np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(runs[1][1], runs[0][1], rtol=1e-6)


def check_optimizer_over_two_kernel_shapes_reads_quietly() -> None:
    """One RLNOptimizer over both layers (kernels 6 x 4 and 4 x 1: its compiled update
    traced per shape), and its state read back without NumPy's DeprecationWarning about
    `__array__` (reading a torch tensor through keras.ops.convert_to_numpy gave one)."""
    import warnings

    import keras

    from rln_keras import RLNOptimizer

    model = tiny_model(lambda model: RLNOptimizer(keras.optimizers.SGD(0.05), model.layers,
                                                  **HYPERPARAMETERS))
    fit(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        states = [model.optimizer.state(which) for which in (0, 1)]
        lambdas = model.optimizer.lambdas(1)
        assert model.optimizer.skipped(0) == model.optimizer.skipped(1) == 0
    assert [state.steps for state in states] == [N_UPDATES, N_UPDATES]
    assert [state.lambdas.shape for state in states] == [(N_IN, 4), (4, 1)]
    np.testing.assert_array_equal(lambdas, states[1].lambdas)


def check_optimizer_skips_non_finite() -> None:
    """A step whose weights are not finite is skipped for RLN (the inner result is
    kept, the state does not move) and counted; the next finite step goes on."""
    import keras

    model = tiny_model(rln_optimizer(keras.optimizers.SGD(0.05), **HYPERPARAMETERS))
    optimizer = model.optimizer
    fit(model, epochs=1)
    sync(model)
    variables = model.trainable_variables
    before = optimizer.state(0)
    grads = [keras.ops.zeros(v.shape, v.dtype) for v in variables]
    nan_grad = np.zeros(variables[0].shape, "float32")
    nan_grad[1, 2] = np.nan
    grads[0] = keras.ops.convert_to_tensor(nan_grad)
    optimizer.apply(grads, variables)
    after = optimizer.state(0)
    assert optimizer.skipped(0) == 1 and after.steps == before.steps
    np.testing.assert_array_equal(after.lambdas, before.lambdas)
    np.testing.assert_array_equal(after.prev_reg, before.prev_reg)
    kernel = to_numpy(variables[0])
    assert np.isnan(kernel[1, 2]) and np.count_nonzero(np.isnan(kernel)) == 1
    clean = before.prev_weights.copy()
    variables[0].assign(clean)
    grads[0] = keras.ops.zeros(variables[0].shape, "float32")
    optimizer.apply(grads, variables)
    assert optimizer.skipped(0) == 1 and optimizer.state(0).steps == before.steps + 1
    # the same through fit (on JAX: the optimizer's stateless_apply): a NaN input in the
    # second batch makes the kernel NaN from there on; each such step is skipped, counted
    model = tiny_model(rln_optimizer(keras.optimizers.SGD(0.05), **HYPERPARAMETERS))
    x, y = data()
    x[BATCH + 1, 0] = np.nan
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    sync(model)
    assert model.optimizer.state(0).steps == 1
    assert model.optimizer.skipped(0) == N_ROWS // BATCH - 1
    # lambdas that would not be finite in the float32 state (a lambda step of ~1e290,
    # finite in float64 arithmetic): every step after the first is skipped and counted
    model = tiny_model(rln_optimizer(keras.optimizers.SGD(0.05), avg_reg=-6.0,
                                     learning_rate=1e300, state_dtype="float32"))
    fit(model, epochs=1)
    sync(model)
    assert model.optimizer.state(0).steps == 1
    assert model.optimizer.skipped(0) == N_ROWS // BATCH - 1
    assert np.isfinite(model.optimizer.lambdas(0)).all()


def check_optimizer_serialization(compute_dtype=None) -> None:
    """get_config/from_config (inner optimizer serialized like LossScaleOptimizer's),
    and model.save/load_model: the loaded optimizer holds the same RLN state (and
    compute_dtype) and the loaded run continues exactly as the original does."""
    import json

    import keras

    from rln_keras import RLNOptimizer

    model = tiny_model(rln_optimizer(keras.optimizers.Adam(0.01), norm=2, avg_reg=-7.0,
                                     learning_rate=1e5, compute_dtype=compute_dtype))
    optimizer = model.optimizer
    config = json.loads(json.dumps(keras.optimizers.serialize(optimizer)))
    assert config["config"]["layers_or_variables"] == [model.layers[0].kernel.path]
    copy = keras.optimizers.deserialize(config)
    assert type(copy) is RLNOptimizer and copy.get_config() == optimizer.get_config()
    assert copy.hyperparameters == optimizer.hyperparameters
    assert isinstance(copy.inner_optimizer, keras.optimizers.Adam)
    assert float(to_numpy(copy.learning_rate)) == float(to_numpy(optimizer.learning_rate))

    fit(model, epochs=1)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.keras")
        model.save(path)
        loaded = keras.models.load_model(path)
    assert type(loaded.optimizer) is RLNOptimizer
    assert loaded.optimizer.compute_dtype == optimizer.compute_dtype == compute_dtype
    saved_state, loaded_state = optimizer.state(0), loaded.optimizer.state(0)
    if compute_dtype is not None:
        assert loaded_state.lambdas.dtype == np.float32
    assert loaded_state.steps == saved_state.steps == N_ROWS // BATCH
    for field in ("lambdas", "prev_reg", "prev_weights"):
        np.testing.assert_array_equal(getattr(loaded_state, field), getattr(saved_state, field))
    fit(model, epochs=2, initial_epoch=1)
    fit(loaded, epochs=2, initial_epoch=1)
    np.testing.assert_allclose(to_numpy(loaded.layers[0].kernel),
                               to_numpy(model.layers[0].kernel), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(loaded.optimizer.lambdas(), optimizer.lambdas(), rtol=1e-6)
    assert np.ptp(optimizer.lambdas()) > 1e-3


def check_callback_and_optimizer_agree() -> None:
    """The same run (float64 model, plain SGD) through RLNCallback and through
    RLNOptimizer: both learn from the same weight change with the same float64
    math, so they agree to rounding."""
    import keras

    from rln_keras import RLNCallback

    floatx = keras.config.floatx()
    keras.config.set_floatx("float64")
    try:
        by_callback = tiny_model(keras.optimizers.SGD(0.0625), dtype="float64")
        callback = RLNCallback(by_callback.layers[0], **CLIPPING)
        fit(by_callback, callbacks=[callback])
        in_graph = tiny_model(rln_optimizer(keras.optimizers.SGD(0.0625), **CLIPPING),
                              dtype="float64")
        optimizer = in_graph.optimizer
        fit(in_graph)
    finally:
        keras.config.set_floatx(floatx)
    np.testing.assert_allclose(to_numpy(in_graph.layers[0].kernel),
                               to_numpy(by_callback.layers[0].kernel), rtol=0, atol=1e-10)
    np.testing.assert_allclose(optimizer.lambdas(), callback.lambdas(), rtol=0, atol=1e-7)
    assert np.ptp(callback.lambdas()) > 0.1


def check_optimizer_wrapping_a_loss_scale_optimizer() -> None:
    """RLNOptimizer(LossScaleOptimizer(SGD)) trains and equals RLNOptimizer(SGD): the
    loss scale is a power of 2, so the gradients are the same (on JAX the inner
    optimizer's own stateless_apply runs its cond; through `apply` in one StatelessScope
    the fit failed with an UnexpectedTracerError); a step the loss scaling skips is no
    RLN step either."""
    import keras

    runs = []
    for inner in (keras.optimizers.SGD(0.05),
                  keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.05))):
        model = tiny_model(rln_optimizer(inner, **CLIPPING))
        fit(model)
        runs.append((model, model.optimizer))
    (plain, plain_rln), (scaled, scaled_rln) = runs
    assert scaled_rln.state().steps == plain_rln.state().steps == N_UPDATES
    np.testing.assert_array_equal(to_numpy(scaled.layers[0].kernel),
                                  to_numpy(plain.layers[0].kernel))
    np.testing.assert_array_equal(scaled_rln.lambdas(), plain_rln.lambdas())
    assert np.ptp(plain_rln.lambdas()) > 0.1
    # a batch whose gradients are NaN: the LossScaleOptimizer skips its step, and RLN too
    # (it shrank the weights once more on that step, its steps ahead of the optimizer's)
    model = tiny_model(rln_optimizer(
        keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.05)), **CLIPPING))
    x, y = data()
    x[BATCH + 1, 0] = np.nan  # in the second batch of each epoch
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0)
    sync(model)
    optimizer = model.optimizer
    assert int(to_numpy(optimizer.iterations)) == N_UPDATES - EPOCHS
    assert optimizer.state().steps == N_UPDATES - EPOCHS and optimizer.skipped() == 0


def check_callback_skips_the_steps_the_loss_scaling_skipped() -> None:
    """Behind a LossScaleOptimizer, a batch whose gradients are not finite gets no
    optimizer step and no RLN update from the callback either (it shrank the kernel on
    such batches, its steps ahead of the optimizer's)."""
    import keras

    from rln_keras import RLNCallback

    model = tiny_model(keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.05)))
    callback = RLNCallback(model.layers[0], **CLIPPING)
    x, y = data()
    x[BATCH + 1, 0] = np.nan  # in the second batch of each epoch
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
              callbacks=[callback])
    sync(model)
    assert int(to_numpy(model.optimizer.iterations)) == N_UPDATES - EPOCHS
    assert int(callback.get_state()["layer0/steps"]) == N_UPDATES - EPOCHS


def check_a_frozen_kernel_is_left_alone() -> None:
    """A kernel frozen after training with RLN (`trainable = False`, recompiled: the
    optimizer no longer steps it) is neither stepped nor shrunk by the same RLNOptimizer
    (it shrank it every batch), and an RLNCallback refuses it at train begin, before
    anything changes."""
    import keras

    from rln_keras import RLNCallback

    model = tiny_model(rln_optimizer(keras.optimizers.SGD(0.05), **CLIPPING))
    fit(model, epochs=1)
    optimizer = model.optimizer
    model.layers[0].trainable = False
    before, steps = to_numpy(model.layers[0].kernel), optimizer.state().steps
    if keras.backend.backend() != "jax":  # JAX's trainer fails on this, with plain SGD too
        model.compile(optimizer=optimizer, loss="mse")
        fit(model, epochs=1)
        sync(model)
        np.testing.assert_array_equal(to_numpy(model.layers[0].kernel), before)
        assert optimizer.state().steps == steps
    if keras.backend.backend() == "tensorflow":
        # the variables given as TensorFlow's own (the inner optimizer matches them by its
        # variable key): RLN steps with the optimizer (it matched by identity and skipped)
        model = tiny_model(rln_optimizer(keras.optimizers.SGD(0.05), **CLIPPING))
        optimizer = model.optimizer
        optimizer.build(model.trainable_variables)
        grads = [keras.ops.ones(v.shape, v.dtype) for v in model.trainable_variables]
        optimizer.apply_gradients(zip(grads, [v.value for v in model.trainable_variables]))
        assert int(to_numpy(optimizer.iterations)) == 1 and optimizer.state().steps == 1
    plain = tiny_model(keras.optimizers.SGD(0.05))
    plain.layers[0].trainable = False
    plain.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    callback = RLNCallback(plain.layers[0], **CLIPPING)
    weights = [to_numpy(v) for v in plain.weights]
    try:
        fit(plain, callbacks=[callback])
    except ValueError as error:
        assert "is frozen (trainable=False)" in str(error), error
    else:
        raise AssertionError("a frozen kernel was accepted")
    sync(plain)
    for variable, value in zip(plain.weights, weights):
        np.testing.assert_array_equal(to_numpy(variable), value)


def check_callback_resumes_a_float64_layer_without_float64() -> None:
    """Without float64 (JAX without x64) a float64 layer's kernel holds float32 values:
    the callback's state is made for what it reads, and a second fit and
    set_state(get_state()) continue it (they were refused: "made for dtype float32, the
    kernel has dtype float64")."""
    import keras

    from rln_keras import RLNCallback

    model = tiny_model(keras.optimizers.SGD(0.05), dtype="float64")
    callback = RLNCallback(model.layers[0], **HYPERPARAMETERS)
    fit(model, epochs=1, callbacks=[callback])
    callback.set_state(callback.get_state())
    fit(model, epochs=1, callbacks=[callback])
    assert int(callback.get_state()["layer0/steps"]) == N_UPDATES


def check_no_float64_state() -> None:
    """Without float64 (JAX without x64) an explicit float64 state is refused at build."""
    import keras

    from rln_keras import RLNOptimizer

    model = tiny_model(keras.optimizers.SGD())
    optimizer = RLNOptimizer(keras.optimizers.SGD(), model.layers[0], state_dtype="float64")
    try:
        optimizer.build(model.trainable_variables)
    except ValueError as error:
        assert "JAX_ENABLE_X64" in str(error), error
    else:
        raise AssertionError("state_dtype='float64' was accepted without float64")


def check_registering_twice_is_refused() -> None:
    """The same RLNCallback twice, two over one layer, and one over the RLNOptimizer's
    variable are refused before any weight changes; a second fit continues the run."""
    import keras

    from rln_keras import RLNCallback

    def refused(model, callbacks, match):
        before = [to_numpy(v) for v in model.weights]
        try:
            fit(model, epochs=1, callbacks=callbacks)
        except ValueError as error:
            assert match in str(error), error
        else:
            raise AssertionError(f"not refused: {match}")
        sync(model)
        for variable, value in zip(model.weights, before):
            np.testing.assert_array_equal(to_numpy(variable), value)

    model = tiny_model(keras.optimizers.SGD(0.05))
    callback = RLNCallback(model.layers[0], **HYPERPARAMETERS)
    refused(model, [callback, callback], "in this fit's callbacks twice")
    refused(model, [callback, RLNCallback(model.layers[0], **HYPERPARAMETERS)],
            "regularized by another RLNCallback")
    fit(model, epochs=1, callbacks=[callback])
    fit(model, epochs=2, initial_epoch=1, callbacks=[callback])
    assert int(callback.get_state()["layer0/steps"]) == N_UPDATES
    in_graph = tiny_model(rln_optimizer(keras.optimizers.SGD(0.05), **HYPERPARAMETERS))
    refused(in_graph, [RLNCallback(in_graph.layers[0], **HYPERPARAMETERS)],
            "regularized by the RLNOptimizer")


# --------------------------------------------------------------------------- the runner


def run_checks(mode: str) -> None:
    """Run every check of this backend; print one line per check, raise if any failed."""
    import keras

    expected = "jax" if mode.startswith("jax") else mode
    assert keras.backend.backend() == expected, (keras.backend.backend(), mode)
    float64 = float64_in_graph()
    assert float64 == (mode != "jax"), (mode, float64)
    checks = [
        ("callback fit", check_callback_fit),
        ("callback fit, float32 compute", lambda: check_callback_fit(compute_dtype=np.float32)),
        ("optimizer fit", check_optimizer_fit),
        ("optimizer fit, float32 compute", lambda: check_optimizer_fit(compute_dtype="float32")),
        ("graph_step float32 conformance", check_graph_step_float32_conformance),
        ("optimizer steps_per_execution", check_optimizer_steps_per_execution),
        ("optimizer skips non-finite", check_optimizer_skips_non_finite),
        ("optimizer over two kernel shapes, read quietly",
         check_optimizer_over_two_kernel_shapes_reads_quietly),
        ("optimizer wrapping a LossScaleOptimizer",
         check_optimizer_wrapping_a_loss_scale_optimizer),
        ("callback skips the steps the loss scaling skipped",
         check_callback_skips_the_steps_the_loss_scaling_skipped),
        ("a frozen kernel is left alone", check_a_frozen_kernel_is_left_alone),
        ("optimizer serialization", check_optimizer_serialization),
        ("optimizer serialization, float32 compute",
         lambda: check_optimizer_serialization("float32")),
        ("registering twice refused", check_registering_twice_is_refused),
    ]
    if expected == "tensorflow":  # Keras compiles with XLA only off CPU by default
        checks.append(("optimizer fit, XLA",
                       lambda: check_optimizer_fit(HYPERPARAMETERS, jit_compile=True)))
    if not float64:
        checks += [("float64 state refused without float64", check_no_float64_state),
                   ("callback resumes a float64 layer without float64",
                    check_callback_resumes_a_float64_layer_without_float64)]
    if float64:
        checks += [("graph_step conformance", check_graph_step_conformance),
                   ("optimizer over a run", check_optimizer_over_a_run),
                   ("callback and optimizer agree", check_callback_and_optimizer_agree)]
    failed = []
    for name, check in checks:
        start = time.perf_counter()
        try:
            result = check()
        except Exception:  # report every failing check, not just the first
            failed.append(name)
            print(f"CHECK {name}: FAILED\n{traceback.format_exc()}", flush=True)
        else:
            print(f"CHECK {name}: ok{'' if result is None else f' ({result})'} "
                  f"[{time.perf_counter() - start:.1f} s]", flush=True)
    if failed:
        raise AssertionError(f"{mode}: failed checks {failed}")
    print(f"ALL {len(checks)} CHECKS PASSED", flush=True)


def run_in_subprocess(mode: str, timeout: int = 400) -> str:
    env = {**os.environ, "KERAS_BACKEND": "jax" if mode.startswith("jax") else mode,
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "adapters"),
                                          str(ROOT / "tests")]),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("JAX_ENABLE_X64", None)
    if mode == "jax-x64":
        env["JAX_ENABLE_X64"] = "1"
    code = f"import test_keras_backends as t; t.run_checks({mode!r})"
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=timeout, cwd=str(ROOT))
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-4000:]
    return run.stdout


@pytest.mark.parametrize("mode", MODES)
def test_every_check_passes_on_backend(mode):
    pytest.importorskip("keras")  # and the backend (CI installs each: a skip fails there)
    pytest.importorskip(mode.split("-")[0])
    out = run_in_subprocess(mode)
    assert "CHECKS PASSED" in out and "FAILED" not in out, out


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
    checked = check_callback_fit("tensorflow" if plain_tf_variable else "copy")
    assert checked == N_UPDATES
