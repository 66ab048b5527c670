"""Accuracy benchmark: plain vs L1 vs RLN networks vs gradient boosting, on real data.

Tasks (`--tasks`):
  boston, diabetes, breast_cancer: the real table plus 1000 N(0, 1) noise
    inputs (the tutorial's construction; the real inputs are known, so the
    share of the first layer's importance on them is reported);
  khan: gene expression, 2308 genes, 83 samples, 4 tumour classes (real wide
    data where most inputs are irrelevant by nature; pooled and re-split);
  hitters: an ordinary real table (263 players, 19 inputs, log salary).
Data: the first three ship with rln_sklearn / scikit-learn, Khan and Hitters
with this benchmark (bench/data/, copied from ISLP; provenance there).

Protocol, per seed: 80/20 train/test, a quarter of train held out for
validation (60/20/20; stratified for classification); every configuration fits
on the same fit rows; per method the configuration with the best validation
loss (MSE, or log-loss) is scored on the test rows. Every method gets the same
budget of GRID_POINTS configurations:
  plain: RMSprop lr in PLAIN_LR_GRID (it has no regularization to tune);
  L1: l1 in L1_GRID;  RLN: (Theta, nu) in RLN_GRID;
  HGB: scikit-learn's HistGradientBoosting, lr x leaves in HGB_GRID;
  RLN + HGB: the average of the two selected models' outputs (the paper's
    best ensemble; no extra fits).
Networks are the tutorial's (RLNRegressor/RLNClassifier defaults: 4 layers,
RMSprop lr 1e-3, batch 10; inputs and a regression target standardized inside
the estimator). One torch/numba/OpenMP thread per process; `--jobs` fits run
side by side.

    python bench/bench_accuracy.py --jobs 2                # 5 seeds, 100 epochs
    python bench/bench_accuracy.py --quick                 # 2 seeds, 30 epochs
    python bench/bench_accuracy.py --tasks khan --epochs 50
    python bench/bench_accuracy.py --target-scaling-study --quick

Writes bench/results/accuracy.{md,json,png} (`--out` for another folder).
--target-scaling-study runs diabetes + noise twice, on the standardized target
(what RLNRegressor does) and on the raw target (the tutorial's; std about 77),
with L1 grids suited to each scale, to show what the scale costs.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.metrics import accuracy_score, log_loss, mean_squared_error
from tqdm.auto import tqdm

from rln_sklearn import RLNClassifier, RLNRegressor
from rln_sklearn.comparison import compare_paired
from rln_sklearn.datasets import add_noise_features, load_table, split_for_selection
from rln_sklearn.threads import use_one_thread_per_process

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
GRID_POINTS = 4
PLAIN_LR_GRID = (3e-4, 1e-3, 3e-3, 1e-2)
L1_GRID = (1e-4, 1e-3, 1e-2, 1e-1)
RAW_TARGET_L1_GRID = (1.0, 10.0, 100.0, 1000.0)  # L1_GRID x ~var(y) = 5900
RLN_GRID = ((-12.0, 1e6), (-10.0, 1e6), (-8.0, 1e6), (-10.0, 1e7))  # (Theta, nu)
HGB_GRID = tuple({"learning_rate": lr, "max_leaf_nodes": leaves}
                 for lr in (0.03, 0.1) for leaves in (7, 31))
assert all(len(grid) == GRID_POINTS for grid in
           (PLAIN_LR_GRID, L1_GRID, RAW_TARGET_L1_GRID, RLN_GRID, HGB_GRID))
BASELINE = "no inputs"  # predicts the training mean / class frequencies
TUNED = ("plain", "L1", "RLN", "HGB")
METHODS = (*TUNED, "RLN + HGB", BASELINE)
NETWORKS = ("plain", "L1", "RLN")


class RawTargetRLNRegressor(RLNRegressor):
    """RLNRegressor trained on y as it is, as the tutorial did (for the scaling study)."""

    _standardize_target = False


def load_khan() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Khan's 63 training and 20 test samples pooled: X (83, 2308), classes 1..4."""
    def read(name):
        with gzip.open(DATA / f"{name}.csv.gz", "rt") as f:
            return np.loadtxt(f, delimiter=",", skiprows=1)

    X = np.vstack([read("Khan_xtrain"), read("Khan_xtest")])
    y = np.concatenate([read("Khan_ytrain"), read("Khan_ytest")]).astype(int)
    return X, y, [f"G{i:04d}" for i in range(1, X.shape[1] + 1)]


def load_hitters() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Hitters with a salary (263 rows): 19 inputs (3 of them 0/1-coded), target log(Salary)."""
    import pandas as pd

    frame = pd.read_csv(DATA / "Hitters.csv").dropna(subset=["Salary"])
    for column, first in (("League", "N"), ("Division", "W"), ("NewLeague", "N")):
        frame[column] = (frame[column] == first).astype(float)
    y = np.log(frame.pop("Salary").to_numpy(np.float64))
    return frame.to_numpy(np.float64), y, [str(c) for c in frame.columns]


@dataclasses.dataclass(frozen=True)
class Task:
    """One data set and how methods are built and scored on it."""

    title: str
    load: Callable[[], tuple[np.ndarray, np.ndarray, list[str]]]
    classification: bool
    noise: int = 0  # N(0, 1) inputs appended (they get the --noise count when > 0)
    network: Optional[type] = None
    l1_grid: tuple[float, ...] = L1_GRID

    @property
    def model(self) -> type:
        if self.network is not None:
            return self.network
        return RLNClassifier if self.classification else RLNRegressor


TASKS = {
    "boston": Task("Boston housing + 1000 noise inputs (regression, MSE)",
                   lambda: load_table("boston"), False, noise=1000),
    "diabetes": Task("diabetes + 1000 noise inputs (regression, MSE)",
                     lambda: load_table("diabetes"), False, noise=1000),
    "breast_cancer": Task("breast cancer + 1000 noise inputs (classification)",
                          lambda: load_table("breast_cancer"), True, noise=1000),
    "khan": Task("Khan gene expression: 2308 genes, 83 samples, 4 classes (classification)",
                 load_khan, True),
    "hitters": Task("Hitters: 263 players, 19 inputs, log salary (regression, MSE)",
                    load_hitters, False),
    "diabetes_raw_target": Task(
        "diabetes + 1000 noise inputs, raw target (the tutorial's)",
        lambda: load_table("diabetes"), False, noise=1000, network=RawTargetRLNRegressor,
        l1_grid=RAW_TARGET_L1_GRID),
}
DEFAULT_TASKS = ("boston", "diabetes", "breast_cancer", "khan", "hitters")


def candidates(task: Task, method: str, epochs: int, batch_size: int, seed: int) -> list:
    """The unfitted configurations a method picks from (GRID_POINTS of them)."""
    def network(**params):
        return task.model(epochs=epochs, batch_size=batch_size, random_state=seed, **params)

    if method == "plain":
        return [network(rln=False, lr=lr) for lr in PLAIN_LR_GRID]
    if method == "L1":
        return [network(rln=False, l1=l1) for l1 in task.l1_grid]
    if method == "RLN":
        return [network(avg_reg=theta, learning_rate=nu) for theta, nu in RLN_GRID]
    booster = HistGradientBoostingClassifier if task.classification \
        else HistGradientBoostingRegressor
    return [booster(random_state=seed, **params) for params in HGB_GRID]


def describe(model) -> str:
    """The tuned value(s) of a configuration, for the table."""
    params = model.get_params()
    if "max_leaf_nodes" in params:
        return f"lr {params['learning_rate']:g}/leaves {params['max_leaf_nodes']}"
    if params["rln"]:
        return f"({params['avg_reg']:g}, {params['learning_rate']:g})"
    return f"l1 {params['l1']:g}" if params["l1"] else f"lr {params['lr']:g}"


@dataclasses.dataclass
class Fit:
    """What one fitted configuration left behind (no model: results travel between processes)."""

    seed: int
    method: str
    config: str
    seconds: float
    validation_loss: float
    test_outputs: np.ndarray
    sparsity: Optional[float] = None
    importances: Optional[np.ndarray] = None


def outputs(task: Task, model, X: np.ndarray) -> np.ndarray:
    """Predictions (regression) or class probabilities (classification)."""
    return model.predict_proba(X) if task.classification else model.predict(X)


def loss(task: Task, y: np.ndarray, out: np.ndarray, labels: np.ndarray) -> float:
    """The selection loss: MSE or log-loss."""
    if task.classification:
        return log_loss(y, out, labels=labels)
    return mean_squared_error(y, out)


def fit_one(task: Task, model, split, seed: int, method: str) -> Fit:
    use_one_thread_per_process()  # in a worker process; cheap to repeat
    labels = np.unique(split.y_fit)
    start = time.perf_counter()
    model.fit(split.X_fit, split.y_fit)
    seconds = time.perf_counter() - start
    fit = Fit(seed, method, describe(model), seconds,
              loss(task, split.y_val, outputs(task, model, split.X_val), labels),
              outputs(task, model, split.X_test))
    if hasattr(model, "coefs_"):
        fit.sparsity, fit.importances = float(model.sparsity_), model.feature_importances_
    return fit


def make_splits(task: Task, seeds: int, noise: int):
    X, y, names = task.load()
    splits, n_real = [], X.shape[1]
    for seed in range(seeds):
        table = add_noise_features(X, y, names, noise if task.noise else 0,
                                   np.random.RandomState(seed))
        splits.append(split_for_selection(table.X, table.y, seed,
                                          stratify=task.classification))
    return splits, n_real, len(y)


def run_task(task: Task, seeds: int, epochs: int, batch_size: int, noise: int,
             jobs: int) -> dict:
    """Every configuration of every method on every seed; the selected ones' test figures."""
    splits, n_real, n_rows = make_splits(task, seeds, noise)
    jobs_list = [(seed, method, model) for seed in range(seeds) for method in TUNED
                 for model in candidates(task, method, epochs, batch_size, seed)]
    fits: list[Fit] = []
    with tqdm(total=len(jobs_list), desc=task.title.split(":")[0][:24], unit="fit") as bar:
        if jobs == 1:
            results = (fit_one(task, model, splits[seed], seed, method)
                       for seed, method, model in jobs_list)
        else:
            from joblib import Parallel, delayed
            results = Parallel(n_jobs=jobs, return_as="generator_unordered")(
                delayed(fit_one)(task, model, splits[seed], seed, method)
                for seed, method, model in jobs_list)
        for fit in results:
            fits.append(fit)
            bar.update()
    n_inputs = splits[0].X_fit.shape[1]
    record = {m: {"test": [], "accuracy": [], "fit_s": [], "chosen": [], "sparsity": [],
                  "real_share": [], "active_inputs": []} for m in METHODS}
    for seed, split in enumerate(splits):
        labels = np.unique(split.y_fit)
        chosen = {}
        for method in TUNED:
            mine = [f for f in fits if f.seed == seed and f.method == method]
            chosen[method] = min(mine, key=lambda f: f.validation_loss)
            entry = record[method]
            entry["fit_s"].append(sum(f.seconds for f in mine))
            entry["chosen"].append(chosen[method].config)
            if chosen[method].importances is not None:
                importances = chosen[method].importances
                entry["sparsity"].append(chosen[method].sparsity)
                entry["real_share"].append(float(importances[:n_real].sum()))
                entry["active_inputs"].append(int(np.count_nonzero(importances)))
        test = {m: chosen[m].test_outputs for m in TUNED}
        test["RLN + HGB"] = (test["RLN"] + test["HGB"]) / 2
        if task.classification:
            frequencies = np.array([np.mean(split.y_fit == c) for c in labels])
            test[BASELINE] = np.tile(frequencies, (len(split.y_test), 1))
        else:
            test[BASELINE] = np.full(len(split.y_test), np.mean(split.y_fit))
        for method, out in test.items():
            record[method]["test"].append(loss(task, split.y_test, out, labels))
            if task.classification:
                record[method]["accuracy"].append(
                    accuracy_score(split.y_test, labels[np.argmax(out, axis=1)]))
    return {"title": task.title, "classification": task.classification, "rows": n_rows,
            "real_inputs": n_real, "inputs": n_inputs, "noise": n_inputs - n_real,
            "test_rows": len(splits[0].y_test), "methods": record}


def mean_std(values: list[float], digits: int) -> str:
    return f"{np.mean(values):.{digits}f} +- {np.std(values):.{digits}f}"


def format_markdown(result: dict, settings: str) -> str:
    """One task's results as a markdown table."""
    classification = result["classification"]
    methods = result["methods"]
    scale = np.mean(methods[BASELINE]["test"])
    digits = 3 if classification or scale < 10 else (1 if scale < 1000 else 0)
    metric = "test log-loss" if classification else "test MSE"
    header = ["method", metric] + (["accuracy"] if classification else []) \
        + ["sparsity", "inputs kept"] + (["importance on real inputs"] if result["noise"] else []) \
        + ["fit s (4 configs)", "chosen per seed"]
    lines = [f"**{result['title']}**; {settings}; {result['test_rows']} test rows per seed",
             "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, entry in methods.items():
        cells = [method, mean_std(entry["test"], digits)]
        if classification:
            cells.append(mean_std(entry["accuracy"], 3))
        network = bool(entry["sparsity"])
        cells.append(f"{100 * np.mean(entry['sparsity']):.1f}%" if network else "-")
        cells.append(f"{np.mean(entry['active_inputs']):.0f} of {result['inputs']}"
                     if network else "-")
        if result["noise"]:
            uniform = result["real_inputs"] / result["inputs"]
            cells.append(f"{100 * np.mean(entry['real_share']):.1f}% "
                         f"({np.mean(entry['real_share']) / uniform:.1f}x even)"
                         if network else "-")
        cells.append(f"{np.mean(entry['fit_s']):.1f}" if entry["fit_s"] else "-")
        cells.append(", ".join(entry["chosen"]) if entry["chosen"] else "-")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", paired(methods, digits)]
    return "\n".join(lines)


PAIRS = (("RLN", "L1"), ("RLN", "HGB"), ("HGB", "L1"))


def paired(methods: dict, digits: int) -> str:
    """RLN against L1 and HGB, and HGB against L1, seed by seed (same split, same noise):
    the spread of a paired difference leaves out how hard each seed's split is. "within
    noise": rln_sklearn.comparison.compare_paired's paired t test."""
    comparisons = {(first, other): compare_paired(methods[first]["test"], methods[other]["test"])
                   for first, other in PAIRS}
    parts = []
    for (first, other), comparison in comparisons.items():
        part = (f"{first} - {other} per seed {comparison.mean_difference:+.{digits}f} +- "
                f"{comparison.spread:.{digits}f}, {first} lower in "
                f"{comparison.first_lower} of {comparison.n}")
        if comparison.t is not None:
            part += f", t {comparison.t:+.2f}" + (" (within noise)" if comparison.within_noise
                                                   else "")
        parts.append(part)
    test = comparisons[PAIRS[0]]  # every method has one score per seed: one rule for all
    rule = f"within noise: {test.rule}" if test.critical_t is not None else test.rule
    return f"Paired by seed ({rule}): " + "; ".join(parts) + "."


def write_plot(results: dict, path: Path, settings: str) -> None:
    """Per task, each method's test loss relative to the no-inputs baseline, mean +- std."""
    from matplotlib.figure import Figure

    names = list(results)
    methods = [m for m in METHODS if m != BASELINE]
    colors = {"plain": "tab:gray", "L1": "tab:blue", "RLN": "tab:red", "HGB": "tab:green",
              "RLN + HGB": "tab:purple"}
    figure = Figure(figsize=(12, 1.2 + 1.3 * len(names)), layout="constrained")
    axis = figure.subplots()
    height = 0.8 / len(methods)
    rows = np.arange(len(names))[::-1]
    for k, method in enumerate(methods):
        means, stds = [], []
        for name in names:
            entry = results[name]["methods"]
            ratio = np.asarray(entry[method]["test"]) / np.asarray(entry[BASELINE]["test"])
            means.append(ratio.mean())
            stds.append(ratio.std())
        axis.barh(rows + (len(methods) / 2 - 0.5 - k) * height, means, xerr=stds,
                  height=height, color=colors[method], label=method, capsize=2)
    axis.axvline(1.0, color="black", linestyle="--", linewidth=1, label="no inputs (= 1)")
    axis.set_yticks(rows, [results[n]["title"].split(" (")[0].replace(": ", ":\n")
                           for n in names])
    axis.set_xlabel("test loss / test loss of predicting without inputs (MSE; log-loss for "
                    "classification)\nlower is better; bars: mean +- std over seeds")
    axis.set_title(f"bench/bench_accuracy.py: {settings}")
    axis.legend(loc="lower right", fontsize=9)
    figure.savefig(path, dpi=100)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 epochs, 2 seeds")
    parser.add_argument("--seeds", type=int, help="default 5 (2 with --quick)")
    parser.add_argument("--epochs", type=int, help="default 100 (30 with --quick)")
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--noise", type=int, default=1000,
                        help="noise inputs of the noise tasks (default 1000)")
    parser.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=list(DEFAULT_TASKS))
    parser.add_argument("--jobs", type=int, default=1, help="fits side by side (default 1)")
    parser.add_argument("--out", type=Path, default=HERE / "results",
                        help="folder for accuracy.md, .json, .png (default bench/results)")
    parser.add_argument("--target-scaling-study", action="store_true",
                        help="diabetes + noise on the standardized and on the raw target")
    parser.add_argument("--from-json", type=Path, metavar="PATH",
                        help="re-write the tables and plot of an earlier run's JSON (no fits)")
    args = parser.parse_args(argv)
    if args.from_json is not None:
        saved = json.loads(args.from_json.read_text())
        tables = [format_markdown(r, saved["settings"]) for r in saved["results"].values()]
        print("\n\n".join(tables))
        stem = args.from_json.with_suffix("")
        stem.with_suffix(".md").write_text("\n\n".join(tables) + "\n")
        write_plot(saved["results"], stem.with_suffix(".png"), saved["settings"])
        return
    use_one_thread_per_process()
    seeds = args.seeds or (2 if args.quick else 5)
    epochs = args.epochs or (30 if args.quick else 100)
    names = ["diabetes", "diabetes_raw_target"] if args.target_scaling_study else args.tasks
    settings = (f"{seeds} seeds, {epochs} epochs, batch {args.batch_size}, "
                f"{GRID_POINTS} configs per tuned method")
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "accuracy_scaling" if args.target_scaling_study else "accuracy"
    results, tables, start = {}, [], time.perf_counter()
    for name in names:
        results[name] = run_task(TASKS[name], seeds, epochs, args.batch_size, args.noise,
                                 args.jobs)
        tables.append(format_markdown(results[name], settings))
        print("\n" + tables[-1], flush=True)
        (args.out / f"{stem}.md").write_text("\n\n".join(tables) + "\n")
        (args.out / f"{stem}.json").write_text(json.dumps(
            {"settings": settings, "results": results}, indent=1, default=float) + "\n")
    minutes = (time.perf_counter() - start) / 60
    print(f"\n{minutes:.0f} min with --jobs {args.jobs}")
    write_plot(results, args.out / f"{stem}.png", settings)
    print(f"wrote {args.out / stem}.md, .json, .png")


if __name__ == "__main__":
    main()
