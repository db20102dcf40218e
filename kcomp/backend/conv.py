"""Convolution and pooling: conv1d/2d/3d, transposed, separable, depthwise and locally connected
convolutions, pool2d/pool3d (Keras 2.3.1 signatures; ops in kcomp/ir/ops/conv.py).

Operands are promoted to one float dtype (ints to floatx); float16 is computed in float32 and
rounded once at the end.
"""
from __future__ import annotations

import numpy as np

from ..ir import build as B
from ..ir import dtypes as D
from ..ir.graph import Tensor
from ..ir.ops.conv import op_name
from ..ir.registry import apply1
from .config import normalize_data_format
from .layout import dims_arg

__all__ = ["conv1d", "conv2d", "conv3d", "conv2d_transpose", "conv3d_transpose",
           "separable_conv1d", "separable_conv2d", "depthwise_conv2d", "local_conv1d",
           "local_conv2d", "pool2d", "pool3d"]


def _ints(op: str, what: str, value, n: int) -> tuple:
    """An int or n ints, each >= 1."""
    vals = (value,) * n if isinstance(value, (int, np.integer)) else tuple(value)
    if len(vals) != n or any(int(v) != v or v < 1 for v in vals):
        raise ValueError(f"{op}: {what} must be a positive integer or {n} of them, got "
                         f"{value!r}")
    return tuple(int(v) for v in vals)


def _padding(padding, allowed=("valid", "same")) -> str:
    if padding not in allowed:
        raise ValueError("Invalid padding: " + str(padding))
    return padding


def _floats(*xs):
    """Tensors of one float dtype to compute in, and the dtype of the result."""
    xs = [B.as_tensor(x) for x in xs]
    dt = B.result_dtype(*xs)
    if not dt.is_float:
        dt = B.floatx_dtype()
    compute = D.float32 if dt.name == "float16" else dt
    return [B.cast(x, compute) for x in xs], dt


def _window_attrs(op, n, strides, padding, data_format, dilation_rate=1, allowed=None):
    return {"strides": _ints(op, "strides", strides, n),
            "dilation": _ints(op, "dilation_rate", dilation_rate, n),
            "padding": _padding(padding, allowed or ("valid", "same")),
            "data_format": normalize_data_format(data_format)}


def _conv(n, x, kernel, strides, padding, data_format, dilation_rate):
    op = op_name("conv", n)
    attrs = _window_attrs(op, n, strides, padding, data_format, dilation_rate,
                          ("valid", "same", "causal") if n == 1 else None)
    if attrs["padding"] == "causal" and attrs["data_format"] != "channels_last":
        raise ValueError('When using causal padding in `conv1d`, `data_format` must be '
                         '"channels_last" (temporal data).')
    (x, kernel), dt = _floats(x, kernel)
    return B.cast(apply1("conv", [x, kernel], attrs), dt)


def conv1d(x, kernel, strides=1, padding='valid', data_format=None, dilation_rate=1):
    return _conv(1, x, kernel, strides, padding, data_format, dilation_rate)


def conv2d(x, kernel, strides=(1, 1), padding='valid', data_format=None, dilation_rate=(1, 1)):
    return _conv(2, x, kernel, strides, padding, data_format, dilation_rate)


def conv3d(x, kernel, strides=(1, 1, 1), padding='valid', data_format=None,
           dilation_rate=(1, 1, 1)):
    return _conv(3, x, kernel, strides, padding, data_format, dilation_rate)


def _depthwise(n, x, depthwise_kernel, strides, padding, data_format, dilation_rate):
    attrs = _window_attrs(op_name("depthwise_conv", n), n, strides, padding, data_format,
                          dilation_rate)
    return apply1("depthwise_conv", [x, depthwise_kernel], attrs)


def depthwise_conv2d(x, depthwise_kernel, strides=(1, 1), padding='valid', data_format=None,
                     dilation_rate=(1, 1)):
    (x, depthwise_kernel), dt = _floats(x, depthwise_kernel)
    return B.cast(_depthwise(2, x, depthwise_kernel, strides, padding, data_format,
                             dilation_rate), dt)


def _separable(n, x, depthwise_kernel, pointwise_kernel, strides, padding, data_format,
               dilation_rate):
    """A depthwise convolution, then a 1x1 convolution (a plain GEMM) mixing its channels."""
    (x, dk, pk), dt = _floats(x, depthwise_kernel, pointwise_kernel)
    y = _depthwise(n, x, dk, strides, padding, data_format, dilation_rate)
    attrs = _window_attrs(op_name("conv", n), n, 1, "valid", data_format)
    return B.cast(apply1("conv", [y, pk], attrs), dt)


def separable_conv1d(x, depthwise_kernel, pointwise_kernel, strides=1, padding='valid',
                     data_format=None, dilation_rate=1):
    return _separable(1, x, depthwise_kernel, pointwise_kernel, strides, padding, data_format,
                      dilation_rate)


def separable_conv2d(x, depthwise_kernel, pointwise_kernel, strides=(1, 1), padding='valid',
                     data_format=None, dilation_rate=(1, 1)):
    return _separable(2, x, depthwise_kernel, pointwise_kernel, strides, padding, data_format,
                      dilation_rate)


def _output_dims(op: str, x: Tensor, output_shape) -> tuple:
    """output_shape as dims: ints, tensors derived from input shapes (Keras's layers pass
    K.shape(x)[0] and arithmetic on it), or None for the batch."""
    if not isinstance(output_shape, Tensor):
        output_shape = list(output_shape)
        if output_shape and output_shape[0] is None:
            output_shape[0] = x.dims[0]
        if any(d is None for d in output_shape):
            raise ValueError(f"{op}: only the batch of output_shape may be None, got "
                             f"{tuple(output_shape)!r}")
    return tuple(dims_arg(output_shape, op))


def _transpose(n, x, kernel, output_shape, strides, padding, data_format, dilation_rate):
    op = op_name("conv_transpose", n)
    attrs = _window_attrs(op, n, strides, padding, data_format, dilation_rate)
    if max(attrs["dilation"]) > 1 and max(attrs["strides"]) > 1:
        raise ValueError(f"{op}: a dilation_rate other than 1 needs strides of 1, as in Keras "
                         f"(got strides {attrs['strides']}, dilation_rate {attrs['dilation']})")
    (x, kernel), dt = _floats(x, kernel)
    attrs["out_dims"] = _output_dims(op, x, output_shape)
    return B.cast(apply1("conv_transpose", [x, kernel], attrs), dt)


def conv2d_transpose(x, kernel, output_shape, strides=(1, 1), padding='valid', data_format=None,
                     dilation_rate=(1, 1)):
    return _transpose(2, x, kernel, output_shape, strides, padding, data_format, dilation_rate)


def conv3d_transpose(x, kernel, output_shape, strides=(1, 1, 1), padding='valid',
                     data_format=None):
    return _transpose(3, x, kernel, output_shape, strides, padding, data_format, 1)


def _local(n, inputs, kernel, kernel_size, strides, out_spatial, data_format):
    op = op_name("local_conv", n)
    attrs = {"kernel_size": _ints(op, "kernel_size", kernel_size, n),
             "strides": _ints(op, "strides", strides, n),
             "out_spatial": tuple(int(d) for d in out_spatial),
             "data_format": normalize_data_format(data_format)}
    (x, kernel), dt = _floats(inputs, kernel)
    return B.cast(apply1("local_conv", [x, kernel], attrs), dt)


def local_conv1d(inputs, kernel, kernel_size, strides, data_format=None):
    """Keras 2.3.1 reads inputs as (batch, steps, features) whatever data_format says (every
    backend does); the kernel is (output_length, kernel_size * features, filters)."""
    normalize_data_format(data_format)
    positions = B.as_tensor(kernel).dims[0]
    return _local(1, inputs, kernel, kernel_size, strides, (positions,), "channels_last")


def local_conv2d(inputs, kernel, kernel_size, strides, output_shape, data_format=None):
    """kernel: (output_row * output_col, features, filters), features ordered as the window
    (rows, cols, channels) for channels_last, (channels, rows, cols) for channels_first."""
    return _local(2, inputs, kernel, kernel_size, strides, output_shape, data_format)


def _pool(n, x, pool_size, strides, padding, data_format, pool_mode):
    op = op_name("pool", n)
    if pool_mode not in ("max", "avg"):
        raise ValueError("Invalid pool_mode: " + str(pool_mode))
    attrs = _window_attrs(op, n, strides, padding, data_format)
    del attrs["dilation"]
    attrs.update(pool_size=_ints(op, "pool_size", pool_size, n), mode=pool_mode)
    (x,), dt = _floats(x)
    return B.cast(apply1("pool", [x], attrs), dt)


def pool2d(x, pool_size, strides=(1, 1), padding='valid', data_format=None, pool_mode='max'):
    return _pool(2, x, pool_size, strides, padding, data_format, pool_mode)


def pool3d(x, pool_size, strides=(1, 1, 1), padding='valid', data_format=None, pool_mode='max'):
    return _pool(3, x, pool_size, strides, padding, data_format, pool_mode)
