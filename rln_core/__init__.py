"""rln_core: Regularization Learning Networks (Shavitt & Segal, 2018), the core update.

    state = rln_core.init(W, avg_reg=-10.0)
    rln_core.update(W, state, avg_reg=-10.0, learning_rate=1e6, norm=1)   # in place
    W2, state2 = rln_core.reference.update(W, state, ...)                  # pure oracle

Importing this package is cheap: numba is imported on the first update that uses it.
"""

from rln_core import inspection, reference
from rln_core._rln import RLN
from rln_core._state import RLNState, init
from rln_core._update import IMPLS, NumbaUnavailableWarning, numba_available, update
from rln_core.inspection import active_inputs, input_importance, sparsity

__version__ = "0.1.0"

__all__ = [
    "IMPLS", "RLN", "RLNState", "NumbaUnavailableWarning", "active_inputs", "init",
    "input_importance", "inspection", "numba_available", "reference", "sparsity", "update",
]
