"""Hoisting sequence-only work out of loop bodies.

A value of a loop body that depends only on the step's sequence elements and on loop-invariant
values (an RNN's input projection x_t . W + b, an input dropout) is computed for every step at
once, before the loop, as one large operation over the stacked sequence (one big GEMM instead of
T small ones); the body then reads it as a new sequence. Elementwise ops and dot with a matrix
are hoisted; everything that touches the loop's states stays in the body.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

from ..graph import Graph, Node, Tensor
from ..ops.control import placeholder_of
from ..registry import apply
from .rewrite import rewrite

Key = Tuple[int, int]


def key(t: Tensor) -> Key:
    return (t.node.uid, t.index)


def hoist_loops(graph: Graph) -> Graph:
    return rewrite(graph, lambda node, inputs: _hoist(node, inputs)
                   if node.op.name == "loop" else None)


def _hoist(node: Node, inputs: List[Tensor]):
    a = node.attrs
    body, n_seq, n_state = a["body"], a["n_seq"], a["n_state"]
    seq_params, cap_params = body.inputs[:n_seq], body.inputs[n_seq + n_state:]
    seqs, caps = inputs[:n_seq], inputs[n_seq + n_state:]

    # what each body value is outside: ("seq", stacked (T, ...) tensor) or ("inv", tensor)
    outer: Dict[Key, Tuple[str, Tensor]] = {}
    outer.update({key(p): ("seq", s) for p, s in zip(seq_params, seqs)})
    outer.update({key(p): ("inv", c) for p, c in zip(cap_params, caps)})
    nodes = body.nodes()
    for n in nodes:
        if n.op.name == "constant":
            outer[key(n.outputs[0])] = ("inv", n.outputs[0])
            continue
        ins = [outer.get(key(t)) for t in n.inputs]
        if n.op.kind == "leaf" or None in ins or all(k == "inv" for k, _ in ins):
            continue
        hoisted = _outer_op(n, ins)
        if hoisted is not None:
            outer[key(n.outputs[0])] = ("seq", hoisted)

    # the sequence-only values the rest of the body needs become its new sequences
    needed: List[Tensor] = []
    for n in nodes:
        if key(n.outputs[0]) in outer and outer[key(n.outputs[0])][0] == "seq" and \
                n.op.kind != "leaf":
            continue  # hoisted itself
        for t in n.inputs:
            if outer.get(key(t), ("",))[0] == "seq" and t not in needed:
                needed.append(t)
    for t in body.outputs:
        if outer.get(key(t), ("",))[0] == "seq" and t not in needed:
            needed.append(t)
    if all(t.node.op.name == "placeholder" for t in needed):
        return None  # nothing to hoist

    new_params = [placeholder_of(t.type, f"hoisted{i}") for i, t in enumerate(needed)]
    swap = {key(t): p for t, p in zip(needed, new_params)}
    new_body = rewrite(Graph(body.inputs, body.outputs, ()),
                       lambda n, ins: [swap[key(n.outputs[0])]] if key(n.outputs[0]) in swap
                       and len(n.outputs) == 1 else None)
    state_params = new_body.inputs[n_seq:n_seq + n_state]
    # captured values that only the hoisted work used are no longer inputs of the loop
    used = {t.node.uid for n in new_body.nodes() for t in n.inputs} | \
        {t.node.uid for t in new_body.outputs}
    kept = [(p, c) for p, c in zip(new_body.inputs[n_seq + n_state:], caps) if p.node.uid in used]
    new_body = Graph(tuple(new_params) + state_params + tuple(p for p, _ in kept),
                     new_body.outputs, ())
    new_seqs = [outer[key(t)][1] for t in needed]
    attrs = dict(a, body=new_body, n_seq=len(new_seqs))
    return apply("loop", new_seqs + inputs[n_seq:n_seq + n_state] + [c for _, c in kept], attrs)


def _outer_op(n: Node, ins) -> Tensor | None:
    """n computed for all steps at once, or None when it cannot be."""
    rank = n.outputs[0].ndim
    if n.op.kind == "elementwise":
        # invariant operands must broadcast against one step exactly as against all steps
        if any(k == "inv" and t.ndim > rank for k, t in ins):
            return None
        return apply(n.op.name, [t for _, t in ins], n.attrs)[0]
    if n.op.name == "dot":
        (kx, x), (kw, w) = ins
        if kx == "seq" and kw == "inv" and w.ndim == 2 and x.ndim >= 2:
            return apply("dot", [x, w], n.attrs)[0]
    return None
