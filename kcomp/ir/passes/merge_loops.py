"""Merging a loop into its augmented copy.

Differentiating a loop (kcomp/ir/ops/control.py) adds a copy of it whose body outputs more
values (the ones the backward pass reads). When a graph holds both, over the same inputs, the
original's outputs are read from the copy instead, so the steps run once. Run after CSE, which
makes equal inputs the same tensors.
"""
from __future__ import annotations

from typing import Dict, List

from ..canonical import graph_record
from ..graph import Graph, Node
from .rewrite import clone, rewrite


def _same_prefix(small: Graph, big: Graph) -> bool:
    """Whether big's body computes small's outputs the same way, then more."""
    n = len(small.outputs)
    if len(big.outputs) < n or len(big.inputs) != len(small.inputs):
        return False
    return graph_record(small)[0] == graph_record(Graph(big.inputs, big.outputs[:n], ()))[0]


def merge_loops(graph: Graph) -> Graph:
    loops = [n for n in graph.nodes() if n.op.name == "loop"]
    groups: Dict[tuple, List[Node]] = {}
    for n in loops:
        a = n.attrs
        k = (tuple((t.node.uid, t.index) for t in n.inputs), a["n_seq"], a["n_state"],
             a["reverse"], bool(a.get("stack_at_index")))
        groups.setdefault(k, []).append(n)
    into: Dict[int, Node] = {}  # loop uid -> the loop that computes its outputs too
    for group in groups.values():
        group.sort(key=lambda n: -len(n.outputs))
        for i, small in enumerate(group):
            for big in group[:i]:
                if big.uid not in into and \
                        _same_prefix(small.attrs["body"], big.attrs["body"]):
                    into[small.uid] = big
                    break
    if not into:
        return graph
    targets = {b.uid for b in into.values()}
    rebuilt: Dict[int, tuple] = {}

    def visit(node, inputs):
        if node.uid not in into and node.uid not in targets:
            return None
        target = into.get(node.uid, node)
        if target.uid not in rebuilt:  # its inputs are node's: the same tensors
            rebuilt[target.uid] = clone(target, inputs).outputs
        return rebuilt[target.uid][:len(node.outputs)]

    return rewrite(graph, visit)
