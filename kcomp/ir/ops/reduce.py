"""Reductions over an axis set, arg-reductions and cumulative scans.

Accumulation is wider than the data (float64 for float16/float32, int64 for integers), and both
the reference and the native kernels (kcomp/templates/cpu/reduce.j2) do it that way, so float32
results stay within a few ulps of a float64 computation.
"""
from __future__ import annotations

import numpy as np

from .. import build as B
from .. import dtypes as D
from .. import shapes as S
from ..autodiff import count, defgrad, unreduce
from ..graph import TensorType
from ..registry import apply1, register, shape_error

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


# ---- gradients ------------------------------------------------------------------------------

def _reduce_grad(*names):
    def deco(fn):
        def rule(node, grads):
            x, y = node.inputs[0], node.outputs[0]
            axes, keep = node.attrs["axes"], node.attrs["keepdims"]
            # g and y broadcast back over the reduced axes
            return [fn(x, unreduce(y, x, axes, keep), unreduce(grads[0], x, axes, keep), axes)]
        defgrad(*names)(rule)
        return fn
    return deco


def _mean_keep(x, axes):
    return B.reduce("mean", x, axes, keepdims=True)


_reduce_grad("sum")(lambda x, y, g, axes: g)
_reduce_grad("mean")(lambda x, y, g, axes: B.binary("truediv", g, count(x, axes)))
_reduce_grad("logsumexp")(lambda x, y, g, axes: B.binary(
    "mul", g, B.unary("exp", B.binary("sub", x, y))))
_reduce_grad("var")(lambda x, y, g, axes: B.binary("mul", g, B.binary(
    "truediv", B.binary("mul", B.binary("sub", x, _mean_keep(x, axes)), 2), count(x, axes))))
_reduce_grad("std")(lambda x, y, g, axes: B.binary("mul", B.binary("truediv", g, y), B.binary(
    "truediv", B.binary("sub", x, _mean_keep(x, axes)), count(x, axes))))


@_reduce_grad("max", "min")
def _extreme_grad(x, y, g, axes):
    # shared equally by the elements that attain the extreme, as TensorFlow does
    hit = B.cast(B.binary("equal", x, y), x.type.dtype)
    n = B.reduce("sum", hit, axes, keepdims=True)
    return B.binary("mul", g, B.binary("truediv", hit, n))


@defgrad("prod")
def _prod_grad(node, grads):
    """Each element's gradient is the product of the others: exclusive products from the left
    times those from the right, so zeros need no division (TensorFlow's method)."""
    x = node.inputs[0]
    axes, keep = node.attrs["axes"], node.attrs["keepdims"]
    g = unreduce(grads[0], x, axes, keep)
    rest = [a for a in range(x.ndim) if a not in axes]
    perm = rest + list(axes)
    flat = B.reshape(B.transpose(x, perm), [x.dims[a] for a in rest] + [S.size(
        [x.dims[a] for a in axes])])
    last = flat.ndim - 1
    one = B.broadcast_to(B.as_tensor(1, x.type.dtype),
                         flat.dims[:-1] + (1,))
    head = B.getitem(flat, (Ellipsis, slice(None, -1)))
    tail = B.getitem(flat, (Ellipsis, slice(1, None)))
    left = apply1("cumprod", [apply1("concatenate", [one, head], {"axis": last})],
                    {"axis": last})
    right_in = apply1("reverse", [apply1("concatenate", [tail, one], {"axis": last})],
                        {"axes": (last,)})
    right = apply1("reverse", [apply1("cumprod", [right_in], {"axis": last})],
                     {"axes": (last,)})
    others = B.binary("mul", left, right)
    inv = [perm.index(a) for a in range(x.ndim)]
    others = B.transpose(B.reshape(others, [x.dims[a] for a in perm]), inv)
    return [B.binary("mul", g, others)]


def _reverse(t, axis):
    return apply1("reverse", [t], {"axes": (axis,)})


@defgrad("cumsum")
def _cumsum_grad(node, grads):
    a = node.attrs["axis"]
    return [_reverse(apply1("cumsum", [_reverse(grads[0], a)], {"axis": a}), a)]


@defgrad("cumprod")
def _cumprod_grad(node, grads):
    # sum over later positions of g * y, divided by x (TensorFlow's rule; x must be nonzero)
    (x,), y, a = node.inputs, node.outputs[0], node.attrs["axis"]
    gy = B.binary("mul", grads[0], y)
    later = _reverse(apply1("cumsum", [_reverse(gy, a)], {"axis": a}), a)
    return [B.binary("truediv", later, x)]
