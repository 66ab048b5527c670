"""The `rln` console command. `rln demo` runs the tutorial's comparison (see `_demo`).

    rln demo                                  # diabetes + 1000 noise inputs, ~1 minute
    rln demo --csv data.csv --target price --repeats 5 --epochs 100 --out results/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from rln_sklearn._demo import RLN, DemoSettings, format_table, run_demo
from rln_sklearn.datasets import load_table
from rln_sklearn.threads import use_one_thread_per_process

DEFAULTS = DemoSettings()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the `rln` command; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return _demo(parser, args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rln", description="Regularization Learning Networks (Shavitt & Segal, 2018).")
    commands = parser.add_subparsers(dest="command")
    demo = commands.add_parser(
        "demo", help="plain vs best-L1 vs RLN networks on a table plus noise inputs",
        description="The tutorial's comparison: a plain network, the best L1 network of a "
                    "small grid and RLN, on real inputs plus N(0, 1) noise inputs; prints a "
                    "table of test MSE and writes a figure.")
    demo.add_argument("--csv", type=Path, help="a CSV file (default: scikit-learn's diabetes set)")
    demo.add_argument("--target", help="the CSV column to predict (numeric); needs --csv")
    demo.add_argument("--noise-features", type=_non_negative_int, default=DEFAULTS.noise_features,
                      help="noise inputs to append (default %(default)s)")
    demo.add_argument("--repeats", type=_positive_int, default=DEFAULTS.repeats,
                      help="repeats with new noise, split and seed (default %(default)s)")
    demo.add_argument("--epochs", type=_positive_int, default=DEFAULTS.epochs,
                      help="training epochs of every network (default %(default)s)")
    demo.add_argument("--backend", choices=("torch", "keras"), default=DEFAULTS.backend)
    demo.add_argument("--avg-reg", type=float, default=DEFAULTS.avg_reg,
                      help="RLN's Theta (default %(default)s)")
    demo.add_argument("--learning-rate", type=float, default=DEFAULTS.learning_rate,
                      help="RLN's nu (default %(default)g)")
    demo.add_argument("--seed", type=int, default=DEFAULTS.seed)
    demo.add_argument("--out", type=Path, default=Path("rln-demo-out"),
                      help="folder for the figure (default %(default)s)")
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def _demo(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if (args.csv is None) != (args.target is None):
        parser.error("--csv and --target go together")
    X, y, names = _load_csv(parser, args.csv, args.target) if args.csv else load_table("diabetes")
    settings = DemoSettings(
        noise_features=args.noise_features, repeats=args.repeats, epochs=args.epochs,
        backend=args.backend, avg_reg=args.avg_reg, learning_rate=args.learning_rate,
        seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    use_one_thread_per_process()
    result = run_demo(X, y, names, settings, progress=not args.no_progress)
    print(format_table(result, settings))
    from rln_sklearn._demo_plot import write_demo_figure

    importances = {method: model.feature_importances_ for method, model in result.models.items()}
    path = write_demo_figure(args.out / "rln_demo.png", result.models[RLN].lambdas_,
                             importances, result.is_real, settings.avg_reg)
    print(f"figure: {path}")
    return 0


def _load_csv(parser: argparse.ArgumentParser, path: Path,
              target: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as error:
        parser.error(f"cannot read --csv {str(path)!r}: {error}")
    if target not in frame.columns:
        parser.error(f"--target {target!r} is not a column of {str(path)!r}; "
                     f"columns: {list(frame.columns)}")
    features = frame.drop(columns=[target])
    not_numeric = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if not_numeric:
        parser.error(f"the demo needs numeric columns; not numeric: {not_numeric} "
                     "(encode them first)")
    missing = [c for c in frame.columns if frame[c].isna().any()]
    if missing:
        parser.error(f"columns with missing values: {missing} (fill or drop them first)")
    return features.to_numpy(np.float64), frame[target].to_numpy(np.float64), \
        [str(c) for c in features.columns]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an int >= 0, got {text}")
    return value


if __name__ == "__main__":
    sys.exit(main())
