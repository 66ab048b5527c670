"""Views that let a 2-D kernel walk N-D arrays in place, never through a copy."""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np


def as_2d_views(arrays: Sequence[np.ndarray]) -> Optional[List[np.ndarray]]:
    """View same-shaped arrays as 2-D arrays with matching element order.

    All arrays get the same axis permutation (the first array's strides,
    largest first, so the kernel walks its memory in order) and are then
    reshaped to (rows, last axis) without copying. Strided 1-D and 2-D views
    always work; an N-D array whose leading axes cannot be merged without a
    copy makes this return None.

    Args:
        arrays: arrays of one shape; the first one decides the walking order.

    Returns:
        2-D views sharing memory with the inputs, or None if one would need a copy.
    """
    lead = arrays[0]
    if lead.ndim == 0:
        return [a.reshape(1, 1) for a in arrays]
    order = sorted(range(lead.ndim), key=lambda axis: -abs(lead.strides[axis]))
    views = []
    for array in arrays:
        permuted = array.transpose(order)
        if permuted.ndim == 1:
            views.append(permuted[np.newaxis, :])
            continue
        try:
            views.append(permuted.reshape((-1, permuted.shape[-1]), copy=False))
        except ValueError:
            return None
    return views
