"""Return codes of the numba kernel (kept apart so reading them imports no numba)."""

OK = 0
BAD_WEIGHTS = 1  # a weight is NaN or inf
BAD_LAMBDAS = 2  # the lambda step would make a lambda NaN or inf
