"""rln_keras: Regularization Learning Networks for Keras 3, as a callback.

    from rln_keras import RLNCallback
    cb = RLNCallback(model.layers[0], norm=1, avg_reg=-10, learning_rate=1e6)
    model.fit(x, y, epochs=100, batch_size=10, callbacks=[cb])
    cb.lambdas(), cb.sparsity(), cb.input_importance()   # kernel layout (in, out)

Works on every Keras 3 backend (TensorFlow and torch tested): the update runs
in NumPy through `rln_core` and the kernel is written back (in place on torch
CPU tensors, by TensorFlow's raw variable ops, or with `assign` elsewhere).
"""

from rln_keras._callback import RLNCallback

__all__ = ["RLNCallback"]
