"""rln_torch: Regularization Learning Networks for PyTorch.

    from rln_torch import RLN
    rln = RLN(model[0], norm=1, avg_reg=-10.0, learning_rate=1e6)
    handle = rln.attach(optimizer)        # or call rln.step() after every optimizer.step()

CPU tensors are updated in place by `rln_core` (the numba kernel, zero copy);
tensors on other devices by the same spec written in torch ops
(`rln_torch.torch_update`). See `RLN` for the options.
"""

from rln_torch._kernels import IMPLS
from rln_torch._rln import MODES, RLN
from rln_torch._state import TensorState
from rln_torch._torch_kernel import update as torch_update

__all__ = ["IMPLS", "MODES", "RLN", "TensorState", "torch_update"]
