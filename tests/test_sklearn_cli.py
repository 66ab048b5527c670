"""`rln demo`, run in-process with tiny settings, and its refusals (all before any training)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes

import rln_sklearn.cli as cli
from rln_sklearn.cli import main

TINY = ["--repeats", "1", "--epochs", "2", "--noise-features", "15", "--no-progress"]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def no_training(monkeypatch):
    """run_demo replaced by one that records its settings and stops: for argument checks."""
    calls = []

    def run_demo(X, y, names, settings, progress=True):
        calls.append(settings)
        raise SystemExit(99)

    monkeypatch.setattr(cli, "run_demo", run_demo)
    return calls


def test_default_demo_is_boston(tmp_path, capsys):
    argv = ["demo", *TINY, "--out", str(tmp_path), "--json", str(tmp_path / "r.json")]
    argv.remove("--no-progress")
    assert main(argv) == 0
    captured = capsys.readouterr()
    for text in ("Boston housing: 506 rows, 12 real inputs + 15 noise inputs", "test MSE",
                 "predict the mean", "plain network", "best L1", "RLN", "gradient boosting",
                 "importance on the 12 real inputs", "1/27 per input",
                 "share of the first layer's sum |w|", "the tutorial: 100 epochs, 10 repeats",
                 "paired by repeat", "Results vary with the seed and the machine"):
        assert text in captured.out
    figure = tmp_path / "rln_demo.png"
    assert f"figure: {figure}" in captured.out
    assert figure.read_bytes()[:8] == PNG
    assert "rln demo" in captured.err and "6/6" in captured.err  # the progress bar
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["data"] == "Boston housing"
    assert results["settings"]["avg_reg"] == -10.0 and results["settings"]["epochs"] == 2
    assert results["table"]["feature_names"][-1] == "lstat"
    assert set(results["methods"]) == {"plain", "l1", "rln", "hgb"}
    for method, entry in results["methods"].items():
        assert np.isfinite(entry["mse_mean"]) and entry["mse_std"] >= 0
        assert len(entry["mse"]) == 1 and entry["fit_s"] > 0
        if method == "hgb":
            assert entry["sparsity"] is None and entry["importance_on_real_inputs"] is None
        else:
            assert 0 <= entry["sparsity"] <= 1 and 0 < entry["importance_on_real_inputs"] <= 1
    assert results["methods"]["l1"]["l1_chosen"][0] in results["settings"]["l1_grid"]


def test_classification_demo(tmp_path, capsys):
    assert main(["demo", *TINY, "--data", "breast_cancer", "--noise-features", "0",
                 "--out", str(tmp_path), "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "test log-loss" in out and "accuracy" in out and "class frequencies" in out
    assert "importance on the" not in out  # no noise inputs: no real-vs-noise column
    methods = json.loads((tmp_path / "r.json").read_text())["methods"]
    assert 0 <= methods["rln"]["accuracy_mean"] <= 1 and methods["hgb"]["log_loss_mean"] > 0
    assert (tmp_path / "rln_demo.png").read_bytes()[:8] == PNG


def test_demo_on_a_csv(tmp_path, capsys):
    data = load_diabetes(as_frame=True).frame.iloc[:120, [0, 2, 3, -1]]
    data["bmi"] *= 1e200  # huge but finite inputs: the estimators scale them
    path = tmp_path / "table.csv"
    data.to_csv(path, index=False)
    assert main(["demo", *TINY, "--csv", str(path), "--target", "target",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "importance on the 3 real inputs" in out and "nan" not in out


def test_csv_classification_with_text_labels(tmp_path, capsys, no_training):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=40), "b": rng.normal(size=40),
                          "kind": ["cat", "dog"] * 20})
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--csv", str(path), "--target", "kind", "--classification",
              "--out", str(tmp_path)])
    assert exit_info.value.code == 99
    assert no_training[0].classification


def test_full_and_defaults(tmp_path, no_training):
    for argv in (["demo"], ["demo", "--full"], ["demo", "--full", "--epochs", "7"]):
        with pytest.raises(SystemExit):
            main([*argv, "--out", str(tmp_path)])
    default, full, mixed = no_training
    assert (default.epochs, default.repeats, default.data) == (30, 3, "Boston housing")
    assert (default.avg_reg, default.learning_rate, default.batch_size) == (-10.0, 1e6, 10)
    assert (full.epochs, full.repeats) == (100, 10)
    assert (mixed.epochs, mixed.repeats) == (7, 10)


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("rln 0.")


def test_the_console_script_runs_the_cli_and_names_the_missing_extra():
    # a plain `pip install rln` has no scikit-learn or scipy: the `rln` command said so
    # with a traceback (ModuleNotFoundError: scipy), even for --version
    root = Path(__file__).resolve().parents[1]
    assert 'rln = "rln_sklearn._command:main"' in (root / "pyproject.toml").read_text()
    code = ("import sys; {hide}from rln_sklearn._command import main; "
            "sys.exit(main(['--version']))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(root / "adapters")])}
    run = [subprocess.run([sys.executable, "-c", code.format(hide=hide)], capture_output=True,
                          text=True, env=env)
           for hide in ("", "sys.modules['scipy'] = None; ")]
    assert run[0].returncode == 0 and run[0].stdout.startswith("rln 0.")
    assert run[1].returncode == 1 and "pip install 'rln[sklearn]'" in run[1].stderr
    assert "missing: scipy" in run[1].stderr


@pytest.mark.parametrize("argv, message", [
    (["--learning-rate", "nan"], "Invalid learning_rate (nu): nan"),
    (["--learning-rate", "-1"], "Invalid learning_rate (nu): -1.0"),
    (["--avg-reg", "inf"], "Invalid avg_reg (Theta): inf"),
    (["--learning-rate", "abc"], "expected a number, got 'abc'"),
    (["--epochs", "abc"], "argument --epochs: expected an int >= 1, got 'abc'"),
    (["--epochs", "0"], "expected an int >= 1, got 0"),
    (["--seed", "-1"], "expected an int >= 0, got -1"),
    (["--seed", str(2**32 - 2)], "Invalid seed"),
    (["--noise-features", str(10**9)], "expected an int from 0 to 10000"),
    # Every repeat's table and networks stay in memory: 1000 repeats are about 12 GiB.
    (["--repeats", "1000"], "would hold about 12.4 GiB"),
    (["--data", "iris"], "invalid choice: 'iris'"),
    (["--classification"], "--classification is for a --csv target"),
])
def test_bad_arguments(tmp_path, capsys, no_training, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", *argv, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not no_training


def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    out = capsys.readouterr().out
    for option in ("--data", "--csv", "--target", "--classification", "--noise-features",
                   "--full", "--repeats", "--epochs", "--backend", "--avg-reg",
                   "--learning-rate", "--seed", "--jobs", "--out", "--json", "--no-progress"):
        assert option in out


ROWS = 30


def _frame(**columns):
    rng = np.random.default_rng(0)
    base = {"a": rng.normal(size=ROWS), "y": rng.normal(size=ROWS)}
    return pd.DataFrame({**base, **columns})


@pytest.mark.parametrize("frame, argv, message", [
    (_frame(), ["--target", "price"], "--target 'price' is not a column"),
    (_frame(a=["x", "y"] * 15), ["--target", "y"], "not numeric: ['a']"),
    (_frame(a=[np.nan] + [1.0] * 29), ["--target", "y"], "missing values: ['a']"),
    (_frame(), [], "--csv and --target go together"),
    (_frame(a=[np.inf] + [1.0] * 29), ["--target", "y"], "inf values: ['a']"),
    (_frame(y=[1e200] * 30), ["--target", "y"], "squared errors would overflow"),
    (_frame(y=[1e90] * 30), ["--target", "y"], "squared errors would overflow"),
    (_frame().iloc[:1], ["--target", "y"], "needs at least 10"),
    (_frame()[["y"]], ["--target", "y"], "no input column besides --target 'y'"),
    (_frame(k=[0] * 29 + [1]), ["--target", "k", "--classification"],
     "classes are too small"),
    # (the split of seed 0 keeps both classes in every part, repeat 1's does not: every
    # repeat's seed is checked before anything trains)
    (pd.DataFrame({"a": np.arange(12.0), "k": [0] * 10 + [1] * 2}),
     ["--target", "k", "--classification"], "classes are too small"),
    (_frame(k=[0.5, 1.5] * 15), ["--target", "k", "--classification"],
     "--classification needs class labels (integers or strings); the target is continuous"),
    (_frame().iloc[:0], ["--target", "y"], "has a header but no rows"),
    (_frame(), ["--target", "y", "--data", "boston"], "--data and --csv are alternatives"),
])
def test_csv_errors(tmp_path, capsys, no_training, frame, argv, message):
    path = tmp_path / "table.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--csv", str(path), *argv, "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.startswith("usage: rln demo")  # the subcommand's usage, not rln's
    assert not no_training


def test_out_errors(tmp_path, capsys, no_training):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "rln_demo.png").mkdir()
    cases = [
        (["--out", str(a_file)], "exists and is not a folder"),
        (["--out", str(a_file / "below")], "cannot create the --out folder"),
        (["--out", "/proc/no/such/folder"], "cannot create the --out folder"),
        (["--out", "/proc/self"], "cannot write in the --out folder"),
        (["--out", str(tmp_path / "taken")], "rln_demo.png' exists and is not a file"),
        (["--out", str(tmp_path), "--json", str(tmp_path)], "--json"),
        (["--out", str(tmp_path), "--json", str(a_file / "r.json")], "cannot write --json"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            main(["demo", *argv])
        assert exit_info.value.code == 2, argv
        assert message in capsys.readouterr().err, argv
    assert not no_training
    assert a_file.read_text() == "x"


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out


def _scores(rln, l1, hgb):
    """A DemoResult holding only the paired comparisons' test MSEs, one per repeat."""
    from rln_sklearn._demo import HGB, L1, RLN, DemoResult, MethodScores

    scores = {RLN: MethodScores(metrics={"mse": rln}), HGB: MethodScores(metrics={"mse": hgb}),
              L1: MethodScores(metrics={"mse": l1}, chosen=[0.1] * len(l1))}
    return DemoResult(scores, [], ["x"], np.array([True, False]), 100, 1.0)


def test_paired_comparison_says_when_it_is_noise():
    from rln_sklearn._demo import HGB, L1, DemoSettings, footer, paired

    # RLN - best L1 per repeat -3, -1, -2: |t| 3.46, beyond 2 standard errors (the earlier
    # rule said "RLN better") but inside t(0.975, 2) = 4.30; RLN - boosting +4, +5, +6
    result = _scores([7.0, 9.0, 8.0], [10.0, 10.0, 10.0], [3.0, 4.0, 2.0])
    near = paired(result, L1, "mse")
    assert near.sentence("MSE") == "RLN - best L1 MSE -2 +- 0.82, RLN lower in 3 of 3: within noise"
    assert paired(result, HGB, "mse").sentence("MSE").endswith(": gradient boosting better")
    text = " ".join(line.strip() for line in footer(result, DemoSettings()))
    assert ("paired by repeat (same noise and split; within noise = a two-sided 95% paired t "
            "test finds no difference, |t| < t(0.975, 2) = 4.303): RLN - best L1") in text
    clear = paired(_scores([5.0, 6.0, 7.0], [10.0, 10.0, 10.0], [1.0, 1.0, 1.0]), L1, "mse")
    assert clear.verdict == "RLN better" and clear.comparison.t == pytest.approx(-4 * 3 ** 0.5)
    one = _scores([-10.0], [0.0], [0.0])
    assert paired(one, L1, "mse").sentence("MSE").endswith(": one repeat: no noise estimate")
    text = " ".join(line.strip() for line in footer(one, DemoSettings(repeats=1)))
    assert ("paired by repeat (same noise and split; a paired t test needs 2 pairs or "
            "more)") in text


def test_jobs_give_the_same_results(tmp_path, capsys):
    results = []
    for jobs in ("1", "2"):
        path = tmp_path / f"r{jobs}.json"
        assert main(["demo", *TINY, "--data", "diabetes", "--jobs", jobs,
                     "--out", str(tmp_path), "--json", str(path)]) == 0
        results.append(json.loads(path.read_text())["methods"])
    capsys.readouterr()
    for method in ("plain", "l1", "rln", "hgb"):
        assert results[0][method]["mse"] == results[1][method]["mse"], method


def test_the_demo_refuses_a_single_class_target_before_training():
    from rln_sklearn._demo import DemoSettings, check_table

    X = np.random.RandomState(0).standard_normal((60, 3))
    with pytest.raises(ValueError, match="single class"):
        check_table(X, np.zeros(60, dtype=int), DemoSettings(classification=True))


def test_the_demos_importance_on_real_inputs_sums_the_real_columns_only():
    import types

    from rln_sklearn._demo import DemoSettings, MethodScores, _Fitted, _record

    model = types.SimpleNamespace(coefs_=[np.zeros((3, 2))], sparsity_=0.5, l1=0.0,
                                  feature_importances_=np.array([0.7, 0.2, 0.1]))
    split = types.SimpleNamespace(y_test=np.array([1.0, 2.0]))
    scores = MethodScores()
    _record(scores, _Fitted(model, 0.1, 0.0, np.array([1.0, 2.0])), split,
            np.array([True, False, False]), DemoSettings(), 0.1)
    assert scores.real_share == [0.7]
