"""Loops over traced sub-graphs: the one op behind rnn, map_fn, foldl and foldr.

A Python step function is traced once (`trace`) into a body graph whose inputs are placeholders
for the step's sequence elements, the carried states and the captured outer values, and whose
outputs are the new states followed by the step's outputs. The `loop` node runs the body once
per element of its sequences (axis 0 of each, all of one length T), in order or reversed, and
produces the final states and the step outputs stacked along a new axis 0 (in iteration order).

    inputs:  sequences (T, ...)..., initial states..., captured values...
    outputs: final states..., stacked step outputs (T, ...)...
    attrs:   body (a Graph), n_seq, n_state, reverse

Everything a step computes from outer values alone (a weight's transpose, a dropout mask) is
hoisted out of the body by the tracer and computed once, before the loop.
"""
from __future__ import annotations

from typing import Callable, List, Sequence, Tuple

import numpy as np

from .. import shapes as S
from ..graph import Graph, Node, Tensor, TensorType, toposort
from ..registry import apply, apply1, register, shape_error


def placeholder_of(t: TensorType, name: str) -> Tensor:
    """A body placeholder with exactly the given (possibly symbolic) type."""
    return apply1("placeholder", [], {"type": t, "sparse": False, "default": None},
                  node_name=name)


def trace(fn: Callable, arg_types: Sequence[TensorType], n_results: int | None = None
          ) -> Tuple[Graph, List[Tensor]]:
    """Trace fn(*placeholders) once. Returns the body graph (inputs: the placeholders, then one
    placeholder per captured outer value) and the captured outer tensors."""
    from ..build import as_tensor
    params = [placeholder_of(t, f"step_arg{i}") for i, t in enumerate(arg_types)]
    results = [as_tensor(r) for r in fn(*params)]
    if n_results is not None and len(results) != n_results:
        raise ValueError(f"the step function returned {len(results)} values, expected {n_results}")
    param_uids = {p.node.uid for p in params}
    inner = set(param_uids)  # nodes that depend on a parameter: the body proper
    order = toposort(results)
    for n in order:
        if any(t.node.uid in inner for t in n.inputs):
            inner.add(n.uid)
    captured: List[Tensor] = []
    capture_of = {}   # outer value -> its placeholder in the body
    mapping = {}      # inner value -> its copy in the body

    def resolve(t: Tensor) -> Tensor:
        k = (t.node.uid, t.index)
        if t.node.uid in param_uids or k in mapping:
            return mapping.get(k, t)
        if t.node.op.name == "constant":
            return t
        if k not in capture_of:  # an outer value: computed once, before the loop
            capture_of[k] = placeholder_of(t.type, f"captured{len(captured)}")
            captured.append(t)
        return capture_of[k]

    for n in order:
        if n.uid in inner and n.uid not in param_uids:
            clone = Node(n.op, [resolve(t) for t in n.inputs], n.attrs,
                         [o.type for o in n.outputs], n.checks, name=n.name)
            for i, o in enumerate(clone.outputs):
                mapping[(n.uid, i)] = o
    outs = tuple(resolve(r) for r in results)
    body = Graph(tuple(params) + tuple(capture_of[(t.node.uid, t.index)] for t in captured),
                 outs, ())
    return body, captured


def loop(sequences: Sequence[Tensor], initial: Sequence[Tensor], body: Graph,
         captured: Sequence[Tensor], reverse: bool = False) -> List[Tensor]:
    return apply("loop", list(sequences) + list(initial) + list(captured),
                 {"body": body, "n_seq": len(sequences), "n_state": len(initial),
                  "reverse": bool(reverse)})


def _infer(types, attrs):
    body, n_seq, n_state = attrs["body"], attrs["n_seq"], attrs["n_state"]
    seqs, states = types[:n_seq], types[n_seq:n_seq + n_state]
    if not seqs:
        raise shape_error("loop", "needs at least one sequence")
    steps: S.Dim = seqs[0].dims[0] if seqs[0].ndim else 0
    for t in seqs:
        if t.ndim == 0:
            raise shape_error("loop", "sequences need a leading (time) axis", *seqs)
        steps = S.same(steps, t.dims[0], "loop: sequences differ in length")
    params = [t.type for t in body.inputs]
    expected = [TensorType(t.dtype, t.dims[1:]) for t in seqs] + list(states) + \
        list(types[n_seq + n_state:])
    for p, e in zip(params, expected):
        if p.dtype != e.dtype or len(p.dims) != len(e.dims):
            raise shape_error("loop", f"a step argument is {p}, the loop passes {e}")
    new_states = [t.type for t in body.outputs[:n_state]]
    for old, new in zip(states, new_states):
        if old.dtype != new.dtype or len(old.dims) != len(new.dims) or any(
                isinstance(a, int) and isinstance(b, int) and a != b
                for a, b in zip(old.dims, new.dims)):
            raise shape_error("loop", f"the step turns a state {old} into {new}; states must keep "
                              f"their shape and dtype")
    stacked = [TensorType(t.type.dtype, (steps,) + t.type.dims) for t in body.outputs[n_state:]]
    return list(states) + stacked


def _reference(values, attrs, out_types):
    from ..interpret import evaluate
    body, n_seq, n_state = attrs["body"], attrs["n_seq"], attrs["n_state"]
    seqs = values[:n_seq]
    states = list(values[n_seq:n_seq + n_state])
    captured = list(values[n_seq + n_state:])
    steps = len(seqs[0])
    order = range(steps - 1, -1, -1) if attrs["reverse"] else range(steps)
    outputs = []
    for t in order:
        res, _ = evaluate(body, [s[t] for s in seqs] + states + captured)
        states = [r.astype(s.dtype).reshape(s.shape) for r, s in zip(res[:n_state], states)]
        outputs.append(res[n_state:])
    stacked = [np.stack([o[j] for o in outputs]) if outputs else np.zeros(t.dims, t.dtype.np)
               for j, t in enumerate(out_types[n_state:])]
    return states + stacked


register("loop", "other", _infer, _reference,
         doc="a traced body run once per element of its sequences; see module docstring")
