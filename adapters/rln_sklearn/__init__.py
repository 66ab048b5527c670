"""rln_sklearn: Regularization Learning Networks as scikit-learn estimators.

    from rln_sklearn import RLNRegressor
    model = RLNRegressor(avg_reg=-10.0, learning_rate=1e6, random_state=0).fit(X, y)
    model.feature_importances_, model.sparsity_, model.lambdas_
"""

from rln_sklearn._estimators import RLNClassifier, RLNRegressor

__all__ = ["RLNClassifier", "RLNRegressor"]
