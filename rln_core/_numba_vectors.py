"""512-bit SIMD for the numba kernel's loops, on the CPUs that run it at full clock.

On every AVX-512 CPU LLVM vectorizes with 256-bit registers unless a function
asks for more (its "prefer-vector-width" attribute), because Skylake-SP-era
server cores (Skylake-SP, Cascade Lake, Cooper Lake) lower their clock under
512-bit arithmetic. The kernel's write loops are arithmetic-bound (exp and log
polynomials), so the drivers that walk them (and the fused step's optimizer
pass) call `wide_vectors()` first: it sets the attribute to 512 on the function
being compiled, except on those cores and where the target has no AVX-512 (then
LLVM keeps its width). Each element's operations are the same at either width,
so what the writes produce is bit for bit the same. The read-only `_stats` pass
(memory-bound: no faster) keeps LLVM's width, so its reassociated sums, and the
translation computed from them, are grouped as before: an unfused update is bit
for bit the same at either width. In the fused step, whose one wide loop
sums the same terms (`rln_core._numba_fused`), the grouping of those sums (the
mean's last bits, within the spec's tolerance) may depend on the width.

Measured on this project's machine (LLVM's name: rocketlake; one thread, the
tutorial layer 1013 x 179, ns per element, 256 -> 512 bits): the float64 write
L1 3.03 -> 2.24, L2 2.03 -> 1.42; the float32 compute write L1 0.97 -> 0.80,
L2 0.70 -> 0.54; the stats pass unchanged. A whole update from bench_core's
mid-training state: 736 -> 646 us (float64 state), 320 -> 298 us (float32 compute).

numba's cache keys compiled code on the CPU name and features, so code cached
with one width is not loaded on a CPU that would get the other.
"""

from __future__ import annotations

import llvmlite.binding
import numba
from numba import types
from numba.extending import intrinsic

# LLVM's names of the cores whose clock drops under 512-bit arithmetic (and the
# Xeon Phi, whose 512-bit units are its only wide ones: LLVM's width is right there).
NARROW_CPUS = frozenset({"skylake-avx512", "skx", "cascadelake", "cooperlake", "knl", "knm"})
_ATTRIBUTE = '"prefer-vector-width"="512"'


def target_cpu() -> str:
    """The CPU numba compiles for: NUMBA_CPU_NAME if set, else the host's (LLVM's name)."""
    return numba.config.CPU_NAME or llvmlite.binding.get_host_cpu_name()


def wants_wide(cpu: str) -> bool:
    """Whether the kernel asks for 512-bit vectors on `cpu` (an LLVM CPU name); LLVM
    uses them only where the target has AVX-512."""
    return cpu not in NARROW_CPUS


WIDE = wants_wide(target_cpu())


def target_features() -> str:
    """The features numba compiles for: NUMBA_CPU_FEATURES if set, else the host's."""
    if numba.config.CPU_FEATURES is not None:
        return numba.config.CPU_FEATURES
    return llvmlite.binding.get_host_cpu_features().flatten()


AVX512 = "+avx512f" in target_features().split(",")
"""Whether the target has AVX-512, hence 32 vector registers (16 with AVX2): a loop that
needs more than 16 can then stay one loop (`_numba_kernel._write_row32`)."""


@intrinsic
def wide_vectors(typingctx):
    """Ask LLVM for 512-bit vectors in the calling jitted function (see the module);
    a no-op where `WIDE` is False. Call it first in a driver: it compiles to nothing."""
    def codegen(context, builder, signature, args):
        attributes = builder.function.attributes
        # llvmlite's AttributeSet accepts the names it knows only (`_known`); a string
        # attribute is written into the function's definition as it is. (A future
        # llvmlite without `_known` gets LLVM's width; tests/test_core_numba_vectors.py
        # fails there on an AVX-512 machine.)
        if WIDE and hasattr(attributes, "_known"):
            attributes._known = frozenset(attributes._known) | {_ATTRIBUTE}
            attributes.add(_ATTRIBUTE)
        return context.get_dummy_value()

    return types.none(), codegen
