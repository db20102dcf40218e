"""Convolution and pooling kernels (templates conv_direct.j2, conv_rows.j2, conv.j2,
conv_window.j2, conv_transpose.j2) and the kernels of their gradients (conv_filter_direct.j2,
conv_filter_grad.j2, conv_window_grad.j2).

- conv: channels_last, a direct kernel (implicit GEMM, kcomp/conv.h) over the input as it lies
  with the kernel packed once per call (im2col tiles + the tuned GEMM, one scratch tile per
  thread, where it has no output channels); with at most ROWS_MAX_O output channels and
  stride 1 along rows, vectors of output pixels over transposed input rows (conv_rows.j2);
  otherwise a 1x1 stride-1 convolution is a GEMM on the input as it lies. channels_first: on
  the CPU, the channels_last kernel between transposes (kcomp/ir/passes/layout.py), except the
  1x1 GEMM, which takes either layout. In CUDA, float32 convolutions are the kernel
  library's implicit GEMM (kc_cuda_conv, patches read where they lie; channels_first ones
  between transposes, as on the CPU), others a direct kernel per output element (conv.j2,
  conv_direct.j2).
- conv_filter_grad: channels_last, direct (sums in registers over the pixels of runs of output
  rows); channels_first, im2col tiles + the GEMM; either way in partial sums of a fixed
  number of chunks, added in order.
- depthwise_conv and pool: direct sliding-window loops, vectorized over channels
  (channels_last) or output columns (channels_first); their gradients likewise, a task owning
  the elements it writes.
- conv_transpose: a GEMM of the input with the kernel gives every tap's contribution; a gather
  (col2im) sums them into each output element, so no two threads write one element.
- local_conv: an index-mapping copy gathers the patches, one batched GEMM applies each
  position's weights.
Every window is padded to 3 spatial dims with leading size-1 dims, so one template serves 1-3.
"""
from __future__ import annotations

from ...ir import shapes as S
from ...ir.graph import Node
from ...ir.ops.conv import (CUDA_IMPLICIT_GEMM, Geometry, geometry, op_name, split,
                            transpose_geometry)
from ..names import Code, c_string, int_lit
from ..plan import Kernel, Ref
from . import rule
from .common import Axis, Pointers, contiguous_strides, emit_copy, label_of, merged
from .linalg import emit_gemm

# An im2col tile of about TILE_BYTES, within TILE_ROWS output pixels: each GEMM call repacks the
# kernel, so fewer, larger calls pay less for that (measured: 1 MiB beats 256 KiB by 10%), while
# enough tiles keep the threads evenly busy.
TILE_BYTES = 1 << 20
TILE_ROWS = (128, 2048)
COLS_ELEMS = 1 << 20      # transposed convolution: tap contributions of a group of batch items,
GROUP = 64                # of at most this many items
LANES = 256               # accumulators of a direct sliding-window kernel
# output channels up to which a convolution vectorizes over output pixels (conv_rows.j2): the
# direct kernel vectorizes over output channels, and below a quarter of a vector most of its
# lanes idle
ROWS_MAX_O = 4
CHUNKS = 16               # kernel gradients: partial sums of chunks of tiles,
PARTIAL_BYTES = 32 << 20  # within this much memory


def _geom3(g: Geometry) -> dict:
    """The window as 3-d template parameters (D, H, W / OD, OH, OW as C expressions of the
    caller, taps, strides, dilations and pads as ints)."""
    lead = 3 - len(g.ks)
    pad = lambda v, one: (one,) * lead + tuple(v)  # noqa: E731
    ctx = {}
    for key, vals in (("K", pad(g.ks, 1)), ("S", pad(g.strides, 1)), ("DL", pad(g.dilation, 1)),
                      ("P", pad(g.pads, 0))):
        for axis, v in zip("DHW", vals):
            ctx[key + axis] = int(v)
    return ctx


def _extents(L, prefix: str, dims) -> dict:
    dims = (1,) * (3 - len(dims)) + tuple(dims)
    return {prefix + axis: L.dims.expr(d) for axis, d in zip("DHW", dims)}


def _threads(L):
    """One scratch slot per thread of the pool (known at run time; CUDA kernels need none)."""
    if L.target == "cuda":
        return 1
    return L.dims.computed(Code("(int64_t)c->api->num_threads()"))


def _common(L, node: Node, g: Geometry) -> dict:
    dt = node.outputs[0].type.dtype
    ctx = {"T": Code(dt.ctype), "code": int_lit(dt.code),
           "cf": node.attrs["data_format"] == "channels_first", "B": L.dims.expr(g.batch)}
    ctx.update(_geom3(g))
    ctx.update(_extents(L, "", g.ins))
    ctx.update(_extents(L, "O", g.outs))
    return ctx


def _tile(K: int, P, itemsize: int, cf: bool) -> int:
    """Output pixels per im2col tile."""
    rows = min(max(TILE_ROWS[0], TILE_BYTES // max(K * itemsize, 1)), TILE_ROWS[1])
    nt = -(-rows // 8) * 8  # whole register tiles of the GEMM
    if cf and isinstance(P, int) and P > 0:
        per = -(-P // nt)
        nt = -(-P // per)   # even tiles within an item
    return nt


@rule("conv")
def _conv(L, node: Node):
    emit_conv(L, node)


def emit_conv(L, node: Node, **epilogue):
    """epilogue (channels_last): lower_epilogue's epi, label, reads and writes; the direct
    kernel applies epi to each finished block of output pixels, a 1x1 convolution's GEMM to
    each block of C."""
    x, w = node.inputs
    out = node.outputs[0]
    n = len(node.attrs["strides"])
    g = geometry(op_name("conv", n), x.type, w.dims[:n], node.attrs)
    C, O = w.dims[n], w.dims[n + 1]
    P = S.mul(*g.outs)
    cf = node.attrs["data_format"] == "channels_first"
    few = not cf and 0 < O <= ROWS_MAX_O and g.strides[-1] == 1 and L.target == "cpu"
    if all(k == 1 for k in g.ks) and all(s == 1 for s in g.strides) and not few:
        _pointwise(L, node, g, C, O, P, **epilogue)
        return
    L.include("kcomp/conv.h")
    assert L.target == "cuda" or not cf, "kcomp/ir/passes/layout.py makes CPU convs channels_last"
    K = C * int(S.mul(*g.ks))
    if few:  # (1x1 too: as a GEMM, a product with 1 to 4 columns)
        _rows(L, node, g, C, O, K, **epilogue)
        return
    if L.target == "cuda" and not cf and O > 0 and out.type.dtype.name in CUDA_IMPLICIT_GEMM:
        _implicit_gemm(L, node, g, C, O, K, **epilogue)
        return
    if not cf and O > 0:
        _direct(L, node, g, C, O, K, **epilogue)
        return
    assert not epilogue or O == 0, "an epilogue over no output channels has nothing to do"
    nt = _tile(K, P, out.type.dtype.itemsize, cf)
    slots = _threads(L)
    col = L.buffer(out.type.dtype, (slots, nt * K), "scratch")
    ctx = _common(L, node, g)
    ctx.update(C=C, O=O, K=K, NT=nt, P=L.dims.expr(P), slots=L.dims.expr(slots),
               x=L.ref(x).buf.slot, w=L.ref(w).buf.slot, y=L.ref(out).buf.slot, col=col.slot,
               what=c_string(f"{op_name('conv', n)}: matrix product failed (rows vs depth)"),
               can_fail=True)
    ins = [L.ref(x).buf, L.ref(w).buf]
    L.add(Kernel(L.kernel_name(), "conv", ctx, label_of([node]), ins + [col],
                 [L.ref(out).buf, col]))


def _direct(L, node: Node, g: Geometry, C: int, O: int, K: int, epi=None, label=None,
            reads=(), writes=()):
    """channels_last: the direct kernel of conv_direct.j2 (kcomp/conv.h)."""
    x, w = node.inputs
    out = node.outputs[0]
    dt = out.type.dtype
    ctx = _common(L, node, g)
    # packed kernel: at most 2 * O + 32 channels per row once padded to whole panels of any
    # vector width; edge buffer: the columns of a tile of at most 12 pixels, per kernel row
    wp = L.buffer(dt, (K * (2 * O + 32),), "scratch")
    gw = 11 * ctx["SW"] + (ctx["KW"] - 1) * ctx["DLW"] + 1
    slots = _threads(L)
    # (each thread's buffer in cache lines of its own)
    stride = -(-ctx["KD"] * ctx["KH"] * gw * C // 16) * 16 + 16
    buf = L.buffer(dt, (slots, stride), "scratch")
    ctx.update(C=C, O=O, K=K, rows=L.dims.expr(S.mul(g.batch, *g.outs[:-1])),
               slots=L.dims.expr(slots), x=L.ref(x).buf.slot, w=L.ref(w).buf.slot,
               y=L.ref(out).buf.slot, wp=wp.slot, buf=buf.slot, bufstride=stride, epi=epi,
               cache_w=False)  # set by lower._mark_cached_weights
    ins = [L.ref(x).buf, L.ref(w).buf, wp, buf]
    outs = [L.ref(out).buf, wp, buf]
    L.add(Kernel(L.kernel_name(), "conv_direct", ctx, label or label_of([node]),
                 merged(ins, reads), merged(outs, writes)))


def _implicit_gemm(L, node: Node, g: Geometry, C: int, O: int, K: int, **epilogue):
    """CUDA, channels_last float32: the kernel library's implicit GEMM (kc_cuda_conv), which
    reads the patches where they lie; the fused epilogue runs after it as after any GEMM."""
    x, w = node.inputs
    ctx = _common(L, node, g)
    conv = {"c": C}
    for axis in "DHW":
        a = axis.lower()
        conv.update({a: ctx[axis], "o" + a: ctx["O" + axis], "k" + a: ctx["K" + axis],
                     "s" + a: ctx["S" + axis], "p" + a: ctx["P" + axis],
                     "d" + a: ctx["DL" + axis]})
    emit_gemm(L, node, L.ref(x), L.ref(w), L.ref(node.outputs[0]), trans_a=False,
              trans_b=False, m=S.mul(g.batch, *g.outs), n=O, k=K, batch=1, lda=K, ldb=O, ldc=O,
              stride_a=0, stride_b=0, stride_c=0, conv=conv, **epilogue)


def _rows(L, node: Node, g: Geometry, C: int, O: int, K: int, epi=None, label=None, reads=(),
          writes=()):
    """channels_last, stride 1 along rows, at most ROWS_MAX_O output channels: vectors of
    output pixels (conv_rows.j2)."""
    x, w = node.inputs
    out = node.outputs[0]
    dt = out.type.dtype
    L.include("kcomp/transpose.h")
    ctx = _common(L, node, g)
    # a transposed row: the row's pixels rounded up to whole vectors (of at most 64 bytes),
    # and the taps' reach
    wp = S.add(g.outs[-1], 64 // dt.itemsize + (ctx["KW"] - 1) * ctx["DLW"])
    slots = _threads(L)
    buf = L.buffer(dt, (slots, ctx["KD"] * ctx["KH"] * C, wp), "scratch")
    ctx.update(C=C, O=O, rows=L.dims.expr(S.mul(g.batch, *g.outs[:-1])),
               slots=L.dims.expr(slots), x=L.ref(x).buf.slot, w=L.ref(w).buf.slot,
               y=L.ref(out).buf.slot, buf=buf.slot, epi=epi)
    ins = [L.ref(x).buf, L.ref(w).buf, buf]
    outs = [L.ref(out).buf, buf]
    L.add(Kernel(L.kernel_name(), "conv_rows", ctx, label or label_of([node]),
                 merged(ins, reads), merged(outs, writes)))


def _pointwise(L, node: Node, g: Geometry, C, O, P, **epilogue):
    """A 1x1 convolution with stride 1 is a product with the kernel viewed as (C, O)."""
    x, w = node.inputs
    X, Wt, Y = L.ref(x), L.ref(w), L.ref(node.outputs[0])
    if node.attrs["data_format"] == "channels_last":
        emit_gemm(L, node, X, Wt, Y, trans_a=False, trans_b=False, m=S.mul(g.batch, P), n=O,
                  k=C, batch=1, lda=C, ldb=O, ldc=O, stride_a=0, stride_b=0, stride_c=0,
                  **epilogue)
    else:  # per item: y (O, P) = w^T (O, C) x (C, P)
        emit_gemm(L, node, Wt, X, Y, trans_a=True, trans_b=False, m=O, n=P, k=C,
                  batch=g.batch, lda=O, ldb=P, ldc=P, stride_a=0, stride_b=S.mul(C, P),
                  stride_c=S.mul(O, P))


@rule("conv_filter_grad")
def _conv_filter_grad(L, node: Node):
    L.include("kcomp/conv.h")
    x, gy = node.inputs
    out = node.outputs[0]
    kd = node.attrs["kernel_dims"]
    n = len(kd) - 2
    g = geometry("conv_filter_grad", x.type, kd[:n], node.attrs)
    C, O = kd[n], kd[n + 1]
    P = S.mul(*g.outs)
    cf = node.attrs["data_format"] == "channels_first"
    K = C * int(S.mul(*g.ks))
    dt = out.type.dtype
    # chunks of the work with a partial sum each: a fixed count, so that the order of the sum
    # does not depend on the threads
    chunks = max(1, min(CHUNKS, PARTIAL_BYTES // max(K * O * dt.itemsize, 1)))
    slots = _threads(L)
    if not cf and O > 0:   # channels_last: direct
        part = L.buffer(dt, (chunks, K * O), "scratch")
        ctx = _common(L, node, g)
        ctx.update(C=C, O=O, K=K, G=chunks, rows=L.dims.expr(S.mul(g.batch, *g.outs[:-1])),
                   slots=L.dims.expr(slots), x=L.ref(x).buf.slot, g=L.ref(gy).buf.slot,
                   y=L.ref(out).buf.slot, part=part.slot)
        L.add(Kernel(L.kernel_name(), "conv_filter_direct", ctx, label_of([node]),
                     [L.ref(x).buf, L.ref(gy).buf, part], [L.ref(out).buf, part]))
        return
    nt = _tile(K, P, dt.itemsize, cf)
    col = L.buffer(dt, (slots, nt * K), "scratch")
    tmp = L.buffer(dt, (slots, K * O), "scratch")
    part = L.buffer(dt, (chunks, K * O), "scratch")
    ctx = _common(L, node, g)
    ctx.update(C=C, O=O, K=K, NT=nt, G=chunks, P=L.dims.expr(P), slots=L.dims.expr(slots),
               x=L.ref(x).buf.slot, g=L.ref(gy).buf.slot, y=L.ref(out).buf.slot, col=col.slot,
               tmp=tmp.slot, part=part.slot, can_fail=True,
               what=c_string("conv_filter_grad: matrix product failed (rows vs depth)"))
    scratch = [col, tmp, part]
    L.add(Kernel(L.kernel_name(), "conv_filter_grad", ctx, label_of([node]),
                 [L.ref(x).buf, L.ref(gy).buf] + scratch, [L.ref(out).buf] + scratch))


@rule("depthwise_conv", "pool")
def _window(L, node: Node):
    emit_window(L, node)


def emit_window(L, node: Node, epi=None, label=None, reads=(), writes=()):
    """epi (channels_last): lower_epilogue's epilogue, applied to each finished output row."""
    L.include("kcomp/conv.h")
    x, out = node.inputs[0], node.outputs[0]
    n = len(node.attrs["strides"])
    name = node.op.name
    ks = node.attrs["pool_size"] if name == "pool" else node.inputs[1].dims[:n]
    g = geometry(op_name(name, n), x.type, ks, node.attrs)
    M = node.inputs[1].dims[-1] if name == "depthwise_conv" else 1
    ptrs = Pointers()
    ctx = _common(L, node, g)
    ctx.update(C=L.dims.expr(g.channels), M=M, x=ptrs.get(L.ref(x).buf),
               y=ptrs.get(L.ref(out).buf, write=True), dw=name == "depthwise_conv",
               max=node.attrs.get("mode") == "max", avg=node.attrs.get("mode") == "avg",
               LC=max(1, LANES // M), LT=LANES)
    if ctx["dw"]:
        ctx["w"] = ptrs.get(L.ref(node.inputs[1]).buf)
    # a task is an output row (batch item, leading output dims), also per channel for
    # channels_first, whose lanes are then the last output dim rather than the channels
    cm = S.mul(g.channels, M)
    rows = S.mul(g.batch, cm, *g.outs[:-1]) if ctx["cf"] else S.mul(g.batch, *g.outs[:-1])
    lanes = 1 if ctx["cf"] else cm
    assert epi is None or not ctx["cf"], "fusion gives epilogues to channels_last kernels only"
    ctx.update(ptrs=ptrs.decls, rows=L.dims.expr(rows),
               work=L.dims.expr(S.mul(g.outs[-1], int(S.mul(*ks)), lanes)), epi=epi)
    L.add(Kernel(L.kernel_name(), "conv_window", ctx, label or label_of([node]),
                 merged(ptrs.reads, reads), merged(ptrs.writes, writes)))


@rule("pool_grad", "depthwise_input_grad", "depthwise_filter_grad")
def _window_grad(L, node: Node):
    L.include("kcomp/conv.h")
    name, attrs = node.op.name, node.attrs
    out = node.outputs[0]
    n = len(attrs["strides"])
    ptrs = Pointers()
    if name == "pool_grad":
        (x, gy), w = node.inputs, None
        g = geometry(name, x.type, attrs["pool_size"], attrs)
    elif name == "depthwise_input_grad":
        gy, w = node.inputs
        g = geometry(name, out.type, w.dims[:n], attrs)
        x = None
    else:
        (x, gy), w = node.inputs, None
        g = geometry(name, x.type, attrs["kernel_dims"][:n], attrs)
    M = attrs["kernel_dims"][-1] if name == "depthwise_filter_grad" else \
        w.dims[-1] if w is not None else 1
    ctx = _common(L, node, g)
    filt = name == "depthwise_filter_grad"
    lc = max(1, LANES // M) if filt else 64
    ctx.update(C=L.dims.expr(g.channels), M=M, LC=lc, filter=filt,
               max=attrs.get("mode") == "max", avg=attrs.get("mode") == "avg",
               g=ptrs.get(L.ref(gy).buf), y=ptrs.get(L.ref(out).buf, write=True))
    if x is not None:
        ctx["x"] = ptrs.get(L.ref(x).buf)
    if w is not None:
        ctx["w"] = ptrs.get(L.ref(w).buf)
    if isinstance(g.channels, int):
        blocks = -(-g.channels // lc)
    else:   # channels known at run time
        blocks = L.dims.computed(Code(f"(({L.dims.expr(g.channels)}) + {lc - 1}) / {lc}"))
    taps = int(S.mul(*g.ks))
    tasks = S.mul(taps, blocks) if filt else S.mul(g.batch, blocks)
    work = S.mul(g.batch, *g.outs) if filt else S.mul(*g.outs, taps)
    ctx.update(ptrs=ptrs.decls, tasks=L.dims.expr(tasks), work=L.dims.expr(S.mul(work, lc)))
    L.add(Kernel(L.kernel_name(), "conv_window_grad", ctx, label_of([node]), ptrs.reads,
                 ptrs.writes))


@rule("conv_transpose")
def _conv_transpose(L, node: Node):
    L.include("kcomp/conv.h")
    x, w = node.inputs
    out = node.outputs[0]
    n = len(node.attrs["strides"])
    # the forward window runs from this op's output (g.ins) to its input x (g.outs)
    g = transpose_geometry(op_name("conv_transpose", n), x.type, w.type, node.attrs)
    O, C = w.dims[n], w.dims[n + 1]
    KKO = O * int(S.mul(*g.ks))
    Pin = int(S.mul(*g.outs))
    group = max(1, min(GROUP, COLS_ELEMS // max(Pin * KKO, 1)))
    if isinstance(g.batch, int):
        group = max(1, min(group, g.batch))
    cols = L.buffer(out.type.dtype, (group, Pin * KKO), "scratch")
    ctx = _common(L, node, g)
    ctx.update(_extents(L, "O", g.ins))    # this op's output extents
    ctx.update(_extents(L, "I", g.outs))   # and its input's
    ctx.update(C=C, O=O, KKO=KKO, Pin=Pin, G=group, x=L.ref(x).buf.slot, w=L.ref(w).buf.slot,
               y=L.ref(out).buf.slot, cols=cols.slot,
               what=c_string(f"{op_name('conv_transpose', n)}: matrix product failed"))
    ins = [L.ref(x).buf, L.ref(w).buf]
    L.add(Kernel(L.kernel_name(), "conv_transpose", ctx, label_of([node]), ins + [cols],
                 [L.ref(out).buf, cols]))


@rule("local_conv")
def _local_conv(L, node: Node):
    x, w = node.inputs
    out = node.outputs[0]
    df = node.attrs["data_format"]
    batch, channels, _ = split(x.dims, df)
    outs, ks, strides = (node.attrs[a] for a in ("out_spatial", "kernel_size", "strides"))
    positions, features, filters = w.dims
    # patches (batch, positions, features), features in Keras's window order
    own = contiguous_strides(x.dims)
    b_stride, c_stride, sp = (own[0], own[1], own[2:]) if df == "channels_first" else \
        (own[0], own[-1], own[1:-1])
    src = [b_stride] + [S.mul(s, st) for s, st in zip(strides, sp)]
    iter_dims = [batch] + list(outs)
    window = list(zip(ks, sp))
    window = [(channels, c_stride)] + window if df == "channels_first" else \
        window + [(channels, c_stride)]
    iter_dims += [e for e, _ in window]
    src += [st for _, st in window]
    pdims = (batch, positions, features)
    patches = Ref(L.buffer(x.type.dtype, pdims, "scratch"), pdims)
    dst = contiguous_strides(iter_dims)
    emit_copy(L, L.ref(x), patches, [Axis(e, ("lin", s), ("lin", t))
                                     for e, s, t in zip(iter_dims, src, dst)],
              label=f"{op_name('local_conv', len(ks))}: gather patches")
    # one product per position p: (batch, features) @ (features, filters)
    ydims = (batch, positions, filters)
    Y = L.ref(out) if df == "channels_last" else Ref(L.buffer(out.type.dtype, ydims, "scratch"),
                                                     ydims)
    emit_gemm(L, node, patches, L.ref(w), Y, trans_a=False, trans_b=False, m=batch, n=filters,
              k=features, batch=positions, lda=S.mul(positions, features),
              ldb=filters, ldc=S.mul(positions, filters), stride_a=features,
              stride_b=S.mul(features, filters), stride_c=filters)
    if df == "channels_first":   # (batch, positions, filters) -> (batch, filters, positions)
        ys = contiguous_strides(ydims)
        emit_copy(L, Y, L.ref(out), [Axis(batch, ("lin", ys[0]), ("lin", ys[0])),
                                     Axis(filters, ("lin", 1), ("lin", positions)),
                                     Axis(positions, ("lin", filters), ("lin", 1))],
                  label="local_conv: filters first")
