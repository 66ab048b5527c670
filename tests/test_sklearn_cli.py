"""`rln demo`, run in-process with tiny settings."""

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes

from rln_sklearn.cli import main

TINY = ["--repeats", "1", "--epochs", "2", "--noise-features", "15", "--no-progress"]


def test_demo_prints_the_table_and_writes_the_figure(tmp_path, capsys):
    argv = ["demo", *TINY, "--out", str(tmp_path)]
    argv.remove("--no-progress")
    assert main(argv) == 0
    captured = capsys.readouterr()
    for row in ("test MSE", "predict the mean", "plain network", "best L1", "RLN",
                "importance on the 10 real inputs", "15 noise inputs"):
        assert row in captured.out
    figure = tmp_path / "rln_demo.png"
    assert f"figure: {figure}" in captured.out
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "rln demo" in captured.err and "5/5" in captured.err  # the progress bar


def test_demo_on_a_csv(tmp_path, capsys):
    data = load_diabetes(as_frame=True).frame.iloc[:120, [0, 2, 3, -1]]
    path = tmp_path / "table.csv"
    data.to_csv(path, index=False)
    assert main(["demo", *TINY, "--csv", str(path), "--target", "target",
                 "--out", str(tmp_path)]) == 0
    assert "importance on the 3 real inputs" in capsys.readouterr().out


@pytest.mark.parametrize("frame, argv, message", [
    (pd.DataFrame({"a": [1.0, 2.0], "y": [1.0, 2.0]}), ["--target", "price"],
     "--target 'price' is not a column"),
    (pd.DataFrame({"a": ["x", "y"], "y": [1.0, 2.0]}), ["--target", "y"], "not numeric: ['a']"),
    (pd.DataFrame({"a": [np.nan, 1.0], "y": [1.0, 2.0]}), ["--target", "y"],
     "missing values: ['a']"),
    (pd.DataFrame({"a": [1.0, 2.0], "y": [1.0, 2.0]}), [], "--csv and --target go together"),
])
def test_demo_csv_errors(tmp_path, capsys, frame, argv, message):
    path = tmp_path / "table.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", *TINY, "--csv", str(path), *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out
