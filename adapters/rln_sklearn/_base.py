"""What RLNRegressor and RLNClassifier share: parameters, validation, training, attributes."""

from __future__ import annotations

from numbers import Integral, Real
from typing import NamedTuple, Optional

import numpy as np
from sklearn.base import BaseEstimator, _fit_context, is_classifier
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from rln_core import DEFAULTS, inspection
from rln_sklearn._network import NetworkWeights, forward, hidden_widths
from rln_sklearn._training import NetworkConfig, TrainerFactory, train


class Targets(NamedTuple):
    """Training targets in the layout a loss asks for (see `NetworkConfig.loss`)."""

    values: np.ndarray
    loss: str
    n_outputs: int
    strata: Optional[np.ndarray]  # class codes to stratify a validation split on, or None


class BaseRLN(BaseEstimator):
    """The tutorial's network with RLN on its first layer; see RLNRegressor for the parameters."""

    _parameter_constraints: dict = {
        "layers": [Interval(Integral, 1, None, closed="left")],
        "rln": ["boolean"],
        "avg_reg": [Interval(Real, None, None, closed="neither")],
        "learning_rate": [Interval(Real, 0, None, closed="left")],
        "norm": [Options(Integral, {1, 2})],
        "l1": [Interval(Real, 0, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "backend": [StrOptions({"torch", "keras"})],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "verbose": ["verbose"],
        "random_state": ["random_state"],
    }

    def __init__(self, *, layers: int = 4, rln: bool = True, avg_reg: float = DEFAULTS.avg_reg,
                 learning_rate: float = DEFAULTS.learning_rate, norm: int = DEFAULTS.norm,
                 l1: float = 0.0,
                 lr: float = 1e-3, epochs: int = 100, batch_size: int = 10,
                 backend: str = "torch", early_stopping: bool = False,
                 validation_fraction: float = 0.1, n_iter_no_change: int = 10,
                 verbose: int = 0, random_state=None):
        self.layers = layers
        self.rln = rln
        self.avg_reg = avg_reg
        self.learning_rate = learning_rate
        self.norm = norm
        self.l1 = l1
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.backend = backend
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.verbose = verbose
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y) -> "BaseRLN":
        """Train the network on (X, y).

        Args:
            X: array-like or DataFrame, shape (n_samples, n_features), numeric.
            y: targets, shape (n_samples,) (or (n_samples, n_outputs) for regression).

        Returns:
            self, fitted.
        """
        X, y = validate_data(self, X, y, dtype=np.float32, multi_output=not is_classifier(self),
                             y_numeric=not is_classifier(self))
        if self.rln and self.l1 > 0:
            raise ValueError(
                f"rln=True and l1={self.l1!r} would regularize the first layer twice; "
                "pass rln=False with l1 for the L1 baseline")
        return self._fit(X, self._encode_targets(y))

    def _fit(self, X: np.ndarray, targets: Targets) -> "BaseRLN":
        rng = check_random_state(self.random_state)
        config = NetworkConfig(
            loss=targets.loss, widths=tuple(hidden_widths(X.shape[1], self.layers)),
            n_outputs=targets.n_outputs, lr=self.lr, l1=self.l1, rln=self.rln,
            avg_reg=self.avg_reg, learning_rate=self.learning_rate, norm=self.norm,
            batch_size=self.batch_size, seed=int(rng.randint(np.iinfo(np.int32).max)))
        y = targets.values
        validation = None
        if self.early_stopping:
            X, X_val, y, y_val = train_test_split(
                X, y, test_size=self.validation_fraction, random_state=rng,
                stratify=targets.strata)
            validation = (X_val, y_val)
        result = train(_trainer_factory(self.backend), config, X, y, epochs=self.epochs,
                       rng=rng, validation=validation, n_iter_no_change=self.n_iter_no_change,
                       verbose=bool(self.verbose))
        weights = result.weights
        if not all(np.isfinite(c).all() for c in weights.coefs + weights.intercepts):
            raise ValueError("training produced non-finite weights; lower lr or learning_rate")
        self.coefs_ = weights.coefs
        self.intercepts_ = weights.intercepts
        self.lambdas_ = weights.lambdas
        self.sparsity_ = inspection.sparsity(weights.coefs[0])
        self.feature_importances_ = _importance_shares(weights.coefs[0])
        self.loss_curve_ = result.loss_curve
        self.validation_loss_curve_ = result.validation_loss_curve
        self.n_iter_ = result.n_iter
        return self

    def _encode_targets(self, y: np.ndarray) -> Targets:
        raise NotImplementedError

    def _raw_outputs(self, X) -> np.ndarray:
        """Validated X through the fitted network, shape (n_samples, n_outputs)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float32, reset=False)
        return forward(NetworkWeights(self.coefs_, self.intercepts_), X)


def _importance_shares(first_coef: np.ndarray) -> np.ndarray:
    """Each input's share of the first layer's sum |w|, shape (n_features,); sums to 1 (or all 0)."""
    importance = inspection.input_importance(first_coef, input_axis=0)
    total = importance.sum()
    return importance / total if total > 0 else importance


def _trainer_factory(backend: str) -> TrainerFactory:
    """The backend's trainer class, imported only when it is used."""
    if backend == "keras":
        from rln_sklearn._keras_backend import KerasTrainer
        return KerasTrainer
    from rln_sklearn._torch_backend import TorchTrainer
    return TorchTrainer
