"""RLN on one Keras layer's kernel: read it into NumPy, update, assign it back."""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import keras
import numpy as np

import rln_core
from rln_core.checks import check_float32_dtypes, float32_arithmetic

KERNEL_DTYPES = ("float32", "float64")


def check_compute_dtype(compute_dtype: "np.typing.DTypeLike") -> Optional[str]:
    """The arithmetic asked for: None (float64, the spec's) or "float32" (the fast mode).

    Args:
        compute_dtype: None or float64 (np.float64, "float64"): float64; np.float32
            or "float32": float32 arithmetic (float32 kernels and state only).

    Raises:
        TypeError: any other value (`rln_core.checks.float32_arithmetic`).
    """
    return "float32" if float32_arithmetic(compute_dtype) else None


def check_float32_compute(what: str, weights: Optional[Dict[str, Any]] = None,
                          state: Optional[Dict[str, Any]] = None) -> None:
    """`rln_core.checks.check_float32_dtypes` for the Keras adapters: `what` asks (for the
    message, e.g. "RLNCallback on layer 'dense'"); `weights` and `state` name each
    thing the update would read ("the kernel", "the state") and its dtype.

    Raises:
        TypeError: naming each dtype that is not float32.
    """
    check_float32_dtypes(
        (weights or {}, "float32 layers, or compute_dtype=None for float64 arithmetic"),
        (state or {}, "ask for state_dtype='float32'"), who=what)


def check_layer(layer: object) -> None:
    """Refuse, at construction, what can never carry an RLN kernel.

    A built layer must have a kernel variable now. An unbuilt one is checked
    when `LayerKernel` attaches to it: at train begin, or at the end of the
    first train step for a layer Keras builds only then.
    """
    if not isinstance(layer, keras.layers.Layer):
        raise TypeError(f"RLNCallback needs Keras layers, got {type(layer).__name__}")
    if layer.built:
        kernel_variable(layer)


def kernel_variable(layer: keras.layers.Layer) -> keras.Variable:
    """The layer's `kernel` as a float32/float64 Keras variable; raise otherwise."""
    try:
        kernel = layer.kernel
    except AttributeError:
        raise ValueError(
            f"layer {layer.name!r} ({type(layer).__name__}) has no kernel; RLN regularizes "
            "the `kernel` of a layer such as Dense or Conv2D") from None
    if not isinstance(kernel, keras.Variable):
        raise ValueError(
            f"layer {layer.name!r}: `kernel` is a computed {type(kernel).__name__}, not a "
            "variable (LoRA or quantization enabled?); RLN needs to assign the kernel")
    if kernel.dtype not in KERNEL_DTYPES:
        raise TypeError(
            f"layer {layer.name!r}: kernel dtype is {kernel.dtype}; RLN supports float32 "
            "and float64 kernels")
    return kernel


def value_dtype(kernel: keras.Variable) -> np.dtype:
    """The dtype of the kernel's value, what an update reads: the variable's own, except on
    JAX without x64, where a float64 variable holds float32 values."""
    return np.dtype(keras.backend.standardize_dtype(kernel.value.dtype))


def read_variable(variable: keras.Variable) -> np.ndarray:
    """A variable's current value in NumPy (on torch CPU: a view of its memory).

    TensorFlow and torch tensors go through their own `.numpy()`:
    `keras.ops.convert_to_numpy` calls their `__array__`, which NumPy 2 warns
    about (no `copy` keyword). A CPU torch tensor's `.numpy()` shares its memory
    (`.cpu()` returns the tensor itself there; other devices copy to the host).
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return variable.value.numpy()
    if backend == "torch":
        return variable.value.detach().cpu().numpy()
    return keras.ops.convert_to_numpy(variable.value)


class KernelAccess:
    """How each update reads a kernel variable into NumPy and writes it back.

    Chosen once per attach by `kernel_access`: "in place" (a writable view of
    the variable's own memory: torch on CPU; nothing to write back),
    "tensorflow" (a plain TF resource variable, read and assigned by the raw
    ops: several times faster than `Variable.assign` on a 181k kernel), or
    "copy" (any other backend or device: a writable copy, `assign`ed back).
    """

    name = "copy"

    def __init__(self, kernel: keras.Variable):
        self.kernel = kernel

    def read(self) -> np.ndarray:
        """A writable array holding the kernel's current value."""
        return np.require(read_variable(self.kernel), requirements="W")

    def write(self, weights: np.ndarray) -> None:
        """Make `weights` the kernel's value."""
        self.kernel.assign(weights)


class _InPlace(KernelAccess):
    name = "in place"

    def read(self) -> np.ndarray:
        return read_variable(self.kernel)

    def write(self, weights: np.ndarray) -> None:
        pass  # `weights` is the variable's memory


class _TensorFlowResource(KernelAccess):
    name = "tensorflow"

    def __init__(self, kernel: keras.Variable):
        super().__init__(kernel)
        import tensorflow as tf  # only reached on the TensorFlow backend

        self._ops = tf.raw_ops
        self._handle = kernel.value.handle
        self._dtype = kernel.value.dtype

    def read(self) -> np.ndarray:
        value = self._ops.ReadVariableOp(resource=self._handle, dtype=self._dtype)
        return np.require(value.numpy(), requirements="W")

    def write(self, weights: np.ndarray) -> None:
        # TensorFlow may keep `weights` itself as the variable's buffer, without a copy
        # (seen with TF 2.21 for 64-byte-aligned arrays: writing the array after the
        # assign changed the variable). So `read` hands out a fresh array every step and
        # nothing writes it after this; reusing one buffer across steps would not be safe.
        self._ops.AssignVariableOp(resource=self._handle, value=weights)


def kernel_access(kernel: keras.Variable) -> KernelAccess:
    """The fastest `KernelAccess` that is safe for this variable (see `KernelAccess`)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _TensorFlowResource(kernel) if _is_plain_tf_variable(kernel.value) \
            else KernelAccess(kernel)
    value = read_variable(kernel)
    if value.flags.writeable and np.shares_memory(value, read_variable(kernel)):
        return _InPlace(kernel)
    return KernelAccess(kernel)


def _is_plain_tf_variable(value: object) -> bool:
    """An eager TF resource variable itself (not a distributed or other subclass)."""
    try:
        from tensorflow.python.ops.resource_variable_ops import ResourceVariable
    except ImportError:  # a TensorFlow that moved it: use the portable path
        return False
    return type(value) is ResourceVariable


class LayerKernel:
    """One layer's kernel and its RLN state.

    After each optimizer step the kernel (layout (in, out) for Dense,
    (..., in, out) for convolutions) is updated by `rln_core.update` in NumPy,
    read and written back through a `KernelAccess` (in place where the
    backend exposes its memory).

    Args:
        layer: the Keras layer whose `kernel` is regularized.
        rln: the per-tensor RLN (hyperparameters, and the state once begun).
        compute_dtype: None (float64 arithmetic) or "float32" (`rln_core.update(...,
            compute_dtype=np.float32)`: float32 kernel and state only).
    """

    def __init__(self, layer: keras.layers.Layer, rln: rln_core.RLN,
                 compute_dtype: Optional[str] = None):
        self.layer = layer
        self.rln = rln
        self.compute_dtype = None if compute_dtype is None else np.dtype(compute_dtype).type
        self._model: Optional[keras.Model] = None
        self._claim: Optional[Callable[[keras.Variable, str], None]] = None
        self._kernel: Optional[keras.Variable] = None
        self.access: Optional[KernelAccess] = None

    def prepare(self, model: keras.Model,
                claim: Callable[[keras.Variable, str], None]) -> None:
        """At train begin, before any state is started or changed: resolve, check and
        claim the kernel of a built layer (`claim(kernel, layer name)` raises if the
        kernel is regularized already). An unbuilt layer is resolved at its first step.
        """
        self._model, self._claim, self._kernel, self.access = model, claim, None, None
        if self.layer.built:
            self._kernel = self._resolve()

    def begin(self) -> None:
        """After `prepare`: start the state or continue it.

        A fresh state starts at lambdas = Theta. An existing one (an earlier
        fit, or `set_state`) continues; its `prev_weights` is set to the kernel
        as it is now, so a change made between fits is not taken for an
        optimizer step. A layer Keras builds only in the first train step is
        attached at the end of that step: the first update makes no lambda step,
        so it does not need the kernel as it was before.
        """
        if self._kernel is None:
            return
        fresh = self.rln.state is None
        self._start()
        if not fresh:
            np.copyto(self.rln.state.prev_weights, read_variable(self._kernel))

    def step(self, batch: int) -> None:
        """After the optimizer step of `batch`: one RLN update of the kernel.

        Raises:
            ValueError: the core refused the update (non-finite weights or
                lambdas), naming the layer and the batch; nothing was written.
        """
        if self.access is None:
            self._kernel = self._resolve()
            self._start()
        weights = self.access.read()
        try:
            rln_core.update(weights, self.rln.state, impl=self.rln.impl,
                            compute_dtype=self.compute_dtype,
                            **self.rln.hyperparameters.asdict())
        except ValueError as error:
            raise ValueError(f"RLN update of layer {self.layer.name!r} at batch {batch} "
                             f"refused: {error}") from error
        self.access.write(weights)

    def _resolve(self) -> keras.Variable:
        """The checked (trainable, fits the state) and claimed kernel variable; nothing is
        started or changed."""
        if self._model is None:
            raise RuntimeError(
                f"RLN of layer {self.layer.name!r} stepped before on_train_begin")
        kernel = kernel_variable(self.layer)
        if not any(weight is kernel for weight in self._model.weights):
            raise ValueError(
                f"layer {self.layer.name!r} is not part of the model being trained")
        if not kernel.trainable:
            raise ValueError(
                f"RLNCallback: layer {self.layer.name!r} is frozen (trainable=False): the "
                "optimizer does not step its kernel, so RLN would only shrink it; leave it "
                "out of the callback, or unfreeze it")
        if self.rln.state is not None:
            check_state_fits(self.rln.state, tuple(kernel.shape), value_dtype(kernel),
                             self.layer.name)
        if self.compute_dtype is not None:
            state = self.rln.state
            check_float32_compute(
                f"RLNCallback on layer {self.layer.name!r}", weights={"the kernel": kernel.dtype},
                state={"the state": self.rln.state_dtype if state is None
                       else state.lambdas.dtype})
        self._claim(kernel, self.layer.name)
        return kernel

    def _start(self) -> None:
        """Pick how each update reads and writes the kernel (`kernel_access`); start
        the state if there is none."""
        self.access = kernel_access(self._kernel)
        if self.rln.state is None:
            self.rln.begin(read_variable(self._kernel))


def check_state_fits(state: rln_core.RLNState, shape: tuple, dtype: np.dtype,
                     name: str) -> None:
    """Check a state was made for a kernel of this shape and dtype."""
    if state.lambdas.shape != shape:
        raise ValueError(
            f"RLN state of layer {name!r} has shape {state.lambdas.shape}, "
            f"the kernel has shape {shape}")
    if state.prev_weights.dtype != dtype:
        raise TypeError(
            f"RLN state of layer {name!r} was made for dtype {state.prev_weights.dtype}, "
            f"the kernel has dtype {dtype}")
