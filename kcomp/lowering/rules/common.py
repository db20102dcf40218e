"""Shared pieces of kernel rules: buffer pointers, strides, loop launch parameters, and the
index-mapping copy kernel that transposes, slices, tiles and concatenations are made of."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from ...ir import shapes as S
from ...ir.graph import Node, Tensor
from ..names import Code, int_lit, join
from ..plan import Buffer, Kernel, Ref

# Below this many elements a kernel runs on the calling thread: waking the pool costs more.
PARALLEL_MIN = 1 << 15
TILE = 256  # columns per task in reductions and scans over a non-innermost axis


def key(t: Tensor):
    return (t.node.uid, t.index)


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


def broadcast_strides(op_dims, it_dims, own=None) -> List:
    """Strides (elements) of an operand read over a broadcast iteration space; `own`: the
    operand's strides (default: contiguous)."""
    own = contiguous_strides(op_dims) if own is None else own
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


def strided_view(L, specs, whole, part) -> Tuple[S.Dim, List[S.Dim]]:
    """(offset of the first element, per-axis strides) of a strided slice (specs) with extents
    `part` of a contiguous array with extents `whole`."""
    own = contiguous_strides(whole)
    base: S.Dim = 0
    strides = []
    for a, ((start, stop, step), n) in enumerate(zip(specs, whole)):
        if isinstance(n, int):
            first = range(n)[slice(start, stop, step)].start if part[a] != 0 else 0
        else:
            first = L.dims.computed(Code(
                f"kc::slice_start({L.dims.expr(n)}, {int_lit(start or 0)}, "
                f"{int_lit(start is not None)}, {int_lit(step)})"))
        base = S.add(base, S.mul(first, own[a]))
        strides.append(S.mul(step, own[a]))
    return base, strides


def copy_strided(L, src: Ref, dst: Ref, specs, label: str) -> None:
    """dst = the strided slice `specs` (start, stop, step per axis) of src."""
    base, strides = strided_view(L, specs, src.dims, dst.dims)
    axes = [Axis(n, ("lin", s), ("lin", d))
            for n, s, d in zip(dst.dims, strides, contiguous_strides(dst.dims))]
    emit_copy(L, src, dst, axes, src_base=base, label=label)


def slice_map(L, node: Node) -> Tuple[S.Dim, List[S.Dim]]:
    """strided_view of a slice node's elements in its contiguous source."""
    return strided_view(L, node.attrs["specs"], node.inputs[0].dims, node.outputs[0].dims)


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


def index_expr(L, strides: List, var: str = "i", base: Optional[Code] = None,
               names: Optional[List[Code]] = None) -> Code:
    """sum of index variable * stride: the variables var0, var1, ... or `names`."""
    terms = [base] if base is not None and base != "0" else []
    for a, s in enumerate(strides):
        iv = names[a] if names else Code(f"{var}{a}")
        if isinstance(s, Dyn):
            terms.append(Code(f"{iv} * ({L.dims.expr(s.extent)} == 1 ? 0 : "
                              f"{L.dims.expr(s.stride)})"))
        elif s == 1:
            terms.append(iv)
        elif s != 0:
            terms.append(Code(f"{iv} * {L.dims.expr(s)}"))
    return join(" + ", terms) if terms else Code("0")


def loop_ctx(L, extents: List[S.Dim], cost: int = 1) -> dict:
    """Launch parameters of a loop nest parallel over its first axis. cost: the work of one
    element in copies' units (a loop of exponentials is worth threads at fewer elements)."""
    inner = S.mul(*extents[1:])
    n0 = L.dims.expr(extents[0])
    total = S.mul(*extents)
    least = max(1, PARALLEL_MIN // max(cost, 1))  # elements per task
    serial = isinstance(total, int) and total < least
    if serial:
        grain = n0
    elif isinstance(inner, int):
        grain = int_lit(max(1, least // max(inner, 1)))
    elif cost == 1:
        grain = Code(f"kc_grain({L.dims.expr(inner)})")
    else:
        grain = Code(f"(kc_grain({L.dims.expr(inner)}) + {int_lit(cost - 1)}) / {int_lit(cost)}")
    return {"rank": len(extents), "extents": [L.dims.expr(e) for e in extents], "n0": n0,
            "grain": grain, "serial": serial, "trig": False, "vec": None}  # elementwise.j2's


def merged(first: Sequence, more: Sequence) -> list:
    """first, then the buffers of more that it lacks (a kernel's reads or writes with those of
    its fused epilogue)."""
    return list(first) + [b for b in more if b not in first]


def label_of(nodes: Sequence[Node]) -> str:
    ops = "+".join(n.op.name for n in nodes)
    return f"{ops} -> {nodes[-1].outputs[0].type}"


class Axis:
    """How one axis of a copy's iteration space maps to source and destination offsets:
    ('lin', stride) for i * stride (stride 0: a copy reads the same elements again)."""

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
    j = _transposed_axis(axes) if L.target == "cpu" and not convert else None
    if j is not None:
        _emit_transpose(L, ptrs, s, d, axes, j, src_base, dst_base, label)
        return
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


def _transposed_axis(axes: List[Axis]) -> Optional[int]:
    """For a copy whose destination is contiguous along its last axis and whose source is
    contiguous along another axis (a transposition), that other axis; else None."""
    if any(a.src[0] != "lin" or a.dst[0] != "lin" or isinstance(a.src[1], Dyn) or
           isinstance(a.dst[1], Dyn) or a.src[1] == 0 for a in axes):
        return None
    if len(axes) < 2 or axes[-1].dst[1] != 1 or axes[-1].src[1] == 1:
        return None
    return next((i for i, a in enumerate(axes[:-1]) if a.src[1] == 1), None)


TRANSPOSE_STRIP = 64  # destination rows per task of a transposing copy


def _emit_transpose(L, ptrs: Pointers, s: Code, d: Code, axes: List[Axis], j: int,
                    src_base, dst_base, label: str) -> None:
    """A transposing copy as 16x16 tiles (csrc/include/kcomp/transpose.h): each task copies a
    strip of TRANSPOSE_STRIP destination rows (source columns) of one outer index."""
    L.include("kcomp/transpose.h")
    e = L.dims.expr
    rows, cols = axes[j], axes[-1]   # destination rows (source columns), destination columns
    outer = [a for i, a in enumerate(axes[:-1]) if i != j]
    strips = Code(f"(({e(rows.extent)} + {TRANSPOSE_STRIP - 1}) / {TRANSPOSE_STRIP})")
    work = S.mul(TRANSPOSE_STRIP, cols.extent)
    ctx = {"ptrs": ptrs.decls, "s": s, "d": d, "strip": int_lit(TRANSPOSE_STRIP),
           "rows": e(rows.extent), "cols": e(cols.extent), "lds": e(cols.src[1]),
           "ldd": e(rows.dst[1]), "src_base": e(src_base), "dst_base": e(dst_base),
           "outer": [(e(a.extent), e(a.src[1]), e(a.dst[1])) for a in outer],
           "tasks": join(" * ", [Code(f"{e(a.extent)}") for a in outer] + [strips])}
    total = S.mul(*(a.extent for a in axes))
    ctx["serial"] = isinstance(total, int) and total < PARALLEL_MIN
    ctx["grain"] = int_lit(max(1, PARALLEL_MIN // work)) if isinstance(work, int) else \
        Code(f"kc_grain({e(work)})")
    L.add(Kernel(L.kernel_name(), "transpose", ctx, label, ptrs.reads, ptrs.writes))


def copy_value(L, t: Tensor, dst: Ref, label: str) -> None:
    """Materialize value t (a buffer, a view of one, or an inline scalar) into dst."""
    k = key(t)
    if k in L.inline:
        fill(L, dst, L.inline[k], label)
        return
    copy_ref(L, L.ref(t), dst, label)


def fill(L, dst: Ref, value: Code, label: str) -> None:
    """Every element of dst = value (a scalar C expression)."""
    ptrs = Pointers()
    d = ptrs.get(dst.buf, write=True)
    ctx = loop_ctx(L, [S.size(dst.dims)])
    ctx.update(ptrs=ptrs.decls, loads=[], body=[],
               stores=[Code(f"{d}[i0] = ({dst.buf.dtype.ctype}){value};")])
    L.add(Kernel(L.kernel_name(), "elementwise", ctx, label, [], ptrs.writes))


def copy_ref(L, src: Ref, dst: Ref, label: str) -> None:
    """dst = src, element for element (same element count)."""
    n = S.size(dst.dims)
    emit_copy(L, src, dst, [Axis(n, ("lin", 1), ("lin", 1))], label=label)


