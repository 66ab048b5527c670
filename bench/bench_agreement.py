"""Agreement benchmark: do rln_torch, rln_keras (TF, JAX, torch) and rln_jax train RLN alike?

docs/RLN_SPEC.md ("Numerical equivalence") promises that training runs across
frameworks agree over short runs in float64 (tests/test_keras_cross_framework.py)
and "in distribution (test loss over seeds) over long runs". This script
measures the second claim: the same training through every route, over seeds,
compared with the reference route seed by seed.

Routes (`--routes`), RLNRegressor with its defaults otherwise:
  torch-f64: backend="torch", rln_precision="float64" (the reference);
  torch-f32: backend="torch", rln_precision="float32" (the core's fast mode);
  keras-tensorflow, keras-jax, keras-torch: backend="keras", rln_precision="float64",
    under KERAS_BACKEND=tensorflow, jax, torch (rln_keras.RLNCallback);
and the same network and protocol written here against the other two adapters:
  keras-in-graph: Keras on TensorFlow, rln_keras.RLNOptimizer around RMSprop (RLN
    inside the train step, float64 math);
  jax: JAX + optax, `optax.chain(optax.rmsprop(...), optax.masked(rln_jax.rln(), ...))`
    at JAX's default precision (x64 off: float32 lambdas and math).
Each route runs in its own worker processes (this script with a hidden
--worker): KERAS_BACKEND is read once, when Keras is imported. One
torch/numba/BLAS/TensorFlow/XLA thread per process; `--jobs` workers side by side.
The Keras and JAX routes start from their own initial weights (Keras's GlorotNormal
and JAX's glorot_normal draw other numbers than torch's from the same seed) and the
last two shuffle the rows with their own generators, so no route replays another's
trajectory: what can agree is the distribution over seeds.

Tasks (`--tasks`): diabetes and Boston housing, each plus 1000 N(0, 1) noise
inputs (`--noise`), drawn per seed as in bench/bench_accuracy.py.

Protocol, per seed s: noise from RandomState(s), an 80/20 train/test split with
random_state=s (the test rows of bench_accuracy's split), the same for every
route (checked: each worker reports a fingerprint of its split);
RLNRegressor(random_state=s, epochs=E) with the tutorial's network and defaults
(4 layers, Theta -10, nu 1e6, RMSprop lr 1e-3, batch 10; inputs and target
standardized inside the estimator); no early stopping; score: test MSE in the
target's units. Reported per task and route: mean +- sd (ddof 1) of the test
MSE over seeds, mean sparsity_ (share of first-layer weights exactly 0), mean
share of feature_importances_ on the real inputs, fit seconds per seed; any
ConvergenceWarning of a fit (runaway lambdas, a constant predictor) under the table.

Against the reference, per route: the paired differences d_s = MSE_route(s) -
MSE_reference(s), their mean, standard error sd(d, ddof 1) / sqrt(n) and
t = mean / standard error, by rln_sklearn.comparison.compare_paired (a two-sided
95% paired t test). Rule: "agree" when the difference is within seed noise there,
|t| < scipy.stats.t.ppf(0.975, n - 1) (2.776 for 5 seeds); "DIFFERS" otherwise;
"n/a" with fewer than 2 seeds. "agree" means no difference was detected at this
many seeds, not that there is none (compare_paired's docstring gives the test's
power: a true difference of 3 standard errors is flagged in about 62% of runs with
5 seeds and 76% with 10). The reference's seed-to-seed sd is printed for scale.

    python bench/bench_agreement.py --jobs 1               # 5 seeds, 100 epochs, both tasks
    python bench/bench_agreement.py --quick                # 2 seeds, 20 epochs
    python bench/bench_agreement.py --routes torch-f64 keras-jax --tasks boston

Writes bench/results/agreement.{md,json} (`--out` for another folder); exits
with status 1 when a route's worker failed (its row then says FAILED and the
JSON holds the error).

Runtime (torch 2.13, Keras 3.15 on TensorFlow 2.21, JAX 0.10, this project's 2-core
machine): the default run, all seven routes, 9 minutes with --jobs 2 on a quiet
machine; the first five routes alone took 16 minutes with --jobs 1 on one busy core.
Per fit of 100 epochs (quiet machine): torch 6-10 s, Keras on TensorFlow or JAX
10-12 s, on torch 18-20 s, RLNOptimizer on TensorFlow 32-37 s, rln_jax 10 s; a
worker process adds 1-15 s of start-up and imports. --quick takes about 2 minutes;
the smoke test's settings (2 seeds, 1 epoch, 50 noise inputs, one task, --jobs 2)
under a minute.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Optional

import numpy as np

from rln_sklearn.comparison import PairedComparison, compare_paired

HERE = Path(__file__).resolve().parent


@dataclasses.dataclass(frozen=True)
class Route:
    """One implementation of the same training."""

    title: str
    backend: str  # RLNRegressor's backend ("jax" and "keras-in-graph": this script's trainers)
    precision: str  # RLNRegressor's rln_precision
    keras_backend: Optional[str] = None  # KERAS_BACKEND of the worker process


ROUTES = {
    "torch-f64": Route("torch, float64 RLN (reference)", "torch", "float64"),
    "torch-f32": Route("torch, float32 RLN (fast mode)", "torch", "float32"),
    "keras-tensorflow": Route("Keras on TensorFlow, float64 RLN", "keras", "float64",
                              "tensorflow"),
    "keras-jax": Route("Keras on JAX, float64 RLN", "keras", "float64", "jax"),
    "keras-torch": Route("Keras on torch, float64 RLN", "keras", "float64", "torch"),
    "keras-in-graph": Route("Keras on TensorFlow, RLNOptimizer (in-graph), float64 RLN",
                            "keras-in-graph", "float64", "tensorflow"),
    "jax": Route("JAX + optax, rln_jax (x64 off: float32 RLN)", "jax", "float32"),
}
REFERENCE = "torch-f64"
TASKS = {"diabetes": "diabetes", "boston": "Boston housing"}  # rln_sklearn.datasets tables



# ---------------------------------------------------------------------------------------
# The verdict's words (the rule: rln_sklearn.comparison.compare_paired)


def verdict(comparison: PairedComparison) -> str:
    """"agree" (within seed noise), "DIFFERS", or "n/a" (fewer than 2 seeds)."""
    return {None: "n/a", True: "agree", False: "DIFFERS"}[comparison.within_noise]


# ---------------------------------------------------------------------------------------
# Worker: fits one route on one task, every seed, in its own process


def make_split(task: str, seed: int, noise: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """(X_train, X_test, y_train, y_test, n_real) of a task for one seed: the real table
    plus `noise` N(0, 1) columns from RandomState(seed), split 80/20 with random_state=seed."""
    from sklearn.model_selection import train_test_split

    from rln_sklearn.datasets import add_noise_features, load_table

    X, y, names = load_table(task)
    table = add_noise_features(X, y, names, noise, np.random.RandomState(seed))
    X_train, X_test, y_train, y_test = train_test_split(table.X, table.y, test_size=0.2,
                                                        random_state=seed)
    return X_train, X_test, y_train, y_test, table.n_real


def fingerprint(*arrays: np.ndarray) -> str:
    """A short hash of the arrays' bytes: equal splits have equal fingerprints."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def run_worker(spec: dict) -> dict:
    """Fit spec["route"] on spec["task"] for every seed in spec["seeds"]; the figures."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import mean_squared_error

    from rln_sklearn import RLNRegressor
    from rln_sklearn.threads import use_one_thread_per_process

    use_one_thread_per_process()
    route = ROUTES[spec["route"]]
    if route.keras_backend == "tensorflow":  # before TensorFlow runs anything
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    fits = []
    for seed in spec["seeds"]:
        X_train, X_test, y_train, y_test, n_real = make_split(spec["task"], seed, spec["noise"])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            start = time.perf_counter()
            if route.backend in TRAINERS:
                predicted, kernel, objective = TRAINERS[route.backend](
                    X_train, y_train, X_test, seed, spec["epochs"])
            else:
                model = RLNRegressor(backend=route.backend, rln_precision=route.precision,
                                     epochs=spec["epochs"], random_state=seed)
                model.fit(X_train, y_train)
                predicted, kernel = model.predict(X_test), model.coefs_[0]
                objective = model.loss_curve_[-1]
            seconds = time.perf_counter() - start
        shares = np.abs(kernel).sum(axis=1) / max(np.abs(kernel).sum(), np.finfo(float).tiny)
        fits.append({
            "seed": seed, "split": fingerprint(X_train, X_test, y_train, y_test),
            "test_mse": float(mean_squared_error(y_test, predicted)),
            "sparsity": float(np.mean(kernel == 0)),
            "real_share": float(shares[:n_real].sum()),
            "train_objective": float(objective), "fit_s": seconds,
            "warnings": sorted({str(w.message) for w in caught
                                if issubclass(w.category, ConvergenceWarning)})})
    return {"rows": len(y_train) + len(y_test), "test_rows": len(y_test),
            "real_inputs": n_real, "inputs": X_train.shape[1], "fits": fits}


# The routes outside RLNRegressor: the same protocol written against rln_jax and
# rln_keras.RLNOptimizer (RLNRegressor's documented network: LAYERS Dense layers, hidden
# widths max(6, round(exp(log(n) * k / LAYERS))) for k = LAYERS-1 .. 1, ReLU,
# Glorot-normal kernels, zero biases; inputs and target standardized with the training
# rows' mean and sd; RMSprop lr 1e-3, rho 0.9, epsilon 1e-7 outside the square root;
# batches of 10 in a new random order each epoch; on the first kernel RLN's defaults,
# rln_core.DEFAULTS, which rln_jax.rln and RLNOptimizer take as theirs).
LAYERS, BATCH, LEARNING_RATE = 4, 10, 1e-3


def _widths(n_features: int) -> list[int]:
    return [max(6, int(np.round(np.exp(np.log(n_features) * k / LAYERS))))
            for k in range(LAYERS - 1, 0, -1)] + [1]


def _standardized(X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """float32 (X_train, y_train (n, 1), X_test) standardized, and y's mean and sd."""
    mean, sd = X_train.mean(axis=0), X_train.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    y_mean, y_sd = float(y_train.mean()), float(y_train.std())
    return (((X_train - mean) / sd).astype(np.float32),
            ((y_train - y_mean) / y_sd).astype(np.float32).reshape(-1, 1),
            ((X_test - mean) / sd).astype(np.float32), y_mean, y_sd)


def fit_jax(X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray, seed: int,
            epochs: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The network in JAX, `optax.chain(rmsprop, masked(rln_jax.rln()))`, JAX's default
    precision (x64 off): (test predictions, first kernel (n_in, width), last epoch's loss)."""
    import jax
    import jax.numpy as jnp
    import optax

    import rln_jax

    X, y, X_test, y_mean, y_sd = _standardized(X_train, y_train, X_test)
    keys = jax.random.split(jax.random.PRNGKey(seed), LAYERS)
    sizes = [X.shape[1], *_widths(X.shape[1])]
    glorot = jax.nn.initializers.glorot_normal()
    params = [{"kernel": glorot(key, (n_in, n_out), jnp.float32),
               "bias": jnp.zeros(n_out, jnp.float32)}
              for key, n_in, n_out in zip(keys, sizes[:-1], sizes[1:])]
    first = [{"kernel": i == 0, "bias": False} for i in range(LAYERS)]
    optimizer = optax.chain(optax.rmsprop(LEARNING_RATE, decay=0.9, eps=1e-7, eps_in_sqrt=False),
                            optax.masked(rln_jax.rln(), first))

    def predict(params, x):
        for layer in params[:-1]:
            x = jax.nn.relu(x @ layer["kernel"] + layer["bias"])
        return x @ params[-1]["kernel"] + params[-1]["bias"]

    def loss(params, x, y):
        return jnp.mean((predict(params, x) - y) ** 2)

    @jax.jit
    def step(params, state, x, y):
        value, grads = jax.value_and_grad(loss)(params, x, y)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value

    state, rng, total = optimizer.init(params), np.random.RandomState(seed), 0.0
    for _ in range(epochs):
        order, total = rng.permutation(len(X)), 0.0
        for start in range(0, len(X), BATCH):
            rows = order[start:start + BATCH]
            params, state, value = step(params, state, X[rows], y[rows])
            total += float(value) * len(rows)
    predicted = np.asarray(predict(params, X_test), np.float64).ravel() * y_sd + y_mean
    return predicted, np.asarray(params[0]["kernel"]), total / len(X)


def fit_keras_in_graph(X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray,
                       seed: int, epochs: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The network in Keras on TensorFlow, RLN inside the train step
    (`rln_keras.RLNOptimizer` around RMSprop, float64 RLN math): as `fit_jax`."""
    import keras

    from rln_keras import RLNOptimizer

    X, y, X_test, y_mean, y_sd = _standardized(X_train, y_train, X_test)
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((X.shape[1],))] + [
        keras.layers.Dense(width, activation="relu" if i < LAYERS - 1 else None,
                           kernel_initializer=keras.initializers.GlorotNormal(seed + i))
        for i, width in enumerate(_widths(X.shape[1]))])
    model.compile(optimizer=RLNOptimizer(keras.optimizers.RMSprop(LEARNING_RATE),
                                         model.layers[0]), loss="mse")
    history = model.fit(X, y, batch_size=BATCH, epochs=epochs, shuffle=True, verbose=0)
    predicted = model.predict(X_test, verbose=0).astype(np.float64).ravel() * y_sd + y_mean
    return predicted, np.array(model.layers[0].kernel.numpy()), history.history["loss"][-1]


TRAINERS = {"jax": fit_jax, "keras-in-graph": fit_keras_in_graph}


def launch(route: str, task: str, seeds: list[int], epochs: int, noise: int) -> dict:
    """Run one worker process (this script, --worker) and return its figures, or
    {"error": ...} when it failed; "wall_s" is the process's wall time."""
    from bench_keras import thread_environment  # this folder: the script's sys.path[0]

    # one thread per pool, set before the worker imports its framework
    environment = {**os.environ, **thread_environment(1), "TF_CPP_MIN_LOG_LEVEL": "2"}
    if ROUTES[route].keras_backend is not None:
        environment["KERAS_BACKEND"] = ROUTES[route].keras_backend
    with tempfile.TemporaryDirectory() as folder:
        result_path = Path(folder) / "result.json"
        spec = {"route": route, "task": task, "seeds": seeds, "epochs": epochs,
                "noise": noise, "result": str(result_path)}
        start = time.perf_counter()
        done = subprocess.run([sys.executable, __file__, "--worker"], input=json.dumps(spec),
                              env=environment, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            return {"error": f"worker exit {done.returncode}:\n{done.stderr[-3000:]}",
                    "wall_s": wall}
        return {**json.loads(result_path.read_text()), "wall_s": wall}


def worker_main() -> None:
    spec = json.loads(sys.stdin.read())
    Path(spec["result"]).write_text(json.dumps(run_worker(spec)))


# ---------------------------------------------------------------------------------------
# Parent: collects, compares, reports


def collect(task: str, runs: dict[str, dict], noise: int) -> dict:
    """One task's per-route figures and comparisons (JSON-ready), from the workers' output."""
    done = {route: run for route, run in runs.items() if "error" not in run}
    if REFERENCE in done:
        reference = [f["test_mse"] for f in done[REFERENCE]["fits"]]
        splits = [f["split"] for f in done[REFERENCE]["fits"]]
        for route, run in done.items():
            if [f["split"] for f in run["fits"]] != splits:
                raise RuntimeError(f"{task}: route {route} trained on other splits than "
                                   f"{REFERENCE}; the routes must share each seed's split")
    any_run = next(iter(done.values()), {})
    result = {"title": f"{TASKS[task]} + {noise} N(0, 1) noise inputs",
              **{key: any_run.get(key) for key in ("rows", "test_rows", "real_inputs", "inputs")},
              "routes": {}}
    for route, run in runs.items():
        if "error" in run:
            result["routes"][route] = {"error": run["error"], "wall_s": run["wall_s"]}
            continue
        fits = run["fits"]
        entry = {key: [f[key] for f in fits] for key in
                 ("test_mse", "sparsity", "real_share", "train_objective", "fit_s")}
        entry["warnings"] = [f"seed {f['seed']}: {w}" for f in fits for w in f["warnings"]]
        entry["wall_s"] = run["wall_s"]
        if route != REFERENCE and REFERENCE in done:
            comparison = compare_paired(entry["test_mse"], reference)
            entry["comparison"] = {**dataclasses.asdict(comparison),
                                   "verdict": verdict(comparison)}
        result["routes"][route] = entry
    if REFERENCE in done:
        result["reference_sd"] = float(np.std(reference, ddof=1)) if len(reference) > 1 else None
    return result


def number(value: Optional[float], digits: int, sign: bool = False,
           significant: bool = False) -> str:
    """`value` with `digits` decimals ("n/a" for None); `significant`: more decimals where
    needed to show 3 significant figures (a difference far below the scores' scale)."""
    if value is None:
        return "n/a"
    if significant and 0 < abs(value) < math.inf:
        digits = min(12, max(digits, 2 - math.floor(math.log10(abs(value)))))
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def format_markdown(result: dict, settings: str) -> str:
    """One task's two tables: the routes' figures, and each route against the reference."""
    routes = result["routes"]
    scores = [np.mean(r["test_mse"]) for r in routes.values() if "error" not in r]
    scale = np.mean(scores) if scores else 1.0
    digits = 3 if scale < 10 else (1 if scale < 1000 else 0)
    header = ["route", "test MSE (mean +- sd)", "sparsity", "importance on real inputs",
              "fit s per seed"]
    lines = [f"**{result['title']}** ({result['rows']} rows, {result['inputs']} inputs, "
             f"{result['test_rows']} test rows per seed); {settings}",
             "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for route, entry in routes.items():
        if "error" in entry:
            lines.append(f"| {ROUTES[route].title} | FAILED (see agreement.json) | - | - | - |")
            continue
        mse = entry["test_mse"]
        sd = float(np.std(mse, ddof=1)) if len(mse) > 1 else None
        uniform = result["real_inputs"] / result["inputs"]
        share = float(np.mean(entry["real_share"]))
        lines.append(f"| {ROUTES[route].title} | {np.mean(mse):.{digits}f} +- "
                     f"{number(sd, digits)} | {100 * np.mean(entry['sparsity']):.1f}% | "
                     f"{100 * share:.1f}% ({share / uniform:.1f}x even) | "
                     f"{np.mean(entry['fit_s']):.1f} |")
    warned = [f"{route} {w}" for route, entry in routes.items()
              for w in entry.get("warnings", [])]
    if warned:
        lines += ["", "ConvergenceWarnings during fits: " + "; ".join(warned) + "."]
    compared = {route: entry["comparison"] for route, entry in routes.items()
                if "comparison" in entry}
    if not compared:
        return "\n".join(lines)
    stored = next(iter(compared.values()))  # every route has one score per seed: one rule
    test = PairedComparison(**{field.name: stored[field.name]
                               for field in dataclasses.fields(PairedComparison)
                               if field.name in stored})
    n = test.n
    rule = (f"agree when {test.rule}, else DIFFERS" if test.critical_t is not None
            else "n/a: a verdict needs at least 2 seeds")
    lines += ["", f"Against the reference, paired by seed (route - reference test MSE, "
              f"n = {n}; the reference's seed-to-seed sd is "
              f"{number(result.get('reference_sd'), digits)}): {rule}.", "",
              "| route | mean difference | standard error | t | verdict |", "|---|---|---|---|---|"]
    for route, comparison in compared.items():
        lines.append(f"| {ROUTES[route].title} | "
                     f"{number(comparison['mean_difference'], digits, True, True)} | "
                     f"{number(comparison['standard_error'], digits, significant=True)} | "
                     f"{number(comparison['t'], 2, sign=True)} | {comparison['verdict']} |")
    return "\n".join(lines)


def format_wall_times(results: dict, routes: list[str]) -> str:
    """Per route, its fits' seconds and its worker processes' wall seconds, over all tasks."""
    lines = ["**Wall time per route** (all tasks and seeds; processes: with start-up and "
             "imports)", "", "| route | fits s | worker processes s |", "|---|---|---|"]
    for route in routes:
        entries = [r["routes"][route] for r in results.values()]
        fits = sum(sum(e["fit_s"]) for e in entries if "error" not in e)
        lines.append(f"| {ROUTES[route].title} | {fits:.0f} | "
                     f"{sum(e['wall_s'] for e in entries):.0f} |")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds, 20 epochs")
    parser.add_argument("--seeds", type=int, help="seeds 0..N-1 (default 5; 2 with --quick)")
    parser.add_argument("--epochs", type=int, help="default 100 (20 with --quick)")
    parser.add_argument("--noise", type=int, default=1000,
                        help="N(0, 1) noise inputs appended (default 1000)")
    parser.add_argument("--routes", nargs="+", choices=list(ROUTES), default=list(ROUTES),
                        help=f"default all; must include the reference, {REFERENCE}")
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--jobs", type=int, default=1,
                        help="worker processes side by side (default 1)")
    parser.add_argument("--out", type=Path, default=HERE / "results",
                        help="folder for agreement.md and .json (default bench/results)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main()
        return
    if REFERENCE not in args.routes:
        parser.error(f"--routes must include the reference route {REFERENCE}: every other "
                     "route is compared with it")
    seeds = args.seeds or (2 if args.quick else 5)
    epochs = args.epochs or (20 if args.quick else 100)
    if seeds < 1 or epochs < 1 or args.jobs < 1 or args.noise < 0:
        parser.error("--seeds, --epochs and --jobs must be at least 1, --noise at least 0")
    routes = [REFERENCE, *(route for route in dict.fromkeys(args.routes) if route != REFERENCE)]
    settings = (f"{seeds} seeds, {epochs} epochs, RLNRegressor defaults (Theta -10, nu 1e6, "
                "RMSprop lr 1e-3, batch 10), no early stopping")
    units = [(task, route) for task in dict.fromkeys(args.tasks) for route in routes]
    start = time.perf_counter()
    runs = {}
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(launch, route, task, list(range(seeds)), epochs, args.noise):
                   (task, route) for task, route in units}
        for future in as_completed(futures):
            unit = futures[future]
            runs[unit] = future.result()
            status = "FAILED" if "error" in runs[unit] else "done"
            print(f"[{time.perf_counter() - start:6.0f} s] {status}: {unit[1]} on {unit[0]} "
                  f"({runs[unit]['wall_s']:.0f} s)", file=sys.stderr, flush=True)
    results = {task: collect(task, {route: runs[task, route] for route in routes}, args.noise)
               for task in dict.fromkeys(args.tasks)}
    tables = [format_markdown(result, settings) for result in results.values()]
    tables.append(format_wall_times(results, routes))
    minutes = (time.perf_counter() - start) / 60
    tables.append(f"Total {minutes:.1f} min with --jobs {args.jobs}.")
    print("\n\n".join(tables))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "agreement.md").write_text("\n\n".join(tables) + "\n")
    (args.out / "agreement.json").write_text(json.dumps(
        {"settings": settings, "seeds": seeds, "epochs": epochs, "noise": args.noise,
         "reference": REFERENCE, "rule": f"agree when |t| < scipy.stats.t.ppf(0.975, n - 1) "
         f"for the paired differences route - {REFERENCE} "
         "(rln_sklearn.comparison.compare_paired); n/a for n < 2",
         "routes": {r: ROUTES[r].title for r in routes}, "results": results,
         "minutes": minutes}, indent=1) + "\n")
    print(f"wrote {args.out / 'agreement'}.md, .json", file=sys.stderr)
    failed = [f"{route} on {task}" for task, route in units if "error" in runs[task, route]]
    if failed:
        for task, route in units:
            if "error" in runs[task, route]:
                print(f"\n{route} on {task}: {runs[task, route]['error']}", file=sys.stderr)
        raise SystemExit(f"bench_agreement: failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
