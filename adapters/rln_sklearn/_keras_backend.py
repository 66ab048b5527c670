"""backend="keras": the tutorial's network in Keras 3, RLN through `rln_keras.RLNCallback`.

Keras is imported on first use, with KERAS_BACKEND defaulting to "tensorflow".
Batches go through `train_on_batch`, and the callbacks are driven the way
Keras documents for a custom loop (`keras.callbacks.CallbackList`), so the
epoch loop, progress bar and early stopping are the ones all backends share.
"""

from __future__ import annotations

import os

import numpy as np

from rln_sklearn._network import NetworkWeights
from rln_sklearn._training import NetworkConfig, StepDiverged


def _import_keras():
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    return keras


def _data_loss(keras, loss: str):
    if loss == "binary_log_loss":
        return keras.losses.BinaryCrossentropy(from_logits=True)
    if loss == "log_loss":
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return keras.losses.MeanSquaredError()


class KerasTrainer:
    """A Keras Sequential ReLU MLP trained with RMSprop; RLN (or L1) on its first layer.

    Args:
        config: network and optimizer settings.
        X: float32 inputs, shape (n_samples, n_features).
        y: targets in the layout `config.loss` asks for.
    """

    def __init__(self, config: NetworkConfig, X: np.ndarray, y: np.ndarray):
        keras = _import_keras()
        from rln_keras import RLNCallback

        self._X = X
        self._y = y
        self._model = build_network(keras, X.shape[1], config)
        self._data_loss = _data_loss(keras, config.loss)
        self._model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=config.lr),
                            loss=self._data_loss)
        precision = np.dtype(config.rln_precision)
        self._rln = (RLNCallback(self._model.layers[0], norm=config.norm,
                                 avg_reg=config.avg_reg, learning_rate=config.learning_rate,
                                 state_dtype=precision, compute_dtype=precision)
                     if config.rln else None)
        self._callbacks = keras.callbacks.CallbackList(
            [self._rln] if self._rln is not None else [], model=self._model)
        self._callbacks.on_train_begin()
        self._steps = 0

    def train_batch(self, rows: np.ndarray) -> float:
        objective = self._model.train_on_batch(self._X[rows], self._y[rows])
        try:
            self._callbacks.on_train_batch_end(self._steps)  # RLN's update
        except ValueError as error:  # RLN refused: the step left non-finite weights
            raise StepDiverged() from error
        self._steps += 1
        return float(objective)

    def loss(self, X: np.ndarray, y: np.ndarray) -> float:
        return float(self._data_loss(y, self._model(X, training=False)))

    def weights(self) -> NetworkWeights:
        dense = self._model.layers
        return NetworkWeights(
            coefs=[np.array(layer.kernel.numpy(), dtype=np.float32) for layer in dense],
            intercepts=[np.array(layer.bias.numpy(), dtype=np.float32) for layer in dense],
            lambdas=self._rln.lambdas(0) if self._rln is not None else None)


def build_network(keras, n_features: int, config: NetworkConfig):
    """Dense layers `n_features -> *widths -> n_outputs`, ReLU between, Glorot-normal init,
    L1 on the first kernel when `config.l1` > 0 (the tutorial's `base_model`)."""
    widths = [*config.widths, config.n_outputs]
    layers = [keras.Input(shape=(n_features,))]
    for i, width in enumerate(widths):
        layers.append(keras.layers.Dense(
            width, activation="relu" if i < len(widths) - 1 else None,
            kernel_initializer=keras.initializers.GlorotNormal(seed=config.seed + i),
            kernel_regularizer=keras.regularizers.L1(config.l1) if i == 0 and config.l1 > 0
            else None))
    return keras.Sequential(layers)
