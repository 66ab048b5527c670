"""The authors' RLN Keras tutorial, on Keras 3 and `rln_keras.RLNCallback`.

Shavitt & Segal's notebook (Implementations/Keras_tutorial.ipynb in their
repository) re-written for today's stack, step for step:
1. the depth of an unregularized network (grown while the test MSE improves),
2. the L1 coefficient of its first layer (x10 while it improves),
3. RLN on the first layer over a grid of (Theta, nu),
4. the closing comparison: best RLN vs best L1, and exp(Theta) vs l1.

What changed: `keras.wrappers.scikit_learn.KerasRegressor` is gone in Keras 3,
so `test_model` calls `fit` itself and passes the RLN callback to it (the
notebook patched `model.fit` to do that); layers take a `keras.Input` instead
of `input_dim`; the test MSE is computed from the predictions (the notebook's
`score` was the model's loss, which adds the L1 penalty to the L1 rows). The callback itself is a drop-in:
`RLNCallback(model.layers[0], norm=1, avg_reg=Theta, learning_rate=nu)`.

Data: by default scikit-learn's diabetes set (10 features, target scaled to
unit variance, so an MSE of 1 is the variance of y), plus 1000 N(0, 1) noise
features, all standardized: no network needed. `--boston` loads Boston housing
with `keras.datasets.boston_housing` (downloads it; the notebook's data, MSE in
($1000)^2 as there).

    pip install -e ".[keras,sklearn]"   # or PYTHONPATH=.:adapters in the repository root
    python examples/tutorial_keras.py --quick   # 1 to 2 minutes on 2 cores (24 fits)
    python examples/tutorial_keras.py           # the notebook: 100 epochs, 10 repeats
"""

from __future__ import annotations

import argparse
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import keras
import numpy as np
from keras import regularizers
from keras.layers import Dense
from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import rln_core
from rln_keras import RLNCallback
from rln_sklearn.comparison import compare_paired

MJTCP = 32292  # Michael Jordan total career points: the notebook's seed
NOTEBOOK_GRID = ((-8, 1e6), (-10, 1e5), (-10, 1e6), (-10, 1e7), (-12, 1e6))
BOSTON_L1 = (1e-2, 1e-1, 1.0, 10.0)  # the notebook's search
# The L1 penalty competes with the MSE: the diabetes target has unit variance,
# about 1/100 of Boston's, so its search starts 100 times lower.
DIABETES_L1 = (1e-4, 1e-3, 1e-2, 1e-1)
Data = Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
BuildFn = Callable[[], Tuple[keras.Model, List[keras.callbacks.Callback]]]


def load_data(boston: bool, noise_features: int, seed: int = MJTCP) -> Data:
    """(x_train, y_train, x_test, y_test) with noise features added and X standardized."""
    rng = np.random.default_rng(seed)
    if boston:
        (x_train, y_train), (x_test, y_test) = keras.datasets.boston_housing.load_data()
    else:
        x, y = load_diabetes(return_X_y=True)
        y = (y - y.mean()) / y.std()
        x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2,
                                                            random_state=seed)
    x_train = np.hstack([x_train, rng.normal(size=(len(x_train), noise_features))])
    x_test = np.hstack([x_test, rng.normal(size=(len(x_test), noise_features))])
    scaler = StandardScaler().fit(x_train)
    return (scaler.transform(x_train).astype("float32"), y_train.astype("float32"),
            scaler.transform(x_test).astype("float32"), y_test.astype("float32"))


def base_model(input_dim: int, layers: int = 4, l1: float = 0.0) -> BuildFn:
    """The notebook's network: widths shrink geometrically from input_dim to 1.

    With input_dim 1013 and 4 layers: 1013 -> 180 -> 32 -> 6 -> 1, ReLU,
    Glorot-normal init, RMSprop; an L1 penalty on the first layer only.
    """
    if layers < 2:
        raise ValueError(f"layers must be >= 2, got {layers}")

    def build_fn():
        model = keras.Sequential([keras.Input((input_dim,))])
        inner_l1 = l1
        for width in np.exp(np.log(input_dim) * np.arange(layers - 1, 0, -1) / layers):
            model.add(Dense(int(np.round(width)), kernel_initializer="glorot_normal",
                            activation="relu", kernel_regularizer=regularizers.l1(inner_l1)))
            inner_l1 = 0.0  # for efficiency only the first layer is regularized
        model.add(Dense(1, kernel_initializer="glorot_normal"))
        model.compile(loss="mean_squared_error", optimizer="rmsprop")
        return model, []

    return build_fn


def rln_model(input_dim: int, layers: int = 4, **rln_kwargs) -> BuildFn:
    """The same network with RLN (an `RLNCallback`) on its first layer."""
    def build_fn():
        model, _ = base_model(input_dim, layers)()
        return model, [RLNCallback(model.layers[0], **rln_kwargs)]

    return build_fn


def test_model(build_fn: BuildFn, model_name: str, data: Data, epochs: int,
               repeats: int) -> np.ndarray:
    """Train `repeats` fresh models; print their mean test MSE, return each one's, shape
    (repeats,).

    Every call starts from `keras.utils.set_random_seed(MJTCP)` on the same split, so
    repeat i of two networks of one depth starts from the same initial weights: the
    repeats pair up (`closing_comparison`).
    """
    x_train, y_train, x_test, y_test = data
    keras.utils.set_random_seed(MJTCP)
    results, sparsity = np.zeros(repeats), np.zeros(repeats)
    for i in range(repeats):
        model, callbacks = build_fn()
        model.fit(x_train, y_train, epochs=epochs, batch_size=10, verbose=0,
                  callbacks=callbacks)
        predictions = model.predict(x_test, batch_size=len(x_test), verbose=0)
        results[i] = np.mean((predictions.ravel() - y_test) ** 2)
        if callbacks:
            sparsity[i] = callbacks[0].sparsity()
    note = f", first layer {100 * sparsity.mean():.0f}% zeros" if sparsity.any() else ""
    spread = float(results.std(ddof=1)) if repeats > 1 else float("nan")  # the sample std
    print(f"{model_name}: {results.mean():.2f} ({spread:.2f}) MSE{note}", flush=True)
    return results


def depth_search(data: Data, epochs: int, repeats: int, max_layers: int) -> int:
    """Grow the unregularized network from 2 layers while the test MSE improves."""
    input_dim = data[0].shape[1]
    best_layers, best_score = 2, test_model(base_model(input_dim, 2), "Network with 2 layers",
                                            data, epochs, repeats).mean()
    for layers in range(3, max_layers + 1):
        score = test_model(base_model(input_dim, layers), f"Network with {layers} layers",
                           data, epochs, repeats).mean()
        if score >= best_score:
            break
        best_layers, best_score = layers, score
    print(f"The best results of an unregularized network are achieved with depth {best_layers}")
    return best_layers


def l1_search(data: Data, layers: int, epochs: int, repeats: int,
              l1_values: Sequence[float]) -> Tuple[float, np.ndarray]:
    """Try L1 coefficients in order while the mean test MSE improves; (best l1, its test
    MSE per repeat)."""
    input_dim = data[0].shape[1]
    best_l1, best_scores = None, np.array([np.inf])
    for l1 in l1_values:
        scores = test_model(base_model(input_dim, layers, l1=l1),
                            f"L1 regularization of {l1:.0E}", data, epochs, repeats)
        if scores.mean() >= best_scores.mean():
            break
        best_l1, best_scores = l1, scores
    print(f"The best L1 regularization is achieved with l1 = {best_l1:.0E}")
    return best_l1, best_scores


def rln_grid(data: Data, layers: int, epochs: int, repeats: int,
             grid: Sequence[Tuple[float, float]]) -> Tuple[float, float, np.ndarray]:
    """RLN over (Theta, nu) pairs; (best Theta, best nu, its test MSE per repeat)."""
    input_dim = data[0].shape[1]
    best = (None, None, np.array([np.inf]))
    for theta, nu in grid:
        scores = test_model(rln_model(input_dim, layers, norm=1, avg_reg=theta,
                                      learning_rate=nu),
                            f"RLN with Theta={theta:g} and learning_rate={nu:.1E}", data,
                            epochs, repeats)
        if scores.mean() < best[2].mean():
            best = (theta, nu, scores)
    print(f"The best RLN is achieved with Theta={best[0]:g} and learning_rate={best[1]:.1E}")
    return best


def closing_comparison(rln_scores: Sequence[float], l1_scores: Sequence[float]) -> str:
    """The notebook's verdict, RLN vs the best L1, over repeats paired by initial weights.

    A difference that `rln_sklearn.comparison.compare_paired`'s paired t test does not
    find is reported as noise, not as a win; one repeat has no estimate of the noise,
    and gets no verdict.
    """
    rln, l1 = np.asarray(rln_scores), np.asarray(l1_scores)
    comparison = compare_paired(l1, rln)  # > 0: RLN lower
    if comparison.within_noise is None:
        return (f"RLN {rln.mean():.4f} vs L1 {l1.mean():.4f} over 1 repeat: no estimate of "
                "the noise, so no verdict (run --repeats 2 or more)")
    figures = (f"RLN {rln.mean():.4f} (std {rln.std(ddof=1):.4f}) vs L1 {l1.mean():.4f} "
               f"(std {l1.std(ddof=1):.4f}) over {comparison.n} repeats")
    test = (f"the difference {abs(comparison.mean_difference):.4f}, paired by repeat: "
            f"|t| = {abs(comparison.t):.2f} (within noise when {comparison.rule})")
    if comparison.within_noise:
        return (f"RLN and L1 regularization on this dataset are within noise: {figures}; "
                f"{test}")
    verdict = "outperforms" if comparison.mean_difference > 0 else "is outperformed by"
    return f"RLN {verdict} L1 regularization on this dataset: {figures}; {test}"


def parse_grid(text: str) -> List[Tuple[float, float]]:
    """"-8:1e6,-10:1e5" -> [(-8.0, 1e6), (-10.0, 1e5)]."""
    try:
        pairs = [item.split(":") for item in text.split(",") if item]
        grid = [(float(theta), float(nu)) for theta, nu in pairs]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"grid must look like '-8:1e6,-10:1e5' (Theta:nu pairs), got {text!r}") from None
    if not grid:
        raise argparse.ArgumentTypeError("grid is empty")
    for theta, nu in grid:  # refused now, not after the depth and L1 searches
        try:
            rln_core.Hyperparameters(avg_reg=theta, learning_rate=nu)
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"grid pair {theta:g}:{nu:g}: {error}") from None
    return grid


def _at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an int >= minimum."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return parse


def parse_l1(text: str) -> List[float]:
    """"1e-3,1e-2" -> [0.001, 0.01]: finite values >= 0."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or not all(np.isfinite(v) and v >= 0 for v in values):
        raise argparse.ArgumentTypeError(
            f"--l1 must be finite values >= 0 separated by commas, got {text!r}")
    return values


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="5 epochs, 2 repeats, depth <= 4: up to 24 fits, 1 to 2 "
                             "minutes on 2 cores")
    parser.add_argument("--epochs", type=_at_least(1),
                        help="epochs per fit (default 100; quick: 5)")
    parser.add_argument("--repeats", type=_at_least(1),
                        help="fits per setting (default 10; quick: 2)")
    parser.add_argument("--max-layers", type=_at_least(2),
                        help="deepest network tried (default 6; quick: 4)")
    parser.add_argument("--l1", type=parse_l1,
                        help="L1 values tried in order (default 1e-4,1e-3,1e-2,1e-1; "
                             "--boston: 1e-2,1e-1,1,10 as in the notebook)")
    parser.add_argument("--grid", type=parse_grid,
                        default=list(NOTEBOOK_GRID),
                        help="Theta:nu pairs, e.g. --grid=-10:1e6,-12:1e6 (with '=', as "
                             "the value starts with '-')")
    parser.add_argument("--noise-features", type=_at_least(0), default=1000)
    parser.add_argument("--boston", action="store_true",
                        help="Boston housing via keras.datasets (downloads)")
    args = parser.parse_args(argv)
    quick = {"epochs": 5, "repeats": 2, "max_layers": 4}
    full = {"epochs": 100, "repeats": 10, "max_layers": 6}
    defaults = {**(quick if args.quick else full),
                "l1": BOSTON_L1 if args.boston else DIABETES_L1}
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, float]:
    """Run the tutorial; return the chosen settings and their mean test MSEs."""
    args = parse_args(argv)
    data = load_data(args.boston, args.noise_features)
    print(f"{'Boston housing' if args.boston else 'Diabetes'}: {data[0].shape[0]} train, "
          f"{data[2].shape[0]} test rows, {data[0].shape[1]} features "
          f"({args.noise_features} of them noise); {args.epochs} epochs, "
          f"{args.repeats} repeats per setting", flush=True)
    layers = depth_search(data, args.epochs, args.repeats, args.max_layers)
    l1, l1_scores = l1_search(data, layers, args.epochs, args.repeats, args.l1)
    theta, nu, rln_scores = rln_grid(data, layers, args.epochs, args.repeats, args.grid)
    print(closing_comparison(rln_scores, l1_scores))
    print("The average regularization of RLN against the L1 coefficient: "
          f"exp(Theta) = {np.exp(theta):.1E} vs l1 = {l1:.1E}")
    return {"layers": layers, "l1": l1, "l1_mse": float(l1_scores.mean()), "theta": theta,
            "nu": nu, "rln_mse": float(rln_scores.mean())}


if __name__ == "__main__":
    main()
