"""Views that let a 2-D kernel walk N-D arrays in place, never through a copy."""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np


def as_2d_views(arrays: Sequence[np.ndarray]) -> Optional[List[np.ndarray]]:
    """View same-shaped arrays as 2-D arrays with matching element order.

    All arrays get the same axis permutation (the first array's strides,
    largest first, so the kernel walks its memory in order) and are then
    reshaped without copying: to one long row (1, size) when every array
    allows it (contiguous arrays do), else to (rows, last axis). Strided 1-D
    and 2-D views always work; an N-D array whose leading axes cannot be
    merged without a copy makes this return None.

    Args:
        arrays: arrays of one shape; the first one decides the walking order.

    Returns:
        2-D views sharing memory with the inputs, or None if one would need a copy
        or is not in the machine's byte order (compiled kernels cannot read it).
    """
    c_order = True  # one loop: the fused step views its gradient this way at every step
    for array in arrays:
        if not array.dtype.isnative:
            return None
        c_order = c_order and array.flags.c_contiguous
    if c_order:  # the common case, fast
        return [array.reshape(1, -1) for array in arrays]
    lead = arrays[0]
    order = sorted(range(lead.ndim), key=lambda axis: -abs(lead.strides[axis]))
    permuted = [array.transpose(order) for array in arrays]
    for shape in ((1, lead.size), (-1, lead.shape[order[-1]] if lead.ndim else 1)):
        views = [_reshaped_view(array, shape) for array in permuted]
        if all(view is not None for view in views):
            return views
    return None


# ndarray.reshape takes copy= from NumPy 2.1 on; before, a view's shape set in place
# raises where the new shape needs a copy
_RESHAPE_TAKES_COPY = np.lib.NumpyVersion(np.__version__) >= "2.1.0"


def _reshaped_view(array: np.ndarray, shape: tuple) -> Optional[np.ndarray]:
    """`array` reshaped to `shape` as a view of its memory, or None where that needs a copy."""
    if _RESHAPE_TAKES_COPY:
        try:
            return array.reshape(shape, copy=False)
        except ValueError:
            return None
    view = array.view()
    try:
        view.shape = shape
    except AttributeError:
        return None
    return view
