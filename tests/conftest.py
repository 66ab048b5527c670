"""Shared fixtures of the test suite."""

import pytest


@pytest.fixture(autouse=True, scope="module")
def one_thread_for_sklearn_tests(request):
    """In the test_sklearn_* modules: one torch and one numba thread, restored
    afterwards (`rln demo` sets them too). These networks are tiny, and on a
    busy machine threads only cost time (see rln_sklearn.threads)."""
    if not request.module.__name__.startswith("test_sklearn_"):
        yield
        return
    import numba
    import torch
    from rln_sklearn.threads import use_one_thread_per_process

    saved = torch.get_num_threads(), numba.get_num_threads()
    use_one_thread_per_process()
    yield
    torch.set_num_threads(saved[0])
    numba.set_num_threads(saved[1])
