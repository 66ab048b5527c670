"""rln_core: Regularization Learning Networks (Shavitt & Segal, 2018), the core update.

    hp = rln_core.Hyperparameters(avg_reg=-10.0, learning_rate=1e6, norm=1)
    state = rln_core.init(W, avg_reg=hp.avg_reg)
    rln_core.update(W, state, **hp.asdict())                    # in place (numba or NumPy)
    prepared = rln_core.PreparedUpdate(W, state); prepared(hp)  # the same, checked once
    W2, state2 = rln_core.reference.update(W, state, **hp.asdict())   # the pure oracle
    W3, state3 = rln_core.array_api.update(T, tstate, **hp.asdict())  # torch, JAX, ... arrays
    rln_core.fused.rmsprop_step(W, grad, state, square_avg=sq, lr=1e-3, **hp.asdict())

The contract (docs/RLN_SPEC.md): `Hyperparameters`, the fixed-structure
`RLNState` (`rln_core.state`), the weight change `delta` an update may be
given, one registry of implementations (`rln_core.implementations`), the input
checks and messages every adapter shares (`rln_core.checks`) and the
conformance kit (`rln_core.testing`). Importing this package is cheap: numba is
imported on the first update that uses it.
"""

from rln_core import array_api, checks, fused, implementations, inspection, reference, state
from rln_core._rln import RLN
from rln_core._update import PreparedUpdate, update
from rln_core.checks import CLIP_MARGIN
from rln_core.hyperparameters import DEFAULTS, ORIGINAL_CALLBACK_DEFAULTS, Hyperparameters
from rln_core.implementations import IMPLS, NumbaUnavailableWarning, numba_available
from rln_core.inspection import active_inputs, input_importance, sparsity
from rln_core.state import STATE_FIELDS, RLNState, init

__version__ = "0.1.0"

__all__ = [
    "CLIP_MARGIN", "DEFAULTS", "Hyperparameters", "IMPLS", "ORIGINAL_CALLBACK_DEFAULTS", "RLN",
    "RLNState", "STATE_FIELDS", "NumbaUnavailableWarning", "PreparedUpdate", "active_inputs",
    "array_api", "checks", "fused", "implementations", "init", "input_importance",
    "inspection", "numba_available", "reference", "sparsity", "state", "update",
]
