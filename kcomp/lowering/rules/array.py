"""Kernels of the array ops (kcomp/ir/ops/array.py) and in_top_k (nn_extra.py).

gather has a template of its own (array_gather.j2: it can fail); the others are loop nests in
elementwise.j2 (parallel over the first axis) or serial.j2, with helpers in kcomp/array.h.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

from ...ir import shapes as S
from ...ir.graph import Node
from .. import scalar
from ..names import Code, c_string, int_lit, join, literal
from ..plan import Kernel
from . import rule
from .common import PARALLEL_MIN, Axis, Pointers, contiguous_strides, emit_copy, label_of, loop_ctx


def _nest(L, extents: Sequence[S.Dim]) -> Tuple[dict, List[Code]]:
    """Loop parameters over `extents` and the index of each axis. The first two axes share the
    parallel loop, so a batch of one still spreads over the threads."""
    if len(extents) < 2:
        return loop_ctx(L, list(extents) or [1]), [Code("i0")]
    e1 = L.dims.expr(extents[1])
    ctx = loop_ctx(L, [S.mul(extents[0], extents[1])] + list(extents[2:]))
    return ctx, [Code(f"(i0 / {e1})"), Code(f"(i0 % {e1})")] + \
        [Code(f"i{a - 1}") for a in range(2, len(extents))]


def _offset(L, terms) -> Code:
    """sum of index * stride over (index, stride) pairs."""
    parts = [Code(f"{i} * {L.dims.expr(s)}") if s != 1 else i for i, s in terms if s != 0]
    return join(" + ", parts) if parts else Code("0")


def _loop_kernel(L, node: Node, ctx: dict, ptrs: Pointers, loads=(), body=(), stores=()):
    ctx.update(ptrs=ptrs.decls, loads=list(loads), body=list(body), stores=list(stores))
    L.add(Kernel(L.kernel_name(), "elementwise", ctx, label_of([node]), ptrs.reads, ptrs.writes))


@rule("gather")
def _gather(L, node: Node):
    ref, idx = node.inputs
    out = node.outputs[0]
    b = node.attrs["batch_dims"]
    ptrs = Pointers()
    ctx = {"ref": ptrs.get(L.ref(ref).buf), "idx": ptrs.get(L.ref(idx).buf),
           "out": ptrs.get(L.ref(out).buf, write=True), "S": Code(ref.type.dtype.ctype),
           "bound": L.dims.expr(ref.dims[b]), "inner": L.dims.expr(S.size(ref.dims[b + 1:])),
           "n": L.dims.expr(S.size(idx.dims)), "batched": b > 0,
           "per_batch": L.dims.expr(S.size(idx.dims[b:])),
           "msg": c_string(f"{node.attrs['what']}: index out of range"), "can_fail": True,
           "ptrs": ptrs.decls}
    L.add(Kernel(L.kernel_name(), "array_gather", ctx, label_of([node]), ptrs.reads, ptrs.writes))


@rule("scatter_add")
def _scatter_add(L, node: Node):
    g, idx = node.inputs
    out = node.outputs[0]
    b = node.attrs["batch_dims"]
    ptrs = Pointers()
    inner = S.size(out.dims[b + 1:])
    ctx = {"g": ptrs.get(L.ref(g).buf), "idx": ptrs.get(L.ref(idx).buf),
           "out": ptrs.get(L.ref(out).buf, write=True), "S": Code(out.type.dtype.ctype),
           "bound": L.dims.expr(out.dims[b]), "inner": L.dims.expr(inner),
           "n": L.dims.expr(S.size(idx.dims)), "batched": b > 0,
           "per_batch": L.dims.expr(S.size(idx.dims[b:])),
           "size": L.dims.expr(S.size(out.dims)),
           "msg": c_string(f"{node.attrs['what']}: index out of range"), "can_fail": True,
           "ptrs": ptrs.decls}
    L.add(Kernel(L.kernel_name(), "array_scatter", ctx, label_of([node]), ptrs.reads,
                 ptrs.writes))


@rule("one_hot")
def _one_hot(L, node: Node):
    idx, out = node.inputs[0], node.outputs[0]
    depth = out.dims[-1]
    ptrs = Pointers()
    pi, po = ptrs.get(L.ref(idx).buf), ptrs.get(L.ref(out).buf, write=True)
    _loop_kernel(L, node, loop_ctx(L, [S.size(idx.dims), depth]), ptrs,
                 loads=[Code(f"const int64_t ix = (int64_t){pi}[i0];")],
                 stores=[Code(f"{po}[i0 * {L.dims.expr(depth)} + i1] = "
                              f"({out.type.dtype.ctype})(ix == i1);")])


@rule("reverse")
def _reverse(L, node: Node):
    x, out = node.inputs[0], node.outputs[0]
    strides = contiguous_strides(x.dims)
    base: S.Dim = 0  # the source offset of the first item copied: the last along each axis
    axes = []
    for a, (n, s) in enumerate(zip(x.dims, strides)):
        if a in node.attrs["axes"]:
            base = S.add(base, S.mul(S.add(n, -1), s))
            axes.append(Axis(n, ("lin", S.mul(-1, s)), ("lin", s)))
        else:
            axes.append(Axis(n, ("lin", s), ("lin", s)))
    emit_copy(L, L.ref(x), L.ref(out), axes, src_base=base, label=label_of([node]))


@rule("pad")
def _pad(L, node: Node):
    x, out = node.inputs[0], node.outputs[0]
    pads, dims = list(node.attrs["pads"]), list(x.dims)
    # the last padded axis and the unpadded ones after it make the rows: padded by whole blocks
    last = max(k for k, p in enumerate(pads) if p != (0, 0))
    block = S.size(dims[last + 1:])
    before, after = (S.mul(p, block) for p in pads[last])
    n = S.mul(dims[last], block)
    outer = [(e, p, s) for e, p, s in zip(dims[:last], pads[:last],
                                          contiguous_strides(dims[:last]))
             if e != 1 or p != (0, 0)]
    # a row's position along each outer axis (the last varies fastest) and its input row
    coords, inside, src = [Code("int64_t rest = r;")], [], []
    for k in range(len(outer) - 1, -1, -1):
        e, (ob, oa), stride = outer[k]
        extent = L.dims.expr(S.add(e, ob, oa))
        coords += [Code(f"const int64_t c{k} = rest % {extent};"), Code(f"rest /= {extent};")] \
            if k else [Code("const int64_t c0 = rest;")]
        pos = Code(f"(c{k} - {L.dims.expr(ob)})") if ob != 0 else Code(f"c{k}")
        if ob != 0 or oa != 0:
            inside.append(Code(f"(uint64_t){pos} < (uint64_t){L.dims.expr(e)}"))
        src.append(pos if stride == 1 else Code(f"{pos} * {L.dims.expr(stride)}"))
    ptrs = Pointers()
    ctx = {"x": ptrs.get(L.ref(x).buf), "y": ptrs.get(L.ref(out).buf, write=True),
           "S": Code(x.type.dtype.ctype), "n": L.dims.expr(n),
           "before": L.dims.expr(before), "after": L.dims.expr(after),
           "width": L.dims.expr(S.add(n, before, after)),
           "rows": L.dims.expr(S.mul(*(S.add(e, ob, oa) for e, (ob, oa), _ in outer))),
           "coords": coords if outer else [], "inside": join(" && ", inside or [Code("true")]),
           "src": join(" + ", src or [Code("0")]), "ptrs": ptrs.decls}
    L.add(Kernel(L.kernel_name(), "array_pad", ctx, label_of([node]), ptrs.reads, ptrs.writes))


@rule("resize_images")
def _resize_images(L, node: Node):
    L.include("kcomp/array.h")
    x, out = node.inputs[0], node.outputs[0]
    (ah, aw) = node.attrs["axes"]
    ctx, iv = _nest(L, out.dims)
    own = contiguous_strides(x.dims)
    ptrs = Pointers()
    px, po = ptrs.get(L.ref(x).buf), ptrs.get(L.ref(out).buf, write=True)
    write = _offset(L, zip(iv, contiguous_strides(out.dims)))
    sizes = {a: (L.dims.expr(x.dims[a]), L.dims.expr(out.dims[a])) for a in (ah, aw)}
    if node.attrs["method"] == "nearest":
        src = [Code(f"kc::resize_nearest({v}, {sizes[a][0]}, {sizes[a][1]})")
               if a in sizes else v for a, v in enumerate(iv)]
        store = Code(f"{po}[{write}] = {px}[{_offset(L, zip(src, own))}];")
        _loop_kernel(L, node, ctx, ptrs, stores=[store])
        return
    base = _offset(L, [(v, own[a]) for a, v in enumerate(iv) if a not in sizes])
    loads = [Code(f"const kc::Lerp ly = kc::resize_linear({iv[ah]}, {sizes[ah][0]}, "
                  f"{sizes[ah][1]});"),
             Code(f"const kc::Lerp lx = kc::resize_linear({iv[aw]}, {sizes[aw][0]}, "
                  f"{sizes[aw][1]});")]
    for name, y, xx in (("tl", "lo", "lo"), ("tr", "lo", "hi"), ("bl", "hi", "lo"),
                        ("br", "hi", "hi")):
        at = _offset(L, [(Code(f"ly.{y}"), own[ah]), (Code(f"lx.{xx}"), own[aw])])
        loads.append(Code(f"const float {name} = (float){px}[{base} + {at}];"))
    # TensorFlow's compute_lerp, in float32
    body = [Code("const float top = tl + (tr - tl) * lx.t;"),
            Code("const float bottom = bl + (br - bl) * lx.t;")]
    store = Code(f"{po}[{write}] = top + (bottom - top) * ly.t;")
    _loop_kernel(L, node, ctx, ptrs, loads=loads, body=body, stores=[store])


@rule("arange")
def _arange(L, node: Node):
    out = node.outputs[0]
    acc, dt = node.attrs["acc"], out.type.dtype
    ptrs = Pointers()
    po = ptrs.get(L.ref(out).buf, write=True)
    value = scalar.expression("cast", [Code("v")], {"dtype": dt}, acc, dt)
    # sequential, as TensorFlow's range kernel accumulates (the rounding of float steps)
    body = [Code(f"{acc.ctype} v = {literal(node.attrs['start'], acc)};"),
            Code(f"for (int64_t i = 0; i < {L.dims.expr(out.dims[0])}; ++i) {{"),
            Code(f"  {po}[i] = ({dt.ctype}){value};"),
            Code(f"  v = ({acc.ctype})(v + {literal(node.attrs['step'], acc)});"),
            Code("}")]
    L.add(Kernel(L.kernel_name(), "serial", {"ptrs": ptrs.decls, "body": body},
                 label_of([node]), [], ptrs.writes))


@rule("in_top_k")
def _in_top_k(L, node: Node):
    L.include("kcomp/array.h")
    pred, tgt = node.inputs
    out = node.outputs[0]
    rows, n = pred.dims
    ptrs = Pointers()
    pp, pt = ptrs.get(L.ref(pred).buf), ptrs.get(L.ref(tgt).buf)
    po = ptrs.get(L.ref(out).buf, write=True)
    N = L.dims.expr(n)
    ctx = loop_ctx(L, [rows])
    work = S.mul(rows, n)  # a row costs n comparisons
    ctx.update(serial=isinstance(work, int) and work < PARALLEL_MIN, grain=Code(f"kc_grain({N})"))
    store = Code(f"{po}[i0] = kc::in_top_k<{pred.type.dtype.compute}>({pp} + i0 * {N}, {N}, "
                 f"(int64_t){pt}[i0], {int_lit(node.attrs['k'])});")
    _loop_kernel(L, node, ctx, ptrs, stores=[store])
