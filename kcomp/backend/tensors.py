"""Placeholders, variables, constants, introspection and values."""
from __future__ import annotations

import numpy as np

from .. import deferred, native
from ..ir import build as B
from ..ir import dtypes as D
from ..ir.graph import Tensor, Variable
from ..ir.ops import leaf
from . import config

__all__ = ["placeholder", "is_placeholder", "variable", "is_variable", "constant", "is_tensor",
           "is_keras_tensor", "is_sparse", "to_dense", "print_tensor", "shape", "int_shape",
           "get_variable_shape",
           "ndim", "size", "dtype", "count_params", "eval", "get_value", "batch_get_value",
           "set_value", "batch_set_value", "zeros", "ones", "eye", "zeros_like", "ones_like",
           "identity", "cast"]


def _dt(dtype):
    return D.as_dtype(dtype if dtype is not None else config.floatx())


def _name(name, prefix):
    return config.scoped(name if name else f"{prefix}_{config.get_uid(prefix)}")


def placeholder(shape=None, ndim=None, dtype=None, sparse=False, name=None):
    if shape is None:
        if ndim is None:
            raise ValueError("kcomp placeholders need a shape or an ndim (a rank)")
        shape = (None,) * int(ndim)
    shape = tuple(shape)
    x = leaf.placeholder(_dt(dtype), shape, _name(name, "placeholder"), sparse=sparse)
    x._keras_shape = shape
    x._uses_learning_phase = False
    return x


def is_placeholder(x) -> bool:
    return isinstance(x, Tensor) and x.node.op.name == "placeholder"


def variable(value, dtype=None, name=None, constraint=None):
    v, sparse = None, False
    if isinstance(value, Tensor):
        if isinstance(value, Variable):
            value = value._value
        elif value.node.op.name == "constant":
            value = value.node.attrs["value"]
        else:  # an initializer's result: computed with the other waiting ones (deferred.py)
            v = deferred.variable(value, _dt(dtype), _name(name, "variable"))
            if v is None:
                value = eval(value)
    if v is None:
        sparse = hasattr(value, "tocoo")
        if sparse:  # a scipy.sparse matrix: kcomp holds it densely
            value = value.toarray()
        v = leaf.variable(np.asarray(value, dtype=_dt(dtype).np), _name(name, "variable"))
    v._keras_shape = tuple(v.dims)
    v._uses_learning_phase = False
    v.constraint = constraint
    v._kcomp_sparse = sparse
    return v


def is_variable(x) -> bool:
    return isinstance(x, Variable)


def constant(value, dtype=None, shape=None, name=None):
    dt = _dt(dtype)
    arr = np.asarray(value, dtype=dt.np)
    if shape is not None:
        shape = tuple(shape)
        arr = np.broadcast_to(arr, shape) if arr.size == 1 or arr.shape == shape else \
            arr.reshape(shape)
    return leaf.constant(arr, dt, name=name)


def is_tensor(x) -> bool:
    return isinstance(x, Tensor)


def is_keras_tensor(x) -> bool:
    if not is_tensor(x):
        raise ValueError(f"Unexpectedly found an instance of type `{type(x)}`. "
                         "Expected a symbolic tensor instance.")
    return hasattr(x, "_keras_history")


def is_sparse(tensor) -> bool:
    """A sparse placeholder, a variable made from a scipy.sparse matrix, or a concatenation of
    sparse tensors (kcomp holds them all densely)."""
    return isinstance(tensor, Tensor) and (bool(tensor.node.attrs.get("sparse", False)) or
                                           getattr(tensor, "_kcomp_sparse", False))


def to_dense(tensor):
    """The dense value: a sparse placeholder is fed (and held) densely already."""
    return identity(tensor) if is_sparse(tensor) else tensor


def print_tensor(x, message=""):
    """x itself, printed with `message` (to stderr) whenever a compiled function computing it
    runs."""
    from ..ir.registry import apply1
    return apply1("print_tensor", [B.as_tensor(x)], {"message": str(message)})


def shape(x):
    """The run-time shape as an int32 tensor."""
    from ..ir.registry import apply1
    return apply1("shape_of", [B.as_tensor(x)])


def int_shape(x):
    if hasattr(x, "_keras_shape"):
        return tuple(x._keras_shape)
    if isinstance(x, Tensor):
        return x.shape
    if isinstance(x, np.ndarray):
        return x.shape
    raise TypeError(f"int_shape of {type(x).__name__}")


def get_variable_shape(x):
    """Keras 2.3.1's TensorFlow backend still offers this alias of int_shape."""
    return int_shape(x)


def ndim(x):
    if isinstance(x, Tensor):
        return x.ndim
    return len(int_shape(x))


def size(x, name=None):
    from .reductions import prod
    return prod(shape(x))


def dtype(x) -> str:
    return x.dtype if isinstance(x, Tensor) else np.asarray(x).dtype.name


def count_params(x) -> int:
    return int(np.prod(int_shape(x)))


def eval(x):
    """The value of a tensor, computed by native code (a compiled function of no inputs)."""
    from ..function import Function
    return Function([], [B.as_tensor(x)], name="eval")([])[0]


def get_value(x):
    if isinstance(x, Variable):
        return x._value.copy()
    if isinstance(x, Tensor):
        return eval(x)
    return np.asarray(x)


def batch_get_value(ops):
    return [get_value(x) for x in ops]


def set_value(x, value) -> None:
    if not isinstance(x, Variable):
        raise TypeError(f"set_value needs a variable, got {x!r}")
    shape = tuple(x.dims)
    value = np.asarray(value, dtype=x.type.dtype.np)
    if value.shape != shape:
        raise ValueError(f"set_value: variable {x.name!r} has shape {shape}, "
                         f"the new value has shape {value.shape}")
    deferred.replace(x)  # a waiting initial value need not be computed
    np.copyto(x._value, value)
    x._device = None  # a GPU copy of the old value (kcomp/cuda/executable.py) is stale
    # packed panels of the old value (kc_api.pack_cached) are stale
    native().weights_written(x._value.ctypes.data, x._value.nbytes)


def batch_set_value(tuples) -> None:
    for x, value in tuples:
        set_value(x, value)


def _shape(shape) -> tuple:
    """A shape argument: a sequence of ints, or one int (TensorFlow takes both)."""
    return (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(shape)


def zeros(shape, dtype=None, name=None):
    return variable(np.zeros(_shape(shape), _dt(dtype).np), dtype, name)


def ones(shape, dtype=None, name=None):
    return variable(np.ones(_shape(shape), _dt(dtype).np), dtype, name)


def eye(size, dtype=None, name=None):
    n, m = (size if isinstance(size, (list, tuple)) else (size, size))
    return variable(np.eye(n, m, dtype=_dt(dtype).np), dtype, name)


def _filled(x, value, dtype):
    """zeros_like / ones_like: x's dtype unless dtype is given (TensorFlow's rule)."""
    x = B.as_tensor(x)
    dt = x.type.dtype if dtype is None else _dt(dtype)
    return B.broadcast_to(leaf.constant(value, dt), x.dims)


def zeros_like(x, dtype=None, name=None):
    return _filled(x, 0, dtype)


def ones_like(x, dtype=None, name=None):
    return _filled(x, 1, dtype)


def identity(x, name=None):
    from ..ir.registry import apply1
    return apply1("identity", [B.as_tensor(x)], node_name=name)


def cast(x, dtype):
    return B.cast(B.as_tensor(x), dtype)
