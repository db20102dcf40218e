"""Kernel rules: one lowering rule per op (or op family), each producing Kernel objects whose
templates live in kcomp/templates/cpu/. Elementwise groups become one fused loop nest."""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..ir import shapes as S
from ..ir.graph import Node, Tensor
from ..ir.passes.fusion import Group
from . import scalar
from .names import Code, int_lit, join
from .plan import Buffer, Kernel, Ref

# Below this many elements a kernel runs on the calling thread: waking the pool costs more.
PARALLEL_MIN = 1 << 15
TILE = 256  # columns per task in reductions and scans over a non-innermost axis

RULES: Dict[str, Callable] = {}


def rule(*names):
    def deco(fn):
        for n in names:
            RULES[n] = fn
        return fn
    return deco


def lower_group(L, g: Group) -> None:
    if g.fused:
        lower_elementwise(L, g)
    else:
        RULES[g.root.op.name](L, g.root)


def key(t: Tensor):
    return (t.node.uid, t.index)


# ---- pointers ----------------------------------------------------------------------------------

class Pointers:
    """The buffer pointers a kernel declares, by buffer slot."""

    def __init__(self):
        self.decls: List[Code] = []
        self.names: Dict[Tuple[int, bool], Code] = {}
        self.reads: List[Buffer] = []
        self.writes: List[Buffer] = []

    def get(self, buf: Buffer, write: bool = False) -> Code:
        k = (buf.slot, write)
        if k not in self.names:
            name = Code(f"{'w' if write else 'r'}{buf.slot}")
            const = "" if write else "const "
            self.decls.append(Code(f"{const}{buf.dtype.ctype}* KC_RESTRICT {name} = "
                                   f"({const}{buf.dtype.ctype}*)f->p[{buf.slot}];"))
            self.names[k] = name
            (self.writes if write else self.reads).append(buf)
        return self.names[k]


def contiguous_strides(dims: Sequence[S.Dim]) -> List[S.Dim]:
    out: List[S.Dim] = [1] * len(dims)
    for i in range(len(dims) - 2, -1, -1):
        out[i] = S.mul(out[i + 1], dims[i + 1])
    return out


class Dyn:
    """A broadcast stride known only at run time: 0 when the operand's extent is 1."""

    def __init__(self, extent: S.Dim, stride: S.Dim):
        self.extent, self.stride = extent, stride


def broadcast_strides(op_dims, it_dims) -> List:
    """Strides (elements) of a contiguous operand read over a broadcast iteration space."""
    own = contiguous_strides(op_dims)
    r, q = len(it_dims), len(op_dims)
    out = []
    for i in range(r):
        j = i - (r - q)
        if j < 0 or op_dims[j] == 1:
            out.append(0)
        elif op_dims[j] == it_dims[i]:
            out.append(own[j])
        else:
            out.append(Dyn(op_dims[j], own[j]))
    return out


def collapse(extents: List[S.Dim], stride_sets: List[List]) -> Tuple[List[S.Dim], List[List]]:
    """Merge adjacent axes that every operand walks contiguously; drop static size-1 axes."""
    keep = [i for i, e in enumerate(extents) if e != 1]
    extents = [extents[i] for i in keep]
    stride_sets = [[s[i] for i in keep] for s in stride_sets]
    i = len(extents) - 2
    while i >= 0:
        ok = all(not isinstance(s[i], Dyn) and not isinstance(s[i + 1], Dyn) and
                 s[i] == S.mul(s[i + 1], extents[i + 1]) for s in stride_sets)
        if ok:
            extents[i:i + 2] = [S.mul(extents[i], extents[i + 1])]
            for s in stride_sets:
                s[i:i + 2] = [s[i + 1]]
        i -= 1
    if not extents:
        extents = [1]
        stride_sets = [[0] for _ in stride_sets]
    return extents, stride_sets


def index_expr(L, strides: List, var: str = "i", base: Optional[Code] = None) -> Code:
    terms = [base] if base is not None and base != "0" else []
    for a, s in enumerate(strides):
        iv = Code(f"{var}{a}")
        if isinstance(s, Dyn):
            terms.append(Code(f"{iv} * ({L.dims.expr(s.extent)} == 1 ? 0 : "
                              f"{L.dims.expr(s.stride)})"))
        elif s == 1:
            terms.append(iv)
        elif s != 0:
            terms.append(Code(f"{iv} * {L.dims.expr(s)}"))
    return join(" + ", terms) if terms else Code("0")


def loop_ctx(L, extents: List[S.Dim]) -> dict:
    """Launch parameters of a loop nest parallel over its first axis."""
    inner = S.mul(*extents[1:])
    n0 = L.dims.expr(extents[0])
    total = S.mul(*extents)
    serial = isinstance(total, int) and total < PARALLEL_MIN
    if serial:
        grain = n0
    elif isinstance(inner, int):
        grain = int_lit(max(1, PARALLEL_MIN // max(inner, 1)))
    else:
        grain = Code(f"kc_grain({L.dims.expr(inner)})")
    return {"rank": len(extents), "extents": [L.dims.expr(e) for e in extents], "n0": n0,
            "grain": grain, "serial": serial}


def label_of(nodes: Sequence[Node]) -> str:
    ops = "+".join(n.op.name for n in nodes)
    return f"{ops} -> {nodes[-1].outputs[0].type}"


# ---- elementwise groups ------------------------------------------------------------------------

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


# ---- copies: index-mapping loops ---------------------------------------------------------------

class Axis:
    """How one axis of a copy's iteration space maps to source and destination offsets:
    ('lin', stride) for i * stride, ('mod', extent, stride) for (i % extent) * stride,
    ('div', rep, stride) for (i / rep) * stride."""

    def __init__(self, extent, src, dst):
        self.extent, self.src, self.dst = extent, src, dst


def _axis_term(L, iv: Code, m) -> Optional[Code]:
    kind = m[0]
    if kind == "lin":
        s = m[1]
        if isinstance(s, Dyn):
            return Code(f"{iv} * ({L.dims.expr(s.extent)} == 1 ? 0 : {L.dims.expr(s.stride)})")
        if s == 0:
            return None
        return iv if s == 1 else Code(f"{iv} * {L.dims.expr(s)}")
    if kind == "mod":
        return Code(f"({iv} % {L.dims.expr(m[1])}) * {L.dims.expr(m[2])}")
    if kind == "div":
        return Code(f"({iv} / {L.dims.expr(m[1])}) * {L.dims.expr(m[2])}")
    raise AssertionError(kind)


def emit_copy(L, src: Ref, dst: Ref, axes: List[Axis], src_base: S.Dim = 0,
              dst_base: S.Dim = 0, label: str = "copy", convert: bool = False) -> None:
    """dst[dst_base + sum(dst maps)] = src[src_base + sum(src maps)] over the axes' space."""
    # merge linear axes that are contiguous for both sides
    i = len(axes) - 2
    while i >= 0:
        a, b = axes[i], axes[i + 1]
        if a.src[0] == b.src[0] == "lin" and a.dst[0] == b.dst[0] == "lin" and \
                not any(isinstance(x, Dyn) for x in (a.src[1], b.src[1], a.dst[1], b.dst[1])) and \
                a.src[1] == S.mul(b.src[1], b.extent) and a.dst[1] == S.mul(b.dst[1], b.extent):
            axes[i:i + 2] = [Axis(S.mul(a.extent, b.extent), b.src, b.dst)]
        i -= 1
    axes = [a for a in axes if a.extent != 1] or [Axis(1, ("lin", 0), ("lin", 0))]
    ptrs = Pointers()
    s, d = ptrs.get(src.buf), ptrs.get(dst.buf, write=True)
    sterms = [t for t in (_axis_term(L, Code(f"i{a}"), ax.src) for a, ax in enumerate(axes)) if t]
    dterms = [t for t in (_axis_term(L, Code(f"i{a}"), ax.dst) for a, ax in enumerate(axes)) if t]
    if src_base != 0:
        sterms.insert(0, L.dims.expr(src_base))
    if dst_base != 0:
        dterms.insert(0, L.dims.expr(dst_base))
    value = Code(f"{s}[{join(' + ', sterms) or Code('0')}]")
    if convert and src.buf.dtype != dst.buf.dtype:
        value = Code(f"({dst.buf.dtype.ctype})({src.buf.dtype.compute}){value}")
    ctx = loop_ctx(L, [a.extent for a in axes])
    ctx.update(ptrs=ptrs.decls, loads=[], body=[],
               stores=[Code(f"{d}[{join(' + ', dterms) or Code('0')}] = {value};")])
    L.add(Kernel(L.kernel_name(), "elementwise", ctx, label, ptrs.reads, ptrs.writes))


def copy_value(L, t: Tensor, dst: Ref, label: str) -> None:
    """Materialize value t (a buffer, a view of one, or an inline scalar) into dst."""
    k = key(t)
    dims = list(dst.dims)
    if k in L.inline:
        ptrs = Pointers()
        d = ptrs.get(dst.buf, write=True)
        ctx = loop_ctx(L, [S.size(dims)])
        ctx.update(ptrs=ptrs.decls, loads=[], body=[],
                   stores=[Code(f"{d}[i0] = ({dst.buf.dtype.ctype}){L.inline[k]};")])
        L.add(Kernel(L.kernel_name(), "elementwise", ctx, label, [], ptrs.writes))
        return
    copy_ref(L, L.ref(t), dst, label)


def copy_ref(L, src: Ref, dst: Ref, label: str) -> None:
    """dst = src, element for element (same element count)."""
    n = S.size(dst.dims)
    emit_copy(L, src, dst, [Axis(n, ("lin", 1), ("lin", 1))], label=label)


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
    x, out = node.inputs[0], node.outputs[0]
    own = contiguous_strides(x.dims)
    dst = contiguous_strides(out.dims)
    base: S.Dim = 0  # offset of the first element read
    axes = []
    for a, ((start, stop, step), n) in enumerate(zip(node.attrs["specs"], x.dims)):
        if isinstance(n, int):
            first = range(n)[slice(start, stop, step)].start if out.dims[a] != 0 else 0
        else:
            first = L.dims.computed(Code(
                f"kc::slice_start({L.dims.expr(n)}, {int_lit(start or 0)}, "
                f"{int_lit(start is not None)}, {int_lit(step)})"))
        base = S.add(base, S.mul(first, own[a]))
        axes.append(Axis(out.dims[a], ("lin", S.mul(step, own[a])), ("lin", dst[a])))
    emit_copy(L, L.ref(x), L.ref(out), axes, src_base=base, label=label_of([node]))


@rule("tile")
def _tile(L, node: Node):
    x, out = node.inputs[0], node.outputs[0]
    own = contiguous_strides(x.dims)
    dst = contiguous_strides(out.dims)
    axes = []
    for a, r in enumerate(node.attrs["reps"]):
        src = ("lin", own[a]) if r == 1 else ("mod", x.dims[a], own[a])
        axes.append(Axis(out.dims[a], src, ("lin", dst[a])))
    emit_copy(L, L.ref(x), L.ref(out), axes, label=label_of([node]))


@rule("repeat_elements")
def _repeat(L, node: Node):
    x, out = node.inputs[0], node.outputs[0]
    own = contiguous_strides(x.dims)
    dst = contiguous_strides(out.dims)
    axis, rep = node.attrs["axis"], node.attrs["rep"]
    axes = [Axis(out.dims[a], ("div", rep, own[a]) if a == axis and rep != 1 else
                 ("lin", own[a]), ("lin", dst[a])) for a in range(out.ndim)]
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


# ---- reductions, scans, softmax ----------------------------------------------------------------

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


@rule("sum", "mean", "prod", "max", "min", "any", "all", "var", "std", "logsumexp", "argmax",
      "argmin")
def _reduce(L, node: Node):
    L.include("kcomp/reduce.h")
    name = node.op.name
    x, out = node.inputs[0], node.outputs[0]
    axes = (node.attrs["axis"],) if name in ("argmax", "argmin") else node.attrs["axes"]
    src = L.ref(x)
    split = split_axes(x.dims, axes)
    if split is None:
        # move the reduced axes last with a transpose into scratch, then reduce rows
        perm = [a for a in range(x.ndim) if a not in axes] + list(axes)
        tdims = tuple(x.dims[p] for p in perm)
        tmp = Ref(L.buffer(x.type.dtype, tdims, "scratch"), tdims)
        own = contiguous_strides(x.dims)
        dst = contiguous_strides(tdims)
        emit_copy(L, src, tmp, [Axis(tdims[a], ("lin", own[perm[a]]), ("lin", dst[a]))
                                for a in range(x.ndim)], label=f"{name}: move reduced axes last")
        src = tmp
        split = (S.mul(*tdims[:x.ndim - len(axes)]), S.mul(*tdims[x.ndim - len(axes):]), 1)
    O, N, I = split
    ptrs = Pointers()
    out_ref = L.ref(out)
    xin, yout = ptrs.get(src.buf), ptrs.get(out_ref.buf, write=True)
    T, TO = x.type.dtype, out.type.dtype
    red = Code(f"kc::red::{REDUCERS.get(name, 'Sum')}<{T.compute}, {TO.compute}>")
    moments = name in ("var", "std")
    ctx = {
        "ptrs": ptrs.decls, "x": xin, "y": yout, "y_slot": out_ref.buf.slot, "kind": Code(name),
        "red": red, "T": Code(T.compute), "S": Code(T.ctype), "TO": Code(TO.compute),
        "SO": Code(TO.ctype), "O": L.dims.expr(O), "N": L.dims.expr(N), "I": L.dims.expr(I),
        "rows": I == 1, "tile": TILE,
        # splitting rows into blocks pays off only when there are fewer rows than threads
        "may_split": not (isinstance(O, int) and O >= 8),
        "empty_error": name in ("max", "min", "argmax", "argmin"),
        "root": Code("true" if name == "std" else "false"),
        "part_t": Code("kc::red::Moments" if moments else f"{red}::A"),
        "merge": Code("kc::red::merge_moments" if moments else f"{red}::merge"),
        "better": Code("kc::red::better_max" if name == "argmax" else "kc::red::better_min"),
    }
    L.add(Kernel(L.kernel_name(), "reduce", ctx, label_of([node]), ptrs.reads, ptrs.writes))


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
           "N": L.dims.expr(N), "I": L.dims.expr(I), "tile": TILE, "rows": I == 1}
    L.add(Kernel(L.kernel_name(), "softmax", ctx, label_of([node]), ptrs.reads, ptrs.writes))


# ---- matrix products ---------------------------------------------------------------------------

def _materialize_moved(L, x: Tensor, src_axis: int, dst_axis: int) -> Tuple[Ref, S.Shape]:
    """x with axis src_axis moved to position dst_axis, copied into scratch."""
    perm = [a for a in range(x.ndim) if a != src_axis]
    perm.insert(dst_axis, src_axis)
    tdims = tuple(x.dims[p] for p in perm)
    tmp = Ref(L.buffer(x.type.dtype, tdims, "scratch"), tdims)
    own = contiguous_strides(x.dims)
    dst = contiguous_strides(tdims)
    emit_copy(L, L.ref(x), tmp, [Axis(tdims[a], ("lin", own[perm[a]]), ("lin", dst[a]))
                                 for a in range(x.ndim)], label="batch_dot: move contracted axis")
    return tmp, tdims


def emit_gemm(L, node: Node, a: Ref, b: Ref, c: Ref, *, trans_a, trans_b, m, n, k, batch, lda,
              ldb, ldc, stride_a, stride_b, stride_c) -> None:
    e = L.dims.expr
    dt = node.outputs[0].type.dtype
    ctx = {"dtype_code": int_lit(dt.code), "native": dt.name in ("float32", "float64"),
           "ta": int(bool(trans_a)), "tb": int(bool(trans_b)),
           "m": e(m), "n": e(n), "k": e(k), "batch": e(batch), "lda": e(lda), "ldb": e(ldb),
           "ldc": e(ldc), "sa": e(stride_a), "sb": e(stride_b), "sc": e(stride_c),
           "T": Code(dt.compute), "S": Code(dt.ctype),
           "ACC": Code("double" if dt.is_float else "uint64_t" if dt.kind == "u" else "int64_t")}
    ptrs = Pointers()
    ctx.update(pa=ptrs.get(a.buf), pb=ptrs.get(b.buf), pc=ptrs.get(c.buf, write=True),
               ptrs=ptrs.decls, slot_a=a.buf.slot, slot_b=b.buf.slot, slot_c=c.buf.slot,
               what=Code(node.op.name))
    L.add(Kernel(L.kernel_name(), "gemm", ctx, label_of([node]), ptrs.reads, ptrs.writes))


@rule("dot")
def _dot(L, node: Node):
    x, y = node.inputs
    out = node.outputs[0]
    A, B, C = L.ref(x), L.ref(y), L.ref(out)
    kdim = x.dims[-1]
    if y.ndim == 1:
        m = S.mul(*x.dims[:-1])
        emit_gemm(L, node, A, B, C, trans_a=False, trans_b=False, m=m, n=1, k=kdim, batch=1,
                  lda=kdim, ldb=1, ldc=1, stride_a=0, stride_b=0, stride_c=0)
        return
    nb = S.mul(*y.dims[:-2])            # y's batch: every leading dim of y
    n = y.dims[-1]
    m = S.mul(*x.dims[:-1])
    # out[m..., b..., j] = sum_p x[m, p] * y[b, p, j]: one GEMM per y batch item, writing
    # column block b of each output row (ldc = nb * n)
    emit_gemm(L, node, A, B, C, trans_a=False, trans_b=False, m=m, n=n, k=kdim, batch=nb,
              lda=kdim, ldb=n, ldc=S.mul(nb, n), stride_a=0, stride_b=S.mul(kdim, n),
              stride_c=n)


@rule("batch_dot")
def _batch_dot(L, node: Node):
    x, y = node.inputs
    out = node.outputs[0]
    ax, ay = node.attrs["axes"]
    A, B, C = L.ref(x), L.ref(y), L.ref(out)
    xd, yd = x.dims, y.dims
    # x_b: x's dims after the batch; contraction last -> A is (M, K); first -> A^T
    if ax == x.ndim - 1:
        trans_a = False
    elif ax == 1:
        trans_a = True
    else:
        A, xd = _materialize_moved(L, x, ax, x.ndim - 1)
        ax, trans_a = x.ndim - 1, False
    if ay == 1:
        trans_b = False
    elif ay == y.ndim - 1:
        trans_b = True
    else:
        B, yd = _materialize_moved(L, y, ay, 1)
        ay, trans_b = 1, False
    k = xd[ax]
    m = S.mul(*(d for i, d in enumerate(xd) if i not in (0, ax)))
    n = S.mul(*(d for i, d in enumerate(yd) if i not in (0, ay)))
    emit_gemm(L, node, A, B, C, trans_a=trans_a, trans_b=trans_b, m=m, n=n, k=k, batch=xd[0],
              lda=m if trans_a else k, ldb=k if trans_b else n, ldc=n,
              stride_a=S.mul(*xd[1:]), stride_b=S.mul(*yd[1:]), stride_c=S.mul(m, n))
