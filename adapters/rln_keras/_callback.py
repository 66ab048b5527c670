"""`RLNCallback`: Regularization Learning on Keras layers, after every optimizer step."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Dict, Optional, Sequence, Union

import keras
import numpy as np

import rln_core
from rln_core import ORIGINAL_CALLBACK_DEFAULTS, STATE_FIELDS, Hyperparameters
from rln_core.hyperparameters import WithHyperparameters
from rln_core.implementations import check_impl
from rln_core.state import check_state, check_state_dtype, check_values, complete_fields
from rln_keras import _claims
from rln_keras._kernel import (LayerKernel, check_compute_dtype, check_float32_compute,
                               check_layer, check_state_fits, kernel_variable, read_variable,
                               value_dtype)
from rln_keras._optimizer import accumulated_batches, skips_steps

LayerRef = Union[int, keras.layers.Layer]


class RLNCallback(WithHyperparameters, keras.callbacks.Callback):
    """Regularization Learning Networks (Shavitt & Segal, 2018) as a Keras callback.

    A drop-in for the authors' callback: same arguments, same defaults. After
    every optimizer step (`on_train_batch_end`) each layer's kernel gets one RLN
    update (`rln_core.update`, in NumPy on the host): its per-weight log L1/L2
    coefficients (lambdas) move by the counterfactual gradient, then the kernel
    is regularized and written back, and the next optimizer step starts from it.
    Works on the TensorFlow, torch and JAX backends (on JAX the trainer's state
    is synced to the variables before each update: `model.jax_state_sync()`).
    Where that host round trip per batch is the cost (JAX, accelerators), use
    `rln_keras.RLNOptimizer`, the same update inside the compiled train step.

        cb = RLNCallback(model.layers[0], norm=1, avg_reg=-10, learning_rate=1e6)
        model.fit(x, y, epochs=100, batch_size=10, callbacks=[cb])

    The state persists across `fit` calls (a second fit continues the run);
    `get_state`/`set_state` carry it over to a new callback, e.g. on a model
    reloaded with `keras.models.load_model`. Kernels keep the Keras layout:
    (in, out) for Dense, (..., in, out) for convolutions, so lambdas have that
    shape too and the input axis is -2.

    The defaults are the authors' callback's (`rln_core.ORIGINAL_CALLBACK_DEFAULTS`:
    avg_reg -7.5, learning_rate 6e5, L1); their tutorial's best setting was
    avg_reg=-10, learning_rate=1e6 (`rln_core.DEFAULTS`). An optimizer that accumulates
    gradients over several batches, itself or one it wraps (a LossScaleOptimizer's inner
    optimizer), is refused (the weights must move every batch). A step the optimizer
    skipped (a LossScaleOptimizer's, on non-finite gradients: its `iterations` stay) is no
    RLN step either. A kernel frozen at train begin (`trainable = False`: the optimizer
    does not step it, RLN would only shrink it) is refused. An update refused for NaN or
    inf (in a kernel after the optimizer's step, or in lambdas that would overflow) raises
    the core's ValueError and stops the fit; with several layers, the layers before it in
    the list have had this batch's update, the refused one and those after it have not
    (as `rln_torch.RLN.step`).

    Args:
        layer: the layer to regularize, or a list of layers (each its own state).
        norm: 1 (L1) or 2 (L2).
        avg_reg: Theta, the mean of the lambdas (natural log).
        learning_rate: nu, the step size of the lambdas (>= 0; large, as the
            lambdas live in log space).
        allow_steps_per_execution: with `steps_per_execution = k > 1` Keras runs
            the batch hooks once per k steps, so RLN would update once per k
            optimizer steps, which is another method. Refused unless True.
        impl: "auto", "numba", "numpy" or "array_api" (see `rln_core.update`).
        state_dtype: dtype of the lambdas and of the last regularization step:
            float64 (default) or float32.
        compute_dtype: the arithmetic of each update. None (default): float64, as
            the spec says (the kit's per-update tolerances). np.float32 (float32
            kernels and state_dtype=np.float32 only): `rln_core.update(...,
            compute_dtype=np.float32)`, faster, lambdas within
            `rln_core.checks.F32_LAMBDA_RTOL` (3e-6) of max(1, |lambda|,
            |lambda in|, |lambda step|) per update; every weight the float64 update
            sets to exactly 0 is exactly 0.

    Raises:
        ValueError, TypeError: a bad hyperparameter, a layer that has no float
            kernel variable, or float32 arithmetic with a float64 state or kernel
            (unbuilt layers are checked at train begin, or at the end of the
            first step for a layer Keras builds only then).
        RuntimeError: `lambdas`, `sparsity`, `input_importance`, `active_inputs` or
            `get_state` before training begins; IndexError: a layer index beyond
            `layers`; ValueError: a layer this callback does not regularize.
    """

    def __init__(self, layer: Union[keras.layers.Layer, Sequence[keras.layers.Layer]],
                 norm: int = ORIGINAL_CALLBACK_DEFAULTS.norm,
                 avg_reg: float = ORIGINAL_CALLBACK_DEFAULTS.avg_reg,
                 learning_rate: float = ORIGINAL_CALLBACK_DEFAULTS.learning_rate, *,
                 allow_steps_per_execution: bool = False, impl: str = "auto",
                 state_dtype: "np.typing.DTypeLike" = np.float64,
                 compute_dtype: "Optional[np.typing.DTypeLike]" = None):
        super().__init__()
        hyperparameters = Hyperparameters(avg_reg=avg_reg, learning_rate=learning_rate,
                                          norm=norm)
        check_impl(impl)
        self.state_dtype = check_state_dtype(state_dtype)
        self.compute_dtype = check_compute_dtype(compute_dtype)
        layers = list(layer) if isinstance(layer, (list, tuple)) else [layer]
        if not layers:
            raise ValueError("RLNCallback needs at least one layer, got an empty list")
        for each in layers:
            check_layer(each)
        if len({id(each) for each in layers}) != len(layers):
            raise ValueError("RLNCallback got the same layer twice")
        if self.compute_dtype is not None:
            check_float32_compute(
                "RLNCallback", state={"the state": self.state_dtype},
                weights={f"the kernel of layer {each.name!r}": kernel_variable(each).dtype
                         for each in layers if each.built})
        self.hyperparameters = hyperparameters
        self.allow_steps_per_execution = bool(allow_steps_per_execution)
        self.impl = impl
        self._kernels = [
            LayerKernel(each, rln_core.RLN(**hyperparameters.asdict(), impl=impl,
                                           state_dtype=self.state_dtype), self.compute_dtype)
            for each in layers]
        self._fit = None  # the `params` of the fit this callback is in, between its begin and end
        self._iterations: Optional[int] = None  # see on_train_begin

    @property
    def layers(self) -> tuple:
        """The regularized layers, in the order given."""
        return tuple(kernel.layer for kernel in self._kernels)

    def get_config(self) -> dict:
        """Hyperparameters and layer names (a record; layers are not serialized)."""
        return {"layers": [layer.name for layer in self.layers],
                **self.hyperparameters.asdict(),
                "allow_steps_per_execution": self.allow_steps_per_execution,
                "impl": self.impl, "state_dtype": self.state_dtype.name,
                "compute_dtype": self.compute_dtype}

    def on_train_begin(self, logs=None):
        """Check the fit and claim every built kernel, then start or continue the states.

        Raises:
            ValueError: before any state is started or changed, when RLN would
                update some kernel other than once per optimizer step: this
                callback is in the fit's callbacks twice, a kernel is regularized
                by another RLNCallback or by the model's RLNOptimizer, the model
                runs several steps per batch hook (steps_per_execution), the
                optimizer accumulates gradients, or a built kernel is frozen.
        """
        fit = self.params if self.params else object()  # no params: not run by Keras' fit
        if self._fit is fit:
            raise ValueError(
                "RLNCallback: this callback is in this fit's callbacks twice, so every "
                "batch would update its kernels twice; pass it once")
        steps = getattr(self.model, "steps_per_execution", 1)
        if steps != 1 and not self.allow_steps_per_execution:
            raise ValueError(
                f"RLNCallback: the model is compiled with steps_per_execution={steps}, so "
                "batch hooks run once per that many optimizer steps and RLN would update "
                "less often than the method says. Compile with steps_per_execution=1, or "
                "pass allow_steps_per_execution=True to accept it.")
        optimizer = getattr(self.model, "optimizer", None)
        accumulation = accumulated_batches(optimizer)
        if accumulation is not None:
            raise ValueError(
                f"RLNCallback: the optimizer accumulates gradients over {accumulation} "
                "batches; RLN needs the weights to move on every batch")
        model = self.model
        claim = functools.partial(_claims.claim, model, fit, self)
        for kernel in self._kernels:
            kernel.prepare(model, claim)
        self._fit = fit
        self._sync_jax_state()
        # where the optimizer may skip a step, its iteration count tells each batch whether
        # it stepped (read only then: a host read per batch)
        self._iterations = _iterations(optimizer) if skips_steps(optimizer) else None
        for kernel in self._kernels:
            kernel.begin()

    def on_train_end(self, logs=None):
        """Release this fit's claims on the kernels (the next fit may claim them again)."""
        _claims.release(self.model, self)
        self._fit = None

    def on_train_batch_end(self, batch, logs=None):
        """One RLN update of each layer's kernel, after the optimizer's step of this batch
        (none where the optimizer skipped it: its iterations did not move)."""
        self._sync_jax_state()
        if self._iterations is not None:
            iterations = _iterations(self.model.optimizer)
            if iterations == self._iterations:  # the optimizer skipped this step
                return
            self._iterations = iterations
        for kernel in self._kernels:
            kernel.step(batch)

    def _sync_jax_state(self) -> None:
        """On the JAX backend: write the trainer's state back into the variables.

        During `fit` the JAX trainer carries the state outside the variables
        (it detaches their values). After this sync it sees
        `_jax_state_synced` and re-reads every variable before the next step,
        so what the update assigns is what training continues from. A no-op
        on the other backends, and when the state is already synced.
        """
        sync = getattr(self.model, "jax_state_sync", None)
        if sync is not None:
            sync()

    def get_state(self) -> Dict[str, Any]:
        """The RLN state of every layer as a flat dict of array copies (and step counts).

        Keys are "layer{i}/{field}" for i in the order of `layers` and the
        fields of the core's serialized state (`rln_core.RLNState.to_dict`):
        lambdas, prev_weights, prev_reg (zeros before the first update) and
        steps (an int), so `np.savez(path, **cb.get_state())` saves it and
        `cb.set_state(np.load(path))` restores it.
        """
        out = {}
        for i in range(len(self._kernels)):
            for field, value in self._rln(i).state.to_dict().items():
                out[f"layer{i}/{field}"] = value
        return out

    def set_state(self, state: Mapping) -> None:
        """Restore `get_state()` output; the next fit continues that run.

        Each layer's fields are read as `rln_core.RLNState.from_dict` reads them,
        so older checkpoints load too (one saved before any update has no
        prev_reg). Every layer's state is checked before any is replaced: its
        fields, their types and shapes (the core's checks, named by layer), against a
        built kernel's shape and dtype, float32 under `compute_dtype=float32`, then its
        values (no NaN or inf in lambdas or prev_weights, nor in prev_reg after the
        first update). A loaded state keeps its own dtype: `state_dtype` is the dtype
        of the states this callback starts itself.

        Args:
            state: a mapping of "layer{i}/{field}" to NumPy arrays (steps: an int),
                e.g. `get_state()` or `np.load(path)` of what it saved.

        Raises:
            TypeError, ValueError: naming the key, the layer and the problem;
                nothing is replaced then.
        """
        if not isinstance(state, Mapping):
            raise TypeError(f"RLNCallback.set_state takes a mapping of 'layer{{i}}/field' to "
                            f"arrays (get_state() output), got {type(state).__name__}")
        not_str = [key for key in state if not isinstance(key, str)]
        if not_str:
            raise TypeError(f"RLN state keys are strings 'layer{{i}}/field', got "
                            f"{not_str[0]!r} ({type(not_str[0]).__name__})")
        unknown = [key for key in state
                   if key.partition("/")[2] not in STATE_FIELDS
                   or key.partition("/")[0] not in self._prefixes()]
        if unknown:
            raise ValueError(f"RLN state has unexpected keys {sorted(unknown)}; expected "
                             f"'layer{{i}}/field' for {len(self._kernels)} layer(s)")
        new_states = [
            self._checked_state({key.partition("/")[2]: value for key, value in state.items()
                                 if key.partition("/")[0] == prefix}, kernel, prefix)
            for prefix, kernel in zip(self._prefixes(), self._kernels)]
        for kernel, new_state in zip(self._kernels, new_states):
            kernel.rln.state = new_state

    def _checked_state(self, fields: Dict[str, object], kernel: LayerKernel,
                       prefix: str) -> rln_core.RLNState:
        """One layer's serialized fields as a new NumPy state (copies), checked for
        `set_state`; raise otherwise."""
        where = f"RLN state {prefix} (layer {kernel.layer.name!r})"
        fields = complete_fields(fields, where)
        for name in STATE_FIELDS[:3]:
            if not isinstance(fields[name], np.ndarray):
                raise TypeError(f"{where}['{name}'] must be a NumPy array, got "
                                f"{type(fields[name]).__name__}")
        new_state = rln_core.RLNState(
            **{name: fields[name].copy(order="K") for name in STATE_FIELDS[:3]},
            steps=fields["steps"])
        try:
            check_state(new_state)
        except (TypeError, ValueError) as error:  # the core's message, with the layer's name
            raise type(error)(f"{where}: {error}") from None
        if kernel.layer.built:
            variable = kernel_variable(kernel.layer)
            check_state_fits(new_state, tuple(variable.shape), value_dtype(variable),
                             kernel.layer.name)
        if self.compute_dtype is not None:
            check_float32_compute(where, state={"its lambdas": new_state.lambdas.dtype})
        check_values(fields, where)
        return new_state

    def lambdas(self, layer: LayerRef = 0) -> np.ndarray:
        """A copy of a layer's lambdas, in the kernel's shape (float64 by default)."""
        return self._rln(layer).lambdas.copy()

    def sparsity(self, layer: LayerRef = 0) -> float:
        """Fraction of a layer's kernel that RLN set exactly to 0 (last update)."""
        return self._rln(layer).sparsity()

    def input_importance(self, layer: LayerRef = 0, input_axis: int = -2) -> np.ndarray:
        """Per-input sum of |w| of a layer's kernel; shape (n_inputs,), 0 = input cut off.

        The Keras input axis is -2 (axis 0 of a Dense kernel (in, out)).
        """
        return self._rln(layer).input_importance(input_axis)

    def active_inputs(self, layer: LayerRef = 0, input_axis: int = -2) -> np.ndarray:
        """Boolean mask (n_inputs,): inputs that keep a non-zero weight."""
        return self._rln(layer).active_inputs(input_axis)

    def _prefixes(self) -> list:
        return [f"layer{i}" for i in range(len(self._kernels))]

    def _rln(self, layer: LayerRef) -> rln_core.RLN:
        """The RLN of a layer given by index or object; it must have a state."""
        if isinstance(layer, keras.layers.Layer):
            matches = [kernel for kernel in self._kernels if kernel.layer is layer]
            if not matches:
                raise ValueError(f"layer {layer.name!r} is not regularized by this callback")
            kernel = matches[0]
        elif isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) \
                or not -len(self._kernels) <= layer < len(self._kernels):
            raise IndexError(
                f"layer index {layer!r} out of range for {len(self._kernels)} layer(s)")
        else:
            kernel = self._kernels[layer]
        if kernel.rln.state is None:
            raise RuntimeError(
                f"layer {kernel.layer.name!r} has no RLN state yet; it starts at train begin")
        return kernel.rln


def _iterations(optimizer: keras.optimizers.Optimizer) -> int:
    """The optimizer's step count now (on JAX: after `jax_state_sync`)."""
    return int(read_variable(optimizer.iterations))
