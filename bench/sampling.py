"""What the bench/ scripts that measure whole steps (training_step.py, keras_inference.py)
share: their timing and their choice of models. It needs nothing but the standard library, so
keras_inference.py's TensorFlow worker, which may run where kcomp is not installed, uses it
too."""
import time


def chosen(parser, only, models):
    """The model names of an --only list (comma-separated), each one of `models`; an unknown
    name is the parser's error."""
    names = [m for m in only.split(",") if m]
    unknown = set(names) - set(models)
    if unknown:
        parser.error(f"unknown models {sorted(unknown)}; choose from {sorted(models)}")
    return names


def sample(fn, seconds):
    """Seconds per call over a sample lasting about `seconds` (at least 3 calls)."""
    n, start = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - start
        if n >= 3 and elapsed >= seconds:
            return elapsed / n
