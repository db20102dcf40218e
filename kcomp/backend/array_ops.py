"""Array construction and indexing: gather, one_hot, reverse, slice, arange, repeat, padding,
resizing (Keras 2.3.1 semantics, TensorFlow backend)."""
from __future__ import annotations

import numbers

import numpy as np

from ..ir import build as B
from ..ir import dtypes as D
from ..ir import shapes as S
from ..ir.graph import Tensor
from ..ir.registry import apply1, shape_error
from . import config

__all__ = ["gather", "one_hot", "reverse", "slice", "arange", "repeat", "temporal_padding",
           "spatial_2d_padding", "spatial_3d_padding", "resize_images", "resize_volumes"]


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def _scalar(value, op: str, what: str) -> S.Dim:
    """An int, or a scalar tensor derived from input shapes (K.shape(x)[0], ...) as a dim."""
    if isinstance(value, Tensor):
        v = B.shape_value(value)
        if v is None or len(v) != 1:
            raise ValueError(f"{op}: {what} {value!r} is not a scalar kcomp can derive from "
                             "input shapes; a data-dependent extent cannot be compiled")
        return v[0]
    if not _is_int(value):
        raise TypeError(f"{op}: {what} must be an int, got {value!r}")
    return int(value)


def _scalars(values, op: str, what: str) -> list:
    if isinstance(values, Tensor):
        v = B.shape_value(values)
        if v is None:
            raise ValueError(f"{op}: {what} {values!r} is not derived from input shapes; "
                             "data-dependent extents cannot be compiled")
        return list(v)
    return [_scalar(v, op, what) for v in values]


def gather(reference, indices):
    """reference[indices] along axis 0 (indices: integers of any rank). An index outside
    [0, len(reference)) raises IndexError when the function runs, as TensorFlow's CPU kernel."""
    return apply1("gather", [B.as_tensor(reference), B.as_tensor(indices)],
                  {"batch_dims": 0, "what": "gather"})


def one_hot(indices, num_classes):
    """float32 (TensorFlow's default) one-hot rows along a new last axis; an index outside
    [0, num_classes) gives a row of zeros."""
    depth = _scalar(num_classes, "one_hot", "num_classes")
    return apply1("one_hot", [B.as_tensor(indices)], {"depth": depth, "dtype": D.float32})


def reverse(x, axes):
    x = B.as_tensor(x)
    axes = [axes] if _is_int(axes) else list(axes)
    norm = [B.axis_arg("reverse", x, int(a)) for a in axes]
    if len(set(norm)) != len(norm):
        raise shape_error("reverse", f"an axis is given more than once in {axes}", x.type)
    if not norm:
        return x
    return apply1("reverse", [x], {"axes": tuple(sorted(norm))})


def slice(x, start, size):  # noqa: A001
    """tf.slice: size[i] items from start[i] along each axis (-1: to the end). The window must
    fit in x (checked at run time along unknown extents)."""
    x = B.as_tensor(x)
    start, size = _scalars(start, "slice", "start"), _scalars(size, "slice", "size")
    if not len(start) == len(size) == x.ndim:
        raise shape_error("slice", f"start {start} and size {size} need one entry per axis of "
                          f"the rank-{x.ndim} input", x.type)
    specs, want = [], []
    for a, (n, b, s) in enumerate(zip(x.dims, start, size)):
        if not S.is_static(b):
            raise ValueError(f"slice: start {b} of axis {a} is not known at graph-build time")
        if not S.is_static(s):
            if s != S.add(n, -b):
                raise ValueError(f"slice: size {s} of axis {a} is not known at graph-build time")
            s = -1  # the rest of the axis
        if b < 0 or s < -1 or (S.is_static(n) and (b > n or (s >= 0 and b + s > n))):
            raise shape_error("slice", f"start {b} and size {s} do not fit axis {a}", x.type)
        specs.append((b, None if s == -1 else b + s, 1))
        want.append(S.add(n, -b) if s == -1 else s)
    y = x
    if any(spec != (0, None, 1) for spec in specs):
        y = apply1("slice", [x], {"specs": tuple(specs)})
    if y.dims != tuple(want):
        y = apply1("expect_dims", [y], {"dims": tuple(want), "where": "slice: the window does "
                                        "not fit in the input (items there vs size)"})
    return y


# tf.range infers the type of its range from its arguments, highest in this order
_RANGE_TYPES = (D.int32, D.int64, D.float32, D.float64)


def _range_arg(v, what: str):
    """(value, type TensorFlow gives it): a dim or an int for integers, a float otherwise."""
    if isinstance(v, Tensor):
        if not v.type.dtype.is_int:
            raise ValueError(f"arange: {what} {v!r} depends on data; kcomp compiles only ranges "
                             "whose bounds derive from input shapes")
        return _scalar(v, "arange", what), v.type.dtype
    if isinstance(v, np.generic):
        dt = D.as_dtype(v.dtype)
        if dt not in _RANGE_TYPES:
            raise TypeError(f"arange: {what} of type {dt.name} is not supported")
        return (int(v) if dt.is_int else float(v)), dt
    if _is_int(v):
        return int(v), D.int32 if -2 ** 31 <= v < 2 ** 31 else D.int64
    if isinstance(v, float):
        return v, D.float32
    raise TypeError(f"arange: {what} must be a number or a scalar tensor, got {v!r}")


_ORDER = "arange: requires start <= stop when step > 0 and start >= stop when step < 0"


def _float_range(lo, hi, st, acc, clamp):
    """(first, length) of a float range, computed in acc as TensorFlow does."""
    if isinstance(lo, S.Sym) or isinstance(hi, S.Sym):
        raise ValueError("arange: a float range needs bounds known at graph-build time")
    a, b, d = (acc.np.type(v) for v in (lo, hi, st))
    if clamp:
        b = max(b, acc.np.type(0))
    if (d > 0 and a > b) or (d < 0 and a < b):
        raise ValueError(f"{_ORDER}, got {lo}, {hi}, {st}")
    return float(a), int(np.ceil(np.abs((b - a) / d)))


def _int_range(lo, hi, st, clamp):
    """(length, nonneg) of an integer range whose bounds may be dims: nonneg is the extent that
    must be >= 0 at run time for the bounds to be in order (None when known or clamped)."""
    if clamp and st < 0:  # range(0, max(n, 0), step < 0): valid only when empty
        hi = max(hi, 0) if S.is_static(hi) else S.slice_len(hi, None, None, 1)
    span = S.add(hi, S.mul(-1, lo)) if st > 0 else S.add(lo, S.mul(-1, hi))
    ordered = clamp and st > 0  # Keras: arange(n) with n < 0 is empty
    if S.is_static(span):
        if span < 0 and not ordered:
            raise ValueError(f"{_ORDER}, got {lo}, {hi}, {st}")
        return max(0, -(-span // abs(st))), None
    return S.slice_len(span, None, None, abs(st)), None if ordered else span


def arange(start, stop=None, step=1, dtype="int32"):
    """tf.range semantics: a range of ints (or floats, accumulated in float32 or float64 like
    TensorFlow), then cast to dtype. start/stop may be scalars derived from input shapes."""
    out = D.as_dtype(dtype)
    clamp = stop is None
    if clamp:
        start, stop = 0, start
    (lo, tlo), (hi, thi), (st, tst) = (_range_arg(v, w) for v, w in
                                       ((start, "start"), (stop, "stop"), (step, "step")))
    acc = max(tlo, thi, tst, key=_RANGE_TYPES.index)
    if isinstance(st, S.Sym) or st == 0:
        raise ValueError(f"arange: step must be a nonzero number known at graph-build time, "
                         f"got {step!r}")
    if acc.is_float:
        (first, length), nonneg = _float_range(lo, hi, st, acc, clamp), None
    else:
        length, nonneg = _int_range(lo, hi, st, clamp)
        # a start known only at run time is added to a range from 0
        first = 0 if isinstance(lo, S.Sym) else lo
    shifted = isinstance(lo, S.Sym)
    r = apply1("arange", [], {"start": first, "step": st, "length": length, "acc": acc,
                              "dtype": acc if shifted else out, "nonneg": nonneg})
    if shifted:
        r = B.cast(B.binary("add", r, B.cast(B.reshape(start, ()), acc)), out)
    return r


def repeat(x, n):
    """(batch, dim) -> (batch, n, dim): each row repeated n times."""
    x = B.as_tensor(x)
    if x.ndim != 2:
        raise shape_error("repeat", "needs a rank-2 input", x.type)
    n = _scalar(n, "repeat", "n")
    b, d = x.dims
    return B.broadcast_to(B.reshape(x, (b, 1, d)), (b, n, d))


def _pad(op: str, x, rank: int, pads):
    x = B.as_tensor(x)
    if x.ndim != rank:
        raise shape_error(op, f"needs a rank-{rank} input", x.type)
    pads = tuple((int(p[0]), int(p[1])) for p in pads)
    if any(p < 0 for pair in pads for p in pair):
        raise shape_error(op, f"negative padding in {pads}", x.type)
    if all(p == (0, 0) for p in pads):
        return x
    return apply1("pad", [x], {"pads": pads})


def _spatial(op: str, padding, n: int, data_format):
    """Keras's ((before, after), ...) per spatial axis -> one pair per axis of the input."""
    fmt = config.normalize_data_format(data_format)
    if len(padding) != n or any(len(p) != 2 for p in padding):
        raise ValueError(f"{op}: padding must be {n} pairs (before, after), got {padding!r}")
    pairs = [tuple(p) for p in padding]
    return [(0, 0), (0, 0)] + pairs if fmt == "channels_first" else \
        [(0, 0)] + pairs + [(0, 0)]


def temporal_padding(x, padding=(1, 1)):
    """Zeros before and after axis 1 of a (batch, steps, features) tensor."""
    if len(padding) != 2:
        raise ValueError(f"temporal_padding: padding must be (before, after), got {padding!r}")
    return _pad("temporal_padding", x, 3, [(0, 0), tuple(padding), (0, 0)])


def spatial_2d_padding(x, padding=((1, 1), (1, 1)), data_format=None):
    return _pad("spatial_2d_padding", x, 4,
                _spatial("spatial_2d_padding", padding, 2, data_format))


def spatial_3d_padding(x, padding=((1, 1), (1, 1), (1, 1)), data_format=None):
    return _pad("spatial_3d_padding", x, 5,
                _spatial("spatial_3d_padding", padding, 3, data_format))


def _factors(op: str, factors, least: int):
    for f in factors:
        if not _is_int(f) or f < least:
            raise ValueError(f"{op}: factors must be ints >= {least}, got {factors}")
    return tuple(int(f) for f in factors)


def resize_images(x, height_factor, width_factor, data_format, interpolation="nearest"):
    """TensorFlow's resize_nearest_neighbor / resize_bilinear (legacy pixel mapping) of a 4D
    tensor by integer factors; bilinear returns float32, as TensorFlow does."""
    fmt = config.normalize_data_format(data_format)
    if interpolation not in ("nearest", "bilinear"):
        raise ValueError('interpolation should be one of "nearest" or "bilinear".')
    x = B.as_tensor(x)
    if x.ndim != 4:
        raise shape_error("resize_images", "needs a rank-4 input", x.type)
    return apply1("resize_images", [x], {
        "axes": (2, 3) if fmt == "channels_first" else (1, 2),
        "factors": _factors("resize_images", (height_factor, width_factor), 1),
        "method": interpolation})


def resize_volumes(x, depth_factor, height_factor, width_factor, data_format):
    """repeat_elements along the three spatial axes of a 5D tensor, as one broadcast copy:
    (.., d, ..) -> (.., d, 1, ..) -> (.., d, f, ..) -> (.., d * f, ..)."""
    fmt = config.normalize_data_format(data_format)
    x = B.as_tensor(x)
    if x.ndim != 5:
        raise shape_error("resize_volumes", "needs a rank-5 input", x.type)
    factors = _factors("resize_volumes", (depth_factor, height_factor, width_factor), 0)
    axes = (2, 3, 4) if fmt == "channels_first" else (1, 2, 3)
    split, wide, out = [], [], []
    for a, d in enumerate(x.dims):
        f = factors[axes.index(a)] if a in axes else 1
        split.append(d)
        wide.append(d)
        out.append(S.mul(d, f))
        if f != 1:
            split.append(1)
            wide.append(f)
    return B.reshape(B.broadcast_to(B.reshape(x, split), wide), out)
