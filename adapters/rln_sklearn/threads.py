"""One compute thread per process, for programs that train the tutorial's small networks.

Batches of 10 rows give torch's intra-op threads and rln_core's parallel numba
kernel too little work to share, and their barriers wait for each other. On
a busy 2-core machine, per optimizer step of the tutorial's 1010-input network
(torch 2.13, numba 0.68, OpenMP layer), measured: torch 2 threads 120-220 ms,
1 thread 2-3 ms; with RLN and numba's parallel kernel 60 ms, serial 9 ms.
The same holds for scikit-learn's HistGradientBoosting on 303 rows x 1012
inputs (OpenMP): 2 threads 159 s, 1 thread 23 s on the same busy machine.
`rln demo` and bench/bench_accuracy.py call this; library code (the
estimators) leaves the process's thread settings alone. Parallelism for a
search comes from running fits side by side (GridSearchCV(n_jobs=...), Dask,
`rln demo --jobs`).
"""

from __future__ import annotations


def use_one_thread_per_process() -> None:
    """Set torch's intra-op threads, numba's parallel threads and the OpenMP/BLAS
    thread pools (through threadpoolctl) to 1 for this process."""
    import numba
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    numba.set_num_threads(1)
    threadpool_limits(1)
