"""Elementwise groups: one fused loop nest per group (kcomp/ir/passes/fusion.py); slices in a
group are loads from the slice's source at the slice's offsets and strides."""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from ...ir import shapes as S
from ...ir.passes.fusion import Group
from .. import scalar
from ..names import Code
from ..plan import Kernel
from .common import (Pointers, broadcast_strides, collapse, contiguous_strides, index_expr, key,
                     label_of, loop_ctx, slice_map)


def lower_elementwise(L, g: Group) -> None:
    if g.product is not None:
        lower_epilogue(L, g)
        return
    it = list(g.root.outputs[0].type.dims)
    ptrs = Pointers()
    trig = L.target == "cpu" and any(m.op.name in ("sin", "cos") for m in g.members)
    loads, body, store_lines, extents, vec = _loop_parts(L, g, it, ptrs, loop_trig=trig,
                                                         vector=L.target == "cuda")
    ctx = loop_ctx(L, extents, cost=_cost(g))
    ctx.update(ptrs=ptrs.decls, loads=loads, body=body, stores=store_lines, vec=vec)
    # a second run of a range is only right when the loop writes no buffer it reads
    ctx.update(trig=trig, rerun=not {b.slot for b in ptrs.reads} & {b.slot for b in ptrs.writes})
    L.add(Kernel(L.kernel_name(), "elementwise", ctx, label_of(g.members), ptrs.reads,
                 ptrs.writes))


# ops that cost tens of instructions per element (exp, a division, a polynomial)
EXPENSIVE = {"exp", "log", "tanh", "sigmoid", "softplus", "softsign", "elu", "pow", "sin", "cos",
             "sqrt", "truediv", "floordiv", "mod"}


def _cost(g: Group) -> int:
    """An element's work in copies' units: with exponentials, fewer elements fill a thread."""
    return 1 + 8 * sum(m.op.name in EXPENSIVE for m in g.members)


def lower_epilogue(L, g: Group) -> None:
    """The group's product, a dot (a GEMM) or a (depthwise) convolution, whose epilogue computes
    the rest of the group on each finished block of its output C, seen as rows i0 (a
    convolution's output pixels) and columns i1 (the last axis)."""
    from .conv import emit_conv, emit_window
    from .linalg import emit_dot
    product = g.product
    rest = Group([m for m in g.members if m is not product], g.stored)
    out = product.outputs[0]
    if L.target == "cuda":
        fused = _bias_act(L, g, product)
        if fused is not None:  # the CUDA library GEMM's own epilogue: no pass of its own
            L.storage[key(out)] = L.ref(g.stored[0])
            emit = emit_dot if product.op.name == "dot" else emit_conv
            emit(L, product, bias=fused[0], act=fused[1], label=label_of(g.members))
            return
    it = list(out.dims)
    ptrs = Pointers()
    cval = Code("cv")
    loads, body, store_lines, _, _ = _loop_parts(L, rest, it, ptrs, given={key(out): cval},
                                                 rows=True)
    # C: the group's output when it is the only value stored and has C's type (in place)
    if len(g.stored) == 1 and g.stored[0].type == out.type:
        c_ref = L.ref(g.stored[0])
    else:
        c_ref = L.scratch_for(out)
    cp = ptrs.get(c_ref.buf, write=True)
    n = L.dims.expr(out.dims[-1])
    loads.insert(0, Code(f"const {out.type.dtype.compute} {cval} = "
                         f"({out.type.dtype.compute}){cp}[i0 * {n} + i1];"))
    L.storage[key(out)] = c_ref
    epi = {"ptrs": ptrs.decls, "loads": loads, "body": body, "stores": store_lines}
    emit = {"dot": emit_dot, "conv": emit_conv, "depthwise_conv": emit_window}[product.op.name]
    emit(L, product, epi=epi, label=label_of(g.members), reads=ptrs.reads, writes=ptrs.writes)


# activations the CUDA kernel library applies itself (csrc/include/kcomp/cuda_api.h, kc_act):
# the GEMM's epilogue, the recurrent kernel (rules/recurrent.py)
KC_ACTS = {"relu": "KC_ACT_RELU", "sigmoid": "KC_ACT_SIGMOID", "tanh": "KC_ACT_TANH",
           "hard_sigmoid": "KC_ACT_HARD_SIGMOID"}


def kc_act(node) -> str | None:
    """node's kc_act name if it is one of KC_ACTS (relu in its plain form), else None."""
    name = node.op.name
    if name not in KC_ACTS or name == "relu" and (node.attrs["alpha"] != 0 or
                                                  node.attrs["threshold"] != 0 or
                                                  node.attrs["max_value"] is not None):
        return None
    return KC_ACTS[name]


def _bias_act(L, g: Group, dot):
    """A Dense (or Conv) layer's epilogue, dot(x, W) + b (or conv(x, W) + b) then at most one
    plain activation, stored once as the group's last value, float: (bias buffer, kc_act name)
    for the CUDA library GEMM, or None."""
    out = dot.outputs[0]
    rest = [m for m in g.members if m is not dot]
    if len(g.stored) != 1 or g.stored[0].node is not g.root or g.stored[0].type != out.type \
            or (dot.op.name == "dot" and dot.inputs[1].ndim != 2) or not out.type.dtype.is_float \
            or not 1 <= len(rest) <= 2 or rest[0].op.name != "add":
        return None
    a, b = rest[0].inputs
    bias = b if key(a) == key(out) else a if key(b) == key(out) else None
    n = out.dims[-1]
    # a bias row: (n,), or (1, ..., 1, n) as K.bias_add reshapes it for a convolution
    if bias is None or tuple(bias.dims) != (1,) * (bias.ndim - 1) + (n,) \
            or bias.type.dtype != out.type.dtype \
            or key(bias) not in L.storage:
        return None
    act = "KC_ACT_NONE"
    if len(rest) == 2:
        m = rest[1]
        act = kc_act(m)
        if key(m.inputs[0]) != key(rest[0].outputs[0]) or act is None:
            return None
    return L.ref(bias), Code(act)


def _loop_parts(L, g: Group, it, ptrs: Pointers, given=None, rows=False, into=None,
                loop_trig=False, vector=False):
    """Loads, body, stores, loop extents and vector parts (_vector_parts where `vector` is
    asked for and applies, else None) of group g over iteration space `it`. given: values
    already in variables. rows: the space is seen as (rows, last axis), loop variables i0 and i1
    (when the operands' leading axes do not collapse to one, the loads first split i0 into
    them: a broadcast operand of a middle axis). into: (tensor, array name):
    instead of the group's stores, the tensor's value into that array at [i1] (a reduction
    prologue's row). loop_trig: sin and cos as elementwise.j2 calls them (scalar.expression)."""
    members = {m.uid for m in g.members}
    values: Dict[tuple, Code] = dict(given or {})
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
        e = scalar.expression(m.op.name, args, m.attrs, m.inputs[-1].type.dtype, out.type.dtype,
                              loop_trig)
        name = Code(f"v{i}")
        body.append(Code(f"const {out.type.dtype.compute} {name} = {e};"))
        values[key(out)] = name
    stores = [] if into else [(L.ref(t), t) for t in g.stored] + \
        [(r, t) for t in g.stored for r in L.also_store.get(key(t), [])]

    stride_sets = [op[3] for op in operands] + [contiguous_strides(it) for _ in stores]
    loads, names = [], None
    if rows:
        lead, lead_sets = collapse(it[:-1], [s[:-1] for s in stride_sets])
        extents = [S.mul(*lead), it[-1]]
        stride_sets = [ls + [s[-1]] for ls, s in zip(lead_sets, stride_sets)]
        if len(lead) > 1:  # i0 -> i0_0, i0_1, ... (invariant in the loop over i1: hoisted)
            names = [Code(f"i0_{a}") for a in range(len(lead))] + [Code("i1")]
            loads.append(Code("int64_t i0_rest = i0;"))
            for a in range(len(lead) - 1, 0, -1):
                e = L.dims.expr(lead[a])
                loads.append(Code(f"const int64_t i0_{a} = i0_rest % {e};"))
                loads.append(Code(f"i0_rest /= {e};"))
            loads.append(Code("const int64_t i0_0 = i0_rest;"))
    else:
        extents, stride_sets = collapse(it, stride_sets)
    for (name, buf, dtype, _, base), strides in zip(operands, stride_sets):
        p = ptrs.get(buf)
        at = index_expr(L, strides, base=L.dims.expr(base) if base != 0 else None, names=names)
        loads.append(Code(f"const {dtype.compute} {name} = ({dtype.compute}){p}[{at}];"))
    store_lines = []
    if into:
        t, array = into
        store_lines.append(Code(f"{array}[i1] = ({t.type.dtype.ctype}){values[key(t)]};"))
    for (ref, t), strides in zip(stores, stride_sets[len(operands):]):
        p = ptrs.get(ref.buf, write=True)
        store_lines.append(Code(f"{p}[{index_expr(L, strides, names=names)}] = "
                                f"({ref.buf.dtype.ctype}){values[key(t)]};"))
    vec = None
    if vector and not rows and not into and len(extents) == 1:
        vec = _vector_parts(ptrs, operands, [s[0] for s in stride_sets], stores, values)
    return loads, body, store_lines, extents, vec


def _vector_parts(ptrs: Pointers, operands, strides, stores, values) -> Optional[dict]:
    """elementwise.j2's vector path for a one-axis loop whose operands are each read whole
    (stride 1) or broadcast from one element (stride 0): the vector loads, the broadcast
    loads, the stores' values, and the (slot, bytes) alignments the launch must find."""
    loads, scalars, aligned = [], [], {}
    for (name, buf, dtype, _, base), s in zip(operands, strides):
        if base != 0 or not isinstance(s, int) or s not in (0, 1):
            return None
        p = ptrs.get(buf)
        if s == 0:
            scalars.append(Code(f"const {dtype.compute} {name} = ({dtype.compute}){p}[0];"))
        else:
            loads.append({"name": name, "ptr": p, "ctype": Code(buf.dtype.ctype),
                          "compute": Code(dtype.compute)})
            aligned[buf.slot] = 4 * buf.dtype.itemsize
    out = []
    for ref, t in stores:
        out.append({"ptr": ptrs.get(ref.buf, write=True), "ctype": Code(ref.buf.dtype.ctype),
                    "value": values[key(t)]})
        aligned[ref.buf.slot] = 4 * ref.buf.dtype.itemsize
    return {"loads": loads, "scalars": scalars, "stores": out, "aligned": sorted(aligned.items())}
