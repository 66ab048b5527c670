"""Return codes of the numba kernel (kept apart so reading them imports no numba)."""

OK = 0
BAD_WEIGHTS = 1  # a weight is NaN or inf
LAMBDAS_UNSURE = 2  # the kernel's cheap bound cannot vouch that the new lambdas are finite:
#                    the exact NumPy path decides (and refuses if they are not)
