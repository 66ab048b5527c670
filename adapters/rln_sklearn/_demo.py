"""`rln demo`: the authors' tutorial experiment, plain vs L1 vs RLN (and gradient boosting).

Protocol, per repeat r (seed + r): append N(0, 1) noise columns to the real
ones, split 80/20 into train/test and hold out a quarter of train (so 60/20/20
fit/validation/test). Every method fits on the same fit rows; the estimators
standardize their inputs (and a regression target) themselves. The L1
network with the lowest validation loss is the "best L1" (the tutorial picked
on the test set, which flatters L1); RLN runs once, with Theta and nu as given
(the tutorial's best, rln_core.DEFAULTS, by default); scikit-learn's
HistGradientBoosting runs once with its defaults, as a reference. Test loss is
reported next to that of predicting the training mean (or class frequencies).
"""

from __future__ import annotations

import dataclasses
import sys
import textwrap
import time
from typing import Any, Optional

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.metrics import accuracy_score, log_loss, mean_squared_error
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from tqdm.auto import tqdm

from rln_core import DEFAULTS, Hyperparameters
from rln_sklearn._estimators import RLNClassifier, RLNRegressor
from rln_sklearn._network import hidden_widths
from rln_sklearn._training import RLN_PRECISIONS
from rln_sklearn.comparison import PairedComparison, compare_paired
from rln_sklearn.datasets import add_noise_features, split_for_selection

BASELINE, PLAIN, L1, RLN, HGB = "baseline", "plain", "l1", "rln", "hgb"
NETWORKS = (PLAIN, L1, RLN)
METHODS = (PLAIN, L1, RLN, HGB)
LABELS = {BASELINE: "predict the mean", PLAIN: "plain network", L1: "best L1", RLN: "RLN",
          HGB: "gradient boosting"}
CLASSIFICATION_BASELINE = "class frequencies"
FULL_EPOCHS, FULL_REPEATS = 100, 10  # the tutorial's
MAX_NOISE_FEATURES = 10_000
MIN_ROWS = 10
# |target| at most: the spread of the squared errors over repeats is a fourth power of the
# target (1e77**4 overflows float64); 1e90 printed inf +- inf and "within noise" verdicts
MAX_TARGET = 1e70
SEED_LIMIT = 2**32  # numpy.random.RandomState and scikit-learn's random_state
FOOTER_WIDTH = 100
MEMORY_LIMIT_GIB = 4
"""What a run may hold: every repeat's table and fitted networks stay in memory until the
table is printed (`--repeats 1000` or a 100,000-row CSV would otherwise run out of it)."""


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """What `run_demo` compares, and how long it trains (defaults: about a minute on 2 cores).

    Attributes:
        data: a label for the table ("boston", or a CSV's path), for the output.
        classification: the target is a class label (log-loss and accuracy) rather
            than a number (MSE).
        noise_features: N(0, 1) columns appended to the real ones.
        repeats: independent repeats (noise, split and initialization change).
        epochs, batch_size, backend: passed to every network.
        l1_grid: L1 coefficients tried for the best-L1 baseline.
        avg_reg, learning_rate: RLN's Theta and nu.
        rln_precision: RLN's state and arithmetic, "float64" or "float32" (the fast mode).
        seed: repeat r uses seed + r.
        jobs: fits run side by side in this many processes (1: in this one).

    Raises:
        ValueError: naming the setting, for a value out of range.
    """

    data: str = "boston"
    classification: bool = False
    noise_features: int = 1000
    repeats: int = 3
    epochs: int = 30
    batch_size: int = 10
    backend: str = "torch"
    l1_grid: tuple[float, ...] = (1e-3, 1e-2, 1e-1)
    avg_reg: float = DEFAULTS.avg_reg
    learning_rate: float = DEFAULTS.learning_rate
    rln_precision: str = "float64"
    seed: int = 0
    jobs: int = 1

    def __post_init__(self) -> None:
        Hyperparameters(avg_reg=self.avg_reg, learning_rate=self.learning_rate)
        if self.rln_precision not in RLN_PRECISIONS:
            raise ValueError(f"Invalid rln_precision: {self.rln_precision!r}; expected one of "
                             f"{RLN_PRECISIONS}")
        for name in ("repeats", "epochs", "batch_size", "jobs"):
            if getattr(self, name) < 1:
                raise ValueError(f"Invalid {name}: {getattr(self, name)!r}; expected an int >= 1")
        if not 0 <= self.noise_features <= MAX_NOISE_FEATURES:
            raise ValueError(
                f"Invalid noise_features: {self.noise_features!r}; expected 0 to "
                f"{MAX_NOISE_FEATURES} (the first layer has n * n**0.75 weights: "
                f"{MAX_NOISE_FEATURES} noise inputs already make it 1e7)")
        if not 0 <= self.seed <= SEED_LIMIT - self.repeats:
            raise ValueError(
                f"Invalid seed: {self.seed!r}; repeat r uses seed + r, which must lie in "
                f"0 .. 2**32 - 1, so expected 0 <= seed <= {SEED_LIMIT - self.repeats}")
        if not self.l1_grid or not all(np.isfinite(c) and c >= 0 for c in self.l1_grid):
            raise ValueError(f"Invalid l1_grid: {self.l1_grid!r}; expected finite values >= 0")

    @property
    def metrics(self) -> tuple[str, ...]:
        """The test figures reported, the first one also used to choose L1."""
        return ("log_loss", "accuracy") if self.classification else ("mse",)

    @property
    def is_full(self) -> bool:
        return self.epochs >= FULL_EPOCHS and self.repeats >= FULL_REPEATS


@dataclasses.dataclass
class MethodScores:
    """One method's figures, one entry per repeat (None where a figure does not apply)."""

    metrics: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    seconds: list[float] = dataclasses.field(default_factory=list)
    sparsity: list[Optional[float]] = dataclasses.field(default_factory=list)
    real_share: list[Optional[float]] = dataclasses.field(default_factory=list)
    importances: list[np.ndarray] = dataclasses.field(default_factory=list)
    chosen: list[Any] = dataclasses.field(default_factory=list)

    def mean(self, metric: str) -> float:
        return float(np.mean(self.metrics[metric]))

    def std(self, metric: str) -> float:
        return float(np.std(self.metrics[metric]))


@dataclasses.dataclass
class DemoResult:
    """Scores per method (BASELINE and METHODS), RLN's lambdas per repeat, the table's shape."""

    scores: dict[str, MethodScores]
    lambdas: list[np.ndarray]
    feature_names: list[str]
    is_real: np.ndarray
    n_rows: int
    seconds: float

    @property
    def n_real(self) -> int:
        return int(self.is_real.sum())

    @property
    def n_inputs(self) -> int:
        return len(self.is_real)


def check_table(X: np.ndarray, y: np.ndarray, settings: DemoSettings) -> None:
    """Refuse a table the demo cannot run on, before anything trains.

    Raises:
        ValueError: no input column, too few rows, labels that are not classes, a
            class too small to split, non-finite values, or a target whose squared
            errors would overflow.
    """
    if X.ndim != 2 or X.shape[1] == 0:
        raise ValueError("the table has no input column (only the target): the demo "
                         "compares methods on real inputs plus noise, not on noise alone")
    if len(X) < MIN_ROWS:
        raise ValueError(f"the table has {len(X)} rows; the demo splits them 60/20/20 "
                         f"(fit/validation/test) and needs at least {MIN_ROWS}")
    if not np.isfinite(X).all():
        raise ValueError("the inputs contain inf or NaN values (fill or drop them first)")
    needed = memory_needed(len(X), X.shape[1], settings) / 2**30
    if needed > MEMORY_LIMIT_GIB:
        raise ValueError(
            f"this run would hold about {needed:.1f} GiB (every repeat's table with its noise "
            f"inputs, and its fitted networks), more than {MEMORY_LIMIT_GIB} GiB: lower "
            "--repeats or --noise-features, or use fewer rows")
    if settings.classification:
        try:
            check_classification_targets(y)
        except ValueError:  # e.g. continuous labels (0.5, 1.5, ...)
            raise ValueError(f"--classification needs class labels (integers or strings); "
                             f"the target is {type_of_target(y)}: drop --classification for "
                             "a regression") from None
        _, counts = np.unique(y, return_counts=True)
        if len(counts) < 2:
            raise ValueError("the target has a single class; classification needs two or more")
        for seed in range(settings.seed, settings.seed + settings.repeats):  # `run_demo`'s
            try:
                split_for_selection(np.zeros((len(y), 1)), y, seed, stratify=True)
            except ValueError as error:
                raise ValueError(f"the classes are too small for a stratified 60/20/20 split "
                                 f"(class sizes {sorted(counts.tolist())}; seed {seed}): "
                                 f"{error}") from None
        return
    y = np.asarray(y, dtype=np.float64)
    if not np.isfinite(y).all():
        raise ValueError("the target contains inf or NaN values")
    if np.max(np.abs(y)) > MAX_TARGET:
        raise ValueError(f"the target reaches {np.max(np.abs(y)):.3g}: its squared errors "
                         "would overflow in the spread over repeats (the fourth power of "
                         "the target); rescale it (e.g. to thousands or millions)")


def memory_needed(n_rows: int, n_real: int, settings: DemoSettings) -> int:
    """Bytes a run holds: per repeat the table with its noise (float64, and once more split
    60/20/20) and the first layers of its networks (float32; RLN's lambdas float64)."""
    n_inputs = n_real + settings.noise_features
    first_layer = n_inputs * hidden_widths(n_inputs, 4)[0]
    networks = (2 + len(settings.l1_grid)) * first_layer * 4 + first_layer * 8
    return settings.repeats * (2 * n_rows * n_inputs * 8 + networks)


def run_demo(X: np.ndarray, y: np.ndarray, feature_names: list[str], settings: DemoSettings,
             progress: bool = True) -> DemoResult:
    """Run the comparison on (X, y) (real columns only; noise is added here).

    Args:
        X: float, shape (n_samples, n_real). y: shape (n_samples,), numbers or
            (classification) labels.
        feature_names: names of the n_real columns.
        settings: what to compare and for how long.
        progress: show a tqdm bar over the fits on stderr.

    Raises:
        ValueError: as `check_table`.
    """
    check_table(X, y, settings)
    start = time.perf_counter()
    scores = {name: MethodScores() for name in (BASELINE, *METHODS)}
    lambdas: list[np.ndarray] = []
    is_real = np.arange(X.shape[1] + settings.noise_features) < X.shape[1]
    splits, tasks = [], []
    for repeat in range(settings.repeats):
        seed = settings.seed + repeat
        table = add_noise_features(X, y, feature_names, settings.noise_features,
                                   np.random.RandomState(seed))
        splits.append(split_for_selection(table.X, table.y, seed,
                                          stratify=settings.classification))
        tasks += [(repeat, method, model) for method, model in _candidates(settings, seed)]
    fitted = _fit_all(tasks, splits, settings, progress)
    for repeat, split in enumerate(splits):
        _merge(scores[BASELINE].metrics, _baseline(split, settings))
        for method in METHODS:
            candidates = fitted[repeat, method]
            best = min(candidates, key=lambda f: f.validation_loss)
            _record(scores[method], best, split, is_real, settings,
                    seconds=sum(f.seconds for f in candidates))
            if method == RLN:
                lambdas.append(best.model.lambdas_)
    return DemoResult(scores, lambdas, [str(name) for name in feature_names], is_real,
                      len(X), time.perf_counter() - start)


def _candidates(settings: DemoSettings, seed: int) -> list[tuple[str, Any]]:
    network = RLNClassifier if settings.classification else RLNRegressor

    def make(**params):
        return network(epochs=settings.epochs, batch_size=settings.batch_size,
                       backend=settings.backend, avg_reg=settings.avg_reg,
                       learning_rate=settings.learning_rate, random_state=seed, **params)

    booster = HistGradientBoostingClassifier if settings.classification \
        else HistGradientBoostingRegressor
    return ([(PLAIN, make(rln=False))]
            + [(L1, make(rln=False, l1=c)) for c in settings.l1_grid]
            + [(RLN, make(rln_precision=settings.rln_precision)),
               (HGB, booster(random_state=seed))])


@dataclasses.dataclass
class _Fitted:
    model: Any
    seconds: float
    validation_loss: float
    test_outputs: np.ndarray


def _fit_one(model, split, classification: bool, one_thread: bool) -> _Fitted:
    """Fit `model` on the split's fit rows; its validation loss and test outputs."""
    if one_thread:  # in a worker process
        from rln_sklearn.threads import use_one_thread_per_process
        use_one_thread_per_process()
    start = time.perf_counter()
    model.fit(split.X_fit, split.y_fit)
    seconds = time.perf_counter() - start
    if classification:
        labels = np.unique(split.y_fit)
        validation = log_loss(split.y_val, model.predict_proba(split.X_val), labels=labels)
        return _Fitted(model, seconds, validation, model.predict_proba(split.X_test))
    validation = mean_squared_error(split.y_val, model.predict(split.X_val))
    return _Fitted(model, seconds, validation, model.predict(split.X_test))


def _fit_all(tasks, splits, settings: DemoSettings, progress: bool) -> dict:
    """Fit every (repeat, method, model) task, here or on `settings.jobs` processes."""
    fitted: dict[tuple[int, str], list[_Fitted]] = {}
    with tqdm(total=len(tasks), desc="rln demo", unit="fit", disable=not progress,
              file=sys.stderr) as bar:
        if settings.jobs == 1:
            results = (_fit_one(model, splits[repeat], settings.classification, False)
                       for repeat, _, model in tasks)
        else:
            from joblib import Parallel, delayed
            results = Parallel(n_jobs=settings.jobs, return_as="generator")(
                delayed(_fit_one)(model, splits[repeat], settings.classification, True)
                for repeat, _, model in tasks)
        for (repeat, method, _), result in zip(tasks, results):
            fitted.setdefault((repeat, method), []).append(result)
            bar.update()
    return fitted


def _merge(metrics: dict[str, list[float]], figures: dict[str, float]) -> dict:
    for name, value in figures.items():
        metrics.setdefault(name, []).append(float(value))
    return metrics


def _test_figures(split, outputs: np.ndarray, classification: bool) -> dict[str, float]:
    if classification:
        labels = np.unique(split.y_fit)
        return {"log_loss": log_loss(split.y_test, outputs, labels=labels),
                "accuracy": accuracy_score(split.y_test, labels[np.argmax(outputs, axis=1)])}
    return {"mse": mean_squared_error(split.y_test, outputs)}


def _baseline(split, settings: DemoSettings) -> dict[str, float]:
    if settings.classification:
        labels, counts = np.unique(split.y_fit, return_counts=True)
        outputs = np.tile(counts / counts.sum(), (len(split.y_test), 1))
    else:
        outputs = np.full(len(split.y_test), np.mean(split.y_fit))
    return _test_figures(split, outputs, settings.classification)


def _record(scores: MethodScores, best: _Fitted, split, is_real: np.ndarray,
            settings: DemoSettings, seconds: float) -> None:
    _merge(scores.metrics, _test_figures(split, best.test_outputs, settings.classification))
    scores.seconds.append(seconds)
    model = best.model
    if hasattr(model, "coefs_"):
        scores.sparsity.append(float(model.sparsity_))
        scores.importances.append(model.feature_importances_)
        scores.real_share.append(float(model.feature_importances_[is_real].sum()))
        scores.chosen.append(float(model.l1))
    else:
        scores.sparsity.append(None)
        scores.real_share.append(None)


@dataclasses.dataclass(frozen=True)
class Paired:
    """RLN minus another method, repeat by repeat (same noise, split and seed), lower is
    better; "within noise" by `rln_sklearn.comparison.compare_paired`."""

    other: str
    comparison: PairedComparison

    @property
    def mean(self) -> float:
        return self.comparison.mean_difference

    @property
    def verdict(self) -> str:
        """"within noise", "RLN better", "<the other> better", or for one repeat "one
        repeat: no noise estimate"."""
        within_noise = self.comparison.within_noise
        if within_noise is None:
            return "one repeat: no noise estimate"
        if within_noise:
            return "within noise"
        return "RLN better" if self.mean < 0 else f"{LABELS[self.other]} better"

    def sentence(self, metric: str) -> str:
        comparison = self.comparison
        return (f"RLN - {LABELS[self.other]} {metric} {self.mean:+.3g} +- "
                f"{comparison.spread:.2g}, RLN lower in {comparison.first_lower} of "
                f"{comparison.n}: {self.verdict}")


def paired(result: "DemoResult", other: str, metric: str) -> Paired:
    """RLN against `other` on `metric` (a loss: lower is better), paired by repeat."""
    return Paired(other, compare_paired(result.scores[RLN].metrics[metric],
                                        result.scores[other].metrics[metric]))


def _mean_or_none(values: list) -> Optional[float]:
    return None if not values or values[0] is None else float(np.mean(values))


def to_json(result: DemoResult, settings: DemoSettings) -> dict:
    """The results as plain JSON types: {"data", "settings", "table", "baseline", "methods",
    "seconds"}.

    Per method: "<metric>_mean", "<metric>_std" and "<metric>" (per repeat) for
    each metric (mse; or log_loss and accuracy), "fit_s" (mean seconds per
    repeat, every configuration tried included), "sparsity" and
    "importance_on_real_inputs" (means; None for gradient boosting), and for
    the L1 network "l1_chosen" (per repeat).
    """
    def figures(scores: MethodScores) -> dict:
        out: dict[str, Any] = {}
        for metric, values in scores.metrics.items():
            out[f"{metric}_mean"] = float(np.mean(values))
            out[f"{metric}_std"] = float(np.std(values))
            out[metric] = [float(v) for v in values]
        return out

    methods = {}
    for method in METHODS:
        scores = result.scores[method]
        entry = figures(scores)
        entry.update(fit_s=float(np.mean(scores.seconds)),
                     sparsity=_mean_or_none(scores.sparsity),
                     importance_on_real_inputs=_mean_or_none(scores.real_share))
        if method == L1:
            entry["l1_chosen"] = scores.chosen
        methods[method] = entry
    return {
        "data": settings.data,
        "settings": {**dataclasses.asdict(settings), "l1_grid": list(settings.l1_grid)},
        "table": {"rows": result.n_rows, "real_inputs": result.n_real,
                  "noise_inputs": result.n_inputs - result.n_real,
                  "feature_names": result.feature_names},
        "seconds": result.seconds,
        "baseline": figures(result.scores[BASELINE]),
        "methods": methods,
    }


def format_table(result: DemoResult, settings: DemoSettings) -> str:
    """The comparison as a fixed-width text table (mean +- std over repeats) and its footer."""
    n_real, n_inputs = result.n_real, result.n_inputs
    metrics = settings.metrics
    names = {"mse": "test MSE", "log_loss": "test log-loss", "accuracy": "accuracy"}
    share_title = f"importance on the {n_real} real inputs" if n_inputs > n_real else ""
    width = len(share_title)
    header = (f"{'method':<19}" + "".join(f"{names[m]:>19}" for m in metrics)
              + f"{'fit s':>8}{'sparsity':>10}" + (f"  {share_title}" if width else ""))
    lines = [f"{settings.data}: {result.n_rows} rows, {n_real} real inputs + "
             f"{n_inputs - n_real} noise inputs; {_count(settings.repeats, 'repeat')}",
             header, "-" * len(header)]
    for method in (BASELINE, *METHODS):
        scores = result.scores[method]
        label = LABELS[method]
        if method == BASELINE and settings.classification:
            label = "class frequencies"
        cells = "".join(f"{_mean_std(scores.metrics[m]):>19}" for m in metrics)
        if method == BASELINE:
            lines.append(f"{label:<19}{cells}")
            continue
        sparsity = _mean_or_none(scores.sparsity)
        share = _mean_or_none(scores.real_share)
        line = f"{label:<19}{cells}{np.mean(scores.seconds):>8.1f}"
        line += f"{100 * sparsity:>9.1f}%" if sparsity is not None else f"{'-':>10}"
        if width:
            line += f"  {100 * share:>{width - 1}.1f}%" if share is not None else f"  {'-':>{width}}"
        lines.append(line)
    lines += footer(result, settings)
    return "\n".join(lines)


def footer(result: DemoResult, settings: DemoSettings) -> list[str]:
    """What the table's numbers mean and how they were made."""
    n_real, n_inputs = result.n_real, result.n_inputs
    chosen = ", ".join(f"{c:g}" for c in result.scores[L1].chosen)
    selection = "validation log-loss" if settings.classification else "validation MSE"
    length = (f"{_count(settings.epochs, 'epoch')}, {_count(settings.repeats, 'repeat')}"
              + ("" if settings.is_full else
                 f" (the tutorial: {FULL_EPOCHS} epochs, {FULL_REPEATS} repeats; "
                 "`rln demo --full`)"))
    lines = [
        f"{length}; batch {settings.batch_size}, RMSprop, backend {settings.backend}; "
        f"each repeat new noise, split (60/20/20 fit/validation/test) and seed; "
        f"{result.seconds:.0f} s in all.",
        f"best L1: l1 in {', '.join(f'{c:g}' for c in settings.l1_grid)}, chosen per repeat on "
        f"{selection} ({chosen}); RLN: Theta {settings.avg_reg:g}, nu "
        f"{settings.learning_rate:g}, one configuration; gradient boosting: "
        f"scikit-learn's HistGradientBoosting, defaults. fit s: per repeat, all configurations.",
        "sparsity: share of the first layer's weights exactly 0.",
    ]
    if n_inputs > n_real:
        lines.append(
            f"importance: an input's share of the first layer's sum |w| (inputs standardized); "
            f"if spread evenly, 1/{n_inputs} per input, {100 * n_real / n_inputs:.1f}% on "
            f"the {n_real} real inputs.")
    metric = "log-loss" if settings.classification else "MSE"
    comparisons = [paired(result, other, settings.metrics[0]) for other in (L1, HGB)]
    test = comparisons[0].comparison
    rule = f"within noise = {test.rule}" if test.critical_t is not None else test.rule
    lines.append(f"paired by repeat (same noise and split; {rule}): "
                 + "; ".join(c.sentence(metric) for c in comparisons) + ".")
    lines.append("Results vary with the seed and the machine.")
    return [wrapped for line in lines
            for wrapped in textwrap.wrap(line, FOOTER_WIDTH, subsequent_indent="  ")]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _mean_std(values: list[float]) -> str:
    mean, std = float(np.mean(values)), float(np.std(values))
    if abs(mean) >= 1e6:
        return f"{mean:.4g} +- {std:.2g}"
    if abs(mean) >= 100:
        return f"{mean:.0f} +- {std:.0f}"
    if abs(mean) >= 1:
        return f"{mean:.1f} +- {std:.1f}"
    return f"{mean:.3f} +- {std:.3f}"
