"""The traces recorded from the authors' own Keras callback (tests/data/original_rln_traces.npz).

How to compare (docs/RLN_SPEC.md, "Golden traces"): the mild cases match over the whole
trace; every case matches one update at a time, started from the original's state.
"""

from pathlib import Path

import numpy as np
import pytest

import rln_core
from rln_core import RLNState

TRACES = np.load(Path(__file__).parent / "data" / "original_rln_traces.npz")
CASES = sorted({key.split("/")[0] for key in TRACES.files})
MILD_CASES = ["l1_theta-10_nu1e6", "l2_theta-8_nu1e5"]
IMPLS = ["reference", "numpy", "numba"]


def trace(name):
    """The recorded arrays and hyperparameters of one case."""
    arrays = {key.split("/", 1)[1]: TRACES[key] for key in TRACES.files
              if key.startswith(name + "/")}
    params = {"avg_reg": float(arrays["avg_reg"]), "learning_rate": float(arrays["learning_rate"]),
              "norm": int(arrays["norm"])}
    return arrays, params


def apply(impl, weights, state, params):
    if impl == "reference":
        return rln_core.reference.update(weights, state, **params)
    rln_core.update(weights, state, impl=impl, **params)
    return weights, state


def test_the_traces_hold_all_cases():
    assert len(CASES) == 6 and set(MILD_CASES) <= set(CASES)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", MILD_CASES)
def test_whole_trace_replay_matches_the_original(name, impl):
    arrays, params = trace(name)
    state = rln_core.init(arrays["w0"], params["avg_reg"])
    for t in range(len(arrays["w_in"])):
        weights, state = apply(impl, arrays["w_in"][t].copy(), state, params)
        np.testing.assert_array_less(np.abs(weights - arrays["w_out"][t]), 1e-7,
                                     err_msg=f"{name} weights at update {t}")
        np.testing.assert_array_less(np.abs(state.lambdas - arrays["lambdas"][t]), 1e-5,
                                     err_msg=f"{name} lambdas at update {t}")
    assert np.std(state.lambdas) > 1e-3  # the trace exercised the lambda step


def original_state_before(arrays, params, t):
    """The original callback's state just before its update t (t >= 1)."""
    w_prev, lambdas = arrays["w_in"][t - 1], arrays["lambdas"][t - 1]
    direction = np.sign(w_prev) if params["norm"] == 1 else 2.0 * w_prev.astype(np.float64)
    return RLNState(lambdas=lambdas.copy(), prev_weights=arrays["w_out"][t - 1].copy(),
                    prev_reg=direction * np.exp(lambdas), steps=t)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", CASES)
def test_every_update_matches_the_original_from_its_state(name, impl):
    arrays, params = trace(name)
    lambda_tol = 1e-3 * params["learning_rate"] / 1e6
    for t in range(len(arrays["w_in"])):
        state = rln_core.init(arrays["w0"], params["avg_reg"]) if t == 0 \
            else original_state_before(arrays, params, t)
        weights, state = apply(impl, arrays["w_in"][t].copy(), state, params)
        np.testing.assert_array_less(np.abs(weights - arrays["w_out"][t]), 1e-4,
                                     err_msg=f"{name} weights at update {t}")
        np.testing.assert_array_less(np.abs(state.lambdas - arrays["lambdas"][t]), lambda_tol,
                                     err_msg=f"{name} lambdas at update {t}")
