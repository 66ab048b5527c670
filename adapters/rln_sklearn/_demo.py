"""`rln demo`: the tutorial's comparison, plain vs L1 vs RLN, on a table plus noise columns.

Protocol, per repeat r (seed + r): append N(0, 1) noise columns, split 80/20
into train/test, hold out a quarter of train to pick the L1 coefficient, and
standardize X on the remaining rows. Every network trains on those same rows
with the same settings; the L1 network with the lowest validation MSE is the
"best L1" (the tutorial picked on the test set, which flatters L1); RLN runs
once, with its defaults (or the Theta and nu given). Test MSE is reported as
the tutorial did, next to the MSE of predicting the training mean.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Optional

import numpy as np
from sklearn.metrics import mean_squared_error
from tqdm.auto import tqdm

from rln_sklearn._estimators import RLNRegressor
from rln_sklearn.datasets import Split, add_noise_features, split_for_selection

MEAN, PLAIN, L1, RLN = "predict the mean", "plain network", "best L1", "RLN"


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """What `run_demo` compares, and how long it trains (defaults: about a minute).

    Attributes:
        noise_features: N(0, 1) columns appended to the real ones.
        repeats: independent repeats (noise, split and initialization change).
        epochs, batch_size, backend: passed to every RLNRegressor.
        l1_grid: L1 coefficients tried for the best-L1 baseline.
        avg_reg, learning_rate: RLN's Theta and nu.
        seed: repeat r uses seed + r.
    """

    noise_features: int = 1000
    repeats: int = 3
    epochs: int = 30
    batch_size: int = 10
    backend: str = "torch"
    l1_grid: tuple[float, ...] = (1e-3, 1e-2, 1e-1)
    avg_reg: float = -10.0
    learning_rate: float = 1e6
    seed: int = 0


@dataclasses.dataclass
class MethodScores:
    """One method's figures, one entry per repeat."""

    mse: list[float] = dataclasses.field(default_factory=list)
    seconds: list[float] = dataclasses.field(default_factory=list)
    sparsity: list[float] = dataclasses.field(default_factory=list)
    real_share: list[float] = dataclasses.field(default_factory=list)
    chosen: list[float] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class DemoResult:
    """Scores per method, and the last repeat's fitted networks for the figure."""

    scores: dict[str, MethodScores]
    models: dict[str, RLNRegressor]
    is_real: np.ndarray


def run_demo(X: np.ndarray, y: np.ndarray, feature_names: list[str], settings: DemoSettings,
             progress: bool = True) -> DemoResult:
    """Run the comparison on (X, y) (real columns only; noise is added here).

    Args:
        X: float, shape (n_samples, n_real). y: numeric, shape (n_samples,).
        feature_names: names of the n_real columns.
        settings: what to compare and for how long.
        progress: show a tqdm bar over the fits on stderr.
    """
    scores = {name: MethodScores() for name in (MEAN, PLAIN, L1, RLN)}
    models: dict[str, RLNRegressor] = {}
    fits = settings.repeats * (2 + len(settings.l1_grid))
    with tqdm(total=fits, desc="rln demo", unit="fit", disable=not progress,
              file=sys.stderr) as bar:
        for repeat in range(settings.repeats):
            seed = settings.seed + repeat
            table = add_noise_features(X, y, feature_names, settings.noise_features,
                                       np.random.RandomState(seed))
            split = split_for_selection(table.X, table.y, seed)
            scores[MEAN].mse.append(
                mean_squared_error(split.y_test, np.full_like(split.y_test, split.y_fit.mean())))
            candidates = {PLAIN: [_network(settings, seed, rln=False)],
                          L1: [_network(settings, seed, rln=False, l1=c) for c in settings.l1_grid],
                          RLN: [_network(settings, seed)]}
            for method, networks in candidates.items():
                best: Optional[tuple[float, float, RLNRegressor]] = None
                for network in networks:
                    start = time.perf_counter()
                    network.fit(split.X_fit, split.y_fit)
                    seconds = time.perf_counter() - start
                    validation_mse = mean_squared_error(split.y_val, network.predict(split.X_val))
                    if best is None or validation_mse < best[0]:
                        best = (validation_mse, seconds, network)
                    bar.update()
                _, seconds, network = best
                _record(scores[method], network, split, table.is_real, seconds)
                models[method] = network
    return DemoResult(scores, models, table.is_real)


def _network(settings: DemoSettings, seed: int, **params) -> RLNRegressor:
    return RLNRegressor(epochs=settings.epochs, batch_size=settings.batch_size,
                        backend=settings.backend, avg_reg=settings.avg_reg,
                        learning_rate=settings.learning_rate, random_state=seed, **params)


def _record(scores: MethodScores, network: RLNRegressor, split: Split, is_real: np.ndarray,
            seconds: float) -> None:
    scores.mse.append(mean_squared_error(split.y_test, network.predict(split.X_test)))
    scores.seconds.append(seconds)
    scores.sparsity.append(network.sparsity_)
    scores.real_share.append(float(network.feature_importances_[is_real].sum()))
    scores.chosen.append(network.l1)


def format_table(result: DemoResult, settings: DemoSettings) -> str:
    """The comparison as a fixed-width text table (mean +- std over repeats)."""
    n_real = int(result.is_real.sum())
    header = (f"{'method':<18}{'test MSE':>20}{'fit s':>8}{'sparsity':>10}"
              f"{'importance on the ' + str(n_real) + ' real inputs':>38}")
    lines = [header, "-" * len(header)]
    for method, scores in result.scores.items():
        mse = f"{np.mean(scores.mse):.5g} +- {np.std(scores.mse):.3g}"
        if method == MEAN:
            lines.append(f"{method:<18}{mse:>20}")
            continue
        lines.append(f"{method:<18}{mse:>20}{np.mean(scores.seconds):>8.1f}"
                     f"{100 * np.mean(scores.sparsity):>9.1f}%"
                     f"{100 * np.mean(scores.real_share):>37.1f}%")
    chosen = ", ".join(f"{c:g}" for c in result.scores[L1].chosen)
    lines.append(
        f"{settings.repeats} repeats, {settings.noise_features} noise inputs, "
        f"{settings.epochs} epochs, batch {settings.batch_size}, backend {settings.backend}; "
        f"L1 grid {', '.join(f'{c:g}' for c in settings.l1_grid)} (chosen per repeat on "
        f"validation: {chosen}); RLN Theta {settings.avg_reg:g}, nu {settings.learning_rate:g}")
    return "\n".join(lines)
