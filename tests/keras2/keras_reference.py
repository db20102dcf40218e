"""Independent numpy forward passes of Keras 2.3.1 layers, for tests/keras2/test_keras_models_*.py.

Written from Keras's documented semantics and weight layouts (channels_last), in float64, without
Keras or kcomp: the tests compare what Keras computes on kcomp against these.
"""
from __future__ import annotations

import itertools

import numpy as np

# ----------------------------------------------------------------------------------------------
# activations


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def hard_sigmoid(x):
    return np.clip(0.2 * x + 0.5, 0.0, 1.0)


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def elu(x, alpha=1.0):
    return np.where(x > 0, x, alpha * (np.exp(np.minimum(x, 0)) - 1))


def selu(x):
    alpha, scale = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
    return scale * elu(x, alpha)


ACTIVATIONS = {
    None: lambda x: x,
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0),
    "tanh": np.tanh,
    "sigmoid": sigmoid,
    "hard_sigmoid": hard_sigmoid,
    "softmax": softmax,
    "elu": elu,
    "selu": selu,
    "softplus": lambda x: np.log1p(np.exp(x)),
    "softsign": lambda x: x / (1 + np.abs(x)),
    "exponential": np.exp,
}


def act(name, x):
    return ACTIVATIONS[name](x)


# ----------------------------------------------------------------------------------------------
# core


def dense(x, kernel, bias=None, activation=None):
    y = np.tensordot(x, kernel, axes=([-1], [0]))
    if bias is not None:
        y = y + bias
    return act(activation, y)


def batch_norm(x, gamma, beta, mean, var, epsilon=1e-3):
    return (x - mean) / np.sqrt(var + epsilon) * gamma + beta


def l2_normalize(x, axis):
    return x / np.sqrt(np.maximum(np.sum(x * x, axis=axis, keepdims=True), 1e-12))


# ----------------------------------------------------------------------------------------------
# convolutions (channels_last: x (N, *spatial, C))


def _window(size, k, stride, dilation, padding):
    """Output extent and (before, after) zero padding of one spatial axis, as TensorFlow does."""
    k_eff = (k - 1) * dilation + 1
    if padding == "valid":
        return (size - k_eff) // stride + 1, (0, 0)
    if padding == "same":
        out = -(-size // stride)
        total = max((out - 1) * stride + k_eff - size, 0)
        return out, (total // 2, total - total // 2)
    if padding == "causal":
        return (size + k_eff - 1 - k_eff) // stride + 1, (k_eff - 1, 0)
    raise ValueError(padding)


def _patches(x, ksize, strides, dilation, padding, fill=0.0):
    """Yield (kernel offset, strided view (N, *out, C)) over every kernel offset."""
    nd = len(ksize)
    outs, pads = zip(*(_window(x.shape[1 + i], ksize[i], strides[i], dilation[i], padding)
                       for i in range(nd)))
    xp = np.pad(x, [(0, 0)] + list(pads) + [(0, 0)], constant_values=fill)
    for offset in itertools.product(*(range(k) for k in ksize)):
        index = [slice(None)]
        for i in range(nd):
            start = offset[i] * dilation[i]
            index.append(slice(start, start + (outs[i] - 1) * strides[i] + 1, strides[i]))
        yield offset, xp[tuple(index)]


def _tuple(v, nd):
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * nd


def conv(x, kernel, bias=None, strides=1, padding="valid", dilation=1, activation=None):
    """Conv1D/2D/3D: kernel (*k, C, F)."""
    nd = kernel.ndim - 2
    strides, dilation = _tuple(strides, nd), _tuple(dilation, nd)
    y = 0.0
    for offset, patch in _patches(x, kernel.shape[:nd], strides, dilation, padding):
        y = y + np.tensordot(patch, kernel[offset], axes=([-1], [0]))
    if bias is not None:
        y = y + bias
    return act(activation, y)


def depthwise_conv(x, kernel, bias=None, strides=1, padding="valid", dilation=1, activation=None):
    """DepthwiseConv2D (and the depthwise half of SeparableConv): kernel (*k, C, M); output
    channel c * M + m."""
    nd = kernel.ndim - 2
    strides, dilation = _tuple(strides, nd), _tuple(dilation, nd)
    y = 0.0
    for offset, patch in _patches(x, kernel.shape[:nd], strides, dilation, padding):
        y = y + patch[..., :, None] * kernel[offset]
    y = y.reshape(y.shape[:-2] + (-1,))
    if bias is not None:
        y = y + bias
    return act(activation, y)


def separable_conv(x, depthwise, pointwise, bias=None, strides=1, padding="valid", dilation=1,
                   activation=None):
    """SeparableConv1D/2D: depthwise (*k, C, M), pointwise (*1, C*M, F)."""
    y = depthwise_conv(x, depthwise, None, strides, padding, dilation)
    y = np.tensordot(y, pointwise.reshape(pointwise.shape[-2:]), axes=([-1], [0]))
    if bias is not None:
        y = y + bias
    return act(activation, y)


def conv2d_transpose(x, kernel, bias=None, strides=1, padding="valid", activation=None):
    """Conv2DTranspose: kernel (kh, kw, F, C); the transpose (gradient) of a conv2d."""
    sh, sw = _tuple(strides, 2)
    kh, kw, f, _ = kernel.shape
    n, h, w, _ = x.shape
    full = np.zeros((n, (h - 1) * sh + kh, (w - 1) * sw + kw, f))
    for a in range(kh):
        for b in range(kw):
            full[:, a:a + (h - 1) * sh + 1:sh, b:b + (w - 1) * sw + 1:sw, :] += \
                np.tensordot(x, kernel[a, b], axes=([-1], [1]))
    if padding == "valid":
        oh, ow = h * sh + max(kh - sh, 0), w * sw + max(kw - sw, 0)
        top, left = 0, 0
    else:
        oh, ow = h * sh, w * sw
        top, left = max(kh - sh, 0) // 2, max(kw - sw, 0) // 2
    out = np.zeros((n, oh, ow, f))
    part = full[:, top:top + oh, left:left + ow]
    out[:, :part.shape[1], :part.shape[2]] = part
    if bias is not None:
        out = out + bias
    return act(activation, out)


def local_conv1d(x, kernel, bias=None, kernel_size=3, strides=1, activation=None):
    """LocallyConnected1D (padding valid): kernel (L, k*C, F), bias (L, F)."""
    steps = kernel.shape[0]
    y = np.stack([x[:, i * strides:i * strides + kernel_size, :].reshape(x.shape[0], -1)
                  @ kernel[i] for i in range(steps)], axis=1)
    if bias is not None:
        y = y + bias
    return act(activation, y)


def local_conv2d(x, kernel, bias, out_hw, kernel_size, strides=(1, 1), activation=None,
                 channels_first=False):
    """LocallyConnected2D (valid), x given channels_last: kernel (oh*ow, kh*kw*C, F), a patch
    flattened (kh, kw, C), or (C, kh, kw) for a channels_first layer; bias (oh, ow, F)."""
    (oh, ow), (kh, kw), (sh, sw) = out_hw, kernel_size, strides
    n = x.shape[0]
    y = np.zeros((n, oh, ow, kernel.shape[-1]))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, i * sh:i * sh + kh, j * sw:j * sw + kw, :]
            if channels_first:
                patch = patch.transpose(0, 3, 1, 2)
            patch = patch.reshape(n, -1)
            y[:, i, j] = patch @ kernel[i * ow + j]
    if bias is not None:
        y = y + bias
    return act(activation, y)


# ----------------------------------------------------------------------------------------------
# pooling, resizing, padding


def pool(x, pool_size, strides=None, padding="valid", mode="max"):
    """Max/Average pooling 1D/2D/3D; average pooling with 'same' counts only real elements."""
    nd = x.ndim - 2
    pool_size = _tuple(pool_size, nd)
    strides = _tuple(strides if strides is not None else pool_size, nd)
    ones = (1,) * nd
    if mode == "max":
        y = None
        for _, patch in _patches(x, pool_size, strides, ones, padding, fill=-np.inf):
            y = patch if y is None else np.maximum(y, patch)
        return y
    total, count = 0.0, 0.0
    real = np.ones(x.shape[:-1] + (1,))
    for (_, patch), (_, present) in zip(_patches(x, pool_size, strides, ones, padding),
                                        _patches(real, pool_size, strides, ones, padding)):
        total, count = total + patch, count + present
    return total / count


def upsample(x, size):
    for axis, s in enumerate(size, start=1):
        x = np.repeat(x, s, axis=axis)
    return x


def zero_pad(x, pads):
    return np.pad(x, [(0, 0)] + [tuple(p) for p in pads] + [(0, 0)])


def crop(x, crops):
    index = [slice(None)]
    for axis, (a, b) in enumerate(crops, start=1):
        index.append(slice(a, x.shape[axis] - b))
    return x[tuple(index)]


# ----------------------------------------------------------------------------------------------
# recurrent layers: x (N, T, D); the mask (N, T) keeps the previous output and states where 0


def _run(step, x, states, go_backwards=False, mask=None):
    n, steps = x.shape[:2]
    order = range(steps - 1, -1, -1) if go_backwards else range(steps)
    outputs, prev = [], None
    for t in order:
        out, new = step(x[:, t], states)
        if mask is not None:
            keep = mask[:, t].astype(bool)[:, None]
            prev = np.zeros_like(out) if prev is None else prev
            out = np.where(keep, out, prev)
            new = [np.where(keep, s_new, s_old) for s_new, s_old in zip(new, states)]
        outputs.append(out)
        prev, states = out, new
    return np.stack(outputs, axis=1), states


def simple_rnn(x, kernel, recurrent, bias, h0=None, activation="tanh", go_backwards=False,
               mask=None):
    h0 = np.zeros((x.shape[0], kernel.shape[1])) if h0 is None else h0

    def step(xt, states):
        h = act(activation, xt @ kernel + states[0] @ recurrent + bias)
        return h, [h]
    return _run(step, x, [h0], go_backwards, mask)


def gru(x, kernel, recurrent, bias, h0=None, reset_after=False, activation="tanh",
        recurrent_activation="sigmoid", go_backwards=False, mask=None):
    """Gates z, r, h in that order (Keras 2.3.1). reset_after: bias (2, 3u), the reset gate is
    applied after the recurrent matrix product (CuDNN-compatible)."""
    u = recurrent.shape[0]
    h0 = np.zeros((x.shape[0], u)) if h0 is None else h0
    if reset_after:
        b_in, b_rec = bias[0], bias[1]
    else:
        b_in, b_rec = bias, np.zeros(3 * u)

    def step(xt, states):
        h = states[0]
        xz, xr, xh = np.split(xt @ kernel + b_in, 3, axis=-1)
        if reset_after:
            rz, rr, rh = np.split(h @ recurrent + b_rec, 3, axis=-1)
            z = act(recurrent_activation, xz + rz)
            r = act(recurrent_activation, xr + rr)
            hh = act(activation, xh + r * rh)
        else:
            z = act(recurrent_activation, xz + h @ recurrent[:, :u])
            r = act(recurrent_activation, xr + h @ recurrent[:, u:2 * u])
            hh = act(activation, xh + (r * h) @ recurrent[:, 2 * u:])
        h = z * h + (1 - z) * hh
        return h, [h]
    return _run(step, x, [h0], go_backwards, mask)


def lstm(x, kernel, recurrent, bias, h0=None, c0=None, activation="tanh",
         recurrent_activation="sigmoid", go_backwards=False, mask=None):
    """Gates i, f, c, o in that order. Returns (outputs, [h, c])."""
    u = recurrent.shape[0]
    n = x.shape[0]
    h0 = np.zeros((n, u)) if h0 is None else h0
    c0 = np.zeros((n, u)) if c0 is None else c0

    def step(xt, states):
        h, c = states
        zi, zf, zc, zo = np.split(xt @ kernel + h @ recurrent + bias, 4, axis=-1)
        i = act(recurrent_activation, zi)
        f = act(recurrent_activation, zf)
        c = f * c + i * act(activation, zc)
        o = act(recurrent_activation, zo)
        h = o * act(activation, c)
        return h, [h, c]
    return _run(step, x, [h0, c0], go_backwards, mask)
