"""rln_torch under adversarial use (issue 11): double registration, loads that would fail
halfway, 0-d weights, NumPy-scalar hyperparameters, the core's checks on torch tensors."""

import io

import numpy as np
import pytest
import torch

import rln_core
from rln_torch import RLN, torch_update


def model_and_optimizer():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


def one_step(model, optimizer):
    optimizer.zero_grad()
    model(torch.ones(4, 5)).sum().backward()
    optimizer.step()


def test_attaching_twice_is_refused_and_remove_allows_it_again():
    model, optimizer = model_and_optimizer()
    rln = RLN(model[0])
    handle = rln.attach(optimizer)
    with pytest.raises(ValueError, match="attached to this SGD already"):
        rln.attach(optimizer)
    with pytest.raises(ValueError, match="regularized by another RLN"):
        RLN(model[0]).attach(optimizer)
    one_step(model, optimizer)
    assert rln.state_dict()["states"][0]["steps"] == 1  # one update per step, not two
    handle.remove()
    handle.remove()  # idempotent
    one_step(model, optimizer)
    assert rln.state_dict()["states"][0]["steps"] == 1
    rln.attach(optimizer)
    one_step(model, optimizer)
    assert rln.state_dict()["states"][0]["steps"] == 2


def test_tied_parameters_over_one_storage_are_refused():
    model, optimizer = model_and_optimizer()
    tied = torch.nn.Parameter(model[0].weight.data)  # a usual way to tie weights
    with pytest.raises(ValueError, match="shares memory with item 0"):
        RLN([model[0], tied])
    view = torch.nn.Parameter(model[0].weight.data[1:])
    RLN([model[2], view])  # disjoint memory: fine
    both = torch.optim.SGD([model[0].weight, tied], lr=0.1)
    RLN(model[0]).attach(both)
    with pytest.raises(ValueError, match="regularized by another RLN"):
        RLN(tied).attach(both)


@pytest.mark.parametrize("make_bad", [
    lambda t: t.to_sparse(),
    lambda t: torch.empty_like(t, device="meta"),
], ids=["sparse", "meta"])
def test_a_load_with_unusable_tensors_fails_before_writing(make_bad):
    model, optimizer = model_and_optimizer()
    rln = RLN(model[0])
    rln.attach(optimizer)
    one_step(model, optimizer)
    saved = rln.state_dict()
    broken = rln.state_dict()
    broken["states"][0]["lambdas"] = broken["states"][0]["lambdas"] + 1.0
    broken["states"][0]["prev_weights"] = make_bad(broken["states"][0]["prev_weights"])
    with pytest.raises((ValueError, TypeError), match="prev_weights"):
        rln.load_state_dict(broken)
    after = rln.state_dict()
    assert torch.equal(after["states"][0]["lambdas"], saved["states"][0]["lambdas"])


@pytest.mark.parametrize("impl", ["auto", "torch"])
@pytest.mark.parametrize("field", ["lambdas", "prev_weights", "prev_reg"])
def test_a_load_with_non_finite_values_is_refused_before_writing(field, impl):
    model, optimizer = model_and_optimizer()
    rln = RLN(model[0], impl=impl)
    rln.attach(optimizer)
    one_step(model, optimizer)
    saved = rln.state_dict()
    broken = rln.state_dict()
    broken["states"][0]["lambdas"] = broken["states"][0]["lambdas"] + 1.0
    broken["states"][0][field][0, 1] = float("nan")
    with pytest.raises(ValueError, match=rf"\['{field}'\] holds NaN or inf"):
        rln.load_state_dict(broken)
    after = rln.state_dict()
    assert torch.equal(after["states"][0]["lambdas"], saved["states"][0]["lambdas"])


@pytest.mark.parametrize("impl", ["auto", "torch"])
def test_zero_d_parameter_updates_and_checkpoints(impl):
    param = torch.nn.Parameter(torch.tensor(0.3, dtype=torch.float64))
    optimizer = torch.optim.SGD([param], lr=0.01)
    rln = RLN(param, impl=impl)
    rln.attach(optimizer)
    for _ in range(2):
        optimizer.zero_grad()
        (param * 2).backward()
        optimizer.step()
    entry = rln.state_dict()["states"][0]
    assert entry["steps"] == 2 and entry["lambdas"].shape == ()
    buffer = io.BytesIO()
    torch.save(rln.state_dict(), buffer)
    buffer.seek(0)
    RLN(param, impl=impl).load_state_dict(torch.load(buffer))


@pytest.mark.parametrize("impl", ["numpy", "torch"])
def test_a_theta_beyond_a_float32_state_is_refused_at_construction(impl):
    weight = torch.nn.Parameter(torch.ones(3, 2))
    with pytest.raises(ValueError, match="does not fit a float32 state"):
        RLN(weight, avg_reg=1e39, state_dtype=torch.float32, impl=impl)


def test_numpy_scalar_hyperparameters_save_as_python_numbers():
    model, _ = model_and_optimizer()
    rln = RLN(model[0], avg_reg=np.float64(-9.0), learning_rate=np.logspace(5, 6, 3)[1],
              norm=np.int64(1))
    buffer = io.BytesIO()
    torch.save(rln.state_dict(), buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)  # the default; NumPy scalars would fail
    assert [type(v) for v in loaded["hyperparameters"].values()] == [float, float, int, str]


@pytest.mark.parametrize("change, error, match", [
    (lambda s: setattr(s, "steps", None), ValueError, "steps"),
    (lambda s: setattr(s, "steps", -1), ValueError, "steps"),
    (lambda s: setattr(s, "steps", 1.5), ValueError, "steps"),
    (lambda s: setattr(s, "lambdas", s.lambdas.half()), TypeError, "lambdas"),
    (lambda s: setattr(s, "prev_reg", s.prev_reg.float()), TypeError, "prev_reg"),
])
def test_torch_update_checks_like_the_core_before_writing(change, error, match):
    w = torch.linspace(-1, 1, 6, dtype=torch.float64)
    state = rln_core.RLNState(lambdas=torch.full_like(w, -10.0), prev_weights=w.clone(),
                              prev_reg=torch.zeros_like(w))
    change(state)
    before = w.clone()
    with pytest.raises(error, match=match):
        torch_update(w, state, **rln_core.DEFAULTS.asdict())
    assert torch.equal(w, before)


def test_misuse_of_the_torch_adapter_is_refused_naming_the_problem():
    """Error branches no other test reached; a refused load leaves the state as it was."""
    sparse = torch.nn.Parameter(torch.eye(3).to_sparse())
    with pytest.raises(ValueError, match="has layout torch.sparse_coo; RLN needs a dense"):
        RLN(sparse)
    model, optimizer = model_and_optimizer()
    rln = RLN(model[0], mode="gradient")
    model[0].weight.grad = torch.ones_like(model[0].weight).to_sparse()
    with pytest.raises(ValueError, match="grad has layout torch.sparse_coo; mode='gradient'"):
        rln.step()
    saved = rln.state_dict()
    with pytest.raises(TypeError, match=r"\['states'\]\[0\] must be a dict, got list"):
        rln.load_state_dict({**saved, "states": [[1, 2]]})
    hyper = {**saved["hyperparameters"], "momentum": 0.9}
    with pytest.raises(ValueError, match="has keys .*'momentum'"):
        rln.load_state_dict({**saved, "hyperparameters": hyper})
    after = rln.state_dict()
    assert after["states"][0]["steps"] == 0
    assert torch.equal(after["states"][0]["lambdas"], saved["states"][0]["lambdas"])
