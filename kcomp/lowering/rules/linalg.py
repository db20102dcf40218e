"""dot and batch_dot as strided batched GEMMs (template gemm.j2)."""
from __future__ import annotations

from typing import Tuple

from ... import config
from ...ir import shapes as S
from ...ir.graph import Node, Tensor
from ..names import Code, int_lit
from ..plan import Kernel, Ref
from . import rule
from .common import Axis, Pointers, contiguous_strides, emit_copy, key, label_of, merged


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
              ldb, ldc, stride_a, stride_b, stride_c, epi=None, label=None, reads=(),
              writes=(), bias: Ref | None = None, act: Code = Code("KC_ACT_NONE"),
              conv: dict | None = None) -> None:
    """One GEMM kernel; epi: a fused epilogue's pointers, loads, body and stores over C's
    (row i0, column i1), with the extra buffers it reads and writes. bias, act (CUDA only): a
    bias row and activation the library GEMM applies itself. conv (CUDA float32 only): A is
    the patches of a channels_last convolution with this geometry (kc_cuda_conv_args' fields
    as C expressions), read where they lie by the library's implicit GEMM."""
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
               what=Code(node.op.name), prepack=False, cache_b=False, epi=epi, act=act,
               conv=conv,
               bias_slot=bias.buf.slot if bias is not None else -1,
               # CUDA float32: TF32 tensor cores only when the user allows them
               precision=int(L.target == "cuda" and dt.name == "float32" and
                             config.cuda_tf32()))
    if bias is not None:
        reads = list(reads) + [bias.buf]
    L.add(Kernel(L.kernel_name(), "gemm", ctx, label or label_of([node]),
                 merged(ptrs.reads, reads), merged(ptrs.writes, writes)))


@rule("dot")
def _dot(L, node: Node):
    emit_dot(L, node)


def _operand(L, t: Tensor) -> Tuple[Ref, bool]:
    """A 2-D operand's buffer, and whether it holds the operand transposed: fusion folds a
    transpose read only by matrix products, which then read its source with swapped strides."""
    if t.ndim == 2 and t.node.op.name == "transpose" and key(t) not in L.storage:
        src = t.node.inputs[0]
        return L.ref(src), True
    return L.ref(t), False


def emit_dot(L, node: Node, **epilogue):
    x, y = node.inputs
    out = node.outputs[0]
    (A, trans_a), (B, trans_b), C = _operand(L, x), _operand(L, y), L.ref(out)
    kdim = x.dims[-1]
    if y.ndim == 1:
        m = S.mul(*x.dims[:-1])
        emit_gemm(L, node, A, B, C, trans_a=False, trans_b=False, m=m, n=1, k=kdim, batch=1,
                  lda=kdim, ldb=1, ldc=1, stride_a=0, stride_b=0, stride_c=0, **epilogue)
        return
    nb = S.mul(*y.dims[:-2])            # y's batch: every leading dim of y
    n = y.dims[-1]
    m = S.mul(*x.dims[:-1])
    # out[m..., b..., j] = sum_p x[m, p] * y[b, p, j]: one GEMM per y batch item, writing
    # column block b of each output row (ldc = nb * n)
    emit_gemm(L, node, A, B, C, trans_a=trans_a, trans_b=trans_b, m=m, n=n, k=kdim, batch=nb,
              lda=m if trans_a else kdim, ldb=kdim if trans_b else n, ldc=S.mul(nb, n),
              stride_a=0, stride_b=S.mul(kdim, n), stride_c=n, **epilogue)


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
