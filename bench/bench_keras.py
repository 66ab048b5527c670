"""Keras fit of the tutorial network: plain vs RLN (rln_keras) vs the pandas callback.

The network of the authors' tutorial, 1013 -> 179 -> 32 -> 6 -> 1 with ReLU,
RMSprop(1e-3), batch 10, on 404 random rows, is fitted in one process with:
- plain: no callback;
- hook only: a callback with an empty `on_train_batch_end` (what any batch
  callback costs in Keras: it turns off async dispatch and syncs every step);
- rln_keras: `RLNCallback` on the first layer: the numba kernel with numba's
  default thread count and with one thread (its parallel path competes with
  the framework's own threads), and the NumPy implementation with --numpy;
- pandas: the authors' callback steps in pandas (`bench/pandas_rln.py`).
Every variant gets its own model (same seed), a warm-up epoch, then timed fits;
the variants take turns so machine load hits them alike. Reported: the median
time per optimizer step and its ratio to plain.

    python bench/bench_keras.py                 # about 1-2 minutes
    python bench/bench_keras.py --epochs 10 --repeats 5 --batch-size 10 32
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "adapters")]

import keras  # noqa: E402
import numba  # noqa: E402
import numpy as np  # noqa: E402

from bench.pandas_rln import PandasRLN  # noqa: E402
from rln_keras import RLNCallback  # noqa: E402

N_ROWS, N_INPUTS, WIDTHS = 404, 1013, (179, 32, 6)
THETA, NU = -10.0, 1e6
SEED = 0


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


def tutorial_model() -> keras.Model:
    keras.utils.set_random_seed(SEED)
    model = keras.Sequential([keras.Input((N_INPUTS,))])
    for width in WIDTHS:
        model.add(keras.layers.Dense(width, activation="relu",
                                     kernel_initializer="glorot_normal"))
    model.add(keras.layers.Dense(1, kernel_initializer="glorot_normal"))
    model.compile(optimizer=keras.optimizers.RMSprop(1e-3), loss="mse")
    return model


def rln_callback(impl: str) -> Callable[[keras.Model], keras.callbacks.Callback]:
    return lambda model: RLNCallback(model.layers[0], avg_reg=THETA, learning_rate=NU,
                                     impl=impl)


# name -> (callback factory, numba threads during its fits; None = numba's default)
VARIANTS: Dict[str, Tuple[Callable[[keras.Model], Optional[keras.callbacks.Callback]],
                          Optional[int]]] = {
    "plain": (lambda model: None, None),
    "hook only": (lambda model: HookOnly(), None),
    "rln_keras (numba)": (rln_callback("auto"), None),
    "rln_keras (numba, 1 thread)": (rln_callback("auto"), 1),
    "rln_keras (numpy)": (rln_callback("numpy"), None),
    "pandas (authors')": (lambda model: PandasCallback(model.layers[0]), None),
}


def time_variants(names: List[str], batch_size: int, epochs: int,
                  repeats: int) -> Dict[str, float]:
    """Median seconds per optimizer step of each variant, measured in turns."""
    rng = np.random.default_rng(SEED)
    x = rng.normal(size=(N_ROWS, N_INPUTS)).astype("float32")
    y = (x[:, :10].sum(axis=1, keepdims=True) + rng.normal(size=(N_ROWS, 1))).astype("float32")
    steps = epochs * -(-N_ROWS // batch_size)
    default_threads = numba.get_num_threads()
    runs = {}
    for name in names:
        make_callback, threads = VARIANTS[name]
        model = tutorial_model()
        callback = make_callback(model)
        runs[name] = (model, [] if callback is None else [callback], threads or default_threads)
    times: Dict[str, List[float]] = {name: [] for name in names}
    for round_ in range(repeats + 1):  # round 0 warms up (tracing, numba compilation)
        for name, (model, callbacks, threads) in runs.items():
            numba.set_num_threads(threads)
            start = time.perf_counter()
            model.fit(x, y, batch_size=batch_size, epochs=1 if round_ == 0 else epochs,
                      verbose=0, callbacks=callbacks)
            if round_:
                times[name].append((time.perf_counter() - start) / steps)
    numba.set_num_threads(default_threads)
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=2, help="epochs per timed fit")
    parser.add_argument("--repeats", type=int, default=3, help="timed fits per variant")
    parser.add_argument("--batch-size", type=int, nargs="+", default=[10])
    parser.add_argument("--numpy", action="store_true", help="also time impl='numpy'")
    parser.add_argument("--no-pandas", action="store_true", help="skip the pandas baseline")
    args = parser.parse_args(argv)
    names = [name for name in VARIANTS
             if (args.numpy or "numpy" not in name) and not (args.no_pandas and "pandas" in name)]

    print(f"Keras {keras.__version__} ({keras.backend.backend()}), network "
          f"{N_INPUTS} -> {' -> '.join(map(str, WIDTHS))} -> 1, RMSprop, {N_ROWS} rows, "
          f"RLN on the first layer (Theta={THETA:g}, nu={NU:g}); "
          f"median of {args.repeats} fits x {args.epochs} epochs")
    print(f"numba threads: {numba.get_num_threads()}")
    print(f"{'batch':>5}  {'variant':<28} {'ms/step':>8} {'vs plain':>9} {'vs pandas':>10}")
    for batch_size in args.batch_size:
        per_step = time_variants(names, batch_size, args.epochs, args.repeats)
        pandas = per_step.get("pandas (authors')")
        for name, seconds in per_step.items():
            versus_pandas = f"{pandas / seconds:9.1f}x" if pandas else f"{'-':>10}"
            print(f"{batch_size:>5}  {name:<28} {1e3 * seconds:8.2f} "
                  f"{seconds / per_step['plain']:8.2f}x {versus_pandas}", flush=True)


if __name__ == "__main__":
    main()
