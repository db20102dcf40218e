"""Layout ops as index-mapping copies: transpose, broadcast_to, slice, tile, repeat_elements,
concatenate; and shape_of."""
from __future__ import annotations

from ...ir import shapes as S
from ...ir.graph import Node
from ..names import Code
from ..plan import Kernel
from . import rule
from .common import (Axis, Pointers, broadcast_strides, contiguous_strides, copy_strided,
                     emit_copy, fill, key, label_of, strided_view)


@rule("transpose")
def _transpose(L, node: Node):
    x, out = node.inputs[0], node.outputs[0]
    own = contiguous_strides(x.dims)
    perm = node.attrs["perm"]
    dst = contiguous_strides(out.dims)
    axes = [Axis(out.dims[a], ("lin", own[perm[a]]), ("lin", dst[a])) for a in range(out.ndim)]
    emit_copy(L, L.ref(x), L.ref(out), axes, label=label_of([node]))


@rule("broadcast_to")
def _broadcast_to(L, node: Node):
    x, out = node.inputs[0], node.outputs[0]
    src = broadcast_strides(x.dims, out.dims)
    dst = contiguous_strides(out.dims)
    axes = [Axis(out.dims[a], ("lin", src[a]), ("lin", dst[a])) for a in range(out.ndim)]
    emit_copy(L, L.ref(x), L.ref(out), axes, label=label_of([node]))


@rule("slice")
def _slice(L, node: Node):
    copy_strided(L, L.ref(node.inputs[0]), L.ref(node.outputs[0]), node.attrs["specs"],
                 label_of([node]))


@rule("unslice")
def _unslice(L, node: Node):
    g, out = node.inputs[0], node.outputs[0]
    base, dst = strided_view(L, node.attrs["specs"], out.dims, g.dims)
    fill(L, L.ref(out), Code("0"), label=f"zeros -> {out.type}")
    src = contiguous_strides(g.dims)
    axes = [Axis(n, ("lin", s), ("lin", d)) for n, s, d in zip(g.dims, src, dst)]
    emit_copy(L, L.ref(g), L.ref(out), axes, dst_base=base, label=label_of([node]))


@rule("tile")
def _tile(L, node: Node):
    """Output axis a is (copy q < reps[a], element i < n): two axes of the copy, the copy's with
    source stride 0, so that every axis is linear and the innermost one a contiguous run
    (an index modulo n in the innermost loop did not vectorize: 7x numpy's time). The copy
    loop goes outside the element loop on the last axis only, inside elsewhere: the outermost
    loop, which the threads share, is then the longest."""
    x, out = node.inputs[0], node.outputs[0]
    own = contiguous_strides(x.dims)
    dst = contiguous_strides(out.dims)
    axes = []
    for a, r in enumerate(node.attrs["reps"]):
        element = Axis(x.dims[a], ("lin", own[a]), ("lin", dst[a]))
        if r == 1:
            axes.append(element)
            continue
        copy = Axis(r, ("lin", 0), ("lin", S.mul(x.dims[a], dst[a])))
        axes += [copy, element] if a == x.ndim - 1 else [element, copy]
    emit_copy(L, L.ref(x), L.ref(out), axes, label=label_of([node]))


@rule("repeat_elements")
def _repeat(L, node: Node):
    """Output axis `axis` is (element i, copy q < rep), the copy's axis with source stride 0."""
    x, out = node.inputs[0], node.outputs[0]
    own = contiguous_strides(x.dims)
    dst = contiguous_strides(out.dims)
    axis, rep = node.attrs["axis"], node.attrs["rep"]
    axes = []
    for a in range(x.ndim):
        if a == axis and rep != 1:
            axes += [Axis(x.dims[a], ("lin", own[a]), ("lin", S.mul(rep, dst[a]))),
                     Axis(rep, ("lin", 0), ("lin", dst[a]))]
        else:
            axes.append(Axis(x.dims[a], ("lin", own[a]), ("lin", dst[a])))
    emit_copy(L, L.ref(x), L.ref(out), axes, label=label_of([node]))


@rule("concatenate")
def _concat(L, node: Node):
    out = node.outputs[0]
    axis = node.attrs["axis"]
    dst = contiguous_strides(out.dims)
    offset: S.Dim = 0
    for x in node.inputs:
        own = contiguous_strides(x.dims)
        axes = [Axis(x.dims[a], ("lin", own[a]), ("lin", dst[a])) for a in range(x.ndim)]
        if key(x) in L.inline:
            raise AssertionError("concatenate operands always have buffers")
        emit_copy(L, L.ref(x), L.ref(out), axes, dst_base=S.mul(offset, dst[axis]),
                  label=f"concatenate part -> {out.type}")
        offset = S.add(offset, x.dims[axis])


@rule("shape_of")
def _shape_of(L, node: Node):
    x, out = node.inputs[0], node.outputs[0]
    ptrs = Pointers()
    d = ptrs.get(L.ref(out).buf, write=True)
    stores = [Code(f"{d}[{a}] = (int32_t){L.dims.expr(n)};") for a, n in enumerate(x.dims)]
    L.add(Kernel(L.kernel_name(), "serial", {"ptrs": ptrs.decls, "body": stores},
                 label_of([node]), [], ptrs.writes))


