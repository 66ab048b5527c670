"""The implementations of the RLN update, and the one resolver every adapter uses.

Implementations (all checked against `rln_core.reference.update` by
`rln_core.testing.check_update`):
- "numba": the fused two-pass in-place kernel (`rln_core._numba_kernel`), NumPy arrays.
- "numpy": the reference (`rln_core.reference`), then a write-back; NumPy arrays.
- "array_api": the array-API function (`rln_core.array_api`), any array library
  (torch on any device, JAX, keras.ops, NumPy, ...).

Precedence (`resolve`):
1. An explicit impl is used as asked; "numba" and "numpy" take NumPy arrays
   only (an adapter hands them a NumPy view of a CPU tensor's memory).
2. impl="auto" on NumPy arrays: "numba" when numba can be imported (and
   RLN_DISABLE_NUMBA is not set), else "numpy" (with one
   `NumbaUnavailableWarning`, except under RLN_DISABLE_NUMBA, which asks for it).
   Where numba cannot walk a layout in place (an N-D view whose axes do not merge),
   `rln_core.update` runs "numpy" for that call.
3. impl="auto" on any other array: "array_api".
"""

from __future__ import annotations

import functools
import os
import warnings
from types import ModuleType
from typing import Any, Optional

import numpy as np

IMPLS = ("auto", "numba", "numpy", "array_api")
NUMPY_ONLY = ("numba", "numpy")
NUMBA_UNAVAILABLE = ("numba cannot be imported, cannot cache its code (see the warning), or "
                     "RLN_DISABLE_NUMBA is set")
"""Why `numba_kernel()` gives None, for the errors of whatever asked for the kernel."""


class NumbaUnavailableWarning(RuntimeWarning):
    """numba cannot run RLN's kernel (it cannot be imported, or cannot cache the compiled
    kernel anywhere writable); RLN falls back to the NumPy implementation. Not raised
    when RLN_DISABLE_NUMBA asks for that fallback."""


def check_impl(impl: str) -> None:
    """`impl` must name one of `IMPLS`; a ValueError naming it otherwise."""
    if not isinstance(impl, str) or impl not in IMPLS:
        raise ValueError(f"Invalid impl: {impl!r}; expected one of {IMPLS}")


def resolve(impl: str, weights: Any) -> str:
    """The implementation that runs for `impl` on `weights` (precedence: module docstring).

    Returns:
        "numba", "numpy" or "array_api".

    Raises:
        ValueError: an unknown impl, or a NumPy-only impl for another library's array.
        ImportError: impl="numba" when numba cannot be imported.
    """
    check_impl(impl)
    on_numpy = isinstance(weights, np.ndarray)
    if impl == "auto":
        if not on_numpy:
            return "array_api"
        return "numba" if numba_kernel() is not None else "numpy"
    if impl in NUMPY_ONLY and not on_numpy:
        raise ValueError(f"impl={impl!r} updates NumPy arrays, got a {type(weights).__name__}; "
                         "use impl='auto' or 'array_api'")
    if impl == "numba" and numba_kernel() is None:
        raise ImportError(f"impl='numba' was requested but {NUMBA_UNAVAILABLE}")
    return impl


@functools.lru_cache(maxsize=None)
def numba_kernel() -> Optional[ModuleType]:
    """The numba kernel module, imported once; None if impossible (with one warning) or
    disabled by RLN_DISABLE_NUMBA (without)."""
    if os.environ.get("RLN_DISABLE_NUMBA", "") not in ("", "0"):
        return None
    try:
        from rln_core import _numba_kernel
    except ImportError as error:
        warnings.warn(
            f"numba is not available ({error}); RLN uses its NumPy implementation, "
            "which is correct but several times slower. `pip install numba` to speed it up.",
            NumbaUnavailableWarning, stacklevel=3)
        return None
    except RuntimeError as error:  # numba's cache=True with no folder it can write
        if "cannot cache" not in str(error):
            raise
        warnings.warn(
            f"numba cannot cache the compiled RLN kernel ({error}): neither the installed "
            "package's folder nor numba's user cache folder is writable. This process uses "
            "RLN's NumPy implementation, which is correct but several times slower; set "
            "NUMBA_CACHE_DIR to a writable folder before starting Python to use numba.",
            NumbaUnavailableWarning, stacklevel=3)
        return None
    return _numba_kernel


def numba_available() -> bool:
    """Whether impl="auto" uses the numba kernel (imports numba on first call)."""
    return numba_kernel() is not None
