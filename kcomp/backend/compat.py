"""What unmodified Keras 2.3.1 needs on Python 3.11 and numpy 2, applied when kcomp.backend is
imported (Keras imports it while loading its backend), before Keras uses any of it:

- collections.Mapping, Sequence, Iterable, ... : moved to collections.abc (removed in 3.10).
- inspect.getargspec and inspect.ArgSpec: removed in Python 3.11; Keras's generic_utils uses
  them to inspect layer signatures.
- numpy aliases np.bool, np.int, np.float, np.complex, np.object, np.str (removed in numpy 1.24)
  and np.Inf, np.string_, np.unicode_ (removed in numpy 2): Keras's numpy reference backend,
  its callbacks (EarlyStopping, ModelCheckpoint, ReduceLROnPlateau), io_utils and
  keras_preprocessing's pad_sequences use them.
- h5py 3 returns HDF5 string attributes as str where Keras 2.3.1 calls .decode() on them when it
  loads weights and models (keras/engine/saving.py): once Keras is imported (now, or later when
  kcomp was imported first) and h5py is installed, string attributes are returned as a str
  subclass whose decode() returns itself.

Each alias is added only where missing, so nothing that exists is changed.
"""
from __future__ import annotations

import collections
import collections.abc
import inspect
import sys

import numpy as np

_ABC = ("Mapping", "MutableMapping", "Sequence", "MutableSequence", "Iterable", "Iterator",
        "Callable", "Set", "MutableSet", "Hashable", "Sized", "Container", "OrderedDict")
_NUMPY = {"bool": bool, "int": int, "float": float, "complex": complex, "object": object,
          "str": str, "Inf": np.inf, "string_": np.bytes_, "unicode_": np.str_}


def _getargspec(func):
    spec = inspect.getfullargspec(func)
    return inspect.ArgSpec(spec.args, spec.varargs, spec.varkw, spec.defaults)


class _DecodableStr(str):
    """A str that also answers .decode() (h5py 2 returned bytes there)."""
    __slots__ = ()

    def decode(self, *args, **kwargs):
        return str(self)


def _decodable(value):
    if isinstance(value, str) and not isinstance(value, _DecodableStr):
        return _DecodableStr(value)
    if isinstance(value, np.ndarray) and value.dtype == object:
        out = np.empty(value.shape, dtype=object)
        for i, v in np.ndenumerate(value):
            out[i] = _decodable(v)
        return out
    return value


def _patch_h5py() -> bool:
    try:
        import h5py
    except ImportError:
        return False
    manager = h5py.AttributeManager
    if getattr(manager.__getitem__, "__kcomp_decodable__", False) or \
            int(h5py.__version__.split(".")[0]) < 3:
        return False
    original = manager.__getitem__

    def getitem(self, name):
        return _decodable(original(self, name))
    getitem.__kcomp_decodable__ = True
    manager.__getitem__ = getitem
    return True


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
    if "keras" in sys.modules:  # Keras is loading us
        if _patch_h5py():
            added.append("h5py string attributes with .decode()")
    elif not any(isinstance(f, _WhenKerasLoads) for f in sys.meta_path):
        sys.meta_path.insert(0, _WhenKerasLoads())
    return added


class _WhenKerasLoads:
    """An import hook that patches h5py when Keras is first imported after kcomp (a program that
    imports kcomp.backend itself, then Keras with KERAS_BACKEND=kcomp.backend), then retires.
    It finds nothing itself: the normal import proceeds."""

    def find_spec(self, name, path=None, target=None):
        if name == "keras":
            sys.meta_path.remove(self)
            _patch_h5py()
        return None


APPLIED = apply()
