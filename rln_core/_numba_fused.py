"""A fused optimizer + RLN step in numba: the optimizer's own math, then the RLN update.

Importing this module imports numba (`rln_core.fused` imports it lazily). The
RLN math is the kernel's (`rln_core._numba_kernel`: the terms of `_stats` and
`_stats32`, `decide`, the `_WRITE` drivers), run exactly as an unfused update runs
it after the optimizer's step; only the optimizer's element math lives here.

Two passes over memory:
1. one loop: each element's optimizer step written in place (W and its state),
   then that element's terms of the kernel's stats (`_numba_kernel.stats_terms`,
   `stats32_terms`; the weight change inferred as W - prev_weights, as
   `rln_core.update` does), summed as `_stats` sums them. One loop lets the
   optimizer's sqrt and division overlap with the sums' arithmetic: on the
   tutorial layer (one thread, this pass alone) 174 -> 150 us (RMSprop) and
   216 -> 176 us (Adam) in float32 compute, against the optimizer's loop then the
   stats' loop over blocks of 4096 elements (which 1024 and 32768 elements, or the
   whole tensor, did not beat); with a float64 state the pass is bound by memory
   (about 205 us either way);
2. if the kernel's checks pass (`decide`), its write driver over the tensor.
The optimizer's step is applied whatever the RLN update decides, and a refused
RLN update writes nothing of the RLN state: what "optimizer step, then
`rln_core.update`" leaves. Tensors of `_numba_kernel.PARALLEL_MIN_ELEMENTS` or
more run both passes on column chunks in the kernel's thread pool, as an unfused
update does (`_numba_kernel.in_chunks`). Measured alternative, dropped: pass 1 read only
(the optimizer's step recomputed in pass 2, delta handed to the kernel) costs
the optimizer's sqrt and division twice (0.7 ns per element each on the
tutorial layer, more than the prev_weights traffic it saves).

The optimizer math follows torch's single-tensor CPU implementations op by op,
in the weights' dtype: each torch op rounds once, and where torch's compiled
CPU loops contract a multiply-add into one FMA (measured on torch 2.13, AVX512:
`addcmul`, `add(alpha=)`, `lerp`) the element functions call `_fma`. They are
compiled without fastmath, so LLVM contracts nothing else. One op is not
matched: torch's CPU sqrt is not correctly rounded (1 in 6 float32 results is
1 ulp off, measured), this module's is, so RMSprop and Adam agree with torch
within a few ulp of the optimizer's step, not bit for bit (SGD: bit for bit).

The drivers are handed (1, n) views (`as_2d_views` of a dense layout) and walk
their row, a 1-D contiguous array; the write pass hands the views to the kernel's
write driver as they are.
"""

from __future__ import annotations

import functools
from typing import Callable, Optional, Sequence, Tuple

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from rln_core import _numba_kernel as _kernel
from rln_core._numba_kernel_codes import OK
from rln_core._numba_vectors import wide_vectors
from rln_core.checks import D_SCALE
from rln_core.hyperparameters import Hyperparameters

RMSPROP, ADAM, SGD = "rmsprop", "adam", "sgd"


@intrinsic
def _fma(typingctx, a, b, c):
    """a * b + c rounded once (llvm.fma, which vectorizes); three floats of one type."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context, builder, signature, args):
        value_type = context.get_value_type(signature.return_type)
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(value_type, [value_type] * 3),
            f"llvm.fma.f{a.bitwidth}")
        return builder.call(fma, args)

    return a(a, b, c), codegen


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _lerp(start, end, weight, one_minus_weight, small):  # pragma: no cover - compiled
    """torch's lerp: start + weight * (end - start), as its CPU loop rounds it (`small`:
    |weight| < 0.5, decided by the caller; one_minus_weight = 1 - weight in start's type)."""
    diff = end - start
    return _fma(weight, diff, start) if small else _fma(-diff, one_minus_weight, end)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _decayed(grad, w, weight_decay, sign):  # pragma: no cover - compiled
    """grad (negated by sign -1 for maximize) plus weight_decay * w, as torch's
    `grad.add(param, alpha=weight_decay)` (skipped where weight_decay is 0)."""
    grad = grad * sign
    return _fma(w, weight_decay, grad) if weight_decay != 0 else grad


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _rmsprop(w, g, square_avg, buf, grad_avg, h, centered,
             with_momentum):  # pragma: no cover - compiled
    """torch.optim.RMSprop's element step; slots (square_avg, momentum_buffer, grad_avg).

    h = (-lr, alpha, 1 - alpha, alpha (as 1 - (1 - alpha), for lerp), eps, weight_decay,
    momentum, sign, -, -, |1 - alpha| < 0.5), the numbers in W's dtype, sign -1 to maximize.
    """
    neg_lr, alpha, one_minus_alpha, lerp_rest, eps, weight_decay, momentum, sign, _, _, \
        lerp_small = h
    g = _decayed(g, w, weight_decay, sign)
    square_avg = _fma(one_minus_alpha * g, g, square_avg * alpha)
    if centered:
        grad_avg = _lerp(grad_avg, g, one_minus_alpha, lerp_rest, lerp_small)
        avg = np.sqrt(_fma(-grad_avg, grad_avg, square_avg)) + eps
    else:
        avg = np.sqrt(square_avg) + eps
    if with_momentum:
        buf = buf * momentum + g / avg
        w = _fma(buf, neg_lr, w)
    else:
        w = (neg_lr * g) / avg + w
    return w, square_avg, buf, grad_avg


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _adam(w, g, exp_avg, exp_avg_sq, max_exp_avg_sq, h, amsgrad,
          unused):  # pragma: no cover - compiled
    """torch.optim.Adam's (and AdamW's) element step; slots (exp_avg, exp_avg_sq,
    max_exp_avg_sq).

    h = (-lr / bias_correction1, 1 - beta1, beta1 (as 1 - (1 - beta1)), beta2, 1 - beta2,
    sqrt(bias_correction2), eps, weight_decay (0 when decoupled), 1 - lr * weight_decay
    (decoupled, else 1), sign, |1 - beta1| < 0.5), in W's dtype.
    """
    neg_step_size, one_minus_beta1, lerp_rest, beta2, one_minus_beta2, \
        bias_correction2_sqrt, eps, weight_decay, decay, sign, lerp_small = h
    w = w * decay
    g = _decayed(g, w, weight_decay, sign)
    exp_avg = _lerp(exp_avg, g, one_minus_beta1, lerp_rest, lerp_small)
    exp_avg_sq = _fma(one_minus_beta2 * g, g, exp_avg_sq * beta2)
    if amsgrad:
        # torch.maximum, where NaN wins
        larger = max_exp_avg_sq if max_exp_avg_sq >= exp_avg_sq else exp_avg_sq
        max_exp_avg_sq = max_exp_avg_sq if max_exp_avg_sq != max_exp_avg_sq else larger
        second = max_exp_avg_sq
    else:
        second = exp_avg_sq
    denom = np.sqrt(second) / bias_correction2_sqrt + eps
    w = (neg_step_size * exp_avg) / denom + w
    return w, exp_avg, exp_avg_sq, max_exp_avg_sq


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _sgd(w, g, buf, unused_1, unused_2, h, with_momentum,
         nesterov):  # pragma: no cover - compiled
    """torch.optim.SGD's element step; slots (momentum_buffer, -, -).

    h = (-lr, weight_decay, momentum, 1 - dampening, sign, -, -, -, -, -, first): first
    when the momentum buffer does not exist yet (torch then takes the gradient as it).
    """
    neg_lr, weight_decay, momentum, one_minus_dampening, sign, _, _, _, _, _, first = h
    g = _decayed(g, w, weight_decay, sign)
    if with_momentum:
        buf = g if first else _fma(g, one_minus_dampening, buf * momentum)
        g = _fma(buf, momentum, g) if nesterov else buf
    return _fma(g, neg_lr, w), buf, unused_1, unused_2


KINDS = {RMSPROP: 0, ADAM: 1, SGD: 2}


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _step_element(w, g, s0, s1, s2, j, h, kind, flag_0, flag_1, has_0, has_1,
                  has_2):  # pragma: no cover - compiled
    """The optimizer's step of element j of 1-D arrays, in place: W and the slots it uses
    (has_*; the others get any array of W's length, never read nor written); returns W's
    new value.

    The loops of `_apply` and `_step_and_stats` call it with kind (`KINDS`), the flags
    and has_* as constants of their closures (closures that hold only constants cache on
    disk; one holding a dispatcher would not), and LLVM inlines it there, so each variant
    gets its own loop, the other branches folded away. Every optimizer's h has one type
    (`rln_core.fused._numbers`), so each branch types whichever is compiled. Not numba's
    inline="always": inlined that way (array arguments and an index), the caller's loop
    was no longer vectorized (3.2 instead of 0.6 ns per element, measured). Being a
    call, its arithmetic, and the element functions', keeps its own (no) fast-math
    flags inside a caller that has some.
    """
    if kind == 0:
        stepped, n0, n1, n2 = _rmsprop(w[j], g[j], s0[j], s1[j], s2[j], h, flag_0, flag_1)
    elif kind == 1:
        stepped, n0, n1, n2 = _adam(w[j], g[j], s0[j], s1[j], s2[j], h, flag_0, flag_1)
    else:
        stepped, n0, n1, n2 = _sgd(w[j], g[j], s0[j], s1[j], s2[j], h, flag_0, flag_1)
    if has_0:
        s0[j] = n0
    if has_1:
        s1[j] = n1
    if has_2:
        s2[j] = n2
    w[j] = stepped
    return stepped


def slots_used(optimizer: str, variant: Tuple[bool, bool]) -> Tuple[bool, bool, bool]:
    """Which of the three state slots the optimizer's variant reads and writes."""
    flag_0, flag_1 = variant
    if optimizer == RMSPROP:  # (centered, with_momentum)
        return True, flag_1, flag_0
    if optimizer == ADAM:  # (amsgrad, -)
        return True, True, flag_0
    return flag_0, False, False  # SGD: (with_momentum, nesterov)


@functools.lru_cache(maxsize=None)
def _apply(optimizer: str, variant: Tuple[bool, bool]) -> Callable:
    """apply(w, g, s0, s1, s2, h): the optimizer's step of one variant over (1, n) views
    (their row taken here), in place."""
    kind, (flag_0, flag_1) = KINDS[optimizer], variant
    has_0, has_1, has_2 = slots_used(optimizer, variant)

    @numba.njit(cache=True, nogil=True, error_model="numpy")
    def apply(w2, g2, s0_2, s1_2, s2_2, h):  # pragma: no cover - compiled
        wide_vectors()
        w, g, s0, s1, s2 = w2[0], g2[0], s0_2[0], s1_2[0], s2_2[0]
        for j in range(w.size):
            _step_element(w, g, s0, s1, s2, j, h, kind, flag_0, flag_1, has_0, has_1, has_2)

    return apply


@functools.lru_cache(maxsize=None)
def _step_and_stats(optimizer: str, variant: Tuple[bool, bool], compute32: bool) -> Callable:
    """step_and_stats(w, g, s0, s1, s2, lambdas, prev_weights, prev_reg, h, d_scale,
    stepped, learning_rate): the optimizer's step in place and, in the same loop, each
    stepped element's terms of the kernel's stats (`_numba_kernel.stats_terms`, or
    `stats32_terms` for float32 compute) as an unfused update would read them; returns
    their sums (`_stats`' three and two zeros, or `_stats32`'s five; as floats). The
    arrays are (1, n) views (`step_in_place`'s); their row is taken here, not in Python
    (it runs per step). "reassoc", as in `_stats`, lets LLVM split the sums into SIMD
    lanes; the optimizer's element functions keep their own flags (none)."""
    kind, (flag_0, flag_1) = KINDS[optimizer], variant
    has_0, has_1, has_2 = slots_used(optimizer, variant)

    @numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc"})
    def step_and_stats(w2, g2, s0_2, s1_2, s2_2, lambdas2, prev_weights2, prev_reg2, h, d_scale,
                       stepped, learning_rate):  # pragma: no cover - compiled
        wide_vectors()
        w, g, s0, s1, s2 = w2[0], g2[0], s0_2[0], s1_2[0], s2_2[0]
        lambdas, prev_weights, prev_reg = lambdas2[0], prev_weights2[0], prev_reg2[0]
        total = 0.0
        total_abs = 0.0
        change_abs = 0.0
        n_bad = 0
        bad_bits = _kernel._I32_ZERO
        subnormal_bits = _kernel._I32_ZERO
        for j in range(w.size):
            new_w = _step_element(w, g, s0, s1, s2, j, h, kind, flag_0, flag_1, has_0, has_1,
                                  has_2)
            if compute32:
                lam, change, bad, subnormal = _kernel.stats32_terms(
                    new_w, lambdas[j], prev_weights[j], prev_reg[j], prev_weights[j], False,
                    stepped, learning_rate)
                bad_bits = np.int32(bad_bits | bad)
                subnormal_bits = np.int32(subnormal_bits | subnormal)
                change_abs += change
            else:
                lam, bad = _kernel.stats_terms(new_w, lambdas[j], prev_weights[j], prev_reg[j],
                                               prev_weights[j], False, d_scale, stepped,
                                               learning_rate)
                n_bad += bad
            total += lam
            total_abs += abs(lam)
        if compute32:
            return (total, total_abs, 1.0 if bad_bits < 0 else 0.0, change_abs,
                    1.0 if subnormal_bits < 0 else 0.0)
        return total, total_abs, np.float64(n_bad), 0.0, 0.0

    return step_and_stats


def step_in_place(optimizer: str, variant: Tuple[bool, ...], h: tuple,
                  views: Sequence[np.ndarray], first: bool,
                  hyperparameters: Optional[Hyperparameters],
                  compute32: bool = False) -> int:
    """The optimizer's step, then the RLN update, on validated arrays; OK or an error code.

    Args:
        optimizer, variant: `RMSPROP`/`ADAM`/`SGD` and its structural flags (`_make_*`).
        h: the optimizer's numbers for its element function, in W's dtype.
        views: (1, n) views (`as_2d_views` of one dense layout) of the weights, grad,
            slot 0, slot 1, slot 2 (unused slots: the grad), lambdas, prev_weights,
            prev_reg.
        first: the RLN state's first update (no lambda step, no translation).
        hyperparameters: RLN's, or None for the optimizer's step alone.
        compute32: the kernel's float32 compute mode.

    Returns:
        OK (both applied), or BAD_WEIGHTS or LAMBDAS_UNSURE (the optimizer's step applied,
        the RLN state untouched).
    """
    n_chunks = _kernel.chunk_count(views[0].size)
    if hyperparameters is None:
        _kernel.in_chunks(_apply(optimizer, variant), views[:5], n_chunks, h)
        return OK
    learning_rate, norm = hyperparameters.learning_rate, hyperparameters.norm
    stepped = not first
    sums = _kernel.add_up(_kernel.in_chunks(_step_and_stats(optimizer, variant, compute32),
                                            views, n_chunks, h, D_SCALE[norm], stepped,
                                            learning_rate))
    status, shift, writer = _kernel.decide(
        sums if compute32 else sums[:3], views[0].size, first, hyperparameters.avg_reg,
        learning_rate, norm, compute32, views[5].dtype)
    if status == OK:
        weights, lambdas, prev_weights, prev_reg = views[0], views[5], views[6], views[7]
        _kernel.in_chunks(_kernel._WRITE[writer, norm, False],
                          (weights, lambdas, prev_weights, prev_reg, prev_weights), n_chunks,
                          stepped, learning_rate, shift)
    return status
