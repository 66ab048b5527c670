"""Input checks and messages for every implementation and adapter (raise before any write).

The public surface for adapter authors: an adapter checks its arrays with
these functions, raises these messages and decides the clip with
`CLIP_MARGIN`, so every framework refuses the same inputs the same way. The
checks accept any array library that `array-api-compat` knows (NumPy, torch,
JAX, CuPy, ...): shapes, dtypes and devices are compared through it.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any, Mapping, Optional, Tuple

import array_api_compat
import numpy as np

if TYPE_CHECKING:
    from rln_core.state import RLNState

FLOAT_DTYPES = ("float32", "float64")
"""The dtypes RLN accepts for weights, for the state and for a weight change."""

CLIP_MARGIN = 1e-11
"""The margin of the clip decision in the fast implementations (relative to 1 + |cap|).

Spec step 4 clips a lambda at its cap log|W / D|. Where a lambda ends within
rounding of its cap, two correct implementations can decide differently: their
logs differ by an ulp, and their means of the lambdas by the order of the sum
(about 1e-16 * mean |lambda| * a small factor). Deciding differently matters
in one direction only: a weight the reference clips lands on exactly 0, and
that must hold everywhere.

So the numba kernel and the array-API implementation also clip lambdas up to
CLIP_MARGIN * (1 + |cap|) below their cap. While the rounding differences stay
below that margin (|lambdas| up to ~1e5; training keeps them near Theta), every
weight the reference sets to 0 is 0 there too. An element only they clip gets
the cap as its lambda (off by at most the margin, 100x below the 1e-9
tolerance) and lands on 0 instead of a residue of at most about the margin
times |W|, also within tolerance. The reference itself decides exactly. In
float32 arithmetic the margin is below one ulp, so it changes nothing there.

The numba kernel compiles this and the other constants here into its code, and
numba's disk cache is keyed on the kernel's own source files only: after changing
one of them in a checkout, delete rln_core/__pycache__/*.nbi and *.nbc (or touch
rln_core/_numba_kernel.py), or the old value keeps running (an installed upgrade
rewrites every file, so it recompiles).
"""

CLIP_MARGIN_F32 = 1e-6
"""The clip margin of the float32 compute mode, relative to the element's scale
max(1, |cap|, |lambda in|, |lambda step|) (the lambda step: nu * delta * prev_reg).

In float32 arithmetic a lambda ends within 11 units of float32 roundoff
(u = 2**-24 = 6e-8) of the reference's float64 value, relative to that scale: the
lambda step (4 u of it; 5 with a float64 delta), its subtraction, the float32
shift, the final add (the mean itself is summed in float64). `log32_normal` puts
the cap within 1 ulp (2 u). 1e-6 is about 17 u, more than those 13 u: every lambda
the reference clips is clipped here, so every weight the reference sets to exactly
0 is exactly 0 here. (`CLIP_MARGIN`, 1e-11, is below float32's resolution.) The
numba kernel and `rln_core.array_api` (with a float32 `compute_dtype`) both use it.
"""

F32_LAMBDA_RTOL = 3e-6
"""The per-update tolerance of the float32 compute mode against the reference.

Lambdas within F32_LAMBDA_RTOL * max(1, |lambda ref|, |lambda in|, |lambda step|)
plus one float32 ulp of the reference's lambda; weights and prev_reg within one
ulp plus what that lambda tolerance implies (2 * |reg| * tolerance), plus the
smallest normal float32, as in `rln_core.testing`; a weight the reference sets to
exactly 0 is exactly 0, prev_weights is the weights as written. By the bounds
above an element only this mode clips is off by at most the margin plus 14 u,
1.9e-6 of its scale, and any other by 14 u; measured on the cases of
tests/test_core_float32_compute.py: within 1e-6.
"""

LOG_HALF = math.log(0.5)
"""The L2 cap of every lambda (spec step 4: log|W / D| with D = 2W)."""

NON_FINITE_WEIGHTS_MESSAGE = ("weights contain NaN or inf (or, with norm=2, a weight above "
                              "8.9e307, where D = 2w overflows); RLN update refused")

D_SCALE = {1: 1.0, 2: 2.0}
"""Per norm, a factor c with |D| <= c |W|: the weights must keep c * W finite."""


def non_finite_lambdas_message(learning_rate: float) -> str:
    """The error every implementation raises when the lambdas would not be finite."""
    return (f"the RLN lambdas are non-finite after the lambda step (learning_rate "
            f"{learning_rate!r} too large, or a state or weight change holding NaN/inf?); "
            "weights and state left unchanged")


def dtype_name(array: Any) -> str:
    """The dtype of an array of any library as a NumPy-style name ("float32", "int64", ...)."""
    return _dtype_name(array.dtype)


@functools.lru_cache(maxsize=64)
def _dtype_name(dtype: Any) -> str:
    name = getattr(dtype, "name", None)  # NumPy and JAX; a property computed in Python
    if isinstance(name, str):
        return name
    if isinstance(dtype, type):  # a scalar type: np.float32, jnp.float32
        try:
            return np.dtype(dtype).name
        except TypeError:
            pass
    return str(dtype).rpartition(".")[2]  # torch.float32; a name ("float32") as it is


def namespace(array: Any) -> Any:
    """The array-API namespace of `array` (`array_api_compat.array_namespace`).

    NumPy arrays take a shortcut: array-api-compat's detection costs about a
    millisecond per float64 NumPy array once JAX is imported.
    """
    if type(array) is np.ndarray:
        return _numpy_namespace()
    return array_api_compat.array_namespace(array)


@functools.lru_cache(maxsize=None)
def _numpy_namespace() -> Any:
    import array_api_compat.numpy

    return array_api_compat.numpy


def device(array: Any) -> Any:
    """The device of `array` ("cpu" for NumPy arrays)."""
    return "cpu" if type(array) is np.ndarray else array_api_compat.device(array)


def is_array(value: object) -> bool:
    """Whether `value` is an array of a library `array-api-compat` knows."""
    if type(value) is np.ndarray:  # the per-update path: skip array-api-compat's probing
        return True
    return array_api_compat.is_array_api_obj(value) and not isinstance(value, (bool, int, float))


def check_float32_inputs(weights: Any, state: "RLNState") -> None:
    """compute_dtype=float32 takes float32 weights and a float32 state only (arrays of any
    library): `check_float32_dtypes` of W and of the state's float arrays."""
    check_float32_dtypes(
        ({"weights": weights.dtype}, "float32 weights, or compute_dtype=None for float64 "
                                     "arithmetic"),
        ({"state.lambdas": state.lambdas.dtype, "state.prev_reg": state.prev_reg.dtype},
         "make the state with rln_core.init(..., state_dtype='float32')"))


def check_float32_dtypes(*groups: Tuple[Mapping[str, Any], str], who: str = "") -> None:
    """The rule of the float32 arithmetic mode, for the arrays an update would read, or
    will (an adapter checks when it is made, before any array exists): float32 weights and
    a float32 state only, as float32 arithmetic on float64 values would round them.

    Args:
        groups: (dtypes, fix) pairs: {what it is (for the message): its dtype}, a dtype
            of any library (NumPy, torch, JAX; a scalar type such as np.float32 too) or a
            name ("float32"); and what the user can do about those entries ("" for
            nothing), said where one of them is not float32.
        who: who asks, put first in the message ("RLNCallback on layer 'dense'").

    Raises:
        TypeError: naming every entry that is not float32 (of all groups), then the fixes.
    """
    wrong, fixes = [], []
    for dtypes, fix in groups:
        # by name (cached): a big-endian float32 is float32 too
        named = [f"{name} {_dtype_name(dtype)}" for name, dtype in dtypes.items()
                 if _dtype_name(dtype) != "float32"]
        wrong += named
        if named and fix:
            fixes.append(fix)
    if wrong:
        raise TypeError(f"{who}{': ' if who else ''}compute_dtype=float32 needs float32 "
                        f"weights and a float32 state; got {', '.join(wrong)}"
                        + "".join(f"; {fix}" for fix in fixes))


def float32_arithmetic(compute_dtype: Any) -> bool:
    """Whether `compute_dtype` asks for the float32 arithmetic mode (docs/RLN_SPEC.md).

    None or float64 (np.float64, "float64", an np.dtype): False, the spec's float64;
    float32 (np.float32, "float32", ...): True. Adapters whose library has its own
    dtypes (torch) translate them first.

    Raises:
        TypeError: any other value (another dtype, or not a dtype).
    """
    if compute_dtype is None:
        return False
    if compute_dtype is np.float32:  # the per-update call: no parsing
        return True
    try:
        name = np.dtype(compute_dtype).name
    except (TypeError, ValueError):
        name = None
    if name not in FLOAT_DTYPES:
        raise TypeError(f"Invalid compute_dtype: {compute_dtype!r}; expected None (float64) "
                        "or float32")
    return name == "float32"


def check_weights(weights: Any, *, writable: bool = False, name: str = "weights") -> None:
    """A non-empty float32/float64 array (NumPy: writable when updated in place).

    Raises:
        TypeError: not an array, or not float32/float64. ValueError: empty; with
            `writable`, a read-only or broadcast (zero-stride) NumPy array.
    """
    if not is_array(weights):
        raise TypeError(f"{name} must be an array (NumPy, torch, JAX, ...), got "
                        f"{type(weights).__name__}")
    if dtype_name(weights) not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got dtype {dtype_name(weights)}")
    if math.prod(weights.shape) == 0:
        raise ValueError(f"{name} is empty (shape {tuple(weights.shape)})")
    if writable and isinstance(weights, np.ndarray):
        if not weights.flags.writeable:
            raise ValueError(f"{name} is read-only; RLN updates it in place")
        if any(stride == 0 and length > 1
               for stride, length in zip(weights.strides, weights.shape)):
            raise ValueError(f"{name} has a zero stride (a broadcast view: several elements "
                             "are one memory cell); RLN updates every element in place")


def check_update_inputs(weights: Any, state: "RLNState", delta: Optional[Any] = None, *,
                        in_place: bool) -> None:
    """Check W (and a given weight change) against its state; raise before any write.

    Args:
        weights: W after the optimizer step.
        state: its `RLNState` (checked with `rln_core.state.check_state`).
        delta: the weight change the lambda step learns from, or None (W - prev_weights).
        in_place: the update will overwrite `weights` and the state's arrays:
            NumPy arrays must then be writable and must not overlap.

    Raises:
        TypeError, ValueError: naming the array and what does not fit.
    """
    from rln_core.state import check_state

    check_weights(weights, writable=in_place)
    check_state(state)
    shape = tuple(state.lambdas.shape)
    if tuple(weights.shape) != shape:
        raise ValueError(f"weights have shape {tuple(weights.shape)} but the RLN state was "
                         f"made for shape {shape}")
    if dtype_name(weights) != dtype_name(state.prev_weights):
        raise TypeError(f"weights have dtype {dtype_name(weights)} but the RLN state was made "
                        f"for {dtype_name(state.prev_weights)}")
    _check_same_library_and_device(weights, state.lambdas, "the RLN state")
    if in_place and isinstance(weights, np.ndarray):
        _check_no_overlap(_in_place_arrays(weights, state))
    if delta is not None:
        check_delta(weights, state, delta, in_place=in_place)


def check_delta(weights: Any, state: "RLNState", delta: Any, *, in_place: bool) -> None:
    """Check a given weight change against W and its state, both already checked
    (`check_update_inputs`, which calls this for its `delta`); raise before any write.

    Raises:
        TypeError, ValueError: naming delta and what does not fit.
    """
    check_weights(delta, name="delta")
    shape = tuple(state.lambdas.shape)
    if tuple(delta.shape) != shape:
        raise ValueError(f"delta has shape {tuple(delta.shape)}; it must have the weights' "
                         f"shape {shape}")
    _check_same_library_and_device(weights, delta, "delta")
    if in_place and isinstance(weights, np.ndarray):
        _check_no_overlap({**_in_place_arrays(weights, state), "delta": delta}, only="delta")


def _check_same_library_and_device(weights: Any, other: Any, what: str) -> None:
    if namespace(other) is not namespace(weights):
        raise TypeError(f"{what} holds {type(other).__name__} arrays but the weights are "
                        f"{type(weights).__name__}")
    if device(other) != device(weights):
        raise ValueError(f"{what} is on {device(other)} but the weights are on "
                         f"{device(weights)}")


def _in_place_arrays(weights: np.ndarray, state: "RLNState") -> dict:
    """The arrays an in-place update writes, by the names its errors use."""
    return {"weights": weights, "state.lambdas": state.lambdas,
            "state.prev_weights": state.prev_weights, "state.prev_reg": state.prev_reg}


def _check_no_overlap(arrays: dict, only: Optional[str] = None) -> None:
    """The state's arrays are writable and no two of `arrays` overlap (with `only`: no
    other array overlaps that one; the others were checked already)."""
    if only is None:
        for name, array in arrays.items():
            if name != "weights" and not array.flags.writeable:
                raise ValueError(f"{name} is read-only; it is updated in place")
    names = list(arrays)
    owners = {name: array.flags.owndata for name, array in arrays.items()}
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            if only is not None and only not in (first, second):
                continue
            if owners[first] and owners[second] and arrays[first] is not arrays[second]:
                continue  # two arrays that own their memory: two allocations
            if np.may_share_memory(arrays[first], arrays[second]):
                raise ValueError(f"{first} and {second} share memory; every array of an "
                                 "in-place RLN update must be its own")


_BUSY: dict = {}  # id of each state being updated now -> the guard updating it


class one_update_at_a_time:  # lower case: used as `with one_update_at_a_time(state):`
    """Run an in-place update of `state`; refuse a second one while it runs.

    Two threads updating one state would tear it (steps advanced once, weights
    matching neither update). Updates of different states may run in parallel.
    (A class rather than a generator context manager, and no lock: it runs on every
    update. `dict.setdefault` claims the state in one atomic operation, under the
    GIL and in free-threaded CPython alike: 0.6 -> 0.3 us per update, measured.)

    Raises:
        RuntimeError: the state is being updated (by another thread) already.
    """

    __slots__ = ("_key",)

    def __init__(self, state: "RLNState"):
        self._key = id(state)

    def __enter__(self) -> None:
        if _BUSY.setdefault(self._key, self) is not self:
            raise RuntimeError("this RLN state is being updated by another thread; updates "
                               "of one tensor must not run concurrently (take a lock around "
                               "them)")

    def __exit__(self, *exc_info: object) -> None:
        del _BUSY[self._key]
