"""Keras 2 backend names kcomp does not implement yet.

Keras imports every backend name when it loads a backend, so each missing name of the surface
(kcomp/backend/api.py) gets a function that raises NotImplementedError naming it. Each carries
`__kcomp_pending__ = True`, so `kcomp check-backend` and the tests can tell them from real
implementations.
"""
from __future__ import annotations

from .api import NAMES


def _pending(name: str):
    def fn(*args, **kwargs):
        raise NotImplementedError(f"K.{name} is not implemented by kcomp yet")
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = "Not implemented by kcomp yet: calling it raises NotImplementedError."
    fn.__kcomp_pending__ = True
    return fn


def fill(namespace: dict) -> list:
    """Add a pending stub for every surface name missing from namespace; returns their names."""
    missing = [n for n in NAMES if n not in namespace]
    for n in missing:
        namespace[n] = _pending(n)
    return missing


def is_pending(fn) -> bool:
    return bool(getattr(fn, "__kcomp_pending__", False))
