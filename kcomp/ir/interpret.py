"""The reference interpreter: evaluates any graph with each op's numpy reference.

It is the oracle the compiled code is tested against (and what KCOMP_MODE=debug runs beside
native code), never a fallback for users: kcomp.function always runs native code.
"""
from __future__ import annotations

import contextvars
from typing import Dict, List, Sequence

import numpy as np

from . import shapes as S
from .graph import Graph, Node, Tensor, TensorType, Variable, toposort


class Env:
    """Values of symbolic extents, learned from the shapes of fed placeholders (and, in a loop's
    body, those of the evaluation running the loop: a body input's extent may be an expression
    of an outer extent, such as x[1:]'s, which binds nothing by itself)."""

    def __init__(self, outer: "Env | None" = None):
        self.vars: Dict[S.Sym, int] = dict(outer.vars) if outer else {}

    def bind(self, t: Tensor, value: np.ndarray) -> None:
        if value.ndim != t.ndim:
            raise ValueError(f"{t.name}: expected rank {t.ndim}, got shape {value.shape}")
        for d, n in zip(t.dims, value.shape):
            if isinstance(d, int):
                if d != n:
                    raise ValueError(f"{t.name}: expected shape {S.fmt(t.dims)}, got {value.shape}")
            elif d.op == "var":
                if self.vars.setdefault(d, n) != n:
                    raise ValueError(f"{t.name}: inconsistent extent {n} for {d}")

    def dim(self, d: S.Dim) -> int:
        return S.evaluate(d, self._lookup)

    def _lookup(self, v: S.Sym) -> int:
        try:
            return self.vars[v]
        except KeyError:
            raise ValueError(f"unknown extent {v}: no fed input defines it") from None

    def concrete(self, t: TensorType) -> TensorType:
        return TensorType(t.dtype, tuple(self.dim(d) for d in t.dims))

    def check(self, node: Node) -> None:
        for kind, a, b, where in node.checks:
            va, vb = self.dim(a), self.dim(b)
            if kind == "same" and va != vb:
                raise ValueError(f"{where}: {va} vs {vb}")
            if kind == "bcast" and not (va == vb or va == 1 or vb == 1):
                raise ValueError(f"{where}: dimensions do not broadcast: {va} vs {vb}")


def run_node(node: Node, inputs: List[np.ndarray], env: Env) -> List[np.ndarray]:
    env.check(node)
    out_types = [env.concrete(t.type) for t in node.outputs]
    results = node.op.reference(inputs, node.attrs, out_types)
    for r, t in zip(results, out_types):
        if r.shape != t.dims or r.dtype != t.dtype.np:
            raise AssertionError(f"reference of {node.op.name} returned {r.dtype}{r.shape}, "
                                 f"inferred {t}")
    return results


def evaluate(graph: Graph, feeds: Sequence[np.ndarray], record: Dict[int, list] | None = None
             ) -> tuple:
    """(outputs, update values) of `graph` for input arrays `feeds`; variables read their
    current values. `record`, if given, receives every node's outputs by node uid."""
    env = Env(_running.get())
    token = _running.set(env)
    try:
        return _evaluate(graph, feeds, record, env)
    finally:
        _running.reset(token)


# the Env of the evaluation in progress in this thread or task (a loop's reference evaluates its
# body inside it)
_running: contextvars.ContextVar = contextvars.ContextVar("kcomp_interpret_env", default=None)


def _evaluate(graph: Graph, feeds, record, env: Env) -> tuple:
    values: Dict[int, List[np.ndarray]] = {}
    fed = {}
    for t, v in zip(graph.inputs, feeds):
        v = np.asarray(v)
        if v.dtype != t.type.dtype.np:
            v = v.astype(t.type.dtype.np)
        env.bind(t, v)
        fed[t.node.uid] = v
    for node in toposort(graph.roots()):
        name = node.op.name
        if name == "placeholder":
            if node.uid in fed:
                out = [fed[node.uid]]
            elif node.attrs.get("default") is not None:
                out = [node.attrs["default"]]
            else:
                raise ValueError(f"placeholder {node.outputs[0].name!r} is needed but not fed")
        elif name == "variable":
            var = node.outputs[0]
            assert isinstance(var, Variable)
            out = [var._value.copy()]
        else:
            out = run_node(node, [values[t.node.uid][t.index] for t in node.inputs], env)
        values[node.uid] = out
        if record is not None:
            record[node.uid] = out
    get = lambda t: values[t.node.uid][t.index]  # noqa: E731
    return [get(t) for t in graph.outputs], [get(v) for _, v in graph.updates]
