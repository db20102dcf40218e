"""Fusion grouping: partitions a graph's computing nodes into kernels.

A chain (more generally a DAG) of elementwise nodes over one iteration shape becomes one group,
lowered to one loop nest in which only the values needed outside the group are stored. A
producer joins its consumers' group when all its consumers are in that group, its shape is the
group's iteration shape, and joining creates no cycle between groups. A producer whose shape is
smaller (a broadcast operand) stays a kernel of its own, so it is computed once, not per element.
Every other node is a group by itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Set

from ..graph import Graph, Node, Tensor, consumers


@dataclass
class Group:
    members: List[Node]              # in topological order; the last is the root
    stored: List[Tensor] = field(default_factory=list)  # outputs needed outside the group

    @property
    def root(self) -> Node:
        return self.members[-1]

    @property
    def fused(self) -> bool:
        return self.root.op.kind == "elementwise"


def fuse(graph: Graph, materialize: Set[int] = frozenset()) -> List[Group]:
    """Groups of the graph's non-leaf, non-view nodes in a valid execution order.
    `materialize`: uids of nodes whose outputs must be stored even when only used inside a group
    (debug mode stores every node)."""
    nodes = [n for n in graph.nodes()]
    pos = {n.uid: i for i, n in enumerate(nodes)}
    users = consumers(nodes)
    roots = {(t.node.uid, t.index) for t in graph.roots()}

    # ancestors as bitsets, to keep groups free of cycles
    anc: Dict[int, int] = {}
    for n in nodes:
        bits = 0
        for t in n.inputs:
            bits |= anc[t.node.uid] | (1 << pos[t.node.uid])
        anc[n.uid] = bits

    group_of: Dict[int, int] = {}     # node uid -> group id
    members: Dict[int, List[Node]] = {}
    member_bits: Dict[int, int] = {}
    for n in reversed(nodes):
        if n.op.kind in ("leaf", "view"):
            continue
        target = None
        us = users[n.uid]
        if n.op.kind == "elementwise" and us and n.uid not in materialize:
            gids = {group_of.get(u.uid) for u in us}
            if len(gids) == 1 and None not in gids:
                gid = gids.pop()
                root = members[gid][-1]
                if root.op.kind == "elementwise" and \
                        n.outputs[0].type.dims == root.outputs[0].type.dims and \
                        not (member_bits[gid] & anc[n.uid]):
                    target = gid
        if target is None:
            target = len(members)
            members[target] = []
            member_bits[target] = 0
        members[target].insert(0, n)
        member_bits[target] |= 1 << pos[n.uid]
        group_of[n.uid] = target

    groups = []
    for gid, ms in members.items():
        ms.sort(key=lambda m: pos[m.uid])
        g = Group(ms)
        for m in ms:
            for i, t in enumerate(m.outputs):
                outside = any(group_of.get(u.uid) != gid for u in users[m.uid]) or \
                    (m.uid, i) in roots or m.uid in materialize or m is g.root
                if outside:
                    g.stored.append(t)
        groups.append(g)
    # execution order: by the position of each group's root (a group only reads values made by
    # groups whose roots come earlier, because members precede their group's root)
    groups.sort(key=lambda g: pos[g.root.uid])
    return groups
