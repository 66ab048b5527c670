"""Checkpoints written before the fixed-structure state (main at e06f0d7) load and continue.

The fixtures in tests/data/legacy were written by that code (the scripts that
wrote them are beside them): a core `to_dict` at steps 0 (no prev_reg) and
after 3 updates, torch `state_dict`s at steps 0 and after 4 SGD steps in both
modes, with what that code produced from them afterwards.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

import rln_core
from rln_torch import RLN

LEGACY = Path(__file__).parent / "data" / "legacy"
HYPER = {"avg_reg": -9.0, "learning_rate": 1e6, "norm": 1}


def test_core_to_dict_without_prev_reg_loads_as_a_first_update():
    saved = dict(np.load(LEGACY / "core_steps0.npz"))
    weights = saved.pop("weights")
    assert "prev_reg" not in saved
    state = rln_core.RLNState.from_dict(saved)
    assert state.steps == 0 and np.all(state.prev_reg == 0)
    assert state.prev_reg.dtype == state.lambdas.dtype
    expected_w, expected = rln_core.reference.update(weights, rln_core.init(weights, -9.0),
                                                     **HYPER)
    rln_core.update(weights, state, **HYPER)
    np.testing.assert_array_equal(weights, expected_w)
    np.testing.assert_array_equal(state.lambdas, expected.lambdas)


@pytest.mark.parametrize("impl", ["numba", "numpy", "array_api"])
def test_core_to_dict_after_three_updates_continues_exactly(impl):
    saved = dict(np.load(LEGACY / "core_steps3.npz"))
    next_weights = saved.pop("next_weights")
    expected_w, expected_lambdas = saved.pop("expected_weights"), saved.pop("expected_lambdas")
    state = rln_core.RLNState.from_dict(saved)
    assert state.steps == 3
    for w_in in next_weights:
        w = w_in.copy()
        rln_core.update(w, state, impl=impl, **HYPER)
    # The kernel that wrote the fixture has since changed its loops: the same math,
    # rounding-level differences only (lambdas to an ulp or so, far inside the spec;
    # the weights as written then, to one ulp).
    np.testing.assert_array_max_ulp(w, expected_w, maxulp=1)
    np.testing.assert_allclose(state.lambdas, expected_lambdas, rtol=1e-14)


def torch_run(mode):
    """The fixture's model, optimizer, RLN and data (tests/data/legacy/make_torch_core.py)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.ReLU(),
                                torch.nn.Linear(4, 1)).double()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    rln = RLN(model[0], norm=1, avg_reg=-8.0, learning_rate=1e5, mode=mode)
    rln.attach(optimizer)
    generator = torch.Generator().manual_seed(1)
    X = torch.randn(40, 6, generator=generator, dtype=torch.float64)
    y = torch.randn(40, 1, generator=generator, dtype=torch.float64)

    def train(steps):
        for i in steps:
            start = (i * 8) % 40
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(model(X[start:start + 8]), y[start:start + 8]).backward()
            optimizer.step()
    return model, optimizer, rln, train


@pytest.mark.parametrize("mode", ["delta", "gradient"])
def test_torch_state_dict_at_steps_0_loads(mode):
    saved = torch.load(LEGACY / f"torch_{mode}_steps0.pt")  # weights_only=True, the default
    assert "prev_reg" not in saved["rln"]["states"][0]
    model, _, rln, _ = torch_run(mode)
    model.load_state_dict(saved["model"])
    rln.load_state_dict(saved["rln"])
    entry = rln.state_dict()["states"][0]
    assert entry["steps"] == 0 and torch.all(entry["prev_reg"] == 0)


@pytest.mark.parametrize("mode", ["delta", "gradient"])
def test_torch_state_dict_after_four_steps_continues(mode):
    saved = torch.load(LEGACY / f"torch_{mode}_steps4.pt")
    expected = torch.load(LEGACY / f"torch_{mode}_expected7.pt")
    model, optimizer, rln, train = torch_run(mode)
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["opt"])
    rln.load_state_dict(saved["rln"])
    train(range(4, 7))
    # delta mode: the same math (the kernel's loops changed since: rounding only);
    # gradient mode: delta = -grad is now given exactly, not rounded through W + grad
    torch.testing.assert_close(model[0].weight, expected["weight"], rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(rln.lambdas, expected["lambdas"], rtol=1e-12, atol=1e-12)
