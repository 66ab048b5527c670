"""Benchmark of one RLN update: the core's implementations against their floors and baselines.

Prints, per weight tensor (float32, a mid-training state from `rln_core.testing`),
the median time of one update of: the NumPy reference, the numba kernel on one
thread and on all threads (`rln_core.update`, which checks W and the state at every
call), the kernel called through a `rln_core.PreparedUpdate` made beforehand (the
checks done once, as torch's optimizer checks its parameters once; also in the
float32 compute mode), the in-place NumPy path, the authors' pandas
formulation (`bench/pandas_rln.py`), one copy of the state's bytes (the memory
floor), the numba kernel with a float32 state (and the copy of that state), the
numba kernel's float32 compute mode (float32 state, compute_dtype=np.float32), and
a torch RMSprop step on a tensor of the same size (on as many threads as numba
has: NUMBA_NUM_THREADS=1 compares one thread with one), and that RMSprop step fused
with the RLN update in one kernel (`rln_core.fused.FusedStep`, both state modes;
its ratio to torch's step is what RLN adds to an optimizer step); each the best of 3 rounds
over all columns, so a slow spell of a shared machine hits every column
alike); then the ratios, with the speed issue's targets next to them: against
torch RMSprop (judged on the one-shot `rln_core.update`; the prepared ratios are
printed without a verdict) and pandas on the tutorial's first layer (179 x 1013,
kernel (1013, 179)), against the state copy and one thread on tensors of 1e6 elements
and more. Then start-up costs, each in fresh interpreters: `import rln_core`,
the first update with an empty numba cache (JIT compile) and from the cache.
The tables are Markdown, ready for the README.

    python bench/bench_core.py                      # about 3 minutes on 2 cores
    python bench/bench_core.py --quick              # under a minute
    python bench/bench_core.py --sizes 1013x179 1000000 --repeats 31
    NUMBA_NUM_THREADS=1 python bench/bench_core.py --quick   # the one-thread targets

(The "1 thread / all threads" target needs numba's default thread count and
free cores; the RMSprop targets are one thread against one.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numba  # noqa: E402  (after the path set-up, like the imports below)

import rln_core  # noqa: E402
from rln_core.testing import UpdateCase  # noqa: E402

TUTORIAL_SHAPE = (1013, 179)  # the tutorial's first Dense kernel, Keras layout (in, out)
DEFAULT_SIZES = ("1000", "10000", "100000", "1013x179", "1000000", "10000000")
QUICK_SIZES = ("1000", "1013x179", "1000000")
HYPERPARAMETERS = {"avg_reg": -10.0, "learning_rate": 1e6, "norm": 1}

# Targets of the speed issue: on the tutorial layer, one thread (run with
# NUMBA_NUM_THREADS=1 so that torch runs on one thread too), and on large tensors;
# and of an earlier issue for start-up.
TARGET_NUMBA_OVER_TORCH = 2.0  # the default (float64) state
TARGET_F32_COMPUTE_OVER_TORCH = 1.0  # the float32 state, computed in float32
TARGET_PANDAS_OVER_NUMBA = 20.0
TARGET_LARGE_NUMBA_OVER_COPY = 2.0  # 1e6 elements and more
TARGET_LARGE_ONE_OVER_ALL_THREADS = 1.0  # more than: threads pay off when cores are free
LARGE_ELEMENTS = 1_000_000
TARGET_COLD_S = 3.0
TARGET_CACHED_S = 0.5
TARGET_IMPORT_S = 0.3

COLUMNS = ("reference", "numba 1 thread", "numba all threads", "numba prepared",
           "numpy in place", "pandas", "state copy", "numba f32 state", "numba f32 compute",
           "f32 compute prepared", "f32 state copy", "torch RMSprop", "fused RMSprop+RLN",
           "fused f32 compute")


# --- timing ---------------------------------------------------------------------------------

def median_seconds(run: Callable[[], object], prepare: Optional[Callable[[], object]] = None,
                   repeats: int = 15, budget_s: float = 1.0) -> float:
    """Median wall time of `run()` over up to `repeats` calls, after one warm-up call.

    `prepare()` runs untimed before every call (e.g. to restore the inputs). The
    loop stops early, after at least 3 timed calls, once the timed calls used `budget_s`.
    """
    times: List[float] = []
    for attempt in range(repeats + 1):
        if prepare is not None:
            prepare()
        start = time.perf_counter()
        run()
        elapsed = time.perf_counter() - start
        if attempt > 0:
            times.append(elapsed)
        if len(times) >= 3 and sum(times) > budget_s:
            break
    return statistics.median(times)


def parse_shape(text: str) -> Tuple[int, ...]:
    """'1013x179' -> (1013, 179); '1000000' -> (1000, 1000) (rows of 1000 columns)."""
    if "x" in text:
        return tuple(int(part) for part in text.split("x"))
    size = int(float(text))
    if size <= 1000:
        return (1, size)
    return (size // 1000, 1000)


# --- the implementations, one update each -----------------------------------------------------

class CoreInputs:
    """Float32 weights and a mid-training RLN state, restorable before every timed update."""

    def __init__(self, shape: Tuple[int, ...], state_dtype: str = "float64"):
        self.weights, self.state = UpdateCase(
            "bench", shape, state_dtype=state_dtype, seed=7).make()
        self._saved = (self.weights.copy(), self.state.copy())

    def restore(self) -> None:
        """Put back the weights and state the benchmark started from."""
        weights, state = self._saved
        np.copyto(self.weights, weights)
        for name in ("lambdas", "prev_weights", "prev_reg"):
            np.copyto(getattr(self.state, name), getattr(state, name))
        self.state.steps = state.steps

    def state_arrays(self) -> List[np.ndarray]:
        """The arrays an update rewrites besides the weights."""
        return [self.state.lambdas, self.state.prev_weights, self.state.prev_reg]


def time_core(inputs: CoreInputs, impl: str, repeats: int, budget_s: float,
              compute_dtype: Optional[type] = None) -> float:
    """One in-place `rln_core.update`, from the same inputs every time."""
    return median_seconds(
        lambda: rln_core.update(inputs.weights, inputs.state, impl=impl,
                                compute_dtype=compute_dtype, **HYPERPARAMETERS),
        prepare=inputs.restore, repeats=repeats, budget_s=budget_s)


def time_numba(inputs: CoreInputs, threads: int, repeats: int, budget_s: float,
               compute_dtype: Optional[type] = None) -> float:
    """The numba kernel with `threads` threads (restores the default afterwards)."""
    default = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        return time_core(inputs, "numba", repeats, budget_s, compute_dtype)
    finally:
        numba.set_num_threads(default)


def time_prepared(inputs: CoreInputs, repeats: int, budget_s: float,
                  compute_dtype: Optional[type] = None) -> float:
    """One call of a `rln_core.PreparedUpdate` made once beforehand (numba, numba's threads):
    the checks of W and the state run at construction, as torch's optimizer checks its
    parameters once, and each call checks only what can change (steps, hyperparameters)."""
    prepared = rln_core.PreparedUpdate(inputs.weights, inputs.state, impl="numba",
                                       compute_dtype=compute_dtype)
    hyperparameters = rln_core.Hyperparameters(**HYPERPARAMETERS)
    return median_seconds(lambda: prepared(hyperparameters), prepare=inputs.restore,
                          repeats=repeats, budget_s=budget_s)


def time_reference(inputs: CoreInputs, repeats: int, budget_s: float) -> float:
    """The pure reference (allocates its outputs; mutates nothing)."""
    return median_seconds(
        lambda: rln_core.reference.update(inputs.weights, inputs.state, **HYPERPARAMETERS),
        repeats=repeats, budget_s=budget_s)


def time_state_copy(inputs: CoreInputs, repeats: int, budget_s: float) -> float:
    """Copy lambdas, prev_weights and prev_reg once into preallocated buffers."""
    sources = inputs.state_arrays()
    targets = [np.empty_like(array) for array in sources]

    def copy_once() -> None:
        for target, source in zip(targets, sources):
            np.copyto(target, source)

    return median_seconds(copy_once, repeats=repeats, budget_s=budget_s)


def time_pandas(inputs: CoreInputs, repeats: int, budget_s: float) -> Optional[float]:
    """The authors' DataFrame steps on the 2-D kernel (None without pandas or for N-D)."""
    try:
        from bench.pandas_rln import PandasRLN
    except ImportError:
        return None
    if inputs.weights.ndim != 2:
        return None
    weights = inputs.weights.copy()
    baseline = PandasRLN(**HYPERPARAMETERS)
    baseline.begin(weights)
    baseline.update(weights)  # creates the previous regularization, as after batch 1
    return median_seconds(lambda: baseline.update(weights), repeats=repeats, budget_s=budget_s)


def time_torch_rmsprop(inputs: CoreInputs, repeats: int, budget_s: float) -> Optional[float]:
    """One `torch.optim.RMSprop.step()` on a tensor of the same shape (None without torch),
    on numba's number of threads (torch's own setting restored afterwards)."""
    try:
        import torch
    except ImportError:
        return None
    parameter = torch.nn.Parameter(torch.from_numpy(inputs.weights.copy()))
    rng = np.random.default_rng(0)
    parameter.grad = torch.from_numpy(
        rng.normal(0.0, 1e-3, size=inputs.weights.shape).astype(np.float32))
    optimizer = torch.optim.RMSprop([parameter], lr=1e-3)
    default = torch.get_num_threads()
    torch.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    try:
        with torch.no_grad():
            return median_seconds(optimizer.step, repeats=repeats, budget_s=budget_s)
    finally:
        torch.set_num_threads(default)


def time_fused_rmsprop(inputs: CoreInputs, repeats: int, budget_s: float,
                       compute_dtype: Optional[type] = None) -> float:
    """One `rln_core.fused.FusedStep.rmsprop` (torch's RMSprop step and the RLN update in
    one kernel) on numba's threads, from the same inputs every time: what RLN costs on top
    of an optimizer step when fused with it (compare the torch RMSprop column)."""
    rng = np.random.default_rng(0)
    grad = rng.normal(0.0, 1e-3, size=inputs.weights.shape).astype(inputs.weights.dtype)
    square_avg = np.full_like(inputs.weights, 1e-6)
    saved = square_avg.copy()
    step = rln_core.fused.FusedStep(inputs.weights, inputs.state, compute_dtype)
    hyperparameters = rln_core.Hyperparameters(**HYPERPARAMETERS)

    def prepare() -> None:
        inputs.restore()
        np.copyto(square_avg, saved)

    return median_seconds(
        lambda: step.rmsprop(grad, hyperparameters, square_avg=square_avg, lr=1e-3),
        prepare=prepare, repeats=repeats, budget_s=budget_s)


def measure_size(shape: Tuple[int, ...], repeats: int, budget_s: float, pandas_max: int,
                 rounds: int) -> Dict[str, Optional[float]]:
    """Median seconds per update of every column of COLUMNS for one weight shape, the
    best of `rounds` rounds that each time every column in turn (so a slow spell of a
    shared machine hits every column alike instead of one)."""
    best: Dict[str, Optional[float]] = {}
    for _ in range(rounds):
        for name, seconds in measure_size_once(shape, repeats, budget_s, pandas_max).items():
            previous = best.get(name)
            best[name] = seconds if previous is None or seconds is None else min(previous,
                                                                                 seconds)
    return best


def measure_size_once(shape: Tuple[int, ...], repeats: int, budget_s: float,
                      pandas_max: int) -> Dict[str, Optional[float]]:
    """Median seconds per update of every column of COLUMNS for one weight shape."""
    inputs = CoreInputs(shape)
    all_threads = numba.config.NUMBA_NUM_THREADS
    times: Dict[str, Optional[float]] = {
        "reference": time_reference(inputs, repeats, budget_s),
        "numba 1 thread": time_numba(inputs, 1, repeats, budget_s),
        "numba all threads": time_numba(inputs, all_threads, repeats, budget_s),
        "numba prepared": time_prepared(inputs, repeats, budget_s),
        "numpy in place": time_core(inputs, "numpy", repeats, budget_s),
        "pandas": (time_pandas(inputs, repeats, budget_s)
                   if inputs.weights.size <= pandas_max else None),
        "state copy": time_state_copy(inputs, repeats, budget_s),
        "torch RMSprop": time_torch_rmsprop(inputs, repeats, budget_s),
        "fused RMSprop+RLN": time_fused_rmsprop(inputs, repeats, budget_s),
    }
    f32 = CoreInputs(shape, state_dtype="float32")
    times["numba f32 state"] = time_numba(f32, all_threads, repeats, budget_s)
    times["numba f32 compute"] = time_numba(f32, all_threads, repeats, budget_s, np.float32)
    times["f32 compute prepared"] = time_prepared(f32, repeats, budget_s, np.float32)
    times["f32 state copy"] = time_state_copy(f32, repeats, budget_s)
    times["fused f32 compute"] = time_fused_rmsprop(f32, repeats, budget_s, np.float32)
    return times


# --- start-up, in fresh interpreters ---------------------------------------------------------

FIRST_UPDATE_CHILD = """
import json, time
start = time.perf_counter()
import numpy as np
import rln_core
imported = time.perf_counter()
import numba
numba_imported = time.perf_counter()
w = np.random.default_rng(0).normal(0, 0.05, size=(1013, 179)).astype(np.float32)
state = rln_core.init(w)
before = time.perf_counter()
rln_core.update(w, state, impl="numba")
first = time.perf_counter()
rln_core.update(w, state, impl="numba")
second = time.perf_counter()
state32 = rln_core.init(w, state_dtype="float32")
rln_core.update(w, state32, impl="numba", compute_dtype=np.float32)
first32 = time.perf_counter()
print(json.dumps({"import_numba": numba_imported - imported, "first_update": first - before,
                  "second_update": second - first, "first_update_f32": first32 - second}))
"""

CACHED_BREAKDOWN_CHILD = """
import json, time
import numpy as np
import rln_core
w = np.random.default_rng(0).normal(0, 0.05, size=(1013, 179)).astype(np.float32)
state = rln_core.init(w)
steps = {}
def timed(name, fn):
    start = time.perf_counter()
    fn()
    steps[name] = time.perf_counter() - start
def import_scipy_linalg():  # numba's import probes BLAS through scipy.linalg
    try:
        import scipy.linalg
    except ImportError:
        pass
timed("import scipy.linalg (numba probes BLAS with it)", import_scipy_linalg)
timed("import numba (the rest)", lambda: __import__("numba"))
from numba.core.registry import cpu_target
timed("numba's once-per-process target set-up", lambda: (
    cpu_target.typing_context.refresh(), cpu_target.target_context.refresh()))
timed("import the kernel module", lambda: __import__("rln_core._numba_kernel"))
import numba
timed("start the threading layer", numba.get_num_threads)
timed("load the kernel from the cache + first run",
      lambda: rln_core.update(w, state, impl="numba"))
timed("second run", lambda: rln_core.update(w, state, impl="numba"))
print(json.dumps({"steps": steps, "threading layer": numba.threading_layer()}))
"""

IMPORT_CHILD = """
import json, sys, time
start = time.perf_counter()
import numpy
numpy_done = time.perf_counter()
import rln_core
done = time.perf_counter()
print(json.dumps({"numpy": numpy_done - start, "total": done - start,
                  "numba_imported": "numba" in sys.modules}))
"""


def run_child(code: str, cache_dir: Optional[str] = None) -> dict:
    """Run `code` in a fresh interpreter (repo on the path); return its last JSON line."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=str(REPO),
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_startup(import_repeats: int) -> dict:
    """Import time (median), cold and cached first update, and the cached breakdown."""
    run_child(IMPORT_CHILD)  # warm the OS file cache (and write .pyc files where allowed)
    imports = [run_child(IMPORT_CHILD) for _ in range(import_repeats)]
    with tempfile.TemporaryDirectory(prefix="rln-numba-cache-") as cache_dir:
        cold = run_child(FIRST_UPDATE_CHILD, cache_dir)
        cached = run_child(FIRST_UPDATE_CHILD, cache_dir)
        try:  # it reaches into numba's internals, which may move
            breakdown = run_child(CACHED_BREAKDOWN_CHILD, cache_dir)
        except subprocess.CalledProcessError as error:
            breakdown = {"steps": {},
                         "threading layer": f"unknown (breakdown failed: {error.stderr[-200:]})"}
    return {
        "import_total": statistics.median(i["total"] for i in imports),
        "import_numpy": statistics.median(i["numpy"] for i in imports),
        "import_pulls_numba": any(i["numba_imported"] for i in imports),
        "cold": cold, "cached": cached, "breakdown": breakdown,
    }


# --- report ----------------------------------------------------------------------------------

def format_seconds(seconds: Optional[float]) -> str:
    """Seconds as a short human string in us, ms or s; '-' when not measured."""
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def ratio(numerator: Optional[float], denominator: Optional[float]) -> Optional[float]:
    """numerator / denominator, or None when either is missing."""
    if numerator is None or denominator is None:
        return None
    return numerator / denominator


def verdict(value: Optional[float], target: float, at_most: bool) -> str:
    """'ok' or 'MISSED' for a value against its target ('' when not measured)."""
    if value is None:
        return ""
    return "ok" if (value <= target if at_most else value >= target) else "MISSED"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def on_tutorial_layer(shape: Tuple[int, ...]) -> bool:
    return shape == TUTORIAL_SHAPE


def large(shape: Tuple[int, ...]) -> bool:
    return int(np.prod(shape)) >= LARGE_ELEMENTS


# (label, numerator column, denominator column, target, at_most, the shapes it applies to)
RATIOS = (
    ("numba / torch RMSprop", "numba 1 thread", "torch RMSprop", TARGET_NUMBA_OVER_TORCH, True,
     on_tutorial_layer),
    ("numba f32 compute / torch RMSprop", "numba f32 compute", "torch RMSprop",
     TARGET_F32_COMPUTE_OVER_TORCH, True, on_tutorial_layer),
    ("numba prepared / torch RMSprop", "numba prepared", "torch RMSprop", None, True, None),
    ("f32 compute prepared / torch RMSprop", "f32 compute prepared", "torch RMSprop", None,
     True, None),
    ("pandas / numba", "pandas", "numba 1 thread", TARGET_PANDAS_OVER_NUMBA, False,
     on_tutorial_layer),
    ("numba / state copy", "numba all threads", "state copy", TARGET_LARGE_NUMBA_OVER_COPY, True,
     large),
    ("numba 1 thread / all threads", "numba 1 thread", "numba all threads",
     TARGET_LARGE_ONE_OVER_ALL_THREADS, False, large),
    ("fused RMSprop+RLN / torch RMSprop", "fused RMSprop+RLN", "torch RMSprop", None, True,
     None),
    ("fused f32 compute / torch RMSprop", "fused f32 compute", "torch RMSprop", None, True,
     None),
    ("numba f32 state / state copy", "numba f32 state", "state copy", None, True, None),
    ("reference / numba", "reference", "numba 1 thread", None, False, None),
)


def shape_label(shape: Tuple[int, ...]) -> str:
    """'1013x179 (181,327)': the shape and its element count."""
    return f"{'x'.join(map(str, shape))} ({int(np.prod(shape)):,})"


def report_sizes(results: Dict[Tuple[int, ...], Dict[str, Optional[float]]]) -> str:
    """The time table and the ratio table, each target checked on the shapes it is for."""
    times = table(["weights (elements)"] + list(COLUMNS),
                  [[shape_label(shape)] + [format_seconds(row[c]) for c in COLUMNS]
                   for shape, row in results.items()])
    ratio_rows = []
    for shape, row in results.items():
        cells = [shape_label(shape)]
        for _, numerator, denominator, target, at_most, applies in RATIOS:
            value = ratio(row[numerator], row[denominator])
            cell = "-" if value is None else f"{value:.2f}x"
            if target is not None and applies(shape) and value is not None:
                cell += f" ({'<=' if at_most else '>='} {target:g}x: "
                cell += f"{verdict(value, target, at_most)})"
            cells.append(cell)
        ratio_rows.append(cells)
    ratios = table(["weights (elements)"] + [label for label, *_ in RATIOS], ratio_rows)
    return "Median time per update:\n\n" + times + "\n\nRatios:\n\n" + ratios


def report_startup(startup: dict) -> str:
    """Start-up table: measured value, target, verdict; then the cached breakdown."""
    cold, cached = startup["cold"], startup["cached"]
    cold_first = cold["import_numba"] + cold["first_update"]
    cached_first = cached["import_numba"] + cached["first_update"]
    rows = [
        ["import rln_core (incl. numpy " + format_seconds(startup["import_numpy"]) + ")",
         format_seconds(startup["import_total"]), f"<= {TARGET_IMPORT_S:g} s",
         verdict(startup["import_total"], TARGET_IMPORT_S, True)],
        ["first update, empty numba cache (import numba + JIT)", format_seconds(cold_first),
         f"<= {TARGET_COLD_S:g} s", verdict(cold_first, TARGET_COLD_S, True)],
        ["first update from the numba cache (import numba + load)",
         format_seconds(cached_first), f"<= {TARGET_CACHED_S:g} s",
         verdict(cached_first, TARGET_CACHED_S, True)],
        ["second update (1013x179, for scale)", format_seconds(cached["second_update"]), "", ""],
        ["then a first float32-compute update, empty cache (JIT of its variant)",
         format_seconds(cold["first_update_f32"]), "", ""],
        ["then a first float32-compute update from the cache",
         format_seconds(cached["first_update_f32"]), "", ""],
    ]
    lines = [table(["start-up", "measured", "target", ""], rows), "",
             f"`import rln_core` imports numba: {startup['import_pulls_numba']}", "",
             "First update from the cache, broken down (fresh interpreter, after import rln_core):",
             ""]
    breakdown = startup["breakdown"]
    lines.append(table(["step", "time"], [[k, format_seconds(v)]
                                          for k, v in breakdown["steps"].items()]))
    lines.append(f"\nnumba threading layer: {breakdown['threading layer']}")
    return "\n".join(lines)


def environment() -> str:
    """One line on the machine, its load and the versions."""
    load = os.getloadavg()[0]
    busy = " (busy: timings, above all 'all threads', are inflated)" \
        if load > 0.5 * (os.cpu_count() or 1) else ""
    parts = [platform.processor() or platform.machine(), f"{os.cpu_count()} CPUs",
             f"load average {load:.1f}{busy}",
             f"numba {numba.__version__} ({numba.config.NUMBA_NUM_THREADS} threads)",
             f"numpy {np.__version__}"]
    for name in ("pandas", "torch"):
        try:
            module = __import__(name)
        except ImportError:
            continue
        extra = f", {module.get_num_threads()} threads" if name == "torch" else ""
        parts.append(f"{name} {module.__version__}{extra}")
    return "; ".join(parts)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=None,
                        help="element counts (rows of 1000) or shapes like 1013x179")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed calls per cell at most (default 21, quick 7)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds of timed calls per cell and round before stopping "
                             "early (default 0.4, quick 0.25)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds over all columns, best kept (default 3, quick 1)")
    parser.add_argument("--pandas-max", type=float, default=2e6,
                        help="skip the pandas baseline above this many elements")
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    parser.add_argument("--no-startup", action="store_true",
                        help="skip the import and first-update measurements")
    args = parser.parse_args(argv)
    sizes = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    repeats = args.repeats or (7 if args.quick else 21)
    budget = args.budget or (0.25 if args.quick else 0.4)
    rounds = args.rounds or (1 if args.quick else 3)

    print(f"RLN core update benchmark: {environment()}")
    print(f"float32 weights, float64 state unless noted, hyperparameters {HYPERPARAMETERS}\n")
    results = {}
    for text in sizes:
        shape = parse_shape(text)
        results[shape] = measure_size(shape, repeats, budget, int(args.pandas_max), rounds)
        print(f"  measured {shape_label(shape)}", file=sys.stderr, flush=True)
    print(report_sizes(results))
    if not args.no_startup:
        print("\n" + report_startup(measure_startup(3 if args.quick else 5)))


if __name__ == "__main__":
    main()
