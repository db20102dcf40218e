"""dot, batch_dot and transpose: the contractions, lowered to the tuned GEMM kernels."""
from __future__ import annotations

from ..ir import build as B
from ..ir.ops.linalg import batch_dot_axes
from ..ir.registry import apply1

__all__ = ["dot", "batch_dot", "transpose"]


def _same_dtype(x, y):
    x, y = B.as_tensor(x), B.as_tensor(y)
    dt = B.result_dtype(x, y)
    return B.cast(x, dt), B.cast(y, dt)


def dot(x, y):
    """np.dot (Theano's nD semantics): sums over x's last axis and y's second-to-last."""
    x, y = _same_dtype(x, y)
    return apply1("dot", [x, y])


def batch_dot(x, y, axes=None):
    """Keras 2.3.1 batch_dot: per batch item, contract x's axis axes[0] with y's axes[1]."""
    x, y = _same_dtype(x, y)
    return apply1("batch_dot", [x, y], {"axes": batch_dot_axes(x.type, y.type, axes)})


def transpose(x):
    x = B.as_tensor(x)
    return B.transpose(x, tuple(reversed(range(x.ndim))))
