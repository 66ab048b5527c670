"""scikit-learn's own estimator checks on RLNRegressor and RLNClassifier, none expected to fail.

scikit-learn's `check_array_api_input` skips itself unless SCIPY_ARRAY_API=1 was
set before SciPy was imported: it runs in a Python process started with it, so
every check runs and none is skipped.
"""

import os
import subprocess
import sys
from pathlib import Path

from sklearn.utils.estimator_checks import parametrize_with_checks

from rln_sklearn import RLNClassifier, RLNRegressor

# The checks fit many times on tiny data sets; a few epochs of 16-sample batches
# at a larger step size learn them well enough (check_*_train asks for R^2 > 0.5,
# accuracy > 0.83). check_classifiers_train's blobs have 2 features: the hidden
# widths' floor (6, not the tutorial formula's 2 -> 1 -> 1) lets it pass.
SETTINGS = dict(epochs=30, batch_size=16, lr=0.01, learning_rate=1e5, random_state=0)
ARRAY_API_CHECK = "check_array_api_input"
HERE = Path(__file__).resolve().parent

# Run in a process started with SCIPY_ARRAY_API=1: every `check_array_api_input`
# scikit-learn generates for the estimator named by argv[1] (a SkipTest fails it).
ARRAY_API_SCRIPT = f"""
import sys
from sklearn.utils.estimator_checks import estimator_checks_generator
import rln_sklearn
import test_sklearn_checks as t

estimator = getattr(rln_sklearn, sys.argv[1])(**t.SETTINGS)
ran = 0
for each, check in estimator_checks_generator(estimator, legacy=True):
    if t.check_name(check) == {ARRAY_API_CHECK!r}:
        check(each)
        ran += 1
assert ran, "scikit-learn generated no {ARRAY_API_CHECK}"
print("checked", ran)
"""


def check_name(check) -> str:
    """The name of a check as scikit-learn generates it (a function or a partial of one)."""
    return getattr(check, "func", check).__name__


def run_with_scipy_array_api(estimator) -> None:
    env = {**os.environ, "SCIPY_ARRAY_API": "1",  # this checkout's packages and tests
           "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(HERE.parent / "adapters"),
                                          str(HERE)])}
    run = subprocess.run([sys.executable, "-c", ARRAY_API_SCRIPT, type(estimator).__name__],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "checked" in run.stdout, run.stdout + run.stderr[-4000:]


@parametrize_with_checks([RLNRegressor(**SETTINGS), RLNClassifier(**SETTINGS)])
def test_sklearn_compatible(estimator, check):
    if check_name(check) == ARRAY_API_CHECK:
        run_with_scipy_array_api(estimator)
    else:
        check(estimator)
