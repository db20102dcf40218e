"""Shape and layout: reshape, permutations, concatenation, tiling, and friends."""
from __future__ import annotations

import numpy as np

from ..ir import build as B
from ..ir import shapes as S
from ..ir.graph import Tensor
from ..ir.registry import apply1, shape_error

__all__ = ["reshape", "permute_dimensions", "expand_dims", "squeeze", "flatten", "batch_flatten",
           "concatenate", "stack", "tile", "repeat_elements"]


def dims_arg(value, op: str):
    """A shape argument: ints (-1 allowed), symbolic dims, or tensors whose values derive from
    input shapes (K.shape(x)[0], ...), resolved to symbolic extents."""
    if isinstance(value, Tensor):
        dims = B.shape_value(value)
        if dims is None:
            raise ValueError(f"{op}: the shape {value!r} depends on data, not on input shapes; "
                             "kcomp needs shapes it can derive from input shapes")
        return list(dims)
    out = []
    for d in value:
        if isinstance(d, Tensor):
            v = B.shape_value(d)
            if v is None or len(v) != 1:
                raise ValueError(f"{op}: shape element {d!r} is not a scalar derived from "
                                 "input shapes")
            out.append(v[0])
        elif isinstance(d, S.Sym):
            out.append(d)
        else:
            out.append(int(d))
    return out


def reshape(x, shape):
    return B.reshape(x, dims_arg(shape, "reshape"))


def permute_dimensions(x, pattern):
    x = B.as_tensor(x)
    pattern = tuple(int(p) for p in pattern)
    if sorted(p % max(x.ndim, 1) for p in pattern) != list(range(x.ndim)) or len(pattern) != x.ndim:
        raise shape_error("permute_dimensions", f"pattern {pattern} is not a permutation of the "
                          f"{x.ndim} axes", x.type)
    return B.transpose(x, pattern)


def expand_dims(x, axis=-1):
    x = B.as_tensor(x)
    axis = B.axis_arg("expand_dims", x, int(axis), extra=1)
    dims = list(x.dims)
    dims.insert(axis, 1)
    return B.reshape(x, dims)


def squeeze(x, axis):
    x = B.as_tensor(x)
    axis = B.axis_arg("squeeze", x, int(axis))
    if x.dims[axis] != 1:
        if isinstance(x.dims[axis], int):
            raise shape_error("squeeze", f"axis {axis} has size {x.dims[axis]}, not 1", x.type)
    dims = list(x.dims)
    del dims[axis]
    return B.reshape(x, dims)


def flatten(x):
    return B.reshape(x, [-1])


def batch_flatten(x):
    x = B.as_tensor(x)
    if x.ndim < 1:
        raise shape_error("batch_flatten", "needs rank >= 1", x.type)
    return B.reshape(x, [x.dims[0], S.size(x.dims[1:])])


def concatenate(tensors, axis=-1):
    tensors = [B.as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("concatenate: no tensors")
    dt = B.result_dtype(*tensors)
    tensors = [B.cast(t, dt) for t in tensors]
    axis = B.axis_arg("concatenate", tensors[0], int(axis))
    if len(tensors) == 1:
        return tensors[0]
    out = apply1("concatenate", tensors, {"axis": axis})
    from .tensors import is_sparse
    if all(is_sparse(t) for t in tensors):
        out._kcomp_sparse = True  # sparse in, sparse out, as TensorFlow's sparse concat
    return out


def stack(x, axis=0):
    x = [B.as_tensor(t) for t in x]
    if not x:
        raise ValueError("stack: no tensors")
    axis = B.axis_arg("stack", x[0], int(axis), extra=1)
    return concatenate([expand_dims(t, axis) for t in x], axis=axis)


def tile(x, n):
    x = B.as_tensor(x)
    if isinstance(n, (int, np.integer)):
        n = [int(n)]
    n = [int(v) for v in n]
    if len(n) < x.ndim:
        n = [1] * (x.ndim - len(n)) + n
    if len(n) > x.ndim:
        x = B.reshape(x, (1,) * (len(n) - x.ndim) + x.dims)
    if all(v == 1 for v in n):
        return x
    return apply1("tile", [x], {"reps": tuple(n)})


def repeat_elements(x, rep, axis):
    x = B.as_tensor(x)
    axis = B.axis_arg("repeat_elements", x, int(axis))
    rep = int(rep)
    if rep == 1:
        return x
    out = apply1("repeat_elements", [x], {"rep": rep, "axis": axis})
    out._keras_shape = out.shape  # Keras's TensorFlow backend annotates this result
    return out
