"""The ops that gradients of the convolution family need beyond the forward ops (the rules
themselves are beside the forward ops in conv.py):

- conv_filter_grad(x, g): the kernel gradient of conv: dw[tap, c, o] = sum over batch and
  outputs of x's window element at tap (channel c) times g (channel o);
- depthwise_input_grad(g, w) and depthwise_filter_grad(x, g): both gradients of depthwise_conv;
- pool_grad(x, g): max pooling routes each output's gradient to the first maximum of its window
  (in window order, the first NaN if there is one), as TensorFlow does; average pooling spreads
  it evenly over the window's elements inside the input.

Attributes are the forward op's (strides, dilation, padding, data_format; pool_size and mode
for pooling) plus the static kernel dims (kernel_dims) or the input's dims (in_dims). References
compute in float64 and round once.
"""
from __future__ import annotations

import numpy as np

from .. import shapes as S
from ..graph import TensorType
from ..registry import register, shape_error
from .conv import Geometry, _concrete, _last, _padded, _restore, geometry, split, tap_slices


def _types(op: str, n: int, *types: TensorType) -> None:
    if any(not t.dtype.is_float or t.dtype.name == "float16" or t.dtype != types[0].dtype
           for t in types):
        raise shape_error(op, "needs float32 or float64 operands of one dtype, got "
                          + ", ".join(t.dtype.name for t in types), *types)
    if any(t.ndim != n + 2 for t in types):
        raise shape_error(op, f"needs rank-{n + 2} operands", *types)


def _same(op: str, a: S.Dim, b: S.Dim, what: str, *types) -> S.Dim:
    try:
        return S.same(a, b, f"{op}: {what}")
    except ValueError:
        raise shape_error(op, f"{what}: {a} vs {b}", *types) from None


def _matches(op: str, g: Geometry, t: TensorType, channels: S.Dim, df: str, *types) -> None:
    """t (the gradient of the forward output) has the batch, channels and spatial extents of
    the output of window g."""
    b, c, sp = split(t.dims, df)
    _same(op, g.batch, b, "batch differs", *types)
    _same(op, channels, c, "output channels differ", *types)
    for a, o in zip(sp, g.outs):
        _same(op, o, a, "output spatial extents differ", *types)


def _static(op: str, dims, what: str, *types) -> tuple:
    dims = tuple(dims)
    if not all(isinstance(d, int) for d in dims):
        raise shape_error(op, f"needs static {what}", *types)
    return dims


def _scatter(values_per_tap, g: Geometry, in_shape) -> np.ndarray:
    """The adjoint of reading windows: each tap's values (batch, outs..., C) added into a padded
    buffer at the elements that tap reads, cropped to in_shape (batch, ins..., C)."""
    buf = _padded(np.zeros(in_shape), g)
    for sl, v in values_per_tap:
        buf[(slice(None),) + sl] += v
    crop = tuple(slice(p, p + n) for p, n in zip(g.pads, in_shape[1:-1]))
    return buf[(slice(None),) + crop]


# ---- conv_filter_grad ---------------------------------------------------------------------------

def _kernel_grad_infer(op, types, attrs, out_channels):
    """Shape check of conv_filter_grad and depthwise_filter_grad: x and g against the static
    kernel dims; g has out_channels(kernel dims) channels."""
    x, g = types
    kd = attrs["kernel_dims"]
    n = len(kd) - 2
    _types(op, n, x, g)
    kd = _static(op, kd, "kernel dims", x, g)
    geo = geometry(op, x, kd[:n], attrs, g)
    _same(op, geo.channels, kd[n], "input channels differ from the kernel's", x, g)
    _matches(op, geo, g, out_channels(kd), attrs["data_format"], x, g)
    return [TensorType(x.dtype, kd)]


def _kernel_grad_operands(op, values, attrs):
    """(kernel dims, geometry, padded channels-last x, channels-last g) of a filter gradient."""
    x, g = values
    kd = attrs["kernel_dims"]
    geo = _concrete(op, values, attrs, kd[:-2])
    return (kd, geo, _padded(_last(x, attrs["data_format"]), geo),
            _last(g, attrs["data_format"]))


def _filter_infer(types, attrs):
    return _kernel_grad_infer("conv_filter_grad", types, attrs, lambda kd: kd[-1])


def _filter_ref(values, attrs, out_types):
    kd, geo, xp, gl = _kernel_grad_operands("conv_filter_grad", values, attrs)
    dw = np.zeros(kd)
    axes = list(range(len(kd) - 1))
    for tap, sl in tap_slices(geo):
        dw[tap] = np.tensordot(xp[(slice(None),) + sl], gl, axes=(axes, axes))
    return [dw.astype(out_types[0].dtype.np)]


register("conv_filter_grad", "other", _filter_infer, _filter_ref,
         doc="attrs: kernel_dims, strides, dilation, padding, data_format. The gradient of conv "
             "with respect to its (k..., C, O) kernel, given its input x and the gradient g of "
             "its output, summed in a fixed order")


# ---- depthwise_conv gradients -------------------------------------------------------------------

def _dw_input_infer(types, attrs):
    g, w = types
    n = len(attrs["strides"])
    op = "depthwise_input_grad"
    _types(op, n, g, w)
    in_dims = tuple(attrs["in_dims"])
    if len(in_dims) != n + 2:
        raise shape_error(op, f"input dims {S.fmt(in_dims)} are not of rank {n + 2}", g, w)
    _static(op, w.dims, "kernel dims", g, w)
    x = TensorType(g.dtype, in_dims)
    geo = geometry(op, x, w.dims[:n], attrs, g, w)
    _same(op, geo.channels, w.dims[n], "input channels differ from the kernel's", g, w)
    _matches(op, geo, g, w.dims[n] * w.dims[n + 1], attrs["data_format"], g, w)
    return [x]


def _dw_input_ref(values, attrs, out_types):
    g, w = values
    n = w.ndim - 2
    dims = out_types[0].dims
    df = attrs["data_format"]
    geo = geometry("depthwise_input_grad", TensorType(None, dims), w.shape[:n], attrs)
    gl = _last(g, df)
    gl = gl.reshape(gl.shape[:-1] + w.shape[-2:])
    in_shape = _last(np.empty(dims, np.int8), df).shape
    dx = _scatter(((sl, np.einsum("...cm,cm->...c", gl, w[tap].astype(np.float64)))
                   for tap, sl in tap_slices(geo)), geo, in_shape)
    return [_restore(dx, df, out_types[0].dtype.np)]


register("depthwise_input_grad", "other", _dw_input_infer, _dw_input_ref,
         doc="attrs: in_dims, strides, dilation, padding, data_format. The gradient of "
             "depthwise_conv with respect to its input (dims in_dims), given the (k..., C, M) "
             "kernel and the gradient g of its output")


def _dw_filter_infer(types, attrs):
    return _kernel_grad_infer("depthwise_filter_grad", types, attrs, lambda kd: kd[-2] * kd[-1])


def _dw_filter_ref(values, attrs, out_types):
    kd, geo, xp, gl = _kernel_grad_operands("depthwise_filter_grad", values, attrs)
    gl = gl.reshape(gl.shape[:-1] + kd[-2:])
    dw = np.zeros(kd)
    for tap, sl in tap_slices(geo):
        xs = xp[(slice(None),) + sl]
        dw[tap] = np.einsum("pc,pcm->cm", xs.reshape(-1, kd[-2]), gl.reshape((-1,) + kd[-2:]))
    return [dw.astype(out_types[0].dtype.np)]


register("depthwise_filter_grad", "other", _dw_filter_infer, _dw_filter_ref,
         doc="attrs: kernel_dims, strides, dilation, padding, data_format. The gradient of "
             "depthwise_conv with respect to its (k..., C, M) kernel")


# ---- pool_grad ----------------------------------------------------------------------------------

def _pool_grad_infer(types, attrs):
    x, g = types
    n = len(attrs["strides"])
    op = "pool_grad"
    _types(op, n, x, g)
    geo = geometry(op, x, attrs["pool_size"], attrs, g)
    _matches(op, geo, g, geo.channels, attrs["data_format"], x, g)
    return [x]


def _pool_grad_ref(values, attrs, out_types):
    x, g = values
    df = attrs["data_format"]
    geo = _concrete("pool_grad", values, attrs, attrs["pool_size"])
    xl, gl = _last(x, df), _last(g, df)
    inside = _padded(np.ones(xl.shape, bool), geo, False)
    xp = _padded(xl, geo)
    parts = []
    if attrs["mode"] == "max":
        y = np.full(gl.shape, -np.inf)
        for _, sl in tap_slices(geo):
            y = np.where(inside[(slice(None),) + sl], np.maximum(y, xp[(slice(None),) + sl]), y)
        taken = np.zeros(gl.shape, bool)  # outputs whose maximum was found at an earlier tap
        for _, sl in tap_slices(geo):
            v = xp[(slice(None),) + sl]
            hit = inside[(slice(None),) + sl] & ~taken & ((v == y) | (np.isnan(v) & np.isnan(y)))
            taken |= hit
            parts.append((sl, np.where(hit, gl, 0.0)))
    else:
        count = sum(inside[(slice(None),) + sl].astype(np.float64) for _, sl in tap_slices(geo))
        share = gl / np.maximum(count, 1)
        parts = [(sl, share * inside[(slice(None),) + sl]) for _, sl in tap_slices(geo)]
    return [_restore(_scatter(parts, geo, xl.shape), df, out_types[0].dtype.np)]


register("pool_grad", "other", _pool_grad_infer, _pool_grad_ref,
         doc="attrs: the pool op's (pool_size, strides, padding, data_format, mode). The "
             "gradient of pool with respect to its input x, given the gradient g of its output: "
             "max routes it to the first maximum of each window, avg spreads it evenly over the "
             "window's elements inside the input")
