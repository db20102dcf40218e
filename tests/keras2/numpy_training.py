"""Independent numpy training of small Keras 2.3.1 models, forward and backward written by hand in
float64 (no autodiff, no Keras, no kcomp), for tests/keras2/test_keras_training.py.

Layers follow Keras's weight layouts (channels_last): Dense (kernel, bias), Conv2D (kernel
(kh, kw, C, O), bias), MaxPooling2D (2x2, stride 2; the gradient goes to the first maximum of
each window, as TensorFlow's), Flatten, LSTM (gates i, f, c, o; kernel, recurrent kernel,
bias). Losses and optimizers follow Keras 2.3.1's formulas (losses.py, optimizers.py).
"""
from __future__ import annotations

import numpy as np

EPS = 1e-7  # K.epsilon()


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# ---- layers: forward(x, *weights) -> (y, cache); backward(dy, cache) -> (dx, [d weights]) ------

class Dense:
    n_weights = 2

    def __init__(self, activation=None):
        self.activation = activation

    def forward(self, x, w, b):
        z = x @ w + b
        if self.activation == "relu":
            y = np.maximum(z, 0)
        elif self.activation == "softmax":
            e = np.exp(z - z.max(axis=-1, keepdims=True))
            y = e / e.sum(axis=-1, keepdims=True)
        elif self.activation == "tanh":
            y = np.tanh(z)
        else:
            y = z
        return y, (x, w, z, y)

    def backward(self, dy, cache):
        x, w, z, y = cache
        if self.activation == "relu":
            dz = dy * (z > 0)
        elif self.activation == "softmax":
            dz = y * (dy - np.sum(dy * y, axis=-1, keepdims=True))
        elif self.activation == "tanh":
            dz = dy * (1 - y * y)
        else:
            dz = dy
        return dz @ w.T, [x.T @ dz, dz.sum(axis=0)]


class Conv2D:
    """Stride 1, 'same' or 'valid' padding, relu or linear."""
    n_weights = 2

    def __init__(self, padding="same", activation="relu"):
        self.padding, self.activation = padding, activation

    def _pad(self, kh, kw):
        if self.padding == "valid":
            return (0, 0), (0, 0)
        return ((kh - 1) // 2, kh - 1 - (kh - 1) // 2), ((kw - 1) // 2, kw - 1 - (kw - 1) // 2)

    def forward(self, x, w, b):
        kh, kw, c, o = w.shape
        ph, pw = self._pad(kh, kw)
        xp = np.pad(x, ((0, 0), ph, pw, (0, 0)))
        oh, ow = xp.shape[1] - kh + 1, xp.shape[2] - kw + 1
        cols = np.stack([xp[:, i:i + oh, j:j + ow, :] for i in range(kh) for j in range(kw)],
                        axis=3)  # (N, oh, ow, kh*kw, C)
        z = cols.reshape(*cols.shape[:3], -1) @ w.reshape(-1, o) + b
        y = np.maximum(z, 0) if self.activation == "relu" else z
        return y, (x.shape, xp.shape, cols, w, z)

    def backward(self, dy, cache):
        xshape, xpshape, cols, w, z = cache
        kh, kw, c, o = w.shape
        dz = dy * (z > 0) if self.activation == "relu" else dy
        flat = cols.reshape(-1, kh * kw * c)
        dw = (flat.T @ dz.reshape(-1, o)).reshape(w.shape)
        dcols = (dz @ w.reshape(-1, o).T).reshape(cols.shape)
        dxp = np.zeros(xpshape)
        oh, ow = dz.shape[1:3]
        for k, (i, j) in enumerate((i, j) for i in range(kh) for j in range(kw)):
            dxp[:, i:i + oh, j:j + ow, :] += dcols[:, :, :, k, :]
        ph, pw = self._pad(kh, kw)
        dx = dxp[:, ph[0]:ph[0] + xshape[1], pw[0]:pw[0] + xshape[2], :]
        return dx, [dw, dz.sum(axis=(0, 1, 2))]


class MaxPool2:
    n_weights = 0

    def forward(self, x):
        n, h, w, c = x.shape
        win = x[:, :h // 2 * 2, :w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c)
        win = win.transpose(0, 1, 3, 5, 2, 4).reshape(n, h // 2, w // 2, c, 4)
        first = np.argmax(win, axis=-1)  # the first maximum in row-major window order
        return np.take_along_axis(win, first[..., None], -1)[..., 0], (x.shape, first)

    def backward(self, dy, cache):
        (n, h, w, c), first = cache
        dwin = np.zeros(dy.shape + (4,))
        np.put_along_axis(dwin, first[..., None], dy[..., None], -1)
        dwin = dwin.reshape(n, h // 2, w // 2, c, 2, 2).transpose(0, 1, 4, 2, 5, 3)
        dx = np.zeros((n, h, w, c))
        dx[:, :h // 2 * 2, :w // 2 * 2] = dwin.reshape(n, h // 2 * 2, w // 2 * 2, c)
        return dx, []


class Flatten:
    n_weights = 0

    def forward(self, x):
        return x.reshape(len(x), -1), x.shape

    def backward(self, dy, shape):
        return dy.reshape(shape), []


class LSTM:
    """return_sequences=False; recurrent_activation sigmoid, activation tanh."""
    n_weights = 3

    def forward(self, x, w, u, b):
        n, steps, _ = x.shape
        h = np.zeros((n, u.shape[0]))
        c = np.zeros_like(h)
        cache = []
        for t in range(steps):
            zi, zf, zc, zo = np.split(x[:, t] @ w + h @ u + b, 4, axis=-1)
            i, f, g, o = sigmoid(zi), sigmoid(zf), np.tanh(zc), sigmoid(zo)
            c_new = f * c + i * g
            tc = np.tanh(c_new)
            cache.append((x[:, t], h, c, i, f, g, o, tc))
            h, c = o * tc, c_new
        return h, (cache, w, u)

    def backward(self, dh, cache):
        steps, w, u = cache
        dw, du, db = np.zeros_like(w), np.zeros_like(u), np.zeros(w.shape[1])
        dc = np.zeros_like(dh)
        dx = []
        for xt, h_prev, c_prev, i, f, g, o, tc in reversed(steps):
            do = dh * tc
            dct = dc + dh * o * (1 - tc * tc)
            dz = np.concatenate([dct * g * i * (1 - i), dct * c_prev * f * (1 - f),
                                 dct * i * (1 - g * g), do * o * (1 - o)], axis=-1)
            dw += xt.T @ dz
            du += h_prev.T @ dz
            db += dz.sum(axis=0)
            dh, dc = dz @ u.T, dct * f
            dx.append(dz @ w.T)
        return np.stack(dx[::-1], axis=1), [dw, du, db]


# ---- losses: per-sample values and their gradients with respect to the prediction -------------

def categorical_crossentropy(y, t):
    """Keras 2.3.1 (TensorFlow backend): normalize, clip to [eps, 1 - eps], -sum(t log p)."""
    s = y.sum(axis=-1, keepdims=True)
    p = y / s
    pc = np.clip(p, EPS, 1 - EPS)
    dp = -t / pc * ((p >= EPS) & (p <= 1 - EPS))
    return -np.sum(t * np.log(pc), axis=-1), dp / s - np.sum(dp * y, axis=-1, keepdims=True) / s ** 2


def mse(y, t):
    return np.mean((y - t) ** 2, axis=-1), 2 * (y - t) / y.shape[-1]


# ---- optimizers (Keras 2.3.1 formulas) --------------------------------------------------------

class SGD:
    def __init__(self, lr, momentum=0.0, nesterov=False):
        self.lr, self.momentum, self.nesterov = lr, momentum, nesterov
        self.moments = None

    def step(self, params, grads):
        if self.moments is None:
            self.moments = [np.zeros_like(p) for p in params]
        out = []
        for k, (p, g) in enumerate(zip(params, grads)):
            v = self.momentum * self.moments[k] - self.lr * g
            self.moments[k] = v
            out.append(p + self.momentum * v - self.lr * g if self.nesterov else p + v)
        return out


class Adam:
    def __init__(self, lr, beta_1=0.9, beta_2=0.999):
        self.lr, self.b1, self.b2 = lr, beta_1, beta_2
        self.t, self.m, self.v = 0, None, None

    def step(self, params, grads):
        if self.m is None:
            self.m = [np.zeros_like(p) for p in params]
            self.v = [np.zeros_like(p) for p in params]
        self.t += 1
        lr_t = self.lr * np.sqrt(1 - self.b2 ** self.t) / (1 - self.b1 ** self.t)
        out = []
        for k, (p, g) in enumerate(zip(params, grads)):
            self.m[k] = self.b1 * self.m[k] + (1 - self.b1) * g
            self.v[k] = self.b2 * self.v[k] + (1 - self.b2) * g * g
            out.append(p - lr_t * self.m[k] / (np.sqrt(self.v[k]) + EPS))
        return out


# ---- training -----------------------------------------------------------------------------

def train(layers, weights, loss, optimizer, x, t, epochs, batch_size, sample_weight=None,
          l2=None, max_norm=None):
    """Keras's fit(shuffle=False): per epoch, the batches in order, one update each. The batch
    loss is sum(sample weight * loss) / batch size (Keras's SUM_OVER_BATCH_SIZE) plus l2 *
    sum(w ** 2) for the weights l2 names ({index: coefficient}); max_norm ({index: bound})
    rescales a kernel's columns after each update (keras.constraints.MaxNorm). Returns (epoch
    losses averaged over samples, as Keras's History reports them, final weights)."""
    weights = [np.asarray(w, np.float64) for w in weights]
    sw = np.ones(len(x)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    l2, max_norm = l2 or {}, max_norm or {}
    history = []
    for _ in range(epochs):
        total = 0.0
        for start in range(0, len(x), batch_size):
            part = slice(start, start + batch_size)
            xb, tb, wb = x[part].astype(np.float64), t[part], sw[part]
            caches, h, k = [], xb, 0
            for layer in layers:
                h, cache = layer.forward(h, *weights[k:k + layer.n_weights])
                caches.append(cache)
                k += layer.n_weights
            values, dy = loss(h, tb)
            value = np.sum(values * wb) / len(xb) + sum(c * np.sum(weights[i] ** 2)
                                                        for i, c in l2.items())
            dy = dy * (wb / len(xb)).reshape((-1,) + (1,) * (dy.ndim - 1))
            total += value * len(xb)
            grads = []
            for layer, cache in zip(reversed(layers), reversed(caches)):
                dy, dws = layer.backward(dy, cache)
                grads = dws + grads
            for i, c in l2.items():
                grads[i] = grads[i] + 2 * c * weights[i]
            weights = optimizer.step(weights, grads)
            for i, bound in max_norm.items():
                norms = np.sqrt(np.sum(weights[i] ** 2, axis=0, keepdims=True))
                weights[i] = weights[i] * (np.clip(norms, 0, bound) / (EPS + norms))
        history.append(total / len(x))
    return history, weights
