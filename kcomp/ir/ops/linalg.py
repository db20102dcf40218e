"""Contractions: dot (numpy/Theano semantics) and batch_dot (Keras 2.3.1 semantics).

Both lower to the kernel library's strided batched GEMM, without copies where the operand
layout allows it (kcomp/lowering/kernels.py). References compute in float64 / int64 and round
once, so they are at least as accurate as any native result they are compared with.
"""
from __future__ import annotations

import numpy as np

from .. import build as B
from .. import shapes as S
from ..autodiff import defgrad
from ..graph import TensorType
from ..registry import apply1, register, shape_error


def _wide(x):
    return x.astype(np.float64 if x.dtype.kind == "f" else np.int64 if x.dtype.kind == "i"
                    else np.uint64)


def _dot_infer(types, attrs):
    x, y = types
    if x.dtype != y.dtype:
        raise shape_error("dot", "operands must share one dtype", x, y)
    if x.dtype.is_bool:
        raise shape_error("dot", "cannot multiply bool matrices; cast them first", x, y)
    if x.ndim == 0 or y.ndim == 0:
        raise shape_error("dot", "operands must have rank >= 1", x, y)
    ky = y.dims[0] if y.ndim == 1 else y.dims[-2]
    try:
        S.same(x.dims[-1], ky, "dot: contracted dimensions differ")
    except ValueError:
        raise shape_error("dot", f"contracted dimensions {x.dims[-1]} and {ky} differ", x, y) \
            from None
    dims = x.dims[:-1] + (y.dims[:-2] + y.dims[-1:] if y.ndim >= 2 else ())
    return [TensorType(x.dtype, dims)]


register("dot", "other", _dot_infer,
         lambda v, a, o: [np.dot(_wide(v[0]), _wide(v[1])).astype(o[0].dtype.np)],
         doc="np.dot: sum over the last axis of x and the second-to-last of y (the only one of "
             "a vector)")


def batch_dot_axes(x: TensorType, y: TensorType, axes):
    """Keras 2.3.1's axes rules -> (ax, ay), validated and non-negative."""
    if x.ndim < 2 or y.ndim < 2:
        raise shape_error("batch_dot", "operands must have rank >= 2", x, y)
    if axes is None:
        axes = (x.ndim - 1, y.ndim - 1 if y.ndim == 2 else y.ndim - 2)
    elif isinstance(axes, (int, np.integer)):
        axes = (int(axes), int(axes))
    if len(axes) != 2 or any(isinstance(a, (list, tuple)) for a in axes):
        raise shape_error("batch_dot", f"axes must be None, an int or a pair of ints, got {axes}",
                          x, y)
    ax, ay = (int(axes[0]) % x.ndim if -x.ndim <= axes[0] < x.ndim else None,
              int(axes[1]) % y.ndim if -y.ndim <= axes[1] < y.ndim else None)
    if ax is None or ay is None:
        raise shape_error("batch_dot", f"axes {tuple(axes)} out of range", x, y)
    if ax == 0 or ay == 0:
        raise shape_error("batch_dot", "cannot contract over the batch axis 0", x, y)
    return ax, ay


def _batch_dot_infer(types, attrs):
    x, y = types
    ax, ay = attrs["axes"]
    if x.dtype != y.dtype or x.dtype.is_bool:
        raise shape_error("batch_dot", "operands must share one non-bool dtype", x, y)
    try:
        b = S.same(x.dims[0], y.dims[0], "batch_dot: batch sizes differ")
    except ValueError:
        raise shape_error("batch_dot", "batch sizes differ", x, y) from None
    try:
        S.same(x.dims[ax], y.dims[ay], "batch_dot: contracted dimensions differ")
    except ValueError:
        raise shape_error("batch_dot", f"x.shape[{ax}] != y.shape[{ay}]", x, y) from None
    dims = (b,) + tuple(d for i, d in enumerate(x.dims) if i not in (0, ax)) + \
        tuple(d for i, d in enumerate(y.dims) if i not in (0, ay))
    if len(dims) == 1:
        dims = dims + (1,)
    return [TensorType(x.dtype, dims)]


def _batch_dot_ref(values, attrs, out_types):
    x, y = (_wide(v) for v in values)
    ax, ay = attrs["axes"]
    # (explicit extents, not -1: numpy cannot infer one in an empty batch)
    xm, ym = np.moveaxis(x, ax, -1), np.moveaxis(y, ay, 1)
    xt = xm.reshape(xm.shape[0], int(np.prod(xm.shape[1:-1])), xm.shape[-1])
    yt = ym.reshape(ym.shape[0], ym.shape[1], int(np.prod(ym.shape[2:])))
    return [np.matmul(xt, yt).reshape(out_types[0].dims).astype(out_types[0].dtype.np)]


register("batch_dot", "other", _batch_dot_infer, _batch_dot_ref,
         doc="attrs: axes (ax, ay). For each batch item, contract x's axis ax with y's axis ay; "
             "result: x's other dims then y's (rank 1 becomes (batch, 1))")


# ---- gradients ------------------------------------------------------------------------------

def _mm(a, b, trans_a=False, trans_b=False):
    """a . b of two matrices, either read transposed: a batch_dot over a batch of one, whose
    kernel reads a transposed operand in place instead of copying it."""
    a3 = B.reshape(a, (1,) + a.dims)
    b3 = B.reshape(b, (1,) + b.dims)
    r = apply1("batch_dot", [a3, b3], {"axes": (1 if trans_a else 2, 2 if trans_b else 1)})
    return B.reshape(r, r.dims[1:])


@defgrad("dot")
def _dot_grad(node, grads):
    x, y = node.inputs
    g = grads[0]
    k = x.dims[-1]
    m = S.size(x.dims[:-1])
    x2 = B.reshape(x, (m, k))
    if y.ndim == 1:
        g1 = B.reshape(g, (m, 1))
        dx = B.reshape(B.binary("mul", g1, y), x.dims)
        dy = B.reshape(_mm(x2, g1, trans_a=True), y.dims)
        return [dx, dy]
    # y (b..., k, n) seen as (k, b... n) columns: out[m, (b, n)] = x[m, :] . y[b, :, n]
    batch, n = y.dims[:-2], y.dims[-1]
    g2 = B.reshape(g, (m, S.mul(S.size(batch), n)))
    if not batch:
        dx = _mm(g2, y, trans_b=True)
        dy = _mm(x2, g2, trans_a=True)
    else:
        lead = list(range(len(batch)))
        yk = B.reshape(B.transpose(y, [len(batch)] + lead + [len(batch) + 1]),
                       (k, S.mul(S.size(batch), n)))
        dx = _mm(g2, yk, trans_b=True)
        dyk = B.reshape(_mm(x2, g2, trans_a=True), (k,) + batch + (n,))
        dy = B.transpose(dyk, [a + 1 for a in lead] + [0, len(batch) + 1])
    return [B.reshape(dx, x.dims), dy]


@defgrad("batch_dot")
def _batch_dot_grad(node, grads):
    """As a product of (b, M, K) and (b, K, N) views: dx = g . y^T and dy = x^T . g, batched."""
    x, y = node.inputs
    ax, ay = node.attrs["axes"]
    b = x.dims[0]
    xo = [a for a in range(1, x.ndim) if a != ax]
    yo = [a for a in range(1, y.ndim) if a != ay]
    mx = S.size([x.dims[a] for a in xo])
    ny = S.size([y.dims[a] for a in yo])
    k = x.dims[ax]
    xperm, yperm = [0] + xo + [ax], [0, ay] + yo
    x3 = B.reshape(B.transpose(x, xperm), (b, mx, k))
    y3 = B.reshape(B.transpose(y, yperm), (b, k, ny))
    g3 = B.reshape(grads[0], (b, mx, ny))
    dx3 = apply1("batch_dot", [g3, y3], {"axes": (2, 2)})
    dy3 = apply1("batch_dot", [x3, g3], {"axes": (1, 1)})
    dx = B.transpose(B.reshape(dx3, [x.dims[a] for a in xperm]),
                     [xperm.index(a) for a in range(x.ndim)])
    dy = B.transpose(B.reshape(dy3, [y.dims[a] for a in yperm]),
                     [yperm.index(a) for a in range(y.ndim)])
    return [dx, dy]
