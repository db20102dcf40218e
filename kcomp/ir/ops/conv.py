"""Convolution and pooling over 1 to 3 spatial dimensions, in either data format.

- conv: kernel (k..., C, O); depthwise_conv: kernel (k..., C, M), output channel c * M + m;
- conv_transpose: kernel (k..., O, C), the adjoint of conv for the given output size;
- pool: max, or the mean of the window's elements that lie inside the input;
- local_conv: unshared weights, kernel (positions, patch features, O), 'valid' windows.

Windows follow TensorFlow: 'valid' has no padding; 'same' gives out = ceil(in / stride) and pads
pad_total = max((out - 1) * stride + (k - 1) * dilation + 1 - in, 0), pad_total // 2 before;
'causal' (conv1d) pads (k - 1) * dilation before. Spatial extents must be static, except that
a stride of 1 with 'same' or 'causal' padding keeps a run-time extent (out == in). Every op is
float32/float64 only (the backend computes float16 in float32). References compute in float64
and round once.
"""
from __future__ import annotations

from typing import NamedTuple, Tuple

import numpy as np

from .. import build as B
from .. import shapes as S
from ..autodiff import defgrad
from ..graph import TensorType
from ..registry import apply1, register, shape_error

FORMATS = ("channels_last", "channels_first")
# the dtypes of the convolutions CUDA runs as the kernel library's implicit GEMM (kc_cuda_conv,
# channels_last: kcomp/lowering/rules/conv.py); channels_first ones become channels_last between
# transposes for it (kcomp/ir/passes/layout.py)
CUDA_IMPLICIT_GEMM = ("float32",)
PADDINGS = ("valid", "same", "causal")


def op_name(base: str, n: int) -> str:
    """The Keras spelling of an op over n spatial dims, for messages: conv2d, pool3d, ..."""
    return {"conv": f"conv{n}d", "depthwise_conv": f"depthwise_conv{n}d",
            "conv_transpose": f"conv{n}d_transpose", "pool": f"pool{n}d",
            "local_conv": f"local_conv{n}d"}[base]


def split(dims: S.Shape, data_format: str) -> Tuple[S.Dim, S.Dim, S.Shape]:
    """(batch, channels, spatial dims) of an activation's dims."""
    if data_format == "channels_first":
        return dims[0], dims[1], tuple(dims[2:])
    return dims[0], dims[-1], tuple(dims[1:-1])


def join(batch: S.Dim, channels: S.Dim, spatial, data_format: str) -> S.Shape:
    spatial = tuple(spatial)
    if data_format == "channels_first":
        return (batch, channels) + spatial
    return (batch,) + spatial + (channels,)


def window(n: S.Dim, k: int, s: int, d: int, padding: str) -> Tuple[S.Dim, int]:
    """(output extent, padding before) of a window of k taps, stride s and dilation d over n
    elements; raises ValueError (without the op's name) when it does not fit."""
    ke = (k - 1) * d + 1
    if not isinstance(n, int):
        if s == 1 and padding in ("same", "causal"):
            return n, (ke - 1) // 2 if padding == "same" else ke - 1
        raise ValueError("spatial dimensions must be known unless the stride is 1 and padding "
                         "is 'same' or 'causal'")
    if padding == "valid":
        if n < ke:
            raise ValueError(f"a window of {ke} does not fit in {n} elements with 'valid' "
                             "padding")
        return (n - ke) // s + 1, 0
    out = -(-n // s)
    if padding == "causal":
        return out, ke - 1
    return out, max((out - 1) * s + ke - n, 0) // 2


class Geometry(NamedTuple):
    """A sliding window over the spatial dims of a batch of activations."""
    batch: S.Dim
    channels: S.Dim          # input channels
    ins: Tuple[S.Dim, ...]   # input spatial extents
    ks: Tuple[int, ...]      # taps
    strides: Tuple[int, ...]
    dilation: Tuple[int, ...]
    outs: Tuple[S.Dim, ...]  # output spatial extents
    pads: Tuple[int, ...]    # padding before


def geometry(op: str, x: TensorType, ks, attrs, *others: TensorType) -> Geometry:
    """The window of a conv, depthwise_conv or pool node over input x, taps ks."""
    batch, channels, ins = split(x.dims, attrs["data_format"])
    strides, dilation = attrs["strides"], attrs.get("dilation", (1,) * len(ks))
    outs, pads = [], []
    for n, k, s, d in zip(ins, ks, strides, dilation):
        try:
            o, p = window(n, k, s, d, attrs["padding"])
        except ValueError as e:
            raise shape_error(op, str(e), x, *others) from None
        outs.append(o)
        pads.append(p)
    return Geometry(batch, channels, ins, tuple(ks), tuple(strides), tuple(dilation),
                    tuple(outs), tuple(pads))


def _check(op: str, n: int, x: TensorType, *kernels: TensorType, kernel_rank=None) -> None:
    """Operand checks shared by every op: float dtype, ranks, static kernel shapes."""
    types = (x,) + kernels
    if not x.dtype.is_float or x.dtype.name == "float16" or \
            any(k.dtype != x.dtype for k in kernels):
        raise shape_error(op, "needs float32 or float64 operands of one dtype, got "
                          + ", ".join(t.dtype.name for t in types), *types)
    if x.ndim != n + 2:
        raise shape_error(op, f"needs a rank-{n + 2} input", *types)
    for k in kernels:
        if k.ndim != (kernel_rank or n + 2):
            raise shape_error(op, f"needs a rank-{kernel_rank or n + 2} kernel", *types)
        if not all(isinstance(d, int) for d in k.dims):
            raise shape_error(op, "needs a kernel of static shape", *types)


def _same_channels(op: str, a: S.Dim, b: int, what: str, *types) -> int:
    try:
        return S.same(a, b, f"{op}: {what}")
    except ValueError:
        raise shape_error(op, f"{what}: {a} vs {b}", *types) from None


# ---- numpy references (float64, channels last inside) -----------------------------------------

def _last(x: np.ndarray, data_format: str) -> np.ndarray:
    x = x.astype(np.float64)
    return np.moveaxis(x, 1, -1) if data_format == "channels_first" else x


def _restore(y: np.ndarray, data_format: str, dtype) -> np.ndarray:
    if data_format == "channels_first":
        y = np.moveaxis(y, -1, 1)
    return np.ascontiguousarray(y).astype(dtype)


def _padded(x: np.ndarray, g: Geometry, value=0.0) -> np.ndarray:
    """x (channels last) padded so that every tap of every output reads inside it."""
    widths = [(0, 0)]
    for n, k, s, d, o, p in zip(x.shape[1:-1], g.ks, g.strides, g.dilation, g.outs, g.pads):
        need = (o - 1) * s + (k - 1) * d + 1 if o else 0
        widths.append((p, max(need - n - p, 0)))
    return np.pad(x, widths + [(0, 0)], constant_values=value)


def tap_slices(g: Geometry):
    """(tap index, the spatial slices of the padded input that tap reads for every output)."""
    for tap in np.ndindex(*g.ks):
        yield tap, tuple(slice(t * d, t * d + (o - 1) * s + 1, s) if o else slice(0, 0)
                         for t, d, o, s in zip(tap, g.dilation, g.outs, g.strides))


def _taps(xp: np.ndarray, g: Geometry):
    """(tap index, the input elements that tap reads for every output), channels last."""
    for tap, sl in tap_slices(g):
        yield tap, xp[(slice(None),) + sl]


def _concrete(op, arrays, attrs, ks):
    x = TensorType(None, arrays[0].shape)
    return geometry(op, x, ks, attrs)


# ---- conv ---------------------------------------------------------------------------------------

def _conv_infer(types, attrs):
    x, w = types
    n = len(attrs["strides"])
    op = op_name("conv", n)
    _check(op, n, x, w)
    g = geometry(op, x, w.dims[:n], attrs, w)
    _same_channels(op, g.channels, w.dims[n], "input channels differ from the kernel's", x, w)
    return [TensorType(x.dtype, join(g.batch, w.dims[-1], g.outs, attrs["data_format"]))]


def _conv_ref(values, attrs, out_types):
    x, w = values
    n = w.ndim - 2
    g = _concrete("conv", values, attrs, w.shape[:n])
    xl = _last(x, attrs["data_format"])
    y = np.zeros((xl.shape[0],) + g.outs + (w.shape[-1],))
    for tap, xs in _taps(_padded(xl, g), g):
        y += xs @ w[tap].astype(np.float64)
    return [_restore(y, attrs["data_format"], out_types[0].dtype.np)]


register("conv", "other", _conv_infer, _conv_ref,
         doc="attrs: strides, dilation, padding, data_format. Cross-correlation of x with a "
             "(k..., C, O) kernel: im2col + GEMM")


# ---- depthwise_conv -----------------------------------------------------------------------------

def _depthwise_infer(types, attrs):
    x, w = types
    n = len(attrs["strides"])
    op = op_name("depthwise_conv", n)
    _check(op, n, x, w)
    g = geometry(op, x, w.dims[:n], attrs, w)
    c = _same_channels(op, g.channels, w.dims[n], "input channels differ from the kernel's", x, w)
    return [TensorType(x.dtype, join(g.batch, c * w.dims[-1], g.outs, attrs["data_format"]))]


def _depthwise_ref(values, attrs, out_types):
    x, w = values
    n = w.ndim - 2
    g = _concrete("depthwise_conv", values, attrs, w.shape[:n])
    xl = _last(x, attrs["data_format"])
    y = np.zeros((xl.shape[0],) + g.outs + w.shape[-2:])
    for tap, xs in _taps(_padded(xl, g), g):
        y += xs[..., None] * w[tap].astype(np.float64)
    y = y.reshape(y.shape[:-2] + (y.shape[-2] * y.shape[-1],))
    return [_restore(y, attrs["data_format"], out_types[0].dtype.np)]


register("depthwise_conv", "other", _depthwise_infer, _depthwise_ref,
         doc="attrs: strides, dilation, padding, data_format. Each input channel c convolved "
             "with its M filters of a (k..., C, M) kernel, giving channels c * M + m")


# ---- pool ---------------------------------------------------------------------------------------

def _pool_infer(types, attrs):
    (x,) = types
    n = len(attrs["strides"])
    op = op_name("pool", n)
    _check(op, n, x)
    g = geometry(op, x, attrs["pool_size"], attrs)
    return [TensorType(x.dtype, join(g.batch, g.channels, g.outs, attrs["data_format"]))]


def _pool_ref(values, attrs, out_types):
    g = _concrete("pool", values, attrs, attrs["pool_size"])
    xl = _last(values[0], attrs["data_format"])
    if attrs["mode"] == "max":
        y = np.full((xl.shape[0],) + g.outs + xl.shape[-1:], -np.inf)
        for _, xs in _taps(_padded(xl, g, -np.inf), g):
            y = np.maximum(y, xs)
    else:
        total = np.zeros((xl.shape[0],) + g.outs + xl.shape[-1:])
        count = np.zeros_like(total[:1, ..., :1])
        inside = _padded(np.ones_like(xl[:1, ..., :1]), g)
        for (_, xs), (_, ones) in zip(_taps(_padded(xl, g), g), _taps(inside, g)):
            total += xs
            count += ones
        y = total / np.maximum(count, 1)
    return [_restore(y, attrs["data_format"], out_types[0].dtype.np)]


register("pool", "other", _pool_infer, _pool_ref,
         doc="attrs: pool_size, strides, padding, data_format, mode ('max' or 'avg', the mean "
             "over the window's elements inside the input)")


# ---- conv_transpose -----------------------------------------------------------------------------

def transpose_geometry(op: str, x: TensorType, w: TensorType, attrs) -> Geometry:
    """The window of the forward conv whose adjoint this is: from the output (attrs out_dims)
    to x. Its `ins` are the output's extents, its `outs` x's."""
    df = attrs["data_format"]
    _, _, out_sp = split(attrs["out_dims"], df)
    if not all(isinstance(d, int) for d in out_sp):
        raise shape_error(op, "needs static output spatial dimensions", x, w)
    out = TensorType(x.dtype, attrs["out_dims"])
    n = len(out_sp)
    g = geometry(op, out, w.dims[:n], attrs, x, w)
    _, _, x_sp = split(x.dims, df)
    if g.outs != x_sp:
        raise shape_error(op, f"output shape {S.fmt(attrs['out_dims'])} does not give the "
                          f"input's spatial shape {S.fmt(x_sp)} with these strides and padding",
                          x, w)
    return g


def _transpose_infer(types, attrs):
    x, w = types
    n = len(attrs["strides"])
    op = op_name("conv_transpose", n)
    _check(op, n, x, w)
    df = attrs["data_format"]
    xb, xc, _ = split(x.dims, df)
    ob, oc, _ = split(attrs["out_dims"], df)
    if len(attrs["out_dims"]) != n + 2:
        raise shape_error(op, f"output shape {S.fmt(attrs['out_dims'])} is not of rank {n + 2}",
                          x, w)
    transpose_geometry(op, x, w, attrs)
    _same_channels(op, xc, w.dims[-1], "input channels differ from the kernel's last axis", x, w)
    if oc != w.dims[-2]:
        raise shape_error(op, f"output channels {oc} differ from the kernel's {w.dims[-2]}",
                          x, w)
    try:
        b = S.same(xb, ob, f"{op}: the output shape's batch differs from the input's")
    except ValueError:
        raise shape_error(op, f"the output shape's batch {ob} differs from the input's {xb}",
                          x, w) from None
    _, _, out_sp = split(attrs["out_dims"], df)
    return [TensorType(x.dtype, join(b, oc, out_sp, df))]


def _transpose_ref(values, attrs, out_types):
    x, w = values
    df = attrs["data_format"]
    n = w.ndim - 2
    out_dims = out_types[0].dims
    _, _, out_sp = split(out_dims, df)
    g = geometry("conv_transpose", TensorType(None, out_dims), w.shape[:n], attrs)
    xl = _last(x, df)
    # scatter every tap into a buffer that also holds the padding, then crop it
    full = tuple(max((i - 1) * s + (k - 1) * d + 1, p + o) for i, s, k, d, p, o in
                 zip(g.outs, g.strides, g.ks, g.dilation, g.pads, out_sp))
    y = np.zeros((xl.shape[0],) + full + (w.shape[-2],))
    for tap in np.ndindex(*g.ks):
        sl = tuple(slice(t * d, t * d + (i - 1) * s + 1, s) if i else slice(0, 0)
                   for t, d, i, s in zip(tap, g.dilation, g.outs, g.strides))
        y[(slice(None),) + sl] += xl @ w[tap].astype(np.float64).T
    y = y[(slice(None),) + tuple(slice(p, p + o) for p, o in zip(g.pads, out_sp))]
    return [_restore(y, df, out_types[0].dtype.np)]


register("conv_transpose", "other", _transpose_infer, _transpose_ref,
         doc="attrs: out_dims, strides, dilation, padding, data_format. The adjoint of conv "
             "(kernel (k..., O, C)) with output dims out_dims: GEMM + col2im")


# ---- local_conv ---------------------------------------------------------------------------------

def local_out(op: str, x: TensorType, w: TensorType, attrs) -> Tuple[int, ...]:
    """Output positions of a locally connected layer; checks that every window fits."""
    _, _, ins = split(x.dims, attrs["data_format"])
    outs = attrs["out_spatial"]
    if not all(isinstance(d, int) for d in ins):
        raise shape_error(op, "needs static spatial dimensions", x, w)
    for n, k, s, o in zip(ins, attrs["kernel_size"], attrs["strides"], outs):
        if o < 0 or (o > 0 and (o - 1) * s + k > n):
            raise shape_error(op, f"{o} windows of {k} with stride {s} do not fit in {n}", x, w)
    return outs


def _local_infer(types, attrs):
    x, w = types
    n = len(attrs["strides"])
    op = op_name("local_conv", n)
    _check(op, n, x, w, kernel_rank=3)
    outs = local_out(op, x, w, attrs)
    b, c, _ = split(x.dims, attrs["data_format"])
    positions, features, filters = w.dims
    if positions != int(np.prod(outs)):
        raise shape_error(op, f"the kernel has {positions} positions, the output "
                          f"{S.fmt(outs)}", x, w)
    taps = int(np.prod(attrs["kernel_size"]))
    if features % taps:
        raise shape_error(op, f"kernel features {features} are not a multiple of the window's "
                          f"{taps} taps", x, w)
    _same_channels(op, c, features // taps, "input channels differ from the kernel's features "
                   "per tap", x, w)
    return [TensorType(x.dtype, join(b, filters, outs, attrs["data_format"]))]


def local_patches(x: np.ndarray, attrs) -> np.ndarray:
    """(batch, positions, features): each window flattened as Keras 2.3.1 does (channels last:
    (taps..., C); channels first: (C, taps...))."""
    df = attrs["data_format"]
    rows = []
    for pos in np.ndindex(*attrs["out_spatial"]):
        sl = tuple(slice(p * s, p * s + k) for p, s, k in
                   zip(pos, attrs["strides"], attrs["kernel_size"]))
        win = x[(slice(None), slice(None)) + sl] if df == "channels_first" else \
            x[(slice(None),) + sl + (slice(None),)]
        rows.append(win.reshape(len(x), int(np.prod(win.shape[1:]))))
    return np.stack(rows, 1) if rows else np.zeros((len(x), 0, 0))


def _local_ref(values, attrs, out_types):
    x, w = values
    patches = local_patches(x.astype(np.float64), attrs)
    y = np.einsum("bpf,pfo->bpo", patches, w.astype(np.float64))
    y = y.reshape((len(x),) + tuple(attrs["out_spatial"]) + (w.shape[-1],))
    return [_restore(y, attrs["data_format"], out_types[0].dtype.np)]


register("local_conv", "other", _local_infer, _local_ref,
         doc="attrs: kernel_size, strides, out_spatial, data_format. Unshared weights: output "
             "position p is patch(p) @ kernel[p]")


# ---- gradients (the extra ops they use are in conv_grad.py) -----------------------------------

def _window_attrs(attrs) -> dict:
    return {k: attrs[k] for k in ("strides", "dilation", "padding", "data_format")}


def conv_input_grad(x, w, g, attrs):
    """The gradient of conv(x, w) with respect to x, given g: the adjoint of conv."""
    n = len(attrs["strides"])
    df = attrs["data_format"]
    ks, dil = w.dims[:n], attrs["dilation"]
    spatial = [a + 1 for a in range(n)] if df == "channels_last" else [a + 2 for a in range(n)]
    wt = B.transpose(w, list(range(n)) + [n + 1, n])  # (k..., O, C): a conv from g to x
    stride1 = all(s == 1 for s in attrs["strides"])
    if stride1 and all(k == 1 for k in ks):  # pointwise: no padding either way
        return apply1("conv", [g, wt], dict(_window_attrs(attrs), padding="valid",
                                             dilation=(1,) * n))
    if stride1 and attrs["padding"] == "same" and all((k - 1) * d % 2 == 0
                                                     for k, d in zip(ks, dil)):
        # symmetric padding: the adjoint is the same conv with the flipped kernel
        return apply1("conv", [g, apply1("reverse", [wt], {"axes": tuple(range(n))})],
                      _window_attrs(attrs))
    _, _, ins = split(x.dims, df)
    if all(isinstance(d, int) for d in ins):
        return apply1("conv_transpose", [g, w], dict(_window_attrs(attrs), out_dims=x.dims))
    # a run-time extent (stride 1, 'same' or 'causal'): flipping g and the result moves the
    # padding to the other side, so conv computes the adjoint
    flip = {"axes": tuple(spatial)}
    return apply1("reverse", [apply1("conv", [apply1("reverse", [g], flip), wt],
                                     _window_attrs(attrs))], flip)


@defgrad("conv")
def _conv_grad(node, grads):
    x, w = node.inputs
    g = grads[0]
    dw = apply1("conv_filter_grad", [x, g], dict(_window_attrs(node.attrs), kernel_dims=w.dims))
    return [conv_input_grad(x, w, g, node.attrs), dw]


@defgrad("conv_transpose")
def _transpose_grad(node, grads):
    """conv_transpose(x, w) is the adjoint of conv(., w): its input gradient is that conv, its
    kernel gradient the conv kernel gradient with the roles of input and output swapped."""
    x, w = node.inputs
    g = grads[0]
    attrs = _window_attrs(node.attrs)
    dx = apply1("conv", [g, w], attrs)
    dw = apply1("conv_filter_grad", [g, x], dict(attrs, kernel_dims=w.dims))
    return [dx, dw]


@defgrad("depthwise_conv")
def _depthwise_grad(node, grads):
    x, w = node.inputs
    attrs = _window_attrs(node.attrs)
    dx = apply1("depthwise_input_grad", [grads[0], w], dict(attrs, in_dims=x.dims))
    dw = apply1("depthwise_filter_grad", [x, grads[0]], dict(attrs, kernel_dims=w.dims))
    return [dx, dw]


@defgrad("pool")
def _pool_grad(node, grads):
    return [apply1("pool_grad", [node.inputs[0], grads[0]], node.attrs)]


@defgrad("local_conv")
def _local_grad(node, grads):
    """local_conv is a gather of patches and one product per position, so its gradients are
    products with the patches and a scatter-add of the patch gradients (constant indices)."""
    x, w = node.inputs
    df = node.attrs["data_format"]
    positions, features, filters = w.dims
    batch = x.dims[0]
    taps = int(np.prod(node.attrs["kernel_size"]))
    _, _, ins = split(x.dims, df)
    inner = join(1, features // taps, ins, df)[1:]           # x's dims past the batch
    size = int(np.prod(inner))
    idx = B.as_tensor(local_patches(np.arange(size).reshape((1,) + inner), node.attrs)[0]
                      .astype(np.int64))                     # (positions, features)
    xt = B.transpose(B.reshape(x, (batch, size)), [1, 0])    # (size, batch)
    patches = apply1("gather", [xt, idx], {"batch_dims": 0, "what": "local_conv"})
    g = grads[0]
    if df == "channels_last":                                # g as (positions, batch, filters)
        gp = B.transpose(B.reshape(g, (batch, positions, filters)), [1, 0, 2])
    else:
        gp = B.transpose(B.reshape(g, (batch, filters, positions)), [2, 0, 1])
    dw = apply1("batch_dot", [patches, gp], {"axes": (2, 1)})
    dpatches = apply1("batch_dot", [w, gp], {"axes": (2, 2)})  # (positions, features, batch)
    dxt = apply1("scatter_add", [dpatches, idx], {"batch_dims": 0, "dims": (size, batch),
                                                  "what": "local_conv"})
    return [B.reshape(B.transpose(dxt, [1, 0]), x.dims), dw]
