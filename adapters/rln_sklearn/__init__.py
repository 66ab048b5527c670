"""rln_sklearn: Regularization Learning Networks as scikit-learn estimators.

    from rln_sklearn import RLNRegressor
    model = RLNRegressor(avg_reg=-10.0, learning_rate=1e6, random_state=0).fit(X, y)
    model.feature_importances_, model.sparsity_, model.lambdas_

`RLNRegressor(rln=False)` is the tutorial's plain network and
`RLNRegressor(rln=False, l1=...)` its L1 baseline. Searches run on joblib
processes (`GridSearchCV(..., n_jobs=2)`) or, inside
`joblib.parallel_config(backend="dask")`, on a Dask cluster: see
examples/dask_grid_search.py. `rln demo` (`rln_sklearn.cli`) runs the tutorial's
comparison; `rln_sklearn.comparison.compare_paired` says whether scores paired by seed
differ beyond seed noise (a paired t test).
"""

from typing import Any

__all__ = ["RLNClassifier", "RLNRegressor"]


def __getattr__(name: str) -> Any:
    """The estimators, imported on first use: `import rln_sklearn._command` (the `rln`
    command's entry point) must not need scikit-learn, to say that it is missing."""
    if name in __all__:
        from rln_sklearn import _estimators
        return getattr(_estimators, name)
    raise AttributeError(f"module 'rln_sklearn' has no attribute {name!r}")
