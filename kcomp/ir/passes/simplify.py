"""Algebraic simplification: rewrites that never change a result (bit for bit: NaNs, infinities
and signed zeros included)."""
from __future__ import annotations

import numpy as np

from ..graph import Graph
from ..registry import apply
from .rewrite import rewrite


def _const_all(t, value, negative_zero=False) -> bool:
    if t.node.op.name != "constant":
        return False
    v = t.node.attrs["value"]
    if v.size == 0 or not np.all(v == value):
        return False
    # x + 0.0 turns -0.0 into +0.0; only x + (-0.0) is x for every float
    return not negative_zero or v.dtype.kind != "f" or bool(np.all(np.signbit(v)))


def _source_constant(t):
    """The constant that t broadcasts or reshapes (ones_like(x), zeros_like(x)), or None."""
    while t.node.op.name in ("broadcast_to", "reshape"):
        t = t.node.inputs[0]
    return t if t.node.op.name == "constant" else None


def _ones(t) -> bool:
    """t is 1 everywhere: a constant, or a broadcast or reshape of one (ones_like(x))."""
    c = _source_constant(t)
    return c is not None and _const_all(c, 1)


def _without_unit_factors(node, inputs):
    """A loop whose body multiplies by a captured value that is 1 everywhere (Keras's dropout
    masks once the learning phase is known to be 0: ones_like(h)) without those products, when
    they change neither shape nor dtype. (The fused LSTM then recognises the step.)"""
    a, body = node.attrs, node.attrs["body"]
    first = a["n_seq"] + a["n_state"]
    ones = {p.node.uid for p, c in zip(body.inputs[first:], inputs[first:]) if _ones(c)}
    if not ones:
        return None

    def visit(n, ins):
        if n.op.name == "mul":
            x, y = ins
            out = n.outputs[0].type
            if y.node.uid in ones and x.type == out:
                return [x]
            if x.node.uid in ones and y.type == out:
                return [y]
        return None

    new = rewrite(Graph(body.inputs, body.outputs, ()), visit)
    if all(t is u for t, u in zip(new.outputs, body.outputs)):
        return None
    used = {t.node.uid for n in new.nodes() for t in n.inputs} | {t.node.uid for t in new.outputs}
    kept = [(p, c) for p, c in zip(new.inputs[first:], inputs[first:])
            if p.node.uid in used or p.node.uid not in ones]
    new = Graph(new.inputs[:first] + tuple(p for p, _ in kept), new.outputs, ())
    return apply("loop", list(inputs[:first]) + [c for _, c in kept], dict(a, body=new))


def simplify(graph: Graph) -> Graph:
    def visit(node, inputs):
        name = node.op.name
        out = node.outputs[0].type if node.outputs else None
        if name == "identity":
            return inputs
        if name == "cast" and inputs[0].type.dtype == node.attrs["dtype"]:
            return inputs
        if name in ("reshape", "broadcast_to") and inputs[0].type.dims == out.dims:
            return inputs
        if name == "reshape" and inputs[0].node.op.name == "reshape":
            return apply("reshape", [inputs[0].node.inputs[0]], node.attrs)
        if name == "transpose" and inputs[0].node.op.name == "transpose":
            inner = inputs[0].node.attrs["perm"]
            perm = tuple(inner[p] for p in node.attrs["perm"])
            src = inputs[0].node.inputs[0]
            return [src] if perm == tuple(range(len(perm))) else \
                apply("transpose", [src], {"perm": perm})
        if name == "neg" and inputs[0].node.op.name == "neg":
            return [inputs[0].node.inputs[0]]
        # a select on a constant condition (Keras's learning phase, once known) is its branch:
        # the other branch and what only it reads (dropout's random numbers) are not computed
        if name == "select" and inputs[0].node.op.name == "constant":
            cond = inputs[0].node.attrs["value"]
            if cond.size and (cond.all() or not cond.any()):
                chosen = inputs[1] if cond.all() else inputs[2]
                return [chosen] if chosen.type == out else \
                    apply("broadcast_to", [chosen], {"dims": out.dims})
        # x + (-0), x - 0, x * 1, x / 1, where the constant changes neither shape nor dtype
        # (for x * 1 also a broadcast 1: ones_like(y))
        if name in ("add", "sub", "mul", "truediv"):
            a, b = inputs
            unit = 0 if name in ("add", "sub") else 1
            is_unit = _ones if name == "mul" else \
                lambda t: _const_all(t, unit, negative_zero=name == "add")
            if is_unit(b) and a.type == out:
                return [a]
            if name in ("add", "mul") and is_unit(a) and b.type == out:
                return [b]
        if name == "loop":
            return _without_unit_factors(node, inputs)
        # a copy of one value repeated (reshaped, tiled, transposed) is that value broadcast
        # (when the op checks nothing at run time that the broadcast would not)
        if name in ("reshape", "tile", "transpose", "broadcast_to") and not node.checks and \
                inputs[0].node.op.name == "broadcast_to":
            c = _source_constant(inputs[0])
            if c is not None and c.ndim == 0:
                return apply("broadcast_to", [c], {"dims": out.dims})
        # a sum of +0s is +0 (Keras's initial RNN state: zeros_like(x) summed over its axes)
        if name == "sum":
            zero = _source_constant(inputs[0])
            if zero is not None and zero.type.dtype == out.dtype and zero.ndim == 0 and \
                    _const_all(zero, 0) and not np.signbit(zero.node.attrs["value"]).any():
                return apply("broadcast_to", [zero], {"dims": out.dims})
        return None

    return rewrite(graph, visit)
