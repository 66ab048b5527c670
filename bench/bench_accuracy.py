"""Accuracy benchmark: the tutorial's comparison on two tables plus 1000 noise columns.

Data: scikit-learn's diabetes (regression, test MSE, as the tutorial printed)
and breast cancer (classification, test log-loss and accuracy), each with 1000
N(0, 1) noise columns appended. Per seed: 80/20 train/test, a quarter of train
held out for validation, X standardized on the remaining fit rows.

Methods, each given the same tuning budget (GRID_POINTS configurations, the
one with the best validation loss is reported on the test rows):
"no inputs" (the training mean or class frequencies, for scale), plain
network (no tuning), best L1 network, RLN over a (Theta, nu) grid,
scikit-learn's HistGradientBoosting, and RLN + HGB (average of the two
selected models' predictions or probabilities: the paper's best ensemble).
Runs with one torch and one numba thread per process (`rln_sklearn.threads`).
Networks are the tutorial's (RLNRegressor/RLNClassifier defaults: 4 layers,
RMSprop lr 1e-3, batch 10).

    python bench/bench_accuracy.py            # tutorial protocol: 100 epochs, 5 seeds
    python bench/bench_accuracy.py --quick    # 30 epochs, 2 seeds (a few minutes)
    python bench/bench_accuracy.py --target-scaling-study --quick

--target-scaling-study runs the regression twice, on the standardized target
(what RLNRegressor does) and on the raw diabetes target (the tutorial's; std
about 77), with grids suited to each scale, to show what the scale costs.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Callable

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.metrics import accuracy_score, log_loss, mean_squared_error
from tqdm.auto import tqdm

from rln_sklearn import RLNClassifier, RLNRegressor
from rln_sklearn.datasets import load_noisy, split_for_selection
from rln_sklearn.threads import use_one_thread_per_process

GRID_POINTS = 4
BASELINE = "no inputs"  # predicts the training mean / class frequencies
L1_GRID = (1e-4, 1e-3, 1e-2, 1e-1)
RAW_TARGET_L1_GRID = (1.0, 10.0, 100.0, 1000.0)  # L1_GRID x ~var(y) = 5900
RLN_GRID = ((-12.0, 1e6), (-10.0, 1e6), (-8.0, 1e6), (-10.0, 1e7))  # (Theta, nu)
HGB_GRID = tuple({"learning_rate": lr, "max_leaf_nodes": leaves}
                 for lr in (0.03, 0.1) for leaves in (7, 31))
assert len(L1_GRID) == len(RAW_TARGET_L1_GRID) == len(RLN_GRID) == len(HGB_GRID) == GRID_POINTS


class RawTargetRLNRegressor(RLNRegressor):
    """RLNRegressor trained on y as it is, as the tutorial did (for the scaling study)."""

    _standardize_target = False


@dataclasses.dataclass(frozen=True)
class Task:
    """One data set and how methods are built and scored on it."""

    title: str
    data: str
    classification: bool
    network: type
    l1_grid: tuple[float, ...]


TASKS = {
    "diabetes": Task("diabetes + 1000 noise inputs (regression)", "diabetes", False,
                     RLNRegressor, L1_GRID),
    "breast_cancer": Task("breast cancer + 1000 noise inputs (classification)",
                          "breast_cancer", True, RLNClassifier, L1_GRID),
    "diabetes_raw_target": Task("diabetes + 1000 noise inputs, raw target (the tutorial's)",
                                "diabetes", False, RawTargetRLNRegressor, RAW_TARGET_L1_GRID),
}


def candidates(task: Task, method: str, epochs: int, batch_size: int, seed: int) -> list:
    """The unfitted configurations a method may pick from (GRID_POINTS, or 1 for plain)."""
    def network(**params):
        return task.network(epochs=epochs, batch_size=batch_size, random_state=seed, **params)

    if method == "plain":
        return [network(rln=False)]
    if method == "L1":
        return [network(rln=False, l1=l1) for l1 in task.l1_grid]
    if method == "RLN":
        return [network(avg_reg=theta, learning_rate=nu) for theta, nu in RLN_GRID]
    booster = HistGradientBoostingClassifier if task.classification \
        else HistGradientBoostingRegressor
    return [booster(random_state=seed, **params) for params in HGB_GRID]


def constant_outputs(task: Task, y_fit: np.ndarray, n: int) -> np.ndarray:
    """The no-information baseline: the training mean, or the training class frequencies."""
    if task.classification:
        return np.tile(np.bincount(y_fit, minlength=2) / len(y_fit), (n, 1))
    return np.full(n, y_fit.mean())


def outputs(task: Task, model, X: np.ndarray) -> np.ndarray:
    """Predictions (regression) or class probabilities (classification)."""
    return model.predict_proba(X) if task.classification else model.predict(X)


def loss(task: Task, y: np.ndarray, out: np.ndarray) -> float:
    """The selection loss: MSE or log-loss."""
    return log_loss(y, out, labels=[0, 1]) if task.classification else mean_squared_error(y, out)


def run_task(task: Task, seeds: int, epochs: int, batch_size: int,
             noise: int) -> dict[str, dict[str, list[float]]]:
    """Every method on every seed; per method, lists of test figures and fit seconds."""
    methods = ("plain", "L1", "RLN", "HGB")
    results: dict[str, dict[str, list[float]]] = {}
    fits = seeds * (1 + 3 * GRID_POINTS)
    with tqdm(total=fits, desc=task.data, unit="fit") as bar:
        for seed in range(seeds):
            table = load_noisy(task.data, noise, seed)
            split = split_for_selection(table.X, table.y, seed, stratify=task.classification)
            chosen = {}
            for method in methods:
                chosen[method] = select(task, candidates(task, method, epochs, batch_size, seed),
                                        split, bar)
            test_outputs = {method: outputs(task, model, split.X_test)
                            for method, (model, _) in chosen.items()}
            test_outputs["RLN + HGB"] = (test_outputs["RLN"] + test_outputs["HGB"]) / 2
            test_outputs[BASELINE] = constant_outputs(task, split.y_fit, len(split.y_test))
            for method, out in test_outputs.items():
                seconds = chosen[method][1] if method in chosen else np.nan
                record = results.setdefault(method, {})
                for name, value in test_figures(task, split.y_test, out).items():
                    record.setdefault(name, []).append(value)
                record.setdefault("fit s", []).append(seconds)
                if method in chosen:
                    record.setdefault("chosen", []).append(describe(chosen[method][0]))
    return results


def select(task: Task, models: list, split, bar) -> tuple:
    """Fit every configuration; return (the one with the lowest validation loss, total fit s)."""
    best, best_loss, seconds = None, np.inf, 0.0
    for model in models:
        start = time.perf_counter()
        model.fit(split.X_fit, split.y_fit)
        seconds += time.perf_counter() - start
        validation_loss = loss(task, split.y_val, outputs(task, model, split.X_val))
        if validation_loss < best_loss:
            best, best_loss = model, validation_loss
        bar.update()
    return best, seconds


def test_figures(task: Task, y: np.ndarray, out: np.ndarray) -> dict[str, float]:
    if task.classification:
        return {"log-loss": log_loss(y, out, labels=[0, 1]),
                "accuracy": accuracy_score(y, out.argmax(axis=1))}
    return {"MSE": mean_squared_error(y, out)}


def describe(model) -> str:
    """The tuned value(s) of a selected model, for the table."""
    params = model.get_params()
    if "max_leaf_nodes" in params:
        return f"lr {params['learning_rate']:g}/leaves {params['max_leaf_nodes']}"
    if params["rln"]:
        return f"({params['avg_reg']:g}, {params['learning_rate']:g})"
    return f"l1 {params['l1']:g}" if params["l1"] else "-"


def mean_std(values: list[float]) -> str:
    """'mean +- std', to the unit for large figures (MSE), to 1e-3 for small ones."""
    mean, std = np.mean(values), np.std(values)
    return f"{mean:.0f} +- {std:.0f}" if abs(mean) >= 100 else f"{mean:.3f} +- {std:.3f}"


def format_table(title: str, results: dict, settings: str) -> str:
    figures = [name for name in next(iter(results.values())) if name not in ("fit s", "chosen")]
    header = f"{'method':<12}" + "".join(f"{name:>22}" for name in figures) \
        + f"{'fit s (all configs)':>21}  chosen per seed"
    lines = [f"{title}; {settings}", header, "-" * len(header)]
    for method, record in results.items():
        cells = "".join(f"{mean_std(record[n]):>22}" for n in figures)
        seconds = np.mean(record["fit s"])
        seconds_cell = f"{seconds:>21.1f}" if np.isfinite(seconds) else f"{'-':>21}"
        lines.append(f"{method:<12}{cells}{seconds_cell}  {', '.join(record.get('chosen', []))}")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 epochs, 2 seeds")
    parser.add_argument("--seeds", type=int, help="default 5 (2 with --quick)")
    parser.add_argument("--epochs", type=int, help="default 100 (30 with --quick)")
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--noise", type=int, default=1000, help="noise columns (default 1000)")
    parser.add_argument("--tasks", nargs="+", choices=("diabetes", "breast_cancer"),
                        default=["diabetes", "breast_cancer"])
    parser.add_argument("--target-scaling-study", action="store_true",
                        help="diabetes on the standardized and on the raw target")
    args = parser.parse_args(argv)
    use_one_thread_per_process()
    seeds = args.seeds or (2 if args.quick else 5)
    epochs = args.epochs or (30 if args.quick else 100)
    names = ["diabetes", "diabetes_raw_target"] if args.target_scaling_study else args.tasks
    settings = f"{seeds} seeds, {epochs} epochs, batch {args.batch_size}, " \
               f"{GRID_POINTS} configs per tuned method"
    tables = []
    for name in names:
        results = run_task(TASKS[name], seeds, epochs, args.batch_size, args.noise)
        tables.append(format_table(TASKS[name].title, results, settings))
    print("\n\n".join(tables))


if __name__ == "__main__":
    main()
