"""Differential fuzzing of the compiler: random graphs of Keras backend ops, compiled by kcomp and
compared with the same ops computed independently by numpy in float64.

A graph starts from one to three placeholders (some with an unknown batch dimension, some of size
1 or odd sizes; one graph in four large; float32, float64 or float16) and applies ops picked at random among those whose
preconditions hold: elementwise math, broadcasting binary ops against other values or new
variables and constants, reductions over random axis sets, softmax, cumulative ops, dot,
batch_dot, convolutions (1-d, 2-d, depthwise, transposed), pooling, gather, one_hot, in_top_k,
cross-entropies, batch_normalization, K.rnn with SimpleRNN, LSTM and GRU steps, slicing and the
shape ops. Its outputs are every value nothing used and a few that were used, so that values
with several consumers cross fusion boundaries; some graphs also update a variable.

Checks: the outputs (and the updated variable) against numpy; the same function again with new
variable values (set_value) and, where an input has an unknown batch dimension, another batch
size and an empty batch, against kcomp's reference interpreter; for float64 graphs, the
gradient along a random direction against central differences.

Each value carries a bound on its magnitude and an estimate of the float error kcomp may have
accumulated in it (each op's Lipschitz constant times its inputs' errors, plus a few roundings of
its result); the comparison allows that error and no more. Ops that are discontinuous (argmax,
comparisons, sign, round) are applied only to values computed exactly, so a correct compiler
never fails. A failure prints the seed and the program, which replays it:

    python tests/graph_fuzz.py --seeds 0-999           # fuzz 1000 graphs
    python tests/graph_fuzz.py --seeds 417 -v          # replay one, printing its program
"""
from __future__ import annotations

import argparse
import math
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

import kcomp.backend as K
from kcomp.ir.graph import Graph as IRGraph
from kcomp.ir.interpret import evaluate

# placeholder dimensions and the most elements of any value (keeping a run short); one graph in
# four is large, so that kernels take their vectorised and multi-threaded paths
SMALL = ((1, 1, 2, 3, 4, 5, 7, 8, 16, 17, 33), 6000)
LARGE = ((1, 3, 17, 64, 100, 129, 257, 1000), 300000)


@dataclass
class Val:
    name: str
    t: object           # the kcomp tensor
    a: np.ndarray       # its value, computed by numpy in float64
    bound: float        # |a| <= bound, for every input this graph could be fed
    err: float          # float error kcomp may carry in it (0: computed exactly)
    used: bool = False  # an op took it as an operand
    variable: bool = False


@dataclass
class Graph:
    seed: int
    dtype: str
    unit: float                      # one rounding of a result, relative
    vals: List[Val] = field(default_factory=list)
    placeholders: List[Val] = field(default_factory=list)
    feeds: List[np.ndarray] = field(default_factory=list)  # the placeholders' arrays
    lines: List[str] = field(default_factory=list)
    outputs: List[Val] = field(default_factory=list)
    update: Optional[tuple] = None  # (variable, new value): K.function's updates

    def program(self) -> str:
        up = [f"update: {self.update[0].name} <- {self.update[1].name}"] if self.update else []
        return "\n".join(self.lines + ["outputs: " + ", ".join(v.name for v in self.outputs)]
                         + up)


class Skip(Exception):
    """The op picked does not apply to the operands picked."""


def _axis(rng, rank):
    a = int(rng.integers(0, rank))
    return a - rank if rng.random() < 0.3 else a


def _norm_axes(axes, rank):
    axes = [axes] if isinstance(axes, int) else axes
    return tuple(sorted(a % rank for a in axes))


class Fuzzer:
    def __init__(self, seed: int, dtype: Optional[str] = None):
        self.rng = np.random.default_rng(seed)
        r = self.rng.random()
        pick = "float64" if r < 0.25 else "float16" if r < 0.35 else "float32"
        dtype = dtype or pick
        self.g = Graph(seed, dtype, 4 * float(np.finfo(dtype).eps))
        self.dims, self.max_size = LARGE if self.rng.random() < 0.25 else SMALL

    # ---- values ----------------------------------------------------------------------------
    def add(self, text: str, t, a, bound: float, err: float) -> Val:
        a = np.asarray(a, dtype=np.float64)
        if a.size > self.max_size or (self.g.dtype == "float16" and bound > 1e4):
            raise Skip  # (float16 overflows at 65504)
        v = Val(f"v{len(self.g.vals)}", t, a, float(bound), float(err))
        self.g.vals.append(v)
        self.g.lines.append(f"{v.name} = {text}    # shape {a.shape}")
        return v

    def rounding(self, bound: float, n: int = 1) -> float:
        return self.g.unit * n * bound

    def pick(self, pred=lambda v: True) -> Val:
        cands = [v for v in self.g.vals if pred(v)]
        if not cands:
            raise Skip
        # favour recent values, so that graphs grow deep as well as wide
        w = np.arange(1, len(cands) + 1, dtype=float) ** 2
        v = cands[int(self.rng.choice(len(cands), p=w / w.sum()))]
        v.used = True
        return v

    def placeholder(self):
        rank = int(self.rng.choice(6, p=[.15, .2, .2, .2, .17, .08]))  # rank 5: 3-D images
        shape = (self.max_size + 1,)
        while math.prod(shape) > self.max_size:
            shape = tuple(int(self.rng.choice(self.dims)) for _ in range(rank))
        declared = tuple(None if i == 0 and self.rng.random() < 0.4 else d
                         for i, d in enumerate(shape))
        t = K.placeholder(shape=declared, dtype=self.g.dtype)
        a = self.rng.uniform(-2, 2, shape).astype(self.g.dtype)
        v = self.add(f"placeholder{declared}", t, a, 2.0, 0.0)
        self.g.placeholders.append(v)
        self.g.feeds.append(a)
        return v

    def weights(self, shape, what="variable", scale=1.0) -> Val:
        """A new variable or constant of this shape, uniform in [-scale, scale]."""
        a = (self.rng.uniform(-1, 1, shape) * scale).astype(self.g.dtype)
        t = K.variable(a, dtype=self.g.dtype) if what == "variable" else K.constant(
            a, dtype=self.g.dtype)
        v = self.add(f"{what}{tuple(shape)}", t, a, scale, 0.0)
        v.variable = what == "variable"
        return v

    # ---- ops -------------------------------------------------------------------------------
    UNARY = {
        # name: (kcomp, numpy, Lipschitz constant given the bound, new bound, max input bound)
        "tanh": (K.tanh, np.tanh, lambda b: 1, lambda b: min(b, 1), None),
        "sigmoid": (K.sigmoid, lambda x: 1 / (1 + np.exp(-x)), lambda b: .25, lambda b: 1, None),
        "sin": (K.sin, np.sin, lambda b: 1, lambda b: min(b, 1), None),
        "cos": (K.cos, np.cos, lambda b: 1, lambda b: 1, None),
        "abs": (K.abs, np.abs, lambda b: 1, lambda b: b, None),
        "neg": (lambda x: -x, np.negative, lambda b: 1, lambda b: b, None),
        "relu": (K.relu, lambda x: np.maximum(x, 0), lambda b: 1, lambda b: b, None),
        "leaky_relu": (lambda x: K.relu(x, alpha=0.1), lambda x: np.where(x > 0, x, 0.1 * x),
                       lambda b: 1, lambda b: b, None),
        "relu6": (lambda x: K.relu(x, max_value=1.0), lambda x: np.clip(x, 0, 1),
                  lambda b: 1, lambda b: min(b, 1), None),
        "softsign": (K.softsign, lambda x: x / (1 + np.abs(x)), lambda b: 1, lambda b: 1, None),
        "softplus": (K.softplus, lambda x: np.logaddexp(0, x), lambda b: 1, lambda b: b + 1,
                     30),
        "elu": (K.elu, lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))), lambda b: 1,
                lambda b: b, None),
        "hard_sigmoid": (K.hard_sigmoid, lambda x: np.clip(0.2 * x + 0.5, 0, 1),
                         lambda b: .2, lambda b: 1, None),
        "square": (K.square, np.square, lambda b: 2 * b, lambda b: b * b, 30),
        "exp": (K.exp, np.exp, lambda b: math.exp(b), lambda b: math.exp(b), 4),
        "log1p_abs": (lambda x: K.log(1.0 + K.abs(x)), lambda x: np.log1p(np.abs(x)),
                      lambda b: 1, lambda b: math.log1p(b), None),
        "clip": (lambda x: K.clip(x, -0.5, 1.0), lambda x: np.clip(x, -0.5, 1.0), lambda b: 1,
                 lambda b: 1, None),
    }
    EXACT_UNARY = {  # discontinuous: only on exactly computed values
        "sign": (K.sign, np.sign),
        "round": (K.round, np.round),
        "positive": (lambda x: K.cast(K.greater(x, 0.25), x.dtype),
                     lambda x: (x > 0.25).astype(np.float64)),
    }

    def op_unary(self):
        name = str(self.rng.choice(list(self.UNARY)))
        kf, nf, lip, nb, max_in = self.UNARY[name]
        x = self.pick(lambda v: max_in is None or v.bound <= max_in)
        bound = nb(x.bound)
        return self.add(f"{name}({x.name})", kf(x.t), nf(x.a), bound,
                        lip(x.bound) * x.err + self.rounding(bound))

    def op_sqrt(self):
        if self.g.dtype == "float64":  # not differentiable at 0: no gradient check through it
            raise Skip
        x = self.pick()
        bound = math.sqrt(x.bound)
        return self.add(f"sqrt(abs({x.name}))", K.sqrt(K.abs(x.t)), np.sqrt(np.abs(x.a)),
                        bound, math.sqrt(x.err) + self.rounding(bound))

    def op_exact_unary(self):
        name = str(self.rng.choice(list(self.EXACT_UNARY)))
        kf, nf = self.EXACT_UNARY[name]
        x = self.pick(lambda v: v.err == 0)
        return self.add(f"{name}({x.name})", kf(x.t), nf(x.a), max(x.bound + 1, 1), 0.0)

    def op_affine(self):
        x = self.pick()
        c, d = (round(float(self.rng.uniform(-2, 2)), 2) for _ in range(2))
        bound = abs(c) * x.bound + abs(d)
        return self.add(f"{c} * {x.name} + {d}", x.t * c + d, x.a * c + d, bound,
                        abs(c) * x.err + self.rounding(bound, 2))

    def partner(self, x: Val) -> Val:
        """A value whose shape broadcasts with x's: an existing one, or new weights of a shape
        made from x's (dimensions dropped from the front or set to 1)."""
        def fits(v):
            try:
                np.broadcast_shapes(v.a.shape, x.a.shape)
            except ValueError:
                return False
            # an unknown dimension (which takes other sizes too) lines up with a static 1 or
            # another unknown one
            for dx, dv in zip(K.int_shape(x.t)[::-1], K.int_shape(v.t)[::-1]):
                if (dx is None) != (dv is None) and 1 not in (dx, dv):
                    return False
            return True
        if self.rng.random() < 0.6:
            try:
                return self.pick(lambda v: v is not x and fits(v))
            except Skip:
                pass
        drop = int(self.rng.integers(0, x.a.ndim + 1))
        shape = list(x.a.shape[drop:])
        for i, known in enumerate(K.int_shape(x.t)[drop:]):
            # (1 against an unknown dimension: weights cannot take the batch's size)
            if known is None or self.rng.random() < 0.3:
                shape[i] = 1
        return self.weights(tuple(shape), "variable" if self.rng.random() < 0.5 else "constant")

    def op_binary(self):
        x = self.pick()
        y = self.partner(x)
        if self.rng.random() < 0.5:
            x, y = y, x
        if math.prod(np.broadcast_shapes(x.a.shape, y.a.shape)) > self.max_size:
            raise Skip  # (before numpy builds it)
        kind = str(self.rng.choice(["add", "sub", "mul", "maximum", "minimum", "div", "switch"]))
        ex, ey, bx, by = x.err, y.err, x.bound, y.bound
        if kind == "add":
            t, a, b, e = x.t + y.t, x.a + y.a, bx + by, ex + ey
        elif kind == "sub":
            t, a, b, e = x.t - y.t, x.a - y.a, bx + by, ex + ey
        elif kind == "mul":
            t, a, b, e = x.t * y.t, x.a * y.a, bx * by, ex * by + ey * bx + ex * ey
        elif kind == "maximum":
            t, a, b, e = K.maximum(x.t, y.t), np.maximum(x.a, y.a), max(bx, by), max(ex, ey)
        elif kind == "minimum":
            t, a, b, e = K.minimum(x.t, y.t), np.minimum(x.a, y.a), max(bx, by), max(ex, ey)
        elif kind == "div":  # a denominator that stays away from zero
            t = x.t / (1.0 + K.square(y.t))
            a, b, e = x.a / (1 + y.a ** 2), bx, ex + 0.65 * bx * ey
        else:  # continuous: the larger of the two (K.switch needs equal shapes)
            if x.a.shape != y.a.shape or K.int_shape(x.t) != K.int_shape(y.t):
                raise Skip
            t = K.switch(K.greater(x.t, y.t), x.t, y.t)
            a, b, e = np.where(x.a > y.a, x.a, y.a), max(bx, by), max(ex, ey)
        return self.add(f"{kind}({x.name}, {y.name})", t, a, b, e + self.rounding(b, 2))

    def reduce_axes(self, x: Val):
        rank = x.a.ndim
        if rank == 0:
            raise Skip
        r = self.rng.random()
        if r < 0.15:
            return None, tuple(range(rank))
        if r < 0.7:
            ax = _axis(self.rng, rank)
            return ax, (ax % rank,)
        k = int(self.rng.integers(1, rank + 1))
        axes = [int(a) for a in self.rng.choice(rank, size=k, replace=False)]
        return axes, _norm_axes(axes, rank)

    def op_reduce(self):
        kind = str(self.rng.choice(["sum", "mean", "max", "min", "prod", "var", "std",
                                    "logsumexp", "argmax", "argmin", "any", "all"]))
        exact = kind in ("argmax", "argmin", "any", "all")
        x = self.pick(lambda v: v.a.ndim > 0 and (v.err == 0 or not exact))
        axis, axes = self.reduce_axes(x)
        n = math.prod(x.a.shape[a] for a in axes)
        keep = bool(self.rng.random() < 0.4)
        b, e, u = x.bound, x.err, self.g.unit
        if kind in ("argmax", "argmin"):
            axis = axes[0] if isinstance(axis, (list, type(None))) else axis
            if len(axes) != 1 and axis is None:
                axis = -1
            kf = K.argmax if kind == "argmax" else K.argmin
            nf = np.argmax if kind == "argmax" else np.argmin
            return self.add(f"cast({kind}({x.name}, axis={axis}))",
                            K.cast(kf(x.t, axis=axis), self.g.dtype), nf(x.a, axis=axis),
                            x.a.shape[axis], 0.0)
        if kind in ("any", "all"):
            kf, nf = (K.any, np.any) if kind == "any" else (K.all, np.all)
            t = K.cast(kf(K.greater(x.t, 0.5), axis=axis, keepdims=keep), self.g.dtype)
            a = nf(x.a > 0.5, axis=axes, keepdims=keep)
            return self.add(f"cast({kind}({x.name} > 0.5, axis={axis}, keepdims={keep}))",
                            t, a, 1, 0.0)
        if kind == "prod" and (n > 8 or b > 2):
            raise Skip
        na = {"sum": lambda: np.sum(x.a, axis=axes, keepdims=keep),
              "mean": lambda: np.mean(x.a, axis=axes, keepdims=keep),
              "max": lambda: np.max(x.a, axis=axes, keepdims=keep),
              "min": lambda: np.min(x.a, axis=axes, keepdims=keep),
              "prod": lambda: np.prod(x.a, axis=axes, keepdims=keep),
              "var": lambda: np.var(x.a, axis=axes, keepdims=keep),
              "std": lambda: np.std(x.a, axis=axes, keepdims=keep),
              "logsumexp": lambda: _logsumexp(x.a, axes, keep)}[kind]()
        if kind == "sum":
            bound, err = n * b, n * e + u * n * n * b
        elif kind == "mean":
            bound, err = b, e + u * n * b
        elif kind in ("max", "min"):
            bound, err = b, e
        elif kind == "prod":
            bound = max(b, 1) ** n
            err = n * bound * e + u * n * bound
        elif kind == "var":
            bound, err = b * b, 4 * b * e + u * n * b * b
        elif kind == "std":  # sqrt of the variance: not Lipschitz at zero
            if self.g.dtype == "float64" and np.var(x.a, axis=axes).min() < 1e-3:
                raise Skip  # (nor differentiable: no gradient check through it)
            bound, err = b, math.sqrt(4 * b * e + u * n * b * b)
        else:
            bound = b + math.log(n)
            err = e + u * n * bound
        kf = getattr(K, kind)
        return self.add(f"{kind}({x.name}, axis={axis}, keepdims={keep})",
                        kf(x.t, axis=axis, keepdims=keep), na, bound, err + self.rounding(bound))

    def op_softmax(self):
        x = self.pick(lambda v: v.a.ndim > 0)
        ax = _axis(self.rng, x.a.ndim) if self.rng.random() < 0.5 else -1
        n = x.a.shape[ax]
        m = x.a - x.a.max(axis=ax, keepdims=True)
        a = np.exp(m) / np.exp(m).sum(axis=ax, keepdims=True)
        return self.add(f"softmax({x.name}, axis={ax})", K.softmax(x.t, axis=ax), a, 1.0,
                        2 * x.err + self.rounding(1.0, n + 4))

    def op_l2_normalize(self):
        # x / |x| is ill-conditioned where |x| is small: only exact inputs, over 2+ elements
        x = self.pick(lambda v: v.a.ndim > 0 and v.err == 0)
        ax = _axis(self.rng, x.a.ndim)
        n = x.a.shape[ax]
        norm = np.sqrt(np.maximum(np.sum(x.a * x.a, axis=ax, keepdims=True), 1e-12))
        if n < 2 or norm.min() < 1e-3:
            raise Skip
        return self.add(f"l2_normalize({x.name}, axis={ax})", K.l2_normalize(x.t, axis=ax),
                        x.a / norm, 1.0, self.rounding(1.0, n + 4))

    def op_cumulative(self):
        x = self.pick(lambda v: v.a.ndim > 0)
        ax = _axis(self.rng, x.a.ndim)
        n, b, e = x.a.shape[ax], x.bound, x.err
        if self.rng.random() < 0.6:
            return self.add(f"cumsum({x.name}, axis={ax})", K.cumsum(x.t, axis=ax),
                            np.cumsum(x.a, axis=ax), n * b, n * e + self.rounding(n * b, n))
        if n > 8 or b > 2:
            raise Skip
        big = max(b, 1) ** n
        return self.add(f"cumprod({x.name}, axis={ax})", K.cumprod(x.t, axis=ax),
                        np.cumprod(x.a, axis=ax), big,
                        n * max(b, 1) ** (n - 1) * e + self.rounding(big, n))

    def op_dot(self):
        x = self.pick(lambda v: v.a.ndim >= 2 and K.int_shape(v.t)[-1] is not None)
        k = x.a.shape[-1]
        n = int(self.rng.choice([1, 3, 16, 17, 40]))
        w = self.weights((k, n), "variable" if self.rng.random() < 0.7 else "constant")
        return self.weighted_sum(f"dot({x.name}, {w.name})", x, K.dot(x.t, w.t),
                                 np.tensordot(x.a, w.a, axes=([-1], [0])), k)

    def weighted_sum(self, text: str, x: Val, t, a, n: int) -> Val:
        """A value each element of which sums n products of x's elements with weights in
        [-1, 1] (dot, the convolutions)."""
        bound = n * x.bound
        return self.add(text, t, a, bound, n * x.err + self.rounding(bound, n))

    def op_batch_dot(self):
        x = self.pick(lambda v: v.a.ndim in (2, 3) and None not in K.int_shape(v.t)[1:])
        if x.a.ndim == 2:  # rows against rows: (B, k) . (B, k) -> (B, 1)
            y = self.pick(lambda v: v.a.shape == x.a.shape and K.int_shape(v.t) == K.int_shape(x.t))
            t = K.batch_dot(x.t, y.t, axes=1)
            a = np.einsum("bk,bk->b", x.a, y.a)[:, None]
            k = x.a.shape[1]
        else:
            # a (B, m, k) value against one of (B, k, n) or (B, n, k), or x against itself
            def fits(v, ax):
                return (v.a.ndim == 3 and v.a.shape[0] == x.a.shape[0]
                        and K.int_shape(v.t)[0] == K.int_shape(x.t)[0] and None not in K.int_shape(v.t)[1:]
                        and v.a.shape[ax] == x.a.shape[2])
            ax = int(self.rng.choice([1, 2]))
            y = self.pick(lambda v: fits(v, ax))
            t = K.batch_dot(x.t, y.t, axes=[2, ax])
            a = np.einsum("bmk,bkn->bmn" if ax == 1 else "bmk,bnk->bmn", x.a, y.a)
            k = x.a.shape[2]
        bound = k * x.bound * y.bound
        err = k * (x.err * y.bound + y.err * x.bound) + self.rounding(bound, k)
        return self.add(f"batch_dot({x.name}, {y.name})", t, a, bound, err)

    # shape ops: values pass through exactly
    def same(self, x: Val, text: str, t, a) -> Val:
        return self.add(text, t, a, x.bound, x.err)

    def op_slice(self):
        x = self.pick(lambda v: v.a.ndim > 0)
        idx, text = [], []
        for d, known in zip(x.a.shape, K.int_shape(x.t)):
            r = self.rng.random()
            if known is None:  # whole or reversed: valid at the other batch size tested too
                s = slice(None) if r < 0.5 else slice(None, None, -1)
                idx.append(s); text.append(f"::{s.step or 1}")
            elif r < 0.5 or d == 1:
                idx.append(slice(None)); text.append(":")
            elif r < 0.8:
                i, j = sorted(int(v) for v in self.rng.choice(d + 1, 2, replace=False))
                step = int(self.rng.choice([1, 1, 2, -1]))
                s = slice(i, j, step) if step > 0 else slice(j - 1, i - 1 if i else None, -1)
                idx.append(s); text.append(f"{s.start}:{s.stop}:{s.step}")
            else:
                i = int(self.rng.integers(-d, d))
                idx.append(i); text.append(str(i))
        idx = tuple(idx)
        if not x.a[idx].size:
            raise Skip
        return self.same(x, f"{x.name}[{', '.join(text)}]", x.t[idx], x.a[idx])

    def op_transpose(self):
        x = self.pick(lambda v: v.a.ndim >= 2)
        perm = tuple(int(p) for p in self.rng.permutation(x.a.ndim))
        return self.same(x, f"permute_dimensions({x.name}, {perm})",
                         K.permute_dimensions(x.t, perm), np.transpose(x.a, perm))

    def op_reshape(self):
        x = self.pick(lambda v: None not in K.int_shape(v.t)[1:])
        sx = K.int_shape(x.t)
        head = 1 if sx[:1] == (None,) else 0  # keep an unknown batch dimension in front
        size = int(np.prod(x.a.shape[head:]))
        dims = []
        while size > 1 and len(dims) < 4:
            divs = [d for d in range(2, size + 1) if size % d == 0]
            d = int(self.rng.choice(divs)) if self.rng.random() < 0.7 else size
            dims.append(d)
            size //= d
        if size > 1:
            dims[-1] *= size
        if self.rng.random() < 0.3:
            dims.insert(int(self.rng.integers(0, len(dims) + 1)), 1)
        if dims and self.rng.random() < 0.3:
            dims[int(self.rng.integers(0, len(dims)))] = -1
        shape = ((-1,) if head else ()) + tuple(dims)
        if head and -1 in dims:
            raise Skip
        return self.same(x, f"reshape({x.name}, {shape})", K.reshape(x.t, shape),
                         x.a.reshape(shape))

    def op_expand_squeeze(self):
        x = self.pick()
        ones = [i for i, d in enumerate(K.int_shape(x.t)) if d == 1]
        if ones and self.rng.random() < 0.5:
            ax = int(self.rng.choice(ones))
            return self.same(x, f"squeeze({x.name}, {ax})", K.squeeze(x.t, ax),
                             np.squeeze(x.a, ax))
        if x.a.ndim >= 5:
            raise Skip
        ax = int(self.rng.integers(-x.a.ndim - 1, x.a.ndim + 1))
        return self.same(x, f"expand_dims({x.name}, {ax})", K.expand_dims(x.t, ax),
                         np.expand_dims(x.a, ax))

    def op_join(self):
        x = self.pick(lambda v: v.a.ndim > 0)
        ax = _axis(self.rng, x.a.ndim)
        if self.rng.random() < 0.5:  # stack with a same-shaped value
            y = self.pick(lambda v: v.a.shape == x.a.shape and K.int_shape(v.t) == K.int_shape(x.t))
            ax = int(self.rng.integers(-x.a.ndim - 1, x.a.ndim + 1))
            return self.add(f"stack([{x.name}, {y.name}], {ax})", K.stack([x.t, y.t], axis=ax),
                            np.stack([x.a, y.a], axis=ax), max(x.bound, y.bound),
                            max(x.err, y.err))

        def fits(v):
            return (v.a.ndim == x.a.ndim and all(
                (i == ax % x.a.ndim) or (v.a.shape[i] == x.a.shape[i]
                                         and K.int_shape(v.t)[i] == K.int_shape(x.t)[i])
                for i in range(x.a.ndim)) and K.int_shape(v.t)[ax] is not None)
        if K.int_shape(x.t)[ax] is None:
            raise Skip
        y = self.pick(fits)
        return self.add(f"concatenate([{x.name}, {y.name}], {ax})",
                        K.concatenate([x.t, y.t], axis=ax),
                        np.concatenate([x.a, y.a], axis=ax), max(x.bound, y.bound),
                        max(x.err, y.err))

    def op_repeat(self):
        x = self.pick(lambda v: v.a.ndim > 0)
        r = self.rng.random()
        if r < 0.4:
            ax = _axis(self.rng, x.a.ndim)
            if K.int_shape(x.t)[ax] is None:
                raise Skip
            rep = int(self.rng.integers(2, 4))
            return self.same(x, f"repeat_elements({x.name}, {rep}, {ax})",
                             K.repeat_elements(x.t, rep, ax), np.repeat(x.a, rep, axis=ax))
        if r < 0.7:
            n = [int(self.rng.integers(1, 3)) for _ in range(x.a.ndim)]
            return self.same(x, f"tile({x.name}, {n})", K.tile(x.t, n), np.tile(x.a, n))
        k = int(self.rng.integers(1, x.a.ndim + 1))
        axes = [int(a) for a in self.rng.choice(x.a.ndim, size=k, replace=False)]
        return self.same(x, f"reverse({x.name}, {axes})", K.reverse(x.t, axes),
                         np.flip(x.a, axis=tuple(axes)))

    def op_flatten(self):
        x = self.pick(lambda v: v.a.ndim >= 1)
        if self.rng.random() < 0.5 or x.a.ndim < 2:
            return self.same(x, f"flatten({x.name})", K.flatten(x.t), x.a.reshape(-1))
        return self.same(x, f"batch_flatten({x.name})", K.batch_flatten(x.t),
                         x.a.reshape(x.a.shape[0], -1))

    # ---- convolution and pooling (numpy: windows gathered explicitly) ------------------------
    def spatial(self, rank):
        """A value of `rank` with static channels and spatial sizes, its data format, and its
        (N, spatial..., C) view."""
        x = self.pick(lambda v: v.a.ndim == rank and None not in K.int_shape(v.t)[1:])
        fmt = "channels_first" if self.rng.random() < 0.3 else "channels_last"
        a = np.moveaxis(x.a, 1, -1) if fmt == "channels_first" else x.a
        return x, fmt, a

    def geometry(self, sizes, allow_causal=False):
        """Random kernel size, strides, padding and dilation over these spatial sizes."""
        nd = len(sizes)
        k = tuple(int(self.rng.integers(1, 4)) for _ in range(nd))
        pads = ["valid", "same"] + (["causal"] if allow_causal else [])
        pad = str(self.rng.choice(pads))
        if self.rng.random() < 0.3:
            dil, st = tuple(int(self.rng.integers(1, 3)) for _ in range(nd)), (1,) * nd
        else:
            dil, st = (1,) * nd, tuple(int(self.rng.integers(1, 3)) for _ in range(nd))
        if any((kk - 1) * d + 1 > n for kk, d, n in zip(k, dil, sizes)) and pad == "valid":
            raise Skip
        return k, st, pad, dil

    @staticmethod
    def windows(a, k, st, pad, dil, fill):
        """a: (N, spatial..., C) -> (N, out..., prod(k), C) of the windows (padding: `fill`),
        as TensorFlow pads (same: the extra element after; causal: all before)."""
        nd = len(k)
        pads = []
        for n, kk, s, d in zip(a.shape[1:-1], k, st, dil):
            ext = (kk - 1) * d + 1
            if pad == "valid":
                pads.append((0, 0))
                continue
            if pad == "causal":
                pads.append((ext - 1, 0))
                continue
            out = -(-n // s)
            total = max((out - 1) * s + ext - n, 0)
            pads.append((total // 2, total - total // 2))
        p = np.pad(a, [(0, 0)] + pads + [(0, 0)], constant_values=fill)
        outs = [(p.shape[1 + i] - ((k[i] - 1) * dil[i] + 1)) // st[i] + 1 for i in range(nd)]
        cols = []
        for off in np.ndindex(*k):
            sl = tuple(slice(o * d, o * d + (m - 1) * s + 1, s)
                       for o, d, s, m in zip(off, dil, st, outs))
            cols.append(p[(slice(None),) + sl])
        return np.stack(cols, axis=-2)

    def op_conv(self):
        nd = int(self.rng.choice([1, 2, 3], p=[.4, .4, .2]))
        x, fmt, a = self.spatial(nd + 2)
        k, st, pad, dil = self.geometry(a.shape[1:-1],
                                        allow_causal=nd == 1 and fmt == "channels_last")
        c, f = a.shape[-1], int(self.rng.choice([1, 3, 8, 17]))
        w = self.weights(k + (c, f), "variable")
        win = self.windows(a, k, st, pad, dil, 0.0)
        out = np.einsum("...kc,kcf->...f", win, w.a.reshape(-1, c, f))
        if fmt == "channels_first":
            out = np.moveaxis(out, -1, 1)
        if nd == 1:
            t = K.conv1d(x.t, w.t, strides=st[0], padding=pad, data_format=fmt,
                         dilation_rate=dil[0])
        else:
            t = (K.conv2d if nd == 2 else K.conv3d)(x.t, w.t, strides=st, padding=pad,
                                                     data_format=fmt, dilation_rate=dil)
        return self.weighted_sum(f"conv{nd}d({x.name}, {w.name}, strides={st}, "
                                 f"padding={pad!r}, {fmt}, dilation={dil})", x, t, out,
                                 math.prod(k) * c)

    def op_depthwise(self):
        """depthwise_conv2d, or (a third of the time) separable_conv1d/2d: the depthwise
        convolution then a pointwise one."""
        separable = self.rng.random() < 0.35
        nd = int(self.rng.choice([1, 2])) if separable else 2
        x, fmt, a = self.spatial(nd + 2)
        k, st, pad, dil = self.geometry(a.shape[1:-1])
        c, m = a.shape[-1], int(self.rng.choice([1, 2]))
        w = self.weights(k + (c, m), "variable")
        win = self.windows(a, k, st, pad, dil, 0.0)
        out = np.einsum("...kc,kcm->...cm", win, w.a.reshape(-1, c, m))
        out = out.reshape(out.shape[:-2] + (c * m,))
        terms, text = math.prod(k), f"{x.name}, {w.name}"
        if separable:
            f = int(self.rng.choice([1, 3, 8]))
            pw = self.weights((1,) * nd + (c * m, f), "variable")
            out = out @ pw.a.reshape(c * m, f)
            terms, text = terms * c * m, f"{text}, {pw.name}"
        if fmt == "channels_first":
            out = np.moveaxis(out, -1, 1)
        if not separable:
            name = "depthwise_conv2d"
            t = K.depthwise_conv2d(x.t, w.t, strides=st, padding=pad, data_format=fmt,
                                   dilation_rate=dil)
        elif nd == 1:
            name = "separable_conv1d"
            t = K.separable_conv1d(x.t, w.t, pw.t, strides=st[0], padding=pad,
                                   data_format=fmt, dilation_rate=dil[0])
        else:
            name = "separable_conv2d"
            t = K.separable_conv2d(x.t, w.t, pw.t, strides=st, padding=pad, data_format=fmt,
                                   dilation_rate=dil)
        return self.weighted_sum(f"{name}({text}, strides={st}, padding={pad!r}, {fmt}, "
                                 f"dilation={dil})", x, t, out, terms)

    def op_conv_transpose(self):
        """conv2d_transpose: the adjoint of conv2d, in numpy by scattering each input element
        times the kernel back through conv2d's windows of the output."""
        x, fmt, a = self.spatial(4)
        if None in K.int_shape(x.t):
            raise Skip
        sizes = a.shape[1:3]
        k, st, pad, dil = self.geometry(sizes)
        ext = [(kk - 1) * d + 1 for kk, d in zip(k, dil)]
        out = tuple(n * s if pad == "same" else (n - 1) * s + e
                    for n, s, e in zip(sizes, st, ext))
        c, f, n = a.shape[-1], int(self.rng.choice([1, 3, 8])), a.shape[0]
        w = self.weights(k + (f, c), "variable")
        idx = np.arange(n * out[0] * out[1] * f, dtype=np.float64).reshape((n,) + out + (f,))
        win = self.windows(idx, k, st, pad, dil, -1.0).astype(np.int64)  # (n, h, w, kk, f)
        contrib = np.einsum("nhwc,kfc->nhwkf", a, w.a.reshape(-1, f, c))
        z = np.zeros(idx.size)
        keep = win >= 0
        np.add.at(z, win[keep], contrib[keep])
        z = z.reshape(idx.shape)
        shape = (n,) + out + (f,)
        if fmt == "channels_first":
            z, shape = np.moveaxis(z, -1, 1), (n, f) + out
        t = K.conv2d_transpose(x.t, w.t, shape, strides=st, padding=pad, data_format=fmt,
                               dilation_rate=dil)
        return self.weighted_sum(f"conv2d_transpose({x.name}, {w.name}, {shape}, "
                                 f"strides={st}, padding={pad!r}, {fmt}, dilation={dil})", x,
                                 t, z, math.prod(k) * c)

    def op_in_top_k(self):
        """in_top_k on exact values: a class ties with those of equal score (TensorFlow's rule:
        the target is in the top k when fewer than k classes score higher)."""
        x = self.pick(lambda v: v.a.ndim == 2 and v.err == 0 and None not in K.int_shape(v.t))
        b, c = x.a.shape
        kk = int(self.rng.integers(1, c + 1))
        labels = self.rng.integers(0, c, b).astype("int32")
        lt = K.placeholder(shape=(b,), dtype="int32")
        i = self.index_input(lt, labels)
        higher = (x.a > x.a[np.arange(b), labels][:, None]).sum(axis=1)
        return self.add(f"cast(in_top_k({x.name}, {i.name}, {kk}))",
                        K.cast(K.in_top_k(x.t, lt, kk), self.g.dtype), higher < kk, 1.0, 0.0)

    def op_pool(self):
        nd = int(self.rng.choice([2, 3], p=[.7, .3]))
        x, fmt, a = self.spatial(nd + 2)
        k, st, pad, _ = self.geometry(a.shape[1:-1])
        st = st if self.rng.random() < 0.5 else k
        mode = str(self.rng.choice(["max", "avg"]))
        if mode == "max":
            out = self.windows(a, k, st, pad, (1,) * nd, -np.inf).max(axis=-2)
        else:  # padding is left out of the average
            win = self.windows(a, k, st, pad, (1,) * nd, np.nan)
            out = np.nanmean(win, axis=-2)
        if fmt == "channels_first":
            out = np.moveaxis(out, -1, 1)
        t = (K.pool2d if nd == 2 else K.pool3d)(x.t, k, strides=st, padding=pad,
                                                 data_format=fmt, pool_mode=mode)
        return self.add(f"pool{nd}d({x.name}, {k}, strides={st}, padding={pad!r}, {fmt}, "
                        f"{mode})", t, out, x.bound,
                        x.err + self.rounding(x.bound, math.prod(k)))

    def op_bias_add(self):
        x = self.pick(lambda v: v.a.ndim >= 2 and None not in K.int_shape(v.t)[1:])
        # (Keras: data_format counts for ranks 3 to 5; others add along the last axis)
        fmt = "channels_first" if 3 <= x.a.ndim <= 5 and self.rng.random() < 0.3 else \
            "channels_last"
        ax = 1 if fmt == "channels_first" else -1
        b = self.weights((x.a.shape[ax],), "variable")
        shape = [1] * x.a.ndim
        shape[ax] = -1
        bound = x.bound + 1
        return self.add(f"bias_add({x.name}, {b.name}, {fmt})",
                        K.bias_add(x.t, b.t, data_format=fmt), x.a + b.a.reshape(shape), bound,
                        x.err + self.rounding(bound))

    def op_gather(self):
        """Rows of a value picked by an integer placeholder (an embedding lookup)."""
        x = self.pick(lambda v: v.a.ndim >= 1 and K.int_shape(v.t)[0] is not None)
        shape = tuple(int(self.rng.choice([1, 2, 5, 7])) for _ in range(int(self.rng.integers(1, 3))))
        idx = self.rng.integers(0, x.a.shape[0], shape).astype("int32")
        t = K.placeholder(shape=shape, dtype="int32")
        i = self.index_input(t, idx)
        return self.same(x, f"gather({x.name}, {i.name})", K.gather(x.t, t), x.a[idx])

    # ---- losses and normalisation ---------------------------------------------------------
    def distribution(self, x: Val):
        """A value of x's shape (and static shape) or a new one made from x, softmax'd over the
        last axis: a target distribution."""
        try:
            y = self.pick(lambda v: v is not x and v.a.shape == x.a.shape
                          and K.int_shape(v.t) == K.int_shape(x.t))
        except Skip:
            y = x
        return K.softmax(0.5 * y.t), _softmax(0.5 * y.a), y

    def op_crossentropy(self):
        """A cross-entropy of x's logits (from_logits), of an activation's output (which kcomp,
        as tf.keras, computes from the activation's input) or of other probabilities (clipped
        to [eps, 1 - eps]: tf.keras's formulas)."""
        x = self.pick(lambda v: v.a.ndim >= 1)
        kind = str(self.rng.choice(["categorical", "binary", "sparse"]))
        mode = str(self.rng.choice(["logits", "activation", "probabilities"]))
        eps, big = 1e-7, 17.0  # -log(eps) < 17
        n = x.a.shape[-1]
        text = f"{kind}_crossentropy(of {mode} {x.name}"
        if kind == "binary":
            y = self.partner(x)
            if np.broadcast_shapes(y.a.shape, x.a.shape) != x.a.shape:
                raise Skip
            t, tn = K.sigmoid(y.t), 1 / (1 + np.exp(-y.a))
            if mode == "probabilities":
                o = 0.9 / (1 + np.exp(-x.a)) + 0.05
                p = np.clip(o, eps, 1 - eps)
                a = -(tn * np.log(p + eps) + (1 - tn) * np.log(1 - p + eps))
                r = K.binary_crossentropy(t, 0.9 * K.sigmoid(x.t) + 0.05)
            else:
                z = x.a
                a = np.maximum(z, 0) - z * tn + np.log1p(np.exp(-np.abs(z)))
                r = K.binary_crossentropy(t, x.t if mode == "logits" else K.sigmoid(x.t),
                                          from_logits=mode == "logits")
            return self.add(f"{text}, target sigmoid({y.name}))", r, a, big + x.bound,
                            x.err + big * y.err + self.rounding(big + x.bound, 8))
        # categorical and sparse: log-probabilities over the last axis
        if mode == "probabilities":
            o, on = 0.9 * K.softmax(x.t) + 0.1 / n, 0.9 * _softmax(x.a) + 0.1 / n
            ls = np.log(np.clip(on / on.sum(-1, keepdims=True), eps, 1 - eps))
            if kind == "sparse":  # (its logits are log(clip(p)), normalised again)
                ls = ls - np.log(np.exp(ls).sum(-1, keepdims=True))
        else:
            o = x.t if mode == "logits" else K.softmax(x.t)
            z = x.a - x.a.max(-1, keepdims=True)
            ls = z - np.log(np.exp(z).sum(-1, keepdims=True))
        logits = mode == "logits"
        err = n * (2 * x.err) + self.rounding(big + x.bound, 2 * n + 8)
        if kind == "categorical":
            t, tn, y = self.distribution(x)
            r = K.categorical_crossentropy(t, o, from_logits=logits)
            return self.add(f"{text}, target softmax({y.name}))", r,
                            -np.sum(tn * ls, axis=-1), big + 2 * x.bound, err + big * n * y.err)
        if None in K.int_shape(x.t):
            raise Skip
        labels = self.rng.integers(0, n, x.a.shape[:-1]).astype("int32")
        lt = K.placeholder(shape=labels.shape, dtype="int32")
        r = K.sparse_categorical_crossentropy(lt, o, from_logits=logits)
        i = self.index_input(lt, labels)
        a = -np.take_along_axis(ls, labels[..., None], axis=-1)[..., 0]
        # (tf.keras: one loss per row of the output's (rows, classes) view below rank 3)
        return self.add(f"{text}, labels {i.name})", r, a.reshape(-1) if x.a.ndim <= 2 else a,
                        big + 2 * x.bound, err)

    def index_input(self, t, value) -> Val:
        """An int32 placeholder fed `value`."""
        i = Val(f"i{len(self.g.placeholders)}", t, value, 0, 0)
        self.g.placeholders.append(i)
        self.g.feeds.append(value)
        self.g.lines.append(f"{i.name} = placeholder{value.shape}, int32")
        return i

    def op_batch_normalization(self):
        x = self.pick(lambda v: v.a.ndim >= 2 and K.int_shape(v.t)[-1] is not None)
        c = x.a.shape[-1]
        mean, beta = (self.weights((c,)) for _ in range(2))
        var = self.add(f"constant({c},) in [0.5, 1.5]",
                       *(lambda a: (K.constant(a, dtype=self.g.dtype), a))(
                           self.rng.uniform(0.5, 1.5, c).astype(self.g.dtype)), 1.5, 0.0)
        gamma = self.weights((c,), scale=1.5)
        a = (x.a - mean.a) / np.sqrt(var.a + 1e-3) * gamma.a + beta.a
        bound = (x.bound + 1) * 1.5 / math.sqrt(0.5) + 1
        return self.add(f"batch_normalization({x.name}, {mean.name}, {var.name}, {beta.name}, "
                        f"{gamma.name})",
                        K.batch_normalization(x.t, mean.t, var.t, beta.t, gamma.t),
                        a, bound, x.err * 1.5 / math.sqrt(0.5) + self.rounding(bound, 4))

    def op_one_hot(self):
        shape = tuple(int(self.rng.choice([1, 2, 5, 7])) for _ in range(int(self.rng.integers(1, 3))))
        n = int(self.rng.integers(1, 8))
        idx = self.rng.integers(0, n, shape).astype("int32")
        t = K.placeholder(shape=shape, dtype="int32")
        i = self.index_input(t, idx)
        return self.add(f"one_hot({i.name}, {n})", K.cast(K.one_hot(t, n), self.g.dtype),
                        np.eye(n)[idx], 1.0, 0.0)

    def op_pad_resize(self):
        x = self.pick(lambda v: v.a.ndim in (3, 4) and None not in K.int_shape(v.t)[1:])
        if x.a.ndim == 3:
            p = tuple(int(v) for v in self.rng.integers(0, 3, 2))
            return self.same(x, f"temporal_padding({x.name}, {p})", K.temporal_padding(x.t, p),
                             np.pad(x.a, [(0, 0), p, (0, 0)]))
        fmt = "channels_first" if self.rng.random() < 0.3 else "channels_last"
        axes = (2, 3) if fmt == "channels_first" else (1, 2)
        if self.rng.random() < 0.5:
            p = tuple(tuple(int(v) for v in self.rng.integers(0, 3, 2)) for _ in range(2))
            pads = [(0, 0)] * 4
            pads[axes[0]], pads[axes[1]] = p
            return self.same(x, f"spatial_2d_padding({x.name}, {p}, {fmt})",
                             K.spatial_2d_padding(x.t, p, fmt), np.pad(x.a, pads))
        fh, fw = (int(v) for v in self.rng.integers(1, 4, 2))
        a = np.repeat(np.repeat(x.a, fh, axis=axes[0]), fw, axis=axes[1])
        return self.same(x, f"resize_images({x.name}, {fh}, {fw}, {fmt})",
                         K.resize_images(x.t, fh, fw, fmt), a)

    # ---- recurrence --------------------------------------------------------------------------
    def op_rnn(self):
        """K.rnn over a (batch, time, features) value with a SimpleRNN, LSTM or GRU step written
        with backend ops (the LSTM and GRU as Keras's cells compute them, which kcomp runs as
        its fused recurrent kernels), forwards or backwards, with a mask where the value is
        exact. Weights are scaled by 1/sqrt(fan-in), which keeps a step from amplifying errors
        much."""
        x = self.pick(lambda v: v.a.ndim == 3 and None not in K.int_shape(v.t)[1:]
                      and v.a.shape[1] <= 40)
        _, T, F = x.a.shape
        U = int(self.rng.choice([1, 3, 8, 16, 33]))
        cell = str(self.rng.choice(["simple", "lstm", "gru"]))
        n = {"simple": 1, "lstm": 4, "gru": 3}[cell]
        W = self.weights((F, n * U), scale=1 / math.sqrt(F * x.bound))
        R = self.weights((U, n * U), scale=1 / math.sqrt(U))
        bias = self.weights((n * U,), scale=0.5)
        init = self.weights((F, U), scale=1 / math.sqrt(F * x.bound))
        backwards = bool(self.rng.random() < 0.3)
        masked = x.err == 0 and self.rng.random() < 0.4
        sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731

        def step(xt, states, k):  # k: K, or None for numpy
            dot = K.dot if k else np.dot
            th, sg = (K.tanh, K.sigmoid) if k else (np.tanh, sig)
            w, r, b = (W.t, R.t, bias.t) if k else (W.a, R.a, bias.a)
            h = states[0]
            if cell == "simple":
                h = th(dot(xt, w) + dot(h, r) + b)
                return h, [h]
            if cell == "lstm":
                z = dot(xt, w) + dot(h, r) + b
                i, f, o = sg(z[:, :U]), sg(z[:, U:2 * U]), sg(z[:, 3 * U:])
                c = f * states[1] + i * th(z[:, 2 * U:3 * U])
                h = o * th(c)
                return h, [h, c]
            xz, hz = dot(xt, w) + b, dot(h, r)  # GRU, reset gate after the product
            zg, rg = sg(xz[:, :U] + hz[:, :U]), sg(xz[:, U:2 * U] + hz[:, U:2 * U])
            h = zg * h + (1 - zg) * th(xz[:, 2 * U:] + rg * hz[:, 2 * U:])
            return h, [h]

        h0 = K.tanh(K.dot(x.t[:, 0, :], init.t))
        h0n = np.tanh(x.a[:, 0, :] @ init.a)
        s0, s0n = ([h0, 0.5 * h0], [h0n, 0.5 * h0n]) if cell == "lstm" else ([h0], [h0n])
        mask = K.greater(x.t[:, :, 0], 0.0) if masked else None
        last, outs, _ = K.rnn(lambda xt, st: step(xt, st, True), x.t, s0,
                              go_backwards=backwards, mask=mask)
        # numpy: Keras's semantics (a masked step keeps the states and repeats the last output)
        xs = x.a[:, ::-1] if backwards else x.a
        ms = (x.a[:, :, 0] > 0)[:, ::-1] if backwards else x.a[:, :, 0] > 0
        states, prev, seq = s0n, np.zeros_like(h0n), []
        for t in range(T):
            out, new = step(xs[:, t], states, None)
            if masked:
                m = ms[:, t:t + 1]
                out = np.where(m, out, prev)
                new = [np.where(m, a, b) for a, b in zip(new, states)]
            states, prev = new, out
            seq.append(out)
        seq = np.stack(seq, axis=1)
        err = T * (x.err + self.rounding(1.0, F + U + 16))
        text = (f"rnn({cell}, {x.name}, units={U}, go_backwards={backwards}, "
                f"masked={masked})")
        if self.rng.random() < 0.5:
            return self.add(f"{text}[last]", last, seq[:, -1], 1.0, err)
        return self.add(f"{text}[outputs]", outs, seq, 1.0, err)

    OPS = [("op_conv_transpose", 2), ("op_in_top_k", 1), ("op_crossentropy", 2), ("op_batch_normalization", 1), ("op_one_hot", 1),
           ("op_pad_resize", 1), ("op_rnn", 2), ("op_conv", 3), ("op_depthwise", 1), ("op_pool", 2), ("op_bias_add", 1),
           ("op_gather", 1),
           ("op_unary", 8), ("op_sqrt", 1), ("op_exact_unary", 2), ("op_affine", 2),
           ("op_binary", 8), ("op_reduce", 6), ("op_softmax", 2), ("op_l2_normalize", 1),
           ("op_cumulative", 2), ("op_dot", 3), ("op_batch_dot", 2), ("op_slice", 3),
           ("op_transpose", 2), ("op_reshape", 3), ("op_expand_squeeze", 2), ("op_join", 2),
           ("op_repeat", 2), ("op_flatten", 1)]

    def build(self) -> Graph:
        for _ in range(int(self.rng.integers(1, 4))):
            self.placeholder()
        names = [n for n, _ in self.OPS]
        w = np.array([w for _, w in self.OPS], float)
        steps, tries = int(self.rng.integers(4, 15)), 0
        first = len(self.g.vals)
        while len(self.g.vals) - first < steps and tries < 200:
            tries += 1
            op = getattr(self, str(self.rng.choice(names, p=w / w.sum())))
            g = self.g
            marks = len(g.vals), len(g.lines), len(g.placeholders)
            try:
                op()
            except Skip:  # drop what the op made before it gave up (weights, an index input)
                del g.vals[marks[0]:], g.lines[marks[1]:], g.placeholders[marks[2]:], \
                    g.feeds[marks[2]:]
        # outputs: every value nothing used (so nothing computed is dead), and a few used ones,
        # whose several consumers cross fusion boundaries
        derived = self.g.vals[first:] or self.g.vals
        outs = [v for v in derived if not v.used][-6:]
        for i in self.rng.permutation(len(derived))[:int(self.rng.integers(0, 3))]:
            if derived[int(i)] not in outs:
                outs.append(derived[int(i)])
        self.g.outputs = outs
        variables = [v for v in self.g.vals if v.variable]
        if variables and self.rng.random() < 0.4:
            self.add_update(variables[int(self.rng.integers(0, len(variables)))], derived)
        return self.g


    def add_update(self, var: Val, derived: List[Val]) -> None:
        """var <- a value of its shape, or var * 0.9 + 0.1 * the mean of a computed value (so
        that the inputs reach the new value)."""
        same = [v for v in derived if v is not var and v.a.shape == var.a.shape
                and K.int_shape(v.t) == K.int_shape(var.t)]
        if same:
            self.g.update = (var, same[int(self.rng.integers(0, len(same)))])
            return
        y = derived[int(self.rng.integers(0, len(derived)))]
        self.g.update = (var, self.add(f"0.9 * {var.name} + 0.1 * mean({y.name})",
                                       0.9 * var.t + 0.1 * K.mean(y.t), 0.9 * var.a
                                       + 0.1 * y.a.mean(), var.bound + y.bound,
                                       y.err + self.rounding(var.bound + y.bound,
                                                             y.a.size + 2)))


def _softmax(a):
    e = np.exp(a - a.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _logsumexp(a, axes, keep):
    m = np.max(a, axis=axes, keepdims=True)
    r = m + np.log(np.sum(np.exp(a - m), axis=axes, keepdims=True))
    return r if keep else np.squeeze(r, axis=axes)


def check(seed: int, dtype: Optional[str] = None, device: Optional[str] = None) -> Graph:
    """Builds graph `seed`, compiles and runs it with kcomp (on `device`, default kcomp's), and
    raises AssertionError (with the program) where an output differs from numpy's by more than
    the error it may carry."""
    g = Fuzzer(seed, dtype).build()
    try:
        run(g, device)
    except AssertionError:
        raise
    except Exception as e:  # kcomp refused a valid graph or failed running it
        raise AssertionError(f"graph {seed} ({g.dtype}): {type(e).__name__}: {e}\n"
                             f"{g.program()}") from e
    return g


def run(g: Graph, device) -> None:
    updates = [(g.update[0].t, g.update[1].t)] if g.update else None
    f = K.function([p.t for p in g.placeholders], [v.t for v in g.outputs], updates=updates,
                   name=f"fuzz{g.seed}", device=device)
    got = f(g.feeds)
    if g.update:  # the variable's new value, computed from the values before the call
        got.append(K.get_value(g.update[0].t))
    for v, r in zip(g.outputs + ([g.update[1]] if g.update else []), got):
        # err: the error the value may carry; a few more roundings for its final store
        compare(g, f"output {v.name}", r, v.a, 2 * v.err + 4 * g.unit * v.bound, "numpy")
    restore_variables(g)
    check_again(g, f, np.random.default_rng(g.seed))
    check_empty_batch(g, f)
    if g.dtype == "float64":
        check_gradients(g, np.random.default_rng(g.seed), device)


def restore_variables(g: Graph) -> None:
    """Every variable back to the value the numpy values and bounds were computed with."""
    for v in g.vals:
        if v.variable:
            K.set_value(v.t, v.a.astype(g.dtype))


def _unknown_batch(g: Graph) -> List[int]:
    """The placeholders whose batch dimension is unknown."""
    return [i for i, p in enumerate(g.placeholders) if K.int_shape(p.t)[:1] == (None,)]


def _interpret(g: Graph, feeds) -> list:
    """The graph's outputs for these feeds by kcomp's reference interpreter."""
    return evaluate(IRGraph(tuple(p.t for p in g.placeholders), tuple(v.t for v in g.outputs),
                            ()), feeds)[0]


def check_again(g: Graph, f, rng) -> None:
    """The same compiled function called again with new values for every variable (so weights
    packed for the old values must not be used) and, where inputs have an unknown batch
    dimension, another batch size; against kcomp's reference interpreter."""
    variables = [v for v in g.vals if v.variable]
    unknown = _unknown_batch(g)
    if not variables and not unknown:
        return
    feeds, b1, b2 = list(g.feeds), 1, 1
    if unknown:  # (b2 at most twice the smallest batch: errors grow with the sums' lengths)
        b1 = min(g.feeds[i].shape[0] for i in unknown)
        b2 = int(rng.integers(1, b1)) if b1 > 1 else 2
        for i in unknown:
            feeds[i] = rng.uniform(-2, 2, (b2,) + feeds[i].shape[1:]).astype(g.dtype)
    for v in variables:  # (within the bound the first values had)
        K.set_value(v.t, rng.uniform(-v.bound, v.bound, v.a.shape).astype(g.dtype))
    # (the interpreter first: the call updates variables)
    want = _interpret(g, feeds)
    got = f(feeds)
    restore_variables(g)
    for v, r, w in zip(g.outputs, got, want):
        # (sums over the batch grow with it: scale the error allowed)
        compare(g, f"new variable values, batch {b2}, output {v.name}", r, w,
                (2 * v.err + 4 * g.unit * v.bound) * (1 + b2 / b1) ** 2, "the interpreter")


def check_empty_batch(g: Graph, f) -> None:
    """The same function fed an empty batch where inputs have an unknown batch dimension,
    against the interpreter: the same shapes and values, NaN where it has NaN (a mean of
    nothing); where numpy refuses (a max of nothing), an exception from kcomp too. (Empty
    batches broke a gradient's shape arithmetic once: tests/test_gradients.py.)"""
    unknown = _unknown_batch(g)
    if not unknown:
        return
    feeds = list(g.feeds)
    for i in unknown:
        feeds[i] = np.zeros((0,) + feeds[i].shape[1:], g.dtype)
    try:
        want = _interpret(g, feeds)
    except Exception as e:  # noqa: BLE001 -- numpy refused: so must kcomp, with an exception
        try:
            f(feeds)
        except Exception:  # noqa: BLE001
            return
        finally:
            restore_variables(g)
        raise AssertionError(f"graph {g.seed} ({g.dtype}), batch 0: the interpreter raised "
                             f"{type(e).__name__}: {e}; kcomp returned values\n{g.program()}")
    got = f(feeds)
    restore_variables(g)
    for v, r, w in zip(g.outputs, got, want):
        r, w = np.asarray(r), np.asarray(w)
        where = f"batch 0, output {v.name}"
        nan = np.isnan(w.astype(np.float64))
        assert r.shape == w.shape and np.array_equal(np.isnan(r.astype(np.float64)), nan), \
            f"graph {g.seed} ({g.dtype}), {where}: kcomp {r!r}, the interpreter {w!r}\n" \
            f"{g.program()}"
        same = nan | (r == w)  # (NaN, and infinities: a log of an empty sum)
        compare(g, where, np.where(same, 0, r), np.where(same, 0, w),
                2 * v.err + 4 * g.unit * v.bound, "the interpreter")


def compare(g: Graph, where: str, got, want, tol, by: str) -> None:
    """Asserts that kcomp's value `got` is `want` (computed by `by`) within tol, naming the
    graph, `where` and the worst element if not."""
    got, want = np.asarray(got), np.asarray(want)
    where = f"graph {g.seed} ({g.dtype}), {where}"
    assert got.shape == want.shape, f"{where}: shape {got.shape}, {by} {want.shape}\n" \
                                    f"{g.program()}"
    assert got.dtype == np.dtype(g.dtype), f"{where}: dtype {got.dtype}\n{g.program()}"
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    if not np.all(diff <= tol):  # (NaN fails too)
        i = np.unravel_index(np.nanargmax(np.where(np.isnan(diff), np.inf, diff)), diff.shape)
        raise AssertionError(f"{where}: at {i} kcomp {got[i]!r}, {by} {want[i]!r} "
                             f"(difference {diff[i]:.3g}, allowed {tol:.3g})\n{g.program()}")


def check_gradients(g: Graph, rng, device: Optional[str] = None) -> None:
    """For a float64 graph: kcomp's compiled gradient of loss = sum_i sum(out_i * r_i), along a
    random direction d of the float inputs, against the central difference of the compiled loss
    along d. An element within the step of a kink (clip's ends, relu's 0) breaks the difference,
    so a mismatch is checked again with a step ten times smaller."""
    xs = [p for p in g.placeholders if p.a.dtype.kind == "f"]
    loss, size = None, 0.0
    for v in g.outputs:
        r = rng.uniform(0.5, 1.5, v.a.shape)
        term = K.sum(v.t * K.constant(r, dtype=g.dtype))
        loss = term if loss is None else loss + term
        size += float(np.sum(np.abs(v.a) * r))
    grads = K.gradients(loss, [p.t for p in xs])
    live = [(p, gr) for p, gr in zip(xs, grads) if gr is not None]
    if not live:
        return
    phs = [p.t for p in g.placeholders]
    fg = K.function(phs, [gr for _, gr in live], name=f"fuzz{g.seed}_grad", device=device)
    fl = K.function(phs, [loss], name=f"fuzz{g.seed}_loss", device=device)
    d = {id(p): rng.standard_normal(p.a.shape) for p, _ in live}
    gs = fg(g.feeds)
    along = sum(float(np.sum(gr * d[id(p)])) for (p, _), gr in zip(live, gs))
    scale = sum(float(np.sum(np.abs(gr * d[id(p)]))) for (p, _), gr in zip(live, gs))

    def difference(h):
        def moved(sign):
            return [f + sign * h * d[id(p)] if id(p) in d else f
                    for p, f in zip(g.placeholders, g.feeds)]
        return (float(fl(moved(1))[0]) - float(fl(moved(-1))[0])) / (2 * h)
    for h in (1e-6, 1e-7):
        fd = difference(h)
        # truncation and the loss's own rounding, divided by the step
        if abs(along - fd) <= 1e-5 * (scale + 1) + 1e-13 * size / h:  # (NaN fails too)
            return
    raise AssertionError(f"graph {g.seed} (float64): gradient along a random direction "
                         f"{along!r}, central difference {fd!r}\n{g.program()}")


def _seeds(spec: str) -> List[int]:
    out = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0-99", help="seeds: 0-999, or 3,17,40-50")
    ap.add_argument("--dtype", choices=("float16", "float32", "float64"),
                    help="every graph in this dtype (float64 graphs' gradients are checked too)")
    ap.add_argument("--device", choices=("cpu", "cuda"), help="where the graphs run")
    ap.add_argument("--seconds", type=float,
                    help="start no graph after this long (the summary counts the graphs run)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every program")
    args = ap.parse_args(argv)
    failed, ran, start = [], 0, time.monotonic()
    for seed in _seeds(args.seeds):
        if args.seconds is not None and time.monotonic() - start > args.seconds:
            break
        ran += 1
        try:
            g = check(seed, args.dtype, args.device)
            if args.verbose:
                print(f"# graph {seed} ({g.dtype}): ok\n{g.program()}\n")
        except Exception as e:  # noqa: BLE001 -- report and go on
            failed.append(seed)
            detail = str(e) if isinstance(e, AssertionError) else traceback.format_exc()
            print(f"# graph {seed}: FAILED\n{detail}\n", flush=True)
    print(f"{len(failed)} of {ran} graphs failed"
          + (f": seeds {','.join(map(str, failed))}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
