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
import gc
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("numba")

from rln_torch import RLN  # noqa: E402

SHAPE = (23, 41)
# a tensor long enough for the fused loop's SIMD body and reductions over many vectors,
# with a remainder (12871 elements: odd)
LONG_SHAPE = (61, 211)
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
    # foreach groups: torch's multi-tensor loops for the other parameters, same math
    (torch.optim.RMSprop, {"foreach": True, "momentum": 0.9}),
    (torch.optim.Adam, {"foreach": True, "amsgrad": True}),
    (torch.optim.SGD, {"foreach": True, "momentum": 0.9}),
]


def _label(config) -> str:
    cls, kwargs = config
    return cls.__name__ + "".join(f"-{key}={value}" for key, value in kwargs.items())


def _make(cls, kwargs, dtype, rln_kwargs, fuse, seed=0, shape=SHAPE):
    torch.manual_seed(seed)
    weight = torch.nn.Parameter((torch.randn(shape) * 0.05).to(dtype))
    bias = torch.nn.Parameter((torch.randn(shape[0]) * 0.05).to(dtype))
    optimizer = cls([weight, bias], lr=1e-2 if cls is torch.optim.SGD else 1e-3, **kwargs)
    rln = RLN(weight, **rln_kwargs)
    handle = rln.attach(optimizer, fuse=fuse)
    return weight, bias, optimizer, rln, handle


def _grads(step, dtype, scale=1e-2, shape=SHAPE):
    generator = torch.Generator().manual_seed(1000 + step)
    return [(torch.randn(part, generator=generator) * scale).to(dtype)
            for part in (shape, shape[:1])]


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


def _run_pair(config, dtype, rln_kwargs, steps=STEPS, before_step=None, shape=SHAPE,
              weight_grad_layout=None):
    cls, kwargs = config
    unfused = _make(cls, kwargs, dtype, rln_kwargs, fuse=False, shape=shape)
    fused_run = _make(cls, kwargs, dtype, rln_kwargs, fuse=True, shape=shape)
    learning_rate = unfused[3].learning_rate
    worst = 0.0
    for step in range(steps):
        if before_step is not None:
            before_step(step, unfused, fused_run)
        before = unfused[0].detach().numpy().astype(np.float64).copy()
        prev_reg = unfused[3]._slots[0].state.prev_reg.copy()
        for run in (unfused, fused_run):
            weight_grad, bias_grad = _grads(step, dtype, shape=shape)
            if weight_grad_layout is not None:
                weight_grad = weight_grad_layout(weight_grad)
            run[0].grad = weight_grad.clone()  # (clone keeps the strides)
            run[1].grad = bias_grad.clone()
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


@pytest.mark.parametrize("config", [CONFIGS[0], CONFIGS[6]], ids=_label)
@pytest.mark.parametrize("rln_kwargs", [{"norm": 1}, {"norm": 2, "state_dtype": torch.float32},
                                        {"state_dtype": torch.float32,
                                         "compute_dtype": torch.float32}],
                         ids=["l1-f64", "l2-f32", "f32-compute"])
def test_fused_step_of_a_longer_tensor(config, rln_kwargs):
    _run_pair(config, torch.float32, rln_kwargs, steps=8, shape=LONG_SHAPE)


@pytest.mark.parametrize("config", [CONFIGS[0], CONFIGS[6], CONFIGS[10]], ids=_label)
def test_fused_step_of_a_gradient_in_another_memory_order(config):
    # torch lets .grad have other strides than the parameter; the fused step walks one
    # memory order, so it steps from a copy of the gradient in the parameter's
    def column_major(grad):
        column = grad.t().contiguous().t()
        assert column.stride() != grad.stride() and torch.equal(column, grad)
        return column

    _run_pair(config, torch.float32, {"norm": 1}, steps=8, weight_grad_layout=column_major)


@pytest.mark.parametrize("config", [CONFIGS[0], CONFIGS[3], CONFIGS[6], CONFIGS[11]], ids=_label)
def test_fused_step_in_the_float32_compute_mode(config):
    # the float32 mode's own tolerance (rln_core: 3e-6 of the lambda's scale) on top of
    # the comparison above: compared here with the unfused float32 mode, the same arithmetic
    rln_kwargs = {"state_dtype": torch.float32, "compute_dtype": torch.float32}
    _run_pair(config, torch.float32, rln_kwargs)


@pytest.mark.parametrize("config", [CONFIGS[1], CONFIGS[8], CONFIGS[10]], ids=_label)
def test_fused_step_of_float64_weights(config):
    _run_pair(config, torch.float64, {"norm": 1})


def test_schedulers_and_tensor_learning_rates_are_read_at_every_step():
    def schedule(step, *runs):
        for run in runs:
            run[2].param_groups[0]["lr"] = torch.tensor(1e-3 * (1 + step % 3)) if step % 2 \
                else 1e-3 / (1 + step)
    _run_pair(CONFIGS[4], torch.float32, {"norm": 1}, steps=8, before_step=schedule)


@pytest.mark.parametrize("config, tensors", [
    ((torch.optim.SGD, {"momentum": 0.9}), {"momentum": 0.9}),
    ((torch.optim.SGD, {"momentum": 0.9, "nesterov": True}), {"momentum": 0.9}),
    ((torch.optim.RMSprop, {"momentum": 0.5}), {"alpha": 0.9, "momentum": 0.5}),
], ids=["SGD-momentum", "SGD-nesterov", "RMSprop-alpha-momentum"])
def test_settings_held_as_tensors_are_read_as_numbers(config, tensors):
    """torch takes a tensor for these settings too (its step reads them with .item() or
    as tensors); the fused kernel takes numbers (a tensor momentum was a numba TypingError).
    (Tensor betas run too, but torch then rounds Adam's bias corrections in float32: a
    few ulp past this comparison's tolerance, as before this test.)"""
    def as_tensors(step, *runs):
        for run in runs:
            run[2].param_groups[0].update(
                {key: torch.tensor(value) for key, value in tensors.items()})
    _run_pair(config, torch.float32, {"norm": 1}, steps=4, before_step=as_tensors)


@pytest.mark.parametrize("betas", [(torch.tensor(0.8), torch.tensor(0.99)),
                                   torch.tensor([0.8, 0.99]), np.array([0.8, 0.99])],
                         ids=["pair", "1-d", "numpy"])
def test_adam_betas_held_as_tensors_step_as_torch_does(betas):
    """Within float32 rounding: torch then rounds Adam's bias corrections in float32. (A
    NumPy pair compares elementwise: the settings' cache must not compare it as it is.)"""
    runs = [_make(torch.optim.Adam, {}, torch.float32, {}, fuse=fuse) for fuse in (False, True)]
    for run in runs:
        run[2].param_groups[0]["betas"] = betas
        _train(run, 5)
    assert torch.equal(runs[0][1], runs[1][1])
    torch.testing.assert_close(runs[1][0], runs[0][0], rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("config", [(torch.optim.SGD, {"momentum": 0.9, "dampening": 0.5}),
                                    (torch.optim.Adam, {})], ids=_label)
def test_a_setting_a_later_pre_hook_writes_is_refused_before_torch_s_state_moves(config):
    """A pre-hook registered after the attachment runs after the fused pre-hook's check;
    the fused step checks the group again before it makes SGD's first momentum buffer
    (zeros, which the next step would have read as the buffer) or counts Adam's step."""
    def once(optimizer, args, kwargs):
        if bad[0]:
            optimizer.param_groups[0]["lr"] = -1.0

    bad = [False]
    run = _make(*config, torch.float32, {}, fuse=True)
    run[2].register_step_pre_hook(once)
    for first in (True, False):
        state = copy.deepcopy(run[2].state_dict()["state"])
        bad[0] = True
        for param, grad in zip(run[:2], _grads(0, torch.float32)):
            param.grad = grad
        with pytest.raises(ValueError, match="invalid lr"):
            run[2].step()
        assert len(run[2].state.get(run[0], {})) == (0 if first else len(state[0]))
        if not first:
            _assert_same_state(run[2].state_dict()["state"][0], state[0])
        bad[0] = False
        run[2].param_groups[0]["lr"] = 1e-2
        _train(run, 2)


def test_a_pre_hook_registered_after_the_attachment_sets_the_step_s_settings():
    """A warm-up pre-hook registered after `attach(fuse=True)` writes lr into the group:
    the fused tensor is stepped with it, as torch steps the others and as unfused."""
    def warm_up(optimizer, args, kwargs):
        optimizer.param_groups[0]["lr"] = 0.5

    runs = [_make(torch.optim.SGD, {"momentum": 0.9}, torch.float32, {}, fuse=fuse)
            for fuse in (False, True)]
    for run in runs:
        run[2].register_step_pre_hook(warm_up)
        _train(run, 3)
    assert torch.equal(runs[0][1], runs[1][1])
    torch.testing.assert_close(runs[1][0], runs[0][0], rtol=0, atol=1e-7)


def _train(run, steps, start=0, dtype=torch.float32):
    for step in range(start, start + steps):
        for param, grad in zip(run[:2], _grads(step, dtype)):
            param.grad = grad.clone()
        run[2].step()


@pytest.mark.parametrize("config", [CONFIGS[3], CONFIGS[8], CONFIGS[10]], ids=_label)
def test_a_checkpoint_resumes_a_fused_run_exactly(config, tmp_path):
    cls, kwargs = config
    whole = _make(cls, kwargs, torch.float32, {}, fuse=True)
    _train(whole, 12)
    first = _make(cls, kwargs, torch.float32, {}, fuse=True)
    _train(first, 6)
    path = tmp_path / "checkpoint.pt"
    torch.save({"weight": first[0].detach(), "bias": first[1].detach(),
                "optimizer": first[2].state_dict(), "rln": first[3].state_dict()}, path)
    resumed = _make(cls, kwargs, torch.float32, {}, fuse=True, seed=1)
    saved = torch.load(path, weights_only=True)
    with torch.no_grad():
        resumed[0].copy_(saved["weight"])
        resumed[1].copy_(saved["bias"])
    resumed[2].load_state_dict(saved["optimizer"])
    resumed[3].load_state_dict(saved["rln"])
    _train(resumed, 6, start=6)
    for got, want in zip(resumed[:2], whole[:2]):
        assert torch.equal(got, want)
    assert torch.equal(resumed[3].lambdas, whole[3].lambdas)
    for key, value in whole[2].state[whole[0]].items():
        assert torch.equal(resumed[2].state[resumed[0]][key], value), key


def test_a_fused_checkpoint_continues_unfused_and_back():
    # the same state_dict formats: optimizer.state[p] in torch's keys, RLN's prev_weights kept
    fused_run = _make(torch.optim.RMSprop, {"momentum": 0.9}, torch.float32, {}, fuse=True)
    unfused = _make(torch.optim.RMSprop, {"momentum": 0.9}, torch.float32, {}, fuse=False)
    _train(fused_run, 5)
    _sync(fused_run, unfused)
    assert set(unfused[2].state_dict()["state"][0]) == {"step", "square_avg", "momentum_buffer"}
    _train(unfused, 3, start=5)
    _train(fused_run, 3, start=5)
    np.testing.assert_allclose(unfused[0].detach().numpy(), fused_run[0].detach().numpy(),
                               atol=1e-6)
    assert unfused[3]._slots[0].state.steps == fused_run[3]._slots[0].state.steps == 8


@pytest.mark.parametrize("config", CONFIGS, ids=_label)
def test_the_optimizer_keeps_the_state_entries_of_torchs_own_step(config):
    # optimizer.state as torch's step leaves it: the same entries and keys (SGD without
    # momentum keeps none for a tensor, fused or not), so state_dict()s have one format
    runs = [_make(*config, torch.float32, {}, fuse=fuse) for fuse in (False, True)]
    for run in runs:
        _train(run, 2)
    unfused, fused_run = ({index: set(entry) for index, entry in
                           run[2].state_dict()["state"].items()} for run in runs)
    assert fused_run == unfused


@pytest.mark.parametrize("config", [CONFIGS[0], CONFIGS[7]], ids=_label)
def test_a_refused_update_raises_as_unfused_and_leaves_rln_untouched(config):
    # NaN in the gradient: the optimizer's step is applied (weights NaN, as torch alone
    # leaves them), the RLN update refused with the unfused path's error, RLN state kept
    cls, kwargs = config
    runs = [_make(cls, kwargs, torch.float32, {}, fuse=fuse) for fuse in (False, True)]
    errors = []
    for run in runs:
        _train(run, 3)
        saved = run[3].state_dict()
        grads = _grads(3, torch.float32)
        grads[0][0, 0] = float("nan")
        for param, grad in zip(run[:2], grads):
            param.grad = grad
        with pytest.raises(ValueError) as caught:
            run[2].step()
        errors.append(str(caught.value))
        after = run[3].state_dict()["states"][0]
        for key, value in saved["states"][0].items():
            assert torch.equal(after[key], value) if key != "steps" else after[key] == value
        assert run[0].grad is grads[0]  # given back
    assert errors[0] == errors[1]
    assert "NaN" in errors[0]
    unfused, fused_run = runs
    assert torch.equal(unfused[0].isnan(), fused_run[0].isnan())
    assert torch.equal(unfused[1], fused_run[1])


def test_a_tensor_without_grad_gets_the_rln_update_alone_as_unfused():
    runs = [_make(torch.optim.Adam, {}, torch.float32, {}, fuse=fuse) for fuse in (False, True)]
    for run in runs:
        _train(run, 3)
    _sync(*runs)
    for run in runs:
        run[0].grad = None
        run[1].grad = _grads(3, torch.float32)[1]
        run[2].step()
    assert torch.equal(runs[0][0], runs[1][0])
    assert torch.equal(runs[0][3].lambdas, runs[1][3].lambdas)
    assert len(runs[1][2].state[runs[1][0]]) == len(runs[0][2].state[runs[0][0]])


def _hooks(optimizer):
    return len(optimizer._optimizer_step_pre_hooks), len(optimizer._optimizer_step_post_hooks)


REFUSALS = [
    ("Adagrad", lambda p: torch.optim.Adagrad(p), {}, "supports torch.optim.RMSprop"),
    ("Adam fused", lambda p: torch.optim.Adam(p, fused=True), {}, "fused=True"),
    ("Adam capturable", lambda p: torch.optim.Adam(p, capturable=True), {}, "capturable=True"),
    ("SGD differentiable", lambda p: torch.optim.SGD(p, lr=0.1, differentiable=True), {},
     "differentiable=True"),
    # settings torch.optim takes and the fused step refuses (non-finite): at attach too
    ("Adam lr inf", lambda p: torch.optim.Adam(p, lr=float("inf")), {},
     "the param group of parameter 0 (23, 41): Adam: invalid lr inf"),
    ("SGD dampening nan", lambda p: torch.optim.SGD(p, lr=0.1, dampening=float("nan")), {},
     "SGD: invalid dampening nan"),
    ("impl numpy", lambda p: torch.optim.RMSprop(p), {"impl": "numpy"}, "impl='numpy'"),
    ("gradient mode", lambda p: torch.optim.RMSprop(p), {"mode": "gradient"}, "mode='gradient'"),
]


@pytest.mark.parametrize("make, rln_kwargs, message", [case[1:] for case in REFUSALS],
                         ids=[case[0] for case in REFUSALS])
def test_unsupported_optimizers_and_settings_are_refused_before_anything(make, rln_kwargs,
                                                                        message):
    weight = torch.nn.Parameter(torch.randn(SHAPE))
    optimizer = make([weight])
    rln = RLN(weight, **rln_kwargs)
    with pytest.raises(ValueError, match=re.escape(message)):
        rln.attach(optimizer, fuse=True)
    assert _hooks(optimizer) == (0, 0)
    rln.attach(optimizer).remove()  # not registered as attached


def test_a_non_contiguous_tensor_is_refused():
    strided = torch.nn.Parameter(torch.randn(8, 6)[:, ::2])
    assert strided.stride() == (6, 2)
    rln = RLN(strided)
    with pytest.raises(ValueError, match="not one dense block"):
        rln.attach(torch.optim.RMSprop([strided]), fuse=True)


def test_step_with_a_closure_is_refused_before_anything():
    weight, bias, optimizer, rln, _ = _make(torch.optim.RMSprop, {}, torch.float32, {}, True)
    weight.grad = torch.ones(SHAPE)
    before = weight.detach().clone()
    with pytest.raises(ValueError, match="closure"):
        optimizer.step(lambda: torch.tensor(0.0))
    assert torch.equal(weight, before) and weight.grad is not None


def test_a_sparse_gradient_is_refused_before_anything():
    weight, bias, optimizer, rln, _ = _make(torch.optim.RMSprop, {}, torch.float32, {}, True)
    weight.grad = torch.ones(SHAPE).to_sparse()
    bias.grad = torch.ones(SHAPE[0])
    before = [weight.detach().clone(), bias.detach().clone()]
    with pytest.raises(ValueError, match="dense gradients"):
        optimizer.step()
    assert torch.equal(weight, before[0]) and torch.equal(bias, before[1])
    assert weight.grad.is_sparse and len(optimizer.state) == 0
    assert rln._slots[0].state.steps == 0


def test_the_double_registration_guard_applies_and_remove_detaches_both_hooks():
    weight, bias, optimizer, rln, handle = _make(torch.optim.SGD, {}, torch.float32, {}, True)
    with pytest.raises(ValueError, match="already"):
        rln.attach(optimizer, fuse=True)
    with pytest.raises(ValueError, match="already"):
        rln.attach(optimizer)
    with pytest.raises(ValueError, match="another RLN"):
        RLN(weight).attach(optimizer, fuse=True)
    assert _hooks(optimizer) == (1, 1)
    handle.remove()
    assert _hooks(optimizer) == (0, 0)
    weight.grad = torch.ones(SHAPE)
    before = weight.detach().clone()
    optimizer.step()  # plain SGD now
    assert torch.equal(weight, before - 1e-2)
    rln.attach(optimizer, fuse=True).remove()


@pytest.mark.parametrize("rebind", ["data", "set_"])
def test_optimizer_state_whose_memory_is_rebound_is_stepped_where_it_now_lives(rebind):
    """`state[...].data = ...` (e.g. moving an optimizer's state) keeps the tensor object
    and changes its memory: the fused step must write the new memory."""
    run = _make(torch.optim.RMSprop, {}, torch.float32, {"norm": 1}, fuse=True)
    _train(run, 2)
    square_avg = run[2].state[run[0]]["square_avg"]
    fresh = torch.zeros_like(square_avg)
    if rebind == "data":
        square_avg.data = fresh
    else:
        square_avg.set_(fresh)
    assert square_avg.data_ptr() == fresh.data_ptr()
    _train(run, 1, start=2)
    assert run[2].state[run[0]]["square_avg"] is square_avg
    assert bool((fresh != 0).any())  # the step wrote the tensor's memory as it is now


def test_the_param_group_is_found_again_after_the_groups_change():
    """The hook remembers where the tensor's group was (checked by identity at every step):
    a group moved, replaced or left must still be found, or refused, as by a full look-up."""
    runs = []
    for fuse in (False, True):
        torch.manual_seed(0)
        weight = torch.nn.Parameter(torch.randn(SHAPE) * 0.05)
        bias = torch.nn.Parameter(torch.randn(SHAPE[0]) * 0.05)
        optimizer = torch.optim.RMSprop([{"params": [bias]}, {"params": [weight], "lr": 1e-3}],
                                        lr=1e-2)
        rln = RLN(weight)
        rln.attach(optimizer, fuse=fuse)
        runs.append((weight, bias, optimizer, rln))
    for step, change in enumerate(["none", "reorder", "replace", "none"]):
        for weight, bias, optimizer, _ in runs:
            if change == "reorder":  # the tensor's group is now the first, with another lr
                optimizer.param_groups.reverse()
                optimizer.param_groups[0]["lr"] = 3e-3
            elif change == "replace":  # new group dicts, the tensor first in its group
                groups = optimizer.param_groups
                optimizer.param_groups[:] = [{**groups[1]}, {**groups[0], "params": [weight]}]
                optimizer.param_groups[0]["params"] = [bias]
            for param, grad in zip((weight, bias), _grads(step, torch.float32)):
                param.grad = grad.clone()
            optimizer.step()
        (w_a, b_a, _, rln_a), (w_b, b_b, _, rln_b) = runs
        np.testing.assert_allclose(w_b.detach().numpy(), w_a.detach().numpy(), rtol=1e-5,
                                   atol=1e-7)
        assert torch.equal(b_a, b_b)
    weight, bias, optimizer, _ = runs[1]
    optimizer.param_groups[1]["params"] = []
    weight.grad = torch.ones(SHAPE)
    with pytest.raises(ValueError, match="no longer trained"):
        optimizer.step()


def test_a_gradient_that_requires_grad_is_stepped_as_unfused():
    # backward(create_graph=True) leaves gradients that require grad (no NumPy view of them)
    runs = [_make(torch.optim.Adam, {}, torch.float32, {}, fuse=fuse) for fuse in (False, True)]
    for step in range(3):
        for run in runs:
            for param, grad in zip(run[:2], _grads(step, torch.float32)):
                param.grad = grad.clone().requires_grad_()
            run[2].step()
            assert run[0].grad.requires_grad  # given back as it was
    np.testing.assert_allclose(runs[1][0].detach().numpy(), runs[0][0].detach().numpy(),
                               rtol=1e-5, atol=1e-7)
    assert runs[0][3]._slots[0].state.steps == runs[1][3]._slots[0].state.steps == 3


@pytest.mark.parametrize("fuse, impl", [(True, "auto"), (False, "numba"), (False, "auto"),
                                       (False, "torch")])
def test_a_switch_to_channels_last_mid_run_is_followed_by_the_state(fuse, impl):
    """`conv.to(memory_format=torch.channels_last)` after RLN was made rebinds the weight
    into another memory order: the RLN state follows it (the same values), so the fused
    step and the numba kernel keep walking W and its state together, and the run equals
    one that never switched. (The fused step refused every step, after counting Adam's
    step; impl "numba" refused the weights as not contiguous.)"""
    x = torch.randn(4, 3, 9, 9, generator=torch.Generator().manual_seed(1))
    runs = []
    for switch in (False, True):
        torch.manual_seed(0)
        conv = torch.nn.Conv2d(3, 8, 3)
        optimizer = torch.optim.Adam(conv.parameters(), lr=1e-3)
        rln = RLN(conv, avg_reg=-8.0, learning_rate=1e6, impl=impl)
        rln.attach(optimizer, fuse=fuse)
        for step in range(6):
            if switch and step == 2:
                conv.to(memory_format=torch.channels_last)
            optimizer.zero_grad()
            conv(x).pow(2).mean().backward()
            optimizer.step()
        runs.append((conv, optimizer, rln))
    (plain, plain_opt, plain_rln), (switched, switched_opt, switched_rln) = runs
    assert switched.weight.stride() == (27, 1, 9, 3)
    state = switched_rln._slots[0].state
    for array in (state.lambdas, state.prev_weights, state.prev_reg):
        strides = array.stride() if isinstance(array, torch.Tensor) else [
            stride // array.itemsize for stride in array.strides]
        assert list(strides) == list(switched.weight.stride())
    assert switched_opt.state[switched.weight]["step"] == plain_opt.state[plain.weight]["step"]
    np.testing.assert_allclose(switched.weight.detach().numpy(), plain.weight.detach().numpy(),
                               rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(switched_rln.lambdas.numpy(), plain_rln.lambdas.numpy(),
                               rtol=1e-9, atol=1e-9)


def test_gradient_mode_under_a_fused_attachment_is_refused_at_load_and_at_the_step():
    """A gradient-mode state_dict loaded into an RLN attached with fuse=True (which learns
    from the optimizer's step) is refused at load, nothing changed (it went on in delta
    mode while the RLN said 'gradient'); once the fused attachment is removed it loads.
    Set by hand, the mode is refused by the next step, nothing touched."""
    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(SHAPE) * 0.05)
    optimizer = torch.optim.SGD([weight], lr=1e-2)
    rln = RLN(weight, avg_reg=-8.0, learning_rate=1e4)
    handle = rln.attach(optimizer, fuse=True)
    checkpoint = rln.state_dict()
    checkpoint["hyperparameters"]["mode"] = "gradient"
    with pytest.raises(ValueError, match="mode='gradient', but this RLN is attached with fuse"):
        rln.load_state_dict(checkpoint)
    assert rln.mode == "delta"
    handle.remove()
    handle.remove()  # idempotent: counted once
    rln.load_state_dict(checkpoint)
    assert rln.mode == "gradient"
    rln.mode = "delta"
    rln.attach(optimizer, fuse=True)  # a fused attachment whose optimizer is then dropped,
    del optimizer                     # without remove(), leaves nothing behind
    gc.collect()
    rln.load_state_dict(checkpoint)
    rln.mode = "delta"
    optimizer = torch.optim.SGD([weight], lr=1e-2)
    rln.attach(optimizer, fuse=True)
    rln.mode = "gradient"  # by hand: the hook refuses the step
    weight.grad = torch.ones(SHAPE)
    before, lambdas = weight.detach().clone(), rln.lambdas.clone()
    with pytest.raises(ValueError, match="now in mode='gradient'.*attach without fuse"):
        optimizer.step()
    assert torch.equal(weight, before) and torch.equal(rln.lambdas, lambdas)
    assert weight.grad is not None


@pytest.mark.parametrize("cls, decoupled", [(torch.optim.Adam, False), (torch.optim.AdamW, True)])
def test_a_param_group_without_the_decay_kind_gets_its_optimizers_own(cls, decoupled):
    # torch before 2.6 wrote no "decoupled_weight_decay" into Adam's or AdamW's groups
    # (AdamW did not derive from Adam); the fused step must not read AdamW's as Adam's.
    from rln_torch._fused import OPTIMIZERS
    weight = torch.nn.Parameter(torch.ones(3))
    group = {key: value for key, value in cls([weight], weight_decay=0.01).param_groups[0].items()
             if key != "decoupled_weight_decay"}
    settings = OPTIMIZERS[cls].settings
    assert settings(group)["decoupled_weight_decay"] is decoupled
    # the group's word wins
    assert settings({**group, "decoupled_weight_decay": not decoupled}
                    )["decoupled_weight_decay"] is (not decoupled)


def test_a_refused_update_leaves_the_later_tensors_unregularized_as_unfused():
    """Two regularized tensors, tensor 0's RLN update refused (a NaN gradient): the fused
    step, like "optimizer.step() then RLN.step()", gives tensor 1 its optimizer step only
    (its RLN state unchanged). A test with one tensor could not see the fused loop go on
    regularizing the later tensors (a mutation-testing helper's find)."""
    def run(fuse):
        torch.manual_seed(0)
        first = torch.nn.Parameter(torch.randn(5, 7) * 0.05)
        second = torch.nn.Parameter(torch.randn(4, 3) * 0.05)
        optimizer = torch.optim.SGD([first, second], lr=1e-2)
        rln = RLN([first, second])
        rln.attach(optimizer, fuse=fuse)
        for _ in range(3):
            first.grad, second.grad = torch.randn(5, 7) * 1e-2, torch.randn(4, 3) * 1e-2
            optimizer.step()
        saved = copy.deepcopy(rln.state_dict())
        first.grad = torch.randn(5, 7) * 1e-2
        first.grad[0, 0] = float("nan")
        second.grad = torch.randn(4, 3) * 1e-2
        with pytest.raises(ValueError, match="parameter 0"):
            optimizer.step()
        return second.detach().clone(), saved, rln.state_dict()

    unfused_second, _, _ = run(fuse=False)
    fused_second, saved, after = run(fuse=True)
    assert after["states"][1]["steps"] == saved["states"][1]["steps"]
    assert torch.equal(after["states"][1]["lambdas"], saved["states"][1]["lambdas"])
    torch.testing.assert_close(fused_second, unfused_second, rtol=0, atol=1e-7)


MID_RUN_REFUSALS = [
    (torch.optim.RMSprop, {"momentum": 0.9}, {"lr": -1e-3}, ValueError, "RMSprop: invalid lr"),
    (torch.optim.Adam, {}, {"betas": (1.0, 0.999)}, ValueError, "invalid beta parameter"),
    (torch.optim.AdamW, {"amsgrad": True}, {"eps": float("nan")}, ValueError,
     "Adam: invalid eps"),
    (torch.optim.SGD, {"momentum": 0.9, "dampening": 0.5}, {"momentum": 0.0, "nesterov": True},
     ValueError, "Nesterov momentum requires"),
    (torch.optim.SGD, {}, {"lr": "fast"}, TypeError, "SGD: lr must be a real number"),
    (torch.optim.SGD, {}, {"lr": "0.1"}, TypeError, "SGD: lr must be a real number"),
    (torch.optim.RMSprop, {}, {"differentiable": True}, ValueError, "differentiable=True"),
]


@pytest.mark.parametrize("first", [False, True], ids=["mid-run", "first-step"])
@pytest.mark.parametrize("cls, kwargs, setting, error, match", MID_RUN_REFUSALS,
                         ids=[f"{case[0].__name__}-{next(iter(case[2]))}-{index}"
                              for index, case in enumerate(MID_RUN_REFUSALS)])
def test_a_setting_torch_would_refuse_is_refused_before_any_tensor_or_state_moves(
        cls, kwargs, setting, error, match, first):
    """A param group given a setting torch.optim refuses when made (a scheduler or a user
    writing into param_groups): the fused step raises before torch steps anything, the
    optimizer's state (its step count, a first momentum buffer) untouched, the gradients
    given back. Restored, the run goes on as one that never saw it. (The settings were
    checked in the post-hook, after torch had stepped the other tensors and counted the
    step.)"""
    runs = [_make(cls, kwargs, torch.float32, {}, fuse=True) for _ in range(2)]
    steps = 0 if first else 3
    for run in runs:
        _train(run, steps)
    refused, twin = runs
    group = refused[2].param_groups[0]
    saved_group = dict(group)
    before = [refused[0].detach().clone(), refused[1].detach().clone(),
              copy.deepcopy(refused[2].state_dict()), copy.deepcopy(refused[3].state_dict())]
    group.update(setting)
    grads = _grads(steps, torch.float32)
    for param, grad in zip(refused[:2], grads):
        param.grad = grad
    with pytest.raises(error, match=f"the param group of .*{match}"):
        refused[2].step()
    assert refused[0].grad is grads[0] and refused[1].grad is grads[1]
    assert torch.equal(refused[0], before[0]) and torch.equal(refused[1], before[1])
    assert len(refused[2].state.get(refused[0], {})) == len(before[2]["state"].get(0, {}))
    _assert_same_state(refused[2].state_dict()["state"], before[2]["state"])  # (not the group)
    _assert_same_state(refused[3].state_dict(), before[3])
    group.update(saved_group)
    for run in runs:
        _train(run, 2, start=steps)
    assert torch.equal(refused[0], twin[0]) and torch.equal(refused[1], twin[1])
    _assert_same_state(refused[2].state_dict(), twin[2].state_dict())
    _assert_same_state(refused[3].state_dict(), twin[3].state_dict())


def _assert_same_state(got, want):
    """Two state_dicts (nested dicts and lists of tensors and numbers) equal."""
    if isinstance(want, dict):
        assert set(got) == set(want)
        for key in want:
            _assert_same_state(got[key], want[key])
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want)
        for item_got, item_want in zip(got, want):
            _assert_same_state(item_got, item_want)
    elif isinstance(want, torch.Tensor):
        assert torch.equal(got, want), (got, want)
    else:
        assert got == want or (got != got and want != want), (got, want)


@pytest.mark.parametrize("cls, kwargs, switched, missing", [
    (torch.optim.RMSprop, {}, {"momentum": 0.9}, "momentum_buffer"),
    (torch.optim.RMSprop, {}, {"centered": True}, "grad_avg"),
    (torch.optim.Adam, {}, {"amsgrad": True}, "max_exp_avg_sq"),
])
def test_a_setting_switched_on_mid_run_without_its_state_is_refused_before_anything(
        cls, kwargs, switched, missing):
    """torch's own step fails on it (a KeyError, nothing stepped); the fused step used to
    let torch step the other parameters and count the step first."""
    refused = _make(cls, kwargs, torch.float32, {}, fuse=True)
    _train(refused, 3)
    before = [refused[0].detach().clone(), refused[1].detach().clone(),
              copy.deepcopy(refused[2].state_dict()["state"]),
              copy.deepcopy(refused[3].state_dict())]
    refused[2].param_groups[0].update(switched)
    grads = _grads(3, torch.float32)
    for param, grad in zip(refused[:2], grads):
        param.grad = grad
    with pytest.raises(ValueError, match=f"asks for optimizer state {missing}"):
        refused[2].step()
    assert refused[0].grad is grads[0]
    assert torch.equal(refused[0], before[0]) and torch.equal(refused[1], before[1])
    _assert_same_state(refused[2].state_dict()["state"], before[2])
    _assert_same_state(refused[3].state_dict(), before[3])


def test_a_gradient_of_another_dtype_is_refused_before_anything():
    """(torch lets a parameter take a gradient of another dtype once its grad_dtype is
    None; the fused kernel walks one dtype.)"""
    run = _make(torch.optim.RMSprop, {}, torch.float32, {}, fuse=True)
    _train(run, 2)
    before = [run[1].detach().clone(), copy.deepcopy(run[2].state_dict()["state"])]
    run[0].grad_dtype = None
    run[0].grad = torch.zeros(SHAPE, dtype=torch.float64)
    run[1].grad = torch.ones(SHAPE[0])
    with pytest.raises(TypeError, match=r"\.grad has dtype torch.float64"):
        run[2].step()
    assert torch.equal(run[1], before[0])
    _assert_same_state(run[2].state_dict()["state"], before[1])


WRONG_STATE = [
    (torch.optim.RMSprop, {}, "square_avg", lambda w: torch.zeros(3)),
    (torch.optim.RMSprop, {"centered": True}, "grad_avg", lambda w: w.detach().numpy().copy()),
    (torch.optim.Adam, {"amsgrad": True}, "max_exp_avg_sq",
     lambda w: torch.zeros_like(w, dtype=torch.float64)),
    (torch.optim.SGD, {"momentum": 0.9}, "momentum_buffer",
     lambda w: torch.zeros(tuple(reversed(w.shape)))),
]


@pytest.mark.parametrize("cls, kwargs, key, wrong", WRONG_STATE,
                         ids=[f"{case[0].__name__}-{case[2]}" for case in WRONG_STATE])
def test_optimizer_state_of_another_shape_or_dtype_is_refused_before_anything_moves(
        cls, kwargs, key, wrong):
    """An optimizer state tensor the step reads, replaced by one of another shape, dtype or
    kind (a state_dict of another model): refused before torch steps the other tensors,
    every tensor, torch's state (step counts included) and the RLN state as they were.
    (It was refused by the fused step, after torch had stepped the others and counted
    this tensor's step.)"""
    run = _make(cls, kwargs, torch.float32, {}, fuse=True)
    _train(run, 3)
    weight, bias, optimizer, rln, _ = run
    optimizer.state[weight][key] = wrong(weight)
    before = [weight.detach().clone(), bias.detach().clone(),
              copy.deepcopy(dict(optimizer.state[bias])), copy.deepcopy(rln.state_dict())]
    steps = {param: copy.deepcopy(optimizer.state[param].get("step")) for param in (weight, bias)}
    grads = _grads(3, torch.float32)
    for param, grad in zip((weight, bias), grads):
        param.grad = grad
    with pytest.raises(ValueError, match=f"optimizer.state of .*: {key} is "):
        optimizer.step()
    assert weight.grad is grads[0] and bias.grad is grads[1]
    assert torch.equal(weight, before[0]) and torch.equal(bias, before[1])
    _assert_same_state(dict(optimizer.state[bias]), before[2])
    for param, step in steps.items():
        _assert_same_state(optimizer.state[param].get("step"), step)
    _assert_same_state(rln.state_dict(), before[3])


def test_fuse_refuses_a_parameter_off_the_cpu_at_attach():
    """The meta device stands in for a GPU: refused when attached, not inside a later step."""
    layer = torch.nn.Linear(4, 3, device="meta")
    rln = RLN(layer)
    optimizer = torch.optim.Adam(layer.parameters(), lr=1e-3)
    with pytest.raises(ValueError, match="fuse=True runs on CPU tensors"):
        rln.attach(optimizer, fuse=True)
    assert _hooks(optimizer) == (0, 0)
    rln.attach(optimizer).remove()  # nor did it mark the RLN attached


def test_a_fused_step_refused_by_a_later_tensor_keeps_every_gradient():
    """The pre-hook checks every regularized tensor before it takes any gradient away."""
    torch.manual_seed(0)
    first, second = torch.nn.Linear(4, 3), torch.nn.Linear(3, 2)
    rln = RLN([first, second])
    optimizer = torch.optim.Adam([*first.parameters(), *second.parameters()], lr=1e-3)
    rln.attach(optimizer, fuse=True)
    second(first(torch.randn(8, 4))).pow(2).sum().backward()
    grad = first.weight.grad.clone()
    second.weight.grad_dtype = None
    second.weight.grad = second.weight.grad.double()  # refused: another dtype than the weight's
    weights = [first.weight.detach().clone(), second.weight.detach().clone()]
    with pytest.raises(TypeError, match="grad has dtype"):
        optimizer.step()
    assert first.weight.grad is not None and torch.equal(first.weight.grad, grad)
    assert second.weight.grad is not None
    assert torch.equal(first.weight, weights[0]) and torch.equal(second.weight, weights[1])
