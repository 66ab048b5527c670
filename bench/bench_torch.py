"""Plain fit vs RLN fit of the tutorial network in PyTorch, side by side in one run.

The network of the authors' tutorial as the issue gives it: 1013 inputs -> 179
-> 32 -> 6 -> 1 (bench/bench_keras.py uses the same widths; the tutorial's
formula round(exp(log(1013) * k / 4)) gives 180 for the first), ReLU, RMSprop lr 1e-3,
404 random rows; RLN on the first layer's (179, 1013) weight. Each batch size
is timed as alternating plain / RLN fits (`--repeats` of each, best kept), so
both see the same machine state, with a third fit per repeat where RLN is attached with
`fuse=True` (the first layer's RMSprop step and RLN update in one kernel). Prints the
time per fit and the ratios RLN / plain and fused / plain, then, for a run under the
speed issue's conditions (one thread, CPU time, float32 model, the numba kernel), the
fastest RLN fit / plain against the issue's targets (`TARGETS`). With --phases, one more
fit of each variant per batch size says where a step's time goes: the medians of forward +
backward and of optimizer.step() (the optimizer and RLN), perf_counter around each.

    python bench/bench_torch.py                        # ~1-2 min
    python bench/bench_torch.py --epochs 100           # the issue's full setting
    python bench/bench_torch.py --threads 1 --clock cpu  # on a busy, shared machine
    python bench/bench_torch.py --threads 1 --clock cpu --state-dtype float32 \
        --compute-dtype float32                          # the float32 compute mode
    python bench/bench_torch.py --threads 1 --batch-sizes 10 --phases  # where a step goes
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from typing import Callable, Dict, List, Optional

import numba
import torch

from rln_torch import RLN

N_INPUTS = 1013
N_ROWS = 404
WIDTHS = (179, 32, 6)
# The speed issue's targets, the fastest RLN fit / plain at most: {(batch size, state
# dtype): ratio}; None: any state. Measured with one thread and CPU time.
TARGETS = {(10, "float64"): 1.4, (10, "float32"): 1.2, (128, None): 1.1}


def target(batch_size: int, state_dtype: str) -> Optional[float]:
    """The speed issue's target for this batch size and state dtype, or None."""
    return TARGETS.get((batch_size, state_dtype), TARGETS.get((batch_size, None)))


def tutorial_network(seed: int, dtype: torch.dtype) -> torch.nn.Sequential:
    """1013 -> 179 -> 32 -> 6 -> 1 with ReLU between the layers."""
    widths = [N_INPUTS, *WIDTHS, 1]
    torch.manual_seed(seed)
    layers = []
    for n_in, n_out in zip(widths[:-1], widths[1:]):
        layers += [torch.nn.Linear(n_in, n_out), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1]).to(dtype)


def fit(X: torch.Tensor, y: torch.Tensor, batch_size: int, epochs: int,
        rln_kwargs: Optional[dict], clock: Callable[[], float] = time.perf_counter,
        fuse: bool = False, phases: Optional[Dict[str, List[float]]] = None) -> float:
    """Seconds (of `clock`) for `epochs` epochs of RMSprop (lr 1e-3), with RLN if `rln_kwargs`
    (attached with `fuse`). With `phases`, also appends each step's perf_counter seconds of
    zero_grad + forward + backward to phases["forward+backward"] and of optimizer.step() (the
    optimizer and RLN) to phases["step"]."""
    model = tutorial_network(seed=0, dtype=X.dtype)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3)
    if rln_kwargs is not None:
        RLN(model[0], **rln_kwargs).attach(optimizer, fuse=fuse)
    order = torch.Generator().manual_seed(1)
    started = clock()
    for _ in range(epochs):
        perm = torch.randperm(len(X), generator=order)
        for start in range(0, len(X), batch_size):
            rows = perm[start:start + batch_size]
            if phases is not None:
                begun = time.perf_counter()
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(model(X[rows]), y[rows]).backward()
            if phases is not None:
                stepping = time.perf_counter()
                phases["forward+backward"].append(stepping - begun)
            optimizer.step()
            if phases is not None:
                phases["step"].append(time.perf_counter() - stepping)
    return clock() - started


def print_phases(X: torch.Tensor, y: torch.Tensor, batch_size: int, epochs: int,
                 rln_kwargs: dict, fused: bool) -> None:
    """Where a step's time goes, per variant (one fit each): the medians of forward +
    backward and of optimizer.step(), in us (perf_counter)."""
    print(f"phases at batch {batch_size} (us per step, medians of one fit each):")
    print(f"{'variant':>8} {'forward+backward':>17} {'optimizer.step':>15}")
    variants = [("plain", None, False), ("RLN", rln_kwargs, False)]
    if fused:
        variants.append(("fused", rln_kwargs, True))
    for name, kwargs, fuse in variants:
        phases: Dict[str, List[float]] = {"forward+backward": [], "step": []}
        fit(X, y, batch_size, epochs, kwargs, fuse=fuse, phases=phases)
        print(f"{name:>8} {statistics.median(phases['forward+backward']) * 1e6:>17.0f} "
              f"{statistics.median(phases['step']) * 1e6:>15.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20, help="epochs per fit (default 20)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[10, 32, 128, 512])
    parser.add_argument("--repeats", type=int, default=3, help="fits of each kind, best kept")
    parser.add_argument("--impl", default="auto", help="RLN impl: auto, numba, numpy, torch")
    parser.add_argument("--state-dtype", choices=["float64", "float32"], default="float64")
    parser.add_argument("--compute-dtype", choices=["float64", "float32"], default="float64",
                        help="RLN's arithmetic (float32: needs --state-dtype float32)")
    parser.add_argument("--model-dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch and numba threads (0: leave as they are)")
    parser.add_argument("--phases", action="store_true",
                        help="then, per batch size, where a step's time goes (forward + "
                             "backward, optimizer.step) in one more fit of each variant")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="cpu: this process's CPU time, steadier on a shared machine "
                             "(use with --threads 1: idle threads spinning count as CPU time)")
    args = parser.parse_args()
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    if args.threads:
        torch.set_num_threads(args.threads)
        numba.set_num_threads(args.threads)

    dtype = getattr(torch, args.model_dtype)
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(N_ROWS, N_INPUTS, generator=generator, dtype=dtype)
    y = X[:, :5].sum(1, keepdim=True) + 0.1 * torch.randn(N_ROWS, 1, generator=generator,
                                                          dtype=dtype)
    rln_kwargs = {"norm": 1, "avg_reg": -10.0, "learning_rate": 1e6, "impl": args.impl,
                  "state_dtype": getattr(torch, args.state_dtype),
                  "compute_dtype": None if args.compute_dtype == "float64" else torch.float32}
    fused = args.impl in ("auto", "numba")
    fit(X, y, 10, 1, rln_kwargs)  # warm-up: numba import and compilation, torch kernels
    if fused:
        fit(X, y, 10, 1, rln_kwargs, fuse=True)

    print(f"tutorial network, {N_ROWS} rows, {args.epochs} epochs, RLN impl={args.impl}, "
          f"state {args.state_dtype}, compute {args.compute_dtype}, model {args.model_dtype}, "
          f"threads: torch {torch.get_num_threads()}, numba {numba.get_num_threads()}; "
          f"{args.clock} clock, best of {args.repeats}")
    print(f"{'batch':>6} {'steps':>6} {'plain s':>9} {'RLN s':>9} {'RLN/plain':>10} "
          f"{'RLN us/step':>12} {'fused s':>9} {'fused/plain':>12} {'fused us/step':>14}")
    best = {}  # batch size: the fastest RLN fit / plain
    for batch_size in args.batch_sizes:
        plain, rln, rln_fused = math.inf, math.inf, math.inf
        for _ in range(args.repeats):
            plain = min(plain, fit(X, y, batch_size, args.epochs, None, clock))
            rln = min(rln, fit(X, y, batch_size, args.epochs, rln_kwargs, clock))
            if fused:
                rln_fused = min(rln_fused, fit(X, y, batch_size, args.epochs, rln_kwargs, clock,
                                               fuse=True))
        steps = args.epochs * math.ceil(N_ROWS / batch_size)
        line = (f"{batch_size:>6} {steps:>6} {plain:>9.3f} {rln:>9.3f} {rln / plain:>10.2f} "
                f"{(rln - plain) / steps * 1e6:>12.0f}")
        if fused:
            line += (f" {rln_fused:>9.3f} {rln_fused / plain:>12.2f} "
                     f"{(rln_fused - plain) / steps * 1e6:>14.0f}")
        print(line)
        best[batch_size] = min(rln, rln_fused) / plain
    if args.threads == 1 and args.clock == "cpu" and args.model_dtype == "float32" and fused:
        for batch_size, ratio in best.items():
            limit = target(batch_size, args.state_dtype)
            if limit is not None:
                print(f"target: the fastest RLN fit <= {limit}x plain at batch {batch_size} "
                      f"({args.state_dtype} state): {ratio:.2f}x, "
                      f"{'ok' if ratio <= limit else 'MISSED'}")
    else:
        print("(the speed issue's targets are read with --threads 1 --clock cpu, a float32 "
              "model and impl auto or numba)")
    if args.phases:
        for batch_size in args.batch_sizes:
            print_phases(X, y, batch_size, args.epochs, rln_kwargs, fused)


if __name__ == "__main__":
    main()
