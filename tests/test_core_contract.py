"""The contract every implementation and adapter shares: Hyperparameters, the
fixed-structure state, the weight change `delta`, the one registry, the public surface."""

import re
from pathlib import Path

import numpy as np
import pytest

import rln_core
from rln_core import DEFAULTS, Hyperparameters, implementations, testing

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("kwargs, field", [
    ({"avg_reg": float("nan")}, "avg_reg"), ({"avg_reg": float("inf")}, "avg_reg"),
    ({"avg_reg": "-10"}, "avg_reg"), ({"avg_reg": True}, "avg_reg"),
    ({"learning_rate": -1.0}, "learning_rate"), ({"learning_rate": float("nan")}, "learning_rate"),
    ({"learning_rate": float("inf")}, "learning_rate"), ({"learning_rate": None}, "learning_rate"),
    ({"norm": 3}, "norm"), ({"norm": True}, "norm"), ({"norm": 1.5}, "norm"),
    # beyond float's range, complex, arrays: one rule and one message, no raw errors
    ({"avg_reg": 10 ** 400}, "avg_reg"), ({"learning_rate": 10 ** 400}, "learning_rate"),
    ({"learning_rate": -10 ** 400}, "learning_rate"), ({"avg_reg": 1 + 0j}, "avg_reg"),
    ({"norm": np.array([1, 2])}, "norm"), ({"norm": np.array([1])}, "norm"),
    ({"norm": np.array(1)}, "norm"), ({"norm": 1 + 0j}, "norm"), ({"norm": "1"}, "norm"),
    ({"learning_rate": np.array(1e6)}, "learning_rate"),
])
def test_hyperparameters_refuse_bad_values_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"Invalid {field}"):
        Hyperparameters(**kwargs)


def test_hyperparameters_say_when_a_value_is_no_number_at_all():
    hint = "got an array, ndarray: the hyperparameters are fixed Python or NumPy numbers"
    for field, value in (("learning_rate", np.array(1e6)), ("norm", np.array(1))):
        with pytest.raises(ValueError, match=f"Invalid {field}.*{hint}"):
            Hyperparameters(**{field: value})
    for value in (float("nan"), np.float64("nan"), True):  # numbers, or no array: no hint
        with pytest.raises(ValueError, match=r"expected a finite number$"):
            Hyperparameters(avg_reg=value)


def test_init_refuses_a_theta_beyond_the_state_dtype():
    weights = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"avg_reg \(Theta\) 1e\+39 does not fit a float32 state"):
        rln_core.init(weights, avg_reg=1e39, state_dtype=np.float32)
    assert np.all(rln_core.init(weights, avg_reg=1e39).lambdas == 1e39)  # float64: fits


def test_hyperparameters_store_python_numbers_and_are_frozen():
    hp = Hyperparameters(np.float32(-8.0), np.logspace(5, 6, 2)[0], np.int64(2))
    assert hp.asdict() == {"avg_reg": -8.0, "learning_rate": 1e5, "norm": 2}
    assert [type(v) for v in hp.asdict().values()] == [float, float, int]
    assert Hyperparameters.fields() == ("avg_reg", "learning_rate", "norm")
    with pytest.raises(AttributeError):
        hp.norm = 1
    assert DEFAULTS == Hyperparameters(avg_reg=-10.0, learning_rate=1e6, norm=1)  # README
    # the signature of the authors' Keras 2 callback, RLNCallback(layer, norm=1,
    # avg_reg=-7.5, learning_rate=6e5), which rln_keras.RLNCallback keeps
    assert rln_core.ORIGINAL_CALLBACK_DEFAULTS == Hyperparameters(avg_reg=-7.5,
                                                                  learning_rate=6e5, norm=1)


@pytest.mark.parametrize("impl", ["numba", "numpy", "array_api"])
def test_the_state_keeps_its_structure_and_arrays_across_updates(impl):
    w = np.random.default_rng(0).normal(0, 0.1, size=(7, 3))
    state = rln_core.init(w)
    arrays = [state.lambdas, state.prev_weights, state.prev_reg]
    for _ in range(3):
        w += 1e-3
        rln_core.update(w, state, impl=impl)
    assert [state.lambdas, state.prev_weights, state.prev_reg] == arrays  # the same objects
    assert all(a is b for a, b in zip(arrays, [state.lambdas, state.prev_weights,
                                                state.prev_reg]))
    assert state.steps == 3


def test_to_dict_returns_copies():
    w = np.linspace(-1, 1, 6)
    state = rln_core.init(w)
    saved = state.to_dict()
    rln_core.update(w, state)
    assert saved["steps"] == 0 and np.all(saved["prev_reg"] == 0)
    assert np.all(saved["lambdas"] == -10.0)
    assert not any(np.shares_memory(saved[k], getattr(state, k))
                   for k in ("lambdas", "prev_weights", "prev_reg"))


@pytest.mark.parametrize("impl", ["numba", "numpy", "array_api"])
@pytest.mark.parametrize("norm", [1, 2])
def test_a_given_delta_is_what_the_lambda_step_learns_from(impl, norm):
    """delta given == the inferred step of a state whose prev_weights were W - delta."""
    rng = np.random.default_rng(norm)
    w = rng.normal(0, 0.05, size=(9, 4))
    state = rln_core.init(w - 1e-3)
    rln_core.update(w - 1e-3, state, norm=norm)  # a first update: prev_reg is set
    delta = rng.normal(0, 1e-3, size=w.shape)
    inferred = state.copy()
    inferred.prev_weights[...] = w - delta
    expected_w, expected = rln_core.reference.update(w, inferred, norm=norm)
    delta.flags.writeable = False  # only read
    got_w = w.copy()
    rln_core.update(got_w, state, impl=impl, norm=norm, delta=delta)
    testing.assert_update_matches(f"delta {impl}", expected_w, expected, got_w, state)
    assert (state.lambdas != expected.lambdas[0, 0]).any()  # the step did something


def test_delta_on_a_first_update_is_not_read():
    w = np.linspace(-0.5, 0.5, 8)
    expected_w, _ = rln_core.reference.update(w, rln_core.init(w))
    got_w, _ = rln_core.reference.update(w, rln_core.init(w), delta=np.full(8, np.nan))
    np.testing.assert_array_equal(got_w, expected_w)


def test_delta_overlapping_the_state_is_refused():
    w = np.linspace(-0.5, 0.5, 8)
    state = rln_core.init(w)
    with pytest.raises(ValueError, match="share memory"):
        rln_core.update(w, state, delta=state.prev_reg)


def test_resolver_precedence():
    numpy_w = np.zeros(3)
    assert implementations.resolve("auto", numpy_w) == "numba"
    assert implementations.resolve("array_api", numpy_w) == "array_api"
    assert implementations.resolve("numpy", numpy_w) == "numpy"
    with pytest.raises(ValueError, match="Invalid impl"):
        implementations.resolve("cuda", numpy_w)
    torch = pytest.importorskip("torch")
    torch_w = torch.zeros(3)
    assert implementations.resolve("auto", torch_w) == "array_api"
    with pytest.raises(ValueError, match="impl='numba' updates NumPy arrays"):
        implementations.resolve("numba", torch_w)


def test_the_array_api_update_checks_like_the_reference_on_torch():
    torch = pytest.importorskip("torch")

    def on_torch(weights, state, delta=None, **kwargs):
        tensors = rln_core.RLNState(**{k: torch.from_numpy(v) for k, v in
                                       state.to_dict().items() if k != "steps"},
                                    steps=state.steps)
        delta = None if delta is None else torch.from_numpy(delta)
        rln_core.array_api.update(torch.from_numpy(weights), tensors, delta=delta, **kwargs)
    assert testing.check_rejects_bad_input(on_torch) == len(testing.ERROR_CASES)


def test_the_array_api_state_must_be_of_one_library():
    torch = pytest.importorskip("torch")
    w = torch.zeros(4, dtype=torch.float64)
    state = rln_core.RLNState(lambdas=torch.zeros(4, dtype=torch.float64), prev_weights=w.clone(),
                              prev_reg=np.zeros(4))
    with pytest.raises(TypeError, match="state.prev_reg"):
        rln_core.array_api.update(w, state)


@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_the_pure_updates_return_arrays_that_share_no_memory(library):
    """A caller that steps the returned weights in place must not move prev_weights."""
    weights, state, kwargs = testing.UpdateCase("own", (5, 4), seed=7).inputs()
    if library == "torch":
        torch = pytest.importorskip("torch")
        weights = torch.from_numpy(weights)
        state = rln_core.RLNState(**{k: torch.from_numpy(v) for k, v in
                                     state.to_dict().items() if k != "steps"}, steps=state.steps)
        pures = [rln_core.array_api.update]
    else:
        pures = [rln_core.array_api.update, rln_core.reference.update]
    for pure in pures:
        new_w, new_state = pure(weights, state, **kwargs)
        arrays = [np.asarray(a) for a in (new_w, new_state.lambdas, new_state.prev_weights,
                                          new_state.prev_reg)]
        for i, first in enumerate(arrays):
            for second in arrays[i + 1:]:
                assert not np.may_share_memory(first, second), pure.__module__


def test_no_adapter_imports_a_private_core_module():
    private = re.compile(r"\brln_core\._(?!_)\w+|from rln_core import _(?!_)\w+")
    offenders = [f"{path.relative_to(ROOT)}: {line.strip()}"
                 for path in sorted((ROOT / "adapters").rglob("*.py"))
                 for line in path.read_text().splitlines() if private.search(line)]
    assert offenders == []


def test_the_spec_in_the_repository_is_the_one_referred_to():
    spec = ROOT / "docs" / "RLN_SPEC.md"
    assert "## One update, after every optimizer step" in spec.read_text()
    stale = [str(path.relative_to(ROOT)) for folder in ("rln_core", "adapters", "tests")
             for path in (ROOT / folder).rglob("*.py")
             if path.name != "test_core_contract.py"
             and re.search(r"(?<!docs/)RLN_SPEC\.md", path.read_text())]
    assert stale == []
