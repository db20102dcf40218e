"""Loops: the body's kernels run once per step inside one loop kernel (template loop.j2).

Sequences are read through window buffers that the loop points at element t; states live in
two scratch buffers per state that swap roles every step (the body reads one, writes the
other); step outputs are written through windows straight into the stacked outputs.
"""
from __future__ import annotations

from typing import List

from ...ir import shapes as S
from ...ir.graph import Node
from ...ir.passes import optimize
from ..names import Code
from ..plan import Buffer, Kernel, Ref
from . import rule
from .common import copy_ref, copy_value, key, label_of
from .recurrent import emit_recurrent, match_recurrent


def _bytes(L, dtype, dims) -> Code:
    return L.dims.expr(S.mul(dtype.itemsize, *dims))


def _buffers_of(kernels: List[Kernel]):
    reads, writes = [], []
    for k in kernels:
        reads += k.reads
        writes += k.writes
        r, w = _buffers_of(k.ctx.get("loop_body", []))
        reads += r
        writes += w
    return reads, writes


@rule("loop")
def _loop(L, node: Node):
    a = node.attrs
    body = optimize(a["body"])
    m = match_recurrent(node, body, L.target)  # a Keras recurrent layer: one fused kernel
    if m is not None:
        emit_recurrent(L, node, m)
        return
    n_seq, n_state = a["n_seq"], a["n_state"]
    seqs = node.inputs[:n_seq]
    inits = node.inputs[n_seq:n_seq + n_state]
    captured = node.inputs[n_seq + n_state:]
    finals, stacked = node.outputs[:n_state], node.outputs[n_state:]

    seq_windows = [L.window(s.type.dtype, s.dims[1:]) for s in seqs]
    states = []  # (current buffer, next buffer, window read, window written, window final)
    for init in inits:
        cur, nxt = (Ref(L.buffer(init.type.dtype, init.dims, "scratch"), init.dims)
                    for _ in range(2))
        copy_value(L, init, cur, label="loop: initial state")
        states.append((cur, nxt) + tuple(L.window(init.type.dtype, init.dims) for _ in range(3)))
    out_windows = [L.window(t.type.dtype, t.dims[1:]) for t in stacked]
    params = seq_windows + [s[2] for s in states] + \
        [L.inline[key(c)] if key(c) in L.inline else L.ref(c) for c in captured]
    body_kernels = L.lower_body(body, params, [s[3] for s in states] + out_windows)

    reads, writes = _buffers_of(body_kernels)
    # matrix products whose B is the same at every step pack it once, before the loop
    written = {b.slot for b in writes}
    for k in body_kernels:
        if k.template == "gemm" and k.ctx["native"]:
            b = next(r for r in k.reads if r.slot == k.ctx["slot_b"])
            k.ctx["prepack"] = b.kind != "window" and b.slot not in written
    reads += [L.ref(s).buf for s in seqs] + [s[0].buf for s in states]
    writes += [L.ref(t).buf for t in stacked] + [b.buf for s in states for b in s[:2]]
    ctx = {
        "T": L.dims.expr(seqs[0].dims[0]), "reverse": bool(a["reverse"]),
        "stack_at_index": bool(a.get("stack_at_index")),
        "seqs": [{"win": w.buf.slot, "base": L.ref(s).buf.slot,
                  "bytes": _bytes(L, s.type.dtype, s.dims[1:])} for s, w in zip(seqs, seq_windows)],
        "outs": [{"win": w.buf.slot, "base": L.ref(t).buf.slot,
                  "bytes": _bytes(L, t.type.dtype, t.dims[1:])} for t, w in zip(stacked, out_windows)],
        "states": [{"cur": cur.buf.slot, "nxt": nxt.buf.slot, "read": r.buf.slot,
                    "write": w.buf.slot, "final": fin.buf.slot}
                   for cur, nxt, r, w, fin in states],
        "loop_body": body_kernels,
    }
    L.add(Kernel(L.kernel_name(), "loop", ctx, label_of([node]), _unique(reads), _unique(writes)))
    for (cur, nxt, r, w, fin), out in zip(states, finals):
        copy_ref(L, fin, L.ref(out), label="loop: final state")
        L.kernels[-1].reads += [cur.buf, nxt.buf]  # what the final window points into


def _unique(bufs: List[Buffer]) -> List[Buffer]:
    seen, out = set(), []
    for b in bufs:
        if b.slot not in seen:
            seen.add(b.slot)
            out.append(b)
    return out
