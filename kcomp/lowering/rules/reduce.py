"""Reductions, arg-reductions, scans and softmax (templates reduce.j2, scan.j2, softmax.j2)."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

from ...ir import shapes as S
from ...ir.graph import Node
from ...ir.passes.fusion import REDUCTIONS, Group
from .. import scalar
from ..names import Code
from ..plan import Kernel, Ref
from . import rule
from .common import TILE, Axis, Pointers, contiguous_strides, emit_copy, key, label_of


def split_axes(dims: Sequence[S.Dim], axes: Sequence[int]) -> Optional[Tuple[S.Dim, S.Dim, S.Dim]]:
    """(outer, reduced, inner) extents when the reduced axes are adjacent (ignoring size-1
    axes); None when kept axes sit between them."""
    kinds = [(i in axes) for i, d in enumerate(dims) if d != 1]
    extents = [d for d in dims if d != 1]
    red_pos = [k for k, r in enumerate(kinds) if r]
    if red_pos and red_pos != list(range(red_pos[0], red_pos[-1] + 1)):
        return None
    if not red_pos:
        return S.mul(*extents), 1, 1
    lo, hi = red_pos[0], red_pos[-1] + 1
    return S.mul(*extents[:lo]), S.mul(*extents[lo:hi]), S.mul(*extents[hi:])


REDUCERS = {"sum": "Sum", "mean": "Mean", "prod": "Prod", "max": "Max", "min": "Min",
            "any": "Any", "all": "All"}


def lower_reduce_prologue(L, g: Group) -> None:
    """A reduction over the last axis of a value that the rest of group g computes (fusion's
    prologue): each row is computed into a buffer of the kernel's thread and reduced there,
    never stored. On CUDA the value is stored and reduced as usual."""
    from .elementwise import _loop_parts, lower_elementwise
    node = g.root
    x = node.inputs[0]
    pro = Group(g.members[:-1], [x])
    if L.target != "cpu":
        L.storage[key(x)] = L.scratch_for(x)
        lower_elementwise(L, pro)
        _reduce(L, node)
        return
    ptrs = Pointers()
    loads, body, stores, _, _ = _loop_parts(L, pro, list(x.dims), ptrs, rows=True,
                                            into=(x, Code("buf")))
    _reduce(L, node, ptrs, {"loads": loads, "body": body, "stores": stores},
            label=label_of(g.members))


@rule(*sorted(REDUCTIONS))
def _reduce(L, node: Node, ptrs: Pointers = None, prologue: dict = None, label: str = None):
    """prologue: the loop body computing a row of the input into `buf` (rows only)."""
    L.include("kcomp/reduce.h")
    name = node.op.name
    x, out = node.inputs[0], node.outputs[0]
    axes = (node.attrs["axis"],) if name in ("argmax", "argmin") else node.attrs["axes"]
    split = split_axes(x.dims, axes)
    ptrs = ptrs or Pointers()
    if prologue:  # rows of the prologue's buffer
        xin = Code("buf")
    else:
        src = L.ref(x)
        if split is None:
            # move the reduced axes last with a transpose into scratch, then reduce rows
            perm = [a for a in range(x.ndim) if a not in axes] + list(axes)
            tdims = tuple(x.dims[p] for p in perm)
            tmp = Ref(L.buffer(x.type.dtype, tdims, "scratch"), tdims)
            own = contiguous_strides(x.dims)
            dst = contiguous_strides(tdims)
            emit_copy(L, src, tmp, [Axis(tdims[a], ("lin", own[perm[a]]), ("lin", dst[a]))
                                    for a in range(x.ndim)],
                      label=f"{name}: move reduced axes last")
            src = tmp
            split = (S.mul(*tdims[:x.ndim - len(axes)]), S.mul(*tdims[x.ndim - len(axes):]), 1)
        xin = ptrs.get(src.buf)
    O, N, I = split
    out_ref = L.ref(out)
    yout = ptrs.get(out_ref.buf, write=True)
    T, TO = x.type.dtype, out.type.dtype
    red = Code(f"kc::red::{REDUCERS.get(name, 'Sum')}<{T.compute}, {TO.compute}>")
    moments = name in ("var", "std")
    f32 = T.name == "float32" and TO.name == "float32" and name not in ("argmax", "argmin")
    # splitting rows into blocks pays off only when there are fewer rows than threads (and
    # reads the input in place: not with a prologue)
    may_split = not (isinstance(O, int) and O >= 8) and not prologue
    arg = name in ("argmax", "argmin")
    ctx = {
        "ptrs": ptrs.decls, "x": xin, "y": yout, "y_slot": out_ref.buf.slot, "kind": Code(name),
        "red": red, "T": Code(T.compute), "S": Code(T.ctype), "TO": Code(TO.compute),
        "SO": Code(TO.ctype), "O": L.dims.expr(O), "N": L.dims.expr(N), "I": L.dims.expr(I),
        "rows": I == 1, "tile": TILE,
        # float32 in and out: the vectorised paths of reduce.h
        "f32": f32,
        "may_split": may_split,
        # rows split into blocks: the plain reducers, var/std, and float32 argmax/argmin (the
        # blocks' indices merged in order)
        "split_rows": may_split and I == 1 and (name != "logsumexp" and not arg
                                                or arg and T.name == "float32"),
        "x_slot": None if prologue else src.buf.slot,
        # float32 columns of few slices: bands of rows (kc::red::col_bands)
        "bands": f32 and I != 1 and may_split and name in ("sum", "mean", "max", "min"),
        "empty_error": name in ("max", "min", "argmax", "argmin"),
        "root": Code("true" if name == "std" else "false"),
        "part_t": Code("kc::red::Moments" if moments else "int64_t" if arg else f"{red}::A"),
        "merge": Code("kc::red::merge_moments" if moments else f"{red}::merge"),
        "better": Code("kc::red::better_max" if name == "argmax" else "kc::red::better_min"),
        "prologue": prologue,
    }
    L.add(Kernel(L.kernel_name(), "reduce", ctx, label or label_of([node]), ptrs.reads,
                 ptrs.writes))


@rule("cumsum", "cumprod")
def _scan(L, node: Node):
    x, out = node.inputs[0], node.outputs[0]
    axis = node.attrs["axis"]
    O, N, I = S.mul(*x.dims[:axis]), x.dims[axis], S.mul(*x.dims[axis + 1:])
    ptrs = Pointers()
    T = x.type.dtype
    step = "+" if node.op.name == "cumsum" else "*"
    ctx = {"ptrs": ptrs.decls, "x": ptrs.get(L.ref(x).buf), "y": ptrs.get(L.ref(out).buf, True),
           "T": Code(T.compute), "S": Code(T.ctype), "O": L.dims.expr(O),
           "N": L.dims.expr(N), "I": L.dims.expr(I), "tile": TILE, "rows": I == 1,
           "init": Code("0" if step == "+" else "1"),
           "combine": scalar.expression("add" if step == "+" else "mul",
                                        [Code("acc"), Code("x")], {}, T, T)}
    ctx["combine_t"] = scalar.expression("add" if step == "+" else "mul",
                                         [Code("acc[j]"), Code("x")], {}, T, T)
    L.add(Kernel(L.kernel_name(), "scan", ctx, label_of([node]), ptrs.reads, ptrs.writes))


@rule("softmax")
def _softmax(L, node: Node):
    L.include("kcomp/reduce.h")
    x, out = node.inputs[0], node.outputs[0]
    axis = node.attrs["axis"]
    O, N, I = S.mul(*x.dims[:axis]), x.dims[axis], S.mul(*x.dims[axis + 1:])
    ptrs = Pointers()
    T = x.type.dtype
    ctx = {"ptrs": ptrs.decls, "x": ptrs.get(L.ref(x).buf), "y": ptrs.get(L.ref(out).buf, True),
           "T": Code(T.compute), "S": Code(T.ctype), "O": L.dims.expr(O),
           "N": L.dims.expr(N), "I": L.dims.expr(I), "tile": TILE, "rows": I == 1,
           "f32": T.name == "float32"}
    L.add(Kernel(L.kernel_name(), "softmax", ctx, label_of([node]), ptrs.reads, ptrs.writes))


