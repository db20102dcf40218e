"""Loops over traced sub-graphs: the one op behind rnn, map_fn, foldl and foldr.

A Python step function is traced once (`trace`) into a body graph whose inputs are placeholders
for the step's sequence elements, the carried states and the captured outer values, and whose
outputs are the new states followed by the step's outputs. The `loop` node runs the body once
per element of its sequences (axis 0 of each, all of one length T), in order or reversed, and
produces the final states and the step outputs stacked along a new axis 0 (in iteration order).

    inputs:  sequences (T, ...)..., initial states..., captured values...
    outputs: final states..., stacked step outputs (T, ...)...
    attrs:   body (a Graph), n_seq, n_state, reverse, stack_at_index (optional: stack each
             step's outputs at its sequence index instead of its iteration number)

Everything a step computes from outer values alone (a weight's transpose, a dropout mask) is
hoisted out of the body by the tracer and computed once, before the loop.
"""
from __future__ import annotations

from typing import Callable, List, Sequence, Tuple

import numpy as np

from .. import shapes as S
from ..autodiff import defgrad
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
    if attrs["reverse"] and attrs.get("stack_at_index"):
        outputs.reverse()
    stacked = [np.stack([o[j] for o in outputs]) if outputs else np.zeros(t.dims, t.dtype.np)
               for j, t in enumerate(out_types[n_state:])]
    return states + stacked


register("loop", "other", _infer, _reference,
         doc="a traced body run once per element of its sequences; see module docstring")


# ---- gradients --------------------------------------------------------------------------------
# The backward pass of a loop is another loop, over the same steps in the opposite order. Its
# body is the gradient of the forward body; the forward values that gradient reads are saved
# by an augmented copy of the forward loop whose body also outputs them, stacked (the
# merge_loops pass makes the original loop and its copy one loop), so nothing is recomputed.
# The backward loop walks forward iteration numbers backwards (reverse, stacking at the index),
# so the saved stacks, the step outputs' cotangents and the sequences' gradients are all in
# forward iteration order.

@defgrad("loop", wants=True)
def _loop_grad(node: Node, grads, wanted):
    from ..autodiff import gradients, zeros
    from ..build import binary
    a = node.attrs
    body, n_seq, n_state = a["body"], a["n_seq"], a["n_state"]
    n_out = len(body.outputs) - n_state
    ps, pst, pc = _split(body.inputs, n_seq, n_state)
    seqs, inits, caps = _split(node.inputs, n_seq, n_state)
    w_seq, w_state, w_cap = _split(wanted, n_seq, n_state)
    g_final, g_stacked = grads[:n_state], grads[n_state:]
    in_order = (lambda t: apply1("reverse", [t], {"axes": (0,)})) if a["reverse"] else \
        (lambda t: t)  # time order <-> forward iteration order

    # the body's gradient, seeded by placeholders of the backward body
    g_state = [placeholder_of(p.type, f"grad_state{i}") if _float(p) else None
               for i, p in enumerate(pst)]
    g_out = [placeholder_of(o.type, f"grad_output{j}") if g is not None else None
             for j, (o, g) in enumerate(zip(body.outputs[n_state:], g_stacked))]
    ys = [(o, g) for o, g in zip(body.outputs, g_state + g_out) if g is not None and _float(o)]
    xs = [p for p in pst if _float(p)] + [p for p, w in zip(ps, w_seq) if w] + \
        [p for p, w in zip(pc, w_cap) if w]
    found = gradients([o for o, _ in ys], xs, [g for _, g in ys]) if ys else [None] * len(xs)
    d = {_k(x): g for x, g in zip(xs, found)}

    # the backward body's state gradients, captured-gradient sums and sequence gradients
    b_state, b_init, b_new = [], [], []
    for p, init, g0, gp in zip(pst, inits, g_final, g_state):
        if gp is not None:
            b_state.append(gp)
            b_init.append(g0 if g0 is not None else zeros(init))
            g = d.get(_k(p))
            b_new.append(zeros(p) if g is None else g)
    # a captured value's gradient sums a term per step: a matrix product over the batch (a
    # weight's x_t^T . dz_t) or a sum over it (a bias's) is summed after the loop, as one
    # product or reduction over all steps at once; other terms accumulate in a state
    forward = {n.uid for n in body.nodes()} | {p.node.uid for p in body.inputs}
    invariant = {p.node.uid for p in pc}
    cap_grads = [i for i, (p, w) in enumerate(zip(pc, w_cap)) if w and d.get(_k(p)) is not None]
    later, accumulated = {}, set()
    for i in cap_grads:
        each, later[i] = _split_terms(d[_k(pc[i])], invariant)
        if each:
            accumulated.add(i)
            acc = placeholder_of(pc[i].type, f"grad_captured{i}")
            b_state.append(acc)
            b_init.append(zeros(caps[i]))
            b_new.append(binary("add", acc, _sum_all(each)))
    stacked = []  # values of the later terms: forward values are stacked already, others are
    for terms in later.values():  # stacked outputs of the backward loop
        for t in terms:
            stacked += [v for v in t[1:-1] if isinstance(v, Tensor) and _k(v) not in
                        {_k(u) for u in stacked}]
    extra = [v for v in stacked if v.node.uid not in forward]
    seq_grads = [i for i, (p, w) in enumerate(zip(ps, w_seq)) if w and d.get(_k(p)) is not None]
    roots = b_new + [d[_k(ps[i])] for i in seq_grads] + extra

    # what the backward body reads of the forward one: sequence elements and captured values
    # come from outside, every other value is saved by the augmented forward loop
    read = _forward_values_read(body, roots + [v for v in stacked if v.node.uid in forward])
    seq_of = {_k(p): (p, s) for p, s in zip(ps, seqs)}
    cap_of = {_k(p): (p, c) for p, c in zip(pc, caps)}
    saved = [t for t in read if _k(t) not in seq_of and _k(t) not in cap_of]
    augmented = apply("loop", list(node.inputs),
                      dict(a, body=Graph(body.inputs, body.outputs + tuple(saved), ())))
    subst, b_seq, b_seq_in, b_cap, b_cap_in = {}, [], [], [], []
    for t, stack in zip(saved, augmented[n_state + n_out:]):
        subst[_k(t)] = placeholder_of(t.type, f"saved{len(b_seq)}")
        b_seq.append(subst[_k(t)])
        b_seq_in.append(stack)
    for t in read:
        if _k(t) in seq_of:
            subst[_k(t)] = placeholder_of(t.type, f"step_input{len(b_seq)}")
            b_seq.append(subst[_k(t)])
            b_seq_in.append(in_order(seq_of[_k(t)][1]))
        elif _k(t) in cap_of:
            subst[_k(t)] = placeholder_of(t.type, f"captured{len(b_cap)}")
            b_cap.append(subst[_k(t)])
            b_cap_in.append(cap_of[_k(t)][1])
    for gp, g in zip(g_out, g_stacked):
        if gp is not None:
            b_seq.append(gp)
            b_seq_in.append(g)
    if not b_seq:  # a loop needs a sequence to count its steps
        b_seq.append(placeholder_of(ps[0].type, "steps"))
        b_seq_in.append(seqs[0])
    backward_body = Graph(tuple(b_seq + b_state + b_cap), tuple(_rebuild(roots, subst)), ())
    back = apply("loop", b_seq_in + b_init + b_cap_in,
                 {"body": backward_body, "n_seq": len(b_seq), "n_state": len(b_state),
                  "reverse": True, "stack_at_index": True})

    result: List = [None] * len(node.inputs)
    finals = iter(back[:len(b_state)])
    for i, gp in enumerate(g_state):
        if gp is not None:
            g = next(finals)
            result[n_seq + i] = g if w_state[i] else None
    outs = iter(back[len(b_state):])
    for i in seq_grads:
        result[i] = in_order(next(outs))
    stack_of = {_k(v): s for v, s in zip(extra, outs)}
    stack_of.update({_k(t): s for t, s in zip(saved, augmented[n_state + n_out:])})
    stack_of.update({_k(p): in_order(s) for p, s in zip(ps, seqs)})
    for i in cap_grads:
        parts = [next(finals)] if i in accumulated else []
        result[n_seq + n_state + i] = _sum_all(parts + [_over_steps(t, stack_of)
                                                         for t in later[i]])
    return result


def _split_terms(g: Tensor, invariant: set):
    """The terms of a sum g (through add nodes and reshapes): (terms computed per step, terms
    summed over the steps after the loop). The latter are ("matmul", a, b, dims): a^T . b over
    the batch of one step, from dot's gradient (a (1, M, K), b (1, M, N) batch_dot); and
    ("sum", x, axes, dims): x summed over axes that include the batch axis 0. Terms reading
    a captured value (in `invariant`) stay per step."""
    each, later = [], []

    def base(t):
        while t.node.op.name in ("reshape", "expect_dims"):
            t = t.node.inputs[0]
        return t

    def visit(t, dims):
        n = t.node
        if n.op.name == "add" and all(i.dims == t.dims for i in n.inputs):
            for i in n.inputs:
                visit(i, dims)
            return
        core = base(t)
        n = core.node
        if n.op.name == "batch_dot" and n.attrs["axes"] == (1, 1) and core.dims[0] == 1:
            a, b = (base(i) for i in n.inputs)
            if a.node.uid not in invariant and b.node.uid not in invariant and \
                    a.node.op.name != "constant" and b.node.op.name != "constant":
                later.append(("matmul", a, b, n.inputs[0].dims[1:], n.inputs[1].dims[1:],
                              dims))
                return
        if n.op.name == "sum" and 0 in n.attrs["axes"] and \
                core.node.inputs[0].node.uid not in invariant:
            later.append(("sum", n.inputs[0], n.attrs["axes"], dims))
            return
        each.append(t)

    visit(g, g.dims)
    return each, later


def _over_steps(term, stack_of) -> Tensor:
    """A term of _split_terms summed over the steps, from the stacks (T, ...) of its values."""
    from ..build import reduce, reshape
    kind = term[0]
    if kind == "matmul":
        _, a, b, (m, k), (_, n), dims = term
        sa, sb = stack_of[_k(a)], stack_of[_k(b)]
        rows = S.mul(sa.dims[0], m)
        r = apply1("batch_dot", [reshape(sa, (1, rows, k)), reshape(sb, (1, rows, n))],
                   {"axes": (1, 1)})
        return reshape(r, dims)
    _, x, axes, dims = term
    r = reduce("sum", stack_of[_k(x)], (0,) + tuple(a + 1 for a in axes))
    return reshape(r, dims)


def _sum_all(parts: List[Tensor]) -> Tensor:
    from ..build import binary
    total = parts[0]
    for p in parts[1:]:
        total = binary("add", total, p)
    return total


def _split(items, n_seq, n_state):
    items = list(items)
    return items[:n_seq], items[n_seq:n_seq + n_state], items[n_seq + n_state:]


def _float(t: Tensor) -> bool:
    return t.type.dtype.is_float


def _k(t: Tensor):
    return (t.node.uid, t.index)


def _forward_values_read(body: Graph, roots: Sequence[Tensor]) -> List[Tensor]:
    """The values of body (not constants) that the gradient nodes behind roots read, or that
    are roots themselves, in a deterministic order."""
    forward = {n.uid for n in body.nodes()} | {p.node.uid for p in body.inputs}
    found, seen = [], set()

    def note(t):
        if t.node.uid in forward and t.node.op.name != "constant" and _k(t) not in seen:
            seen.add(_k(t))
            found.append(t)

    for n in toposort(roots):
        if n.uid not in forward:
            for t in n.inputs:
                note(t)
    for r in roots:
        note(r)
    return found


def _rebuild(roots: Sequence[Tensor], subst: dict) -> List[Tensor]:
    """Copies of the nodes behind roots that read subst's values in place of the tensors they
    replace (keyed by (node uid, index))."""
    mapping = dict(subst)
    for n in toposort(roots):
        if all((n.uid, i) in mapping for i in range(len(n.outputs))):
            continue
        if n.op.kind == "leaf":
            mapping.update({(n.uid, i): o for i, o in enumerate(n.outputs)})
            continue
        clone = Node(n.op, [mapping[_k(t)] for t in n.inputs], n.attrs,
                     [o.type for o in n.outputs], n.checks, name=n.name)
        mapping.update({(n.uid, i): o for i, o in enumerate(clone.outputs)})
    return [mapping[_k(r)] for r in roots]
