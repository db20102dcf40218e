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
        if name in ("add", "sub", "mul", "truediv"):
            a, b = inputs
            unit = 0 if name in ("add", "sub") else 1
            if _const_all(b, unit, negative_zero=name == "add") and a.type == out:
                return [a]
            if name in ("add", "mul") and _const_all(a, unit, name == "add") and b.type == out:
                return [b]
        return None

    return rewrite(graph, visit)
