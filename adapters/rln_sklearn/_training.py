"""The epoch loop every backend shares: batch order, progress bar, early stopping.

A backend supplies a `Trainer` (one optimizer step per batch, RLN after each
step); `train` drives it and returns the weights as NumPy arrays, so fitted
estimators never hold a framework object (pickle, joblib and dask stay simple).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional, Protocol

import numpy as np
from tqdm.auto import tqdm

from rln_sklearn._network import NetworkWeights

LOSSES = ("squared_error", "binary_log_loss", "log_loss")
RLN_PRECISIONS = ("float64", "float32")
"""RLN's state dtype and arithmetic: float64 (the spec's), or float32 (the fast mode)."""


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """What a backend needs to build and train one network.

    Attributes:
        loss: "squared_error" (targets float32 (n, n_outputs)), "binary_log_loss"
            (one logit; targets float32 (n, 1) in {0, 1}) or "log_loss" (one
            logit per class; targets int64 (n,)).
        widths: hidden layer widths; the output layer has `n_outputs` units.
        n_outputs: width of the output layer.
        lr: RMSprop step size. l1: L1 coefficient on the first layer (0 = none).
        rln: whether RLN regularizes the first layer, with Theta `avg_reg`,
            nu `learning_rate` and `norm`, its state and arithmetic in
            `rln_precision` ("float64" or "float32", see `RLN_PRECISIONS`).
        batch_size: samples per optimizer step.
        seed: seeds the weight initialization.
    """

    loss: str
    widths: tuple[int, ...]
    n_outputs: int
    lr: float
    l1: float
    rln: bool
    avg_reg: float
    learning_rate: float
    norm: int
    rln_precision: str
    batch_size: int
    seed: int


class Trainer(Protocol):
    """One network being trained by one backend."""

    def train_batch(self, rows: np.ndarray) -> float:
        """One optimizer step (and RLN update) on the training rows `rows` (indices);
        return the batch's mean training objective (loss + L1 penalty)."""

    def loss(self, X: np.ndarray, y: np.ndarray) -> float:
        """The data loss (no penalty) of the current network on (X, y)."""

    def weights(self) -> NetworkWeights:
        """A copy of the current weights (and RLN lambdas)."""


TrainerFactory = Callable[[NetworkConfig, np.ndarray, np.ndarray], Trainer]


class StepDiverged(Exception):
    """Raised by `Trainer.train_batch` when RLN refused the weights an optimizer step left
    (non-finite weights or lambdas; RLN refuses before writing), so that `train` reports
    the divergence it is rather than RLN's message about one parameter.

    Raise it `from` RLN's ValueError, which stays in the traceback as the cause.
    """

    def __init__(self):
        super().__init__("after an optimizer step the first layer's weights or RLN's "
                         "lambdas were not finite (RLN refused to update them)")


@dataclasses.dataclass
class TrainingResult:
    """What `train` returns.

    Attributes:
        weights: the final weights, or those of the best validation epoch
            when early stopping is on.
        loss_curve: mean training objective per epoch.
        validation_loss_curve: data loss on the validation rows per epoch,
            None without early stopping.
        n_iter: number of epochs run.
    """

    weights: NetworkWeights
    loss_curve: list[float]
    validation_loss_curve: Optional[list[float]]
    n_iter: int


def train(make_trainer: TrainerFactory, config: NetworkConfig, X: np.ndarray,
          y: np.ndarray, *, epochs: int, rng: np.random.RandomState,
          validation: Optional[tuple[np.ndarray, np.ndarray]] = None,
          n_iter_no_change: int = 10, verbose: bool = False) -> TrainingResult:
    """Train one network for `epochs` epochs (fewer with early stopping).

    Args:
        make_trainer: the backend's trainer factory.
        config: the network and optimizer settings.
        X: float32 training inputs, shape (n_samples, n_features).
        y: training targets in the layout `config.loss` asks for.
        epochs: the maximum number of passes over (X, y).
        rng: draws the batch order of every epoch.
        validation: (X_val, y_val) to stop on; None trains every epoch.
        n_iter_no_change: epochs without a better validation loss before stopping.
        verbose: show a tqdm progress bar over epochs with the running loss.

    Raises:
        ValueError: the training diverged: its loss became NaN or infinite, or an
            optimizer step left the first layer's weights (or RLN's lambdas)
            non-finite.
    """
    trainer = make_trainer(config, X, y)
    loss_curve: list[float] = []
    validation_curve: Optional[list[float]] = [] if validation is not None else None
    best = (math.inf, None)
    epochs_without_improvement = 0
    with tqdm(range(epochs), disable=not verbose, desc="epochs", unit="epoch") as bar:
        for epoch in bar:
            try:
                loss = _train_epoch(trainer, rng.permutation(len(X)), config.batch_size)
                reason = f"loss is {loss}"
            except StepDiverged as error:
                loss, reason = math.nan, str(error)
            if not math.isfinite(loss):
                advice = f"lower lr (now {config.lr!r})"
                if config.rln:
                    advice += f" or RLN's learning_rate (now {config.learning_rate!r})"
                raise ValueError(f"training diverged in epoch {epoch + 1}: {reason}; {advice}")
            loss_curve.append(loss)
            postfix = {"loss": f"{loss:.4g}"}
            if validation is not None:
                validation_loss = trainer.loss(*validation)
                validation_curve.append(validation_loss)
                postfix["val_loss"] = f"{validation_loss:.4g}"
                if validation_loss < best[0]:
                    best = (validation_loss, trainer.weights())
                    epochs_without_improvement = 0
                else:
                    epochs_without_improvement += 1
            bar.set_postfix(postfix)
            if epochs_without_improvement >= n_iter_no_change:
                break
    weights = best[1] if best[1] is not None else trainer.weights()
    return TrainingResult(weights, loss_curve, validation_curve, len(loss_curve))


def _train_epoch(trainer: Trainer, order: np.ndarray, batch_size: int) -> float:
    """Step through the rows in `order`, `batch_size` at a time; the epoch's mean objective."""
    total = 0.0
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        objective = trainer.train_batch(rows)
        if not math.isfinite(objective):
            return objective  # diverged: further steps would only fail in RLN's update
        total += objective * len(rows)
    return total / len(order)
