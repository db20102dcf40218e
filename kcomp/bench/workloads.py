"""The kernel suite: each workload is defined once here.

A workload knows how to read a shape spec (`--shape`), how many FLOPs and bytes a case costs,
how to make its inputs and weights, its float64 reference, and how each implementation builds
it: `kcomp` (the backend API), `numpy`, `torch` (also what torch.compile and the ONNX export
start from), `jax` (jitted by the peer adapter) and `tensorflow` (wrapped in tf.function with
XLA by the peer adapter). A builder gets the framework module, the case's parameters and the
weights as float32 numpy arrays, and returns a function of the inputs (kcomp: placeholders and
an output tensor).

Counting conventions (per element of the data, float32 = 4 bytes):
- FLOPs: a multiply-add is 2; every other arithmetic op, comparison or transcendental
  function (exp, tanh, sigmoid, log) is 1.
- bytes: the compulsory traffic: every input, weight and output read or written once.
"""
from __future__ import annotations

import math
import re
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

F32 = 4  # bytes per element


class SpecError(ValueError):
    """A --shape that a workload cannot read."""


def _dims(text: str, what: str) -> Tuple[int, ...]:
    text = text.strip()
    if not re.fullmatch(r"\d+(x\d+)*", text):
        raise SpecError(f"{what}: expected dimensions like 64x128, got {text!r}")
    dims = tuple(int(d) for d in text.split("x"))
    if any(d < 1 for d in dims):
        raise SpecError(f"{what}: dimensions must be at least 1, got {text!r}")
    return dims


def _fmt(dims: Sequence[int]) -> str:
    return "x".join(str(d) for d in dims)


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


class Workload:
    """Base class; subclasses fill in the class attributes and methods."""
    name = ""
    group = ""
    title = ""           # what it computes, one line
    shape_help = ""      # the --shape syntax
    defaults: Tuple[str, ...] = ()
    tolerance = 1e-4     # max |got - ref| / max |ref| allowed
    seed = 0

    # ---- the case -------------------------------------------------------------------------
    def parse(self, spec: str) -> dict:
        raise NotImplementedError

    def spec(self, p: dict) -> str:
        """The canonical --shape text of parameters p."""
        raise NotImplementedError

    def label(self, p: dict) -> str:
        return self.spec(p)

    def flops(self, p: dict) -> int:
        raise NotImplementedError

    def bytes(self, p: dict) -> int:
        raise NotImplementedError

    def make(self, p: dict, rng: np.random.Generator):
        """(inputs: list of float32 arrays fed at each call, weights: dict of float32 arrays)."""
        raise NotImplementedError

    def reference(self, p: dict, inputs: List[np.ndarray], weights: Dict[str, np.ndarray]):
        """The float64 result. By default the numpy implementation run in float64."""
        w64 = {k: v.astype(np.float64) for k, v in weights.items()}
        return np.asarray(self.numpy(p, w64)(*[a.astype(np.float64) for a in inputs]))

    # ---- implementations (None: not written for this framework) ---------------------------
    def kcomp(self, K, p: dict, weights) -> Tuple[list, object]:
        raise NotImplementedError

    def numpy(self, p: dict, weights) -> Callable:
        raise NotImplementedError

    torch = None
    jax = None
    tensorflow = None


def _normal(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


# ---- contractions ---------------------------------------------------------------------------

class Dot(Workload):
    name, group = "dot", "dot"
    title = "K.dot(x, y): a matrix product (m, k) x (k, n)"
    shape_help = "MxK,KxN  e.g. 512x256,256x128"
    defaults = ("1x1024,1024x1024", "64x1024,1024x1024", "1024x1024,1024x1024",
                "4096x4096,4096x4096")

    def parse(self, spec):
        parts = spec.split(",")
        if len(parts) != 2:
            raise SpecError(f"dot: expected two shapes MxK,KxN, got {spec!r}")
        a, b = _dims(parts[0], "dot x"), _dims(parts[1], "dot y")
        if len(a) != 2 or len(b) != 2 or a[1] != b[0]:
            raise SpecError(f"dot: need MxK,KxN with matching K, got {spec!r}")
        return {"m": a[0], "k": a[1], "n": b[1]}

    def spec(self, p):
        return f"{p['m']}x{p['k']},{p['k']}x{p['n']}"

    def label(self, p):
        return f"({p['m']},{p['k']})x({p['k']},{p['n']})"

    def flops(self, p):
        return 2 * p["m"] * p["k"] * p["n"]

    def bytes(self, p):
        return F32 * (p["m"] * p["k"] + p["k"] * p["n"] + p["m"] * p["n"])

    def make(self, p, rng):
        return [_normal(rng, (p["m"], p["k"])), _normal(rng, (p["k"], p["n"]))], {}

    def kcomp(self, K, p, w):
        x, y = K.placeholder((p["m"], p["k"])), K.placeholder((p["k"], p["n"]))
        return [x, y], K.dot(x, y)

    def numpy(self, p, w):
        return np.matmul

    def torch(self, torch, p, w):
        return torch.matmul

    def jax(self, jax, p, w):
        return jax.numpy.matmul

    def tensorflow(self, tf, p, w):
        return tf.matmul


class BatchDot(Workload):
    name, group = "batch_dot", "batch_dot"
    title = ("K.batch_dot(x, y): batched matrix products (b, n, k) x (b, k, m), or the "
             "row-wise dot product of two (b, k) matrices (axes=1, result (b, 1))")
    shape_help = "BxNxK,BxKxM (batched matmul) or BxK,BxK (axes=1)  e.g. 8x64x32,8x32x16"
    defaults = ("64x128x64,64x64x128", "32x512x512,32x512x512", "256x64x64,256x64x64",
                "4096x256,4096x256")

    def parse(self, spec):
        parts = spec.split(",")
        if len(parts) != 2:
            raise SpecError(f"batch_dot: expected two shapes, got {spec!r}")
        a, b = _dims(parts[0], "batch_dot x"), _dims(parts[1], "batch_dot y")
        if len(a) == 3 and len(b) == 3 and a[0] == b[0] and a[2] == b[1]:
            return {"b": a[0], "n": a[1], "k": a[2], "m": b[2]}
        if len(a) == 2 and a == b:
            return {"b": a[0], "k": a[1], "vector": True}
        raise SpecError(f"batch_dot: need BxNxK,BxKxM or BxK,BxK, got {spec!r}")

    def spec(self, p):
        if p.get("vector"):
            return f"{p['b']}x{p['k']},{p['b']}x{p['k']}"
        return f"{p['b']}x{p['n']}x{p['k']},{p['b']}x{p['k']}x{p['m']}"

    def label(self, p):
        if p.get("vector"):
            return f"({p['b']},{p['k']}) . ({p['b']},{p['k']}) axes=1"
        return f"({p['b']},{p['n']},{p['k']})x({p['b']},{p['k']},{p['m']})"

    def flops(self, p):
        if p.get("vector"):
            return 2 * p["b"] * p["k"]
        return 2 * p["b"] * p["n"] * p["k"] * p["m"]

    def bytes(self, p):
        if p.get("vector"):
            return F32 * (2 * p["b"] * p["k"] + p["b"])
        return F32 * p["b"] * (p["n"] * p["k"] + p["k"] * p["m"] + p["n"] * p["m"])

    def make(self, p, rng):
        if p.get("vector"):
            return [_normal(rng, (p["b"], p["k"])), _normal(rng, (p["b"], p["k"]))], {}
        return [_normal(rng, (p["b"], p["n"], p["k"])), _normal(rng, (p["b"], p["k"], p["m"]))], {}

    def kcomp(self, K, p, w):
        if p.get("vector"):
            x, y = K.placeholder((p["b"], p["k"])), K.placeholder((p["b"], p["k"]))
            return [x, y], K.batch_dot(x, y, axes=1)
        x = K.placeholder((p["b"], p["n"], p["k"]))
        y = K.placeholder((p["b"], p["k"], p["m"]))
        return [x, y], K.batch_dot(x, y)

    def numpy(self, p, w):
        if p.get("vector"):
            return lambda x, y: np.einsum("ij,ij->i", x, y)[:, None]
        return np.matmul

    def torch(self, torch, p, w):
        if p.get("vector"):
            return lambda x, y: (x * y).sum(dim=1, keepdim=True)
        return torch.bmm

    def jax(self, jax, p, w):
        jnp = jax.numpy
        if p.get("vector"):
            return lambda x, y: jnp.sum(x * y, axis=1, keepdims=True)
        return jnp.matmul

    def tensorflow(self, tf, p, w):
        if p.get("vector"):
            return lambda x, y: tf.reduce_sum(x * y, axis=1, keepdims=True)
        return tf.matmul


# ---- reductions -----------------------------------------------------------------------------

class Reduction(Workload):
    """One reduction (or softmax) over one axis of a float32 array."""
    group = "reductions"
    shape_help = "DIMS[@AXIS]  e.g. 4096x4096@0 (axis defaults to -1)"
    defaults = ("4096x4096@-1", "4096x4096@0")
    per_element = 1      # FLOPs per input element
    keeps_shape = False  # softmax: the output is as large as the input

    def parse(self, spec):
        dims, _, axis = spec.partition("@")
        shape = _dims(dims, self.name)
        try:
            ax = int(axis) if axis else -1
        except ValueError:
            raise SpecError(f"{self.name}: the axis after @ must be an integer, "
                            f"got {spec!r}") from None
        if not -len(shape) <= ax < len(shape):
            raise SpecError(f"{self.name}: axis {ax} out of range for {len(shape)} dimensions")
        return {"shape": shape, "axis": ax}

    def spec(self, p):
        return f"{_fmt(p['shape'])}@{p['axis']}"

    def label(self, p):
        return f"{_fmt(p['shape'])} axis {p['axis']}"

    def _n(self, p):
        return math.prod(p["shape"])

    def flops(self, p):
        return self.per_element * self._n(p)

    def bytes(self, p):
        n = self._n(p)
        out = n if self.keeps_shape else n // p["shape"][p["axis"]]
        return F32 * (n + out)

    def make(self, p, rng):
        return [_normal(rng, p["shape"])], {}

    def kcomp(self, K, p, w):
        x = K.placeholder(p["shape"])
        return [x], getattr(K, self.name)(x, axis=p["axis"])


class Plain(Reduction):
    """A reduction every framework has under a name: (numpy and jax, torch, tensorflow)."""
    names = ("", "", "")

    def numpy(self, p, w):
        return lambda x: getattr(np, self.names[0])(x, axis=p["axis"])

    def torch(self, torch, p, w):
        return lambda x: getattr(torch, self.names[1])(x, dim=p["axis"])

    def jax(self, jax, p, w):
        return lambda x: getattr(jax.numpy, self.names[0])(x, axis=p["axis"])

    def tensorflow(self, tf, p, w):
        return lambda x: getattr(tf, self.names[2])(x, axis=p["axis"])


class Sum(Plain):
    name, title = "sum", "K.sum(x, axis)"
    defaults = ("4096x4096@-1", "4096x4096@0", "64x1024x256@1")
    names = ("sum", "sum", "reduce_sum")


class Max(Plain):
    name, title = "max", "K.max(x, axis)"
    names = ("max", "amax", "reduce_max")


class Mean(Plain):
    name, title = "mean", "K.mean(x, axis)"
    names = ("mean", "mean", "reduce_mean")


class Var(Reduction):
    name, title = "var", "K.var(x, axis): population variance (mean, then squared deviations)"
    per_element = 4

    def numpy(self, p, w):
        return lambda x: np.var(x, axis=p["axis"])

    def torch(self, torch, p, w):
        return lambda x: torch.var(x, dim=p["axis"], correction=0)

    def jax(self, jax, p, w):
        return lambda x: jax.numpy.var(x, axis=p["axis"])

    def tensorflow(self, tf, p, w):
        return lambda x: tf.math.reduce_variance(x, axis=p["axis"])


class LogSumExp(Reduction):
    name, title = "logsumexp", "K.logsumexp(x, axis): max, then log(sum(exp(x - max))) + max"
    per_element = 4

    def numpy(self, p, w):
        ax = p["axis"]

        def f(x):
            m = np.max(x, axis=ax, keepdims=True)
            return np.squeeze(np.log(np.sum(np.exp(x - m), axis=ax, keepdims=True)) + m, ax)
        return f

    def torch(self, torch, p, w):
        return lambda x: torch.logsumexp(x, dim=p["axis"])

    def jax(self, jax, p, w):
        from jax.scipy.special import logsumexp
        return lambda x: logsumexp(x, axis=p["axis"])

    def tensorflow(self, tf, p, w):
        return lambda x: tf.reduce_logsumexp(x, axis=p["axis"])


class Softmax(Reduction):
    name, title = "softmax", "K.softmax(x, axis): exp(x - max) / sum"
    defaults = ("4096x4096@-1",)
    per_element = 5
    keeps_shape = True

    def kcomp(self, K, p, w):
        x = K.placeholder(p["shape"])
        return [x], K.softmax(x, axis=p["axis"])

    def numpy(self, p, w):
        ax = p["axis"]

        def f(x):
            e = np.exp(x - np.max(x, axis=ax, keepdims=True))
            return e / np.sum(e, axis=ax, keepdims=True)
        return f

    def torch(self, torch, p, w):
        return lambda x: torch.softmax(x, dim=p["axis"])

    def jax(self, jax, p, w):
        return lambda x: jax.nn.softmax(x, axis=p["axis"])

    def tensorflow(self, tf, p, w):
        return lambda x: tf.nn.softmax(x, axis=p["axis"])


# ---- elementwise ----------------------------------------------------------------------------

class Chain(Workload):
    name, group = "chain", "fused"
    title = "tanh(a*b + c) * sigmoid(a) + 0.5*b: an elementwise chain, one fused loop in kcomp"
    shape_help = "DIMS  e.g. 1024x1024 (a, b and c all have this shape)"
    defaults = ("4096x4096",)

    def parse(self, spec):
        return {"shape": _dims(spec, "chain")}

    def spec(self, p):
        return _fmt(p["shape"])

    def flops(self, p):
        return 7 * math.prod(p["shape"])  # mul, add, tanh, sigmoid, mul, mul, add

    def bytes(self, p):
        return F32 * 4 * math.prod(p["shape"])

    def make(self, p, rng):
        return [_normal(rng, p["shape"]) for _ in range(3)], {}

    def kcomp(self, K, p, w):
        a, b, c = (K.placeholder(p["shape"]) for _ in range(3))
        return [a, b, c], K.tanh(a * b + c) * K.sigmoid(a) + 0.5 * b

    def numpy(self, p, w):
        return lambda a, b, c: np.tanh(a * b + c) * _sigmoid(a) + 0.5 * b

    def torch(self, torch, p, w):
        return lambda a, b, c: torch.tanh(a * b + c) * torch.sigmoid(a) + 0.5 * b

    def jax(self, jax, p, w):
        jnp = jax.numpy
        return lambda a, b, c: jnp.tanh(a * b + c) * jax.nn.sigmoid(a) + 0.5 * b

    def tensorflow(self, tf, p, w):
        return lambda a, b, c: tf.tanh(a * b + c) * tf.sigmoid(a) + 0.5 * b


# ---- recurrent ------------------------------------------------------------------------------

class Recurrent(Workload):
    """Inference of one recurrent layer over a sequence; the result is the last output (what a
    Keras layer with return_sequences=False gives). Weights in Keras's layout."""
    group = "rnn"
    shape_help = "BATCHxSTEPSxINPUTSxUNITS  e.g. 4x10x8x16"
    gates = 4

    def parse(self, spec):
        d = _dims(spec, self.name)
        if len(d) != 4:
            raise SpecError(f"{self.name}: expected BATCHxSTEPSxINPUTSxUNITS, got {spec!r}")
        return dict(zip(("batch", "steps", "inputs", "units"), d))

    def spec(self, p):
        return f"{p['batch']}x{p['steps']}x{p['inputs']}x{p['units']}"

    def label(self, p):
        return (f"batch {p['batch']}, {p['steps']} steps, {p['inputs']} in, "
                f"{p['units']} units")

    def bytes(self, p):
        b, t, i, u, g = p["batch"], p["steps"], p["inputs"], p["units"], self.gates
        biases = g * u * (2 if self.gates == 3 else 1)
        return F32 * (b * t * i + (i + u) * g * u + biases + b * u)

    def make(self, p, rng):
        i, u, g = p["inputs"], p["units"], self.gates
        x = _normal(rng, (p["batch"], p["steps"], i))
        w = {"kernel": _normal(rng, (i, g * u), 1 / math.sqrt(i)),
             "recurrent_kernel": _normal(rng, (u, g * u), 1 / math.sqrt(u)),
             "bias": _normal(rng, (2, g * u) if g == 3 else (g * u,), 0.1)}
        return [x], w

    def kcomp(self, K, p, w):
        x = K.placeholder((p["batch"], p["steps"], p["inputs"]))
        kernel = K.variable(w["kernel"])
        rec = K.variable(w["recurrent_kernel"])
        bias = K.variable(w["bias"])
        zeros = [K.zeros((p["batch"], p["units"])) for _ in range(self.n_states)]
        last, _, _ = K.rnn(lambda x_t, s: self._kcomp_step(K, p["units"], kernel, rec, bias,
                                                           x_t, s), x, zeros)
        return [x], last


class LSTM(Recurrent):
    name = "lstm"
    title = ("K.rnn over an LSTM step written with backend ops (Keras's LSTMCell: gates i, f, "
             "c, o; activation tanh, recurrent_activation sigmoid)")
    defaults = ("32x100x128x256", "1x100x128x256")
    n_states = 2

    def flops(self, p):
        b, t, i, u = p["batch"], p["steps"], p["inputs"], p["units"]
        # two GEMMs, bias and sum (8u), 4 gate activations, c = f*c + i*g, h = o*tanh(c)
        return t * b * (2 * (i + u) * 4 * u + 8 * u + 4 * u + 5 * u)

    @staticmethod
    def _kcomp_step(K, u, kernel, rec, bias, x_t, states):
        h, c = states
        z = K.dot(x_t, kernel) + K.dot(h, rec) + bias
        i = K.sigmoid(z[:, :u])
        f = K.sigmoid(z[:, u:2 * u])
        g = K.tanh(z[:, 2 * u:3 * u])
        o = K.sigmoid(z[:, 3 * u:])
        c = f * c + i * g
        h = o * K.tanh(c)
        return h, [h, c]

    def numpy(self, p, w):
        u = p["units"]
        W, R, b = w["kernel"], w["recurrent_kernel"], w["bias"]

        def f(x):
            h = np.zeros((x.shape[0], u), x.dtype)
            c = np.zeros_like(h)
            for t in range(x.shape[1]):
                z = x[:, t] @ W + h @ R + b
                i, fg = _sigmoid(z[:, :u]), _sigmoid(z[:, u:2 * u])
                g, o = np.tanh(z[:, 2 * u:3 * u]), _sigmoid(z[:, 3 * u:])
                c = fg * c + i * g
                h = o * np.tanh(c)
            return h
        return f

    def torch(self, torch, p, w):
        # PyTorch's gate order i, f, g, o is Keras's; weights are transposed
        lstm = torch.nn.LSTM(p["inputs"], p["units"], batch_first=True)
        with torch.no_grad():
            lstm.weight_ih_l0.copy_(torch.from_numpy(w["kernel"].T.copy()))
            lstm.weight_hh_l0.copy_(torch.from_numpy(w["recurrent_kernel"].T.copy()))
            lstm.bias_ih_l0.copy_(torch.from_numpy(w["bias"]))
            lstm.bias_hh_l0.zero_()

        class Last(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.rnn = lstm

            def forward(self, x):
                _, (h, _) = self.rnn(x)
                return h[0]
        return Last().eval()

    def jax(self, jax, p, w):
        jnp, u = jax.numpy, p["units"]
        W, R, b = (jnp.asarray(w[k]) for k in ("kernel", "recurrent_kernel", "bias"))

        def step(carry, x_t):
            h, c = carry
            z = x_t @ W + h @ R + b
            i, f, g, o = (z[:, k * u:(k + 1) * u] for k in range(4))
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), None

        def f(x):
            h0 = jnp.zeros((x.shape[0], u), x.dtype)
            (h, _), _ = jax.lax.scan(step, (h0, h0), jnp.swapaxes(x, 0, 1))
            return h
        return f

    def tensorflow(self, tf, p, w):
        layer = tf.keras.layers.LSTM(p["units"], recurrent_activation="sigmoid")
        layer.build((p["batch"], p["steps"], p["inputs"]))
        layer.set_weights([w["kernel"], w["recurrent_kernel"], w["bias"]])
        return layer


class GRU(Recurrent):
    name = "gru"
    title = ("K.rnn over a GRU step with reset_after=True written with backend ops (Keras "
             "2.3.1's GRUCell: gates z, r, h; bias (2, 3*units); recurrent_activation sigmoid)")
    defaults = ("32x100x128x256",)
    gates = 3
    n_states = 1

    def flops(self, p):
        b, t, i, u = p["batch"], p["steps"], p["inputs"], p["units"]
        # two GEMMs, two bias adds (6u), z and r: add + sigmoid (4u), h: mul, add, tanh (3u),
        # h = z*h + (1-z)*hh (4u)
        return t * b * (2 * (i + u) * 3 * u + 6 * u + 4 * u + 3 * u + 4 * u)

    @staticmethod
    def _kcomp_step(K, u, kernel, rec, bias, x_t, states):
        (h,) = states
        mx = K.dot(x_t, kernel) + bias[0]
        mi = K.dot(h, rec) + bias[1]
        z = K.sigmoid(mx[:, :u] + mi[:, :u])
        r = K.sigmoid(mx[:, u:2 * u] + mi[:, u:2 * u])
        hh = K.tanh(mx[:, 2 * u:] + r * mi[:, 2 * u:])
        h = z * h + (1 - z) * hh
        return h, [h]

    def numpy(self, p, w):
        u = p["units"]
        W, R, b = w["kernel"], w["recurrent_kernel"], w["bias"]

        def f(x):
            h = np.zeros((x.shape[0], u), x.dtype)
            for t in range(x.shape[1]):
                mx = x[:, t] @ W + b[0]
                mi = h @ R + b[1]
                z = _sigmoid(mx[:, :u] + mi[:, :u])
                r = _sigmoid(mx[:, u:2 * u] + mi[:, u:2 * u])
                hh = np.tanh(mx[:, 2 * u:] + r * mi[:, 2 * u:])
                h = z * h + (1 - z) * hh
            return h
        return f

    def torch(self, torch, p, w):
        # PyTorch's GRU is reset_after=True with gates r, z, n; Keras's order is z, r, h
        u = p["units"]

        def reorder(m):  # last axis z, r, h -> r, z, h
            return np.concatenate([m[..., u:2 * u], m[..., :u], m[..., 2 * u:]], axis=-1)
        gru = torch.nn.GRU(p["inputs"], u, batch_first=True)
        with torch.no_grad():
            gru.weight_ih_l0.copy_(torch.from_numpy(reorder(w["kernel"]).T.copy()))
            gru.weight_hh_l0.copy_(torch.from_numpy(reorder(w["recurrent_kernel"]).T.copy()))
            gru.bias_ih_l0.copy_(torch.from_numpy(reorder(w["bias"][0])))
            gru.bias_hh_l0.copy_(torch.from_numpy(reorder(w["bias"][1])))

        class Last(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.rnn = gru

            def forward(self, x):
                _, h = self.rnn(x)
                return h[0]
        return Last().eval()

    def jax(self, jax, p, w):
        jnp, u = jax.numpy, p["units"]
        W, R, b = (jnp.asarray(w[k]) for k in ("kernel", "recurrent_kernel", "bias"))

        def step(h, x_t):
            mx = x_t @ W + b[0]
            mi = h @ R + b[1]
            z = jax.nn.sigmoid(mx[:, :u] + mi[:, :u])
            r = jax.nn.sigmoid(mx[:, u:2 * u] + mi[:, u:2 * u])
            hh = jnp.tanh(mx[:, 2 * u:] + r * mi[:, 2 * u:])
            return z * h + (1 - z) * hh, None

        def f(x):
            h, _ = jax.lax.scan(step, jnp.zeros((x.shape[0], u), x.dtype), jnp.swapaxes(x, 0, 1))
            return h
        return f

    def tensorflow(self, tf, p, w):
        layer = tf.keras.layers.GRU(p["units"], recurrent_activation="sigmoid", reset_after=True)
        layer.build((p["batch"], p["steps"], p["inputs"]))
        layer.set_weights([w["kernel"], w["recurrent_kernel"], w["bias"]])
        return layer


# ---- convolution ----------------------------------------------------------------------------

class Conv2D(Workload):
    name, group = "conv2d", "conv"
    title = "K.conv2d(x, kernel, padding='same'), NHWC (channels_last), stride 1"
    shape_help = "NxHxWxC,KHxKWxF  e.g. 2x8x8x4,3x3x8 (input NHWC, kernel size and filters)"
    defaults = ("32x32x32x64,3x3x64",)
    tolerance = 2e-4

    def parse(self, spec):
        parts = spec.split(",")
        if len(parts) != 2:
            raise SpecError(f"conv2d: expected NxHxWxC,KHxKWxF, got {spec!r}")
        x, k = _dims(parts[0], "conv2d input"), _dims(parts[1], "conv2d kernel")
        if len(x) != 4 or len(k) != 3:
            raise SpecError(f"conv2d: expected NxHxWxC,KHxKWxF, got {spec!r}")
        return dict(zip(("n", "h", "w", "c", "kh", "kw", "f"), x + k))

    def spec(self, p):
        return f"{p['n']}x{p['h']}x{p['w']}x{p['c']},{p['kh']}x{p['kw']}x{p['f']}"

    def label(self, p):
        return (f"({p['n']},{p['h']},{p['w']},{p['c']}) * {p['kh']}x{p['kw']}x{p['f']} "
                f"same")

    def flops(self, p):
        return 2 * p["n"] * p["h"] * p["w"] * p["kh"] * p["kw"] * p["c"] * p["f"]

    def bytes(self, p):
        return F32 * (p["n"] * p["h"] * p["w"] * (p["c"] + p["f"])
                      + p["kh"] * p["kw"] * p["c"] * p["f"])

    def make(self, p, rng):
        fan_in = p["kh"] * p["kw"] * p["c"]
        return ([_normal(rng, (p["n"], p["h"], p["w"], p["c"]))],
                {"kernel": _normal(rng, (p["kh"], p["kw"], p["c"], p["f"]), 1 / math.sqrt(fan_in))})

    def kcomp(self, K, p, w):
        x = K.placeholder((p["n"], p["h"], p["w"], p["c"]))
        return [x], K.conv2d(x, K.variable(w["kernel"]), padding="same",
                             data_format="channels_last")

    def numpy(self, p, w):
        kh, kw, k = p["kh"], p["kw"], w["kernel"]
        top, left = (kh - 1) // 2, (kw - 1) // 2  # 'same', as TensorFlow pads

        def f(x):
            xp = np.pad(x, ((0, 0), (top, kh - 1 - top), (left, kw - 1 - left), (0, 0)))
            win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(1, 2))
            # win: (n, h, w, c, kh, kw)
            return np.einsum("nhwcij,ijcf->nhwf", win, k, optimize=True)
        return f

    def torch(self, torch, p, w):
        k = torch.from_numpy(np.ascontiguousarray(w["kernel"].transpose(3, 2, 0, 1)))
        kh, kw = p["kh"], p["kw"]
        if kh % 2 and kw % 2:
            pad = (kh // 2, kw // 2)
        else:
            pad = "same"
        conv = torch.nn.functional.conv2d
        # NHWC in and out: the permuted input is NCHW with channels_last strides
        return lambda x: conv(x.permute(0, 3, 1, 2), k, padding=pad).permute(0, 2, 3, 1)

    def jax(self, jax, p, w):
        k = jax.numpy.asarray(w["kernel"])
        return lambda x: jax.lax.conv_general_dilated(
            x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def tensorflow(self, tf, p, w):
        k = tf.constant(w["kernel"])
        return lambda x: tf.nn.conv2d(x, k, strides=1, padding="SAME")


# ---- a small model --------------------------------------------------------------------------

class MLP(Workload):
    name, group = "mlp", "mlp"
    title = "MLP forward: dense + relu, dense + relu, dense + softmax"
    shape_help = "BATCHxIN-H1-...-OUT  e.g. 16x784-512-512-10"
    defaults = ("1x784-512-512-10", "256x784-512-512-10")

    def parse(self, spec):
        m = re.fullmatch(r"\s*(\d+)x(\d+(?:-\d+)+)\s*", spec)
        if not m:
            raise SpecError(f"mlp: expected BATCHxIN-H1-...-OUT, got {spec!r}")
        sizes = tuple(int(s) for s in m.group(2).split("-"))
        if int(m.group(1)) < 1 or min(sizes) < 1:
            raise SpecError(f"mlp: sizes must be at least 1, got {spec!r}")
        return {"batch": int(m.group(1)), "sizes": sizes}

    def spec(self, p):
        return f"{p['batch']}x" + "-".join(str(s) for s in p["sizes"])

    def label(self, p):
        return f"batch {p['batch']}, " + "-".join(str(s) for s in p["sizes"])

    def _layers(self, p):
        s = p["sizes"]
        return list(zip(s[:-1], s[1:]))

    def flops(self, p):
        b = p["batch"]
        total = sum(2 * b * i * o + 2 * b * o for i, o in self._layers(p))  # GEMM, bias, relu
        return total + 4 * b * p["sizes"][-1]  # softmax instead of the last relu: 5 - 1

    def bytes(self, p):
        b, s = p["batch"], p["sizes"]
        return F32 * (b * s[0] + sum(i * o + o for i, o in self._layers(p)) + b * s[-1])

    def make(self, p, rng):
        w = {}
        for k, (i, o) in enumerate(self._layers(p)):
            w[f"W{k}"] = _normal(rng, (i, o), 1 / math.sqrt(i))
            w[f"b{k}"] = _normal(rng, (o,), 0.1)
        return [_normal(rng, (p["batch"], p["sizes"][0]))], w

    def kcomp(self, K, p, w):
        x = K.placeholder((None, p["sizes"][0]))
        h, n = x, len(self._layers(p))
        for k in range(n):
            z = K.dot(h, K.variable(w[f"W{k}"])) + K.variable(w[f"b{k}"])
            h = K.relu(z) if k < n - 1 else K.softmax(z)
        return [x], h

    def numpy(self, p, w):
        n = len(self._layers(p))

        def f(x):
            h = x
            for k in range(n):
                z = h @ w[f"W{k}"] + w[f"b{k}"]
                if k < n - 1:
                    h = np.maximum(z, 0)
                else:
                    e = np.exp(z - z.max(axis=-1, keepdims=True))
                    h = e / e.sum(axis=-1, keepdims=True)
            return h
        return f

    def torch(self, torch, p, w):
        n = len(self._layers(p))
        lin = []
        for k in range(n):
            layer = torch.nn.Linear(*self._layers(p)[k])
            with torch.no_grad():
                layer.weight.copy_(torch.from_numpy(w[f"W{k}"].T.copy()))
                layer.bias.copy_(torch.from_numpy(w[f"b{k}"]))
            lin.append(layer)

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.layers = torch.nn.ModuleList(lin)

            def forward(self, x):
                for k, layer in enumerate(self.layers):
                    x = layer(x)
                    x = torch.relu(x) if k < n - 1 else torch.softmax(x, dim=-1)
                return x
        return Net().eval()

    def jax(self, jax, p, w):
        n = len(self._layers(p))
        ws = {k: jax.numpy.asarray(v) for k, v in w.items()}

        def f(x):
            for k in range(n):
                x = x @ ws[f"W{k}"] + ws[f"b{k}"]
                x = jax.nn.relu(x) if k < n - 1 else jax.nn.softmax(x, axis=-1)
            return x
        return f

    def tensorflow(self, tf, p, w):
        n = len(self._layers(p))
        ws = {k: tf.constant(v) for k, v in w.items()}

        def f(x):
            for k in range(n):
                x = tf.matmul(x, ws[f"W{k}"]) + ws[f"b{k}"]
                x = tf.nn.relu(x) if k < n - 1 else tf.nn.softmax(x, axis=-1)
            return x
        return f


# ---- the registry ---------------------------------------------------------------------------

WORKLOADS: Dict[str, Workload] = {w.name: w for w in (
    BatchDot(), Dot(), Sum(), Max(), Mean(), Softmax(), Var(), LogSumExp(), Chain(), LSTM(),
    GRU(), Conv2D(), MLP())}

GROUPS: Dict[str, List[str]] = {}
for _w in WORKLOADS.values():
    GROUPS.setdefault(_w.group, []).append(_w.name)
del _w


class Case:
    """One workload at one shape."""

    def __init__(self, workload: Workload, spec: str):
        self.workload = workload
        self.params = workload.parse(spec)
        self.spec = workload.spec(self.params)

    @property
    def name(self) -> str:
        return self.workload.name

    @property
    def label(self) -> str:
        return self.workload.label(self.params)

    @property
    def flops(self) -> int:
        return int(self.workload.flops(self.params))

    @property
    def bytes(self) -> int:
        return int(self.workload.bytes(self.params))

    def make(self):
        rng = np.random.default_rng(self.workload.seed)
        return self.workload.make(self.params, rng)

    def __repr__(self):
        return f"Case({self.name}, {self.spec})"


def select(workloads: Sequence[str] = (), groups: Sequence[str] = (),
           shapes: Sequence[str] = ()) -> List[Case]:
    """The cases to run: the named workloads and groups (all when neither is given), at their
    default shapes, or at `shapes` (which need exactly one workload)."""
    for g in groups:
        if g not in GROUPS:
            raise SpecError(f"unknown group {g!r}; groups: {', '.join(GROUPS)}")
    for w in workloads:
        if w not in WORKLOADS:
            raise SpecError(f"unknown workload {w!r}; workloads: {', '.join(WORKLOADS)}")
    names = list(dict.fromkeys(list(workloads) + [n for g in groups for n in GROUPS[g]]))
    if shapes:
        if len(names) != 1:
            raise SpecError("--shape needs exactly one --workload (the shapes are that "
                            "workload's)")
        return [Case(WORKLOADS[names[0]], s) for s in shapes]
    if not names:
        names = list(WORKLOADS)
    return [Case(WORKLOADS[n], s) for n in names for s in WORKLOADS[n].defaults]
