"""RLNRegressor and RLNClassifier: the tutorial's networks as scikit-learn estimators."""

from __future__ import annotations

import numpy as np
from scipy.special import expit, softmax
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.metrics import r2_score
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets

from rln_sklearn._base import BaseRLN, Targets
from rln_sklearn._scaling import fit_standardization, standardize, unstandardize

_PARAMETERS = """
    Parameters:
        layers: Dense layers including the output layer (default 4, the
            tutorial's); the hidden widths are round(exp(log(n_features) * k /
            layers)) for k = layers-1 .. 1 (1010 inputs: 179, 32, 6), at least
            max(6, n_outputs) (2 inputs: 6, 6, 6), with ReLU and Glorot-normal
            init.
        rln: regularize the first layer with RLN (default True).
        avg_reg: Theta, the mean of RLN's log coefficients (default -10).
        learning_rate: nu, RLN's step size for the log coefficients (default 1e6).
        norm: 1 (L1, default) or 2 (L2) for RLN's per-weight penalty.
        rln_precision: "float64" (default: RLN's state and arithmetic in
            float64, the spec's) or "float32" (a float32 state computed in
            float32: the core's fast mode, 1.7-2.2x faster per update, lambdas
            within 3e-6 of the float64 update's per step; see README).
        l1: a fixed L1 coefficient on the first layer's kernel (the tutorial's
            baseline; default 0); needs rln=False. rln=False, l1=0 is the plain
            network.
        lr: RMSprop's step size (default 1e-3; Keras's RMSprop: rho 0.9, epsilon
            1e-7).
        epochs: passes over the training data (default 100, the tutorial's; the
            maximum with early stopping).
        batch_size: samples per optimizer step and per RLN update (default 10, the
            tutorial's).
        backend: "torch" (default) or "keras" (Keras 3; KERAS_BACKEND defaults
            to "tensorflow").
        standardize: train on (X - mean) / std per column (default True), the
            statistics fitted on the training rows and applied in `predict`, so
            raw, unscaled tables work; constant columns map to 0. False feeds X
            to the network as it is (scale it yourself).
        early_stopping: hold out `validation_fraction` of the training rows and
            stop after `n_iter_no_change` epochs without a lower validation
            loss, keeping the best epoch's weights (default False).
        validation_fraction: share of rows held out for early stopping (default 0.1).
        n_iter_no_change: patience of early stopping, in epochs (default 10).
        verbose: 1 shows a tqdm progress bar over epochs with the running loss
            (default 0).
        random_state: seeds the initialization, the batch order and the
            validation split; an int makes a fit reproducible on one backend.
"""

_ATTRIBUTES = """
    Attributes:
        n_features_in_: number of input features.
        feature_names_in_: column names, when X was a DataFrame with string names.
        input_mean_, input_scale_: per input, the mean and standard deviation
            (1 for a constant column) the network's inputs were standardized
            with, float64 shape (n_features,); None when standardize=False.
        coefs_: per layer, the kernel, float32 shape (n_in, n_out).
        intercepts_: per layer, the bias, float32 shape (n_out,).
        lambdas_: RLN's log coefficients of the first layer, float64 (float32 with
            rln_precision="float32") shape (n_features, width of layer 1); None when
            rln=False.
        sparsity_: fraction of the first layer's weights exactly 0.
        feature_importances_: per input, its share of the first layer's sum
            |w|, shape (n_features,); a 0 means RLN cut the input off. With
            standardize=True the weights act on standardized inputs, so shares
            compare across inputs of any unit.
        loss_curve_: mean training objective (loss + L1 penalty) per epoch
            (for regression, in units of the standardized target).
        validation_loss_curve_: validation loss per epoch (early stopping), else None.
        n_iter_: epochs run.
"""


class RLNRegressor(RegressorMixin, BaseRLN):
    # An assignment: a string expression made of parts is no docstring (__doc__ was None)
    __doc__ = """A Regularization Learning Network for regression (squared error).

    The network is trained on the standardized target, (y - mean) / std per
    output, and `predict` maps back, so predictions (and any MSE) are in the
    units of y. With the tutorial's raw diabetes target (std 77) the network
    spends its epochs growing its outputs and every method does worse (see
    bench/bench_accuracy.py --target-scaling-study); `loss_curve_` is in
    standardized units. The inputs are standardized too (`standardize`).
    Both scalings divide by the largest |value| first, so targets of any
    finite magnitude (1e160, 1e-310) train as well as targets of order 1.

    `score` is scikit-learn's R^2 (computed on the standardized target, where it is
    the same number and neither overflows nor underflows). The authors' tutorial
    printed the test mean squared error instead; use
    `sklearn.metrics.mean_squared_error` (or `scoring="neg_mean_squared_error"` in a
    search) to compare with it.

    Example:
        >>> model = RLNRegressor(epochs=5, random_state=0)   # raw X: standardized inside
        >>> model.fit(X, y).predict(X[:3])                       # doctest: +SKIP
    """ + _PARAMETERS + _ATTRIBUTES + """        n_outputs_: number of targets.
        target_mean_, target_scale_: per output, the mean and standard deviation
            (1 for a constant target) y was standardized with, shape (n_outputs,).
    """

    # Train on (y - mean) / std. Not a parameter: the study in bench/bench_accuracy.py
    # flips it on a subclass to show what the tutorial's raw target costs.
    _standardize_target = True

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _encode_targets(self, y: np.ndarray) -> Targets:
        y = np.asarray(y, dtype=np.float64)
        self._y_ndim = y.ndim
        y2d = y.reshape(len(y), -1)
        self.n_outputs_ = y2d.shape[1]
        if self._standardize_target:
            self.target_mean_, self.target_scale_ = fit_standardization(y2d)
        else:
            self.target_mean_, self.target_scale_ = np.zeros(self.n_outputs_), np.ones(self.n_outputs_)
        scaled = standardize(y2d, self.target_mean_, self.target_scale_)
        return Targets(scaled.astype(np.float32), "squared_error", self.n_outputs_, None)

    def predict(self, X) -> np.ndarray:
        """Predicted targets, shape (n_samples,) or (n_samples, n_outputs) as y was."""
        outputs = unstandardize(self._raw_outputs(X), self.target_mean_, self.target_scale_)
        return outputs.ravel() if self._y_ndim == 1 else outputs

    def score(self, X, y, sample_weight=None) -> float:
        """R^2 of `predict(X)` against y (`sklearn.metrics.r2_score`, averaged over outputs;
        `sample_weight`, shape (n_samples,), weights the rows as there).

        Computed after standardizing y and the predictions with `target_mean_` and
        `target_scale_`: an affine map of each output leaves R^2 unchanged, and the
        sums of squares stay finite and exact for targets of any magnitude (on y of
        1e160 scikit-learn's own R^2 overflowed to NaN; on 1e-310 it underflowed to 1.0).
        """
        predicted = self._raw_outputs(X)  # the standardized prediction, (n, n_outputs)
        y = np.asarray(y, dtype=np.float64)
        y = y.reshape(len(y), -1) if y.ndim else y
        if y.ndim != 2 or y.shape[1] != self.n_outputs_:
            raise ValueError(f"y has shape {y.shape}; this model predicts "
                             f"{self.n_outputs_} output(s) per sample")
        return float(r2_score(standardize(y, self.target_mean_, self.target_scale_), predicted,
                              sample_weight=sample_weight))


class RLNClassifier(ClassifierMixin, BaseRLN):
    __doc__ = """A Regularization Learning Network for binary and multiclass classification.

    Binary problems use one logit and the binary log-loss, multiclass ones a
    softmax over one logit per class. `score` is scikit-learn's accuracy.
    """ + _PARAMETERS + _ATTRIBUTES + """        classes_: the class labels, shape (n_classes,).
    """

    def _encode_targets(self, y: np.ndarray) -> Targets:
        try:  # both sort the labels (np.unique)
            check_classification_targets(y)
            encoder = LabelEncoder().fit(y)
        except TypeError as error:
            raise TypeError(f"the class labels cannot be sorted (labels of mixed types, or "
                            f"None?): {error}") from None
        self.classes_ = encoder.classes_
        if len(self.classes_) < 2:
            raise ValueError(
                "RLNClassifier needs samples of at least 2 classes in the data, but the "
                f"data contains only one class: {self.classes_[0]!r}")
        codes = encoder.transform(y)
        if len(self.classes_) == 2:
            return Targets(codes.astype(np.float32).reshape(-1, 1), "binary_log_loss", 1, codes)
        return Targets(codes.astype(np.int64), "log_loss", len(self.classes_), codes)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, shape (n_samples, n_classes), columns in `classes_` order."""
        logits = self._raw_outputs(X)
        if logits.shape[1] == 1:
            positive = expit(logits[:, 0])
            return np.column_stack([1.0 - positive, positive])
        return softmax(logits, axis=1)

    def predict(self, X) -> np.ndarray:
        """Most probable class label per sample, shape (n_samples,)."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]
