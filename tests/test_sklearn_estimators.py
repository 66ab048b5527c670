"""RLNRegressor / RLNClassifier: what they learn, what they expose, how they fail."""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, make_blobs, make_classification, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils._param_validation import InvalidParameterError

from rln_sklearn import RLNClassifier, RLNRegressor
from rln_sklearn._network import hidden_widths

# Small enough that a fit takes well under a second: few rows, few epochs.
FAST = dict(epochs=5, batch_size=16, random_state=0)


@pytest.fixture(scope="module")
def regression():
    X, y = make_regression(n_samples=80, n_features=12, n_informative=3, noise=1.0,
                           random_state=0)
    return X, (y - y.mean()) / y.std()


@pytest.fixture(scope="module")
def fitted(regression):
    return RLNRegressor(**FAST).fit(*regression)


REGRESSOR_ATTRIBUTES = ["n_outputs_", "target_mean_", "target_scale_"]


@pytest.mark.parametrize("estimator, own", [(RLNRegressor, REGRESSOR_ATTRIBUTES),
                                             (RLNClassifier, ["classes_"])])
def test_the_docstring_reaches_help_and_documents_every_parameter(estimator, own, fitted):
    """`help(RLNRegressor)` shows the class's own text (built from parts, it was once an
    expression, not a docstring: __doc__ None, help() showed the mixin's), with every
    constructor parameter and fitted attribute."""
    import inspect

    doc = inspect.getdoc(estimator)
    assert doc.startswith("A Regularization Learning Network for")
    for name in estimator().get_params():
        assert f"\n    {name}:" in doc or f"\n    {name}," in doc, name
    common = [name for name in vars(fitted) if name.endswith("_")  # a fitted regressor's
              and not name.startswith("_") and name not in REGRESSOR_ATTRIBUTES]
    assert "lambdas_" in common and "feature_importances_" in common
    for name in common + own:
        assert f" {name}" in doc, name


def test_the_defaults_the_docstring_states_are_the_signatures():
    """Each "(default V" in a parameter's description is that parameter's default."""
    import ast
    import inspect
    import re

    doc = inspect.getdoc(RLNRegressor)
    blocks = dict(re.findall(r"\n    (\w+): (.*?)(?=\n    \w+:|\nAttributes:)", doc, re.S))
    defaults = {name: parameter.default for name, parameter
                in inspect.signature(RLNRegressor).parameters.items()}
    stated = {name: re.search(r"default (-?[\w.+-]+)", " ".join(text.split()))
              for name, text in blocks.items() if name in defaults}
    stated = {name: match.group(1) for name, match in stated.items() if match}
    assert {"layers", "avg_reg", "learning_rate", "lr", "epochs", "batch_size",
            "validation_fraction", "n_iter_no_change", "verbose", "l1"} <= set(stated)
    for name, text in stated.items():
        assert ast.literal_eval(text) == defaults[name], (name, text, defaults[name])


def test_tutorial_widths():
    # diabetes + 1000 noise columns: the tutorial's 1010 -> 179 -> 32 -> 6 -> 1.
    assert hidden_widths(1010, 4) == [179, 32, 6]
    assert hidden_widths(1010, 2) == [32]
    assert hidden_widths(12, 1) == []


def test_widths_have_a_floor():
    # The formula alone gave 2 inputs a one-unit bottleneck: [2, 1, 1].
    assert hidden_widths(2, 4) == [6, 6, 6]
    assert hidden_widths(12, 4) == [6, 6, 6]
    assert hidden_widths(100, 4) == [32, 10, 6]
    assert hidden_widths(2, 4, min_width=14) == [14, 14, 14]
    # As many units as outputs: 14 classes on 40 inputs get no 6-unit layer.
    X, y = make_classification(n_samples=140, n_features=40, n_informative=10, n_classes=14,
                               n_clusters_per_class=1, random_state=0)
    model = RLNClassifier(epochs=1, batch_size=32, random_state=0).fit(X, y)
    assert [c.shape[1] for c in model.coefs_] == [16, 14, 14, 14]


def test_two_inputs_three_classes():
    # Separable blobs on 2 inputs: 0.33 accuracy through the old [2, 1, 1] widths.
    X, y = make_blobs(n_samples=90, centers=3, n_features=2, cluster_std=0.5, random_state=0)
    model = RLNClassifier(epochs=30, batch_size=16, lr=0.01, random_state=0).fit(X, y)
    assert model.score(X, y) > 0.9


@pytest.mark.parametrize("layers, shapes", [
    (4, [(12, 6), (6, 6), (6, 6), (6, 1)]),
    (1, [(12, 1)]),
])
def test_network_shape(regression, layers, shapes):
    model = RLNRegressor(layers=layers, **FAST).fit(*regression)
    assert [c.shape for c in model.coefs_] == shapes
    assert [b.shape for b in model.intercepts_] == [(s[1],) for s in shapes]
    assert model.lambdas_.shape == shapes[0]


def test_fitted_attributes(fitted, regression):
    X, _ = regression
    assert fitted.n_features_in_ == 12
    assert not hasattr(fitted, "feature_names_in_")
    assert fitted.n_iter_ == 5 == len(fitted.loss_curve_)
    assert fitted.validation_loss_curve_ is None
    assert fitted.loss_curve_[-1] < fitted.loss_curve_[0]
    importances = fitted.feature_importances_
    assert importances.shape == (12,) and np.all(importances >= 0)
    assert importances.sum() == pytest.approx(1.0)
    expected = np.abs(fitted.coefs_[0]).sum(axis=1)
    np.testing.assert_allclose(importances, expected / expected.sum(), rtol=1e-6)
    assert fitted.sparsity_ == np.mean(fitted.coefs_[0] == 0)
    # RLN translates the lambdas to mean Theta, then clipping can only lower them.
    assert fitted.lambdas_.shape == fitted.coefs_[0].shape
    assert fitted.lambdas_.mean() <= -10.0 + 1e-9
    assert fitted.predict(X).shape == (80,)


def test_rln_moves_the_lambdas_and_cuts_weights(regression):
    X, y = regression
    model = RLNRegressor(epochs=20, batch_size=8, avg_reg=-6.0, learning_rate=1e6,
                         random_state=0).fit(X, y)
    assert model.lambdas_.std() > 0.1
    assert model.sparsity_ > 0


def test_rln_puts_importance_on_informative_inputs():
    X, y = make_regression(n_samples=100, n_features=40, n_informative=4, noise=0.1,
                           shuffle=False, random_state=0)
    y = (y - y.mean()) / y.std()
    settings = dict(epochs=20, batch_size=10, random_state=0)
    plain = RLNRegressor(rln=False, **settings).fit(X, y)
    rln = RLNRegressor(avg_reg=-7.0, **settings).fit(X, y)
    assert rln.feature_importances_[:4].sum() > 1.5 * plain.feature_importances_[:4].sum()


def test_baselines_are_one_parameter_apart(regression):
    X, y = regression
    plain = RLNRegressor(rln=False, **FAST).fit(X, y)
    l1 = RLNRegressor(rln=False, l1=0.05, **FAST).fit(X, y)
    assert plain.lambdas_ is None and l1.lambdas_ is None
    assert plain.sparsity_ == 0.0
    # The L1 penalty is part of the reported objective and shrinks the first layer.
    assert np.abs(l1.coefs_[0]).sum() < np.abs(plain.coefs_[0]).sum()
    assert l1.loss_curve_[0] > plain.loss_curve_[0]


def test_random_state_reproduces_a_fit(regression, fitted):
    X, y = regression
    again = RLNRegressor(**FAST).fit(X, y)
    np.testing.assert_array_equal(again.predict(X), fitted.predict(X))
    np.testing.assert_array_equal(again.lambdas_, fitted.lambdas_)
    other = RLNRegressor(**dict(FAST, random_state=1)).fit(X, y)
    assert not np.array_equal(other.predict(X), fitted.predict(X))


def test_a_fit_neither_reads_nor_moves_torchs_global_state(regression, fitted):
    # torch's default dtype float64 made the layers float64 (the fit crashed on the
    # float32 data), and nn.Linear's own initialization drew from torch's global generator
    import torch

    X, y = regression
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        model = RLNRegressor(**FAST).fit(X, y)
    finally:
        torch.set_default_dtype(previous)
    assert torch.equal(torch.rand(3), expected)
    np.testing.assert_array_equal(model.predict(X), fitted.predict(X))


def test_avg_reg_and_norm_reach_the_network(regression):
    X, y = regression
    model = RLNRegressor(avg_reg=-6.0, **FAST).fit(X, y)
    assert -7.0 < model.lambdas_.mean() <= -6.0 + 1e-9  # mean Theta, the clip only lowers it
    l2 = RLNRegressor(norm=2, **FAST).fit(X, y)
    assert not np.array_equal(l2.lambdas_, RLNRegressor(**FAST).fit(X, y).lambdas_)


def test_predict_returns_y_s_layout(regression):
    X, y = regression
    assert RLNRegressor(**FAST).fit(X, y.reshape(-1, 1)).predict(X).shape == (len(X), 1)


def test_pickle_round_trip(fitted, regression):
    X, _ = regression
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.predict(X), fitted.predict(X))


def test_target_is_standardized_for_training(regression):
    X, y = regression
    model = RLNRegressor(**FAST).fit(X, y)
    shifted = RLNRegressor(**FAST).fit(X, 300.0 * y + 5000.0)
    np.testing.assert_allclose(shifted.predict(X), 300.0 * model.predict(X) + 5000.0, rtol=1e-4)
    np.testing.assert_allclose(shifted.loss_curve_, model.loss_curve_, rtol=1e-4)


def test_multi_output_regression(regression):
    X, y = regression
    Y = np.column_stack([y, -y])
    model = RLNRegressor(**FAST).fit(X, Y)
    assert model.predict(X).shape == (80, 2)
    assert model.coefs_[-1].shape[1] == 2


def test_pandas_in_keeps_feature_names(regression):
    X, y = regression
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(12)])
    model = RLNRegressor(**FAST).fit(frame, pd.Series(y))
    np.testing.assert_array_equal(model.feature_names_in_, frame.columns)
    np.testing.assert_allclose(model.predict(frame), RLNRegressor(**FAST).fit(X, y).predict(X))
    with pytest.raises(ValueError, match="feature names"):
        model.predict(frame.rename(columns={"f0": "other"}))


@pytest.mark.parametrize("n_classes", [2, 3])
def test_classifier(n_classes):
    X, y = make_classification(n_samples=120, n_features=20, n_informative=4,
                               n_classes=n_classes, class_sep=2.0, random_state=0)
    labels = np.array(["ant", "bee", "cat"])[y]
    model = RLNClassifier(epochs=40, batch_size=8, random_state=0).fit(X, labels)
    np.testing.assert_array_equal(model.classes_, np.unique(labels))
    proba = model.predict_proba(X)
    assert proba.shape == (120, n_classes)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(model.predict(X), model.classes_[proba.argmax(axis=1)])
    assert model.coefs_[-1].shape[1] == (1 if n_classes == 2 else n_classes)
    assert model.score(X, labels) > 0.8


def test_labels_that_cannot_be_sorted_are_refused_saying_so():
    X = np.random.default_rng(0).normal(size=(8, 3))
    with pytest.raises(TypeError, match="the class labels cannot be sorted"):
        RLNClassifier(**FAST).fit(X, np.array(["a", None] * 4, dtype=object))


def test_early_stopping_keeps_the_best_epoch(regression):
    X, y = regression
    settings = dict(batch_size=16, early_stopping=True, n_iter_no_change=3,
                    validation_fraction=0.25, lr=0.01, random_state=0)
    model = RLNRegressor(epochs=60, **settings).fit(X, y)
    curve = model.validation_loss_curve_
    assert len(curve) == model.n_iter_ == len(model.loss_curve_)
    best = int(np.argmin(curve))
    assert model.n_iter_ == best + 1 + 3 < 60  # it trained past its best epoch
    # the weights kept are the best epoch's (a fit that stops there), not aliases of the
    # live network's that training went on to change, nor the last epoch's
    at_best = RLNRegressor(epochs=best + 1, **settings).fit(X, y)
    for kept, expected in zip(model.coefs_ + [model.lambdas_], at_best.coefs_ + [at_best.lambdas_]):
        np.testing.assert_array_equal(kept, expected)
    again = RLNRegressor(epochs=60, **settings).fit(X, y)  # the validation split is seeded
    np.testing.assert_array_equal(again.validation_loss_curve_, curve)
    with pytest.raises(ValueError, match="early_stopping=True cannot set aside "
                                         "validation_fraction=0.1 of 1 samples"):
        RLNRegressor(early_stopping=True, **FAST).fit(X[:1], y[:1])
    with pytest.raises(ValueError, match="validation_fraction=0.1 of 8 samples stratified"):
        RLNClassifier(early_stopping=True, **FAST).fit(X[:8], np.arange(8) % 4)


def test_verbose_shows_progress_with_loss(regression, capsys):
    X, y = regression
    RLNRegressor(verbose=1, **FAST).fit(X, y)
    err = capsys.readouterr().err
    assert "epochs" in err and "loss=" in err
    RLNRegressor(**FAST).fit(X, y)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("rln, backend", [(False, "torch"), (True, "torch"), (True, "keras")])
def test_divergence_is_a_clear_error(regression, rln, backend):
    # With rln=True the step's NaN weights used to surface as RLN's own refusal from
    # the optimizer hook ("RLN update of parameter 0 (6, 12): weights contain NaN").
    if backend == "keras":
        pytest.importorskip("keras")
    X, y = regression
    nu = " or RLN's learning_rate" if rln else ""
    with pytest.raises(ValueError, match=f"^training diverged in epoch 1: .*; lower lr \\(now "
                                         f"1e\\+30\\){nu}"):
        RLNRegressor(rln=rln, lr=1e30, **dict(FAST, backend=backend)).fit(X, y)


@pytest.mark.parametrize("params, match", [
    (dict(epochs=0), "epochs"),
    (dict(layers=0), "layers"),
    (dict(norm=3), "norm"),
    (dict(learning_rate=-1.0), "learning_rate"),
    (dict(lr=0.0), "'lr'"),
    (dict(backend="jax"), "backend"),
    (dict(avg_reg=float("nan")), "avg_reg"),
    (dict(avg_reg=float("inf")), "avg_reg"),
    (dict(learning_rate=float("inf")), "learning_rate"),
    (dict(validation_fraction=1.0), "validation_fraction"),
    (dict(rln_precision="float16"), "rln_precision"),
])
def test_invalid_parameters(regression, params, match):
    with pytest.raises(InvalidParameterError, match=match):
        RLNRegressor(**params).fit(*regression)


def test_rln_and_l1_together_is_refused(regression):
    with pytest.raises(ValueError, match="rln=False"):
        RLNRegressor(l1=0.1, **FAST).fit(*regression)


@pytest.mark.parametrize("bad, match", [
    (np.nan, "Input X contains NaN"),
    (np.inf, "Input X contains infinity"),
])
def test_non_finite_X(regression, bad, match):
    X, y = regression
    X = X.copy()
    X[3, 2] = bad
    with pytest.raises(ValueError, match=match):
        RLNRegressor(**FAST).fit(X, y)
    model = RLNRegressor(**FAST).fit(*regression)
    with pytest.raises(ValueError, match=match):
        model.predict(X)


def test_non_finite_y(regression):
    X, y = regression
    y = y.copy()
    y[0] = np.nan
    with pytest.raises(ValueError, match="Input y contains NaN"):
        RLNRegressor(**FAST).fit(X, y)


def test_shape_errors(fitted, regression):
    X, y = regression
    with pytest.raises(ValueError, match="X has 11 features, but RLNRegressor is expecting 12"):
        fitted.predict(X[:, :11])
    with pytest.raises(ValueError, match="0 sample"):
        RLNRegressor(**FAST).fit(X[:0], y[:0])
    with pytest.raises(ValueError, match="0 feature"):
        RLNRegressor(**FAST).fit(X[:, :0], y)
    assert RLNRegressor(**FAST).fit(X[:1], y[:1]).predict(X[:1]).shape == (1,)
    with pytest.raises(ValueError, match="at least 2 classes"):
        RLNClassifier(**FAST).fit(X[:1], [1])


def test_string_columns_are_refused(regression):
    X, y = regression
    frame = pd.DataFrame(X).assign(city=["a", "b"] * 40)
    frame.columns = frame.columns.astype(str)
    with pytest.raises(ValueError, match="could not convert string to float"):
        RLNRegressor(**FAST).fit(frame, y)


def test_keras_backend(regression):
    pytest.importorskip("keras")
    X, y = regression
    model = RLNRegressor(backend="keras", **FAST).fit(X, y)
    again = RLNRegressor(backend="keras", **FAST).fit(X, y)
    np.testing.assert_array_equal(model.predict(X), again.predict(X))
    assert [c.shape for c in model.coefs_] == [(12, 6), (6, 6), (6, 6), (6, 1)]
    assert model.lambdas_.shape == (12, 6)
    assert model.lambdas_.mean() <= -10.0 + 1e-9
    assert model.loss_curve_[-1] < model.loss_curve_[0]
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.predict(X), model.predict(X))


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_float32_rln_precision_runs_the_fast_mode(regression, backend):
    """rln_precision="float32": a float32 state computed in float32, close to the default
    fit but not the same (the option reaches RLN), on both backends."""
    pytest.importorskip(backend)
    X, y = regression
    params = dict(FAST, backend=backend, learning_rate=1e7)
    fast = RLNRegressor(rln_precision="float32", **params).fit(X, y)
    default = RLNRegressor(**params).fit(X, y)
    assert fast.lambdas_.dtype == np.float32 and default.lambdas_.dtype == np.float64
    assert not np.array_equal(fast.lambdas_, default.lambdas_)
    # training feeds the rounding back, so the fits part slowly: close, not equal
    np.testing.assert_allclose(fast.lambdas_, default.lambdas_, rtol=0, atol=0.5)
    np.testing.assert_allclose(fast.predict(X), default.predict(X), rtol=0, atol=0.05)


def test_raw_breast_cancer_is_standardized_inside():
    # Unscaled columns (area ~ 1000, smoothness ~ 0.1): before the estimator
    # standardized its inputs, this predicted one class (accuracy 0.63).
    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0, stratify=y)
    model = RLNClassifier(epochs=10, random_state=0).fit(X_train, y_train)
    assert model.score(X_test, y_test) > 0.9
    np.testing.assert_allclose(model.input_mean_, X_train.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(model.input_scale_, X_train.std(axis=0), rtol=1e-12)


def test_input_scale_does_not_matter(regression):
    # One column x1e4 (the raw-diabetes case gave R^2 ~ 0): same fit.
    X, y = regression
    scaled = X.copy()
    scaled[:, 0] = scaled[:, 0] * 1e4 + 3e5
    model = RLNRegressor(**FAST).fit(X, y)
    again = RLNRegressor(**FAST).fit(scaled, y)
    np.testing.assert_allclose(again.predict(scaled), model.predict(X), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(again.input_scale_[0], 1e4 * model.input_scale_[0], rtol=1e-9)


def test_standardize_off_feeds_x_as_it_is(regression):
    X, y = regression
    model = RLNRegressor(standardize=False, **FAST).fit(X, y)
    assert model.input_mean_ is None and model.input_scale_ is None
    on = RLNRegressor(**FAST).fit(X, y)
    assert not np.allclose(model.predict(X), on.predict(X))
    # A manual standardization reproduces the built-in one.
    Z = (X - on.input_mean_) / on.input_scale_
    manual = RLNRegressor(standardize=False, **FAST).fit(Z, y)
    np.testing.assert_allclose(manual.predict(Z), on.predict(X), rtol=1e-4, atol=1e-4)


def test_standardization_is_pickled(regression):
    X, y = regression
    model = RLNRegressor(**FAST).fit(X * 50.0 + 7.0, y * 1e3)
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.input_mean_, model.input_mean_)
    np.testing.assert_array_equal(restored.target_scale_, model.target_scale_)
    np.testing.assert_array_equal(restored.predict(X * 50.0 + 7.0), model.predict(X * 50.0 + 7.0))


def test_constant_input_column(regression):
    X, y = regression
    X = X.copy()
    X[:, 4] = 1e12
    model = RLNRegressor(**FAST).fit(X, y)
    assert model.input_scale_[4] == 1.0 and model.input_mean_[4] == 1e12
    assert np.isfinite(model.predict(X)).all()


@pytest.mark.parametrize("scale", [1e160, 1e-310, 1e300])
def test_target_of_any_magnitude(regression, scale):
    # 1e160: the squares overflowed (NaN fit and predictions); 1e-310: they
    # underflowed and the target was taken for a constant.
    X, y = regression
    model = RLNRegressor(**FAST).fit(X, y)
    big = RLNRegressor(**FAST).fit(X, y * scale)
    predictions = big.predict(X)
    assert np.isfinite(predictions).all()
    np.testing.assert_allclose(predictions / scale, model.predict(X), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(big.target_scale_ / scale, model.target_scale_, rtol=1e-3)
    # R^2 on the standardized target (scikit-learn's own: NaN at 1e160 and 1e300, 1.0 at
    # 1e-310)
    assert big.score(X, y * scale) == pytest.approx(model.score(X, y), abs=1e-3)


def test_constant_target(regression):
    X, _ = regression
    model = RLNRegressor(**FAST).fit(X, np.full(len(X), 4.5))
    assert model.target_scale_[0] == 1.0 and model.target_mean_[0] == 4.5
    assert np.isfinite(model.predict(X)).all()


def test_a_working_fit_does_not_warn(regression):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RLNRegressor(**FAST).fit(*regression)
        RLNRegressor(learning_rate=1e7, **FAST).fit(*regression)


def test_runaway_nu_warns():
    # nu 1e10: the lambdas ran to +-1e7 and the network predicted a constant
    # (R^2 0.00), silently.
    X, y = make_regression(n_samples=80, n_features=12, n_informative=3, noise=1.0,
                           random_state=0)
    with pytest.warns(ConvergenceWarning) as record:
        RLNRegressor(learning_rate=1e10, **FAST).fit(X, y)
    messages = [str(w.message) for w in record]
    assert any("lambdas ran away" in m and "nu (now 1e+10" in m for m in messages)
    assert any("constant predictor" in m for m in messages)
    assert {w.filename for w in record} == {__file__}  # points at the caller of fit
    # nu 1e9: lambdas within the limit, but the predictions collapsed.
    with pytest.warns(ConvergenceWarning, match="constant predictor.*nu \\(now 1e\\+09"):
        RLNRegressor(learning_rate=1e9, **FAST).fit(X, y)


def test_collapse_advice_names_standardize_when_it_is_off(regression):
    # Raw breast cancer with standardize=False predicted one class in 2 of 5 seeds;
    # the advice then names the scaling too, not only the step sizes.
    with pytest.warns(ConvergenceWarning) as record:
        RLNRegressor(learning_rate=1e10, standardize=False, **FAST).fit(*regression)
    assert all(str(w.message).endswith("or standardize the inputs (standardize=True)")
               for w in record)


@pytest.mark.parametrize("numba_runs", [True, False])
def test_the_torch_backend_fuses_rmsprop_and_rln_where_numba_runs(regression, monkeypatch,
                                                                  numba_runs):
    import rln_core
    import rln_torch

    attached = []
    attach = rln_torch.RLN.attach

    def recording_attach(self, optimizer, fuse=False):
        attached.append(fuse)
        return attach(self, optimizer, fuse=fuse)

    monkeypatch.setattr(rln_torch.RLN, "attach", recording_attach)
    if not numba_runs:  # the NumPy fallback: RLN after torch's own RMSprop step
        monkeypatch.setattr(rln_core, "numba_available", lambda: False)
    model = RLNRegressor(**FAST).fit(*regression)
    assert attached == [numba_runs]
    assert model.n_iter_ == FAST["epochs"] and np.isfinite(model.lambdas_).all()


@pytest.mark.parametrize("n_noise", [-1, 2.5, True, "3"])
def test_noise_columns_need_an_int_count(n_noise):
    """A float count once failed inside NumPy ("'float' object cannot be interpreted as an
    integer"), a bool counted as 1 column."""
    from rln_sklearn.datasets import add_noise_features, load_table

    X, y, names = load_table("diabetes")
    with pytest.raises(ValueError, match="Invalid n_noise"):
        add_noise_features(X, y, names, n_noise, np.random.RandomState(0))


def _fitted_attributes(estimator) -> dict:
    parameters = estimator.get_params(deep=False)
    return {key: pickle.dumps(value) for key, value in vars(estimator).items()
            if key not in parameters}


@pytest.mark.parametrize("make, refit", [
    # a refit that diverges, on data of another scale: it used to keep the new input and
    # target scaling with the old weights, and predict (wrongly) without a word
    (lambda X, y: RLNRegressor(epochs=2, random_state=0),
     lambda est, X, y: est.set_params(lr=1e12).fit(X * 100 + 5, y * 1000 - 3)),
    # refused after validate_data had recorded the new n_features_in_
    (lambda X, y: RLNRegressor(epochs=2, random_state=0),
     lambda est, X, y: est.set_params(l1=0.1).fit(X[:, :3], y)),
    # one class: classes_ and the input scaling were the new data's
    (lambda X, y: RLNClassifier(epochs=2, random_state=0),
     lambda est, X, y: est.fit(X * 10, np.full(len(y), 7))),
], ids=["diverged", "rln-and-l1", "one-class"])
def test_a_refit_that_raises_leaves_the_previous_fit(make, refit):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 5))
    y = X @ rng.normal(size=5) + 0.1 * rng.normal(size=60)
    estimator = make(X, y)
    if isinstance(estimator, RLNClassifier):
        y = (y > 0).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimator.fit(X, y)
        before, predicted = _fitted_attributes(estimator), estimator.predict(X)
        with pytest.raises(ValueError):
            refit(estimator, X, y)
    assert _fitted_attributes(estimator) == before
    np.testing.assert_array_equal(estimator.predict(X), predicted)


def test_a_first_fit_that_raises_leaves_the_estimator_unfitted():
    from sklearn.exceptions import NotFittedError

    X = np.random.default_rng(0).normal(size=(20, 3))
    estimator = RLNClassifier(epochs=1)
    with pytest.raises(ValueError, match="only one class"):
        estimator.fit(X, np.zeros(20))
    assert _fitted_attributes(estimator) == {}
    with pytest.raises(NotFittedError):
        estimator.predict(X)


def test_predict_standardizes_in_float64_as_fit_does(regression):
    """A column offset by 1e8 (float32's spacing there is 8) predicts as the unshifted data."""
    X, y = regression
    shifted = X.copy()
    shifted[:, 0] += 1e8
    plain = RLNRegressor(**FAST).fit(X, y)
    offset = RLNRegressor(**FAST).fit(shifted, y)
    np.testing.assert_allclose(offset.predict(shifted), plain.predict(X), rtol=1e-4, atol=1e-4)


def test_predict_takes_inputs_beyond_float32_that_fit_took(regression):
    X, y = regression
    X = X.copy()
    X[:, 3] = 1e39 * (1 + X[:, 3] / 10)  # finite in float64, inf in float32
    model = RLNRegressor(**FAST).fit(X, y)
    assert np.isfinite(model.predict(X)).all()


def test_is_real_marks_exactly_the_real_columns():
    from rln_sklearn.datasets import add_noise_features

    table = add_noise_features(np.ones((5, 3)), np.zeros(5), ["a", "b", "c"], 2,
                               np.random.RandomState(0))
    np.testing.assert_array_equal(table.is_real, [True, True, True, False, False])


def test_the_selection_split_is_60_20_20():
    from rln_sklearn.datasets import split_for_selection

    split = split_for_selection(np.arange(100.0).reshape(100, 1), np.arange(100.0), seed=0)
    assert (len(split.X_fit), len(split.X_val), len(split.X_test)) == (60, 20, 20)


def test_an_epochs_objective_is_the_row_weighted_mean_of_its_batches():
    """10 rows in batches of 4: 4 + 4 + 2 rows, the last batch weighted by its 2 rows."""
    from rln_sklearn._training import _train_epoch

    class PerRow:
        def __init__(self, losses):
            self.losses = losses

        def train_batch(self, rows):
            return float(np.mean(self.losses[rows]))

    assert _train_epoch(PerRow(np.ones(10)), np.arange(10), 4) == 1.0
    losses = np.arange(10, dtype=float)
    assert _train_epoch(PerRow(losses), np.arange(10), 4) == np.mean(losses)
