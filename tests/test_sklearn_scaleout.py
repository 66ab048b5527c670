"""Hyperparameter search over RLN estimators: pipelines, joblib processes, a Dask cluster."""

import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import make_regression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from rln_sklearn import RLNRegressor

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "dask_grid_search.py"
GRID = {"rlnregressor__avg_reg": [-10.0, -8.0]}
EXAMPLE_GRID = {"avg_reg": [-10.0, -8.0]}


@pytest.fixture(scope="module")
def data():
    X, y = make_regression(n_samples=60, n_features=10, n_informative=3, noise=1.0,
                           random_state=0)
    return X, y


def pipeline():
    return make_pipeline(StandardScaler(), RLNRegressor(epochs=3, batch_size=16, random_state=0))


def test_cross_val_score_in_a_pipeline(data):
    scores = cross_val_score(pipeline(), *data, cv=3)
    assert scores.shape == (3,) and np.all(np.isfinite(scores))


def test_grid_search_on_joblib_processes(data):
    search = GridSearchCV(pipeline(), GRID, cv=2, n_jobs=2).fit(*data)
    serial = GridSearchCV(pipeline(), GRID, cv=2, n_jobs=1).fit(*data)
    assert search.best_params_["rlnregressor__avg_reg"] in GRID["rlnregressor__avg_reg"]
    # Same seeds in worker processes: the very same fits as in this process.
    np.testing.assert_allclose(search.cv_results_["mean_test_score"],
                               serial.cv_results_["mean_test_score"])


def test_grid_search_on_a_local_dask_cluster(data):
    distributed = pytest.importorskip("distributed")
    example = runpy.run_path(str(EXAMPLE))
    # Workers as threads of this process (they import rln_sklearn as the tests do),
    # talking TCP on 127.0.0.1 like a real cluster.
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                       protocol="tcp", host="127.0.0.1",
                                       dashboard_address=None)
    with cluster, distributed.Client(cluster), distributed.get_task_stream() as tasks:
        search = example["grid_search_on_dask"](*data, param_grid=EXAMPLE_GRID, epochs=3, cv=2)
    assert len(tasks.data) >= 4  # the 2 x 2 fits ran as tasks on the cluster
    # The example's model (default batch size) searched in this process: the same scores.
    model = RLNRegressor(epochs=3, random_state=0)
    serial = GridSearchCV(model, EXAMPLE_GRID, cv=2, scoring="neg_mean_squared_error").fit(*data)
    np.testing.assert_allclose(search.cv_results_["mean_test_score"],
                               serial.cv_results_["mean_test_score"])


def test_example_help():
    # It took "--help" for a scheduler address (ValueError: missing port number).
    done = subprocess.run([sys.executable, str(EXAMPLE), "--help"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--scheduler" in done.stdout and "--epochs" in done.stdout


def test_example_refuses_bad_numbers_before_starting_a_cluster(capsys):
    parse_args = runpy.run_path(str(EXAMPLE))["parse_args"]
    for argv, message in ((["--cv", "1"], "--cv: expected an int >= 2"),
                          (["--epochs", "x"], "--epochs: expected an int >= 1"),
                          (["--workers", "0"], "--workers: expected an int >= 1")):
        with pytest.raises(SystemExit) as exit_info:
            parse_args(argv)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
