"""rln_torch: Regularization Learning Networks for PyTorch.

    from rln_torch import RLN
    rln = RLN(model[0], norm=1, avg_reg=-10.0, learning_rate=1e6)
    handle = rln.attach(optimizer)        # or call rln.step() after every optimizer.step()
    handle = rln.attach(optimizer, fuse=True)   # RMSprop/Adam/AdamW/SGD + RLN in one kernel

CPU tensors are updated in place by `rln_core` (the numba kernel, zero copy);
tensors on other devices by the core's array-API function run in torch ops
(`rln_torch.torch_update`). The state is the core's `rln_core.RLNState`
(NumPy arrays on the CPU path, tensors otherwise). See `RLN` for the options.
"""

from rln_torch._impls import IMPLS, torch_update
from rln_torch._rln import MODES, RLN

__all__ = ["IMPLS", "MODES", "RLN", "torch_update"]
