"""rln_torch against rln_core.reference: per update (kit, Linear, Conv2d) and whole trainings."""


import numpy as np
import pytest
import torch

import rln_core
from rln_core import testing
from rln_torch import RLN, torch_update

IMPLS = ["numba", "numpy", "torch"]
HYPER = {"avg_reg": -6.0, "learning_rate": 1e5, "norm": 1}


def torch_update_on(device, compute_dtype=None):
    """`torch_update` as a kit implementation: the kit's NumPy arrays (and delta) as
    tensors on `device`, the weights written back."""
    def update(weights, state, delta=None, **kwargs):
        kwargs["compute_dtype"] = compute_dtype
        arrays = {k: v for k, v in state.to_dict().items() if isinstance(v, np.ndarray)}
        tensors = rln_core.RLNState(
            **{k: torch.from_numpy(v).to(device) for k, v in arrays.items()}, steps=state.steps)
        on_device = torch.from_numpy(weights).to(device)
        if delta is not None:
            delta = torch.from_numpy(delta).to(device)
        torch_update(on_device, tensors, delta=delta, **kwargs)
        weights[...] = on_device.cpu().numpy()
        return weights, numpy_state(vars(tensors))
    return update


def numpy_state(entry):
    """An `rln_core.RLNState` from one entry of `RLN.state_dict()["states"]`."""
    return rln_core.RLNState.from_dict(
        {k: v.cpu().numpy() if isinstance(v, torch.Tensor) else v for k, v in entry.items()
         if v is not None})


def adapter_on_numpy(impl):
    """The whole adapter as a kit implementation: a Parameter sharing the kit's weights'
    memory, the kit's state loaded with `load_state_dict`, one `step()`."""
    def update(weights, state, **kwargs):
        tensor = torch.from_numpy(weights)
        param = torch.nn.Parameter(tensor, requires_grad=tensor.is_floating_point())
        rln = RLN(param, impl=impl, state_dtype=getattr(torch, str(state.lambdas.dtype)),
                  **kwargs)
        entry = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else int(v)
                 for k, v in state.to_dict().items()}
        rln.load_state_dict({"hyperparameters": {**kwargs, "mode": "delta"}, "states": [entry]})
        rln.step()
        return weights, numpy_state(rln.state_dict()["states"][0])
    return update


@pytest.mark.parametrize("device", [
    "cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                         reason="no CUDA device"))])
def test_torch_update_passes_the_conformance_kit(device):
    assert testing.check_update(torch_update_on(device)) == len(testing.CASES)
    assert testing.check_rejects_bad_input(torch_update_on(device)) == len(testing.ERROR_CASES)


@pytest.mark.parametrize("device", [
    "cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                         reason="no CUDA device"))])
def test_torch_update_in_float32_meets_the_float32_modes_tolerance(device):
    """The kit's float32 cases (float32 weights and state, the tutorial's 1013 x 179
    layer among them) in float32 arithmetic on torch ops, the mean summed in float64."""
    cases = testing.FLOAT32_CASES
    assert any("tutorial" in case.name for case in cases)
    assert testing.check_update(torch_update_on(device, torch.float32), cases,
                                tolerance=testing.FLOAT32_COMPUTE_TOLERANCE) == len(cases)


@pytest.mark.parametrize("impl", IMPLS)
def test_adapter_passes_the_conformance_kit(impl):
    """The whole adapter learns from W - prev_weights (delta mode): the kit's cases
    without a given delta (gradient mode's delta is tested below)."""
    cases = [case for case in testing.CASES if not case.delta]
    errors = [case for case in testing.ERROR_CASES if not case.name.startswith("delta")]
    assert testing.check_update(adapter_on_numpy(impl), cases) == len(cases)
    assert testing.check_rejects_bad_input(adapter_on_numpy(impl), errors) == len(errors)


class AdapterOverARun:
    """The adapter as `check_trajectory` drives it: one RLN over a Parameter sharing the
    kit's weights' memory, made at the first call (the kit's state loaded), then only
    `step()`: it keeps its own state (and its cached views) across the run."""

    def __init__(self, impl):
        self.impl, self.rln, self.weights = impl, None, None

    def __call__(self, weights, state, **kwargs):
        if self.weights is not weights:  # a new run
            self.weights = weights
            tensor = torch.from_numpy(weights)
            self.rln = RLN(torch.nn.Parameter(tensor), impl=self.impl, **kwargs)
        self.rln.step()
        return weights, numpy_state(self.rln.state_dict()["states"][0])


@pytest.mark.parametrize("impl", IMPLS)
def test_adapter_keeps_its_state_over_a_run_of_updates(impl):
    assert testing.check_trajectory(AdapterOverARun(impl)) == len(testing.TRAJECTORY_CASES)


def make_layer(kind, dtype):
    torch.manual_seed(3)
    if kind == "linear":
        return torch.nn.Linear(13, 5).to(dtype)  # weight (out, in) = (5, 13)
    conv = torch.nn.Conv2d(3, 4, kernel_size=3).to(dtype)  # weight (out, in, kh, kw)
    if kind == "conv_channels_last":
        conv = conv.to(memory_format=torch.channels_last)  # a strided 4-D weight
    return conv


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind", ["linear", "conv", "conv_channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_each_update_matches_the_reference(impl, kind, dtype):
    layer = make_layer(kind, dtype)
    weight = layer.weight
    address, strides = weight.data_ptr(), weight.stride()
    rln = RLN(layer, impl=impl, **HYPER)
    generator = torch.Generator().manual_seed(0)
    for step in range(6):  # the first update has no lambda step; the rest do
        with torch.no_grad():  # a stand-in optimizer step
            weight.add_(1e-2 * torch.randn(weight.shape, generator=generator, dtype=dtype))
        before = weight.detach().numpy().copy()
        state = numpy_state(rln.state_dict()["states"][0])
        expected_w, expected = rln_core.reference.update(before, state, **HYPER)
        rln.step()
        testing.assert_update_matches(f"{kind} step {step}", expected_w, expected,
                                      weight.detach().numpy().copy(),
                                      numpy_state(rln.state_dict()["states"][0]))
    assert weight is layer.weight and weight.data_ptr() == address and weight.stride() == strides
    assert rln.sparsity() > 0  # Theta = -6 clips some of these small weights to 0


def tiny_network(dtype):
    torch.manual_seed(7)
    return torch.nn.Sequential(torch.nn.Linear(10, 6), torch.nn.ReLU(),
                               torch.nn.Linear(6, 1)).to(dtype)


def batches(n_steps, dtype):
    generator = torch.Generator().manual_seed(11)
    X = torch.randn(n_steps, 16, 10, generator=generator, dtype=dtype)
    return X, X[..., :3].sum(-1, keepdim=True)


# 40 SGD steps: enough for lambdas to move far from Theta and for weights to
# reach exactly 0, few enough to run in well under a second.
N_STEPS = 40


def train(model, n_steps, after_step, lr=0.05):
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    X, y = batches(n_steps, model[0].weight.dtype)
    for t in range(n_steps):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(X[t]), y[t]).backward()
        optimizer.step()
        after_step()


@pytest.mark.parametrize("impl", IMPLS)
def test_training_matches_a_loop_applying_the_reference(impl):
    hyper = {"avg_reg": -5.0, "learning_rate": 1e6, "norm": 1}
    adapted = tiny_network(torch.float64)
    rln = RLN(adapted[0], impl=impl, **hyper)
    train(adapted, N_STEPS, rln.step)

    oracle = tiny_network(torch.float64)
    weight = oracle[0].weight
    state = rln_core.init(weight.detach().numpy(), hyper["avg_reg"])

    def reference_step():
        nonlocal state
        new_w, state = rln_core.reference.update(weight.detach().numpy().copy(), state, **hyper)
        with torch.no_grad():
            weight.copy_(torch.from_numpy(new_w))

    train(oracle, N_STEPS, reference_step)
    assert 0 < rln.sparsity() < 1
    got = [p.detach().numpy() for p in adapted.parameters()]
    expected = [p.detach().numpy() for p in oracle.parameters()]
    if impl == "numpy":  # the core's NumPy path is the reference itself: bit for bit
        for g, e in zip(got, expected):
            np.testing.assert_array_equal(g, e)
        np.testing.assert_array_equal(rln.lambdas.numpy(), state.lambdas)
    else:  # other summation orders for the mean: rounding-level differences only
        for g, e in zip(got, expected):
            np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(rln.lambdas.numpy(), state.lambdas, rtol=1e-11)


@pytest.mark.parametrize("impl", ["numba", "torch"])
def test_gradient_mode_with_nu_eta_equals_delta_mode_with_nu_under_plain_sgd(impl):
    # Plain SGD moves W by -eta * grad, so delta mode's lambda step
    # -nu * delta * prev_reg equals gradient mode's nu * eta * grad * prev_reg.
    eta, nu = 0.05, 1e6
    runs = {}
    for mode, learning_rate in (("delta", nu), ("gradient", nu * eta)):
        model = tiny_network(torch.float64)
        rln = RLN(model[0], avg_reg=-5.0, learning_rate=learning_rate, mode=mode, impl=impl)
        train(model, N_STEPS, rln.step, lr=eta)
        runs[mode] = (model[0].weight.detach().clone(), rln.lambdas.clone(), rln.sparsity())
    (w_delta, lam_delta, sparsity), (w_grad, lam_grad, _) = runs["delta"], runs["gradient"]
    assert sparsity > 0 and (lam_delta != lam_delta.flatten()[0]).any()
    torch.testing.assert_close(w_grad, w_delta, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(lam_grad, lam_delta, rtol=1e-9, atol=1e-9)
