"""Array construction and indexing with kernels of their own: gather, one_hot, reverse, pad,
resize_images, arange; and expect_dims, a view that checks extents at run time.

Kernels are in kcomp/lowering/rules/array.py. gather is the only one that can find bad data
(an index out of range raises IndexError when the compiled function runs, as TensorFlow's CPU
kernel rejects it); everything else is total.
"""
from __future__ import annotations

import numpy as np

from .. import build as B
from .. import dtypes as D
from .. import shapes as S
from ..autodiff import defgrad, expect
from ..graph import TensorType
from ..registry import apply1, register, shape_error


def _one(fn):
    """Reference of a single-input, single-output op."""
    return lambda values, attrs, out_types: [np.asarray(fn(values[0], attrs, out_types[0]))]


def _need_int(op, t, what, *types):
    if not t.dtype.is_int:
        raise shape_error(op, f"{what} must be integers, got {t.dtype.name}", *types)


# ---- gather -----------------------------------------------------------------------------------

def _gather_infer(types, attrs):
    ref, idx = types
    b, op = attrs["batch_dims"], attrs["what"]
    _need_int(op, idx, "indices", ref, idx)
    if ref.ndim < b + 1 or idx.ndim < b:
        raise shape_error(op, f"needs reference rank > {b} and indices rank >= {b}", ref, idx)
    for i in range(b):
        try:
            S.same(ref.dims[i], idx.dims[i], f"{op}: batch dimension {i} differs")
        except ValueError:
            raise shape_error(op, f"batch dimension {i} differs", ref, idx) from None
    return [TensorType(ref.dtype, ref.dims[:b] + idx.dims[b:] + ref.dims[b + 1:])]


def _gather_ref(values, attrs, out_types):
    ref, idx = values
    b, out = attrs["batch_dims"], out_types[0]
    bound = ref.shape[b]
    ix = idx.astype(np.int64).reshape(int(np.prod(idx.shape[:b], dtype=np.int64)),
                                      int(np.prod(idx.shape[b:], dtype=np.int64)))
    bad = (ix < 0) | (ix >= bound)
    if bad.any():
        raise IndexError(f"{attrs['what']}: index out of range: {int(ix[bad][0])} vs {bound}")
    r = ref.reshape((ix.shape[0], bound) + ref.shape[b + 1:])
    return [r[np.arange(ix.shape[0])[:, None], ix].reshape(out.dims)]


# not exact: folding constants must not raise IndexError before the function runs
register("gather", "other", _gather_infer, _gather_ref,
         doc="attrs: batch_dims, what (the op named in errors). out[b.., i.., r..] = "
             "reference[b.., indices[b.., i..], r..]; an index outside [0, n) raises IndexError")


def _scatter_infer(types, attrs):
    g, idx = types
    b, dims = attrs["batch_dims"], tuple(attrs["dims"])
    _need_int("scatter_add", idx, "indices", g, idx)
    want = dims[:b] + idx.dims[b:] + dims[b + 1:]
    if g.ndim != len(want):
        raise shape_error("scatter_add", f"updates of rank {g.ndim} for indices {S.fmt(idx.dims)} "
                          f"into {S.fmt(dims)}", g, idx)
    for a, (d, w) in enumerate(zip(g.dims, want)):
        S.same(d, w, f"scatter_add: updates axis {a} differs")
    for i in range(b):
        S.same(idx.dims[i], dims[i], f"scatter_add: batch dimension {i} differs")
    return [TensorType(g.dtype, dims)]


def _scatter_ref(values, attrs, out_types):
    g, idx = values
    b, out = attrs["batch_dims"], out_types[0]
    bound = out.dims[b]
    nb = int(np.prod(out.dims[:b], dtype=np.int64))
    ix = idx.astype(np.int64).reshape(nb, int(np.prod(idx.shape[b:], dtype=np.int64)))
    bad = (ix < 0) | (ix >= bound)
    if bad.any():
        raise IndexError(f"{attrs['what']}: index out of range: {int(ix[bad][0])} vs {bound}")
    r = np.zeros((nb, bound) + out.dims[b + 1:], g.dtype)
    np.add.at(r, (np.arange(nb)[:, None], ix), g.reshape(ix.shape + out.dims[b + 1:]))
    return [r.reshape(out.dims)]


register("scatter_add", "other", _scatter_infer, _scatter_ref,
         doc="attrs: batch_dims, dims, what. The adjoint of gather: zeros of extents dims, then "
             "out[b.., indices[b.., i..], r..] += updates[b.., i.., r..]")


# ---- one_hot ----------------------------------------------------------------------------------

def _one_hot_infer(types, attrs):
    (idx,) = types
    _need_int("one_hot", idx, "indices", idx)
    if S.is_static(attrs["depth"]) and attrs["depth"] < 0:
        raise shape_error("one_hot", f"negative num_classes {attrs['depth']}", idx)
    return [TensorType(attrs["dtype"], idx.dims + (attrs["depth"],))]


register("one_hot", "other", _one_hot_infer,
         _one(lambda x, a, o: (x.astype(np.int64)[..., None] == np.arange(o.dims[-1]))
              .astype(o.dtype.np)),
         exact=True,
         doc="attrs: depth, dtype. 1 where the last axis equals the index; an index outside "
             "[0, depth) gives a row of zeros (TensorFlow)")


# ---- reverse ----------------------------------------------------------------------------------

register("reverse", "other", lambda types, attrs: [types[0]],
         _one(lambda x, a, o: np.flip(x, a["axes"]).copy()), exact=True,
         doc="attrs: axes (sorted, distinct). Reverses the order of items along those axes")


# ---- pad --------------------------------------------------------------------------------------

def _pad_infer(types, attrs):
    (t,) = types
    pads = attrs["pads"]
    if len(pads) != t.ndim or any(p < 0 for pair in pads for p in pair):
        raise shape_error("pad", f"paddings {pads} do not fit rank {t.ndim}", t)
    return [TensorType(t.dtype, tuple(S.add(d, b, a) for d, (b, a) in zip(t.dims, pads)))]


register("pad", "other", _pad_infer, _one(lambda x, a, o: np.pad(x, a["pads"])), exact=True,
         doc="attrs: pads, one (before, after) per axis. Zeros around x")


# ---- resize_images ----------------------------------------------------------------------------

def _resize_infer(types, attrs):
    (t,) = types
    if t.ndim != 4:
        raise shape_error("resize_images", "needs a rank-4 input", t)
    bilinear = attrs["method"] == "bilinear"
    if bilinear and t.dtype.is_bool:
        raise shape_error("resize_images", "bilinear interpolation of bool is undefined", t)
    dims = list(t.dims)
    for a, f in zip(attrs["axes"], attrs["factors"]):
        dims[a] = S.mul(dims[a], f)
    # TensorFlow's resize_bilinear computes and returns float32 whatever the input type
    return [TensorType(D.float32 if bilinear else t.dtype, tuple(dims))]


def _source(n: int, factor: int):
    """TensorFlow's legacy scaler (align_corners=False, half_pixel_centers=False): output item
    i reads input position i * (n / (n * factor)), computed in float32."""
    with np.errstate(all="ignore"):  # 0 / 0 for an empty axis, never used
        scale = np.float32(n) / np.float32(n * factor)
    return np.arange(n * factor).astype(np.float32) * scale


def _resize_ref(values, attrs, out_types):
    (x,) = values
    if attrs["method"] == "nearest":
        for a, f in zip(attrs["axes"], attrs["factors"]):
            n = x.shape[a]
            x = np.take(x, np.minimum(np.floor(_source(n, f)).astype(np.int64), n - 1), axis=a)
        return [np.ascontiguousarray(x)]
    x = x.astype(np.float32)
    (ah, aw), (fh, fw) = attrs["axes"], attrs["factors"]

    def weights(a, f):
        """The two input items each output item blends along axis a, and the second's weight."""
        v = _source(x.shape[a], f)
        vf = np.floor(v)
        lo = np.maximum(vf.astype(np.int64), 0)
        hi = np.minimum(np.ceil(v).astype(np.int64), x.shape[a] - 1)
        return lo, hi, (v - vf).reshape([-1 if i == a else 1 for i in range(x.ndim)])

    ylo, yhi, yt = weights(ah, fh)
    xlo, xhi, xt = weights(aw, fw)
    top, bottom = np.take(x, ylo, axis=ah), np.take(x, yhi, axis=ah)
    tl, tr = np.take(top, xlo, axis=aw), np.take(top, xhi, axis=aw)
    bl, br = np.take(bottom, xlo, axis=aw), np.take(bottom, xhi, axis=aw)
    t = tl + (tr - tl) * xt
    b = bl + (br - bl) * xt
    return [(t + (b - t) * yt).astype(np.float32)]


register("resize_images", "other", _resize_infer, _resize_ref,
         doc="attrs: axes (rows, cols), factors, method ('nearest' or 'bilinear'). TensorFlow's "
             "resize_nearest_neighbor / resize_bilinear with align_corners=False and "
             "half_pixel_centers=False; bilinear returns float32")


# ---- arange -----------------------------------------------------------------------------------

def _arange_infer(types, attrs):
    n, nonneg = attrs["length"], attrs["nonneg"]
    if S.is_static(n) and n < 0:
        raise shape_error("arange", f"negative length {n}")
    if nonneg is not None:
        # start <= stop (step > 0) or start >= stop (step < 0), known only at run time
        S.same(S.slice_len(nonneg, None, None, 1), nonneg,
               "arange: requires start <= stop when step > 0 and start >= stop when step < 0")
    return [TensorType(attrs["dtype"], (n,))]


def _arange_ref(values, attrs, out_types):
    out = out_types[0]
    acc = attrs["acc"].np
    v = np.full(out.dims, attrs["step"], dtype=acc)
    if v.size:
        v[0] = attrs["start"]
    with np.errstate(all="ignore"):
        # TensorFlow's range kernel accumulates: v[i + 1] = v[i] + step, in the range's type
        return [np.cumsum(v, dtype=acc).astype(out.dtype.np)]


register("arange", "other", _arange_infer, _arange_ref, exact=True,
         doc="attrs: start, step (numbers), length, acc (the type the range is computed in), "
             "dtype (of the result), nonneg (None, or an extent that must be >= 0 at run time)")


# ---- expect_dims (a view) ---------------------------------------------------------------------

def _expect_infer(types, attrs):
    (t,) = types
    want, where = attrs["dims"], attrs["where"]
    try:
        for d, w in zip(t.dims, want):
            S.same(d, w, where)
    except ValueError as e:
        raise shape_error(where.split(":")[0], str(e).split(": ", 1)[-1], t) from None
    return [TensorType(t.dtype, tuple(want))]


register("expect_dims", "view", _expect_infer, _one(lambda x, a, o: x), exact=True,
         doc="attrs: dims, where (the error message). x itself, seen with extents dims once "
             "they are checked to equal its own (at run time where either is unknown)")


# ---- gradients ------------------------------------------------------------------------------

@defgrad("gather")
def _gather_grad(node, grads):
    ref, idx = node.inputs
    return [apply1("scatter_add", [grads[0], idx], {"batch_dims": node.attrs["batch_dims"],
                                                     "dims": ref.dims,
                                                     "what": node.attrs["what"]}), None]


@defgrad("scatter_add")
def _scatter_add_grad(node, grads):
    idx = node.inputs[1]
    return [apply1("gather", [grads[0], idx], {"batch_dims": node.attrs["batch_dims"],
                                               "what": node.attrs["what"]}), None]


defgrad("reverse")(lambda node, grads: [apply1("reverse", [grads[0]], node.attrs)])


@defgrad("pad")
def _pad_grad(node, grads):
    specs = tuple((b, -a if a else None, 1) for b, a in node.attrs["pads"])
    return [apply1("slice", [grads[0]], {"specs": specs})]


def _interpolation(n: int, factor: int, method: str) -> np.ndarray:
    """The (n * factor, n) matrix A of one axis of resize_images: out = A . in along it."""
    v = _source(n, factor)
    rows = np.arange(n * factor)
    a = np.zeros((n * factor, n), np.float64)
    if method == "nearest":
        a[rows, np.minimum(np.floor(v).astype(np.int64), n - 1)] = 1
        return a
    vf = np.floor(v)
    t = (v - vf).astype(np.float64)
    np.add.at(a, (rows, np.maximum(vf.astype(np.int64), 0)), 1 - t)
    np.add.at(a, (rows, np.minimum(np.ceil(v).astype(np.int64), n - 1)), t)
    return a


@defgrad("resize_images")
def _resize_grad(node, grads):
    """resize_images is linear along each axis (out = A . in, A from _interpolation), so the
    gradient is A^T . g along each: two matrix products."""
    x, g = node.inputs[0], grads[0]
    for a, f in zip(node.attrs["axes"], node.attrs["factors"]):
        n = x.dims[a]
        if not isinstance(n, int):
            raise NotImplementedError("gradients: resize_images over an unknown spatial extent")
        matrix = B.as_tensor(_interpolation(n, f, node.attrs["method"]).astype(
            g.type.dtype.np))
        perm = [i for i in range(g.ndim) if i != a] + [a]
        moved = apply1("dot", [B.transpose(g, perm), matrix])
        g = B.transpose(moved, [perm.index(i) for i in range(g.ndim)])
    return [g]


defgrad("expect_dims")(lambda node, grads: [expect(grads[0], node.inputs[0].dims)])
