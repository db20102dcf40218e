"""CUDA tests: those marked `cuda` need a GPU and skip without one (the `gpu` fixture); the
compile checks (test_cuda_compile.py) need only nvcc and run on CPU-only CI machines."""
import pytest


def _gpu_available() -> bool:
    try:
        from kcomp.cuda import runtime
    except ImportError:
        return False
    return runtime.available()


@pytest.fixture(scope="session")
def gpu():
    if not _gpu_available():
        pytest.skip("no CUDA GPU on this machine")
    from kcomp.cuda import runtime
    runtime.library()  # builds the kernel library once, before the tests time anything
    return runtime
