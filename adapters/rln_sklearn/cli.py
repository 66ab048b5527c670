"""The `rln` console command. `rln demo` runs the authors' tutorial experiment (see `_demo`).

    rln demo                                  # Boston housing + 1000 noise inputs, ~1 minute
    rln demo --full                           # the tutorial's 100 epochs and 10 repeats
    rln demo --data breast_cancer --json results.json
    rln demo --csv data.csv --target price --repeats 5 --epochs 100 --out results/
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np

from rln_sklearn._demo import (FULL_EPOCHS, FULL_REPEATS, MAX_NOISE_FEATURES, DemoSettings,
                               check_table, format_table, run_demo, to_json)
from rln_sklearn._training import RLN_PRECISIONS
from rln_sklearn.datasets import BUILTIN, CLASSIFICATION, load_table
from rln_sklearn.threads import use_one_thread_per_process

DEFAULTS = DemoSettings()
FIGURE_NAME = "rln_demo.png"
DATA_LABELS = {"boston": "Boston housing", "diabetes": "diabetes",
               "breast_cancer": "breast cancer"}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the `rln` command; returns the exit status."""
    parser, demo = _parsers()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return _demo(demo, args)  # its errors show `rln demo`'s usage


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("rln")
    except metadata.PackageNotFoundError:  # run from a checkout without installing
        import rln_core
        return rln_core.__version__


def _parsers() -> Tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """(the `rln` parser, its `demo` subparser)."""
    parser = argparse.ArgumentParser(
        prog="rln", description="Regularization Learning Networks (Shavitt & Segal, 2018).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command")
    demo = commands.add_parser(
        "demo", help="plain vs best-L1 vs RLN networks (and gradient boosting) on a table "
                     "plus noise inputs",
        description="The authors' tutorial experiment: a plain network, the best L1 network "
                    "of a small grid and RLN, on real inputs plus N(0, 1) noise inputs, with "
                    "gradient boosting as a reference; prints a table of test errors and "
                    "writes a figure. Default: Boston housing + 1000 noise inputs, "
                    f"{DEFAULTS.epochs} epochs, {DEFAULTS.repeats} repeats (about a minute).")
    source = demo.add_argument_group("data")
    source.add_argument("--data", choices=sorted(BUILTIN),
                        help="a built-in table (default boston, the tutorial's; breast_cancer "
                             "is classification)")
    source.add_argument("--csv", type=Path, help="a CSV file with a header row, numeric inputs")
    source.add_argument("--target", help="the CSV column to predict; needs --csv")
    source.add_argument("--classification", action="store_true",
                        help="the CSV target is a class label (log-loss, accuracy), not a number")
    demo.add_argument("--noise-features", type=_int_in(0, MAX_NOISE_FEATURES),
                      default=DEFAULTS.noise_features,
                      help=f"noise inputs to append, 0 to {MAX_NOISE_FEATURES} "
                           "(default %(default)s)")
    demo.add_argument("--full", action="store_true",
                      help=f"the tutorial's length: {FULL_EPOCHS} epochs, {FULL_REPEATS} "
                           "repeats (--epochs / --repeats still override)")
    demo.add_argument("--repeats", type=_int_in(1), help="repeats with new noise, split and "
                      f"seed (default {DEFAULTS.repeats}; --full {FULL_REPEATS})")
    demo.add_argument("--epochs", type=_int_in(1), help="training epochs of every network "
                      f"(default {DEFAULTS.epochs}; --full {FULL_EPOCHS})")
    demo.add_argument("--backend", choices=("torch", "keras"), default=DEFAULTS.backend)
    demo.add_argument("--avg-reg", type=_number, default=DEFAULTS.avg_reg,
                      help="RLN's Theta (default %(default)g)")
    demo.add_argument("--learning-rate", type=_number, default=DEFAULTS.learning_rate,
                      help="RLN's nu (default %(default)g)")
    demo.add_argument("--rln-precision", choices=RLN_PRECISIONS, default=DEFAULTS.rln_precision,
                      help="RLN's state and arithmetic: float64 (default) or float32, the "
                           "faster mode")
    demo.add_argument("--seed", type=_int_in(0), default=DEFAULTS.seed,
                      help="repeat r uses seed + r (default %(default)s)")
    demo.add_argument("--jobs", type=_int_in(1), default=DEFAULTS.jobs,
                      help="fits side by side in this many processes (default %(default)s)")
    demo.add_argument("--out", type=Path, default=Path("rln-demo-out"),
                      help=f"folder for the figure, {FIGURE_NAME} (default %(default)s)")
    demo.add_argument("--json", type=Path, metavar="PATH",
                      help="also write the results to this JSON file")
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser, demo


def _demo(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if (args.csv is None) != (args.target is None):
        parser.error("--csv and --target go together")
    if args.csv is not None and args.data is not None:
        parser.error("--data and --csv are alternatives; give one")
    if args.classification and args.csv is None:
        parser.error("--classification is for a --csv target (the built-in tables know "
                     "their task)")
    if args.csv is not None:
        X, y, names = _load_csv(parser, args.csv, args.target, args.classification)
        label, classification = str(args.csv), args.classification
    else:
        name = args.data or DEFAULTS.data
        X, y, names = load_table(name)
        label, classification = DATA_LABELS[name], name in CLASSIFICATION
    try:
        settings = DemoSettings(
            data=label, classification=classification, noise_features=args.noise_features,
            repeats=args.repeats or (FULL_REPEATS if args.full else DEFAULTS.repeats),
            epochs=args.epochs or (FULL_EPOCHS if args.full else DEFAULTS.epochs),
            backend=args.backend, avg_reg=args.avg_reg, learning_rate=args.learning_rate,
            rln_precision=args.rln_precision, seed=args.seed, jobs=args.jobs)
        check_table(X, y, settings)
    except ValueError as error:
        parser.error(str(error))
    figure = _check_out(parser, args.out)
    if args.json is not None:
        _check_writable(parser, "--json", args.json)
    use_one_thread_per_process()
    result = run_demo(X, y, names, settings, progress=not args.no_progress)
    print(format_table(result, settings))
    from rln_sklearn._demo_plot import write_demo_figure

    write_demo_figure(figure, result, settings)
    print(f"figure: {figure}")
    if args.json is not None:
        args.json.write_text(json.dumps(to_json(result, settings), indent=2) + "\n")
        print(f"results: {args.json}")
    return 0


def _load_csv(parser: argparse.ArgumentParser, path: Path, target: str,
              classification: bool) -> tuple[np.ndarray, np.ndarray, list[str]]:
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError) as error:
        parser.error(f"cannot read --csv {str(path)!r}: {error}")
    if target not in frame.columns:
        parser.error(f"--target {target!r} is not a column of {str(path)!r}; "
                     f"columns: {list(frame.columns)}")
    if len(frame) == 0:  # (its columns read as text: the numeric check would blame them)
        parser.error(f"{str(path)!r} has a header but no rows")
    features = frame.drop(columns=[target])
    if features.shape[1] == 0:
        parser.error(f"{str(path)!r} has no input column besides --target {target!r}: the "
                     "demo compares methods on real inputs plus noise, not on noise alone")
    checked = features if classification else frame
    not_numeric = [c for c in checked.columns if not pd.api.types.is_numeric_dtype(frame[c])
                   or pd.api.types.is_bool_dtype(frame[c])]
    if not_numeric:
        parser.error(f"the demo needs numeric columns; not numeric: {not_numeric} "
                     "(encode them first" + ("" if classification else
                                             ", or pass --classification for a class label")
                     + ")")
    missing = [c for c in frame.columns if frame[c].isna().any()]
    if missing:
        parser.error(f"columns with missing values: {missing} (fill or drop them first)")
    values = features.to_numpy(np.float64)
    infinite = [c for c, finite in zip(features.columns, np.isfinite(values).all(axis=0))
                if not finite]
    if infinite:
        parser.error(f"columns with inf values: {infinite} (replace them first)")
    y = frame[target].to_numpy() if classification else frame[target].to_numpy(np.float64)
    return values, y, [str(c) for c in features.columns]


def _check_out(parser: argparse.ArgumentParser, out: Path) -> Path:
    """Make the --out folder and prove the figure can be written there; the figure's path."""
    if out.exists() and not out.is_dir():
        parser.error(f"--out {str(out)!r} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        parser.error(f"cannot create the --out folder {str(out)!r}: {error}")
    figure = out / FIGURE_NAME
    if figure.exists() and not figure.is_file():
        parser.error(f"--out: {str(figure)!r} exists and is not a file")
    try:
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as error:
        parser.error(f"cannot write in the --out folder {str(out)!r}: {error}")
    if figure.exists() and not os.access(figure, os.W_OK):
        parser.error(f"--out: cannot overwrite {str(figure)!r}")
    return figure


def _check_writable(parser: argparse.ArgumentParser, option: str, path: Path) -> None:
    """Refuse a file path that cannot be written, before the run rather than after it."""
    if path.exists() and not path.is_file():
        parser.error(f"{option} {str(path)!r} exists and is not a file")
    existed = path.exists()
    try:
        with open(path, "a"):
            pass
    except OSError as error:
        parser.error(f"cannot write {option} {str(path)!r}: {error}")
    if not existed:
        path.unlink()


def _int_in(low: int, high: Optional[int] = None):
    """An argparse type: an int in [low, high], with a message naming the range."""
    expected = f"an int >= {low}" if high is None else f"an int from {low} to {high}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return value

    parse.__name__ = "int"
    return parse


def _number(text: str) -> float:
    """An argparse type: a float (its range is checked by rln_core.Hyperparameters)."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


if __name__ == "__main__":
    sys.exit(main())
