"""Shape and layout ops: views over the same buffer (reshape), and copies that move elements
(transpose, broadcast_to, strided slice, concatenate, tile, repeat_elements), plus shape_of.

All the copying ops lower to index-mapping loops; reshape costs nothing at run time. References
receive concrete output types (the interpreter resolves symbolic dims first).
"""
from __future__ import annotations

import numpy as np

from .. import dtypes as D
from .. import shapes as S
from ..graph import TensorType
from ..registry import register, shape_error


def _one(fn):
    """Reference of a single-input, single-output op."""
    return lambda values, attrs, out_types: [np.array(fn(values[0], attrs))]


# ---- reshape (a view) -------------------------------------------------------------------------

def _reshape_infer(types, attrs):
    (t,) = types
    dims = attrs["dims"]
    if S.is_static(S.size(t.dims)) and S.is_static(S.size(dims)) and S.size(t.dims) != S.size(dims):
        raise shape_error("reshape", f"cannot reshape {S.size(t.dims)} elements into "
                          f"{S.fmt(dims)}", t)
    S.same(S.size(t.dims), S.size(dims), "reshape: element counts differ")
    return [TensorType(t.dtype, dims)]


register("reshape", "view", _reshape_infer,
         lambda v, a, o: [v[0].reshape(o[0].dims)], exact=True,
         doc="attrs: dims (the target shape; symbolic dims allowed)")


# ---- transpose ---------------------------------------------------------------------------------

def _transpose_infer(types, attrs):
    (t,) = types
    perm = attrs["perm"]
    if sorted(perm) != list(range(t.ndim)):
        raise shape_error("transpose", f"pattern {perm} is not a permutation of "
                          f"{tuple(range(t.ndim))}", t)
    return [TensorType(t.dtype, tuple(t.dims[p] for p in perm))]


register("transpose", "other", _transpose_infer, _one(lambda x, a: np.transpose(x, a["perm"])),
         exact=True, doc="attrs: perm (output axis i is input axis perm[i])")


# ---- broadcast_to ------------------------------------------------------------------------------

def _broadcast_infer(types, attrs):
    (t,) = types
    dims = attrs["dims"]
    if len(dims) < t.ndim:
        raise shape_error("broadcast_to", f"cannot broadcast to the lower rank {S.fmt(dims)}", t)
    try:
        out = S.broadcast_shapes(t.dims, dims, where="broadcast_to")
    except ValueError:
        raise shape_error("broadcast_to", f"cannot broadcast to {S.fmt(dims)}", t) from None
    if any(o != d and isinstance(d, int) for o, d in zip(out, dims)):
        raise shape_error("broadcast_to", f"cannot broadcast to {S.fmt(dims)}", t)
    return [TensorType(t.dtype, tuple(dims))]


register("broadcast_to", "other", _broadcast_infer,
         lambda v, a, o: [np.array(np.broadcast_to(v[0], o[0].dims))], exact=True,
         doc="attrs: dims")


# ---- strided slice -----------------------------------------------------------------------------

def _slice_infer(types, attrs):
    (t,) = types
    specs = attrs["specs"]
    if len(specs) != t.ndim:
        raise shape_error("slice", f"{len(specs)} slices for rank {t.ndim}", t)
    dims = []
    for a, (d, (start, stop, step)) in enumerate(zip(t.dims, specs)):
        if step == 0:
            raise shape_error("slice", "slice step cannot be zero", t)
        n = S.slice_len(d, start, stop, step)
        if a in attrs.get("indexed", ()):
            # x[i] on an unknown extent: exactly one item must be selected at run time
            n = S.same(n, 1, f"index {start} is out of range for axis {a} (items selected vs 1)")
        dims.append(n)
    return [TensorType(t.dtype, tuple(dims))]


register("slice", "other", _slice_infer,
         _one(lambda x, a: x[tuple(slice(*s) for s in a["specs"])]), exact=True,
         doc="attrs: specs, one (start, stop, step) per axis with Python slice semantics; "
             "indexed, the axes indexed by an int (one item, checked at run time)")


# ---- concatenate -------------------------------------------------------------------------------

def _concat_infer(types, attrs):
    axis = attrs["axis"]
    first = types[0]
    if any(t.ndim != first.ndim for t in types) or any(t.dtype != first.dtype for t in types):
        raise shape_error("concatenate", "operands need one rank and one dtype", *types)
    dims = list(first.dims)
    for t in types[1:]:
        for i, d in enumerate(t.dims):
            if i == axis:
                dims[i] = S.add(dims[i], d)
            else:
                try:
                    dims[i] = S.same(dims[i], d, f"concatenate: dimension {i} differs")
                except ValueError:
                    raise shape_error("concatenate", f"dimension {i} differs", *types) from None
    return [TensorType(first.dtype, tuple(dims))]


register("concatenate", "other", _concat_infer,
         lambda v, a, o: [np.concatenate(v, axis=a["axis"])], exact=True, doc="attrs: axis")


# ---- tile and repeat_elements ------------------------------------------------------------------

def _tile_infer(types, attrs):
    (t,) = types
    reps = attrs["reps"]
    if len(reps) != t.ndim or any(r < 0 for r in reps):
        raise shape_error("tile", f"repetitions {reps} do not fit rank {t.ndim}", t)
    return [TensorType(t.dtype, tuple(S.mul(d, r) for d, r in zip(t.dims, reps)))]


register("tile", "other", _tile_infer, _one(lambda x, a: np.tile(x, a["reps"])), exact=True,
         doc="attrs: reps (one per axis)")


def _repeat_infer(types, attrs):
    (t,) = types
    axis, rep = attrs["axis"], attrs["rep"]
    if rep < 0:
        raise shape_error("repeat_elements", f"negative repetition count {rep}", t)
    dims = list(t.dims)
    dims[axis] = S.mul(dims[axis], rep)
    return [TensorType(t.dtype, tuple(dims))]


register("repeat_elements", "other", _repeat_infer,
         _one(lambda x, a: np.repeat(x, a["rep"], axis=a["axis"])), exact=True,
         doc="attrs: rep, axis")


# ---- shape_of ----------------------------------------------------------------------------------

register("shape_of", "other", lambda types, attrs: [TensorType(D.int32, (types[0].ndim,))],
         lambda v, a, o: [np.array(v[0].shape, dtype=np.int32)], exact=True,
         doc="the run-time shape of the input as an int32 vector")
