# Run once on main at e06f0d7 (the code before the fixed-structure state) to write the legacy fixtures.
"""Checkpoints written by main at e06f0d7 (before the fixed-structure state).

Each fixture holds a state after N updates and, for continuing, the weights
the next updates see and what main produced from them.
"""
import os, sys
import numpy as np
import rln_core

out = sys.argv[1]
rng = np.random.default_rng(7)
W = rng.normal(0, 0.05, size=(12, 5)).astype(np.float32)
W[rng.random(W.shape) < 0.1] = 0
hp = dict(avg_reg=-9.0, learning_rate=1e6, norm=1)

# core: to_dict at steps 0 (no prev_reg) and after 3 updates (with prev_reg)
state = rln_core.init(W, avg_reg=-9.0)
np.savez(os.path.join(out, "core_steps0.npz"), **state.to_dict(), weights=W)
w = W.copy()
for t in range(3):
    w -= rng.normal(0, 1e-3, size=w.shape).astype(np.float32)
    rln_core.update(w, state, **hp)
saved = {k: np.array(v) for k, v in state.to_dict().items()}
nxt = []
for t in range(3):
    w -= rng.normal(0, 1e-3, size=w.shape).astype(np.float32)
    nxt.append(w.copy())
    rln_core.update(w, state, **hp)
np.savez(os.path.join(out, "core_steps3.npz"), **saved,
         next_weights=np.stack(nxt), expected_weights=w, expected_lambdas=state.lambdas)

# torch state_dict: fresh (steps 0) and after 4 SGD steps, then 3 more steps recorded
import torch
for mode in ("delta", "gradient"):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1)).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    from rln_torch import RLN
    rln = RLN(model[0], norm=1, avg_reg=-8.0, learning_rate=1e5, mode=mode)
    torch.save({"rln": rln.state_dict(), "model": model.state_dict()}, os.path.join(out, f"torch_{mode}_steps0.pt"))
    rln.attach(opt)
    g = torch.Generator().manual_seed(1)
    X = torch.randn(40, 6, generator=g, dtype=torch.float64); y = torch.randn(40, 1, generator=g, dtype=torch.float64)
    def run(n, start):
        for i in range(start, start + n):
            xb, yb = X[(i * 8) % 40:(i * 8) % 40 + 8], y[(i * 8) % 40:(i * 8) % 40 + 8]
            opt.zero_grad(); torch.nn.functional.mse_loss(model(xb), yb).backward(); opt.step()
    run(4, 0)
    torch.save({"rln": rln.state_dict(), "model": model.state_dict(), "opt": opt.state_dict()}, os.path.join(out, f"torch_{mode}_steps4.pt"))
    run(3, 4)
    torch.save({"weight": model[0].weight.detach().clone(), "lambdas": rln.lambdas.clone()}, os.path.join(out, f"torch_{mode}_expected7.pt"))
    print(mode, rln.state_dict()["states"][0]["steps"])
