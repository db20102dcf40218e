"""Normalization, losses and friends: in_top_k, l2_normalize, bias_add, batch normalization,
cross-entropies (Keras 2.3.1 semantics, TensorFlow backend).

Everything but in_top_k and the label lookup of sparse_categorical_crossentropy is composed of
elementwise ops and reductions, which fuse into few loops; the formulas are TensorFlow's.
"""
from __future__ import annotations

import numbers

import numpy as np

from ..ir import build as B
from ..ir import dtypes as D
from ..ir import shapes as S
from ..ir.ops.reduce import normalize_axes
from ..ir.registry import apply1, shape_error
from . import config

__all__ = ["in_top_k", "l2_normalize", "bias_add", "normalize_batch_in_training",
           "batch_normalization", "categorical_crossentropy", "sparse_categorical_crossentropy",
           "binary_crossentropy"]


def _float(x):
    x = B.as_tensor(x)
    return x if x.type.dtype.is_float else B.cast(x, B.floatx_dtype())


def _add(a, b): return B.binary("add", a, b)
def _sub(a, b): return B.binary("sub", a, b)
def _mul(a, b): return B.binary("mul", a, b)
def _log(x): return B.unary("log", x)


def _rsqrt(x):
    return B.binary("truediv", 1, B.unary("sqrt", x))


def in_top_k(predictions, targets, k):
    """bool (batch,): whether targets[i] is among the k highest predictions[i]; ties with the
    k-th highest count as in; out-of-range targets and rows with non-finite scores are False."""
    if not isinstance(k, numbers.Integral) or isinstance(k, (bool, np.bool_)):
        raise TypeError(f"in_top_k: k must be an int, got {k!r}")
    return apply1("in_top_k", [B.as_tensor(predictions), B.as_tensor(targets)], {"k": int(k)})


def l2_normalize(x, axis=None):
    """x / sqrt(max(sum(x**2, axis), 1e-12)), as tf.nn.l2_normalize."""
    x = _float(x)
    squares = B.reduce("sum", B.unary("square", x), axis, keepdims=True)
    return _mul(x, _rsqrt(B.binary("maximum", squares, 1e-12)))


def bias_add(x, bias, data_format=None):
    """x + bias along the channel axis. A bias of rank 1 holds one value per channel; one of
    rank ndim(x) - 1 is reshaped (not transposed) to x's layout, as Keras 2.3.1 does."""
    fmt = config.normalize_data_format(data_format)
    x, bias = B.as_tensor(x), B.as_tensor(bias)
    nd, nb = x.ndim, bias.ndim
    if nb not in (1, nd - 1):
        raise shape_error("bias_add", f"unexpected bias rank {nb}: expected 1 or {nd - 1}",
                          x.type, bias.type)
    if nd in (3, 4, 5):
        shape = (1,) * (nd - nb) + bias.dims
        if fmt == "channels_first":
            shape = shape[:1] + shape[-1:] + shape[1:-1]
        strict = nd == 4 and nb == 1 and fmt == "channels_last"
        b = B.reshape(bias, shape)
    else:
        if nd < 2 or nb != 1:  # tf.nn.bias_add
            raise shape_error("bias_add", "needs an input of rank >= 2 and a bias of rank 1",
                              x.type, bias.type)
        strict, b = True, bias
    # where TensorFlow calls tf.nn.bias_add, the bias length must equal the channel count
    if strict and S.is_static(x.dims[-1]) and S.is_static(bias.dims[0]) and \
            bias.dims[0] != x.dims[-1]:
        raise shape_error("bias_add", "the bias length differs from the channel count",
                          x.type, bias.type)
    try:
        return _add(x, b)
    except ValueError:
        raise shape_error("bias_add", "the bias does not broadcast against the input",
                          x.type, bias.type) from None


def batch_normalization(x, mean, var, beta, gamma, axis=-1, epsilon=1e-3):
    """tf.nn.batch_normalization: x * inv + (beta - mean * inv), inv = gamma / sqrt(var + eps).
    The parameters broadcast against x (axis is accepted: TensorFlow's CPU path ignores it);
    beta and gamma may be None. The result has x's dtype."""
    x = _float(x)
    dt = x.type.dtype

    def param(p):
        p = B.as_tensor(p)
        return p if p.type.dtype.is_float else B.cast(p, dt)

    inv = _rsqrt(_add(param(var), epsilon))
    if gamma is not None:
        inv = _mul(inv, param(gamma))
    shift = _mul(param(mean), inv)
    shift = B.unary("neg", shift) if beta is None else _sub(param(beta), shift)
    return _add(_mul(x, B.cast(inv, dt)), B.cast(shift, dt))


def normalize_batch_in_training(x, gamma, beta, reduction_axes, epsilon=1e-3):
    """(normed, mean, var): x normalized by its mean and (biased) variance over reduction_axes,
    then scaled by gamma and shifted by beta (None: 1 and 0). gamma and beta have the shape of
    the kept axes; mean and var are returned without the reduced axes."""
    x = _float(x)
    axes = normalize_axes("normalize_batch_in_training", x.type, reduction_axes)
    mean = B.reduce("mean", x, axes, keepdims=True)
    var = B.reduce("var", x, axes, keepdims=True)
    kept = [d for a, d in enumerate(x.dims) if a not in axes]
    if axes != tuple(range(x.ndim - 1)):
        # TensorFlow's broadcast path: gamma and beta reshaped to the mean's shape
        gamma = None if gamma is None else B.reshape(B.as_tensor(gamma), mean.dims)
        beta = None if beta is None else B.reshape(B.as_tensor(beta), mean.dims)
    normed = batch_normalization(x, mean, var, beta, gamma, epsilon=epsilon)
    return normed, B.reshape(mean, kept), B.reshape(var, kept)


# ---- cross-entropies --------------------------------------------------------------------------

def _logits_of(output, activation: str):
    """The input of `output` when it is the result of a sigmoid or of a softmax over the last
    axis: TensorFlow then computes the loss from those logits (numerically stable)."""
    node = output.node
    if node.op.name != activation:
        return None
    if activation == "softmax" and node.attrs["axis"] != output.ndim - 1:
        return None  # TensorFlow's softmax over another axis ends in a transpose
    return node.inputs[0]


def _clip(p):
    """clip_by_value(p, eps, 1 - eps), both bounds in p's dtype."""
    dt = p.type.dtype.np
    eps = config.epsilon()
    hi = float(np.asarray(1, dt) - np.asarray(eps, dt))
    return B.binary("maximum", B.binary("minimum", p, hi), eps)


def _target(target, output):
    return B.cast(B.as_tensor(target), output.type.dtype)


def categorical_crossentropy(target, output, from_logits=False, axis=-1):
    """-sum(target * log(p), axis) with p = output / sum(output, axis) clipped to [eps, 1-eps];
    from logits (or from a softmax's output): sum(target * (logsumexp(logits) - logits))."""
    output = _float(output)
    target = _target(target, output)
    axis = B.axis_arg("categorical_crossentropy", output, int(axis))
    if not from_logits:
        logits = _logits_of(output, "softmax")
        if logits is None:
            p = _clip(B.binary("truediv", output, B.reduce("sum", output, axis, keepdims=True)))
            return B.unary("neg", B.reduce("sum", _mul(target, _log(p)), axis))
        output = logits
    lse = B.reduce("logsumexp", output, axis, keepdims=True)
    return B.reduce("sum", _mul(target, _sub(lse, output)), axis)


def sparse_categorical_crossentropy(target, output, from_logits=False, axis=-1):
    """logsumexp(logits) - logits[label] per row, logits = log(clip(output)) unless from_logits.
    target holds integer labels (any shape with one label per row; floats are truncated); a
    label outside [0, classes) raises IndexError when the function runs (TensorFlow's CPU).
    Result: output's shape without the class axis ((rows,) for rank <= 2)."""
    op = "sparse_categorical_crossentropy"
    output = _float(output)
    target = B.as_tensor(target)
    axis = B.axis_arg(op, output, int(axis))
    if not from_logits:
        logits = _logits_of(output, "softmax")
        output = _log(_clip(output)) if logits is None else logits
    if axis != output.ndim - 1:
        output = B.transpose(output, [a for a in range(output.ndim) if a != axis] + [axis])
    rows = output.dims[:-1]
    n_rows = S.size(rows)
    logits = B.reshape(output, (n_rows, output.dims[-1]))
    labels = B.reshape(B.cast(target, D.int64), (-1,))
    if labels.dims != (n_rows,):
        labels = apply1("expect_dims", [labels], {"dims": (n_rows,), "where": f"{op}: one label "
                                                  "per row of output is needed (labels vs rows)"})
    picked = apply1("gather", [logits, labels], {"batch_dims": 1, "what": op})
    loss = _sub(B.reduce("logsumexp", logits, 1), picked)
    return B.reshape(loss, rows) if output.ndim >= 3 else loss


def binary_crossentropy(target, output, from_logits=False):
    """-(t * log(p + eps) + (1 - t) * log(1 - p + eps)), p = clip(output, eps, 1 - eps); from
    logits (or from a sigmoid's output) TensorFlow's stable form
    max(x, 0) - x * t + log1p(exp(-|x|))."""
    output = _float(output)
    target = _target(target, output)
    if not from_logits:
        logits = _logits_of(output, "sigmoid")
        if logits is None:
            eps = config.epsilon()
            p = _clip(output)
            bce = _add(_mul(target, _log(_add(p, eps))),
                       _mul(_sub(1, target), _log(_add(_sub(1, p), eps))))
            return B.unary("neg", bce)
        output = logits
    x = output
    positive = B.binary("greater_equal", x, 0)
    relu = B.select(positive, x, 0)
    neg_abs = B.select(positive, B.unary("neg", x), x)
    # softplus(y) for y <= 0 is exactly log1p(exp(y))
    return _add(_sub(relu, _mul(x, target)), B.unary("softplus", neg_abs))
