"""What unmodified Keras 2.3.1 needs on Python 3.11 and numpy 2, applied when kcomp.backend is
imported (Keras imports it while loading its backend), before Keras uses any of it:

- collections.Mapping, Sequence, Iterable, ... : moved to collections.abc (removed in 3.10).
- inspect.getargspec and inspect.ArgSpec: removed in Python 3.11; Keras's generic_utils uses
  them to inspect layer signatures.
- numpy aliases np.bool, np.int, np.float, np.complex, np.object, np.str: removed in numpy 1.24;
  Keras's numpy reference backend and some utilities use them.

Each alias is added only where missing, so nothing that exists is changed.
"""
from __future__ import annotations

import collections
import collections.abc
import inspect

import numpy as np

_ABC = ("Mapping", "MutableMapping", "Sequence", "MutableSequence", "Iterable", "Iterator",
        "Callable", "Set", "MutableSet", "Hashable", "Sized", "Container", "OrderedDict")
_NUMPY = {"bool": bool, "int": int, "float": float, "complex": complex, "object": object,
          "str": str}


def _getargspec(func):
    spec = inspect.getfullargspec(func)
    return inspect.ArgSpec(spec.args, spec.varargs, spec.varkw, spec.defaults)


def apply() -> list:
    """Install the aliases; returns the names added."""
    added = []
    for name in _ABC:
        if not hasattr(collections, name) and hasattr(collections.abc, name):
            setattr(collections, name, getattr(collections.abc, name))
            added.append(f"collections.{name}")
    if not hasattr(inspect, "ArgSpec"):
        inspect.ArgSpec = collections.namedtuple("ArgSpec", "args varargs keywords defaults")
        added.append("inspect.ArgSpec")
    if not hasattr(inspect, "getargspec"):
        inspect.getargspec = _getargspec
        added.append("inspect.getargspec")
    for name, value in _NUMPY.items():
        if name not in np.__dict__:
            setattr(np, name, value)
            added.append(f"numpy.{name}")
    return added


APPLIED = apply()
