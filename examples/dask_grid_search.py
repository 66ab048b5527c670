"""Hyperparameter search over RLNRegressor on a Dask cluster, through joblib.

scikit-learn's searches run their fits through joblib; inside
`joblib.parallel_config(backend="dask")` those fits go to the Dask workers of
the active `distributed.Client`, with no change to the search itself. The
workers need `rln_sklearn` (and torch) importable, like any estimator code.

    pip install -e ".[sklearn,dask]"     # dask[distributed]
    python examples/dask_grid_search.py                              # a local cluster
    python examples/dask_grid_search.py --scheduler tcp://host:8786  # an existing cluster
    python examples/dask_grid_search.py --epochs 5 --cv 2            # a quicker search
"""

from __future__ import annotations

import argparse
from typing import Optional, Sequence

import joblib
from sklearn.datasets import load_diabetes
from sklearn.model_selection import GridSearchCV

from rln_sklearn import RLNRegressor

PARAM_GRID = {"avg_reg": [-12.0, -10.0, -8.0], "learning_rate": [1e5, 1e6]}


def grid_search_on_dask(X, y, param_grid: dict = PARAM_GRID, epochs: int = 20,
                        cv: int = 3) -> GridSearchCV:
    """Fit a GridSearchCV over RLNRegressor (it standardizes X itself), each fit a task on
    the Dask cluster.

    A `distributed.Client` must be active (the most recently created one is used).
    """
    model = RLNRegressor(epochs=epochs, random_state=0)
    search = GridSearchCV(model, param_grid, cv=cv, scoring="neg_mean_squared_error")
    with joblib.parallel_config(backend="dask"):
        search.fit(X, y)
    return search


def _int_at_least(low: int):
    """An argparse type: an int >= low, refused before any cluster starts."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an int >= {low}, got {text!r}")
        return value

    parse.__name__ = "int"
    return parse


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Grid search over RLNRegressor's Theta and nu on scikit-learn's diabetes "
                    "data, every fit a task on a Dask cluster.")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="a running scheduler, e.g. tcp://host:8786 (default: start a "
                             "local cluster on 127.0.0.1)")
    parser.add_argument("--workers", type=_int_at_least(1), default=2,
                        help="workers of the local cluster (default %(default)s)")
    parser.add_argument("--epochs", type=_int_at_least(1), default=20,
                        help="epochs per fit (default %(default)s)")
    parser.add_argument("--cv", type=_int_at_least(2), default=3,
                        help="folds (default %(default)s)")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> GridSearchCV:
    """Run the search on the cluster at --scheduler, or on a local one."""
    args = parse_args(argv)
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise SystemExit("this example needs dask[distributed]: "
                         "pip install -e \".[sklearn,dask]\"") from None

    X, y = load_diabetes(return_X_y=True)
    if args.scheduler is None:
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, host="127.0.0.1",
                               dashboard_address=None)
        with cluster, Client(cluster):
            search = grid_search_on_dask(X, y, epochs=args.epochs, cv=args.cv)
    else:
        with Client(args.scheduler):
            search = grid_search_on_dask(X, y, epochs=args.epochs, cv=args.cv)
    print(f"best parameters: {search.best_params_}")
    print(f"best cross-validated MSE: {-search.best_score_:.1f}")
    return search


if __name__ == "__main__":
    main()
