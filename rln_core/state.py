"""The per-tensor RLN state: its schema, its checker, its serialized form.

One schema for every array library (NumPy here, torch tensors in `rln_torch`):
four fields whose structure never changes, so the first update is told by
`steps == 0` alone and a state can live inside a compiled step.

Serialized form (`RLNState.to_dict`, read back by `from_dict` or, for arrays
of any library, by `complete_fields`): {"lambdas", "prev_weights", "prev_reg",
"steps"}. The torch `state_dict` and the Keras `get_state` wrap this dict.
Checkpoints written before `prev_reg` was allocated at init (no "prev_reg"
at steps 0) still load: their prev_reg is zeros, which the first update ignores.
"""

from __future__ import annotations

import dataclasses
import operator
from typing import Any, Dict, Mapping

import numpy as np

from rln_core.checks import FLOAT_DTYPES, check_weights, device, dtype_name, is_array, namespace
from rln_core.hyperparameters import DEFAULTS, Hyperparameters

STATE_FIELDS = ("lambdas", "prev_weights", "prev_reg", "steps")
STATE_DTYPES = tuple(np.dtype(name) for name in reversed(FLOAT_DTYPES))  # float64, float32


@dataclasses.dataclass
class RLNState:
    """State of RLN for one regularized tensor W (arrays of one library, on W's device).

    Mutable on purpose: the in-place update (`rln_core.update`) overwrites the
    arrays and advances `steps`. The pure implementations (`rln_core.reference`,
    `rln_core.array_api`) never mutate it and return a new one.

    Attributes:
        lambdas: log regularization coefficients, shape=W.shape,
            dtype=state dtype (float64 by default, float32 optionally).
        prev_weights: W as written back by the previous update, shape=W.shape,
            dtype=W.dtype (not read when the update is given `delta`).
        prev_reg: the regularization step of the previous update, shape=W.shape,
            dtype=state dtype; zeros at init, not read on the first update.
        steps: number of updates applied so far; 0 means the next update is the
            first (no lambda step).
    """

    lambdas: Any
    prev_weights: Any
    prev_reg: Any
    steps: int = 0

    def to_dict(self) -> Dict[str, Any]:
        """The state as {"lambdas", "prev_weights", "prev_reg": copies, "steps": int}.

        Copies, so a saved "best state" does not follow the training; for
        `np.savez(path, **state.to_dict())` or any checkpoint.
        """
        out: Dict[str, Any] = {name: _copy(getattr(self, name)) for name in STATE_FIELDS[:3]}
        out["steps"] = int(self.steps)
        return out

    @classmethod
    def from_dict(cls, arrays: Mapping[str, Any]) -> "RLNState":
        """Rebuild a state from `to_dict()` output or an older checkpoint (copies every array).

        Raises:
            ValueError, TypeError: missing or unknown fields, fields that do not fit
                one another (see `check_state`), or NaN/inf values (`check_values`).
        """
        fields = complete_fields(arrays)
        state = cls(**{name: _copy(fields[name]) for name in STATE_FIELDS[:3]},
                    steps=fields["steps"])
        check_state(state)
        check_values(fields)
        return state

    def copy(self) -> "RLNState":
        """Deep copy (every array copied)."""
        return dataclasses.replace(self, **{name: _copy(getattr(self, name))
                                            for name in STATE_FIELDS[:3]})


def init(weights: np.ndarray, avg_reg: float = DEFAULTS.avg_reg,
         state_dtype: "np.typing.DTypeLike" = np.float64) -> RLNState:
    """Create the RLN state for a NumPy weight tensor.

    Args:
        weights: the regularized tensor W, any shape, float32 or float64.
        avg_reg: Theta, the initial value and the mean of the lambdas (natural log).
        state_dtype: dtype of `lambdas` and `prev_reg`: float64 (exact, the
            default) or float32 (half the memory traffic; see README for its tolerance).

    Returns:
        lambdas = Theta everywhere, prev_weights = a copy of W, prev_reg = zeros,
        steps = 0. The arrays keep W's memory order, so views of W and state line up.

    Raises:
        TypeError: W not float32/float64 (or not real numbers), a state_dtype other than
            float64/float32.
        ValueError: an empty W; Theta not finite, or beyond a float32 state's range.
    """
    weights = np.asarray(weights)
    check_weights(weights)
    Hyperparameters(avg_reg=avg_reg)
    dtype = check_state_dtype(state_dtype)
    check_avg_reg_fits(avg_reg, dtype)
    lambdas = np.empty_like(weights, dtype=dtype)
    lambdas.fill(avg_reg)
    return RLNState(lambdas=lambdas, prev_weights=weights.copy(order="K"),
                    prev_reg=np.zeros_like(lambdas))


def check_avg_reg_fits(avg_reg: float, state_dtype: "np.typing.DTypeLike") -> None:
    """Theta must be finite in the state's dtype (the lambdas start at it); a
    ValueError naming both otherwise (a float32 state overflows beyond 3.4e38)."""
    dtype = check_state_dtype(state_dtype)
    largest = float(np.finfo(dtype).max)
    if not abs(avg_reg) <= largest:
        raise ValueError(f"avg_reg (Theta) {avg_reg!r} does not fit a {dtype.name} state "
                         f"(largest {largest:.4g}): the lambdas start at Theta; use a "
                         "smaller Theta, or a float64 state where the backend has float64")


def check_state_dtype(state_dtype: "np.typing.DTypeLike") -> np.dtype:
    """The state dtype as a NumPy dtype: float64 or float32 (np.float64, "float32", an
    np.dtype, ...; None is NumPy's default, float64).

    Raises:
        TypeError: any other value, a name NumPy does not know, or a dtype NumPy cannot
            read (torch.float32: adapters translate their dtypes first; JAX's dtypes are
            NumPy's and pass).
    """
    try:
        dtype = np.dtype(state_dtype)
    except (TypeError, ValueError):
        dtype = None
    # (`dtype in STATE_DTYPES` alone let None through: np.dtype("float64") == None is True)
    if dtype is None or dtype not in STATE_DTYPES:
        raise TypeError(f"Invalid state_dtype: {state_dtype!r}; expected float64 or float32")
    return dtype


def check_state(state: RLNState) -> None:
    """Check a state is self-consistent, for arrays of any library; raise otherwise.

    lambdas and prev_reg: one float dtype; prev_weights: float32/float64; all
    three: one shape, one library, one device; steps: an int >= 0.
    """
    if not isinstance(state, RLNState):
        raise TypeError(f"state must be an RLNState, got {type(state).__name__}")
    lambdas = state.lambdas
    if not is_array(lambdas) or dtype_name(lambdas) not in FLOAT_DTYPES:
        raise TypeError("state.lambdas must be a float64 or float32 array, got "
                        f"{_describe(lambdas)}")
    check_weights(state.prev_weights, name="state.prev_weights")
    prev_reg = state.prev_reg
    if not is_array(prev_reg) or dtype_name(prev_reg) != dtype_name(lambdas):
        raise TypeError(f"state.prev_reg must be an array of the lambdas' dtype "
                        f"{dtype_name(lambdas)}, got {_describe(prev_reg)}")
    library, on = namespace(lambdas), device(lambdas)
    for name in ("prev_weights", "prev_reg"):
        array = getattr(state, name)
        if tuple(array.shape) != tuple(lambdas.shape):
            raise ValueError(f"state.{name} has shape {tuple(array.shape)}, state.lambdas "
                             f"has shape {tuple(lambdas.shape)}")
        if namespace(array) is not library or device(array) != on:
            raise TypeError(f"state.{name} is a {type(array).__name__} on {device(array)}; "
                            f"state.lambdas is a {type(lambdas).__name__} on {on}")
    check_steps(state.steps)


def holds(state: RLNState, arrays: tuple) -> bool:
    """Whether `state` holds exactly these array objects (lambdas, prev_weights, prev_reg),
    as when they were last checked; `state_arrays(state)` gives the tuple."""
    return len(arrays) == 3 and state.lambdas is arrays[0] \
        and state.prev_weights is arrays[1] and state.prev_reg is arrays[2]


def state_arrays(state: RLNState) -> tuple:
    """(state.lambdas, state.prev_weights, state.prev_reg): what `holds` compares."""
    return state.lambdas, state.prev_weights, state.prev_reg


def check_steps(steps: Any, where: str = "state.steps") -> int:
    """`steps` as an int >= 0 (an int, a NumPy integer or a 0-d integer array or tensor of
    any library; not a bool, a float or a longer array); raise ValueError otherwise."""
    if type(steps) is int and steps >= 0:  # what the updates store: checked at every update
        return steps
    boolean = isinstance(steps, (bool, np.bool_)) or "bool" in str(getattr(steps, "dtype", ""))
    try:  # (torch takes a one-element tensor of any shape as an index: 0-d only here)
        value = None if boolean or getattr(steps, "ndim", 0) != 0 else operator.index(steps)
    except TypeError:
        value = None
    if value is None or value < 0:
        raise ValueError(f"{where} must be an int >= 0, got {steps!r}")
    return value


def complete_fields(fields: Mapping[str, Any], where: str = "RLN state dict") -> Dict[str, Any]:
    """A serialized state's fields, checked for names and completed; arrays of any library.

    A checkpoint written before prev_reg was part of init has no "prev_reg" at
    steps 0: it gets zeros like the lambdas (ignored by the first update).

    Returns:
        {"lambdas", "prev_weights", "prev_reg": the arrays given (not copied), "steps": int}.

    Raises:
        ValueError: a missing or unknown field, no prev_reg after the first update, or a
            step count that is not an integer >= 0 (`check_steps`). The arrays are not
            checked here (`RLNState.from_dict` and the adapters' loaders check them).
    """
    names = set(fields)
    required = set(STATE_FIELDS) - {"prev_reg"}
    if not required <= names <= set(STATE_FIELDS):
        raise ValueError(f"{where} has fields {sorted(names)}; expected {list(STATE_FIELDS)} "
                         "(prev_reg may be absent at steps 0)")
    steps = check_steps(fields["steps"], f"{where}['steps']")
    out = {name: fields[name] for name in ("lambdas", "prev_weights")}
    if "prev_reg" in fields:
        out["prev_reg"] = fields["prev_reg"]
    elif steps == 0:
        lambdas = fields["lambdas"]
        if not is_array(lambdas):
            raise TypeError(f"{where}['lambdas'] must be an array, got {_describe(lambdas)}")
        out["prev_reg"] = namespace(lambdas).zeros_like(lambdas)
    else:
        raise ValueError(f"{where} has steps={steps} but no prev_reg")
    out["steps"] = steps
    return out


def check_values(fields: Mapping[str, Any], where: str = "RLN state dict") -> None:
    """Refuse a state to be loaded whose values cannot continue: NaN or inf in lambdas or
    prev_weights (where `fields` has one: a state learning from a given delta keeps none),
    or in prev_reg once steps > 0 (a first update does not read prev_reg).

    For arrays of any library, after their types and layouts are checked (it reads
    every value: one host sync on an accelerator). Without this, every later update
    would fail with a message about the learning rate.

    Raises:
        ValueError: naming the field.
    """
    names = ["lambdas"] + (["prev_weights"] if "prev_weights" in fields else []) + (
        ["prev_reg"] if int(fields["steps"]) > 0 else [])
    for name in names:
        array = fields[name]
        xp = namespace(array)
        if not bool(xp.all(xp.isfinite(array))):
            raise ValueError(f"{where}['{name}'] holds NaN or inf (saved after a diverged "
                             "step?); such a state cannot continue training")


def _copy(array: Any) -> Any:
    """A copy of an array of any library, in its memory order where the library keeps one."""
    if isinstance(array, np.ndarray):
        return array.copy(order="K")
    clone = getattr(array, "clone", None)  # torch: keeps strides, device and dtype
    return clone() if callable(clone) else namespace(array).asarray(array, copy=True)


def _describe(value: Any) -> str:
    return f"{type(value).__name__} of dtype {dtype_name(value)}" if is_array(value) \
        else type(value).__name__
