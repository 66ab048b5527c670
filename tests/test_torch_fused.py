"""The fused optimizer + RLN step (`RLN.attach(optimizer, fuse=True)`) against
"optimizer.step() then RLN.step()": every supported optimizer and variant, both norms,
float64 and float32 state; checkpoints; refusals.

Per step, both runs start from the same state (the fused run is re-synced to the unfused
one after every comparison), so the comparison is per update over many realistic steps.
Tolerances (measured on torch 2.13, AVX512; see `rln_core.fused`): the parameters torch
steps alone are equal; the optimizer state of a regularized tensor within OPT_RTOL
(torch's CPU sqrt is not correctly rounded, so RMSprop and Adam differ by an ulp in some
elements; SGD matches bit for bit), plus OPT_RTOL of the entry's largest value (momentum
sums cancel); lambdas within 1e-9 relative plus
nu * WEIGHT_ULPS * ulp(W) * |prev_reg| (a weight change off by a few ulp, times nu),
plus the mean of that over the tensor (the translation), plus, for L1, WEIGHT_ULPS *
ulp(W) / |W after the optimizer| (the cap log|W|). Here ulp(W) is the ulp of the largest
of |W before|, |W after the optimizer|, |the optimizer's step|, |W after|, and the weight
after the optimizer is within WEIGHT_ULPS of those ulp (plus lr times the momentum
buffer's difference); the weights within that plus |the RLN step| times the lambda
tolerance.
"""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("numba")

from rln_torch import RLN  # noqa: E402

SHAPE = (23, 41)
STEPS = 25  # enough for the momentum / average buffers, the clip and the lambdas to move
WEIGHT_ULPS = 4
OPT_RTOL = {torch.float32: 4e-6, torch.float64: 1e-14}

CONFIGS = [
    (torch.optim.RMSprop, {}),
    (torch.optim.RMSprop, {"weight_decay": 0.01, "momentum": 0.9}),
    (torch.optim.RMSprop, {"centered": True, "maximize": True, "alpha": 0.9}),
    (torch.optim.RMSprop, {"centered": True, "momentum": 0.5, "weight_decay": 0.1}),
    (torch.optim.Adam, {}),
    (torch.optim.Adam, {"weight_decay": 0.01, "betas": (0.6, 0.99)}),
    (torch.optim.Adam, {"amsgrad": True, "maximize": True}),
    (torch.optim.AdamW, {"weight_decay": 0.1}),
    (torch.optim.AdamW, {"amsgrad": True, "weight_decay": 0.01}),
    (torch.optim.SGD, {}),
    (torch.optim.SGD, {"momentum": 0.9, "dampening": 0.1, "weight_decay": 0.01}),
    (torch.optim.SGD, {"momentum": 0.9, "nesterov": True, "maximize": True}),
]


def _label(config) -> str:
    cls, kwargs = config
    return cls.__name__ + "".join(f"-{key}={value}" for key, value in kwargs.items())


def _make(cls, kwargs, dtype, rln_kwargs, fuse, seed=0):
    torch.manual_seed(seed)
    weight = torch.nn.Parameter((torch.randn(SHAPE) * 0.05).to(dtype))
    bias = torch.nn.Parameter((torch.randn(SHAPE[0]) * 0.05).to(dtype))
    optimizer = cls([weight, bias], lr=1e-2 if cls is torch.optim.SGD else 1e-3, **kwargs)
    rln = RLN(weight, **rln_kwargs)
    handle = rln.attach(optimizer, fuse=fuse)
    return weight, bias, optimizer, rln, handle


def _grads(step, dtype, scale=1e-2):
    generator = torch.Generator().manual_seed(1000 + step)
    return [(torch.randn(shape, generator=generator) * scale).to(dtype)
            for shape in (SHAPE, SHAPE[:1])]


def _sync(source, target):
    """Copy weights, optimizer state and RLN state of run `source` into run `target`."""
    (w_a, b_a, opt_a, rln_a, _), (w_b, b_b, opt_b, rln_b, _) = source, target
    with torch.no_grad():
        w_b.copy_(w_a)
        b_b.copy_(b_a)
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))
    rln_b.load_state_dict(rln_a.state_dict())


def _ulp(values: np.ndarray, dtype) -> np.ndarray:
    return np.spacing(np.abs(values).astype(dtype))


def _compare(unfused, fused_run, before, prev_reg, learning_rate):
    """Assert the fused step matches the unfused one (module docstring); returns the
    largest weight difference in ulps."""
    (w_a, b_a, opt_a, rln_a, _), (w_b, b_b, opt_b, rln_b, _) = unfused, fused_run
    assert torch.equal(b_a, b_b)  # torch's own step in both runs
    dtype = w_a.detach().numpy().dtype
    state_a, state_b = opt_a.state[w_a], opt_b.state[w_b]
    assert set(state_a) == set(state_b)
    for key, value in state_a.items():  # (momentum sums cancel: atol of the buffer's scale)
        value = value.numpy()
        np.testing.assert_allclose(state_b[key].numpy(), value, rtol=OPT_RTOL[w_a.dtype],
                                   atol=OPT_RTOL[w_a.dtype] * np.abs(value).max(), err_msg=key)
    got, want = w_b.detach().numpy().astype(np.float64), w_a.detach().numpy().astype(np.float64)
    reg_a, reg_b = rln_a._slots[0].state.prev_reg, rln_b._slots[0].state.prev_reg
    # W after the optimizer (before RLN's step): W after + reg, within an ulp of rounding
    stepped_a, stepped_b = want + reg_a, got + reg_b
    scale = np.maximum(np.maximum(np.abs(before), np.abs(want)),
                       np.maximum(np.abs(stepped_a), np.abs(stepped_a - before)))
    ulp = _ulp(scale, dtype)
    momentum = 0.0
    if "momentum_buffer" in state_a:  # lr times its difference (cancellation, see above)
        momentum = opt_a.param_groups[0]["lr"] * np.abs(
            state_b["momentum_buffer"].numpy().astype(np.float64)
            - state_a["momentum_buffer"].numpy())
    step_error = np.abs(stepped_b - stepped_a)
    worst = np.unravel_index(np.argmax(step_error / (WEIGHT_ULPS * ulp + momentum)), ulp.shape)
    assert np.all(step_error <= WEIGHT_ULPS * ulp + momentum), (
        f"W after the optimizer {stepped_b[worst]} vs {stepped_a[worst]} (before "
        f"{before[worst]}, ulp {ulp[worst]})")
    change_error = step_error + 2 * ulp
    # that error moves the lambda step by nu times it times prev_reg (and every lambda by
    # the mean of that, through the translation), and an L1 cap log|W| by it over |W|
    lambda_step_error = learning_rate * change_error * np.abs(prev_reg)
    cap_error = change_error / np.maximum(np.abs(stepped_a), np.finfo(dtype).tiny) \
        if rln_a.norm == 1 else 0.0
    lam_a = rln_a._slots[0].state.lambdas
    lam_b = rln_b._slots[0].state.lambdas
    lam_tol = 1e-9 * np.maximum(1.0, np.abs(lam_a)) + np.spacing(np.abs(lam_a).astype(
        lam_a.dtype)) + lambda_step_error + lambda_step_error.mean() + cap_error
    worst = np.unravel_index(np.argmax(np.abs(lam_b - lam_a) / lam_tol), lam_a.shape)
    assert np.all(np.abs(lam_b - lam_a) <= lam_tol), (
        f"lambda {lam_b[worst]} vs {lam_a[worst]} (tolerance {lam_tol[worst]}): W before "
        f"{before[worst]}, after {want[worst]} vs {got[worst]}, prev_reg {prev_reg[worst]}")
    weight_error = np.abs(got - want)  # the step's error plus |reg| times the lambda's
    assert np.all(weight_error <= change_error + np.abs(reg_a) * lam_tol), weight_error.max()
    assert rln_a._slots[0].state.steps == rln_b._slots[0].state.steps
    np.testing.assert_array_equal(rln_b._slots[0].state.prev_weights, w_b.detach().numpy())
    return float((step_error / ulp).max())


def _run_pair(config, dtype, rln_kwargs, steps=STEPS, before_step=None):
    cls, kwargs = config
    unfused = _make(cls, kwargs, dtype, rln_kwargs, fuse=False)
    fused_run = _make(cls, kwargs, dtype, rln_kwargs, fuse=True)
    learning_rate = unfused[3].learning_rate
    worst = 0.0
    for step in range(steps):
        if before_step is not None:
            before_step(step, unfused, fused_run)
        before = unfused[0].detach().numpy().astype(np.float64).copy()
        prev_reg = unfused[3]._slots[0].state.prev_reg.copy()
        for run in (unfused, fused_run):
            for param, grad in zip(run[:2], _grads(step, dtype)):
                param.grad = grad.clone()
            run[2].step()
        worst = max(worst, _compare(unfused, fused_run, before, prev_reg, learning_rate))
        _sync(unfused, fused_run)
    return worst


@pytest.mark.parametrize("config", CONFIGS, ids=_label)
@pytest.mark.parametrize("norm", [1, 2])
@pytest.mark.parametrize("state_dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_fused_step_equals_optimizer_step_then_rln_step(config, norm, state_dtype):
    rln_kwargs = {"norm": norm, "state_dtype": state_dtype,
                  "avg_reg": -8.0 if norm == 1 else -6.0}
    _run_pair(config, torch.float32, rln_kwargs)
