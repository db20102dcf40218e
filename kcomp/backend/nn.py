"""Activations and softmax."""
from __future__ import annotations

from ..ir import build as B
from ..ir.registry import apply1

__all__ = ["relu", "elu", "softmax", "softplus", "softsign", "sigmoid", "hard_sigmoid", "tanh"]


def relu(x, alpha=0., max_value=None, threshold=0.):
    return B.unary("relu", x, alpha=float(alpha),
                   max_value=None if max_value is None else float(max_value),
                   threshold=float(threshold))


def elu(x, alpha=1.):
    return B.unary("elu", x, alpha=float(alpha))


def softmax(x, axis=-1):
    x = B.as_tensor(x)
    if not x.type.dtype.is_float:
        x = B.cast(x, B.floatx_dtype())
    return apply1("softmax", [x], {"axis": B.axis_arg("softmax", x, int(axis))})


def softplus(x): return B.unary("softplus", x)
def softsign(x): return B.unary("softsign", x)
def sigmoid(x): return B.unary("sigmoid", x)
def hard_sigmoid(x): return B.unary("hard_sigmoid", x)
def tanh(x): return B.unary("tanh", x)
