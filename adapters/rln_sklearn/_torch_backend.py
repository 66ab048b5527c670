"""backend="torch": the tutorial's network in PyTorch, RLN through `rln_torch.RLN`."""

from __future__ import annotations

import math

import numpy as np
import rln_core
import torch
from torch import nn
from torch.nn import functional

from rln_sklearn._network import NetworkWeights
from rln_sklearn._training import NetworkConfig, StepDiverged
from rln_torch import RLN

# Keras's RMSprop defaults (rho=0.9, epsilon=1e-7), so both backends run the tutorial's optimizer.
RMSPROP_ALPHA = 0.9
RMSPROP_EPS = 1e-7

DATA_LOSSES = {
    "squared_error": functional.mse_loss,
    "binary_log_loss": functional.binary_cross_entropy_with_logits,
    "log_loss": functional.cross_entropy,
}


class TorchTrainer:
    """A ReLU MLP trained with RMSprop; RLN (or L1) on its first layer.

    Args:
        config: network and optimizer settings.
        X: float32 inputs, shape (n_samples, n_features).
        y: targets in the layout `config.loss` asks for.
    """

    def __init__(self, config: NetworkConfig, X: np.ndarray, y: np.ndarray):
        self._config = config
        generator = torch.Generator().manual_seed(config.seed)
        self._network = build_network(X.shape[1], config.widths, config.n_outputs, generator)
        self._first_layer = self._network[0]
        self._optimizer = torch.optim.RMSprop(self._network.parameters(), lr=config.lr,
                                              alpha=RMSPROP_ALPHA, eps=RMSPROP_EPS)
        precision = getattr(torch, config.rln_precision)
        self._rln = (RLN(self._first_layer, norm=config.norm, avg_reg=config.avg_reg,
                         learning_rate=config.learning_rate, state_dtype=precision,
                         compute_dtype=precision) if config.rln else None)
        if self._rln is not None:
            # RMSprop's step of the first layer and RLN's update in one kernel where numba
            # runs: the same step within rounding (README, "Fused optimizer + RLN step"), a
            # fit 3-5% faster; test errors over 20 seeds the same within noise (paired)
            self._rln.attach(self._optimizer, fuse=rln_core.numba_available())
        self._data_loss = DATA_LOSSES[config.loss]
        self._X = torch.tensor(X)  # copies: X may be a read-only view
        self._y = torch.tensor(y)

    def train_batch(self, rows: np.ndarray) -> float:
        index = torch.from_numpy(rows)
        self._optimizer.zero_grad()
        objective = self._data_loss(self._network(self._X[index]), self._y[index])
        if self._config.l1 > 0:
            objective = objective + self._config.l1 * self._first_layer.weight.abs().sum()
        objective.backward()
        try:
            self._optimizer.step()  # RLN updates the first layer in the step's post-hook
        except ValueError as error:  # RLN refused: the step left non-finite weights
            raise StepDiverged() from error
        return objective.item()

    @torch.no_grad()
    def loss(self, X: np.ndarray, y: np.ndarray) -> float:
        return float(self._data_loss(self._network(torch.tensor(X)), torch.tensor(y)))

    @torch.no_grad()
    def weights(self) -> NetworkWeights:
        linears = [m for m in self._network if isinstance(m, nn.Linear)]
        lambdas = None
        if self._rln is not None:
            lambdas = self._rln.lambdas.numpy().T.copy()  # (out, in) -> (in, out)
        return NetworkWeights(
            coefs=[m.weight.numpy().T.copy() for m in linears],
            intercepts=[m.bias.numpy().copy() for m in linears],
            lambdas=lambdas)


def build_network(n_features: int, widths: tuple[int, ...], n_outputs: int,
                  generator: torch.Generator) -> nn.Sequential:
    """Dense layers `n_features -> *widths -> n_outputs`, ReLU between, Glorot-normal init.

    The initialization is Keras's GlorotNormal: a normal truncated at two
    standard deviations, rescaled to variance 2 / (fan_in + fan_out); biases 0.
    The layers are float32 whatever `torch.get_default_dtype()` says, and are made
    without torch's own initialization (`skip_init`), which would draw from torch's
    global generator: a fit leaves the user's random stream alone.
    """
    modules: list[nn.Module] = []
    sizes = [n_features, *widths, n_outputs]
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        linear = nn.utils.skip_init(nn.Linear, fan_in, fan_out, dtype=torch.float32)
        # 0.8796... is the std of a standard normal truncated at +-2 (Keras uses the same constant).
        std = math.sqrt(2.0 / (fan_in + fan_out)) / 0.87962566103423978
        nn.init.trunc_normal_(linear.weight, std=std, a=-2 * std, b=2 * std, generator=generator)
        nn.init.zeros_(linear.bias)
        modules += [linear, nn.ReLU()]
    return nn.Sequential(*modules[:-1])

