"""Keras fit of the tutorial network: plain vs RLN (callback and in-graph) vs the pandas callback.

The network of the authors' tutorial, 1013 -> 179 -> 32 -> 6 -> 1 with ReLU,
RMSprop(1e-3), on 404 random rows, is fitted in one process per Keras backend
(KERAS_BACKEND is read once, at import, so each backend runs in a child
process) with:
- plain: no callback;
- hook only: a callback with an empty `on_train_batch_end` (what any batch
  callback costs in Keras: it turns off async dispatch and syncs every step);
- callback: `rln_keras.RLNCallback` on the first layer (the numba kernel, float64
  state; with a float32 state; with float32 state and arithmetic,
  `compute_dtype=np.float32`; the NumPy implementation too with --numpy);
- in-graph: `rln_keras.RLNOptimizer(RMSprop, first layer)`, the update inside
  the compiled train step (float64 arithmetic; and `compute_dtype="float32"`);
- pandas (TensorFlow only): the authors' callback steps in pandas
  (`bench/pandas_rln.py`).
Every variant gets its own model (same seed), a warm-up epoch, then timed fits;
the variants take turns so machine load hits them alike. Reported: the median
time per optimizer step, its ratio to plain and the difference (the overhead
per step); on TensorFlow at batch 10 with one thread and CPU time, the fastest
RLN variant against the speed issue's target (`TARGET`). The default clock is
this process's CPU time with one thread everywhere (the framework, XLA, numba):
on a shared machine it moves less than the wall clock, and with one thread no
idle thread spins into it.

    python bench/bench_keras.py                                   # TensorFlow, ~1 minute
    python bench/bench_keras.py --backend tensorflow jax torch    # every backend
    python bench/bench_keras.py --clock wall --threads 0          # default threads, wall clock
    python bench/bench_keras.py --profile callback                # cProfile of one fit
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "adapters")]

import numpy as np  # noqa: E402

BACKENDS = ("tensorflow", "jax", "torch")
N_ROWS, N_INPUTS, WIDTHS = 404, 1013, (179, 32, 6)
THETA, NU = -10.0, 1e6
SEED = 0
VARIANTS = ("plain", "hook only", "callback", "callback (f32 state)", "callback (f32 compute)",
            "callback (numpy)", "in-graph", "in-graph (f32 compute)", "pandas (authors')")
FLOAT32 = {"state_dtype": np.float32, "compute_dtype": np.float32}
BASELINES = ("plain", "hook only", "pandas (authors')")  # the variants without our RLN
TARGET = 1.2  # the speed issue's: the fastest RLN variant / plain, TensorFlow, batch 10


def thread_environment(threads: int) -> Dict[str, str]:
    """Environment variables that cap every thread pool at `threads` (0: no cap).

    They must be set before the framework is imported: XLA reads XLA_FLAGS and
    numba NUMBA_NUM_THREADS once, at import; TensorFlow and torch are also
    capped by their own calls in `cap_threads`.
    """
    if not threads:
        return {}
    n = str(threads)
    env = {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n,
           "NUMBA_NUM_THREADS": n, "TF_NUM_INTRAOP_THREADS": n, "TF_NUM_INTEROP_THREADS": n}
    if threads == 1:
        env["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                            + " --xla_cpu_multi_thread_eigen=false").strip()
    return env


def cap_threads(threads: int) -> None:
    """The framework's own thread settings (TensorFlow, torch), before any op runs."""
    if not threads:
        return
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    elif backend == "torch":
        import torch

        torch.set_num_threads(threads)
        torch.set_num_interop_threads(threads)


def tutorial_model(optimizer_around: Optional[Callable] = None):
    """The tutorial network, compiled with RMSprop(1e-3), or with
    `optimizer_around(RMSprop, model)` (an RLNOptimizer)."""
    import keras

    keras.utils.set_random_seed(SEED)
    model = keras.Sequential([keras.Input((N_INPUTS,))])
    for width in WIDTHS:
        model.add(keras.layers.Dense(width, activation="relu",
                                     kernel_initializer="glorot_normal"))
    model.add(keras.layers.Dense(1, kernel_initializer="glorot_normal"))
    optimizer = keras.optimizers.RMSprop(1e-3)
    if optimizer_around is not None:
        optimizer = optimizer_around(optimizer, model)
    model.compile(optimizer=optimizer, loss="mse")
    return model


def make_variant(name: str):
    """(model, callbacks) of a variant, each with its own freshly seeded model."""
    import keras

    from bench.pandas_rln import PandasRLN
    from rln_keras import RLNCallback, RLNOptimizer

    class HookOnly(keras.callbacks.Callback):
        """A batch callback that does nothing: the price Keras charges for the hook."""

        def on_train_batch_end(self, batch, logs=None):
            pass

    class PandasCallback(keras.callbacks.Callback):
        """The authors' callback: read the kernel, pandas update, `assign` it back."""

        def __init__(self, layer: keras.layers.Layer):
            super().__init__()
            self.layer = layer
            self.baseline = PandasRLN(avg_reg=THETA, learning_rate=NU, norm=1)

        def on_train_begin(self, logs=None):
            self.baseline.begin(self.layer.kernel.numpy())

        def on_train_batch_end(self, batch, logs=None):
            self.layer.kernel.assign(self.baseline.update(self.layer.kernel.numpy()))

    if name.startswith("in-graph"):
        compute = "float32" if "f32" in name else None
        return tutorial_model(lambda inner, model: RLNOptimizer(
            inner, model.layers[0], avg_reg=THETA, learning_rate=NU,
            compute_dtype=compute)), []
    model = tutorial_model()
    first = model.layers[0]
    rln = {"avg_reg": THETA, "learning_rate": NU}
    callbacks = {
        "plain": [],
        "hook only": lambda: [HookOnly()],
        "callback": lambda: [RLNCallback(first, **rln)],
        "callback (f32 state)": lambda: [RLNCallback(first, **rln, state_dtype=np.float32)],
        "callback (f32 compute)": lambda: [RLNCallback(first, **rln, **FLOAT32)],
        "callback (numpy)": lambda: [RLNCallback(first, **rln, impl="numpy")],
        "pandas (authors')": lambda: [PandasCallback(first)],
    }[name]
    return model, callbacks() if callable(callbacks) else callbacks


def data():
    rng = np.random.default_rng(SEED)
    x = rng.normal(size=(N_ROWS, N_INPUTS)).astype("float32")
    y = (x[:, :10].sum(axis=1, keepdims=True) + rng.normal(size=(N_ROWS, 1))).astype("float32")
    return x, y


def time_variants(names: List[str], batch_size: int, epochs: int, repeats: int,
                  clock: Callable[[], float]) -> Dict[str, float]:
    """Median seconds (of `clock`) per optimizer step of each variant, measured in turns."""
    x, y = data()
    steps = epochs * -(-N_ROWS // batch_size)
    runs = {name: make_variant(name) for name in names}
    times: Dict[str, List[float]] = {name: [] for name in names}
    for round_ in range(repeats + 1):  # round 0 warms up (tracing, numba compilation)
        for name, (model, callbacks) in runs.items():
            start = clock()
            model.fit(x, y, batch_size=batch_size, epochs=1 if round_ == 0 else epochs,
                      verbose=0, callbacks=callbacks)
            if round_:
                times[name].append((clock() - start) / steps)
    return {name: statistics.median(values) for name, values in times.items()}


def profile_variant(name: str, batch_size: int, epochs: int, top: int = 30) -> None:
    """cProfile of one fit of a variant (after a warm-up fit), by own time."""
    x, y = data()
    model, callbacks = make_variant(name)
    fit = {"batch_size": batch_size, "verbose": 0, "callbacks": callbacks}
    model.fit(x, y, epochs=1, **fit)
    profiler = cProfile.Profile()
    profiler.runcall(model.fit, x, y, epochs=epochs, **fit)
    pstats.Stats(profiler).sort_stats("tottime").print_stats(top)


def run_backend(args: argparse.Namespace) -> None:
    """The benchmark on the Keras backend of this process."""
    cap_threads(args.threads)
    import keras
    import numba

    backend = keras.backend.backend()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.profile:
        profile_variant(args.profile, args.batch_size[0], args.epochs)
        return
    names = [name for name in VARIANTS
             if (args.numpy or "numpy" not in name)
             and not ("pandas" in name and (args.no_pandas or backend != "tensorflow"))]
    print(f"Keras {keras.__version__} ({backend}), network "
          f"{N_INPUTS} -> {' -> '.join(map(str, WIDTHS))} -> 1, RMSprop, {N_ROWS} rows, "
          f"RLN on the first layer (Theta={THETA:g}, nu={NU:g}); median of {args.repeats} "
          f"fits x {args.epochs} epochs; {args.clock} clock, threads: "
          f"{args.threads or 'default'} (numba {numba.get_num_threads()})")
    print(f"{'batch':>5}  {'variant':<22} {'ms/step':>8} {'vs plain':>9} {'+ms/step':>9}")
    for batch_size in args.batch_size:
        per_step = time_variants(names, batch_size, args.epochs, args.repeats, clock)
        plain = per_step["plain"]
        for name, seconds in per_step.items():
            print(f"{batch_size:>5}  {name:<22} {1e3 * seconds:8.2f} {seconds / plain:8.2f}x "
                  f"{1e3 * (seconds - plain):+9.2f}", flush=True)
        if backend == "tensorflow" and batch_size == 10 and args.threads == 1 \
                and args.clock == "cpu":
            fastest, ratio = min(((variant, seconds / plain)
                                  for variant, seconds in per_step.items()
                                  if variant not in BASELINES), key=lambda item: item[1])
            print(f"target: the fastest RLN variant <= {TARGET}x plain at batch 10 on "
                  f"TensorFlow: {fastest}, {ratio:.2f}x, "
                  f"{'ok' if ratio <= TARGET else 'MISSED'}")


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", nargs="+", choices=BACKENDS, default=["tensorflow"],
                        help="Keras backends, each run in its own process")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per timed fit")
    parser.add_argument("--repeats", type=int, default=5, help="timed fits per variant")
    parser.add_argument("--batch-size", type=int, nargs="+", default=[10])
    parser.add_argument("--threads", type=int, default=1,
                        help="threads of the framework, XLA and numba (0: their defaults)")
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu",
                        help="cpu: this process's CPU time (time.process_time); wall: "
                             "time.perf_counter")
    parser.add_argument("--numpy", action="store_true", help="also time impl='numpy'")
    parser.add_argument("--no-pandas", action="store_true", help="skip the pandas baseline")
    parser.add_argument("--profile", choices=VARIANTS,
                        help="instead of timing: cProfile one fit of this variant")
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.in_process:
        run_backend(args)
        return
    # A child runs the backend of its KERAS_BACKEND and ignores --backend.
    child_argv = list(sys.argv[1:] if argv is None else argv) + ["--in-process"]
    for backend in args.backend:
        env = {**os.environ, **thread_environment(args.threads), "KERAS_BACKEND": backend,
               "TF_CPP_MIN_LOG_LEVEL": "2"}
        run = subprocess.run([sys.executable, __file__, *child_argv], env=env)
        if run.returncode:
            raise SystemExit(f"bench_keras: the {backend} run failed (exit {run.returncode})")


if __name__ == "__main__":
    main()
