"""Neural-network ops with a kernel of their own (activations are elementwise ops)."""
from __future__ import annotations

import numpy as np

from .. import build as B
from ..autodiff import defgrad
from ..registry import register, shape_error


def _softmax_infer(types, attrs):
    (t,) = types
    if not t.dtype.is_float:
        raise shape_error("softmax", f"needs a float operand, got {t.dtype.name}", t)
    if t.ndim == 0:
        raise shape_error("softmax", "needs rank >= 1", t)
    return [t]


def _softmax_ref(values, attrs, out_types):
    x = values[0]
    xf = x.astype(np.float32) if x.dtype == np.float16 else x
    axis = attrs["axis"]
    if x.size == 0:  # (np.max refuses an empty axis; the softmax of nothing is nothing)
        return [x.copy()]
    with np.errstate(all="ignore"):
        e = np.exp(xf - np.max(xf, axis=axis, keepdims=True))
        r = e * (1.0 / np.sum(e, axis=axis, keepdims=True, dtype=np.float64))
    return [r.astype(x.dtype)]


register("softmax", "other", _softmax_infer, _softmax_ref,
         doc="attrs: axis. exp(x - max) / sum(exp(x - max)) along one axis")


@defgrad("softmax")
def _softmax_grad(node, grads):
    # y * (g - sum(g * y)) along the axis
    y, g, axis = node.outputs[0], grads[0], node.attrs["axis"]
    dot = B.reduce("sum", B.binary("mul", g, y), axis, keepdims=True)
    return [B.binary("mul", y, B.binary("sub", g, dot))]
