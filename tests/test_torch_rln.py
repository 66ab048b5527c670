"""rln_torch.RLN: the Parameter is never replaced, the API, and every bad input refused."""

import math

import numpy as np
import pytest
import torch

import rln_core
from rln_torch import RLN
from rln_torch._impls import resolve

HYPER = {"avg_reg": -5.0, "learning_rate": 1e6}


def network(dtype=torch.float32):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(12, 8), torch.nn.ReLU(),
                               torch.nn.Linear(8, 1)).to(dtype)


def fit(model, optimizer, n_steps=60, rln=None):
    """Train on y = x0 + x1 (ten noise inputs); `rln.step()` after each step if given."""
    generator = torch.Generator().manual_seed(1)
    dtype = next(model.parameters()).dtype
    for _ in range(n_steps):
        x = torch.randn(32, 12, generator=generator, dtype=dtype)
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), x[:, :2].sum(1, keepdim=True)).backward()
        optimizer.step()
        if rln is not None:
            rln.step()


def snapshot(rln, model):
    """Everything a refused call must leave untouched."""
    weights = [p.detach().clone() for p in model.parameters()]
    return weights, rln.state_dict()


def assert_unchanged(before, after):
    for b, a in zip(before[0], after[0]):
        assert torch.equal(b, a)
    for b, a in zip(before[1]["states"], after[1]["states"]):
        assert b.keys() == a.keys() and b["steps"] == a["steps"]
        for key in b.keys() - {"steps"}:
            assert torch.equal(b[key], a[key]), key


@pytest.mark.parametrize("impl", ["auto", "torch"])
@pytest.mark.parametrize("dtype, state_dtype", [(torch.float32, torch.float64),
                                                (torch.float64, torch.float64),
                                                (torch.float32, torch.float32)])
def test_trains_the_optimizers_own_parameter_in_place(impl, dtype, state_dtype):
    model = network(dtype)
    weight = model[0].weight
    address = weight.data_ptr()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    rln = RLN(model[0], impl=impl, state_dtype=state_dtype, **HYPER)
    handle = rln.attach(optimizer)
    fit(model, optimizer)
    handle.remove()

    plain = network(dtype)
    fit(plain, torch.optim.Adam(plain.parameters(), lr=1e-2))
    # The optimizer, the module and model.parameters() see one tensor, in its own
    # memory, and RLN visibly changed it (a plain fit leaves no exact zeros).
    assert optimizer.param_groups[0]["params"][0] is weight is model[0].weight
    assert next(model.parameters()) is weight and weight.data_ptr() == address
    assert (plain[0].weight == 0).sum() == 0
    assert rln.sparsity() > 0.3 and (weight == 0).sum().item() / weight.numel() == rln.sparsity()
    importance = rln.input_importance()
    assert importance.shape == (12,) and importance[:2].min() > importance[2:].max()
    assert rln.lambdas.shape == weight.shape and rln.lambdas.dtype == state_dtype
    assert rln.resolved_impls == ["auto" if impl == "auto" else "torch"]


def test_attach_steps_once_per_optimizer_step_and_detaches():
    model = network()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    rln = RLN(model[0], **HYPER)
    handle = rln.attach(optimizer)
    fit(model, optimizer, n_steps=3)
    assert rln.state_dict()["states"][0]["steps"] == 3
    handle.remove()
    fit(model, optimizer, n_steps=2)
    assert rln.state_dict()["states"][0]["steps"] == 3


@pytest.mark.parametrize("fuse", [False, True])
def test_an_attachment_is_a_context_manager_that_detaches_on_exit(fuse):
    model = network()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    rln = RLN(model[0], **HYPER)
    with rln.attach(optimizer, fuse=fuse):
        fit(model, optimizer, n_steps=3)
    assert rln.state_dict()["states"][0]["steps"] == 3
    fit(model, optimizer, n_steps=2)
    assert rln.state_dict()["states"][0]["steps"] == 3
    rln.attach(optimizer, fuse=fuse).remove()  # detached on exit: it may attach again


def test_attach_refuses_an_optimizer_that_does_not_train_the_tensor():
    model = network()
    optimizer = torch.optim.SGD(model[2].parameters(), lr=0.1)
    with pytest.raises(ValueError, match="parameter 0 .* is not trained by this SGD"):
        RLN(model[0]).attach(optimizer)


def test_a_list_gets_one_state_per_tensor():
    model = network()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    rln = RLN([model[0], model[2].weight], **HYPER)
    fit(model, optimizer, n_steps=5, rln=rln)
    assert [tuple(lam.shape) for lam in rln.lambdas] == [(8, 12), (1, 8)]
    assert len(rln.sparsity()) == 2 and len(rln.input_importance()) == 2
    assert [e["steps"] for e in rln.state_dict()["states"]] == [5, 5]


def test_lambdas_share_memory_with_the_state():
    model = network()
    rln = RLN(model[0], impl="auto", **HYPER)
    lambdas = rln.lambdas
    with torch.no_grad():
        model[0].weight.add_(0.01)
    rln.step()
    rln.step()
    assert torch.equal(lambdas, rln.lambdas) and lambdas.data_ptr() == rln.lambdas.data_ptr()


@pytest.mark.parametrize("impl", ["auto", "torch"])
def test_a_second_step_without_an_optimizer_step_translates_and_regularizes_again(impl):
    # Legal, and documented: the weight change is zero, so the lambdas only
    # translate back to mean Theta (then clip) and W shrinks once more.
    model = network(torch.float64)
    rln = RLN(model[0], impl=impl, **HYPER)
    rln.step()
    with torch.no_grad():
        model[0].weight.add_(1e-3)
    rln.step()
    w1, lam1 = model[0].weight.detach().clone(), rln.lambdas.clone()
    rln.step()
    w2, lam2 = model[0].weight.detach(), rln.lambdas
    shift = lam2 - lam1
    unclipped = (lam2 < torch.log(w2.abs())) & (lam1 < torch.log(w1.abs()))
    assert unclipped.sum() > 10
    torch.testing.assert_close(shift[unclipped], torch.full_like(shift[unclipped],
                                                                 shift[unclipped][0].item()))
    assert shift[unclipped][0] > 0 and (w2.abs() <= w1.abs()).all() and (w2 != w1).any()


def test_follows_the_tensor_when_its_memory_is_rebound():
    model = network()
    rln = RLN(model[0], impl="auto", **HYPER)
    rln.step()
    model[0].weight.data = model[0].weight.data.clone()  # same shape, new memory
    before = model[0].weight.detach().clone()
    rln.step()
    assert (model[0].weight != before).any()


def test_compiled_model_trains_with_rln_on_the_shared_parameter():
    model = network()
    compiled = torch.compile(model, backend="aot_eager")  # dynamo + autograd, no codegen
    optimizer = torch.optim.SGD(compiled.parameters(), lr=0.1)
    rln = RLN(model[0], **HYPER)
    rln.attach(optimizer)
    fit(compiled, optimizer, n_steps=20)
    assert rln.sparsity() > 0
    x = torch.randn(4, 12)
    torch.testing.assert_close(compiled(x), model(x))  # the compiled graph sees RLN's writes
    assert RLN(torch.compile(torch.nn.Linear(3, 2), backend="aot_eager")).params[0].shape == (2, 3)


@pytest.mark.parametrize("optimizer_class, fuse, backend", [
    (torch.optim.SGD, False, "eager"), (torch.optim.SGD, True, "eager"),
    (torch.optim.Adam, True, "eager"), (torch.optim.SGD, True, "inductor"),
    (torch.optim.Adam, True, "inductor")])
def test_a_compiled_optimizer_step_runs_the_rln_hooks_eagerly(optimizer_class, fuse, backend):
    # torch.compile(optimizer.step) traces the step hooks; RLN's read tensors as NumPy
    # and call numba, so they must run outside the trace (the fused hooks crashed there
    # after the other parameters' step had been counted). backend="eager": TorchDynamo's
    # tracing without code generation, where the hooks used to fail. Given gradients, so
    # the other parameter's compiled step (compiled Adam rounds differently) cannot feed
    # back; unfused, the regularized tensor's step is torch's: SGD's is the same compiled
    # by "eager" (inductor's generated code rounds it differently, so unfused is not
    # compared there). "inductor", torch.compile's default, generates and compiles C++.
    def run(compiled):
        torch.manual_seed(0)
        weight = torch.nn.Parameter(torch.randn(8, 12) * 0.05)
        other = torch.nn.Parameter(torch.randn(8) * 0.05)
        optimizer = optimizer_class([weight, other], lr=0.01)
        rln = RLN(weight, **HYPER)
        rln.attach(optimizer, fuse=fuse)
        step = torch.compile(optimizer.step, backend=backend) if compiled else optimizer.step
        generator = torch.Generator().manual_seed(1)
        for _ in range(5):
            weight.grad = torch.randn(weight.shape, generator=generator) * 0.01
            other.grad = torch.randn(other.shape, generator=generator)
            step()
        return weight.detach().clone(), rln.lambdas.clone(), optimizer.state[weight]

    weight, lambdas, state = run(compiled=False)
    compiled_weight, compiled_lambdas, compiled_state = run(compiled=True)
    assert rln_core.sparsity(weight.numpy()) > 0  # RLN's clip happened
    assert torch.equal(compiled_weight, weight) and torch.equal(compiled_lambdas, lambdas)
    for key, value in state.items():
        assert torch.equal(compiled_state[key], value), key


def test_gradient_mode_refuses_to_attach_to_a_maximizing_param_group():
    model = network()
    optimizer = torch.optim.SGD([{"params": model[0].parameters(), "maximize": True},
                                 {"params": model[2].parameters()}], lr=0.1)
    with pytest.raises(ValueError, match="parameter 0 is trained with maximize=True"):
        RLN(model[0], mode="gradient").attach(optimizer)
    RLN(model[0], mode="delta").attach(optimizer).remove()  # delta mode learns from either
    RLN(model[2], mode="gradient").attach(optimizer).remove()
    # nor can a loaded state_dict switch an attached RLN to gradient mode there
    rln = RLN(model[0], mode="delta")
    rln.attach(optimizer)
    checkpoint = rln.state_dict()
    checkpoint["hyperparameters"]["mode"] = "gradient"
    with pytest.raises(ValueError, match="parameter 0 is trained with maximize=True"):
        rln.load_state_dict(checkpoint)
    assert rln.mode == "delta"


@pytest.mark.parametrize("target, error, match", [
    (lambda m: torch.nn.ReLU(), TypeError, "ReLU without a .weight"),
    (lambda m: m, TypeError, "Sequential without a .weight"),
    (lambda m: "weights", TypeError, "got str"),
    (lambda m: torch.zeros(3, dtype=torch.int64), TypeError, "dtype torch.int64"),
    (lambda m: torch.zeros(3, dtype=torch.float16, requires_grad=True), TypeError, "float16"),
    (lambda m: torch.nn.Parameter(torch.ones(3), requires_grad=False), ValueError, "frozen"),
    (lambda m: m[0].weight * 2, ValueError, "not a leaf"),
    (lambda m: torch.nn.Parameter(torch.ones(0, 3)), ValueError, "empty"),
    (lambda m: [], ValueError, "empty list"),
    (lambda m: [m[0], m[0].weight], ValueError, r"target\[1\] shares memory with item 0"),
])
def test_refuses_bad_targets(target, error, match):
    with pytest.raises(error, match=match):
        RLN(target(network()))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"norm": 3}, ValueError, "Invalid norm: 3"),
    ({"avg_reg": math.nan}, ValueError, "Invalid avg_reg"),
    ({"learning_rate": -1.0}, ValueError, "Invalid learning_rate"),
    ({"learning_rate": math.nan}, ValueError, "Invalid learning_rate"),
    ({"mode": "grad"}, ValueError, "Invalid mode: 'grad'"),
    ({"impl": "cuda"}, ValueError, "Invalid impl: 'cuda'"),
    ({"state_dtype": torch.float16}, TypeError, "Invalid state_dtype: torch.float16"),
    ({"state_dtype": np.float64}, TypeError, "Invalid state_dtype"),
    ({"compute_dtype": torch.float16, "state_dtype": torch.float32}, TypeError,
     "Invalid compute_dtype: torch.float16"),
    ({"compute_dtype": np.float32, "state_dtype": torch.float32}, TypeError,
     "Invalid compute_dtype"),
    ({"compute_dtype": torch.float32}, TypeError,
     r"RLN: compute_dtype=float32 needs .*; got state_dtype float64; ask for "
     r"RLN\(\.\.\., state_dtype=torch.float32\)"),
])
def test_refuses_bad_hyperparameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        RLN(network()[0], **kwargs)


def test_float32_compute_refuses_float64_parameters():
    with pytest.raises(TypeError, match="needs float32 weights .*; got parameter 0 float64; float32 parameters, or "):
        RLN(network(torch.float64)[0], state_dtype=torch.float32, compute_dtype=torch.float32)


@pytest.mark.parametrize("mode", ["delta", "gradient"])
@pytest.mark.parametrize("impl", ["auto", "numpy", "torch"])
def test_float32_compute_runs_the_cores_float32_mode(impl, mode):
    """Each update equals the core's float32 mode on the same inputs (bit for bit on
    NumPy views; within float32 rounding on torch ops, against NumPy's), and differs
    from float64 arithmetic on the same float32 state (the option does something)."""
    model = network()
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-2)
    rln = RLN(model[0], impl=impl, mode=mode, state_dtype=torch.float32,
              compute_dtype=torch.float32, **HYPER)
    assert rln.compute_dtype == torch.float32 and "compute_dtype=torch.float32" in repr(rln)
    generator = torch.Generator().manual_seed(1)
    differs = False
    for _ in range(8):
        x = torch.randn(32, 12, generator=generator)
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), x[:, :2].sum(1, keepdim=True)).backward()
        optimizer.step()
        weights = model[0].weight.detach().numpy().copy()
        entry = rln.state_dict()["states"][0]
        state = rln_core.RLNState.from_dict({k: v.numpy() if torch.is_tensor(v) else v
                                             for k, v in entry.items()})
        delta = -model[0].weight.grad.numpy() if mode == "gradient" else None
        expected_w, expected = weights.copy(), state.copy()
        rln_core.update(expected_w, expected, delta=delta, compute_dtype=np.float32,
                        impl="numba" if impl == "auto" else "array_api", **HYPER)
        float64_w, float64 = weights.copy(), state.copy()
        rln_core.update(float64_w, float64, delta=delta, impl="numpy", **HYPER)
        rln.step()
        got = rln.lambdas.numpy()
        if impl == "torch":
            # two float32 computations: within twice the mode's tolerance of each other
            scale = max(1.0, np.abs(state.lambdas).max(), np.abs(expected.lambdas).max())
            tolerance = 2 * rln_core.checks.F32_LAMBDA_RTOL * scale
            np.testing.assert_allclose(got, expected.lambdas, rtol=0, atol=tolerance)
            np.testing.assert_allclose(model[0].weight.detach().numpy(), expected_w,
                                       rtol=2 * tolerance, atol=1e-9)
        else:
            np.testing.assert_array_equal(got, expected.lambdas)
            np.testing.assert_array_equal(model[0].weight.detach().numpy(), expected_w)
        differs |= not np.array_equal(got, float64.lambdas)
    assert differs


def test_resolver_precedence():
    cpu = torch.zeros(3)
    other = torch.empty(3, device="meta")  # stands in for a CUDA or MPS tensor
    assert resolve("auto", cpu).name == "auto" and resolve("auto", cpu).on_numpy
    assert resolve("numba", cpu).name == "numba"
    assert resolve("torch", cpu).name == "torch" and not resolve("torch", cpu).on_numpy
    assert resolve("auto", other).name == "torch"
    with pytest.raises(ValueError, match="impl='numba' runs on CPU tensors only"):
        resolve("numba", other)


@pytest.mark.parametrize("impl", ["auto", "torch"])
def test_refuses_a_tensor_resized_or_cast_since_the_state_was_made(impl):
    model = network()
    rln = RLN([model[2], model[0]], impl=impl, **HYPER)
    rln.step()
    model[0].weight.data = torch.randn(8, 13)
    before = snapshot(rln, model)
    with pytest.raises(ValueError, match=r"parameter 1 has shape \(8, 13\) .* \(8, 12\)"):
        rln.step()
    assert_unchanged(before, snapshot(rln, model))  # parameter 0 was not updated either
    model[0].weight.data = torch.randn(8, 12, dtype=torch.float64)
    with pytest.raises(ValueError, match="parameter 1 is now torch.float64"):
        rln.step()


@pytest.mark.parametrize("impl", ["auto", "torch"])
def test_refuses_non_finite_weights_and_changes_nothing(impl):
    model = network()
    rln = RLN(model[0], impl=impl, **HYPER)
    rln.step()
    with torch.no_grad():
        model[0].weight[3, 4] = math.nan
    before = snapshot(rln, model)
    with pytest.raises(ValueError, match=r"RLN update of parameter 0 \(8, 12\): .*NaN or inf"):
        rln.step()
    assert torch.isnan(model[0].weight[3, 4])
    model[0].weight.data[3, 4] = 0.0
    before[0][0][3, 4] = 0.0
    assert_unchanged(before, snapshot(rln, model))


@pytest.mark.parametrize("impl", ["auto", "torch"])
def test_gradient_mode_refuses_a_missing_or_non_finite_grad_and_changes_nothing(impl):
    model = network()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    rln = RLN(model[0], mode="gradient", impl=impl, **HYPER)
    with pytest.raises(RuntimeError, match="parameter 0 has no .grad"):
        rln.step()
    fit(model, optimizer, n_steps=2, rln=rln)
    model[0].weight.grad[1, 1] = math.inf
    before = snapshot(rln, model)
    with pytest.raises(ValueError, match="lambdas are non-finite"):
        rln.step()
    assert_unchanged(before, snapshot(rln, model))
    model[0].weight.grad[1, 1] = 0.0
    rln.step()  # and it still works afterwards
    assert rln.state_dict()["states"][0]["steps"] == 3


def test_numba_path_writes_through_the_tensors_memory():
    model = network()
    rln = RLN(model[0], impl="numba", **HYPER)
    view = model[0].weight.detach().numpy()
    expected, _ = rln_core.reference.update(view.copy(), rln_core.init(view, HYPER["avg_reg"]),
                                            **HYPER)
    rln.step()
    np.testing.assert_array_equal(view, expected)


@pytest.mark.parametrize("compute_dtype, weights_dtype, match", [
    (torch.int64, torch.float32, "Invalid compute_dtype: torch.int64"),
    (torch.float16, torch.float32, "Invalid compute_dtype: torch.float16"),
    (torch.float32, torch.float64, "needs float32 weights and a float32 state"),
])
def test_torch_update_refuses_another_arithmetic_before_writing(compute_dtype, weights_dtype,
                                                                match):
    """`rln_torch.torch_update` took any compute_dtype: torch.int64 zeroed the weights."""
    from rln_torch import torch_update

    weights = torch.tensor([0.1, -0.2, 0.3], dtype=weights_dtype)
    state = rln_core.RLNState(lambdas=torch.full((3,), -10.0, dtype=weights_dtype),
                              prev_weights=weights.clone(),
                              prev_reg=torch.zeros(3, dtype=weights_dtype), steps=0)
    before = weights.clone(), state.lambdas.clone()
    with pytest.raises(TypeError, match=match):
        torch_update(weights, state, compute_dtype=compute_dtype, avg_reg=-10.0,
                     learning_rate=1e6, norm=1)
    assert torch.equal(weights, before[0]) and torch.equal(state.lambdas, before[1])
    assert state.steps == 0
