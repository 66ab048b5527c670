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


def pytest_runtest_makereport(item, call):
    """Under CI=true a test skipped for a missing package fails (CUDA excepted): CI installs
    every backend the README claims, so a skip for a missing package hides a broken
    feature (a Keras JAX test was skipped this way while the callback crashed on JAX)."""
    import os

    if os.environ.get("CI", "").lower() not in ("1", "true") or call.excinfo is None:
        return None
    if not call.excinfo.errisinstance(pytest.skip.Exception):
        return None
    reason = str(call.excinfo.value)
    missing = ("could not import", "not installed", "No module named", "is not available")
    if "CUDA" in reason or not any(text in reason for text in missing):
        return None
    return pytest.TestReport(
        item.nodeid, item.location, {name: 1 for name in item.keywords}, "failed",
        f"skipped under CI=true (only CUDA tests may skip): {reason}", call.when,
        [], call.duration, call.start, call.stop)
