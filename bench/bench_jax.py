"""rln_jax under jax.jit: plain optax.rmsprop vs optax.chain(rmsprop, rln) on the tutorial network.

The network of the authors' tutorial (bench/bench_torch.py's widths), 1013 -> 179 -> 32
-> 6 -> 1 with ReLU, Glorot-uniform kernels, RMSprop(1e-3), 404 random rows; RLN (Theta
-10, nu 1e6, L1) on the first layer's (1013, 179) kernel through `optax.masked`. Two
measurements:
- fit: a jitted train step (gradient, optimizer update, apply; parameters and optimizer
  state donated) over `--epochs` epochs of the rows in batches, plain and RLN fits taking
  turns (best of `--repeats`), so both see the same machine state;
- update alone: the jitted optimizer update + apply of the first layer's kernel by itself
  (a fixed gradient), the median of `--calls` calls, plain then RLN: what RLN adds to one
  optimizer step.
Printed: ms per step and the ratio RLN / plain. With --threads 1 (the default) XLA runs on
one thread (XLA_FLAGS, set before JAX is imported); the default clock is this process's CPU
time, which moves less than the wall clock on a shared machine.

    python bench/bench_jax.py                          # x64 off: float32 lambdas and math
    python bench/bench_jax.py --x64                    # float64 lambdas and math (the spec's)
    python bench/bench_jax.py --x64 --compute-dtype float32   # the float32 mode under x64
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from typing import Any, Callable, Dict

import numpy as np

N_ROWS, N_INPUTS, WIDTHS = 404, 1013, (179, 32, 6)
THETA, NU = -10.0, 1e6
ONE_THREAD_XLA = "--xla_cpu_multi_thread_eigen=false"


def tutorial_params(seed: int) -> Dict[str, Dict[str, Any]]:
    """{"layer0": {"kernel", "bias"}, ...}: Glorot-uniform kernels (in, out), zero biases."""
    import jax
    import jax.numpy as jnp

    widths = [N_INPUTS, *WIDTHS, 1]
    keys = jax.random.split(jax.random.PRNGKey(seed), len(widths) - 1)
    return {f"layer{k}": {"kernel": jax.nn.initializers.glorot_uniform()(
                              keys[k], (n_in, n_out), jnp.float32),
                          "bias": jnp.zeros(n_out, jnp.float32)}
            for k, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:]))}


def loss(params: Dict[str, Any], x: Any, y: Any) -> Any:
    import jax
    import jax.numpy as jnp

    hidden = x
    for k in range(len(params)):
        hidden = hidden @ params[f"layer{k}"]["kernel"] + params[f"layer{k}"]["bias"]
        if k < len(params) - 1:
            hidden = jax.nn.relu(hidden)
    return jnp.mean((hidden - y) ** 2)


def optimizers(params: Dict[str, Dict[str, Any]], compute_dtype: Any) -> Dict[str, Any]:
    """{"plain": rmsprop, "RLN": chain(rmsprop, masked(rln, layer0's kernel))} for `params`."""
    import optax
    import rln_jax

    first = {layer: {name: layer == "layer0" and name == "kernel" for name in leaves}
             for layer, leaves in params.items()}
    rln = rln_jax.rln(avg_reg=THETA, learning_rate=NU, norm=1, compute_dtype=compute_dtype)
    return {"plain": optax.rmsprop(1e-3),
            "RLN": optax.chain(optax.rmsprop(1e-3), optax.masked(rln, first))}


def fit_seconds(tx: Any, batch_size: int, epochs: int, clock: Callable[[], float]) -> float:
    """Seconds (of `clock`) for `epochs` epochs of jitted train steps (compiled first)."""
    import jax
    import optax

    rng = np.random.default_rng(0)
    x = rng.normal(size=(N_ROWS, N_INPUTS)).astype(np.float32)
    y = (x[:, :5].sum(axis=1, keepdims=True)
         + 0.1 * rng.normal(size=(N_ROWS, 1))).astype(np.float32)
    batches = [(jax.device_put(x[s:s + batch_size]), jax.device_put(y[s:s + batch_size]))
               for s in range(0, N_ROWS, batch_size)]

    @donating_jit
    def train_step(params, state, xb, yb):
        grads = jax.grad(loss)(params, xb, yb)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    params = tutorial_params(0)
    state = tx.init(params)
    for xb, yb in batches[:2] + batches[-1:]:  # compile every batch shape
        params, state = train_step(params, state, xb, yb)
    jax.block_until_ready(params)
    started = clock()
    for _ in range(epochs):
        for xb, yb in batches:
            params, state = train_step(params, state, xb, yb)
    jax.block_until_ready(params)
    return clock() - started


def donating_jit(function: Callable) -> Callable:
    """jax.jit with the parameters and optimizer state donated (updated in place)."""
    import jax

    return jax.jit(function, donate_argnums=(0, 1))


def update_seconds(tx: Any, params: Dict[str, Any], calls: int,
                   clock: Callable[[], float]) -> float:
    """Median seconds (of `clock`) of one jitted update + apply of `params` (the first
    kernel alone) with a fixed gradient."""
    import jax
    import optax

    grads = jax.tree_util.tree_map(
        lambda leaf: jax.random.normal(jax.random.PRNGKey(1), leaf.shape, leaf.dtype) * 1e-3,
        params)

    @donating_jit
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    params = jax.tree_util.tree_map(lambda leaf: leaf.copy(), params)
    state = tx.init(params)
    for _ in range(5):
        params, state = step(params, state, grads)
    jax.block_until_ready(params)
    times = []
    for _ in range(calls):
        started = clock()
        params, state = step(params, state, grads)
        jax.block_until_ready(params)
        times.append(clock() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="epochs per timed fit")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[10, 128])
    parser.add_argument("--repeats", type=int, default=3, help="fits of each kind, best kept")
    parser.add_argument("--calls", type=int, default=300,
                        help="update-alone calls of each kind (their median is kept)")
    parser.add_argument("--threads", type=int, choices=[0, 1], default=1,
                        help="1: XLA on one thread; 0: XLA's default threads")
    parser.add_argument("--x64", action="store_true", help="jax_enable_x64: float64 lambdas")
    parser.add_argument("--compute-dtype", choices=["default", "float32"], default="default",
                        help="float32: rln_jax.rln(compute_dtype=np.float32) (with --x64)")
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    args = parser.parse_args()
    if args.threads == 1:  # read by XLA when JAX starts: before the first import
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {ONE_THREAD_XLA}".strip()
    import jax

    jax.config.update("jax_enable_x64", args.x64)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    compute_dtype = np.float32 if args.compute_dtype == "float32" else None
    txs = optimizers(tutorial_params(0), compute_dtype)
    print(f"rln_jax, tutorial network, {N_ROWS} rows, jax {jax.__version__}, x64 "
          f"{'on' if args.x64 else 'off'}, compute {args.compute_dtype}, XLA threads "
          f"{'1' if args.threads == 1 else 'default'}, {args.clock} clock")
    print(f"{'batch':>6} {'steps':>6} {'plain ms/step':>14} {'RLN ms/step':>12} {'RLN/plain':>10}")
    for batch_size in args.batch_sizes:
        best: Dict[str, float] = {name: math.inf for name in txs}
        for _ in range(args.repeats):
            for name, tx in txs.items():
                best[name] = min(best[name], fit_seconds(tx, batch_size, args.epochs, clock))
        steps = args.epochs * math.ceil(N_ROWS / batch_size)
        plain, rln = (best[name] / steps * 1e3 for name in ("plain", "RLN"))
        print(f"{batch_size:>6} {steps:>6} {plain:>14.3f} {rln:>12.3f} {rln / plain:>9.2f}x")
    first = {"layer0": {"kernel": tutorial_params(0)["layer0"]["kernel"]}}
    plain, rln = (update_seconds(tx, first, args.calls, clock) * 1e3
                  for tx in optimizers(first, compute_dtype).values())
    print(f"update of the first kernel alone (median of {args.calls}): rmsprop {plain:.3f} ms, "
          f"rmsprop + RLN {rln:.3f} ms ({rln / plain:.2f}x)")


if __name__ == "__main__":
    main()
