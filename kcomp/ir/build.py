"""Typed node builders shared by the backend API and the Tensor operators.

These apply the dtype rules (numpy 2 promotion with weak Python scalars; operands of one
elementwise node share a dtype, so casts are inserted here) and turn Python values into
constants. The backend functions in kcomp/backend are thin wrappers over this module.
"""
from __future__ import annotations

import numbers

import numpy as np

from . import dtypes as D
from . import ops  # noqa: F401  (registers every op)
from . import shapes as S
from .graph import Tensor, Update
from .ops import elementwise as E
from .ops.leaf import constant
from .registry import apply1, shape_error


def is_tensor(x) -> bool:
    return isinstance(x, Tensor)


def as_tensor(x, dtype: D.DType | None = None) -> Tensor:
    if isinstance(x, Tensor):
        return x if dtype is None or x.type.dtype == dtype else cast(x, dtype)
    if isinstance(x, Update):  # the new value, applying the update when computed
        from . import registry
        registry.CONTROL.append(x)
        try:
            return as_tensor(apply1("identity", [x.value]), dtype)
        finally:
            registry.CONTROL.pop()
    if isinstance(x, (list, tuple)) and any(isinstance(v, Tensor) for v in _flat(x)):
        return _stack(x, dtype)  # [K.shape(x)[0], 3]: stacked like TensorFlow does
    return constant(x, dtype)


def _flat(x):
    for v in x:
        if isinstance(v, (list, tuple)):
            yield from _flat(v)
        else:
            yield v


def _stack(values, dtype: D.DType | None) -> Tensor:
    parts = [as_tensor(v) for v in values]
    dt = dtype or result_dtype(*parts)
    parts = [cast(p, dt) for p in parts]
    if any(p.dims != parts[0].dims for p in parts):
        raise ValueError(f"cannot stack values of shapes {[S.fmt(p.dims) for p in parts]}")
    expanded = [apply1("reshape", [p], {"dims": (1,) + p.dims}) for p in parts]
    return expanded[0] if len(expanded) == 1 else apply1("concatenate", expanded, {"axis": 0})


def cast(x: Tensor, dtype) -> Tensor:
    dtype = D.as_dtype(dtype)
    x = as_tensor(x)
    if x.type.dtype == dtype:
        return x
    return apply1("cast", [x], {"dtype": dtype})


def result_dtype(*xs) -> D.DType:
    """numpy 2 result type of tensors and Python scalars (scalars are weak)."""
    args = []
    for x in xs:
        if isinstance(x, Tensor):
            args.append(x.type.dtype)
        elif isinstance(x, (bool, int, float)) and not isinstance(x, np.generic):
            args.append(x)
        else:
            args.append(D.as_dtype(np.asarray(x).dtype))
    return D.result_type(*args)


def floatx_dtype() -> D.DType:
    from ..backend import config
    return D.as_dtype(config.floatx())


def unary(name: str, x, **attrs) -> Tensor:
    x = as_tensor(x)
    if name in E.FLOAT_ONLY and not x.type.dtype.is_float:
        x = cast(x, floatx_dtype())
    if name in E.LOGICAL:
        x = cast(x, D.bool_)
    if name == "neg" and x.type.dtype.is_bool:
        raise TypeError("negating a bool tensor is not supported; use logical_not (~x)")
    return apply1(name, [x], attrs)


def binary(name: str, a, b) -> Tensor:
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        raise TypeError(f"{name}: at least one operand must be a tensor")
    if name in E.LOGICAL:
        dt = D.bool_
    else:
        dt = result_dtype(a, b)
        if name == "truediv" and not dt.is_float:
            dt = D.float64  # numpy and TensorFlow: integer true division gives float64
        if dt.is_bool and name in ("sub", "truediv", "floordiv", "mod", "pow"):
            raise TypeError(f"{name} of bool tensors is not supported; cast them first")
    a, b = as_tensor(a, dt), as_tensor(b, dt)
    return apply1(name, [a, b])


def select(cond, a, b) -> Tensor:
    if not isinstance(a, Tensor) and not isinstance(b, Tensor) and \
            (isinstance(a, float) or isinstance(b, float)):
        dt = floatx_dtype()  # where(c, 1.0, 0.0): floatx, not float64
    else:
        dt = result_dtype(a, b)
    return apply1("select", [as_tensor(cond, D.bool_), as_tensor(a, dt), as_tensor(b, dt)])


def reduce(name: str, x, axis=None, keepdims=False) -> Tensor:
    from .ops.reduce import FLOAT_ONLY, normalize_axes
    x = as_tensor(x)
    if name in ("any", "all"):
        x = cast(x, D.bool_)
    elif x.type.dtype.is_bool or (name in FLOAT_ONLY and not x.type.dtype.is_float):
        x = cast(x, floatx_dtype())
    axes = normalize_axes(name, x.type, axis)
    return apply1(name, [x], {"axes": axes, "keepdims": bool(keepdims)})


def axis_arg(op: str, x: Tensor, axis: int, extra: int = 0) -> int:
    """A single axis in [-ndim-extra, ndim+extra) -> non-negative."""
    nd = x.ndim + extra
    if not -nd <= axis < nd:
        raise shape_error(op, f"axis {axis} is out of range for rank {x.ndim}", x.type)
    return axis % nd


def reshape(x, dims) -> Tensor:
    """dims: ints, at most one -1, and symbolic dims."""
    x = as_tensor(x)
    dims = list(dims)
    holes = [i for i, d in enumerate(dims) if isinstance(d, int) and d == -1]
    if len(holes) > 1:
        raise shape_error("reshape", f"only one -1 allowed in {tuple(dims)}", x.type)
    if any(isinstance(d, int) and d < -1 for d in dims):
        raise shape_error("reshape", f"negative dimension in {tuple(dims)}", x.type)
    if holes:
        known = S.mul(*(d for i, d in enumerate(dims) if i != holes[0]))
        if known == 0:
            raise shape_error("reshape", f"cannot infer -1 in {tuple(dims)} with a zero size",
                              x.type)
        try:
            dims[holes[0]] = S.div(S.size(x.dims), known, "reshape")
        except ValueError:
            raise shape_error("reshape", f"cannot reshape {S.size(x.dims)} elements into "
                              f"{tuple(dims)}", x.type) from None
    dims = tuple(dims)
    if dims == x.dims:
        return x
    return apply1("reshape", [x], {"dims": dims})


def transpose(x, perm) -> Tensor:
    x = as_tensor(x)
    perm = tuple(int(p) % max(x.ndim, 1) if -x.ndim <= int(p) < x.ndim else int(p) for p in perm)
    if perm == tuple(range(x.ndim)):
        return x
    return apply1("transpose", [x], {"perm": perm})


def broadcast_to(x, dims) -> Tensor:
    x = as_tensor(x)
    dims = tuple(dims)
    if dims == x.dims:
        return x
    return apply1("broadcast_to", [x], {"dims": dims})


def getitem(x: Tensor, key) -> Tensor:
    """numpy basic indexing: ints, slices, None (new axis) and one Ellipsis."""
    if not isinstance(key, tuple):
        key = (key,)
    if isinstance(key[0], Tensor):
        return _tensor_index(x, key)
    if any(isinstance(k, Tensor) for k in key):
        raise TypeError("indexing with a tensor is supported on the first axis only; use "
                        "K.gather or transpose first")
    n_real = sum(1 for k in key if k is not None and k is not Ellipsis)
    if sum(1 for k in key if k is Ellipsis) > 1:
        raise IndexError("an index can only have a single ellipsis")
    if n_real > x.ndim:
        raise IndexError(f"too many indices for a tensor of rank {x.ndim}")
    expanded = []
    for k in key:
        if k is Ellipsis:
            expanded.extend([slice(None)] * (x.ndim - n_real))
        else:
            expanded.append(k)
    if Ellipsis not in key:
        expanded.extend([slice(None)] * (x.ndim - n_real))
    specs, out_dims, indexed, axis = [], [], [], 0
    for k in expanded:
        if k is None:
            out_dims.append(("new",))
            continue
        d = x.dims[axis]
        if isinstance(k, slice):
            start, stop, step = (None if v is None else _index(v) for v in (k.start, k.stop, k.step))
            specs.append((start, stop, 1 if step is None else step))
            out_dims.append(("keep", axis))
        else:
            i = _index(k)
            if isinstance(d, int) and not -d <= i < d:
                raise IndexError(f"index {i} is out of bounds for axis {axis} with size {d}")
            # an int index on an unknown extent is a length-1 slice, checked at run time
            specs.append((i, i + 1 if i != -1 else None, 1))
            out_dims.append(("drop", axis))
            if not isinstance(d, int):
                indexed.append(axis)
        axis += 1
    y = x
    if any(s != (None, None, 1) for s in specs):
        attrs = {"specs": tuple(specs)}
        if indexed:
            attrs["indexed"] = tuple(indexed)
        y = apply1("slice", [x], attrs)
    # drop indexed axes (now of size 1) and add new ones
    dims = tuple(1 if o[0] == "new" else y.dims[o[1]] for o in out_dims if o[0] != "drop")
    if dims != y.dims:
        y = apply1("reshape", [y], {"dims": dims})
    return y


def _tensor_index(x: Tensor, key: tuple) -> Tensor:
    """x[i, ...] with an integer tensor i: a gather along axis 0; negative i counts from the end,
    as Python and TensorFlow's strided slice do."""
    i = key[0]
    if not i.type.dtype.is_int:
        raise TypeError(f"a tensor index must be an integer tensor, got {i.dtype}")
    n = x.dims[0]
    extent = as_tensor(n, i.type.dtype) if isinstance(n, int) else \
        cast(getitem(apply1("shape_of", [x]), 0), i.type.dtype)
    wrapped = select(binary("less", i, 0), binary("add", i, extent), i)
    y = apply1("gather", [x, wrapped], {"batch_dims": 0, "what": "getitem"})
    return getitem(y, (slice(None),) * i.ndim + key[1:]) if len(key) > 1 else y


def _index(v) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (numbers.Integral, np.integer)):
        raise TypeError(f"indices must be integers, slices, None or Ellipsis, got {v!r}")
    return int(v)


def shape_value(t: Tensor):
    """The values of a 0-d or 1-d integer tensor computed from input shapes (K.shape(x)[0],
    products of extents, ...), as a tuple of dims; None when they depend on data."""
    n = t.node
    op = n.op.name
    if op == "shape_of":
        return tuple(n.inputs[0].dims)
    if op == "constant":
        v = n.attrs["value"]
        return tuple(int(x) for x in v.reshape(-1)) if v.dtype.kind in "iu" else None
    vals = [shape_value(i) for i in n.inputs]
    if any(v is None for v in vals):
        return None
    if op in ("cast", "reshape", "identity"):
        return vals[0]
    if op == "slice" and t.ndim == 1:
        start, stop, step = n.attrs["specs"][0]
        return tuple(vals[0][slice(start, stop, step)])
    if op == "concatenate":
        return tuple(d for v in vals for d in v)
    if op == "prod" and n.attrs["axes"] == (0,):
        return (S.mul(*vals[0]),)
    if op in ("mul", "add", "sub"):
        a, b = vals
        if len(a) != len(b):
            a, b = (a * len(b), b) if len(a) == 1 else (a, b * len(a))
        if op == "mul":
            return tuple(S.mul(x, y) for x, y in zip(a, b))
        if op == "add":
            return tuple(S.add(x, y) for x, y in zip(a, b))
        return tuple(S.add(x, S.mul(-1, y)) for x, y in zip(a, b))
    return None
