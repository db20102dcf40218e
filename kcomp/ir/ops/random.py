"""Random tensors from counter-based streams (Philox4x32-10).

A random node has one input: its own call counter, a uint64 scalar variable that every compiled
function using the node advances by one per call (kcomp/compiler.py adds the update). Element i
of call c of a node seeded s is a pure function of (s, c, i), so a seed reproduces a stream, each
call draws fresh samples, and results do not depend on threads. This numpy reference generates
the very same bits as the native code (csrc/include/kcomp/random.h).
"""
from __future__ import annotations

import numpy as np

from .. import dtypes as D
from ..graph import TensorType
from ..registry import register, shape_error

DISTRIBUTIONS = ("uniform", "normal", "truncated_normal", "binomial")
_M0, _M1, _W0, _W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85
_MASK = np.uint64(0xFFFFFFFF)


def philox(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 on uint32 arrays/scalars; returns the four output words (uint32 arrays)."""
    c = [np.asarray(v, np.uint64) & _MASK for v in (c0, c1, c2, c3)]
    k0, k1 = np.uint64(k0) & _MASK, np.uint64(k1) & _MASK
    for _ in range(10):
        p0 = np.uint64(_M0) * c[0]
        p1 = np.uint64(_M1) * c[2]
        c = [(p1 >> np.uint64(32)) ^ c[1] ^ k0, p1 & _MASK, (p0 >> np.uint64(32)) ^ c[3] ^ k1,
             p0 & _MASK]
        k0 = (k0 + np.uint64(_W0)) & _MASK
        k1 = (k1 + np.uint64(_W1)) & _MASK
    return [w.astype(np.uint32) for w in c]


def draw(seed: int, call: int, n: int, stream: int = 0):
    i = np.arange(n, dtype=np.uint64)
    return philox(i & _MASK, i >> np.uint64(32), np.uint64(call) & _MASK,
                  np.uint64(stream) ^ (np.uint64(call) >> np.uint64(32)),
                  np.uint64(seed) & _MASK, np.uint64(seed) >> np.uint64(32))


def _unit(a, b):
    return ((a.astype(np.uint64) << np.uint64(21)) ^ (b.astype(np.uint64) >> np.uint64(11))) \
        .astype(np.float64) * 2.0 ** -53


def _normal(w):
    u1 = (((w[0].astype(np.uint64) << np.uint64(21)) ^ (w[1].astype(np.uint64) >> np.uint64(11)))
          + np.uint64(1)).astype(np.float64) * 2.0 ** -53
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(6.283185307179586 * _unit(w[2], w[3]))


def sample(dist: str, params: tuple, seed: int, call: int, shape, dtype: D.DType) -> np.ndarray:
    n = int(np.prod(shape, dtype=np.int64))
    compute = np.float64 if dtype.name == "float64" else np.float32
    if dist in ("uniform", "binomial"):
        w = draw(seed, call, n)
        u = _unit(w[0], w[1]) if compute == np.float64 else \
            (w[0] >> np.uint32(8)).astype(np.float32) * np.float32(2.0 ** -24)
        if dist == "uniform":
            lo, hi = (compute(v) for v in params)
            out = lo + (hi - lo) * u
        else:
            out = np.where(u <= compute(params[0]), 1, 0)
    else:
        z = _normal(draw(seed, call, n))
        if dist == "truncated_normal":
            bad = np.abs(z) > 2.0
            for s in range(1, 64):
                if not bad.any():
                    break
                z = np.where(bad, _normal(draw(seed, call, n, s)), z)
                bad = np.abs(z) > 2.0
            z = np.where(bad, 0.0, z)
        mean, stddev = params
        out = (mean + stddev * z).astype(compute)
    return np.asarray(out).astype(dtype.np).reshape(shape)


def _infer(types, attrs):
    (counter,) = types
    if counter.dtype.name != "uint64" or counter.ndim != 0:
        raise shape_error("random", "the counter must be a uint64 scalar", counter)
    dtype = attrs["dtype"]
    if attrs["dist"] not in DISTRIBUTIONS:
        raise shape_error("random", f"unknown distribution {attrs['dist']!r}")
    if not dtype.is_float and attrs["dist"] != "binomial":
        raise shape_error("random", f"{attrs['dist']} samples need a float dtype, got {dtype}")
    return [TensorType(dtype, tuple(attrs["dims"]))]


def _reference(values, attrs, out_types):
    call = int(values[0])
    return [sample(attrs["dist"], attrs["params"], attrs["seed"], call, out_types[0].dims,
                   out_types[0].dtype)]


def _state_updates(node):
    """Advance the node's call counter by one at every call of a function that uses it."""
    from ..build import binary
    counter = node.inputs[0]
    return [(counter, binary("add", counter, np.uint64(1)))]


register("random", "other", _infer, _reference,
         doc="attrs: dist (uniform, normal, truncated_normal, binomial), params ((low, high), "
             "(mean, stddev) or (p,)), seed, dims, dtype; input: the node's uint64 call counter",
         state_updates=_state_updates)
