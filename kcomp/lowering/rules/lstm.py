"""A Keras LSTM layer's time loop recognised as one op, run by a fused LSTM kernel: on the CPU
kc_api.lstm (csrc/kernels/lstm_impl.h: gate math in the recurrent product's registers), on a
GPU kc_cuda_lstm (the persistent kernel of csrc/cuda/rnn.cu).

Keras 2.3.1's LSTMCell (implementation 2, the default) steps with, after kcomp's passes hoisted
the input projection x_t W out of the loop:

    z = xw_t + h W_rec [+ b]            i, f, g, o = z[:, :U], z[:, U:2U], z[:, 2U:3U], z[:, 3U:]
    c' = rec(f) * c + rec(i) * tanh(g)   h' = rec(o) * tanh(c')          outputs: h', c', h'

match_lstm() recognises exactly this body (rec sigmoid or hard_sigmoid, float32, forward in
time, adds and products in either operand order) and nothing else: masking, dropout, other
activations, go_backwards and implementation 1 keep the generic loop lowering.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

from ...ir.graph import Graph, Tensor
from ..plan import Kernel, Ref
from .common import copy_strided, copy_value, label_of


@dataclass(frozen=True)
class LstmMatch:
    units: int
    w_rec: int              # index of the recurrent kernel (units, 4 units) in the loop's inputs
    bias: Optional[int]     # index of the bias (4 units,) in the loop's inputs, if any
    rec: str                # 'sigmoid' or 'hard_sigmoid'


def _is(t: Tensor, name: str) -> bool:
    return t.node.op.name == name


def _same(a: Tensor, b: Tensor) -> bool:
    return a.node.uid == b.node.uid and a.index == b.index


def _pair(t: Tensor, name: str):
    """The two operands of a `name` node (add, mul), or None."""
    return tuple(t.node.inputs) if _is(t, name) and len(t.node.inputs) == 2 else None


def _add_leaves(t: Tensor, out: List[Tensor]) -> None:
    if _is(t, "add"):
        for x in t.node.inputs:
            _add_leaves(x, out)
    else:
        out.append(t)


def _gate(t: Tensor, fn: str, z: Dict[str, Tensor], units: int) -> Optional[int]:
    """Which block k of z (columns [kU, (k+1)U)) t is fn of, or None."""
    if not _is(t, fn):
        return None
    s = t.node.inputs[0]
    if not _is(s, "slice"):
        return None
    src = s.node.inputs[0]
    if "z" in z and not _same(z["z"], src):
        return None
    (a0, a1) = s.node.attrs["specs"]
    if tuple(a0) != (None, None, 1) or a1[2] != 1:
        return None
    start = 0 if a1[0] is None else a1[0]
    stop = 4 * units if a1[1] is None else a1[1]
    if start % units or stop - start != units:
        return None
    z["z"] = src
    return start // units


def _either(pair, first, second):
    """Try first(a) and second(b) both ways; the results, or None."""
    if pair is None:
        return None
    a, b = pair
    for x, y in ((a, b), (b, a)):
        r1, r2 = first(x), second(y)
        if r1 is not None and r2 is not None:
            return r1, r2
    return None


def match_lstm(node, body: Graph) -> Optional[LstmMatch]:
    a = node.attrs
    # (a reversed loop, Keras's go_backwards, is the forward loop over the reversed sequence
    # unless it stacks its outputs at their steps' indices: emit_lstm reverses the sequence)
    if a["n_seq"] != 1 or a["n_state"] != 2 or a.get("stack_at_index") or len(body.outputs) != 3:
        return None
    x_t, h, c = body.inputs[:3]
    h_new, c_new, y = body.outputs
    if not _same(h_new, y) or any(t.type.dtype.name != "float32" for t in body.inputs[:3]):
        return None
    if len(h.dims) != 2 or not isinstance(h.dims[1], int) or h.dims[1] < 1:
        return None
    units = h.dims[1]
    for rec in ("sigmoid", "hard_sigmoid"):
        z: Dict[str, Tensor] = {}
        # h' = rec(o) * tanh(c')
        got = _either(_pair(h_new, "mul"), lambda t: _gate(t, rec, z, units),
                      lambda t: t.node.inputs[0] if _is(t, "tanh") else None)
        if got is None or got[0] != 3 or not _same(got[1], c_new):
            continue
        # c' = rec(f) * c + rec(i) * tanh(g)
        f_term = lambda t: _either(_pair(t, "mul"), lambda u: _gate(u, rec, z, units),  # noqa
                                   lambda u: True if _same(u, c) else None)
        i_term = lambda t: _either(_pair(t, "mul"), lambda u: _gate(u, rec, z, units),  # noqa
                                   lambda u: _gate(u, "tanh", z, units))
        terms = _either(_pair(c_new, "add"), f_term, i_term)
        if terms is None or terms[0][0] != 1 or terms[1] != (0, 2):
            continue
        found = _projection(z["z"], body, x_t, h, units)
        if found is not None:
            return LstmMatch(units, found[0], found[1], rec)
    return None


def _projection(zt: Tensor, body: Graph, x_t: Tensor, h: Tensor, units: int):
    """z = x_t + dot(h, W) [+ b] with W and b loop-invariant inputs: (W's index, b's index)."""
    leaves: List[Tensor] = []
    _add_leaves(zt, leaves)
    if len(leaves) not in (2, 3) or tuple(zt.dims[1:]) != (4 * units,):
        return None
    position = {t.node.uid: i for i, t in enumerate(body.inputs)}
    captured = lambda t: position.get(t.node.uid, -1) >= 3  # noqa: E731
    w = bias = None
    seen_x = False
    for t in leaves:
        if _same(t, x_t) and t.dims[-1] == 4 * units:
            seen_x = True
        elif _is(t, "dot") and _same(t.node.inputs[0], h) and captured(t.node.inputs[1]) \
                and tuple(t.node.inputs[1].dims) == (units, 4 * units):
            w = position[t.node.inputs[1].node.uid]
        elif captured(t) and tuple(t.dims) == (4 * units,) and t.type.dtype.name == "float32":
            bias = position[t.node.uid]
        else:
            return None
    if not seen_x or w is None or (len(leaves) == 3 and bias is None):
        return None
    return w, bias


def emit_lstm(L, node, m: LstmMatch) -> None:
    """The whole loop as one fused LSTM call (template lstm.j2 of the target)."""
    seq, h0, c0 = node.inputs[:3]
    inits = []
    for t in (h0, c0):  # the kernel reads its initial states from buffers of their own
        ref = Ref(L.buffer(t.type.dtype, t.dims, "scratch"), t.dims)
        copy_value(L, t, ref, label="lstm: initial state")
        inits.append(ref.buf)
    h_out, c_out, h_seq = (L.ref(t).buf for t in node.outputs)
    xw = L.ref(seq).buf
    if node.attrs["reverse"]:  # go_backwards: the steps' projections in the order they run
        rev = Ref(L.buffer(seq.type.dtype, seq.dims, "scratch"), seq.dims)
        copy_strided(L, L.ref(seq), rev, ((None, None, -1),) + ((None, None, 1),) * (seq.ndim - 1),
                     "lstm: the sequence reversed")
        xw = rev.buf
    w = L.ref(node.inputs[m.w_rec]).buf
    bias = L.ref(node.inputs[m.bias]).buf if m.bias is not None else None
    # kc_cuda_lstm adds no bias: x W + b for every step first, into scratch of the sequence's
    # shape; the CPU kernel adds it in its gate math
    own_pass = bias is not None and L.target == "cuda"
    xb = L.buffer(seq.type.dtype, seq.dims, "scratch") if own_pass else xw
    e = L.dims.expr
    ctx = {"T": e(seq.dims[0]), "B": e(seq.dims[1]), "U": m.units,
           "xw": xw.slot, "xb": xb.slot, "bias": bias.slot if bias is not None else -1,
           "w": w.slot, "h0": inits[0].slot, "c0": inits[1].slot, "h_seq": h_seq.slot,
           "h_out": h_out.slot, "c_out": c_out.slot, "hard": m.rec == "hard_sigmoid",
           "cache_w": False}  # set by lower._mark_cached_weights
    reads = [xw, w] + inits + ([bias] if bias is not None else []) + ([xb] if own_pass else [])
    writes = [h_seq, h_out, c_out] + ([xb] if own_pass else [])
    L.add(Kernel(L.kernel_name(), "lstm", ctx, "fused LSTM: " + label_of([node]), reads, writes))
