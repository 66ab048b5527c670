"""One compute thread per process, for programs that train the tutorial's small networks.

Batches of 10 rows give torch's intra-op threads and rln_core's parallel numba
kernel too little work to share, and their barriers wait for each other. On
a busy 2-core machine, per optimizer step of the tutorial's 1010-input network
(torch 2.13, numba 0.68, OpenMP layer), measured: torch 2 threads 120-220 ms,
1 thread 2-3 ms; with RLN and numba's parallel kernel 60 ms, serial 9 ms.
`rln demo` and bench/bench_accuracy.py call this; library code (the
estimators) leaves the process's thread settings alone. Parallelism for a
search comes from running fits side by side (GridSearchCV(n_jobs=...), Dask).
"""

from __future__ import annotations


def use_one_thread_per_process() -> None:
    """Set torch's intra-op threads and numba's parallel threads to 1 for this process."""
    import numba
    import torch

    torch.set_num_threads(1)
    numba.set_num_threads(1)
