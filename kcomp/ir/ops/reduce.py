"""Reductions over an axis set, arg-reductions and cumulative scans.

Accumulation is wider than the data (float64 for float16/float32, int64 for integers), and both
the reference and the native kernels (kcomp/templates/cpu/reduce.j2) do it that way, so float32
results stay within a few ulps of a float64 computation.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes as D
from ..graph import TensorType
from ..registry import register, shape_error

REDUCTIONS = ("sum", "prod", "max", "min", "mean", "var", "std", "any", "all", "logsumexp")
FLOAT_ONLY = ("var", "std", "logsumexp")


def normalize_axes(op: str, t: TensorType, axis) -> tuple:
    """Keras axis argument (None, int or list) -> sorted tuple of non-negative axes."""
    nd = t.ndim
    if axis is None:
        return tuple(range(nd))
    axes = [axis] if isinstance(axis, (int, np.integer)) else list(axis)
    out = set()
    for a in axes:
        a = int(a)
        if not -nd <= a < max(nd, 1) or (nd == 0 and a not in (0, -1)):
            raise shape_error(op, f"axis {a} is out of range for rank {nd}", t)
        out.add(a % nd if nd else 0)
    return tuple(sorted(a for a in out if a < nd))


def acc_dtype(dt: D.DType) -> np.dtype:
    if dt.is_float:
        return np.dtype(np.float64)
    if dt.kind == "u":
        return np.dtype(np.uint64)
    return np.dtype(np.int64)


def _reduce_infer(name):
    def infer(types, attrs):
        (t,) = types
        if name in ("any", "all") and not t.dtype.is_bool:
            raise shape_error(name, f"needs a bool operand, got {t.dtype.name}", t)
        if name in FLOAT_ONLY and not t.dtype.is_float:
            raise shape_error(name, f"needs a float operand, got {t.dtype.name}", t)
        if t.dtype.is_bool and name not in ("any", "all", "max", "min"):
            raise shape_error(name, "cannot reduce a bool operand; cast it first", t)
        axes = attrs["axes"]
        if name in ("max", "min"):
            for a in axes:
                if t.dims[a] == 0:
                    raise shape_error(name, f"zero-size axis {a} has no {name}", t)
        if attrs["keepdims"]:
            dims = tuple(1 if i in axes else d for i, d in enumerate(t.dims))
        else:
            dims = tuple(d for i, d in enumerate(t.dims) if i not in axes)
        return [TensorType(t.dtype, dims)]
    return infer


def _trunc_div(s, n):
    """C integer division (towards zero), as the native kernel divides an integer sum."""
    if n == 0:
        return np.zeros_like(s)
    return np.sign(s) * (np.abs(s) // n)


def _reduce_ref(name):
    def ref(values, attrs, out_types):
        (x,) = values
        axes, keep = attrs["axes"], attrs["keepdims"]
        out = out_types[0].dtype
        acc = acc_dtype(out)
        n = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
        with np.errstate(all="ignore"):
            if name == "sum":
                r = np.sum(x, axis=axes, keepdims=keep, dtype=acc)
            elif name == "prod":
                r = np.prod(x, axis=axes, keepdims=keep, dtype=acc)
            elif name == "max":
                r = np.max(x, axis=axes, keepdims=keep)
            elif name == "min":
                r = np.min(x, axis=axes, keepdims=keep)
            elif name == "any":
                r = np.any(x, axis=axes, keepdims=keep)
            elif name == "all":
                r = np.all(x, axis=axes, keepdims=keep)
            elif name == "mean":
                s = np.sum(x, axis=axes, keepdims=keep, dtype=acc)
                r = s / n if out.is_float else _trunc_div(s, n)
            elif name in ("var", "std"):
                xd = x.astype(np.float64)
                m = np.sum(xd, axis=axes, keepdims=True) / n
                r = np.sum((xd - m) ** 2, axis=axes, keepdims=keep) / n
                if name == "std":
                    r = np.sqrt(r)
            elif name == "logsumexp":
                # TensorFlow's formulation: a non-finite max is replaced by 0 before shifting
                xf = x.astype(np.float32) if x.dtype == np.float16 else x
                m = np.max(xf, axis=axes, keepdims=True) if x.size else np.zeros(
                    [1 if i in axes else d for i, d in enumerate(x.shape)], xf.dtype)
                m = np.where(np.isfinite(m), m, 0).astype(xf.dtype)
                s = np.sum(np.exp(xf - m), axis=axes, keepdims=True, dtype=np.float64)
                r = np.log(s) + m
                if not keep:
                    r = np.squeeze(r, axis=axes)
            else:
                raise AssertionError(name)
        return [np.asarray(r).astype(out.np)]
    return ref


for _name in REDUCTIONS:
    register(_name, "reduce", _reduce_infer(_name), _reduce_ref(_name),
             exact=_name in ("max", "min", "any", "all"),
             doc="attrs: axes (sorted tuple), keepdims")


def _arg_infer(name):
    def infer(types, attrs):
        (t,) = types
        a = attrs["axis"]
        if t.dims[a] == 0:
            raise shape_error(name, f"zero-size axis {a} has no {name}", t)
        return [TensorType(D.int64, tuple(d for i, d in enumerate(t.dims) if i != a))]
    return infer


def _arg_ref(fn):
    def ref(values, attrs, out_types):
        return [np.asarray(fn(values[0], axis=attrs["axis"])).astype(np.int64)]
    return ref


register("argmax", "reduce", _arg_infer("argmax"), _arg_ref(np.argmax), exact=True,
         doc="attrs: axis. First index of the maximum (of the first NaN, if any); int64")
register("argmin", "reduce", _arg_infer("argmin"), _arg_ref(np.argmin), exact=True,
         doc="attrs: axis. First index of the minimum (of the first NaN, if any); int64")


def _scan_infer(name):
    def infer(types, attrs):
        (t,) = types
        if t.dtype.is_bool:
            raise shape_error(name, "cannot accumulate a bool operand; cast it first", t)
        return [t]
    return infer


def _scan_ref(fn):
    def ref(values, attrs, out_types):
        (x,) = values
        with np.errstate(all="ignore"):
            # sequential accumulation in the data type (float16 rounds at every step)
            r = fn(x, axis=attrs["axis"], dtype=x.dtype)
        return [r]
    return ref


register("cumsum", "reduce", _scan_infer("cumsum"), _scan_ref(np.cumsum),
         doc="attrs: axis. Running sum in the data type")
register("cumprod", "reduce", _scan_infer("cumprod"), _scan_ref(np.cumprod),
         doc="attrs: axis. Running product in the data type")
