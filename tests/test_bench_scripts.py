"""The benchmark scripts run end to end against the current code and print every row they
promise (tiny settings: one size, one epoch, one repeat).

Their figures are not checked: timings belong in bench/, never in assertions. What is
checked is that each script still runs (they use the core's and the adapters' API, which
the other tests may change under them) and that each table holds every variant, each
with a number.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import List

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
    assert len(times) == 13 and all(re.fullmatch(r"\d+\.\d+ (us|ms|s)", t) for t in times[1:])
    assert len(ratios) == 10 and all(RATIO.match(r) for r in ratios[1:])


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
    assert (tmp_path / "accuracy.json").stat().st_size > 0
    assert (tmp_path / "accuracy.png").stat().st_size > 0
