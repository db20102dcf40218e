"""Shape and layout ops: views over the same buffer (reshape), and copies that move elements
(transpose, broadcast_to, strided slice, concatenate, tile, repeat_elements), plus shape_of.

All the copying ops lower to index-mapping loops; reshape costs nothing at run time. References
receive concrete output types (the interpreter resolves symbolic dims first).
"""
from __future__ import annotations

import numpy as np

from .. import build as B
from .. import dtypes as D
from .. import shapes as S
from ..autodiff import defgrad, expect, sum_to
from ..graph import TensorType
from ..registry import apply1, register, shape_error


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


def _unslice_infer(types, attrs):
    (g,) = types
    dims, specs = attrs["dims"], attrs["specs"]
    if len(specs) != len(dims) or g.ndim != len(dims):
        raise shape_error("unslice", f"{len(specs)} slices for rank {g.ndim}", g)
    for a, (d, (start, stop, step)) in enumerate(zip(dims, specs)):
        S.same(g.dims[a], S.slice_len(d, start, stop, step),
               f"unslice: axis {a} does not match its slice")
    return [TensorType(g.dtype, tuple(dims))]


def _unslice_ref(values, attrs, out_types):
    out = np.zeros(out_types[0].dims, out_types[0].dtype.np)
    out[tuple(slice(*s) for s in attrs["specs"])] = values[0]
    return [out]


register("unslice", "other", _unslice_infer, _unslice_ref, exact=True,
         doc="attrs: specs (as slice's), dims. The adjoint of slice: zeros of extents dims with "
             "the input written where slice would read it")


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


# ---- gradients ------------------------------------------------------------------------------

def _like_input(fn):
    """A rule of a one-input op: fn(x, g, attrs) -> x's gradient."""
    return lambda node, grads: [fn(node.inputs[0], grads[0], node.attrs)]


defgrad("reshape")(_like_input(lambda x, g, a: apply1("reshape", [g], {"dims": x.dims})))
defgrad("transpose")(_like_input(lambda x, g, a: B.transpose(
    g, [a["perm"].index(i) for i in range(x.ndim)])))
defgrad("broadcast_to")(_like_input(lambda x, g, a: sum_to(g, x.dims)))
defgrad("slice")(_like_input(lambda x, g, a: apply1(
    "unslice", [g], {"specs": a["specs"], "dims": x.dims})))
defgrad("unslice")(_like_input(lambda x, g, a: apply1("slice", [g], {"specs": a["specs"]})))


@defgrad("tile")
def _tile_grad(node, grads):
    # g seen as (r0, d0, r1, d1, ...), summed over the repetition axes
    x, g = node.inputs[0], grads[0]
    split, axes = [], []
    for d, r in zip(x.dims, node.attrs["reps"]):
        if r != 1:
            axes.append(len(split))
            split.append(r)
        split.append(d)
    return [B.reshape(B.reduce("sum", B.reshape(g, split), axes), x.dims)]


@defgrad("repeat_elements")
def _repeat_grad(node, grads):
    x, g = node.inputs[0], grads[0]
    axis, rep = node.attrs["axis"], node.attrs["rep"]
    split = x.dims[:axis + 1] + (rep,) + x.dims[axis + 1:]
    return [B.reduce("sum", B.reshape(g, split), axis + 1)]


@defgrad("concatenate")
def _concat_grad(node, grads):
    """Each operand's part of g: a slice whose bounds are counted from the start or from the
    end, whichever is known."""
    axis, g = node.attrs["axis"], grads[0]
    sizes = [t.dims[axis] for t in node.inputs]
    parts = []
    for i, t in enumerate(node.inputs):
        before, after = S.add(0, *sizes[:i]), S.add(0, *sizes[i + 1:])
        begin = before if isinstance(before, int) else -S.add(after, sizes[i]) \
            if isinstance(S.add(after, sizes[i]), int) else None
        end = S.add(before, sizes[i]) if isinstance(S.add(before, sizes[i]), int) else \
            (-after or None) if isinstance(after, int) else None
        if begin is None or (end is None and i + 1 < len(sizes)):
            raise NotImplementedError("gradients: concatenate of several operands of unknown "
                                      "extent along its axis")
        specs = tuple((begin, end, 1) if a == axis else (None, None, 1) for a in range(g.ndim))
        parts.append(expect(apply1("slice", [g], {"specs": specs}), t.dims))
    return parts
