"""Canonical, process-independent descriptions of attributes and graphs.

Used for CSE keys, for the in-process compile memo and (through the generated source) for the
disk cache. Never uses id() or hash(): two structurally identical graphs built in two processes
describe identically. Constants are described by their bytes (a digest for arrays)."""
from __future__ import annotations

import hashlib
import json
from typing import Dict, List, Tuple

import numpy as np

from . import shapes as S
from .dtypes import DType
from .graph import Graph, Node


def describe(value):
    """A JSON-able canonical description of an attribute value."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return ["f", float(value).hex()]
    if isinstance(value, DType):
        return ["dtype", value.name]
    if isinstance(value, S.Sym):
        return ["sym", value.op, [describe(a) for a in value.args]]
    if isinstance(value, np.ndarray):
        if value.size <= 16:
            return ["array", value.dtype.name, list(value.shape),
                    [describe(v) for v in value.ravel().tolist()]]
        digest = hashlib.sha256(np.ascontiguousarray(value.reshape(-1)).view(np.uint8)).hexdigest()
        return ["array", value.dtype.name, list(value.shape), digest]
    if isinstance(value, Graph):  # a loop's body (a NamedTuple: test before tuples)
        return ["graph", graph_record(value)[0]]
    if isinstance(value, (tuple, list)):
        return [describe(v) for v in value]
    if isinstance(value, dict):
        return {k: describe(v) for k, v in sorted(value.items())}
    if hasattr(value, "_fields"):  # NamedTuple (TensorType)
        return [describe(v) for v in value]
    raise TypeError(f"cannot describe attribute value {value!r}")


def attrs_key(node: Node) -> str:
    return json.dumps(describe(node.attrs), sort_keys=True, separators=(",", ":"))


def graph_record(graph: Graph) -> Tuple[list, List[Node]]:
    """(record, nodes): a canonical description of the graph and its nodes in record order."""
    nodes = graph.nodes()
    index: Dict[int, int] = {n.uid: i for i, n in enumerate(nodes)}
    inputs = {t.node.uid: k for k, t in enumerate(graph.inputs)}
    rec = []
    for n in nodes:
        entry = [n.op.name, [[index[t.node.uid], t.index] for t in n.inputs],
                 describe(n.attrs), [describe(t.type) for t in n.outputs],
                 [describe(list(c)) for c in n.checks]]
        if n.uid in inputs:
            entry.append(["input", inputs[n.uid]])
        rec.append(entry)
    ref = lambda t: [index[t.node.uid], t.index]  # noqa: E731
    record = {
        "inputs": [describe(t.type) for t in graph.inputs],
        "nodes": rec,
        "outputs": [ref(t) for t in graph.outputs],
        "updates": [[index[v.node.uid], ref(val)] if v.node.uid in index else
                    ["var", describe(v.type), ref(val)] for v, val in graph.updates],
    }
    return record, nodes


def graph_key(graph: Graph) -> str:
    record, _ = graph_record(graph)
    text = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
