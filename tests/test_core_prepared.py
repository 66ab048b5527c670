"""`rln_core.PreparedUpdate` and `rln_core.fused.FusedStep`: checked once, then the same
results as the functions that check everything on every call; what they check again."""

import copy

import numpy as np
import pytest

import rln_core
from rln_core import fused, testing

HP = rln_core.Hyperparameters(avg_reg=-6.0, learning_rate=1e3, norm=1)


def _tensor(seed, shape=(37, 53), dtype=np.float32):
    rng = np.random.default_rng(seed)
    weights = (rng.standard_normal(shape) * 0.05).astype(dtype)
    weights[rng.random(shape) < 0.2] = 0
    return weights


def _changes(seed, shape, dtype, n):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(shape) * 1e-3).astype(dtype) for _ in range(n)]


def _assert_same(a_weights, a_state, b_weights, b_state):
    np.testing.assert_array_equal(a_weights, b_weights)
    for name in ("lambdas", "prev_weights", "prev_reg"):
        np.testing.assert_array_equal(getattr(a_state, name), getattr(b_state, name))
    assert a_state.steps == b_state.steps


@pytest.mark.parametrize("impl", ["auto", "numba", "numpy"])
@pytest.mark.parametrize("compute_dtype", [None, np.float32])
@pytest.mark.parametrize("with_delta", [False, True])
def test_prepared_update_equals_update(impl, compute_dtype, with_delta):
    state_dtype = np.float32 if compute_dtype else np.float64
    w_a = _tensor(0)
    w_b = w_a.copy()
    s_a = rln_core.init(w_a, avg_reg=HP.avg_reg, state_dtype=state_dtype)
    s_b = copy.deepcopy(s_a)
    prepared = rln_core.PreparedUpdate(w_b, s_b, impl=impl, compute_dtype=compute_dtype)
    for change in _changes(1, w_a.shape, w_a.dtype, 6):
        w_a += change
        w_b += change
        delta = change if with_delta else None
        rln_core.update(w_a, s_a, impl=impl, compute_dtype=compute_dtype, delta=delta,
                        **HP.asdict())
        assert prepared(HP, delta) is s_b
        _assert_same(w_a, s_a, w_b, s_b)


def test_prepared_update_checks_a_replaced_state_array():
    weights = _tensor(2)
    state = rln_core.init(weights, avg_reg=HP.avg_reg)
    prepared = rln_core.PreparedUpdate(weights, state)
    prepared(HP)
    good = state.lambdas
    state.lambdas = np.zeros((3, 3))
    with pytest.raises(ValueError, match="shape"):
        prepared(HP)
    state.lambdas = good.copy()  # another array, valid: used from now on
    reference_w, reference_state = weights.copy(), copy.deepcopy(state)
    rln_core.update(reference_w, reference_state, **HP.asdict())
    prepared(HP)
    _assert_same(reference_w, reference_state, weights, state)


def test_prepared_update_refuses_loose_hyperparameters():
    weights = _tensor(3)
    prepared = rln_core.PreparedUpdate(weights, rln_core.init(weights))
    with pytest.raises(TypeError, match="Hyperparameters"):
        prepared(HP.asdict())


def test_prepared_update_checks_delta_every_call():
    weights = _tensor(4)
    state = rln_core.init(weights)
    prepared = rln_core.PreparedUpdate(weights, state)
    prepared(HP)
    before_w, before = weights.copy(), copy.deepcopy(state)
    with pytest.raises(ValueError, match="share memory"):
        prepared(HP, weights)
    with pytest.raises(ValueError, match="delta has shape"):
        prepared(HP, np.zeros(3, np.float32))
    _assert_same(before_w, before, weights, state)


def _rmsprop_run(prepared_step, seed=5, n=5, lr_schedule=(1e-3,)):
    weights = _tensor(seed)
    state = rln_core.init(weights, avg_reg=HP.avg_reg)
    square_avg = np.zeros_like(weights)
    runner = fused.FusedStep(weights, state) if prepared_step else None
    for step, grad in enumerate(_changes(seed + 1, weights.shape, weights.dtype, n)):
        lr = lr_schedule[step % len(lr_schedule)]
        if runner is None:
            fused.rmsprop_step(weights, grad, state, square_avg=square_avg, lr=lr,
                               **HP.asdict())
        else:
            runner.rmsprop(grad, HP, square_avg=square_avg, lr=lr)
    return weights, state, square_avg


@pytest.mark.parametrize("lr_schedule", [(1e-3,), (1e-3, 3e-3, 5e-4)])
def test_fused_step_equals_the_fused_functions(lr_schedule):
    w_a, s_a, sq_a = _rmsprop_run(False, lr_schedule=lr_schedule)
    w_b, s_b, sq_b = _rmsprop_run(True, lr_schedule=lr_schedule)
    _assert_same(w_a, s_a, w_b, s_b)
    np.testing.assert_array_equal(sq_a, sq_b)


@pytest.mark.parametrize("method, settings, buffers", [
    ("adam", {"betas": (0.8, 0.99), "amsgrad": True, "weight_decay": 0.01,
              "decoupled_weight_decay": True}, ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")),
    ("sgd", {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01}, ("momentum_buffer",)),
], ids=["adam", "sgd"])
@pytest.mark.parametrize("compute_dtype", [None, np.float32])
def test_the_adam_and_sgd_functions_equal_fused_step(method, settings, buffers, compute_dtype):
    runs = []
    for use_function in (True, False):
        weights = _tensor(9)
        state = rln_core.init(weights, avg_reg=HP.avg_reg,
                              state_dtype=np.float32 if compute_dtype else np.float64)
        arrays = {name: np.zeros_like(weights) for name in buffers}
        runner = fused.FusedStep(weights, state, compute_dtype)
        for step, grad in enumerate(_changes(10, weights.shape, weights.dtype, 5)):
            per_step = dict(settings, lr=1e-3, **arrays)
            per_step.update({"step": step + 1} if method == "adam" else
                            {"first_momentum": step == 0})
            if use_function:
                getattr(fused, f"{method}_step")(weights, grad, state, **per_step,
                                                 compute_dtype=compute_dtype, **HP.asdict())
            else:
                getattr(runner, method)(grad, HP, **per_step)
        runs.append((weights, state, arrays))
    (w_a, s_a, arrays_a), (w_b, s_b, arrays_b) = runs
    _assert_same(w_a, s_a, w_b, s_b)
    for name in buffers:
        np.testing.assert_array_equal(arrays_a[name], arrays_b[name])
        assert np.any(arrays_a[name] != 0), name
    assert s_a.steps == 5 and not np.array_equal(w_a, _tensor(9))


BAD_SETTINGS = [
    ("rmsprop", {"lr": -1e-3}, ValueError, "RMSprop: invalid lr -0.001"),
    ("rmsprop", {"lr": float("nan")}, ValueError, "RMSprop: invalid lr nan"),
    ("rmsprop", {"lr": "fast"}, TypeError, "RMSprop: lr must be a real number"),
    ("rmsprop", {"eps": -1.0}, ValueError, "RMSprop: invalid eps"),
    ("rmsprop", {"alpha": -0.1}, ValueError, "RMSprop: invalid alpha"),
    ("rmsprop", {"momentum": -0.5}, ValueError, "RMSprop: invalid momentum"),
    ("rmsprop", {"weight_decay": -0.01}, ValueError, "RMSprop: invalid weight_decay"),
    ("adam", {"step": 0}, ValueError, "Adam: step must be an integer >= 1"),
    ("adam", {"step": 1.5}, ValueError, "Adam: step must be an integer >= 1"),
    ("adam", {"step": "2"}, TypeError, "Adam: step must be an integer >= 1"),
    ("adam", {"betas": (1.0, 0.999)}, ValueError, "invalid beta parameter at index 0"),
    ("adam", {"betas": (0.9, -0.1)}, ValueError, "Adam: invalid beta2"),
    ("adam", {"betas": 0.9}, TypeError, "betas must be a pair"),
    ("adam", {"lr": -1e-3}, ValueError, "Adam: invalid lr"),
    ("sgd", {"lr": -1e-3}, ValueError, "SGD: invalid lr"),
    ("sgd", {"momentum": -0.9}, ValueError, "SGD: invalid momentum"),
    ("sgd", {"nesterov": True}, ValueError, "Nesterov momentum requires a momentum"),
    ("sgd", {"nesterov": True, "momentum": 0.9, "dampening": 0.1}, ValueError, "Nesterov"),
    ("sgd", {"dampening": float("inf")}, ValueError, "SGD: invalid dampening"),
    ("sgd", {"lr": "0.1"}, TypeError, "SGD: lr must be a real number"),  # torch refuses it too
]


@pytest.mark.parametrize("method, setting, error, match", BAD_SETTINGS)
def test_optimizer_settings_torch_refuses_are_refused_before_anything_moves(method, setting,
                                                                             error, match):
    """As torch.optim checks them when it is made (lr, eps, weight_decay, momentum, alpha
    >= 0; betas in [0, 1); Nesterov needs momentum and no dampening), finite, Adam's step
    an integer >= 1 (step 0 was a ZeroDivisionError, a negative lr a step uphill)."""
    weights = _tensor(31)
    state = rln_core.init(weights, avg_reg=HP.avg_reg)
    buffers = {"rmsprop": ("square_avg",), "adam": ("exp_avg", "exp_avg_sq"),
               "sgd": ("momentum_buffer",)}[method]
    arrays = {name: np.full_like(weights, 0.5) for name in buffers}
    settings = dict({"lr": 1e-3}, **({"step": 1} if method == "adam" else {}))
    if method == "sgd" and "momentum" not in setting:
        arrays = {"momentum_buffer": None}
    settings.update(setting)
    grad = _changes(32, weights.shape, weights.dtype, 1)[0]
    before = (weights.copy(), state.copy(), {k: None if v is None else v.copy()
                                               for k, v in arrays.items()})
    with pytest.raises(error, match=match):
        getattr(fused.FusedStep(weights, state), method)(grad, HP, **settings, **arrays)
    _assert_same(weights, state, before[0], before[1])
    for name, value in arrays.items():
        if value is not None:
            np.testing.assert_array_equal(value, before[2][name])
    with pytest.raises(error, match=match):  # the same check, public, for adapters
        fused.check_settings(method, **settings)


def test_a_string_setting_is_refused_after_the_same_number_passed():
    """The numbers are remade only when the settings' values change; a string that float()
    reads as the last call's value must not pass as that value."""
    weights = _tensor(42)
    state = rln_core.init(weights, avg_reg=HP.avg_reg)
    square_avg = np.zeros_like(weights)
    runner = fused.FusedStep(weights, state)
    grad = _changes(43, weights.shape, weights.dtype, 1)[0]
    runner.rmsprop(grad, HP, square_avg=square_avg, lr=0.001)
    before = weights.copy()
    with pytest.raises(TypeError, match="RMSprop: lr must be a real number, got '0.001'"):
        runner.rmsprop(grad, HP, square_avg=square_avg, lr="0.001")
    np.testing.assert_array_equal(weights, before)


def test_adam_takes_betas_as_any_pair_an_iterator_too():
    results = []
    for betas in ((0.8, 0.99), iter((0.8, 0.99)), np.array([0.8, 0.99])):
        weights = _tensor(40)
        state = rln_core.init(weights, avg_reg=HP.avg_reg)
        exp_avg, exp_avg_sq = np.zeros_like(weights), np.zeros_like(weights)
        grad = _changes(41, weights.shape, weights.dtype, 1)[0]
        fused.FusedStep(weights, state).adam(grad, HP, exp_avg=exp_avg, exp_avg_sq=exp_avg_sq,
                                             step=1, lr=1e-3, betas=betas)
        results.append(weights)
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])


def test_check_settings_passes_what_the_fused_step_takes_and_names_the_optimizer():
    fused.check_settings("rmsprop", lr=1e-3, alpha=0.9, eps=1e-8, weight_decay=0.0,
                         momentum=0.9, centered=True, maximize=False)
    fused.check_settings("adam", step=np.float32(3.0), lr=np.array(1e-3), betas=(0.0, 0.5))
    fused.check_settings("sgd", lr=0.1, momentum=0.9, nesterov=True, first_momentum=True)
    fused.check_settings("sgd", lr=0.1, dampening=-0.5)  # torch allows any dampening
    with pytest.raises(ValueError, match=r"one of \('rmsprop', 'adam', 'sgd'\), got 'adagrad'"):
        fused.check_settings("adagrad", lr=1e-3)


def test_fused_step_checks_new_optimizer_arrays_and_every_gradient():
    weights = _tensor(6)
    state = rln_core.init(weights)
    square_avg = np.zeros_like(weights)
    runner = fused.FusedStep(weights, state)
    grad = np.full_like(weights, 1e-3)
    runner.rmsprop(grad, HP, square_avg=square_avg, lr=1e-3)
    read_only = np.zeros_like(weights)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="square_avg is read-only"):
        runner.rmsprop(grad, HP, square_avg=read_only, lr=1e-3)
    with pytest.raises(ValueError, match="grad shares memory"):
        runner.rmsprop(square_avg, HP, square_avg=square_avg, lr=1e-3)
    momentum = np.zeros_like(weights)
    with pytest.raises(ValueError, match="square_avg shares memory"):
        runner.rmsprop(grad, HP, square_avg=momentum, momentum_buffer=momentum, lr=1e-3,
                       momentum=0.9)
    with pytest.raises(ValueError, match="grad has shape"):
        runner.rmsprop(grad[:1], HP, square_avg=square_avg, lr=1e-3)
    with pytest.raises(ValueError, match="momentum_buffer is required"):
        runner.rmsprop(grad, HP, square_avg=square_avg, lr=1e-3, momentum=0.9)
    with pytest.raises(TypeError, match="Hyperparameters"):
        runner.rmsprop(grad, HP.asdict(), square_avg=square_avg, lr=1e-3)
    before = weights.copy()
    runner.rmsprop(grad, HP, square_avg=square_avg, lr=1e-3)  # still works after refusals
    assert not np.array_equal(before, weights)


def test_fused_step_checks_a_replaced_state():
    weights = _tensor(7)
    state = rln_core.init(weights, state_dtype=np.float32)
    runner = fused.FusedStep(weights, state)
    square_avg = np.zeros_like(weights)
    grad = np.full_like(weights, 1e-3)
    runner.rmsprop(grad, HP, square_avg=square_avg, lr=1e-3)
    state.prev_reg = weights  # the weights' own memory: refused before anything is written
    before = weights.copy()
    with pytest.raises(ValueError, match="share memory"):
        runner.rmsprop(grad, HP, square_avg=square_avg, lr=1e-3)
    np.testing.assert_array_equal(before, weights)


def _in_three_chunks(monkeypatch):
    """Run the kernel on 3 chunks (threads) from 1000 elements on; returns the list that
    records every split: (the views' 2-D shape, the number of chunks)."""
    import numba

    from rln_core import _numba_kernel

    monkeypatch.setattr(_numba_kernel, "PARALLEL_MIN_ELEMENTS", 1000)
    monkeypatch.setattr(_numba_kernel, "ELEMENTS_PER_CHUNK_MIN", 300)
    monkeypatch.setattr(numba, "get_num_threads", lambda: 3)
    splits = []
    chunks = _numba_kernel._chunks
    monkeypatch.setattr(_numba_kernel, "_chunks",
                        lambda views, n: splits.append((views[0].shape, n)) or chunks(views, n))
    return splits


@pytest.mark.parametrize("compute_dtype", [None, np.float32])
def test_fused_step_in_chunks_matches_one_chunk(monkeypatch, compute_dtype):
    """Large tensors run the fused passes on chunks in the thread pool: the same step,
    up to the order of the mean's sum."""
    from rln_core import _numba_kernel

    state_dtype = np.float32 if compute_dtype else np.float64
    runs = []
    for chunked in (False, True):
        if chunked:
            _in_three_chunks(monkeypatch)
            assert _numba_kernel.chunk_count(37 * 53) == 3
        weights = _tensor(8)
        state = rln_core.init(weights, avg_reg=HP.avg_reg, state_dtype=state_dtype)
        square_avg = np.zeros_like(weights)
        runner = fused.FusedStep(weights, state, compute_dtype)
        for grad in _changes(9, weights.shape, weights.dtype, 4):
            runner.rmsprop(grad, HP, square_avg=square_avg, lr=1e-3)
        runner.rmsprop(grad, HP, square_avg=square_avg, lr=1e-3, regularize=False)
        runs.append((weights, state, square_avg))
    (w_a, s_a, sq_a), (w_b, s_b, sq_b) = runs
    np.testing.assert_array_equal(sq_a, sq_b)
    np.testing.assert_allclose(s_b.lambdas, s_a.lambdas, rtol=1e-6 if compute_dtype else 1e-12)
    np.testing.assert_allclose(w_b, w_a, rtol=1e-5, atol=1e-12)
    np.testing.assert_array_equal(w_a == 0, w_b == 0)
    assert s_a.steps == s_b.steps == 4


@pytest.mark.parametrize("layout", ["contiguous", "rows of a wider array"])
def test_the_kernel_in_chunks_is_the_reference(monkeypatch, layout):
    """Large tensors are split into chunks for the thread pool: a contiguous one (walked as
    one row) by columns, a view whose rows are apart in memory by rows. Every element is
    updated once, as the reference updates it."""
    splits = _in_three_chunks(monkeypatch)
    values, state = testing.UpdateCase("chunks", (60, 40), dtype="float64", seed=5).make()
    if layout == "contiguous":
        weights = values
    else:
        weights = np.zeros((60, 80))[:, :40]  # rows 80 elements apart
        weights[...] = values
    expected_w, expected = rln_core.reference.update(weights.copy(), state.copy(), **HP.asdict())
    rln_core.update(weights, state, impl="numba", **HP.asdict())
    testing.assert_update_matches(layout, expected_w, expected, weights, state)
    walked = (1, 2400) if layout == "contiguous" else (60, 40)
    assert splits == [(walked, 3)] * 2  # both passes


def test_prepared_update_takes_numbas_thread_count_at_each_call(monkeypatch):
    weights = _tensor(10)
    state = rln_core.init(weights)
    prepared = rln_core.PreparedUpdate(weights, state, impl="numba")  # made on one chunk
    splits = _in_three_chunks(monkeypatch)
    prepared(HP)
    assert splits and {n for _, n in splits} == {3}


def test_prepared_and_fused_steps_check_steps_every_call():
    weights = _tensor(11)
    state = rln_core.init(weights)
    prepared = rln_core.PreparedUpdate(weights, state)
    runner = fused.FusedStep(weights, state)
    square_avg = np.zeros_like(weights)
    grad = np.full_like(weights, 1e-3)
    prepared(HP)
    runner.rmsprop(grad, HP, square_avg=square_avg, lr=1e-3)
    before_w, before = weights.copy(), copy.deepcopy(state)
    for bad in (-1, 2.5):
        state.steps = bad
        with pytest.raises(ValueError, match="steps"):
            prepared(HP)
        with pytest.raises(ValueError, match="steps"):
            runner.rmsprop(grad, HP, square_avg=square_avg, lr=1e-3)
    state.steps = before.steps
    _assert_same(before_w, before, weights, state)


def test_fused_step_reads_a_learning_rate_changed_in_place():
    lr = np.array(1e-3)
    runs = []
    for in_place in (False, True):
        weights = _tensor(12)
        state = rln_core.init(weights, avg_reg=HP.avg_reg)
        square_avg = np.zeros_like(weights)
        runner = fused.FusedStep(weights, state)
        for step, grad in enumerate(_changes(13, weights.shape, weights.dtype, 3)):
            value = 1e-3 * (step + 1)
            if in_place:
                lr[...] = value
                runner.rmsprop(grad, HP, square_avg=square_avg, lr=lr)
            else:
                runner.rmsprop(grad, HP, square_avg=square_avg, lr=value)
        runs.append((weights, state))
    _assert_same(*runs[0], *runs[1])
