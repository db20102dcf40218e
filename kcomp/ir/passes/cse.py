"""Common subexpression elimination: nodes with the same op, inputs and attributes merge.
Placeholders and variables are unique by identity; equal constants merge."""
from __future__ import annotations

from ..canonical import attrs_key
from ..graph import Graph
from .rewrite import clone, rewrite


def cse(graph: Graph) -> Graph:
    seen = {}

    def visit(node, inputs):
        if node.op.name in ("placeholder", "variable"):
            return None
        key = (node.op.name, tuple((t.node.uid, t.index) for t in inputs), attrs_key(node))
        hit = seen.get(key)
        if hit is not None:
            return hit
        outs = node.outputs if all(a is b for a, b in zip(inputs, node.inputs)) else \
            clone(node, inputs).outputs
        seen[key] = outs
        return outs

    return rewrite(graph, visit)
