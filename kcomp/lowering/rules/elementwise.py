"""Elementwise groups: one fused loop nest per group (kcomp/ir/passes/fusion.py); slices in a
group are loads from the slice's source at the slice's offsets and strides."""
from __future__ import annotations

from typing import Dict, List, Tuple

from ...ir.graph import Tensor
from ...ir.passes.fusion import Group
from .. import scalar
from ..names import Code
from ..plan import Kernel, Ref
from .common import (Pointers, broadcast_strides, collapse, contiguous_strides, index_expr, key,
                     label_of, loop_ctx, slice_map)


def lower_elementwise(L, g: Group) -> None:
    it = list(g.root.outputs[0].type.dims)
    ptrs = Pointers()
    members = {m.uid for m in g.members}
    values: Dict[tuple, Code] = {}
    # operands: (name, buffer, dtype, strides over `it`, base offset)
    operands: List[Tuple[Code, object, object, list, object]] = []
    body = []
    for m in g.members:
        if m.op.name == "slice":  # read through: load the sliced elements from the source
            src, out = L.ref(m.inputs[0]), m.outputs[0]
            base, strides = slice_map(L, m)
            name = Code(f"x{len(operands)}")
            operands.append((name, src.buf, out.type.dtype,
                             broadcast_strides(out.dims, it, strides), base))
            values[key(out)] = name
            continue
        for t in m.inputs:
            k = key(t)
            if t.node.uid in members or k in values:
                continue
            if k in L.inline:
                values[k] = L.inline[k]
                continue
            ref = L.ref(t)
            name = Code(f"x{len(operands)}")
            operands.append((name, ref.buf, t.type.dtype, broadcast_strides(ref.dims, it), 0))
            values[k] = name
    for i, m in enumerate(g.members):
        if m.op.name == "slice":
            continue
        out = m.outputs[0]
        args = [values[key(t)] for t in m.inputs]
        e = scalar.expression(m.op.name, args, m.attrs, m.inputs[-1].type.dtype, out.type.dtype)
        name = Code(f"v{i}")
        body.append(Code(f"const {out.type.dtype.compute} {name} = {e};"))
        values[key(out)] = name
    stores = [(L.ref(t), t) for t in g.stored]

    stride_sets = [op[3] for op in operands] + [contiguous_strides(it) for _ in stores]
    extents, stride_sets = collapse(it, stride_sets)
    loads = []
    for (name, buf, dtype, _, base), strides in zip(operands, stride_sets):
        p = ptrs.get(buf)
        loads.append(Code(f"const {dtype.compute} {name} = "
                          f"({dtype.compute}){p}[{index_expr(L, strides, base=L.dims.expr(base) if base != 0 else None)}];"))
    store_lines = []
    for (ref, t), strides in zip(stores, stride_sets[len(operands):]):
        p = ptrs.get(ref.buf, write=True)
        store_lines.append(Code(f"{p}[{index_expr(L, strides)}] = "
                                f"({ref.buf.dtype.ctype}){values[key(t)]};"))
    ctx = loop_ctx(L, extents)
    ctx.update(ptrs=ptrs.decls, loads=loads, body=body, stores=store_lines)
    L.add(Kernel(L.kernel_name(), "elementwise", ctx, label_of(g.members), ptrs.reads,
                 ptrs.writes))
