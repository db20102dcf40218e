"""The one traversal every pass uses: rebuild a graph from its roots, node by node."""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..graph import Graph, Node, Tensor, toposort

# fn(node, new_inputs) -> replacement outputs, or None to keep the node (rebuilt if its inputs
# changed)
Visitor = Callable[[Node, List[Tensor]], Optional[Sequence[Tensor]]]


def clone(node: Node, inputs: Sequence[Tensor]) -> Node:
    return Node(node.op, inputs, node.attrs, [t.type for t in node.outputs], node.checks,
                name=node.name)


def rewrite(graph: Graph, fn: Visitor) -> Graph:
    mapping: Dict[Tuple[int, int], Tensor] = {}
    for node in toposort(graph.roots() + list(graph.inputs)):
        new_inputs = [mapping[(t.node.uid, t.index)] for t in node.inputs]
        outs = fn(node, new_inputs)
        if outs is None:
            if all(a is b for a, b in zip(new_inputs, node.inputs)):
                outs = node.outputs
            else:
                outs = clone(node, new_inputs).outputs
        for i, t in enumerate(outs):
            mapping[(node.uid, i)] = t
    get = lambda t: mapping[(t.node.uid, t.index)]  # noqa: E731
    return Graph(tuple(get(t) for t in graph.inputs), tuple(get(t) for t in graph.outputs),
                 tuple((var, get(val)) for var, val in graph.updates))
