"""Fusion grouping: partitions a graph's computing nodes into kernels.

Elementwise nodes over one iteration shape become one group, lowered to one loop nest in which
only the values needed outside the group are stored. Walking from the outputs back, a producer
joins its consumers' group when its shape is the group's iteration shape and every consumer is
in that group; when its consumers sit in several such groups that do not depend on each other,
those groups merge first (sibling fusion: `e = exp(x); e + 1, e * 2` is one loop computing exp
once). A producer of a smaller shape (a broadcast operand) stays a kernel of its own, computed
once rather than per element. A matrix product (dot) read only by one elementwise group of its
shape joins it: the group becomes the GEMM's fused epilogue; so does, on the CPU, a
channels_last (depthwise) convolution (bias and activation applied to each block of output
pixels while it is in cache). A 2-D transpose read only as the operand of matrix products is in
no group: the GEMMs read the transpose's source with its strides swapped
(`K.dot(x, K.transpose(w))` copies nothing). An elementwise group read only by a reduction
over its last axis joins the reduction as its prologue: each row of the reduced value is
computed into a buffer that stays in L1, never stored (`K.sum(K.square(x), -1)` reads x
once). A slice read only
by one elementwise group joins it: the loop reads the sliced elements straight from the slice's
source (an RNN step's gate slices cost no copies). Every other node is a group by itself. Groups
never form cycles: a merge is refused when a path between the parts leaves the group, counting
paths that run through other groups (see fuse).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Set

from ..graph import Graph, Node, Tensor, consumers
from ..ops.conv import CUDA_IMPLICIT_GEMM


# ops lowered by the reduction rule (kcomp/lowering/rules/reduce.py); rows of at most
# PROLOGUE_MAX elements take a prologue (they are computed into a buffer that stays in L1)
REDUCTIONS = {"sum", "mean", "prod", "max", "min", "any", "all", "var", "std", "logsumexp",
              "argmax", "argmin"}
PROLOGUE_MAX = 8192
# ops whose kernels can apply an elementwise epilogue (_takes_epilogue)
PRODUCTS = ("dot", "conv", "depthwise_conv")


@dataclass
class Group:
    members: List[Node]                                   # in topological order
    stored: List[Tensor] = field(default_factory=list)    # values needed outside the group

    @property
    def root(self) -> Node:
        return self.members[-1]

    @property
    def fused(self) -> bool:
        return self.root.op.kind == "elementwise"

    @property
    def product(self):
        """The matrix product or convolution whose epilogue this group is, or None."""
        return next((m for m in self.members if m.op.name in PRODUCTS), None)

    @property
    def prologue(self) -> bool:
        """Whether this group is a reduction with the elementwise group it reduces."""
        return self.root.op.name in REDUCTIONS and len(self.members) > 1


def fuse(graph: Graph, materialize: Set[int] = frozenset(), target: str = "cpu") -> List[Group]:
    """Groups of the graph's computing nodes, in an order that respects their dependencies.
    `materialize`: uids of nodes whose outputs must be stored even when only used inside a group
    (debug mode checks every value). target: 'cpu' or 'cuda' (which products take epilogues).

    A group runs as one kernel, so a path between groups can enter it at one member and leave at
    another with no path between the two (siblings): a -> one sibling, the other sibling -> b.
    Merging a with b would then make a cycle of groups. The merge checks therefore follow paths
    through groups (reach). Nodes are visited from the outputs back, so a node's ancestors are in
    no group yet when it joins its consumers' group: only merges of existing groups can close a
    cycle, and those are checked."""
    nodes = graph.nodes()
    pos = {n.uid: i for i, n in enumerate(nodes)}
    users = consumers(nodes)
    roots = {(t.node.uid, t.index) for t in graph.roots()}

    # descendants of each node as a bitset over positions
    desc: Dict[int, int] = {}
    for n in reversed(nodes):
        desc[n.uid] = 0
        for u in users[n.uid]:
            desc[n.uid] |= desc[u.uid] | (1 << pos[u.uid])

    group_of: Dict[int, int] = {}
    members: Dict[int, List[Node]] = {}
    bits: Dict[int, int] = {}         # members of a group
    descendants: Dict[int, int] = {}  # descendants of a group's members

    siblings: Set[int] = set()        # groups with several members read outside them

    def reach(gid) -> int:
        """The nodes that group gid reaches, following paths through groups: a group that a
        path enters is left from all its members. Only sibling groups are left from members
        that the entering path does not lead to (any other group is left from its root)."""
        seen = descendants[gid]
        grown = True
        while grown:
            grown = False
            for g in siblings:
                if g != gid and bits[g] & seen and descendants[g] & ~seen:
                    seen |= descendants[g]
                    grown = True
        return seen

    def elementwise_group(gid, dims) -> bool:
        root = members[gid][0]
        return root.op.kind == "elementwise" and root.outputs[0].type.dims == dims

    def merge(a: int, b: int) -> int:
        for m in members[b]:
            group_of[m.uid] = a
        members[a] += members.pop(b)
        bits[a] |= bits.pop(b)
        descendants[a] |= descendants.pop(b)
        if b in siblings:
            siblings.remove(b)
            siblings.add(a)
        return a

    for n in reversed(nodes):
        if n.op.kind in ("leaf", "view"):
            continue
        into = None
        us = users[n.uid]
        if n.op.name == "slice" and us and n.uid not in materialize and \
                (n.uid, 0) not in roots and \
                all(u.uid in group_of and u.op.kind == "elementwise" for u in us):
            gids = {group_of[u.uid] for u in us}
            if len(gids) == 1 and members[min(gids)][0].op.kind == "elementwise":
                into = min(gids)  # read through by the group's loop (see above)
        elif n.op.kind == "elementwise" and us and all(u.uid in group_of for u in us) and \
                not any(u.op.name == "slice" for u in us):  # a slice reads a buffer
            dims = n.outputs[0].type.dims
            gids = sorted({group_of[u.uid] for u in us})
            if all(elementwise_group(g, dims) for g in gids):
                into, r = gids[0], reach(gids[0])
                for g in gids[1:]:
                    rg = reach(g)
                    if r & bits[g] or rg & bits[into]:
                        into = None  # not siblings: merged, they would form a cycle
                        break
                    # (neither reaches the other, so what the merged group reaches is the union)
                    into, r = merge(into, g), r | rg
                    siblings.add(into)
        if into is None:
            into = n.uid
            members[into], bits[into], descendants[into] = [], 0, 0
        members[into].append(n)
        bits[into] |= 1 << pos[n.uid]
        descendants[into] |= desc[n.uid]
        group_of[n.uid] = into

    # a matrix product read only by one elementwise group of its output's shape becomes that
    # group's first member: the group runs as the GEMM's epilogue (bias, activation, residual)
    for gid in list(members):
        if gid not in members or members[gid][0].op.kind != "elementwise":
            continue
        dims = members[gid][0].outputs[0].type.dims
        for d in {t.node.uid: t.node for m in members[gid] for t in m.inputs}.values():
            if _takes_epilogue(d, target) and group_of.get(d.uid) == d.uid \
                    and d.outputs[0].type.dims == dims and \
                    d.uid not in materialize and (d.uid, 0) not in roots and \
                    all(group_of.get(u.uid) == gid and u.op.kind == "elementwise"
                        for u in users[d.uid]) and \
                    not reach(gid) & bits[d.uid]:
                merge(gid, d.uid)
                break

    # an elementwise group read only by a reduction over the last axis of its shape becomes the
    # reduction's prologue (see above)
    for n in nodes:
        if group_of.get(n.uid) == n.uid and _prologue_of(n, group_of, members, users, roots,
                                                          materialize) and \
                not reach(n.uid) & bits[group_of[n.inputs[0].node.uid]]:
            merge(n.uid, group_of[n.inputs[0].node.uid])

    # a 2-D transpose read only as matrix products' operands is no kernel (see above)
    folded: Set[int] = set()
    for n in nodes:
        if n.op.name == "transpose" and n.outputs[0].ndim == 2 and n.uid not in materialize \
                and (n.uid, 0) not in roots and users[n.uid] and \
                all(_gemm_operand(u, n) for u in users[n.uid]):
            del members[n.uid], group_of[n.uid]
            folded.add(n.uid)

    groups: Dict[int, Group] = {}
    for gid, ms in members.items():
        ms.sort(key=lambda m: pos[m.uid])
        g = Group(ms)
        for m in ms:
            for i, t in enumerate(m.outputs):
                if any(group_of.get(u.uid) != gid for u in users[m.uid]) or \
                        (m.uid, i) in roots or m.uid in materialize or not users[m.uid]:
                    g.stored.append(t)
        groups[gid] = g
    return _schedule(groups, group_of, folded, pos)


def _takes_epilogue(d: Node, target: str) -> bool:
    """Whether d's kernel can apply an epilogue to each finished block of its output: a float
    dot with a 2-D right operand, or a channels_last convolution (kcomp/lowering/rules/conv.py:
    its output pixels are the rows of a matrix of channels): on the CPU a (depthwise) one, in
    CUDA a float32 one (the implicit GEMM)."""
    dtype = d.outputs[0].type.dtype.name
    if dtype not in ("float32", "float64"):
        return False
    if d.op.name == "dot":
        return d.inputs[1].ndim == 2
    if d.op.name not in ("conv", "depthwise_conv") or d.attrs["data_format"] != "channels_last":
        return False
    return target == "cpu" or d.op.name == "conv" and dtype in CUDA_IMPLICIT_GEMM


def _prologue_of(n: Node, group_of, members, users, roots, materialize) -> bool:
    """Whether n reduces the last axis of a value that an elementwise group computes for n
    alone (no other value of the group is needed outside it)."""
    if n.op.name not in REDUCTIONS:
        return False
    t = n.inputs[0]
    axes = (n.attrs["axis"] % t.ndim,) if "axis" in n.attrs else tuple(n.attrs["axes"])
    gid = group_of.get(t.node.uid)
    if t.ndim < 2 or axes != (t.ndim - 1,) or not isinstance(t.dims[-1], int) or \
            not 0 < t.dims[-1] <= PROLOGUE_MAX or gid is None or gid == n.uid:
        return False
    ms = members[gid]
    return t.node.op.kind == "elementwise" and \
        all(m.op.kind == "elementwise" or m.op.name == "slice" for m in ms) and \
        all(m.uid not in materialize and (m.uid, 0) not in roots and
            all(group_of.get(u.uid) == gid or u is n for u in users[m.uid]) for m in ms)


def _gemm_operand(u: Node, n: Node) -> bool:
    """Whether u is a matrix product of two matrices reading n's output (2-D) as an operand."""
    return u.op.name == "dot" and u.inputs[1].ndim == 2 and any(t.node is n for t in u.inputs)


def _schedule(groups: Dict[int, Group], group_of: Dict[int, int], folded: Set[int],
              pos) -> List[Group]:
    """Groups in dependency order (ties: earliest last member first)."""
    def producers(t: Tensor) -> Set[int]:
        """The groups computing t; a view (reshape) or a folded transpose is computed by its
        input's."""
        if t.node.uid in group_of:
            return {group_of[t.node.uid]}
        if t.node.op.kind == "view" or t.node.uid in folded:
            return set().union(*(producers(i) for i in t.node.inputs))
        return set()

    deps = {gid: set().union(*(producers(t) for m in g.members for t in m.inputs)) - {gid}
            for gid, g in groups.items()}
    order: List[Group] = []
    done: Set[int] = set()
    pending = sorted(groups, key=lambda gid: pos[groups[gid].root.uid])
    while pending:
        for i, gid in enumerate(pending):
            if deps[gid] <= done:
                order.append(groups[pending.pop(i)])
                done.add(gid)
                break
        else:
            raise RuntimeError("kcomp internal error: fusion produced a cycle between groups")
    return order
