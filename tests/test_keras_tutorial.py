"""examples/tutorial_keras.py runs end to end (tiny settings, a few seconds)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("keras")  # the example needs Keras and scikit-learn, both installed in CI
pytest.importorskip("sklearn")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tutorial_keras.py"


def load_example():
    spec = importlib.util.spec_from_file_location("tutorial_keras", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_tutorial_runs_every_step(capsys):
    tutorial = load_example()
    result = tutorial.main(["--epochs", "1", "--repeats", "2", "--max-layers", "2",
                            "--l1", "1e-2,1e-1", "--grid=-10:1e6,-8:1e5",
                            "--noise-features", "20"])
    out = capsys.readouterr().out
    for line in ["Network with 2 layers:", "L1 regularization of 1E-02:",
                 "RLN with Theta=-10 and learning_rate=1.0E+06:",
                 "RLN with Theta=-8 and learning_rate=1.0E+05:", "L1 regularization on this"]:
        assert line in out
    assert result["layers"] == 2 and result["l1"] in (1e-2, 1e-1)
    assert (result["theta"], result["nu"]) in [(-10.0, 1e6), (-8.0, 1e5)]
    assert np.isfinite(result["rln_mse"]) and np.isfinite(result["l1_mse"])


def test_the_tutorial_network_has_the_notebook_shape():
    tutorial = load_example()
    model, callbacks = tutorial.rln_model(1013, 4, avg_reg=-10, learning_rate=1e6)()
    # round(1013 ** (3/4)) = round(179.6) = 180
    assert [layer.units for layer in model.layers] == [180, 32, 6, 1]
    assert callbacks[0].layers == (model.layers[0],)


@pytest.mark.parametrize("argv, message", [
    (["--grid=-8,1e6"], "Theta:nu pairs"),
    (["--grid=-10:-1e6"], "Invalid learning_rate"),  # before the searches, not after them
    (["--repeats", "0"], "expected an integer >= 1"),
    (["--epochs", "x"], "expected an integer >= 1"),
    (["--max-layers", "1"], "expected an integer >= 2"),
    (["--noise-features", "-1"], "expected an integer >= 0"),
    (["--l1", "1e-3,-1"], "--l1 must be finite values >= 0"),
])
def test_bad_arguments_are_refused_before_anything_runs(argv, message, capsys):
    tutorial = load_example()
    with pytest.raises(SystemExit):
        tutorial.parse_args(argv)
    assert message in capsys.readouterr().err


def test_the_closing_verdict_is_the_paired_t_test_over_repeats():
    tutorial = load_example()
    assert "no verdict" in tutorial.closing_comparison([1.0], [1.5])
    # L1 - RLN per repeat +0.3, +0.1, +0.2: |t| 3.46, beyond 2 standard errors (the rule
    # it replaced called it a win) but inside t(0.975, 2) = 4.30
    near = tutorial.closing_comparison([1.0, 1.1, 1.2], [1.3, 1.2, 1.4])
    assert near.startswith("RLN and L1 regularization on this dataset are within noise")
    assert "|t| = 3.46 (within noise when a two-sided 95% paired t test finds no " \
           "difference, |t| < t(0.975, 2) = 4.303)" in near
    assert "RLN outperforms" in tutorial.closing_comparison([1.0, 1.1, 1.2], [1.5, 1.4, 1.6])
    assert "is outperformed by" in tutorial.closing_comparison([1.5, 1.4, 1.6], [1.0, 1.1, 1.2])


def test_repeat_i_of_rln_and_of_l1_starts_from_the_same_weights():
    """What makes the closing comparison's repeats pairs (test_model's docstring)."""
    tutorial = load_example()
    data = tutorial.load_data(False, 5)
    first_kernels = {}

    def recording(name, build_fn):
        def build():
            model, callbacks = build_fn()
            first_kernels.setdefault(name, []).append(np.array(model.layers[0].kernel.numpy()))
            return model, callbacks
        return build

    tutorial.test_model(recording("L1", tutorial.base_model(15, 2, l1=0.1)), "L1", data, 1, 2)
    tutorial.test_model(recording("RLN", tutorial.rln_model(15, 2, avg_reg=-10,
                                                            learning_rate=1e6)), "RLN", data, 1, 2)
    for l1, rln in zip(first_kernels["L1"], first_kernels["RLN"]):
        np.testing.assert_array_equal(l1, rln)
    assert not np.array_equal(*first_kernels["L1"])  # repeats differ from each other
