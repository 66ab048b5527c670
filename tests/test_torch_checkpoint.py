"""RLN.state_dict / load_state_dict: exact resume, and refused loads that change nothing."""

import io

import pytest
import torch

from rln_torch import RLN

HYPER = {"avg_reg": -5.0, "learning_rate": 1e6}


def build(impl, mode, seed):
    """Model, optimizer (with state of its own: Adam) and RLN; `seed` sets the init."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(10, 6), torch.nn.ReLU(), torch.nn.Linear(6, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    rln = RLN(model[0], impl=impl, mode=mode, **HYPER)
    rln.attach(optimizer)
    return model, optimizer, rln


def train(model, optimizer, steps):
    """Steps `steps` of a fixed data order: batch t is the same in every run."""
    for t in steps:
        x = torch.randn(16, 10, generator=torch.Generator().manual_seed(t))
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), x[:, :2].sum(1, keepdim=True)).backward()
        optimizer.step()


@pytest.mark.parametrize("impl, mode", [("auto", "delta"), ("torch", "delta"),
                                        ("auto", "gradient")])
def test_resume_after_50_steps_equals_100_steps_bit_for_bit(impl, mode):
    straight = build(impl, mode, seed=0)
    train(*straight[:2], range(100))

    first = build(impl, mode, seed=0)
    train(*first[:2], range(50))
    buffer = io.BytesIO()
    torch.save({name: part.state_dict() for name, part in zip("mor", first)}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)  # plain tensors and Python scalars
    resumed = build(impl, mode, seed=1)  # another init: everything must come from the file
    for part, name in zip(resumed, "mor"):
        part.load_state_dict(saved[name])
    train(*resumed[:2], range(50, 100))

    (model_a, _, rln_a), (model_b, _, rln_b) = straight, resumed
    assert rln_a.sparsity() > 0
    for a, b in zip(model_a.parameters(), model_b.parameters()):
        assert torch.equal(a, b)
    assert torch.equal(rln_a.lambdas, rln_b.lambdas)
    assert rln_a.state_dict()["states"][0]["steps"] == rln_b.state_dict()["states"][0]["steps"]


def test_a_checkpoint_moves_between_implementations():
    model, optimizer, rln = build("auto", "delta", seed=0)
    train(model, optimizer, range(5))
    other = RLN(model[0], impl="torch", state_dtype=torch.float64)
    other.load_state_dict(rln.state_dict())
    assert torch.equal(other.lambdas, rln.lambdas)
    assert other.state_dict()["states"][0]["steps"] == 5


def test_load_restores_the_hyperparameters():
    model, optimizer, rln = build("auto", "gradient", seed=0)
    fresh = RLN(model[0], norm=2, avg_reg=-3.0, learning_rate=1.0)
    fresh.load_state_dict(rln.state_dict())
    assert (fresh.norm, fresh.avg_reg, fresh.learning_rate, fresh.mode) == \
        (1, HYPER["avg_reg"], HYPER["learning_rate"], "gradient")


def corrupt(state_dict, change):
    """A deep-enough copy of `state_dict` with `change(copy)` applied."""
    copy = {"hyperparameters": dict(state_dict["hyperparameters"]),
            "states": [dict(entry) for entry in state_dict["states"]]}
    change(copy)
    return copy


def _set(path, value):
    def change(copy):
        *parents, key = path
        target = copy
        for parent in parents:
            target = target[parent]
        target[key] = value(target[key]) if callable(value) else value
    return change


@pytest.mark.parametrize("change, error, match", [
    (_set(("states", 0, "lambdas"), lambda t: torch.zeros(6, 11, dtype=t.dtype)), ValueError,
     r"\['lambdas'\] has shape \(6, 11\) but this RLN's tensor has shape \(6, 10\)"),
    (_set(("states", 0, "prev_weights"), lambda t: t.double()), TypeError,
     r"\['prev_weights'\] has dtype float64, expected float32"),
    (_set(("states", 0, "prev_reg"), lambda t: t.float()), TypeError, "prev_reg"),
    (_set(("states", 0, "steps"), -1), ValueError, "must be an int >= 0"),
    (_set(("states", 0, "lambdas"), lambda t: t.numpy()), TypeError, "must be a tensor"),
    (_set(("states",), lambda s: s * 2), ValueError, "must list 1 states, .* got 2"),
    (_set(("states",), lambda s: [{k: v for k, v in s[0].items() if k != "prev_reg"}]),
     ValueError, "steps=3 but no prev_reg"),
    (_set(("hyperparameters", "norm"), 3), ValueError, "Invalid norm"),
    (_set(("hyperparameters", "mode"), "grad"), ValueError, "Invalid mode"),
    (lambda copy: copy.pop("states"), ValueError, "exactly the keys"),
])
def test_refuses_a_state_dict_that_does_not_fit_and_changes_nothing(change, error, match):
    model, optimizer, rln = build("auto", "delta", seed=0)
    train(model, optimizer, range(3))
    other, other_optimizer, target = build("auto", "delta", seed=1)
    train(other, other_optimizer, range(2))
    before = target.state_dict()
    with pytest.raises(error, match=match):
        target.load_state_dict(corrupt(rln.state_dict(), change))
    after = target.state_dict()
    assert before["hyperparameters"] == after["hyperparameters"]
    assert before["states"][0]["steps"] == after["states"][0]["steps"] == 2
    for key in ("lambdas", "prev_weights", "prev_reg"):
        assert torch.equal(before["states"][0][key], after["states"][0][key])


def test_refuses_a_state_dict_for_another_layer():
    torch.manual_seed(0)
    small, large = torch.nn.Linear(4, 3), torch.nn.Linear(5, 3)
    target = RLN(large)
    lambdas = target.lambdas.clone()
    with pytest.raises(ValueError, match=r"shape \(3, 4\) but this RLN's tensor has shape"):
        target.load_state_dict(RLN(small).state_dict())
    assert torch.equal(target.lambdas, lambdas)


@pytest.mark.parametrize("impl", ["auto", "torch"])
def test_a_state_dict_is_a_copy_that_later_steps_leave_alone(impl):
    """A state_dict kept as "the best so far" must not move with training."""
    model, optimizer, rln = build(impl, "delta", seed=3)
    train(model, optimizer, range(3))
    saved = rln.state_dict()
    kept = {key: value.clone() for key, value in saved["states"][0].items()
            if isinstance(value, torch.Tensor)}
    train(model, optimizer, range(3, 6))
    assert not torch.equal(rln.state_dict()["states"][0]["lambdas"], kept["lambdas"])
    for key, value in kept.items():
        assert torch.equal(saved["states"][0][key], value), key


def test_a_refused_load_keeps_the_hyperparameters_and_the_mode():
    """load_state_dict checks the states before it sets anything."""
    torch.manual_seed(0)
    rln = RLN(torch.nn.Linear(5, 3), norm=1, avg_reg=-8.0, learning_rate=1e5, mode="delta")
    other = RLN(torch.nn.Linear(5, 3), norm=2, avg_reg=-3.0, learning_rate=7.0, mode="gradient")
    state_dict = other.state_dict()
    state_dict["states"][0]["lambdas"] = torch.zeros(4, 4, dtype=torch.float64)  # another shape
    before = (rln.norm, rln.avg_reg, rln.learning_rate, rln.mode)
    lambdas = rln.lambdas.clone()
    with pytest.raises(ValueError, match="shape"):
        rln.load_state_dict(state_dict)
    assert (rln.norm, rln.avg_reg, rln.learning_rate, rln.mode) == before
    assert torch.equal(rln.lambdas, lambdas)
