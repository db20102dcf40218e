"""Constant folding: an op whose inputs are all constants becomes a constant, when its numpy
reference is bit-identical to the native code (`OpDef.exact`) and the result is small. Other ops
(exp, dot, ...) run natively even on constants, so a folded graph computes exactly what the
unfolded one would."""
from __future__ import annotations

from ..graph import Graph
from ..interpret import Env, run_node
from ..ops.leaf import constant
from .rewrite import clone, rewrite

FOLD_LIMIT = 1 << 16  # elements; bigger results stay computed at run time


def fold_constants(graph: Graph) -> Graph:
    env = Env()

    def visit(node, inputs):
        op = node.op
        if op.kind == "leaf" or not op.exact or not inputs:
            return None
        if not all(t.node.op.name == "constant" for t in inputs):
            return None
        if any(_size(t.type.dims) > FOLD_LIMIT for t in node.outputs):
            return None
        values = [t.node.attrs["value"] for t in inputs]
        n = clone(node, inputs)
        results = run_node(n, values, env)
        return [constant(r, t.type.dtype) for r, t in zip(results, node.outputs)]

    return rewrite(graph, visit)


def _size(dims) -> int:
    n = 1
    for d in dims:
        if not isinstance(d, int):
            return FOLD_LIMIT + 1
        n *= d
    return n
