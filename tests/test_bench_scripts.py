"""The benchmark scripts run end to end against the current code and print every row they
promise (tiny settings: one size, one epoch, one repeat).

Their figures are not checked: timings belong in bench/, never in assertions. What is
checked is that each script still runs (they use the core's and the adapters' API, which
the other tests may change under them) and that each table holds every variant, each
with a number.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import List

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
RATIO = re.compile(r"\d+\.\d+x")


def _run(*args: str, timeout: int = 600) -> str:
    done = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


def _table_rows(text: str, first_cell: str) -> List[List[str]]:
    """The cells of every Markdown table row whose first cell is `first_cell`."""
    rows = []
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            rows.append(cells)
    return rows


def test_bench_core_times_every_implementation_and_prints_the_ratios():
    out = _run("bench/bench_core.py", "--sizes", "1000", "--repeats", "2", "--budget", "0.01",
               "--rounds", "1", "--no-startup")
    times, ratios = _table_rows(out, "1x1000 (1,000)")
    assert len(times) == 15 and all(re.fullmatch(r"\d+\.\d+ (us|ms|s)", t) for t in times[1:])
    assert len(ratios) == 12 and all(RATIO.match(r) for r in ratios[1:])


def test_bench_torch_times_plain_rln_and_fused_fits_against_the_target():
    out = _run("bench/bench_torch.py", "--epochs", "1", "--batch-sizes", "128", "--repeats",
               "1", "--threads", "1", "--clock", "cpu", "--state-dtype", "float32",
               "--compute-dtype", "float32", "--phases")
    rows = [line.split() for line in out.splitlines() if line.split()[:1] == ["128"]]
    assert len(rows) == 1 and len(rows[0]) == 9
    # batch, steps, plain s, RLN s, RLN / plain, RLN us/step, fused s, fused / plain, fused
    # us/step; the us/step differences may be negative in a run this short
    values = [float(value) for value in rows[0][2:]]
    assert all(values[k] > 0 for k in (0, 1, 2, 4, 5))
    best = min(float(rows[0][4]), float(rows[0][7]))
    assert re.search(rf"^target: the fastest RLN fit <= 1.1x plain at batch 128 \(float32 "
                     rf"state\): {best:.2f}x, (ok|MISSED)$", out, flags=re.MULTILINE), out
    for variant in ("plain", "RLN", "fused"):  # --phases: forward + backward, step (us)
        assert re.search(rf"^\s+{variant}\s+\d+\s+\d+$", out, flags=re.MULTILINE), out


def test_bench_jax_times_plain_and_rln_fits_and_the_update_alone():
    out = _run("bench/bench_jax.py", "--epochs", "1", "--batch-sizes", "128", "--repeats", "1",
               "--calls", "3")
    row = re.search(r"^\s+128\s+4\s+(\d+\.\d+)\s+(\d+\.\d+)\s+(\d+\.\d+)x$", out,
                    flags=re.MULTILINE)
    assert row is not None and all(float(value) > 0 for value in row.groups()), out
    assert re.search(r"^update of the first kernel alone \(median of 3\): rmsprop \d+\.\d+ ms, "
                     r"rmsprop \+ RLN \d+\.\d+ ms \(\d+\.\d+x\)$", out, flags=re.MULTILINE), out


def test_bench_keras_times_every_variant_on_every_backend():
    out = _run("bench/bench_keras.py", "--backend", "tensorflow", "jax", "torch", "--epochs",
               "1", "--repeats", "1", "--batch-size", "128", "--threads", "1")
    variants = ["plain", "hook only", "callback", "callback (f32 state)",
                "callback (f32 compute)", "in-graph", "in-graph (f32 compute)"]
    sections = re.split(r"^Keras \S+ \((\w+)\)", out, flags=re.MULTILINE)[1:]
    by_backend = dict(zip(sections[::2], sections[1::2]))
    assert sorted(by_backend) == ["jax", "tensorflow", "torch"]
    for backend, text in by_backend.items():
        expected = variants + (["pandas (authors')"] if backend == "tensorflow" else [])
        for variant in expected:
            row = re.search(rf"^\s+128\s+{re.escape(variant)}\s+(\d+\.\d+)\s+(\d+\.\d+x)\s",
                            text, flags=re.MULTILINE)
            assert row is not None, f"{backend}: no row for {variant!r} in\n{text}"


def test_bench_accuracy_writes_its_tables(tmp_path):
    _run("bench/bench_accuracy.py", "--seeds", "1", "--epochs", "1", "--tasks", "hitters",
         "--out", str(tmp_path))
    table = (tmp_path / "accuracy.md").read_text()
    for method in ("plain", "L1", "RLN", "HGB", "RLN + HGB"):
        row = _table_rows(table, method)
        assert row and re.match(r"\d+\.\d+ \+- \d+\.\d+", row[0][1]), method
    assert "Paired by seed (a paired t test needs 2 pairs or more): RLN - L1 per seed " in table
    assert (tmp_path / "accuracy.json").stat().st_size > 0
    assert (tmp_path / "accuracy.png").stat().st_size > 0


def test_bench_agreement_compares_every_route_with_the_reference(tmp_path):
    routes = ["torch-f64", "torch-f32", "keras-tensorflow", "keras-jax", "keras-torch",
              "keras-in-graph", "jax"]
    out = _run("bench/bench_agreement.py", "--seeds", "2", "--epochs", "1", "--noise", "50",
               "--tasks", "diabetes", "--jobs", "2", "--out", str(tmp_path))
    saved = json.loads((tmp_path / "agreement.json").read_text())
    assert (tmp_path / "agreement.md").read_text().strip() in out
    assert saved["reference"] == "torch-f64" and list(saved["routes"]) == routes
    result = saved["results"]["diabetes"]
    assert result["inputs"] == 60 and result["real_inputs"] == 10 and result["reference_sd"] > 0
    for route in routes:
        title = saved["routes"][route]
        rows = _table_rows(out, title)
        # the figures table: test MSE, sparsity, importance on real inputs, fit s
        assert re.fullmatch(r"\d+ \+- \d+", rows[0][1]), rows
        assert re.fullmatch(r"\d+\.\d%", rows[0][2]) and re.match(r"\d+\.\d% \(", rows[0][3])
        assert float(rows[0][4]) > 0
        entry = result["routes"][route]
        assert len(entry["test_mse"]) == len(entry["sparsity"]) == len(entry["real_share"]) == 2
        assert entry["wall_s"] > 0 and "warnings" in entry
        # the wall times: the fits' seconds, the worker processes'
        assert all(re.fullmatch(r"\d+", cell) for cell in rows[-1][1:]), rows
        if route == "torch-f64":
            assert len(rows) == 2 and "comparison" not in entry
            continue
        # the comparison table: mean difference, standard error, t, verdict
        assert len(rows) == 3 and rows[1][4] in ("agree", "DIFFERS"), rows
        assert all(re.fullmatch(r"[+-]?\d+(\.\d+)?", cell) for cell in rows[1][1:4]), rows
        assert set(entry["comparison"]) == {"n", "mean_difference", "standard_error", "t",
                                            "critical_t", "differences", "verdict"}
    assert "t(0.975, 1) = 12.706" in out


def _bench_module(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_bench_agreement_words_the_shared_paired_t_test():
    """The rule is rln_sklearn.comparison.compare_paired's (tests/test_sklearn_comparison.py);
    here: its verdicts as the script words them, in the JSON's comparison of each route."""
    module = _bench_module("bench_agreement")

    def run(scores):
        return {"rows": 442, "test_rows": 89, "real_inputs": 10, "inputs": 60, "wall_s": 1.0,
                "fits": [{"seed": seed, "split": "s", "test_mse": score, "sparsity": 0.0,
                          "real_share": 0.5, "train_objective": 1.0, "fit_s": 1.0,
                          "warnings": []} for seed, score in enumerate(scores)]}

    reference = [3000.0, 2500.0, 3400.0]
    # differences -300, -100, -200: t -3.46, beyond 2 standard errors, inside t(0.975, 2) 4.30
    result = module.collect("diabetes", {
        "torch-f64": run(reference), "torch-f32": run([2700.0, 2400.0, 3200.0]),
        "jax": run([2500.0, 2000.0, 2900.0])}, noise=50)
    near, far = (result["routes"][route]["comparison"] for route in ("torch-f32", "jax"))
    assert set(near) == {"n", "mean_difference", "standard_error", "t", "critical_t",
                         "differences", "verdict"}
    assert list(near["differences"]) == [-300.0, -100.0, -200.0]
    assert near["t"] == pytest.approx(-2 * np.sqrt(3)) and near["verdict"] == "agree"
    assert far["verdict"] == "DIFFERS" and far["t"] == -np.inf
    one = module.collect("diabetes", {"torch-f64": run([3000.0]), "jax": run([3100.0])}, 50)
    assert one["routes"]["jax"]["comparison"]["verdict"] == "n/a"


def test_bench_accuracy_calls_within_noise_what_the_paired_t_test_does_not_find():
    paired = _bench_module("bench_accuracy").paired
    # RLN - L1 per seed -3, -1, -2: t -3.46, beyond 2 standard errors but inside
    # t(0.975, 2) = 4.303; RLN - HGB +4, +5, +6: t +8.66
    methods = {"RLN": {"test": [7.0, 9.0, 8.0]}, "L1": {"test": [10.0, 10.0, 10.0]},
               "HGB": {"test": [3.0, 4.0, 2.0]}}
    assert paired(methods, 1) == (
        "Paired by seed (within noise: a two-sided 95% paired t test finds no difference, "
        "|t| < t(0.975, 2) = 4.303): RLN - L1 per seed -2.0 +- 0.8, RLN lower in 3 of 3, "
        "t -3.46 (within noise); RLN - HGB per seed +5.0 +- 0.8, RLN lower in 0 of 3, "
        "t +8.66; HGB - L1 per seed -7.0 +- 0.8, HGB lower in 3 of 3, t -12.12.")
