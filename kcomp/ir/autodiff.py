"""Reverse-mode differentiation on the IR.

`gradients(ys, xs)` walks the graph from the ys back to the xs and builds the gradient graph
out of ordinary IR nodes, so the compiler optimizes, fuses and lowers it like any other (CSE
shares the forward values the backward pass reads: nothing is recomputed).

Each op's rule is defined beside the op (kcomp/ir/ops/*.py) with `@defgrad(name, ...)`:

    rule(node, grads) -> one entry per input of node: its gradient (a Tensor of the input's
                         type) or None where no gradient flows

`grads` holds one cotangent per output of node, None for an output nothing downstream uses.
A rule registered with `wants=True` also receives `wanted`, a bool per input saying whether its
gradient is needed (a loop skips the per-step work of the others).
Only float tensors carry gradients: integer and bool inputs (indices, masks, comparisons) get
none, and an op none of whose float inputs leads to the xs needs no rule. An op that is
reached but has no rule raises NotImplementedError naming it.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

from . import shapes as S
from .graph import Node, Tensor, toposort

Rule = Callable[..., Sequence[Optional[Tensor]]]
GRADS: Dict[str, Rule] = {}  # op name -> rule(node, grads, wanted)
Key = Tuple[int, int]


def defgrad(*names: str, wants: bool = False):
    """Register the decorated function as the gradient rule of the named ops."""
    def deco(fn: Rule) -> Rule:
        for n in names:
            if n in GRADS:
                raise RuntimeError(f"gradient of {n!r} defined twice")
            GRADS[n] = fn if wants else (lambda node, grads, wanted: fn(node, grads))
        return fn
    return deco


def no_gradient(*names: str) -> None:
    """Ops whose float outputs are piecewise constant (round, sign, random draws): no gradient
    flows through them, as in TensorFlow."""
    defgrad(*names)(lambda node, grads: [None] * len(node.inputs))


def _key(t: Tensor) -> Key:
    return (t.node.uid, t.index)


def _carries(t: Tensor) -> bool:
    return t.type.dtype.is_float


def gradients(ys: Sequence[Tensor], xs: Sequence[Tensor],
              grad_ys: Sequence[Optional[Tensor]] | None = None) -> List[Optional[Tensor]]:
    """d(sum of ys)/d(x) for each x (None where x does not affect the ys). grad_ys: the
    cotangents of the ys (ones by default)."""
    from . import build as B
    ys, xs = list(ys), list(xs)
    for y in ys:
        if not _carries(y):
            raise TypeError(f"gradients: {y.name} is {y.dtype}; only float tensors have "
                            f"gradients")
    order = toposort(ys)
    # the values that depend on an x through float tensors: the only ones gradients reach
    reach = {_key(x) for x in xs if _carries(x)}
    for n in order:
        if any(_key(t) in reach for t in n.inputs if _carries(t)):
            reach.update(_key(o) for o in n.outputs if _carries(o))

    cot: Dict[Key, List[Tensor]] = {}
    seeds = grad_ys or [None] * len(ys)
    for y, g in zip(ys, seeds):
        if _key(y) in reach:
            g = ones(y) if g is None else B.as_tensor(g, y.type.dtype)
            cot.setdefault(_key(y), []).append(g)

    for node in reversed(order):
        outs = []
        for o in node.outputs:  # each output's cotangents, summed once
            g = _total(cot.get(_key(o)))
            if g is not None:
                cot[_key(o)] = [g]
            outs.append(g)
        if all(g is None for g in outs):
            continue
        wanted = [_carries(t) and _key(t) in reach for t in node.inputs]
        if not any(wanted):
            continue
        rule = GRADS.get(node.op.name)
        if rule is None:
            raise NotImplementedError(f"gradients: kcomp has no gradient for op "
                                      f"{node.op.name!r} yet")
        in_grads = list(rule(node, outs, wanted))
        if len(in_grads) != len(node.inputs):
            raise AssertionError(f"gradient rule of {node.op.name} returned {len(in_grads)} "
                                 f"values for {len(node.inputs)} inputs")
        for t, g, w in zip(node.inputs, in_grads, wanted):
            if g is None or not w:
                continue
            cot.setdefault(_key(t), []).append(_conform(node, t, g))

    return [_total(cot.get(_key(x))) for x in xs]


def _total(parts: Optional[List[Tensor]]) -> Optional[Tensor]:
    if not parts:
        return None
    from . import build as B
    parts = _join_slices(parts)
    total = parts[0]
    for p in parts[1:]:
        total = B.binary("add", total, p)
    return total


def _join_slices(parts: List[Tensor]) -> List[Tensor]:
    """The gradients of disjoint slices of one value (an LSTM's four gates) as one
    concatenation, instead of a sum of zero-padded copies."""
    from .registry import apply1
    pieces = [p for p in parts if p.node.op.name == "unslice"]
    if len(pieces) < 2:
        return parts
    dims = pieces[0].dims
    spans = {}  # axis -> [(start, stop, value)]
    for p in pieces:
        specs = p.node.attrs["specs"]
        cut = [a for a, s in enumerate(specs) if s != (None, None, 1)]
        if p.dims != dims or len(cut) != 1:
            return parts
        a = cut[0]
        start, stop, step = specs[a]
        if not isinstance(dims[a], int) or step != 1:
            return parts
        start, stop, _ = slice(start, stop).indices(dims[a])
        spans.setdefault(a, []).append((start, stop, p.node.inputs[0]))
    if len(spans) != 1:
        return parts
    (axis, items), = spans.items()
    items.sort(key=lambda i: i[0])
    if any(a[1] > b[0] for a, b in zip(items, items[1:])):
        return parts  # overlapping slices add up
    chunks, at = [], 0
    for start, stop, value in items + [(dims[axis], dims[axis], None)]:
        if start > at:
            gap = dims[:axis] + (start - at,) + dims[axis + 1:]
            chunks.append(zeros(items[0][2], gap))
        if value is not None:
            chunks.append(value)
        at = stop
    joined = chunks[0] if len(chunks) == 1 else apply1("concatenate", chunks, {"axis": axis})
    return [joined] + [p for p in parts if p.node.op.name != "unslice"]


def _conform(node: Node, t: Tensor, g: Tensor) -> Tensor:
    """g as the gradient of input t: its dtype, and its dims (checked, so that a rule's mistake
    is an error here rather than a wrong answer later)."""
    from . import build as B
    g = B.cast(g, t.type.dtype)
    if g.dims == t.dims:
        return g
    if g.ndim != t.ndim or any(isinstance(a, int) and isinstance(b, int) and a != b
                               for a, b in zip(g.dims, t.dims)):
        raise AssertionError(f"gradient rule of {node.op.name} gave {g.type} for an input of "
                             f"type {t.type}")
    return expect(g, t.dims)


# ---- helpers for rules --------------------------------------------------------------------------

def expect(g: Tensor, dims: S.Shape) -> Tensor:
    """g seen with extents dims, checked at run time where either side is unknown."""
    from .registry import apply1
    if g.dims == tuple(dims):
        return g
    return apply1("expect_dims", [g], {"dims": tuple(dims),
                                        "where": "gradients: extents differ"})


def ones(t: Tensor) -> Tensor:
    from . import build as B
    return B.broadcast_to(B.as_tensor(1, t.type.dtype), t.dims)


def zeros(t: Tensor, dims: S.Shape | None = None) -> Tensor:
    """Zeros of t's dtype and extents (or of extents dims)."""
    from . import build as B
    return B.broadcast_to(B.as_tensor(0, t.type.dtype), t.dims if dims is None else dims)


def sum_to(g: Tensor, dims: S.Shape) -> Tensor:
    """The gradient of broadcasting a value of extents dims to g's extents: g summed over the
    broadcast axes. Whether an unknown extent was broadcast (it is 1 at run time while g's is
    not) is known only at run time: g's axis is split into (g's extent / it, it) and summed over
    the first part, which is the whole axis where it was broadcast and of length 1 where not."""
    from . import build as B
    dims = tuple(dims)
    if g.dims == dims:
        return g
    lead = g.ndim - len(dims)
    axes = list(range(lead)) + [lead + i for i, d in enumerate(dims)
                                if d == 1 and g.dims[lead + i] != 1]
    if axes:
        g = B.reduce("sum", g, axes, keepdims=True)
    for i, d in enumerate(dims):
        j, m = lead + i, g.dims[lead + i]
        if not S.is_static(d) and m != d and m != 1:
            # where d is 0 at run time, so is m: the quotient 1 (not broadcast) keeps the split
            q = S.div(m, d, "gradients: broadcast extents", if_empty=1)
            split = g.dims[:j] + (q, d) + g.dims[j + 1:]
            g = B.reduce("sum", B.reshape(g, split), [j])
    return expect(B.reshape(g, dims), dims)


def count(x: Tensor, axes: Sequence[int]) -> Tensor:
    """The number of elements of x over axes, as a scalar of x's dtype (known at run time where
    an extent is)."""
    from . import build as B
    n = S.mul(*(x.dims[a] for a in axes)) if axes else 1
    if isinstance(n, int):
        return B.as_tensor(n, x.type.dtype)
    from .registry import apply1
    shape = apply1("shape_of", [x])
    parts = [B.cast(B.getitem(shape, a), x.type.dtype) for a in axes]
    total = parts[0]
    for p in parts[1:]:
        total = B.binary("mul", total, p)
    return total


def unreduce(g: Tensor, x: Tensor, axes: Sequence[int], keepdims: bool) -> Tensor:
    """g (a reduction of x over axes) broadcast back to x's extents."""
    from . import build as B
    if not keepdims:
        kept = tuple(1 if i in axes else d for i, d in enumerate(x.dims))
        g = B.reshape(g, kept)
    return B.broadcast_to(g, x.dims)
