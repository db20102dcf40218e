"""Timing shared by the bench/ scripts that measure whole steps (training_step.py,
keras_inference.py); it needs nothing but the standard library, so keras_inference.py's
TensorFlow worker, which may run where kcomp is not installed, uses it too."""
import time


def sample(fn, seconds):
    """Seconds per call over a sample lasting about `seconds` (at least 3 calls)."""
    n, start = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - start
        if n >= 3 and elapsed >= seconds:
            return elapsed / n
