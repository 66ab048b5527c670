"""Conformance kit: prove an RLN implementation matches the reference, one update at a time.

    from rln_core.testing import check_update, check_rejects_bad_input, check_trajectory
    check_update(my_update)              # AssertionError naming case, element, difference
    check_rejects_bad_input(my_update)   # bad input must raise and change nothing
    check_trajectory(my_update)          # runs of updates: no stale state between calls

`my_update(weights, state, *, avg_reg, learning_rate, norm[, delta])` receives
NumPy arrays and an `RLNState`; `delta` (the weight change to learn from) is
passed only by the cases that have one (`UpdateCase.delta`). It either returns
`(new_weights, new_state)` or updates them in place (any other return value is
ignored). An adapter for another framework wraps the arrays (e.g.
`torch.from_numpy`), runs its own math and writes back.

On a first update (steps == 0) the cases fill prev_reg with NaN: the spec says
it is not read then, and an implementation that reads it fails. Every case checks
`prev_weights` against the written weights, `delta` given or not (the spec lets an
implementation that is always given `delta` keep no prev_weights: its wrapper then
fills prev_weights with the new weights), and that the new weights, lambdas,
prev_weights and prev_reg are four arrays sharing no memory (with prev_weights the
same array as the weights, the next weight change of an in-place optimizer step
would read 0).

Tolerances (docs/RLN_SPEC.md, "per update", `SPEC_TOLERANCE`): lambdas within
1e-9 relative (plus one ulp of the state dtype); weights and prev_reg within one
ulp of their dtype plus what that lambda tolerance implies (2 * |reg| * tol), plus
the smallest normal number (XLA flushes subnormals to zero); a weight the
reference sets to exactly 0 must be exactly 0; `prev_weights` must equal the
written weights. An implementation that computes in float32 on purpose (the
core's `compute_dtype=np.float32`) is held to `FLOAT32_COMPUTE_TOLERANCE` on its
inputs, float32 weights and a float32 state:
`check_update(fn, FLOAT32_CASES, tolerance=FLOAT32_COMPUTE_TOLERANCE)`.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Tuple, Type

import numpy as np

from rln_core import reference
from rln_core.checks import F32_LAMBDA_RTOL
from rln_core.hyperparameters import DEFAULTS
from rln_core.state import RLNState, check_steps, init

__all__ = ["UpdateFn", "LAMBDA_RTOL", "Tolerance", "SPEC_TOLERANCE", "FLOAT32_COMPUTE_TOLERANCE",
           "UpdateCase", "CASES", "FLOAT32_CASES", "check_update", "TrajectoryCase",
           "TRAJECTORY_CASES", "check_trajectory", "input_scale", "assert_update_matches",
           "ErrorCase", "ERROR_CASES", "check_rejects_bad_input"]

UpdateFn = Callable[..., Optional[Tuple[np.ndarray, RLNState]]]
LAMBDA_RTOL = 1e-9


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """How far a lambda may be from the reference's, per element, in one update.

    Within `lambda_rtol * scale` plus one ulp of the state dtype, where scale is
    max(1, |lambda ref|), and with `relative_to_inputs` also |lambda in| and
    |nu * delta * prev_reg| (the magnitudes float32 arithmetic adds and
    subtracts). The weight and prev_reg tolerances follow from it.
    """

    lambda_rtol: float = LAMBDA_RTOL
    relative_to_inputs: bool = False


SPEC_TOLERANCE = Tolerance()
"""The spec's per-update tolerance: every float64 implementation meets it."""

FLOAT32_COMPUTE_TOLERANCE = Tolerance(F32_LAMBDA_RTOL, relative_to_inputs=True)
"""The tolerance of float32 arithmetic (`rln_core.checks.F32_LAMBDA_RTOL`)."""


@dataclasses.dataclass(frozen=True)
class _Setting:
    """What every case names: the weights (shape, dtype) and the hyperparameters."""

    name: str
    shape: Tuple[int, ...]
    dtype: str = "float32"
    norm: int = DEFAULTS.norm
    avg_reg: float = DEFAULTS.avg_reg
    learning_rate: float = DEFAULTS.learning_rate

    def kwargs(self) -> dict:
        """The hyperparameters, as keywords of an update."""
        return {"avg_reg": self.avg_reg, "learning_rate": self.learning_rate, "norm": self.norm}


@dataclasses.dataclass(frozen=True)
class UpdateCase(_Setting):
    """One reproducible (weights, state, hyperparameters) input of the suite."""

    first: bool = False  # steps == 0: the first update of training (prev_reg not read)
    layout: str = "C"  # "C", "F" (transposed view) or "strided" (every other column)
    # "": the state's arrays (and a given delta) in the weights' layout, as `init` makes
    # them; "C" or "F": in that order whatever the weights' (an implementation must not
    # assume one memory order for all its inputs)
    state_layout: str = ""
    state_dtype: str = "float64"
    zero_fraction: float = 0.1  # weights that are exactly 0
    at_cap: bool = False  # a third of the lambdas end near their cap (first or nu = 0 only)
    delta: str = ""  # "", or the dtype of a given weight change ("float32", "float64")
    seed: int = 0

    def make(self) -> Tuple[np.ndarray, RLNState]:
        """Build fresh weights (in the case's layout) and a mid-training state."""
        rng = np.random.default_rng(self.seed)
        values = rng.normal(0.0, 0.05, size=self.shape)
        values[rng.random(self.shape) < self.zero_fraction] = 0.0
        weights = _in_layout(values.astype(self.dtype), self.layout)
        state = init(weights, self.avg_reg, state_dtype=self.state_dtype)
        # A spread of lambdas around Theta; some well above their cap, so the
        # clip and the exact landing on 0 are exercised.
        state.lambdas[...] = self.avg_reg + rng.normal(0.0, 1.5, size=self.shape)
        state.lambdas[rng.random(self.shape) < 0.05] = 0.0
        if self.at_cap:
            if not (self.first or self.learning_rate == 0):
                raise ValueError("at_cap needs first=True or learning_rate=0: a lambda step "
                                 "would move the lambdas off their caps")
            state.lambdas[...] = _near_the_cap(weights, state.lambdas, self.norm, self.avg_reg,
                                               rng, translated=not self.first)
        if self.first:
            state.prev_reg[...] = np.nan  # not to be read on a first update
        else:
            step = rng.normal(0.0, 1e-3, size=self.shape)
            state.prev_weights[...] = (weights - step).astype(self.dtype)
            direction = np.sign(state.prev_weights) if self.norm == 1 \
                else 2.0 * state.prev_weights.astype(np.float64)
            prev_reg = direction * np.exp(self.avg_reg + rng.normal(0.0, 1.0, size=self.shape))
            state.prev_reg[...] = prev_reg
            state.steps = 1 + self.seed
        if self.state_layout:
            state = dataclasses.replace(state, **{
                name: _in_layout(getattr(state, name), self.state_layout)
                for name in ("lambdas", "prev_weights", "prev_reg")})
        return weights, state

    def inputs(self) -> Tuple[np.ndarray, RLNState, dict]:
        """(weights, state, keywords): `make()`, and the keywords of the update, with a
        `delta` (a weight change unrelated to prev_weights) for delta cases."""
        weights, state = self.make()
        kwargs = self.kwargs()
        if self.delta:
            rng = np.random.default_rng(self.seed + 10_000)
            change = rng.normal(0.0, 1e-3, size=self.shape).astype(self.delta)
            kwargs["delta"] = _in_layout(change, self.state_layout or self.layout)
        return weights, state, kwargs


def _near_the_cap(weights: np.ndarray, lambdas: np.ndarray, norm: int, avg_reg: float,
                  rng: np.random.Generator, translated: bool) -> np.ndarray:
    """`lambdas` with a third of them set to end the update near their cap (log|W / D|).

    Half of those land within 8 ulps of the cap, half within 1e-14..1e-6 of
    it (relative to 1 + |cap|), above or below: where the clip decision is a
    matter of rounding, and where a too-wide clip margin shows. `translated`:
    the update translates the lambdas back to mean Theta (a later update with
    learning_rate 0, so no lambda step), and the lambdas are chosen so that
    they land there after the translation.
    """
    w = weights.astype(np.float64)
    near = (rng.random(w.shape) < 1 / 3) & (w != 0)
    in_ulps = rng.integers(-8, 9, size=w.shape)
    relative = rng.choice([-1.0, 1.0], size=w.shape) * 10.0 ** rng.uniform(-14, -6, w.shape)
    use_ulps = rng.random(w.shape) < 0.5
    with np.errstate(divide="ignore", invalid="ignore"):  # zero weights: cap -inf, not used
        cap = np.log(np.abs(w)) if norm == 1 else np.full_like(w, np.log(0.5))
        offsets = np.where(use_ulps, in_ulps * np.spacing(np.abs(cap)),
                           relative * (1.0 + np.abs(cap)))
        target = np.where(near, cap + offsets, 0.0)
    if not translated:
        return np.where(near, target, lambdas)
    # shift = Theta - mean(lambdas after the change), solved for the changed ones
    n, k = lambdas.size, np.count_nonzero(near)
    total = np.sum(np.where(near, 0.0, lambdas)) + np.sum(target)
    shift = (avg_reg - total / n) / (1.0 - k / n)
    return np.where(near, target - shift, lambdas)


def _in_layout(values: np.ndarray, layout: str) -> np.ndarray:
    """`values` in a C array, an F array, or a non-contiguous view (every other
    element of the last axis of a wider buffer)."""
    if layout == "C":
        return values.copy()
    if layout == "F":
        return np.asfortranarray(values)
    if layout == "strided":
        wide = np.zeros(values.shape[:-1] + (2 * values.shape[-1],), dtype=values.dtype)
        wide[..., ::2] = values
        return wide[..., ::2]
    raise ValueError(f"unknown layout {layout!r}")


def _default_cases() -> Tuple[UpdateCase, ...]:
    cases = []
    shapes = [(7,), (13, 7), (5, 4, 3, 2), (1, 1)]
    for seed, (shape, dtype, norm, first) in enumerate(
            itertools.product(shapes, ("float32", "float64"), (1, 2), (False, True))):
        cases.append(UpdateCase(
            name=f"{norm=}_{dtype}_{'x'.join(map(str, shape))}{'_first' if first else ''}",
            shape=shape, dtype=dtype, norm=norm, first=first, seed=seed))
    extremes = [(-3.0, 1e7), (-4.0, 1e7), (-20.0, 1e5), (-10.0, 0.0), (-8.0, 1e6)]
    for seed, ((avg_reg, nu), norm) in enumerate(itertools.product(extremes, (1, 2)), 100):
        cases.append(UpdateCase(name=f"extreme_{norm=}_theta{avg_reg}_nu{nu:g}", shape=(9, 6),
                                norm=norm, avg_reg=avg_reg, learning_rate=nu, seed=seed))
    for seed, (layout, norm) in enumerate(itertools.product(("F", "strided"), (1, 2)), 200):
        cases.append(UpdateCase(name=f"layout_{layout}_{norm=}", shape=(8, 5), layout=layout,
                                norm=norm, seed=seed))
    for seed, (dtype, norm) in enumerate(itertools.product(("float32", "float64"), (1, 2)), 300):
        cases.append(UpdateCase(name=f"state_float32_{dtype}_{norm=}", shape=(10, 6),
                                dtype=dtype, norm=norm, state_dtype="float32", seed=seed))
    cases.append(UpdateCase(name="all_zero", shape=(4, 3), zero_fraction=1.0, seed=400))
    for seed, (dtype, norm, first) in enumerate(
            itertools.product(("float32", "float64"), (1, 2), (True, False)), 500):
        cases.append(UpdateCase(
            name=f"at_cap_{dtype}_{norm=}_{'first' if first else 'translated'}", shape=(40, 25),
            dtype=dtype, norm=norm, first=first, learning_rate=1e6 if first else 0.0,
            at_cap=True, seed=seed))
    for seed, (dtype, delta, norm, first) in enumerate(itertools.product(
            ("float32", "float64"), ("float32", "float64"), (1, 2), (False, True)), 600):
        cases.append(UpdateCase(
            name=f"delta_{delta}_{dtype}_{norm=}{'_first' if first else ''}", shape=(11, 7),
            dtype=dtype, norm=norm, first=first, delta=delta, seed=seed))
    for seed, layout in enumerate(("F", "strided"), 700):
        cases.append(UpdateCase(name=f"delta_layout_{layout}", shape=(8, 5), layout=layout,
                                delta="float32", seed=seed))
    cases.append(UpdateCase(name="tutorial_179x1013", shape=(1013, 179), seed=401))
    # 0-d weights (a scalar parameter)
    for seed, first in enumerate((False, True), 800):
        cases.append(UpdateCase(name=f"scalar{'_first' if first else ''}", shape=(),
                                zero_fraction=0.0, first=first, seed=seed))
    # hyperparameters float32 cannot hold (a Theta or nu rounded to float32 is off)
    for seed, ((avg_reg, nu), norm) in enumerate(itertools.product(
            ((-10.3, 1e6 / 3), (-3.1, 1e7 / 3)), (1, 2)), 810):
        cases.append(UpdateCase(name=f"inexact_{norm=}_theta{avg_reg}_nu{nu:.6g}",
                                shape=(9, 6), norm=norm, avg_reg=avg_reg, learning_rate=nu,
                                seed=seed))
    # the state (and delta) in another memory order than the weights
    for seed, (layout, state_layout, delta) in enumerate(
            (("F", "C", ""), ("C", "F", ""), ("F", "C", "float32"), ("C", "F", "float64")),
            820):
        cases.append(UpdateCase(
            name=f"layout_{layout}_state_{state_layout}{'_delta' if delta else ''}",
            shape=(8, 5), layout=layout, state_layout=state_layout, delta=delta, seed=seed))
    # a float32 state where the clip decides (float32 arithmetic is an option, never the
    # default: computed in float32, these miss the spec's tolerance)
    for seed, ((avg_reg, nu), norm) in enumerate(itertools.product(
            ((-3.0, 1e7), (-4.0, 1e7)), (1, 2)), 830):
        cases.append(UpdateCase(name=f"state_float32_extreme_{norm=}_theta{avg_reg}_nu{nu:g}",
                                shape=(9, 6), norm=norm, avg_reg=avg_reg, learning_rate=nu,
                                state_dtype="float32", seed=seed))
    for seed, (norm, first) in enumerate(itertools.product((1, 2), (True, False)), 840):
        cases.append(UpdateCase(
            name=f"state_float32_at_cap_{norm=}_{'first' if first else 'translated'}",
            shape=(40, 25), norm=norm, first=first, learning_rate=1e6 if first else 0.0,
            at_cap=True, state_dtype="float32", seed=seed))
    return tuple(cases)


CASES: Tuple[UpdateCase, ...] = _default_cases()
"""The spec's cases: every float64 implementation passes them within `SPEC_TOLERANCE`."""


def _float32_cases() -> Tuple[UpdateCase, ...]:
    return tuple(case if case.state_dtype == "float32" else dataclasses.replace(
                     case, name=f"f32_{case.name}", state_dtype="float32")
                 for case in CASES if case.dtype == "float32" and case.delta != "float64")


FLOAT32_CASES: Tuple[UpdateCase, ...] = _float32_cases()
"""The inputs of the float32 arithmetic mode: the cases with float32 weights (and a
float32 delta, where given), each with a float32 state; for `FLOAT32_COMPUTE_TOLERANCE`."""


def check_update(fn: UpdateFn, cases: Optional[Iterable[UpdateCase]] = None,
                 tolerance: Tolerance = SPEC_TOLERANCE) -> int:
    """Check `fn` against `rln_core.reference.update` on every case.

    Args:
        fn: the implementation under test (see the module docstring).
        cases: the cases to run; `CASES` by default.
        tolerance: `SPEC_TOLERANCE` (default) or e.g. `FLOAT32_COMPUTE_TOLERANCE`.

    Returns:
        The number of cases checked.

    Raises:
        AssertionError: naming the case, the field, the element and the difference.
    """
    n = 0
    for case in CASES if cases is None else cases:
        weights, state, kwargs = case.inputs()
        scale = input_scale(weights, state, kwargs) if tolerance.relative_to_inputs else None
        expected_w, expected = reference.update(weights.copy(), state.copy(), **kwargs)
        got_w, got = _run(case.name, fn, weights, state, kwargs)
        assert_update_matches(case.name, expected_w, expected, np.asarray(got_w), got,
                              lambda_rtol=tolerance.lambda_rtol, scale=scale)
        _assert_separate(case.name, {"weights": got_w, "state.lambdas": got.lambdas,
                                     "state.prev_weights": got.prev_weights,
                                     "state.prev_reg": got.prev_reg})
        n += 1
    return n


@dataclasses.dataclass(frozen=True)
class TrajectoryCase(_Setting):
    """A run of updates from the start of training, each after an optimizer-like step
    (W += a random change, in place), in a setting where two correct implementations stay
    together (docs/RLN_SPEC.md: Theta -10, mild nu)."""

    n_updates: int = 60
    seed: int = 0


TRAJECTORY_CASES: Tuple[TrajectoryCase, ...] = (
    TrajectoryCase("trajectory_norm=1_float32", (13, 7), seed=900),
    TrajectoryCase("trajectory_norm=2_float32", (13, 7), norm=2, learning_rate=1e5, seed=901),
    TrajectoryCase("trajectory_norm=1_float64", (9, 4), dtype="float64", n_updates=30,
                   seed=902),
)
"""The cases of `check_trajectory`."""


def check_trajectory(fn: UpdateFn, cases: Iterable[TrajectoryCase] = TRAJECTORY_CASES,
                     lambda_rtol: float = 10 * LAMBDA_RTOL) -> int:
    """Check `fn` over runs of updates: what one call leaves is what the next one reads.

    `fn` as in `check_update`. Each case starts from `rln_core.init` (steps 0), then
    `n_updates` times moves the weights in place (an optimizer step) and calls `fn`,
    the reference alongside on its own copies. The per-update cases cannot see an
    implementation that keeps something of its own between calls (a cached view, a
    copy of prev_weights or the lambdas, a step count) and lets it go stale; this run
    can. At the end: steps equal, lambdas within `lambda_rtol` (the spec's per-update
    tolerance times 10: the gap grows slowly as the weights feed it back), weights and
    prev_reg as `assert_update_matches` checks them with that tolerance.

    Returns:
        The number of cases checked.

    Raises:
        AssertionError: naming the case, the update and the difference.
    """
    n = 0
    for case in cases:
        rng = np.random.default_rng(case.seed)
        weights = rng.normal(0.0, 0.1, size=case.shape).astype(case.dtype)
        kwargs = case.kwargs()
        state = init(weights, case.avg_reg)
        expected_w, expected = weights.copy(), state.copy()
        for t in range(case.n_updates):
            change = rng.normal(0.0, 1e-3, size=case.shape).astype(case.dtype)
            expected_w, expected = reference.update(expected_w + change, expected, **kwargs)
            weights += change  # in place, as an optimizer steps its parameters
            got_w, state = _run(f"{case.name}, update {t}", fn, weights, state, kwargs)
            if got_w is not weights:
                np.copyto(weights, got_w)  # the model takes the written weights
        assert_update_matches(f"{case.name} after {case.n_updates} updates", expected_w,
                              expected, weights, state, lambda_rtol=lambda_rtol)
        n += 1
    return n


def _run(name: str, fn: UpdateFn, weights: np.ndarray, state: RLNState,
         kwargs: dict) -> Tuple[np.ndarray, RLNState]:
    """`fn` on one update's inputs: its (new weights, new state), or the inputs themselves
    where it updates them in place; an exception it raises becomes an AssertionError
    naming `name`."""
    try:
        result = fn(weights, state, **kwargs)
    except Exception as error:
        raise AssertionError(f"[{name}] raised {type(error).__name__}({error})") from error
    return result if isinstance(result, tuple) else (weights, state)


def _assert_separate(name: str, arrays: dict) -> None:
    """No two of the NumPy arrays in `arrays` share memory."""
    items = [(key, value) for key, value in arrays.items() if isinstance(value, np.ndarray)]
    for (key, value), (other_key, other) in itertools.combinations(items, 2):
        _check(name, f"{key} and {other_key}", not np.shares_memory(value, other),
               "share memory; the update must leave them as separate arrays")


def input_scale(weights: np.ndarray, state: RLNState, kwargs: dict) -> np.ndarray:
    """max(1, |lambda in|, |nu * delta * prev_reg|) per element, float64, from an update's
    inputs (read before the update; delta is W - prev_weights unless given)."""
    lam_in = np.abs(state.lambdas.astype(np.float64))
    if int(state.steps) == 0:
        return np.maximum(1.0, lam_in)
    delta = kwargs.get("delta")
    change = (weights.astype(np.float64) - state.prev_weights.astype(np.float64)
              if delta is None else np.asarray(delta).astype(np.float64))
    with np.errstate(over="ignore", invalid="ignore"):
        step = np.abs(kwargs["learning_rate"] * change * state.prev_reg.astype(np.float64))
    return np.maximum(1.0, np.maximum(lam_in, step))


def assert_update_matches(name: str, expected_weights: np.ndarray, expected: RLNState,
                          weights: np.ndarray, state: RLNState, *,
                          lambda_rtol: float = LAMBDA_RTOL,
                          scale: Optional[np.ndarray] = None) -> None:
    """Assert one update's output matches the reference's within a tolerance.

    Lambdas within `lambda_rtol * max(scale, |lambda ref|)` plus one ulp (scale
    1 when None: the spec's tolerance; `input_scale` for float32 arithmetic).
    """
    _check(name, "weights.shape/dtype", weights.shape == expected_weights.shape
           and weights.dtype == expected_weights.dtype,
           f"got {weights.shape} {weights.dtype}, expected "
           f"{expected_weights.shape} {expected_weights.dtype}")
    _check(name, "state.steps", _is_count(state.steps) and int(state.steps) == int(expected.steps),
           f"got {state.steps!r}, expected the integer {expected.steps}")
    for field in ("lambdas", "prev_reg", "prev_weights"):  # prev_weights: W's dtype
        got = getattr(state, field)
        _check(name, f"state.{field}.dtype", got.dtype == getattr(expected, field).dtype,
               f"got {got.dtype}, expected {getattr(expected, field).dtype}")

    ref_lam = expected.lambdas.astype(np.float64)
    lam_tol = lambda_rtol * np.maximum(1.0 if scale is None else scale, np.abs(ref_lam)) + \
        np.spacing(np.abs(expected.lambdas)).astype(np.float64)
    _assert_close(name, "state.lambdas", state.lambdas, ref_lam, lam_tol)

    ref_reg = expected.prev_reg.astype(np.float64)
    implied = np.abs(ref_reg) * lam_tol * 2.0  # d exp(l) = exp(l) dl, both directions
    # + the smallest normal number: XLA (JAX) flushes subnormal results to zero
    reg_tol = implied + np.spacing(np.abs(expected.prev_reg)).astype(np.float64) + np.finfo(
        expected.prev_reg.dtype).tiny
    _assert_close(name, "state.prev_reg", state.prev_reg, ref_reg, reg_tol)

    w_tol = np.spacing(np.abs(expected_weights)).astype(np.float64) + implied + np.finfo(
        expected_weights.dtype).tiny
    _assert_close(name, "weights", weights, expected_weights, w_tol)
    zeros = (expected_weights == 0) & (weights != 0)
    _check(name, "weights", not zeros.any(),
           _where(zeros, "reference lands on exactly 0.0 but got {got!r}", weights))
    differs = state.prev_weights != weights
    _check(name, "state.prev_weights", not differs.any(),
           _where(differs, "is {got!r}, not the weights as written", state.prev_weights))


def _is_count(steps: Any) -> bool:
    """Whether `steps` is a count `rln_core.state.check_steps` accepts: an int >= 0 or a
    0-d integer array or tensor of any library (a float 2.0, a bool or [2] would pass
    int() and are refused here)."""
    try:
        check_steps(steps)
    except ValueError:
        return False
    return True


def _assert_close(name: str, field: str, got: np.ndarray, expected: np.ndarray,
                  tol: np.ndarray) -> None:
    got64 = np.asarray(got).astype(np.float64)
    expected64 = np.asarray(expected).astype(np.float64)
    diff = np.abs(got64 - expected64)
    bad = ~(diff <= tol)
    if bad.any():
        index = np.unravel_index(np.argmax(np.where(bad, diff / np.maximum(tol, 1e-300), -1)),
                                 bad.shape)
        raise AssertionError(
            f"[{name}] {field}[{tuple(int(i) for i in index)}] = {got64[index]!r}, reference "
            f"{expected64[index]!r}, |difference| {diff[index]:.3g} > tolerance "
            f"{tol[index]:.3g} ({int(bad.sum())} of {bad.size} elements off)")


def _where(mask: np.ndarray, message: str, got: np.ndarray) -> str:
    if not mask.any():
        return ""
    index = tuple(int(i) for i in np.argwhere(mask)[0])
    return f"at {index}: " + message.format(got=got[index])


def _check(name: str, field: str, ok: bool, message: str) -> None:
    if not ok:
        raise AssertionError(f"[{name}] {field}: {message}")


@dataclasses.dataclass(frozen=True)
class ErrorCase:
    """An input every implementation must refuse, changing nothing."""

    name: str
    build: Callable[[], Tuple[np.ndarray, RLNState, Mapping[str, Any]]]
    error_types: Tuple[Type[Exception], ...] = (ValueError, TypeError)
    match: str = ""


def _good() -> Tuple[np.ndarray, RLNState, Mapping[str, Any]]:
    weights, state = UpdateCase("good", (6, 4), seed=500).make()
    return weights, state, DEFAULTS.asdict()


def _with(**changes) -> Callable[[], Tuple[np.ndarray, RLNState, Mapping[str, Any]]]:
    def build():
        weights, state, kwargs = _good()
        return weights, state, {**kwargs, **changes}
    return build


def _weights_nan():
    weights, state, kwargs = _good()
    weights[2, 1] = np.nan
    return weights, state, kwargs


def _weights_inf():
    weights, state, kwargs = _good()
    weights[0, 3] = -np.inf
    return weights, state, kwargs


def _wrong_shape():
    _, state, kwargs = _good()
    return np.ones((4, 6), np.float32), state, kwargs


def _wrong_dtype():
    weights, state, kwargs = _good()
    return weights.astype(np.float64), state, kwargs


def _integer_weights():
    _, state, kwargs = _good()
    return np.ones((6, 4), np.int32), state, kwargs


def _overflowing_step():
    weights, state, kwargs = _good()
    weights += np.float32(1.0)
    state.prev_reg[...] = 1e10
    return weights, state, {**kwargs, "learning_rate": 1e300}


def _delta_wrong_shape():
    weights, state, kwargs = _good()
    return weights, state, {**kwargs, "delta": np.zeros((4, 6), np.float32)}


def _delta_nan():
    weights, state, kwargs = _good()
    delta = np.zeros(weights.shape, np.float32)
    delta[3, 0] = np.nan
    return weights, state, {**kwargs, "delta": delta}


def _norm2_weight_overflows():
    weights, state = UpdateCase("norm2_overflow", (6, 4), dtype="float64", norm=2,
                                seed=502).make()
    weights[1, 1] = 1e308  # finite, but D = 2w is not
    return weights, state, {**DEFAULTS.asdict(), "norm": 2}


def _float32_state_lambdas_overflow():
    weights, state = UpdateCase("f32_overflow", (6, 4), state_dtype="float32", seed=503).make()
    # finite in float64 (about 1e45), beyond float32's 3.4e38
    return weights, state, {**DEFAULTS.asdict(), "learning_rate": 1e53}


def _weights_nan_first_update():
    weights, state = UpdateCase("nan_weights_first", (6, 4), first=True, seed=504).make()
    weights[4, 0] = np.nan
    return weights, state, DEFAULTS.asdict()


def _nan_lambdas_first_update():
    weights, state = UpdateCase("nan_lambdas", (6, 4), first=True, seed=501).make()
    state.lambdas[1, 2] = np.nan
    return weights, state, DEFAULTS.asdict()


ERROR_CASES: Tuple[ErrorCase, ...] = (
    ErrorCase("norm_3", _with(norm=3), match="norm"),
    ErrorCase("norm_0", _with(norm=0), match="norm"),
    ErrorCase("avg_reg_nan", _with(avg_reg=float("nan")), match="avg_reg"),
    ErrorCase("avg_reg_inf", _with(avg_reg=float("inf")), match="avg_reg"),
    ErrorCase("learning_rate_negative", _with(learning_rate=-1.0), match="learning_rate"),
    ErrorCase("learning_rate_nan", _with(learning_rate=float("nan")), match="learning_rate"),
    ErrorCase("learning_rate_inf", _with(learning_rate=float("inf")), match="learning_rate"),
    ErrorCase("learning_rate_beyond_float", _with(learning_rate=10 ** 400),
              match="learning_rate"),
    ErrorCase("norm_array", _with(norm=np.array([1, 2])), match="norm"),
    ErrorCase("norm_complex", _with(norm=1 + 0j), match="norm"),
    ErrorCase("weights_nan", _weights_nan, match="NaN or inf"),
    ErrorCase("weights_inf", _weights_inf, match="NaN or inf"),
    ErrorCase("weights_nan_first_update", _weights_nan_first_update, match="NaN or inf"),
    ErrorCase("weights_wrong_shape", _wrong_shape, match="shape"),
    ErrorCase("weights_wrong_dtype", _wrong_dtype, match="dtype"),
    ErrorCase("weights_integer", _integer_weights, match="float32 or float64|dtype"),
    ErrorCase("lambda_step_overflows", _overflowing_step, match="non-finite"),
    # (an adapter that loads the state first may refuse it there: "holds NaN or inf")
    ErrorCase("lambdas_nan_first_update", _nan_lambdas_first_update,
              match="non-finite|NaN or inf"),
    ErrorCase("norm2_weight_overflows", _norm2_weight_overflows, match="NaN or inf"),
    ErrorCase("float32_state_lambdas_overflow", _float32_state_lambdas_overflow,
              match="non-finite"),
    ErrorCase("delta_wrong_shape", _delta_wrong_shape, match="shape"),
    ErrorCase("delta_nan", _delta_nan, match="non-finite"),
)


def check_rejects_bad_input(fn: UpdateFn, cases: Sequence[ErrorCase] = ERROR_CASES) -> int:
    """Check `fn` raises on every bad input and leaves weights and state byte for byte.

    Args:
        fn: as in `check_update`.
        cases: the `ErrorCase`s to try (default `ERROR_CASES`, which every
            implementation must refuse); each builds its inputs and names the
            exception types, and a message pattern, it accepts.

    Returns:
        The number of cases checked.

    Raises:
        AssertionError: naming the case when `fn` accepts it or modifies anything.
    """
    for case in cases:
        weights, state, kwargs = case.build()
        before = (weights.tobytes(), {k: v.tobytes() for k, v in _arrays(state).items()},
                  state.steps)
        try:
            fn(weights, state, **kwargs)
        except case.error_types as error:
            if case.match and not _matches(case.match, str(error)):
                raise AssertionError(
                    f"[{case.name}] raised {type(error).__name__}({error}) whose message "
                    f"does not match {case.match!r}") from error
        except Exception as error:  # the case's name with it
            raise AssertionError(
                f"[{case.name}] raised {type(error).__name__}({error}); expected one of "
                f"{[t.__name__ for t in case.error_types]}") from error
        else:
            raise AssertionError(f"[{case.name}] was accepted; expected one of "
                                 f"{[t.__name__ for t in case.error_types]}")
        after = (weights.tobytes(), {k: v.tobytes() for k, v in _arrays(state).items()},
                 state.steps)
        if after != before:
            raise AssertionError(f"[{case.name}] raised but modified the weights or the state")
    return len(cases)


def _arrays(state: RLNState) -> dict:
    return {k: v for k, v in state.to_dict().items() if isinstance(v, np.ndarray)}


def _matches(pattern: str, text: str) -> bool:
    import re

    return re.search(pattern, text) is not None
