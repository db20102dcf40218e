"""Keras recurrent layers' time loops recognised as one op, run by a fused kernel: an LSTM on
the CPU by kc_api.lstm (csrc/kernels/lstm_impl.h: gate math in the recurrent product's
registers); an LSTM, GRU (reset gate after or before the product) or SimpleRNN on a GPU by
kc_cuda_rnn (the persistent kernel of csrc/cuda/rnn.cu). Other loops keep the generic loop
lowering (control.py).

After kcomp's passes hoisted the input projection x_t W (+ b) out of the loop, Keras 2.3.1's
cells (implementation 2, the default) step with:

    LSTM       z = x + h W [+ b]      i, f, g, o = z's four blocks of U columns
               c' = rec(f) * c + rec(i) * tanh(g)   h' = rec(o) * tanh(c')   outputs: h', c', h'
    GRU        zr = h W [+ b_rec]     x's and zr's blocks z, r, h
               u = rec(x_z + zr_z)    r = rec(x_r + zr_r)
      reset_after=True:   hh = act(x_h + r * zr_h)
      reset_after=False:  hh = act(x_h + dot(r * h, W_h)), with zr = h W_zr (2 blocks)
               h' = u * h + (1 - u) * hh                                   outputs: h', h'
    SimpleRNN  h' = act(x + h W)                                            outputs: h', h'

The matchers recognise exactly these bodies (float32, forward in time, adds and products in
either operand order; rec and act: sigmoid, hard_sigmoid, tanh or relu, a SimpleRNN's act
also linear, the LSTM's act tanh)
and nothing else: masking, dropout and implementation 1 keep the generic loop lowering;
go_backwards runs the kernel over the reversed sequence.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

from ...ir.graph import Graph, Tensor
from ..names import Code
from ..plan import Kernel, Ref
from .common import copy_strided, copy_value, label_of
from .elementwise import KC_ACTS, kc_act


# the cells and activations of kc_cuda_rnn (cuda_api.h): kc_rnn_cell and kc_act names
CELLS = {"lstm": "KC_RNN_LSTM", "gru": "KC_RNN_GRU",
         "gru_reset_before": "KC_RNN_GRU_RESET_BEFORE", "simple": "KC_RNN_SIMPLE"}
ACTS = {"linear": "KC_ACT_NONE", **KC_ACTS}


@dataclass(frozen=True)
class RnnMatch:
    cell: str                      # one of CELLS
    units: int
    w_rec: int                     # index of the recurrent kernel in the loop's inputs
    bias: Optional[int] = None     # LSTM: index of the bias (4 units,) added to z, if any
    rec: str = "sigmoid"           # the gates' activation (LSTM, GRU)
    act: str = "tanh"              # the candidate's (GRU) or the output's (SimpleRNN)
    w_rec2: Optional[int] = None   # gru_reset_before: the candidate's recurrent kernel
    b_rec: Optional[int] = None    # gru: the recurrent bias (3 units,), if any


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


def _block(t: Tensor, units: int, width: int):
    """(src, k) if t is src[:, kU:(k+1)U] of a src with `width` columns, else None."""
    if not _is(t, "slice") or not isinstance(width, int):
        return None
    src = t.node.inputs[0]
    (a0, a1) = t.node.attrs["specs"]
    if tuple(a0) != (None, None, 1) or a1[2] != 1 or tuple(src.dims[1:]) != (width,):
        return None
    start = 0 if a1[0] is None else a1[0]
    stop = width if a1[1] is None else a1[1]
    if start % units or stop - start != units:
        return None
    return src, start // units


def _gate(t: Tensor, fn: str, z: Dict[str, Tensor], units: int) -> Optional[int]:
    """Which block k of z (columns [kU, (k+1)U)) t is fn of, or None."""
    got = _block(t.node.inputs[0], units, 4 * units) if _is(t, fn) else None
    if got is None or ("z" in z and not _same(z["z"], got[0])):
        return None
    z["z"] = got[0]
    return got[1]


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


def match_lstm(node, body: Graph) -> Optional[RnnMatch]:
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
            return RnnMatch("lstm", units, found[0], bias=found[1], rec=rec)
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


class _Loop:
    """A one-state loop body h' = f(x_t, h) with h' both the state and the step's output."""

    def __init__(self, node, body: Graph):
        a = node.attrs
        self.ok = (a["n_seq"] == 1 and a["n_state"] == 1 and not a.get("stack_at_index")
                   and len(body.outputs) == 2 and _same(body.outputs[0], body.outputs[1]))
        if not self.ok:
            return
        self.x, self.h = body.inputs[:2]
        self.out = body.outputs[0]
        self.position = {t.node.uid: i for i, t in enumerate(body.inputs)}
        dims = self.h.dims
        self.ok = (all(t.type.dtype.name == "float32" for t in body.inputs[:2])
                   and len(dims) == 2 and isinstance(dims[1], int) and dims[1] >= 1)
        self.units = dims[1] if self.ok else 0

    def captured(self, t: Tensor, dims) -> Optional[int]:
        """t's index among the loop's inputs if it is a loop-invariant float32 input of dims."""
        i = self.position.get(t.node.uid, -1)
        ok = i >= 2 and tuple(t.dims) == tuple(dims) and t.type.dtype.name == "float32"
        return i if ok else None

    def x_block(self, t: Tensor, k: int, gates: int) -> bool:
        b = _block(t, self.units, gates * self.units)
        return b is not None and _same(b[0], self.x) and b[1] == k

    def h_times(self, t: Tensor, w_dims) -> Optional[int]:
        """W's index if t is dot(h, W) with W a captured input of w_dims."""
        if _is(t, "dot") and _same(t.node.inputs[0], self.h):
            return self.captured(t.node.inputs[1], w_dims)
        return None


def _act(t: Tensor) -> Optional[str]:
    """t's op if it is an activation the kernel library applies itself (elementwise.kc_act)."""
    return t.node.op.name if kc_act(t.node) is not None else None


def _one_minus(t: Tensor) -> Optional[Tensor]:
    """x if t is 1 - x (1 a scalar constant), else None."""
    if not _is(t, "sub"):
        return None
    one, x = t.node.inputs
    ok = _is(one, "constant") and one.dims == () and float(one.node.attrs["value"]) == 1.0
    return x if ok else None


def _times(t: Tensor, other: Tensor) -> Optional[Tensor]:
    """a if t is a * other (either order), else None."""
    got = _either(_pair(t, "mul"), lambda a: a, lambda b: True if _same(b, other) else None)
    return got[0] if got else None


def _gru_gate(loop: _Loop, t: Tensor, k: int, z: Dict[str, Tensor]) -> Optional[str]:
    """rec if t is rec(x_k + zr_k) with zr's block k (zr bound in z), else None."""
    rec = _act(t)
    if rec is None:
        return None
    u = loop.units
    got = _either(_pair(t.node.inputs[0], "add"),
                  lambda a: True if loop.x_block(a, k, 3) else None,
                  lambda b: _block(b, u, b.node.inputs[0].dims[-1]) if _is(b, "slice") else None)
    if got is None or got[1][1] != k:
        return None
    zr = got[1][0]
    if "zr" in z and not _same(z["zr"], zr):
        return None
    z["zr"] = zr
    return rec


def match_gru(node, body: Graph) -> Optional[RnnMatch]:
    loop = _Loop(node, body)
    if not loop.ok or tuple(loop.x.dims[1:]) != (3 * loop.units,):
        return None
    u, h = loop.units, loop.h
    # h' = u * h + (1 - u) * hh
    terms = _either(_pair(loop.out, "add"), lambda t: _times(t, h),
                    lambda t: _either(_pair(t, "mul"), _one_minus, lambda b: b))
    if terms is None or not _same(terms[0], terms[1][0]):
        return None
    gate_u, hh = terms[0], terms[1][1]
    z: Dict[str, Tensor] = {}
    rec = _gru_gate(loop, gate_u, 0, z)
    act = _act(hh)
    if rec is None or act is None:
        return None
    # hh's argument: x_h + r * zr_h (reset after) or x_h + dot(r * h, W_h) (reset before)
    inner = _either(_pair(hh.node.inputs[0], "add"),
                    lambda a: True if loop.x_block(a, 2, 3) else None, lambda b: b)
    if inner is None:
        return None
    cand = inner[1]
    if _is(cand, "dot"):  # reset before
        w2 = loop.captured(cand.node.inputs[1], (u, u))
        r = _times(cand.node.inputs[0], h)
        if w2 is None or r is None or _gru_gate(loop, r, 1, z) != rec:
            return None
        w = loop.h_times(z["zr"], (u, 2 * u))
        return RnnMatch("gru_reset_before", u, w, rec=rec, act=act, w_rec2=w2) \
            if w is not None else None
    got = _either(_pair(cand, "mul"), lambda a: a, lambda b: _block(b, u, 3 * u))
    if got is None or got[1][1] != 2 or _gru_gate(loop, got[0], 1, z) != rec \
            or not _same(got[1][0], z["zr"]):
        return None
    # zr = dot(h, W) [+ b_rec]
    zr = z["zr"]
    w = loop.h_times(zr, (u, 3 * u))
    b_rec = None
    if w is None:
        got = _either(_pair(zr, "add"), lambda a: loop.h_times(a, (u, 3 * u)),
                      lambda b: loop.captured(b, (3 * u,)))
        if got is None:
            return None
        w, b_rec = got
    return RnnMatch("gru", u, w, rec=rec, act=act, b_rec=b_rec)


def match_simple_rnn(node, body: Graph) -> Optional[RnnMatch]:
    loop = _Loop(node, body)
    if not loop.ok or tuple(loop.x.dims[1:]) != (loop.units,):
        return None
    u, out = loop.units, loop.out
    act = _act(out)
    if act is None:
        act = "linear"  # SimpleRNN(activation="linear"): no op at all
    else:
        out = out.node.inputs[0]
    got = _either(_pair(out, "add"), lambda a: True if _same(a, loop.x) else None,
                  lambda b: loop.h_times(b, (u, u)))
    return RnnMatch("simple", u, got[1], act=act) if got else None


def match_recurrent(node, body: Graph, target: str) -> Optional[RnnMatch]:
    """The fused kernel that runs this loop on `target`, or None (the generic loop lowering)."""
    m = match_lstm(node, body)
    if m is None and target == "cuda":
        m = match_gru(node, body) or match_simple_rnn(node, body)
    return m


def emit_recurrent(L, node, m: RnnMatch) -> None:
    """The whole loop as one fused call (template lstm.j2 on the CPU, rnn.j2 on a GPU)."""
    seq, inits = node.inputs[0], node.inputs[1:node.attrs["n_state"] + 1]
    refs = []
    for t in inits:  # the kernel reads its initial states from buffers of their own
        ref = Ref(L.buffer(t.type.dtype, t.dims, "scratch"), t.dims)
        copy_value(L, t, ref, label="recurrent layer: initial state")
        refs.append(ref.buf)
    finals = [L.ref(t).buf for t in node.outputs]
    h_out, h_seq = finals[0], finals[-1]
    c_out = finals[1] if m.cell == "lstm" else None
    xw = L.ref(seq).buf
    if node.attrs["reverse"]:  # go_backwards: the steps' projections in the order they run
        rev = Ref(L.buffer(seq.type.dtype, seq.dims, "scratch"), seq.dims)
        copy_strided(L, L.ref(seq), rev, ((None, None, -1),) + ((None, None, 1),) * (seq.ndim - 1),
                     "recurrent layer: the sequence reversed")
        xw = rev.buf
    buf = lambda i: L.ref(node.inputs[i]).buf if i is not None else None  # noqa: E731
    slot = lambda b: b.slot if b is not None else -1  # noqa: E731
    w, w2, bias, b_rec = buf(m.w_rec), buf(m.w_rec2), buf(m.bias), buf(m.b_rec)
    # kc_cuda_rnn adds no input-side bias: an LSTM's x W + b for every step first, into scratch
    # of the sequence's shape; the CPU kernel adds it in its gate math
    own_pass = bias is not None and L.target == "cuda"
    xb = L.buffer(seq.type.dtype, seq.dims, "scratch") if own_pass else xw
    e = L.dims.expr
    ctx = {"T": e(seq.dims[0]), "B": e(seq.dims[1]), "U": m.units, "cell": Code(CELLS[m.cell]),
           "act": Code(ACTS[m.act]), "rec": Code(ACTS[m.rec]), "hard": m.rec == "hard_sigmoid",
           "xw": xw.slot, "xb": xb.slot, "bias": slot(bias), "w": w.slot, "w2": slot(w2),
           "b_rec": slot(b_rec), "h0": refs[0].slot, "c0": refs[1].slot if m.cell == "lstm" else -1,
           "h_seq": h_seq.slot, "h_out": h_out.slot, "c_out": slot(c_out),
           "cache_w": False}  # set by lower._mark_cached_weights (CPU)
    reads = [xw, w] + refs + [b for b in (w2, bias, b_rec) if b is not None] + \
        ([xb] if own_pass else [])
    writes = [h_seq, h_out] + ([c_out] if c_out is not None else []) + ([xb] if own_pass else [])
    template = "lstm" if L.target == "cpu" else "rnn"
    L.add(Kernel(L.kernel_name(), template, ctx, f"fused {m.cell} layer: " + label_of([node]),
                 reads, writes))
