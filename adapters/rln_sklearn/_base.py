"""What RLNRegressor and RLNClassifier share: parameters, validation, training, attributes."""

from __future__ import annotations

import contextlib
import warnings
from numbers import Integral, Real
from typing import Iterator, NamedTuple, Optional

import numpy as np
from sklearn.base import BaseEstimator, _fit_context, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from rln_core import DEFAULTS, inspection
from rln_sklearn._network import MIN_WIDTH, NetworkWeights, forward, hidden_widths
from rln_sklearn._scaling import fit_standardization, standardize
from rln_sklearn._training import RLN_PRECISIONS, NetworkConfig, TrainerFactory, train


class Targets(NamedTuple):
    """Training targets in the layout a loss asks for (see `NetworkConfig.loss`)."""

    values: np.ndarray
    loss: str
    n_outputs: int
    strata: Optional[np.ndarray]  # class codes to stratify a validation split on, or None


# Beyond about +-745 exp(lambda) is 0 or infinite in float64; lambdas this far out
# were never seen with a working nu (nu 1e9 on diabetes reached 8e5) and always
# with a diverged one (nu 1e10: 1e7 and a constant predictor).
LAMBDA_RUNAWAY = 1e6
# A network whose outputs spread over the training rows by less than this share of
# the target's spread (regression) or by less than this in logits (classification)
# is a constant predictor (nu 1e9 on a 12-input regression: 2.5e-5, R^2 0.00).
COLLAPSED_OUTPUT_STD = 1e-3
# Warnings raised in _warn_if_degenerate point at the caller of fit: past _fit, fit and
# scikit-learn's _fit_context wrapper.
_USER_FRAME = 5


@contextlib.contextmanager
def _kept_on_error(estimator: BaseEstimator) -> Iterator[None]:
    """A fit that raises leaves what fit sets as it was: every attribute but the
    constructor's parameters (the fitted ones, names ending in "_", and private ones). A
    refused refit must not leave a model whose input scaling is the new data's and whose
    weights are the old fit's (it predicted, wrongly, without a word)."""
    parameters = estimator.get_params(deep=False)

    def fitted() -> dict:
        return {key: value for key, value in vars(estimator).items() if key not in parameters}

    before = fitted()
    try:
        yield
    except BaseException:
        for key in fitted():
            delattr(estimator, key)
        vars(estimator).update(before)
        raise


class BaseRLN(BaseEstimator):
    """The tutorial's network with RLN on its first layer; see RLNRegressor for the parameters."""

    _parameter_constraints: dict = {
        "layers": [Interval(Integral, 1, None, closed="left")],
        "rln": ["boolean"],
        "avg_reg": [Interval(Real, None, None, closed="neither")],
        "learning_rate": [Interval(Real, 0, None, closed="left")],
        "norm": [Options(Integral, {1, 2})],
        "rln_precision": [StrOptions(set(RLN_PRECISIONS))],
        "l1": [Interval(Real, 0, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "backend": [StrOptions({"torch", "keras"})],
        "standardize": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "verbose": ["verbose"],
        "random_state": ["random_state"],
    }

    def __init__(self, *, layers: int = 4, rln: bool = True, avg_reg: float = DEFAULTS.avg_reg,
                 learning_rate: float = DEFAULTS.learning_rate, norm: int = DEFAULTS.norm,
                 rln_precision: str = "float64", l1: float = 0.0,
                 lr: float = 1e-3, epochs: int = 100, batch_size: int = 10,
                 backend: str = "torch", standardize: bool = True,
                 early_stopping: bool = False,
                 validation_fraction: float = 0.1, n_iter_no_change: int = 10,
                 verbose: int = 0, random_state=None):
        self.layers = layers
        self.rln = rln
        self.avg_reg = avg_reg
        self.learning_rate = learning_rate
        self.norm = norm
        self.rln_precision = rln_precision
        self.l1 = l1
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.backend = backend
        self.standardize = standardize
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

        Raises:
            ValueError: X or y scikit-learn's checks refuse (NaN, inf, wrong shapes; one
                class only for a classifier), rln=True with l1 > 0, or a fit that
                diverged (a NaN or infinite loss). InvalidParameterError: a parameter
                outside its documented range. A fit that raises leaves the estimator as
                it was: fitted by the previous fit, or not fitted.
        """
        with _kept_on_error(self):
            X, y = validate_data(self, X, y, dtype=self._input_dtype(),
                                 multi_output=not is_classifier(self),
                                 y_numeric=not is_classifier(self))
            if self.rln and self.l1 > 0:
                raise ValueError(
                    f"rln=True and l1={self.l1!r} would regularize the first layer twice; "
                    "pass rln=False with l1 for the L1 baseline")
            if self.standardize:
                self.input_mean_, self.input_scale_ = fit_standardization(X)
            else:
                self.input_mean_ = self.input_scale_ = None
            return self._fit(self._network_inputs(X), self._encode_targets(y))

    def _input_dtype(self):
        # Standardized inputs are validated in float64 (a column of 1e39 is finite
        # there) and cast to float32 once scaled; unscaled ones go in as float32.
        return np.float64 if self.standardize else np.float32

    def _network_inputs(self, X: np.ndarray) -> np.ndarray:
        """Validated X as the network sees it: standardized (if on), float32."""
        if self.input_mean_ is None:
            return np.asarray(X, dtype=np.float32)
        with np.errstate(over="ignore"):
            return standardize(X, self.input_mean_, self.input_scale_).astype(np.float32)

    def _fit(self, X: np.ndarray, targets: Targets) -> "BaseRLN":
        rng = check_random_state(self.random_state)
        config = NetworkConfig(
            loss=targets.loss,
            widths=tuple(hidden_widths(X.shape[1], self.layers,
                                       min_width=max(MIN_WIDTH, targets.n_outputs))),
            n_outputs=targets.n_outputs, lr=self.lr, l1=self.l1, rln=self.rln,
            avg_reg=self.avg_reg, learning_rate=self.learning_rate, norm=self.norm,
            rln_precision=self.rln_precision, batch_size=self.batch_size,
            seed=int(rng.randint(np.iinfo(np.int32).max)))
        y = targets.values
        validation = None
        if self.early_stopping:
            try:
                X, X_val, y, y_val = train_test_split(
                    X, y, test_size=self.validation_fraction, random_state=rng,
                    stratify=targets.strata)
            except ValueError as error:  # scikit-learn's words: "test_size", "test set"
                raise ValueError(
                    f"early_stopping=True cannot set aside validation_fraction="
                    f"{self.validation_fraction} of {len(y)} samples"
                    f"{' stratified by class' if targets.strata is not None else ''}: "
                    f"{error}") from None
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
        self._warn_if_degenerate(X, targets)
        return self

    def _warn_if_degenerate(self, X: np.ndarray, targets: Targets) -> None:
        """ConvergenceWarning when RLN's lambdas ran away or the fit is a constant predictor."""
        remedies = [f"lower lr (now {self.lr!r})"]
        if self.rln:
            remedies.insert(0, f"lower RLN's learning_rate, nu (now {self.learning_rate:g}; "
                               "the tutorial's grid is 1e5..1e7)")
        if not self.standardize:
            remedies.append("standardize the inputs (standardize=True)")
        advice = ", or ".join(remedies)
        if self.rln:
            lambdas = self.lambdas_
            finite = np.isfinite(lambdas).all()
            reach = float(np.max(np.abs(lambdas - self.avg_reg))) if finite else np.inf
            if reach > LAMBDA_RUNAWAY:
                warnings.warn(
                    f"RLN's lambdas ran away: they reach {reach:.3g} from Theta "
                    f"(avg_reg={self.avg_reg:g}), where exp(lambda) is 0 or infinite; {advice}",
                    ConvergenceWarning, stacklevel=_USER_FRAME)
        if len(X) < 2 or not (np.ptp(X, axis=0) > 0).any():
            return  # identical rows: a constant prediction is all there is
        outputs = forward(NetworkWeights(self.coefs_, self.intercepts_), X)
        spread = np.std(outputs, axis=0)
        if targets.loss == "squared_error":
            reference = np.std(targets.values.astype(np.float64), axis=0)
            varies = reference > 0
            if not varies.any():
                return
            spread = spread[varies] / reference[varies]
        if not np.max(spread) > COLLAPSED_OUTPUT_STD:
            spread = float(np.max(spread))
            what = (f"{spread:.3g} times the target's" if targets.loss == "squared_error"
                    else f"{spread:.3g} (logits)")
            warnings.warn(
                f"the fitted network is a constant predictor: the standard deviation of its "
                f"outputs on the training rows is {what}; {advice}",
                ConvergenceWarning, stacklevel=_USER_FRAME)

    def _encode_targets(self, y: np.ndarray) -> Targets:
        raise NotImplementedError

    def _raw_outputs(self, X) -> np.ndarray:
        """Validated X through the fitted network, shape (n_samples, n_outputs)."""
        check_is_fitted(self)
        dtype = np.float32 if self.input_mean_ is None else np.float64
        X = validate_data(self, X, dtype=dtype, reset=False)
        return forward(NetworkWeights(self.coefs_, self.intercepts_), self._network_inputs(X))


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
