"""`RLNOptimizer`: the RLN update inside the compiled train step, around the user's optimizer."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Union

import keras
import numpy as np
from keras import ops

import rln_core
from rln_core import DEFAULTS, Hyperparameters, array_api
from rln_core.checks import FLOAT_DTYPES
from rln_core.state import check_avg_reg_fits, check_state_dtype, check_values
from rln_keras._kernel import (check_compute_dtype, check_float32_compute, check_layer,
                               kernel_variable, read_variable)
from rln_keras._ops import KERAS_OPS, float64_available

Target = Union[keras.layers.Layer, keras.Variable, str]


class GraphStep(NamedTuple):
    """One in-graph RLN update of one variable (backend tensors).

    Attributes:
        weights: what the variable becomes: regularized, or the optimizer's
            result unchanged where the update was skipped.
        lambdas, prev_reg, steps: the new state (unchanged where skipped).
        skipped: 0-d int, 1 when the update was skipped (non-finite weights or
            lambdas), else 0.
    """

    weights: Any
    lambdas: Any
    prev_reg: Any
    steps: Any
    skipped: Any


def graph_step(weights: Any, delta: Any, lambdas: Any, prev_reg: Any, steps: Any,
               hyperparameters: Hyperparameters, compute_dtype: str = "float64",
               inner_stepped: Any = True) -> GraphStep:
    """One RLN update of one tensor in `keras.ops`: traceable, never raises.

    The math is `rln_core.array_api.step` on the `keras.ops` namespace, with
    the weight change `delta` given (docs/RLN_SPEC.md, "The weight change,
    given or inferred"). Where the result is not finite the update is skipped:
    the weights stay as given and the state does not move (`steps` included),
    and `skipped` is 1. Where `inner_stepped` is false (a 0-d bool: the optimizer
    skipped its step, as a LossScaleOptimizer does on non-finite gradients) nothing
    moves and nothing is counted.

    Args:
        weights: W after the optimizer step (float32/float64 tensor).
        delta: the optimizer's change of W on this step (W's shape).
        lambdas, prev_reg: the state (W's shape, the state dtype).
        steps: 0-d integer tensor: updates applied so far (0: no lambda step).
        hyperparameters: Theta, nu and the norm.
        compute_dtype: "float64", or "float32" (asked for, or where the backend has
            no float64): float32 arithmetic with the float32 clip margin
            (`rln_core.checks.CLIP_MARGIN_F32`); the mean of the lambdas is then
            summed in float64 where the backend has it, as the spec's float32
            mode says (XLA on TensorFlow sums float32 in one long chain: the mean
            of the tutorial's 1013 x 179 lambdas came out 3.5e-6 off, more than
            F32_LAMBDA_RTOL). Not checked (nothing raises in a traced step):
            `RLNOptimizer` passes one of the two.
        inner_stepped: 0-d bool tensor (or True): whether the optimizer stepped.

    Returns:
        A `GraphStep` of backend tensors.
    """
    wide = compute_dtype == "float32" and float64_available(weights)
    result = array_api.step(weights, lambdas, None, prev_reg, steps, hyperparameters,
                            delta=delta, xp=KERAS_OPS, compute_dtype=compute_dtype,
                            mean_dtype="float64" if wide else None)
    ok = ops.logical_and(result.ok, inner_stepped)
    steps_dtype = keras.backend.standardize_dtype(steps.dtype)
    return GraphStep(weights=ops.where(ok, result.weights, weights),
                     lambdas=ops.where(ok, result.lambdas, lambdas),
                     prev_reg=ops.where(ok, result.reg, prev_reg),
                     steps=ops.add(steps, ops.cast(ok, steps_dtype)),
                     skipped=ops.cast(ops.logical_and(ops.logical_not(result.ok),
                                                      inner_stepped), steps_dtype))


def _step_from(weights: Any, old: Any, lambdas: Any, prev_reg: Any, steps: Any,
               hyperparameters: Hyperparameters, compute_dtype: str,
               inner_stepped: Any) -> GraphStep:
    """`graph_step` learning from the change `weights - old` (in `compute_dtype`)."""
    delta = ops.subtract(ops.cast(weights, compute_dtype), ops.cast(old, compute_dtype))
    return graph_step(weights, delta, lambdas, prev_reg, steps, hyperparameters,
                      compute_dtype, inner_stepped)


_COMPILED_STEP: Dict[str, Callable[..., GraphStep]] = {}  # `_compiled_step`'s, per backend


def _compiled_step() -> Callable[..., GraphStep]:
    """`_step_from` as the backend runs it fastest inside a train step.

    On TensorFlow, compiled by XLA (`tf.function(jit_compile=True)`, nested in the
    train step's graph): the elementwise ops over the tensor become a few fused
    loops. Keras compiles train steps with XLA only off CPU, and op by op each
    op reads and writes the whole tensor: on the tutorial's 1013 x 179 kernel
    (float64 math, one thread, CPU time) the update took 5.1 ms that way and
    3.1 ms under XLA. Elsewhere as it is: JAX jits the whole train step already,
    torch runs it op by op.

    Made once per backend and kept in a plain dict, which TorchDynamo traces through
    (it warns on calls to an `lru_cache`d function under `jit_compile=True` on torch).
    TensorFlow traces it once per shape and dtype of the regularized variable and per
    set of hyperparameters (not with `reduce_retracing`: a trace with relaxed shapes,
    shared by every optimizer of the process, left the mean's element count unknown,
    and the second shape failed).
    """
    backend = keras.backend.backend()
    step = _COMPILED_STEP.get(backend)
    if step is None:
        step = _step_from
        if backend == "tensorflow":
            import tensorflow as tf

            step = tf.function(_step_from, jit_compile=True)
        _COMPILED_STEP[backend] = step
    return step


class _Slot(NamedTuple):
    """One regularized variable and the RLNOptimizer variables holding its state."""

    variable: keras.Variable
    lambdas: keras.Variable
    prev_reg: keras.Variable
    steps: keras.Variable
    skipped: keras.Variable


def _read(variable: keras.Variable) -> Any:
    """The variable's current value as a tensor (inside JAX's stateless scope: the traced one)."""
    return ops.convert_to_tensor(variable.value)


def _no_grad():
    """torch.no_grad() on the torch backend (the RLN arithmetic is not part of any graph)."""
    if keras.backend.backend() == "torch":
        import torch

        return torch.no_grad()
    return contextlib.nullcontext()


@keras.saving.register_keras_serializable(package="rln_keras")
class RLNOptimizer(keras.optimizers.Optimizer):
    """Regularization Learning Networks inside the compiled train step: a wrapping optimizer.

        optimizer = RLNOptimizer(keras.optimizers.Adam(1e-3), model.layers[0],
                                 avg_reg=-10, learning_rate=1e6, norm=1)
        model.compile(optimizer=optimizer, loss="mse")
        model.fit(x, y, batch_size=10, epochs=100)

    Like `keras.optimizers.LossScaleOptimizer`, it wraps the user's optimizer:
    each step applies the inner optimizer, then one RLN update of every
    regularized variable, all in the backend's train step (a `tf.function`,
    `jax.jit`, or torch ops on the device): no host round trip per batch. The
    update is `rln_core.array_api.step` over `keras.ops`, handed the inner
    optimizer's weight change as `delta`. It works with `steps_per_execution > 1`
    (RLN still updates after every optimizer step).

    State (optimizer variables, saved with the model): per regularized
    variable its lambdas and prev_reg (the state dtype), its update count
    `steps` and its count of skipped updates: a step whose weights or lambdas
    are not finite is skipped for that variable (the inner optimizer's result
    is kept, the state does not move) instead of raising, as nothing can
    raise inside a compiled step.

    Arithmetic: by default float64 where the backend has it (TensorFlow, torch
    except on MPS, JAX with `jax_enable_x64`), meeting the spec's per-update
    tolerances. `compute_dtype="float32"` (float32 variables and state only)
    asks for the spec's float32 mode on any backend: faster, and per update,
    from the same inputs, within `rln_core.testing.FLOAT32_COMPUTE_TOLERANCE`
    (lambdas within `rln_core.checks.F32_LAMBDA_RTOL` = 3e-6 of max(1, |lambda|,
    |lambda in|, |lambda step|); every weight the float64 update sets to exactly
    0 is exactly 0; tests/test_keras_backends.py). On JAX without x64 the math
    and the state are float32 whatever is asked. Over a run the float32
    rounding is multiplied by nu like any other difference (docs/RLN_SPEC.md).

    `learning_rate` and `iterations` are the inner optimizer's (so learning
    rate schedules and callbacks work unchanged); RLN's own nu is
    `hyperparameters.learning_rate`. The defaults are the project's
    (`rln_core.DEFAULTS`: the tutorial's best, Theta -10, nu 1e6, L1), not the
    original callback's, which `RLNCallback` keeps.

    Args:
        inner_optimizer: the `keras.optimizers.Optimizer` doing the gradient step
            (not accumulating gradients, nor wrapping one that does: RLN needs the
            weights to move every batch).
        layers_or_variables: what to regularize: a layer (its `kernel`), a
            variable, a variable path ("dense/kernel"), or a list of them.
            Layers may be unbuilt; everything is resolved when the optimizer
            is built, and must be among the variables it is built for.
        avg_reg: Theta, the mean of the lambdas (natural log).
        learning_rate: nu, the step size of the lambdas (>= 0).
        norm: 1 (L1) or 2 (L2).
        state_dtype: "float64", "float32" (or np.float64, np.float32), or None: the
            dtype of the arithmetic (float64 where the backend computes in float64, else
            float32). Kept as its name ("float32"), which `get_config` records.
        compute_dtype: None (default: float64 where the backend has it) or
            "float32" (np.float32): float32 arithmetic; float32 variables and a
            float32 state only.
        name: the optimizer's name.

    Raises:
        ValueError, TypeError: a bad hyperparameter, inner optimizer or target,
            or compute_dtype="float32" with state_dtype="float64"; at build, a
            target that is not among the trained variables, or a float64 one
            under compute_dtype="float32", or state_dtype="float64" where the
            backend computes in float32 (JAX without x64, torch on MPS).
        RuntimeError: `state`, `lambdas` or `skipped` before build; IndexError: an
            index beyond the regularized variables.
    """

    def __init__(self, inner_optimizer: keras.optimizers.Optimizer,
                 layers_or_variables: Union[Target, Sequence[Target]],
                 avg_reg: float = DEFAULTS.avg_reg,
                 learning_rate: float = DEFAULTS.learning_rate, norm: int = DEFAULTS.norm, *,
                 state_dtype: "Optional[np.typing.DTypeLike]" = None,
                 compute_dtype: "Optional[np.typing.DTypeLike]" = None,
                 name: Optional[str] = None):
        hyperparameters = Hyperparameters(avg_reg=avg_reg, learning_rate=learning_rate,
                                          norm=norm)
        if not isinstance(inner_optimizer, keras.optimizers.Optimizer):
            raise TypeError(f"RLNOptimizer wraps a keras.optimizers.Optimizer, got "
                            f"{type(inner_optimizer).__name__}")
        accumulation = accumulated_batches(inner_optimizer)
        if accumulation is not None:
            raise ValueError(
                f"RLNOptimizer: the inner optimizer accumulates gradients over {accumulation} "
                "batches; RLN needs the weights to move on every batch")
        if state_dtype is not None:  # a name, as get_config stores it
            state_dtype = check_state_dtype(state_dtype).name
        compute_dtype = check_compute_dtype(compute_dtype)
        if compute_dtype is not None and state_dtype is not None:
            check_float32_compute("RLNOptimizer", state={"the state": state_dtype})
        targets = list(layers_or_variables) if isinstance(layers_or_variables, (list, tuple)) \
            else [layers_or_variables]
        if not targets:
            raise ValueError("RLNOptimizer needs at least one layer or variable, got an empty "
                             "list")
        for target in targets:
            if isinstance(target, keras.layers.Layer):
                check_layer(target)
            elif not isinstance(target, (keras.Variable, str)):
                raise TypeError(f"RLNOptimizer regularizes layers, variables or variable "
                                f"paths, got {type(target).__name__}")
        super().__init__(learning_rate=0.0, name=name)
        self.inner_optimizer = inner_optimizer
        self.hyperparameters = hyperparameters
        self.state_dtype = state_dtype
        self.compute_dtype = compute_dtype
        # Not tracked by Keras or TensorFlow: the variables in the slots are
        # tracked once, by `add_variable`.
        object.__setattr__(self, "_targets", tuple(targets))
        object.__setattr__(self, "_slots", ())
        object.__setattr__(self, "_compute_dtype", None)

    # -- building ----------------------------------------------------------------

    def build(self, var_list: List[keras.Variable]) -> None:
        """Resolve the regularized variables and create their RLN state, then build the
        inner optimizer on `var_list`."""
        var_list = list(var_list)
        regularized = self._resolve(var_list)
        if self.compute_dtype is not None:
            check_float32_compute(f"RLNOptimizer {self.name!r}", weights={
                f"variable {v.path!r}": v.dtype for v in regularized})
        compute = self.compute_dtype or (
            "float64" if all(float64_available(v.value) for v in regularized) else "float32")
        state_dtype = self.state_dtype or compute
        if state_dtype == "float64" and compute != "float64":
            raise ValueError(
                "RLNOptimizer: state_dtype='float64' was asked for but this backend computes "
                "in float32 here (JAX without jax_enable_x64, or torch on MPS); pass "
                "state_dtype=None or 'float32', or enable float64 (JAX_ENABLE_X64=1)")
        for variable in regularized:
            refuse_if_regularized(self.inner_optimizer, variable, f"RLNOptimizer {self.name!r}")
        check_avg_reg_fits(self.hyperparameters.avg_reg, state_dtype)
        slots = []
        for variable in regularized:
            tag = variable.path.replace("/", "_").replace(":", "_")
            lambdas = self.add_variable(
                shape=variable.shape, dtype=state_dtype, name=f"rln_lambdas_{tag}",
                initializer=keras.initializers.Constant(self.hyperparameters.avg_reg))
            prev_reg = self.add_variable(shape=variable.shape, dtype=state_dtype,
                                         initializer="zeros", name=f"rln_prev_reg_{tag}")
            steps = self.add_variable(shape=(), dtype="int", initializer="zeros",
                                      name=f"rln_steps_{tag}")
            skipped = self.add_variable(shape=(), dtype="int", initializer="zeros",
                                        name=f"rln_skipped_{tag}")
            slots.append(_Slot(variable, lambdas, prev_reg, steps, skipped))
        object.__setattr__(self, "_slots", tuple(slots))
        object.__setattr__(self, "_compute_dtype", compute)
        self.inner_optimizer.build(var_list)
        super().build(var_list)

    def _resolve(self, var_list: List[keras.Variable]) -> List[keras.Variable]:
        """The variables to regularize, each one of `var_list`; raise otherwise."""
        out = []
        for target in self._targets:
            if isinstance(target, keras.layers.Layer):
                variable, what = kernel_variable(target), f"the kernel of layer {target.name!r}"
            elif isinstance(target, str):
                variable, what = _by_path(target, var_list), f"variable {target!r}"
            else:
                variable, what = target, f"variable {target.path!r}"
            if not any(variable is v for v in var_list):
                raise ValueError(f"RLNOptimizer: {what} is not among the variables the "
                                 "optimizer is built for (not part of the trained model, or "
                                 "frozen: trainable=False?)")
            if variable.dtype not in FLOAT_DTYPES:
                raise TypeError(f"RLNOptimizer: {what} has dtype {variable.dtype}; RLN "
                                "supports float32 and float64 variables")
            if any(variable is v for v in out):
                raise ValueError(f"RLNOptimizer got {what} twice")
            out.append(variable)
        return out

    def regularizes(self, variable: keras.Variable) -> bool:
        """Whether this optimizer regularizes `variable` (before build: as its targets
        name it, a layer's kernel, the variable itself or its path)."""
        if self.built:
            return any(slot.variable is variable for slot in self._slots)
        for target in self._targets:
            if isinstance(target, keras.layers.Layer):
                if target.built and kernel_variable(target) is variable:
                    return True
            elif isinstance(target, str):
                try:
                    if _by_path(target, [variable]) is variable:
                        return True
                except ValueError:
                    continue
            elif target is variable:
                return True
        return False

    @property
    def variables(self) -> list:
        """Every variable of this optimizer: the two Keras's base optimizer makes for it
        (`iteration`, `learning_rate`: unused, `iterations` and `learning_rate` are the
        inner optimizer's), RLN's (per regularized variable: lambdas, prev_reg, steps,
        skipped), then the inner optimizer's (what a checkpoint saves and JAX's trainer
        threads through `stateless_apply`)."""
        return self._variables[:] + self.inner_optimizer.variables

    # -- the step ----------------------------------------------------------------

    def apply(self, grads, trainable_variables=None):
        """The inner optimizer's step, then one RLN update of each regularized variable
        it steps: one left out of `trainable_variables` (a frozen layer's kernel, after
        `layer.trainable = False`) gets neither. (JAX's trainer calls `stateless_apply`
        with every trainable variable of the build.) If the inner optimizer raises (a
        gradient of another shape), the variables it stepped before that stay stepped,
        as Keras leaves them; no RLN state has moved."""
        if len(grads) == 0:
            return
        if not self.built:
            if trainable_variables is None:
                raise ValueError("RLNOptimizer: call build(trainable_variables) first, or pass "
                                 "the variables to apply()")
            with keras.name_scope(self.name, caller=self):
                self.build(list(trainable_variables))
            self.built = True
        if trainable_variables is None:
            slots = self._slots
        else:  # matched as the inner optimizer matches them (Keras or backend variables)
            trainable_variables = list(trainable_variables)
            stepped_keys = {self._var_key(v) for v in trainable_variables}
            slots = [slot for slot in self._slots
                     if self._var_key(slot.variable) in stepped_keys]
        with _no_grad():
            before = [ops.copy(_read(slot.variable)) for slot in slots]
            iterations = ops.copy(_read(self.inner_optimizer.iterations))
        self.inner_optimizer.apply(grads, trainable_variables)
        with _no_grad():
            stepped = ops.not_equal(_read(self.inner_optimizer.iterations), iterations)
            for slot, old in zip(slots, before):
                self._update(slot, old, stepped)

    def stateless_apply(self, optimizer_variables, grads, trainable_variables):
        """`apply` as JAX's trainer calls it, on values: the inner optimizer's own
        `stateless_apply` (a LossScaleOptimizer's takes its finite-gradients branch
        statelessly; run through `apply` inside one StatelessScope it assigns in a
        traced cond and fails), then the RLN update of the regularized variables."""
        own = len(self._variables)
        if len(optimizer_variables) != len(self.variables):
            raise ValueError(f"RLNOptimizer.stateless_apply: {len(optimizer_variables)} "
                             f"optimizer variables given, {len(self.variables)} expected")
        inner_before = list(optimizer_variables[own:])
        weights, inner = self.inner_optimizer.stateless_apply(inner_before, grads,
                                                              trainable_variables)
        at = [k for k, v in enumerate(self.inner_optimizer.variables)
              if v is self.inner_optimizer.iterations][0]
        stepped = ops.not_equal(inner[at], inner_before[at])
        before = {id(v): value for v, value in zip(self._trainable_variables, trainable_variables)}
        mapping = list(zip(self._trainable_variables, weights)) + list(
            zip(self._variables, optimizer_variables[:own]))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            for slot in self._slots:
                self._update(slot, before[id(slot.variable)], stepped)
        return ([scope.get_current_value(v) for v in self._trainable_variables],
                [scope.get_current_value(v) for v in self._variables] + list(inner))

    def _update(self, slot: _Slot, old: Any, stepped: Any) -> None:
        """One RLN update of the slot where the inner optimizer `stepped` (a 0-d bool: its
        iterations moved; a LossScaleOptimizer skips steps whose scaled gradients are not
        finite, and then RLN does not step either), else nothing."""
        new = _compiled_step()(_read(slot.variable), old, _read(slot.lambdas),
                            _read(slot.prev_reg), _read(slot.steps), self.hyperparameters,
                            self._compute_dtype, stepped)
        slot.variable.assign(new.weights)
        slot.lambdas.assign(new.lambdas)
        slot.prev_reg.assign(new.prev_reg)
        slot.steps.assign(new.steps)
        slot.skipped.assign(ops.add(_read(slot.skipped), new.skipped))

    # -- the inner optimizer's surface -------------------------------------------

    @property
    def learning_rate(self):
        """The inner optimizer's learning rate (RLN's nu is `hyperparameters.learning_rate`)."""
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        self.inner_optimizer.learning_rate = learning_rate

    @property
    def iterations(self):
        """The inner optimizer's step count (a step it skips, as a LossScaleOptimizer does
        on non-finite gradients, is not counted, and RLN does not step either)."""
        return self.inner_optimizer.iterations

    def scale_loss(self, loss):
        """The inner optimizer's loss scaling (a LossScaleOptimizer's; else the loss)."""
        return self.inner_optimizer.scale_loss(loss)

    def finalize_variable_values(self, var_list):
        """The inner optimizer's end-of-training values (e.g. its EMA weights); the RLN
        state is left as it is."""
        self.inner_optimizer.finalize_variable_values(var_list)

    # -- inspection --------------------------------------------------------------

    @property
    def regularized_variables(self) -> tuple:
        """The regularized variables, in the order given (after build)."""
        return tuple(slot.variable for slot in self._built_slots())

    def state(self, which: int = 0) -> rln_core.RLNState:
        """The RLN state of a regularized variable as a NumPy `rln_core.RLNState`.

        Its `prev_weights` is the variable's current value. On JAX, read it
        outside `fit` or after `model.jax_state_sync()`.
        """
        slot = self._slot(which)
        # Built directly, not by `from_dict`: it refuses NaN, and after a skipped
        # step the variable holds what the inner optimizer made of it.
        return rln_core.RLNState(
            lambdas=_to_numpy(slot.lambdas), prev_weights=_to_numpy(slot.variable),
            prev_reg=_to_numpy(slot.prev_reg), steps=int(_to_numpy(slot.steps)))

    def lambdas(self, which: int = 0) -> np.ndarray:
        """A copy of a regularized variable's lambdas (its shape; the state dtype)."""
        return _to_numpy(self._slot(which).lambdas)

    def skipped(self, which: int = 0) -> int:
        """How many updates of a regularized variable were skipped (non-finite)."""
        return int(_to_numpy(self._slot(which).skipped))

    def _built_slots(self) -> tuple:
        if not self.built:
            raise RuntimeError("RLNOptimizer has no state before it is built (by compile and "
                               "the first fit, or build(model.trainable_variables))")
        return self._slots

    def _slot(self, which: int) -> _Slot:
        slots = self._built_slots()
        if isinstance(which, bool) or not isinstance(which, (int, np.integer)) \
                or not -len(slots) <= which < len(slots):
            raise IndexError(f"variable index {which!r} out of range for {len(slots)} "
                             "regularized variable(s)")
        return slots[which]

    # -- serialization -----------------------------------------------------------

    def load_own_variables(self, store) -> None:
        """Keras's load of this optimizer's variables (`keras.models.load_model`,
        `model.load_weights`: RLN's and, as this optimizer lists them, the inner
        optimizer's), each saved value checked before any is assigned: its shape against
        its variable's, and the RLN state's values (NaN or inf lambdas, or prev_reg once
        stepped, cannot continue: `rln_core.state.check_values`). A store with another
        number of values is skipped with Keras's warning, as Keras does.

        Raises:
            ValueError: naming the variable; this store's variables are left as they were.
        """
        variables = self.variables
        if len(store.keys()) != len(variables):
            super().load_own_variables(store)  # Keras's warning; nothing is loaded
            return
        values = [np.asarray(store[str(index)]) for index in range(len(variables))]
        for variable, value in zip(variables, values):
            if value.shape != tuple(variable.shape):
                raise ValueError(f"RLNOptimizer {self.name!r}: the saved value of "
                                 f"{variable.path!r} has shape {value.shape}, the variable "
                                 f"{tuple(variable.shape)}")
        saved = dict(zip(map(id, variables), values))
        for slot in self._slots:
            check_values({"lambdas": saved[id(slot.lambdas)],
                          "prev_reg": saved[id(slot.prev_reg)], "steps": saved[id(slot.steps)]},
                         where=f"RLNOptimizer {self.name!r}: the saved state of "
                               f"{slot.variable.path!r}")
        for variable, value in zip(variables, values):
            variable.assign(value)

    def variable_paths(self) -> List[str]:
        """The paths of the regularized variables (what `get_config` records)."""
        if self.built:
            return [slot.variable.path for slot in self._slots]
        paths = []
        for target in self._targets:
            if isinstance(target, str):
                paths.append(target)
            elif isinstance(target, keras.Variable):
                paths.append(target.path)
            elif target.built:
                paths.append(kernel_variable(target).path)
            else:
                raise ValueError(f"RLNOptimizer: layer {target.name!r} is not built, so its "
                                 "kernel has no path to record yet")
        return paths

    def get_config(self) -> dict:
        """The inner optimizer (serialized as by LossScaleOptimizer), the regularized
        variables' paths and the hyperparameters."""
        return {"name": self.name,
                "inner_optimizer": keras.saving.serialize_keras_object(self.inner_optimizer),
                "layers_or_variables": self.variable_paths(),
                **self.hyperparameters.asdict(),
                "state_dtype": self.state_dtype, "compute_dtype": self.compute_dtype}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """An RLNOptimizer from `get_config`'s dict (the inner optimizer deserialized, with
        `custom_objects`); its RLN state is made when it is built."""
        config = dict(config)
        inner = keras.saving.deserialize_keras_object(config.pop("inner_optimizer"),
                                                      custom_objects=custom_objects)
        return cls(inner, **config)


def accumulated_batches(optimizer: Optional[keras.optimizers.Optimizer]) -> Optional[int]:
    """Over how many batches `optimizer`, or one it wraps (followed through
    `inner_optimizer`: a LossScaleOptimizer, which compile adds under mixed precision, an
    RLNOptimizer), accumulates gradients; None where the weights move on every batch."""
    for wrapped in _chain(optimizer):
        steps = getattr(wrapped, "gradient_accumulation_steps", None)
        if steps not in (None, 1):
            return steps
    return None


def skips_steps(optimizer: Optional[keras.optimizers.Optimizer]) -> bool:
    """Whether `optimizer`, or one it wraps, may leave out a step (a LossScaleOptimizer
    does where the scaled gradients are not finite; its `iterations` then stay)."""
    return any(isinstance(wrapped, keras.optimizers.LossScaleOptimizer)
               for wrapped in _chain(optimizer))


def _chain(optimizer: Optional[keras.optimizers.Optimizer]) -> Iterator[Any]:
    """`optimizer`, then each optimizer it wraps, through `inner_optimizer`."""
    while optimizer is not None:
        yield optimizer
        optimizer = getattr(optimizer, "inner_optimizer", None)


def refuse_if_regularized(optimizer: Optional[keras.optimizers.Optimizer],
                          variable: keras.Variable, what: str) -> None:
    """Raise if an RLNOptimizer, `optimizer` or one it wraps (followed through
    `inner_optimizer`), regularizes `variable`: each step would update it twice.

    Args:
        optimizer: the optimizer to search (None: nothing to search).
        variable: the variable `what` is about to regularize.
        what: who asks, for the message (e.g. "RLNCallback on layer 'dense'").
    """
    for wrapped in _chain(optimizer):
        if isinstance(wrapped, RLNOptimizer) and wrapped.regularizes(variable):
            raise ValueError(
                f"{what}: {variable.path!r} is regularized by the RLNOptimizer "
                f"{wrapped.name!r} already; each step would update it twice. Regularize "
                "each variable once (one RLNOptimizer, or an RLNCallback, not both)")


def _by_path(path: str, var_list: List[keras.Variable]) -> keras.Variable:
    """The one variable of `var_list` at `path`, or else the one whose path ends with
    the most trailing components of `path` (at least "layer/variable").

    A variable's path depends on the name scope it was built in: "sequential/
    dense/kernel" in a model built from an `Input`, "dense/kernel" once
    `load_model` rebuilt it; the layer's name and the variable's stay.
    """
    exact = [v for v in var_list if v.path == path]
    if len(exact) == 1:
        return exact[0]
    parts = path.split("/")
    for n in range(len(parts), 1, -1):
        tail = parts[-n:]
        matches = [v for v in var_list if v.path.split("/")[-n:] == tail]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            break
    raise ValueError(
        f"RLNOptimizer: no single trained variable has the path {path!r} or ends with "
        f"its last components (paths: {[v.path for v in var_list]})")


def _to_numpy(variable: keras.Variable) -> np.ndarray:
    """A copy of the variable's value (`read_variable` may return a view)."""
    return np.array(read_variable(variable), copy=True)
