"""Hyperparameter search over RLNRegressor on a Dask cluster, through joblib.

scikit-learn's searches run their fits through joblib; inside
`joblib.parallel_config(backend="dask")` those fits go to the Dask workers of
the active `distributed.Client`, with no change to the search itself. The
workers need `rln_sklearn` (and torch) importable, like any estimator code.

    python examples/dask_grid_search.py                          # local cluster on 127.0.0.1
    python examples/dask_grid_search.py tcp://scheduler:8786     # an existing cluster

Needs `dask[distributed]` (`pip install "dask[distributed]"`).
"""

from __future__ import annotations

import sys
from typing import Optional

import joblib
from sklearn.datasets import load_diabetes
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from rln_sklearn import RLNRegressor

PARAM_GRID = {"rlnregressor__avg_reg": [-12.0, -10.0, -8.0],
              "rlnregressor__learning_rate": [1e5, 1e6]}


def grid_search_on_dask(X, y, param_grid: dict = PARAM_GRID, epochs: int = 20,
                        cv: int = 3) -> GridSearchCV:
    """Fit a GridSearchCV over a scaled RLNRegressor, each fit a task on the Dask cluster.

    A `distributed.Client` must be active (the most recently created one is used).
    """
    model = make_pipeline(StandardScaler(), RLNRegressor(epochs=epochs, random_state=0))
    search = GridSearchCV(model, param_grid, cv=cv, scoring="neg_mean_squared_error")
    with joblib.parallel_config(backend="dask"):
        search.fit(X, y)
    return search


def main(address: Optional[str] = None) -> None:
    """Run the search on the cluster at `address`, or on a local one (2 workers)."""
    from distributed import Client, LocalCluster

    X, y = load_diabetes(return_X_y=True)
    if address is None:
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                               dashboard_address=None)
        with cluster, Client(cluster):
            search = grid_search_on_dask(X, y)
    else:
        with Client(address):
            search = grid_search_on_dask(X, y)
    print(f"best parameters: {search.best_params_}")
    print(f"best cross-validated MSE: {-search.best_score_:.1f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
