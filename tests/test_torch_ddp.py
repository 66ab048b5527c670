"""DistributedDataParallel: two CPU processes (gloo, 127.0.0.1) stay bit for bit identical."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rln_torch import RLN

WORLD_SIZE = 2
N_STEPS = 15  # every rank sees its own batches; 15 steps clip weights to 0 and move lambdas


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_replica(rank, port, out_dir):
    """One rank: its own init and data; DDP averages gradients, RLN runs locally."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD_SIZE)
    try:
        torch.manual_seed(rank)  # different inits: DDP broadcasts rank 0's weights
        model = torch.nn.Sequential(torch.nn.Linear(12, 8), torch.nn.ReLU(),
                                    torch.nn.Linear(8, 1))
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        # The numba path (delta mode) on one layer, the torch kernel (gradient mode) on another.
        rlns = [RLN(model[0], avg_reg=-5.0, learning_rate=1e6),
                RLN(model[2], avg_reg=-4.0, learning_rate=1e4, mode="gradient", impl="torch")]
        for rln in rlns:
            rln.attach(optimizer)
        generator = torch.Generator().manual_seed(100 + rank)
        for _ in range(N_STEPS):
            x = torch.randn(16, 12, generator=generator)
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(ddp(x), x[:, :2].sum(1, keepdim=True)).backward()
            optimizer.step()
        torch.save({"weights": [p.detach() for p in model.parameters()],
                    "lambdas": [rln.lambdas for rln in rlns],
                    "sparsity": rlns[0].sparsity()}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_ddp_replicas_stay_identical(tmp_path):
    mp.spawn(train_replica, args=(free_port(), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD_SIZE)]
    assert ranks[0]["sparsity"] > 0
    for other in ranks[1:]:
        for a, b in zip(ranks[0]["weights"] + ranks[0]["lambdas"],
                        other["weights"] + other["lambdas"]):
            assert torch.equal(a, b)
    assert (ranks[0]["lambdas"][1] != ranks[0]["lambdas"][1].flatten()[0]).any()
