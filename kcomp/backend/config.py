"""Keras configuration: floatx, epsilon, image data format, uids, learning phase, name scopes.

Values start from $KERAS_HOME/keras.json (default ~/.keras/keras.json, or /tmp/.keras when the
home directory is not writable), read the way Keras reads it; kcomp never writes that file.
When Keras itself is loaded it keeps its own copies of these settings (keras.backend.common)
and kcomp follows them, so keras.backend.set_floatx('float64') changes what kcomp creates.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
from collections import defaultdict

import numpy as np

__all__ = ["backend", "floatx", "set_floatx", "epsilon", "set_epsilon", "image_data_format",
           "set_image_data_format", "normalize_data_format", "symbolic", "eager",
           "cast_to_floatx", "get_uid", "reset_uids", "name_scope",
           "manual_variable_initialization", "learning_phase", "set_learning_phase",
           "clear_session"]

_FLOATX = "float32"
_EPSILON = 1e-7
_IMAGE_DATA_FORMAT = "channels_last"
_FLOATS = ("float16", "float32", "float64")
_FORMATS = ("channels_last", "channels_first")


def keras_dir() -> str:
    if "KERAS_HOME" in os.environ:
        return os.environ["KERAS_HOME"]
    base = os.path.expanduser("~")
    if not os.access(base, os.W_OK):
        base = "/tmp"
    return os.path.join(base, ".keras")


def _load_keras_json() -> None:
    global _FLOATX, _EPSILON, _IMAGE_DATA_FORMAT
    path = os.path.expanduser(os.path.join(keras_dir(), "keras.json"))
    try:
        with open(path) as f:
            cfg = json.load(f)
    except (OSError, ValueError):
        return
    if not isinstance(cfg, dict):
        return
    if cfg.get("floatx") in _FLOATS:
        _FLOATX = cfg["floatx"]
    if isinstance(cfg.get("epsilon"), (int, float)):
        _EPSILON = float(cfg["epsilon"])
    if cfg.get("image_data_format") in _FORMATS:
        _IMAGE_DATA_FORMAT = cfg["image_data_format"]


_load_keras_json()


def _host():
    """Keras's own configuration module when Keras is loaded (it wins)."""
    return sys.modules.get("keras.backend.common")


def backend() -> str:
    return "kcomp"


def floatx() -> str:
    h = _host()
    return h.floatx() if h is not None else _FLOATX


def set_floatx(value: str) -> None:
    global _FLOATX
    if value not in _FLOATS:
        raise ValueError(f"Unknown floatx type: {value!r}; expected one of {_FLOATS}")
    _FLOATX = str(value)
    h = _host()
    if h is not None:
        h.set_floatx(value)


def epsilon() -> float:
    h = _host()
    return h.epsilon() if h is not None else _EPSILON


def set_epsilon(value: float) -> None:
    global _EPSILON
    _EPSILON = float(value)
    h = _host()
    if h is not None:
        h.set_epsilon(value)


def image_data_format() -> str:
    h = _host()
    return h.image_data_format() if h is not None else _IMAGE_DATA_FORMAT


def set_image_data_format(data_format: str) -> None:
    global _IMAGE_DATA_FORMAT
    if data_format not in _FORMATS:
        raise ValueError(f"Unknown data_format: {data_format!r}; expected one of {_FORMATS}")
    _IMAGE_DATA_FORMAT = str(data_format)
    h = _host()
    if h is not None:
        h.set_image_data_format(data_format)


def normalize_data_format(value):
    if value is None:
        value = image_data_format()
    data_format = str(value).lower()
    if data_format not in _FORMATS:
        raise ValueError('The `data_format` argument must be one of "channels_first", '
                         f'"channels_last". Received: {value}')
    return data_format


def symbolic(func):
    """Keras's decorator for graph-mode-only functions: kcomp is always symbolic."""
    return func


def eager(func):
    """Keras's decorator for functions that may run eagerly: kcomp runs them symbolically."""
    return func


def cast_to_floatx(x) -> np.ndarray:
    return np.asarray(x, dtype=floatx())


# ---- uids, name scopes, sessions --------------------------------------------------------------

_UIDS = defaultdict(int)
_SCOPES: list = []


def get_uid(prefix: str = "") -> int:
    _UIDS[prefix] += 1
    return _UIDS[prefix]


def reset_uids() -> None:
    _UIDS.clear()


@contextlib.contextmanager
def name_scope(name: str):
    _SCOPES.append(str(name))
    try:
        yield "/".join(_SCOPES)
    finally:
        _SCOPES.pop()


def scoped(name: str) -> str:
    return "/".join(_SCOPES + [name]) if _SCOPES else name


_MANUAL_INIT = False


def manual_variable_initialization(value: bool) -> None:
    """Accepted for compatibility: kcomp variables hold their value from creation."""
    global _MANUAL_INIT
    _MANUAL_INIT = bool(value)


# ---- learning phase ---------------------------------------------------------------------------

_LEARNING_PHASE = None          # the symbolic learning phase (a uint8 scalar placeholder)
_LEARNING_PHASE_VALUE = None    # set_learning_phase(0 or 1) fixes it to a Python int


def learning_phase():
    """0 = test, 1 = train. A scalar placeholder (default 0) that functions may take as an
    input, unless set_learning_phase fixed it to an int."""
    global _LEARNING_PHASE
    if _LEARNING_PHASE_VALUE is not None:
        return _LEARNING_PHASE_VALUE
    if _LEARNING_PHASE is None:
        from ..ir import dtypes as D
        from ..ir.ops.leaf import placeholder
        _LEARNING_PHASE = placeholder(D.as_dtype("uint8"), (), name="keras_learning_phase",
                                      default=np.zeros((), np.uint8))
        _LEARNING_PHASE._uses_learning_phase = False
    return _LEARNING_PHASE


def set_learning_phase(value) -> None:
    global _LEARNING_PHASE_VALUE
    if value not in (0, 1):
        raise ValueError("Expected learning phase to be 0 or 1.")
    _LEARNING_PHASE_VALUE = int(value)


def clear_session() -> None:
    """Forget uids and the learning phase, as Keras does when it resets its graph."""
    global _LEARNING_PHASE, _LEARNING_PHASE_VALUE
    reset_uids()
    _LEARNING_PHASE = None
    _LEARNING_PHASE_VALUE = None
