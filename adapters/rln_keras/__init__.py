"""rln_keras: Regularization Learning Networks for Keras 3 (TensorFlow, torch and JAX backends).

Two ways to run the same update (docs/RLN_SPEC.md), both on all three backends:

    # 1. A callback, the drop-in for the authors' one (their defaults: Theta -7.5, nu 6e5)
    from rln_keras import RLNCallback
    cb = RLNCallback(model.layers[0], norm=1, avg_reg=-10, learning_rate=1e6)
    model.fit(x, y, epochs=100, batch_size=10, callbacks=[cb])
    cb.lambdas(), cb.sparsity(), cb.input_importance()   # kernel layout (in, out)

    # 2. In the compiled train step: a wrapping optimizer (the project's defaults: -10, 1e6)
    from rln_keras import RLNOptimizer
    model.compile(optimizer=RLNOptimizer(keras.optimizers.Adam(1e-3), model.layers[0],
                                         avg_reg=-10, learning_rate=1e6), loss="mse")
    model.fit(x, y, epochs=100, batch_size=10)
    model.optimizer.lambdas(), model.optimizer.state()   # NumPy copies

`RLNCallback` updates after every batch on the host: the kernel is read into
NumPy, updated by `rln_core.update` (numba) and written back (in place on
torch CPU tensors, by TensorFlow's raw variable ops, by `assign` elsewhere);
on JAX it first syncs the trainer's state into the variables
(`model.jax_state_sync()`), so the next step starts from what it wrote. Its
state is saved with `get_state()` ("layer{i}/{field}" wrapping
`rln_core.RLNState.to_dict`) and restored with `set_state()`; states saved
by earlier versions load and continue the same run.

`RLNOptimizer` applies the user's optimizer, then the RLN update inside the
train step (tf.function, jax.jit, torch ops on the device): no host round
trip per batch, and `steps_per_execution > 1` is fine. Its math is
`rln_core.array_api.step` over `keras.ops` (`KERAS_OPS`, `graph_step`),
handed the inner optimizer's weight change as `delta`; its state is optimizer
variables, saved by `model.save` and restored by `keras.models.load_model`.
A non-finite step is skipped for RLN and counted (`skipped()`), not raised.
float64 where the backend has it; float32 on JAX without `jax_enable_x64`.

The fast float32 mode (docs/RLN_SPEC.md), an explicit option, never the
default: `RLNCallback(..., state_dtype=np.float32, compute_dtype=np.float32)`
(the core's `rln_core.update(..., compute_dtype=np.float32)`) and
`RLNOptimizer(..., compute_dtype="float32")`, for float32 kernels only (a
float64 state or kernel is a TypeError before anything changes); per update
within `rln_core.testing.FLOAT32_COMPUTE_TOLERANCE` of the float64 reference.

Each kernel gets one RLN per fit: the same callback twice in `callbacks`, two
callbacks over one layer or tied kernels, a callback over a variable the
model's RLNOptimizer regularizes, or an RLNOptimizer wrapping another over the
same variable raise `ValueError` before anything changes (each would update
the kernel twice per step). A callback reused in the next fit continues.

Both are checked against `rln_core.reference.update` in real `model.fit` runs
on every backend (tests/test_keras_backends.py).
"""

from rln_keras._callback import RLNCallback
from rln_keras._ops import KERAS_OPS
from rln_keras._optimizer import GraphStep, RLNOptimizer, graph_step

__all__ = ["GraphStep", "KERAS_OPS", "RLNCallback", "RLNOptimizer", "graph_step"]
