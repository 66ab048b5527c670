"""The numba kernel's 512-bit vectors (`rln_core._numba_vectors`): where they are asked
for, that LLVM then uses them, and that the written arrays do not change."""

import llvmlite.binding
import numba
import numpy as np
import pytest

from rln_core import _numba_kernel as kernel
from rln_core import _numba_vectors as vectors


def _host_has_avx512() -> bool:
    return bool(llvmlite.binding.get_host_cpu_features().get("avx512f", False))


@pytest.mark.parametrize("cpu", sorted(vectors.NARROW_CPUS))
def test_narrow_cpus_keep_llvms_width(cpu):
    assert not vectors.wants_wide(cpu)


@pytest.mark.parametrize("cpu", ["icelake-server", "sapphirerapids", "rocketlake", "znver4",
                                 "haswell", "generic"])
def test_other_cpus_ask_for_wide_vectors(cpu):
    assert vectors.wants_wide(cpu)


def test_the_decision_follows_numbas_target_cpu(monkeypatch):
    monkeypatch.setattr(numba.config, "CPU_NAME", "cascadelake")
    assert vectors.target_cpu() == "cascadelake"
    monkeypatch.setattr(numba.config, "CPU_NAME", None)
    assert vectors.target_cpu() == llvmlite.binding.get_host_cpu_name()


def _rows(writer, wide):
    """A driver of one of the kernel's row writers, compiled here (no cache) at one width:
    "float64" (`_write_row`, L1 or L2 by the suffix), "float64 split" (the L1 writer of
    a float64 state), "float32" (`_write_row32`, L1 or L2)."""
    name, norm = writer.rsplit(" ", 1)
    norm = int(norm)

    def body(w, lam, prev_w, prev_reg):
        if name == "float64":
            kernel._write_row(w, lam, prev_w, prev_reg, prev_w, False, True, 1e3, 0.25, norm)
        elif name == "float64 split":
            kernel._write_row_l1_split(w, lam, prev_w, prev_reg, prev_w, False, True, 1e3, 0.25)
        else:
            kernel._write_row32(w, lam, prev_w, prev_reg, prev_w, False, True, np.float32(1e3),
                                np.float32(0.25), norm)

    inner = numba.njit(fastmath={"contract"}, error_model="numpy", inline="always")(body)
    if wide:
        @numba.njit(fastmath={"contract"}, error_model="numpy")
        def write(w, lam, prev_w, prev_reg):
            vectors.wide_vectors()
            inner(w, lam, prev_w, prev_reg)
    else:
        @numba.njit(fastmath={"contract"}, error_model="numpy")
        def write(w, lam, prev_w, prev_reg):
            inner(w, lam, prev_w, prev_reg)
    return write


WRITERS = ["float64 1", "float64 2", "float64 split 1", "float32 1", "float32 2"]


def _inputs(seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    n = 4099  # not a multiple of any vector width: the remainder loop runs too
    w = (rng.standard_normal(n) * 0.05).astype(np.float32)
    w[rng.random(n) < 0.2] = 0.0
    lam = (-6.0 + 3.0 * rng.standard_normal(n)).astype(dtype)
    prev_w = (w + 1e-3 * rng.standard_normal(n)).astype(np.float32)
    prev_reg = (1e-4 * rng.standard_normal(n)).astype(dtype)
    return [w, lam, prev_w, prev_reg]


@pytest.mark.parametrize("writer", WRITERS)
def test_wide_vectors_write_the_same_bits(writer):
    dtype = np.float32 if writer.startswith("float32") else np.float64
    narrow, wide = _inputs(1, dtype), _inputs(1, dtype)
    _rows(writer, wide=False)(*narrow)
    _rows(writer, wide=True)(*wide)
    for a, b in zip(narrow, wide):
        np.testing.assert_array_equal(a, b)
    assert (narrow[0] == 0).sum() > 0.2 * narrow[0].size  # clipped elements were exercised


def test_llvm_uses_512_bit_registers_where_asked():
    write = _rows("float64 split 1", wide=True)
    write(*_inputs(0))
    uses_zmm = "zmm" in write.inspect_asm(write.signatures[0])
    assert uses_zmm == (vectors.WIDE and _host_has_avx512())


def test_the_one_loop_float32_l1_writer_writes_the_same_bits_as_two_loops(monkeypatch):
    """`_write_row32`'s L1 runs one loop where the target has AVX-512, two elsewhere."""
    outputs = []
    for one_loop in (False, True):
        monkeypatch.setattr(kernel, "_L1_ONE_LOOP_F32", one_loop)
        arrays = _inputs(2, np.float32)
        _rows("float32 1", wide=True)(*arrays)
        outputs.append(arrays)
    for a, b in zip(*outputs):
        np.testing.assert_array_equal(a, b)
    assert (outputs[0][0] == 0).sum() > 0.2 * outputs[0][0].size  # clipped ones exercised


def test_the_avx512_flag_reads_numbas_target_features(monkeypatch):
    monkeypatch.setattr(numba.config, "CPU_FEATURES", "+avx2,-avx512f")
    assert "+avx512f" not in vectors.target_features().split(",")
    monkeypatch.setattr(numba.config, "CPU_FEATURES", "+avx2,+avx512f")
    assert "+avx512f" in vectors.target_features().split(",")
