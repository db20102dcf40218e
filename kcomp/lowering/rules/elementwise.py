"""Elementwise groups: one fused loop nest per group (kcomp/ir/passes/fusion.py)."""
from __future__ import annotations

from typing import Dict, List, Tuple

from ...ir.graph import Tensor
from ...ir.passes.fusion import Group
from .. import scalar
from ..names import Code
from ..plan import Kernel, Ref
from .common import (Pointers, broadcast_strides, collapse, contiguous_strides, index_expr, key,
                     label_of, loop_ctx)


def lower_elementwise(L, g: Group) -> None:
    it = list(g.root.outputs[0].type.dims)
    ptrs = Pointers()
    members = {m.uid for m in g.members}
    values: Dict[tuple, Code] = {}
    operands: List[Tuple[Code, Ref, Tensor]] = []
    for m in g.members:
        for t in m.inputs:
            k = key(t)
            if t.node.uid in members or k in values:
                continue
            if k in L.inline:
                values[k] = L.inline[k]
                continue
            ref = L.ref(t)
            name = Code(f"x{len(operands)}")
            operands.append((name, ref, t))
            values[k] = name
    body = []
    for i, m in enumerate(g.members):
        out = m.outputs[0]
        args = [values[key(t)] for t in m.inputs]
        e = scalar.expression(m.op.name, args, m.attrs, m.inputs[-1].type.dtype, out.type.dtype)
        name = Code(f"v{i}")
        body.append(Code(f"const {out.type.dtype.compute} {name} = {e};"))
        values[key(out)] = name
    stores = [(L.ref(t), t) for t in g.stored]

    stride_sets = [broadcast_strides(ref.dims, it) for _, ref, _ in operands] + \
        [contiguous_strides(it) for _ in stores]
    extents, stride_sets = collapse(it, stride_sets)
    loads = []
    for (name, ref, t), strides in zip(operands, stride_sets):
        p = ptrs.get(ref.buf)
        loads.append(Code(f"const {t.type.dtype.compute} {name} = "
                          f"({t.type.dtype.compute}){p}[{index_expr(L, strides)}];"))
    store_lines = []
    for (ref, t), strides in zip(stores, stride_sets[len(operands):]):
        p = ptrs.get(ref.buf, write=True)
        store_lines.append(Code(f"{p}[{index_expr(L, strides)}] = "
                                f"({ref.buf.dtype.ctype}){values[key(t)]};"))
    ctx = loop_ctx(L, extents)
    ctx.update(ptrs=ptrs.decls, loads=loads, body=body, stores=store_lines)
    L.add(Kernel(L.kernel_name(), "elementwise", ctx, label_of(g.members), ptrs.reads,
                 ptrs.writes))


