"""scikit-learn's own estimator checks on RLNRegressor and RLNClassifier, none expected to fail."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from rln_sklearn import RLNClassifier, RLNRegressor

# The checks fit many times on tiny data sets; a few epochs of 16-sample batches
# at a larger step size learn them well enough (check_*_train asks for R^2 > 0.5,
# accuracy > 0.83). check_classifiers_train's blobs have 2 features: the hidden
# widths' floor (6, not the tutorial formula's 2 -> 1 -> 1) lets it pass.
SETTINGS = dict(epochs=30, batch_size=16, lr=0.01, learning_rate=1e5, random_state=0)


@parametrize_with_checks([RLNRegressor(**SETTINGS), RLNClassifier(**SETTINGS)])
def test_sklearn_compatible(estimator, check):
    check(estimator)
