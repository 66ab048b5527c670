"""rln_jax: Regularization Learning Networks as an optax transformation.

RLN runs after the optimizer, as the last link of a chain, on the tensors an
`optax.masked` picks (the paper regularizes the first layer's kernel)::

    import jax
    import optax
    import rln_jax

    first_kernel = {"layer0": {"kernel": True, "bias": False},
                    "layer1": {"kernel": False, "bias": False}}
    tx = optax.chain(optax.rmsprop(1e-3),
                     optax.masked(rln_jax.rln(avg_reg=-10.0, learning_rate=1e6), first_kernel))
    opt_state = tx.init(params)

    @jax.jit
    def train_step(params, opt_state, x, y):          # loss(params, x, y): yours
        grads = jax.grad(loss)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)   # params required
        return optax.apply_updates(params, updates), opt_state

    rln_jax.lambdas(opt_state)["layer0"]["kernel"]   # the learned log-coefficients

The update is `rln_core.array_api.step` in `jax.numpy` with the weight change
given (delta = the optimizer's updates). The state (`RLNState`) is plain
arrays of a fixed structure: it lives inside `jax.jit` and checkpoints as
arrays. float64 under `jax_enable_x64` (the spec, per update), float32
otherwise (`FLOAT32_TOLERANCE`) or when asked for (`compute_dtype=np.float32`:
the spec's float32 mode). A non-finite update raises eagerly and is
skipped (and counted in `RLNState.skipped`) under jit; see `rln`.
"""

from rln_jax._state import RLNState, lambdas, rln_state
from rln_jax._transform import FLOAT32_TOLERANCE, rln

__all__ = ["FLOAT32_TOLERANCE", "RLNState", "lambdas", "rln", "rln_state"]
