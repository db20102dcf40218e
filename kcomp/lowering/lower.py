"""Lowering of an optimized graph to a kernel plan: where every value lives, which kernel
computes it, and in what order. The per-op kernel rules are in kcomp/lowering/rules/."""
from __future__ import annotations

from typing import Dict, List, Set, Tuple

from ..ir.graph import Graph, Tensor, consumers
from ..ir.passes.fusion import Group, fuse
from .dims import DimTable
from .names import Code, ident, literal
from .plan import Buffer, Kernel, Plan, Ref, plan_arena
from .rules import lower_group
from .rules.common import copy_ref, copy_value

Key = Tuple[int, int]


def key(t: Tensor) -> Key:
    return (t.node.uid, t.index)


class Lowerer:
    def __init__(self, graph: Graph, materialize: Set[int] = frozenset()):
        self.graph = graph
        self.nodes = graph.nodes()
        self.dims = DimTable()
        self.storage: Dict[Key, Ref] = {}
        self.inline: Dict[Key, Code] = {}
        self.kernels: List[Kernel] = []
        self.includes: List[str] = ["kcomp/rt.h"]
        self.slots = 0
        self.inputs: List[Buffer] = []
        self.consts: List[Buffer] = []
        self.const_values = []
        self.variables: List[Buffer] = []
        self.variable_objects = []
        self.outputs: List[Buffer] = []
        self.scratch: List[Buffer] = []
        self.groups: List[Group] = fuse(graph, materialize)

    # ---- buffers -----------------------------------------------------------------------------
    def buffer(self, dtype, dims, kind, index=-1) -> Buffer:
        b = Buffer(self.slots, dtype, tuple(dims), kind, index)
        self.slots += 1
        {"input": self.inputs, "const": self.consts, "variable": self.variables,
         "output": self.outputs, "scratch": self.scratch}[kind].append(b)
        return b

    def scratch_for(self, t: Tensor) -> Ref:
        b = self.buffer(t.type.dtype, t.type.dims, "scratch")
        return Ref(b, t.type.dims)

    def ref(self, t: Tensor) -> Ref:
        return self.storage[key(t)]

    def kernel_name(self) -> Code:
        return ident("k", len(self.kernels))

    def add(self, kernel: Kernel) -> None:
        self.kernels.append(kernel)

    def include(self, header: str) -> None:
        if header not in self.includes:
            self.includes.append(header)

    # ---- the plan ----------------------------------------------------------------------------
    def lower(self) -> Plan:
        g = self.graph
        users = consumers(self.nodes)
        roots = {key(t) for t in g.outputs} | {key(v) for _, v in g.updates}
        needs_buffer = self._needs_buffer(users, roots)

        for k, t in enumerate(g.inputs):
            self.storage[key(t)] = Ref(self.buffer(t.type.dtype, t.type.dims, "input", k), t.dims)
        var_seen = {}
        for n in self.nodes + [v.node for v, _ in g.updates]:
            if n.op.name == "variable" and n.uid not in var_seen:
                v = n.outputs[0]
                var_seen[n.uid] = self.buffer(v.type.dtype, v.type.dims, "variable",
                                              len(self.variables))
                self.variable_objects.append(v)
                self.storage[key(v)] = Ref(var_seen[n.uid], v.dims)
        for n in self.nodes:
            if n.op.name == "constant":
                t = n.outputs[0]
                value = n.attrs["value"]
                if value.size == 1 and key(t) not in needs_buffer:
                    self.inline[key(t)] = literal(value.reshape(()), t.type.dtype)
                else:
                    self.storage[key(t)] = Ref(self.buffer(t.type.dtype, t.dims, "const",
                                                           len(self.consts)), t.dims)
                    self.const_values.append(value)
            elif n.op.name == "placeholder" and key(n.outputs[0]) not in self.storage:
                default = n.attrs.get("default")
                if default is None:
                    raise ValueError(f"placeholder {n.outputs[0].name!r} is needed by an output "
                                     f"but is not an input of the function")
                t = n.outputs[0]
                self.storage[key(t)] = Ref(self.buffer(t.type.dtype, t.dims, "const",
                                                       len(self.consts)), t.dims)
                self.const_values.append(default)

        # outputs: a value computed by a kernel is written straight into its output buffer
        claimed: Set[Key] = set()
        copies = []
        for i, t in enumerate(g.outputs):
            buf = self.buffer(t.type.dtype, t.type.dims, "output", i)
            src = self._view_source(t)
            if src.node.op.kind not in ("leaf", "view") and key(src) not in claimed:
                claimed.add(key(src))
                self.storage[key(src)] = Ref(buf, src.dims)
            else:
                copies.append((t, buf))

        # storage of everything else, in execution order (views alias their source)
        stored = {key(t) for grp in self.groups for t in grp.stored}
        for n in self.nodes:
            if n.op.kind == "view":
                src = self.storage.get(key(n.inputs[0]))
                if src is not None:
                    self.storage[key(n.outputs[0])] = Ref(src.buf, n.outputs[0].dims)
                elif key(n.inputs[0]) in self.inline:
                    self.inline[key(n.outputs[0])] = self.inline[key(n.inputs[0])]
            elif n.op.kind != "leaf":
                for t in n.outputs:
                    if key(t) in stored and key(t) not in self.storage:
                        self.storage[key(t)] = self.scratch_for(t)

        for grp in self.groups:
            lower_group(self, grp)
        for t, buf in copies:
            copy_value(self, t, Ref(buf, buf.dims), label="output copy")
        self._lower_updates()

        for n in self.nodes:
            for c in n.checks:
                self.dims.check(*c)
        for b in self.buffers_all():
            for d in b.dims:
                self.dims.expr(d)
        plan = Plan(g, self.inputs, self.consts, self.const_values, self.variables,
                    self.variable_objects, self.outputs, self.scratch, self.kernels, self.dims,
                    includes=self.includes)
        plan_arena(plan)
        return plan

    def buffers_all(self) -> List[Buffer]:
        return self.inputs + self.consts + self.variables + self.outputs + self.scratch

    def _view_source(self, t: Tensor) -> Tensor:
        while t.node.op.kind == "view":
            t = t.node.inputs[0]
        return t

    def _needs_buffer(self, users, roots) -> Set[Key]:
        """Values that must live in memory: read by a non-fused kernel, or an output."""
        need = set(roots)
        for n in reversed(self.nodes):
            if n.op.kind == "view" and key(n.outputs[0]) in need:
                need.add(key(n.inputs[0]))
            if n.op.kind not in ("elementwise", "view", "leaf"):
                need.update(key(t) for t in n.inputs)
        return need

    def _lower_updates(self) -> None:
        """Copy update values into their variables after everything else has run. A value that
        is the old state of another updated variable is snapshotted first (a swap)."""
        last = {}
        for var, val in self.graph.updates:
            last[var.node.uid] = (var, val)   # several updates of one variable: the last wins
        targets = {self.ref(var).buf.slot for var, _ in last.values()}
        copies = []
        for var, val in last.values():
            dst = self.ref(var)
            if key(val) in self.inline:
                copies.append((val, None, dst))
                continue
            src = self.ref(val)
            if src.buf is dst.buf:
                continue  # update(x, x)
            if src.buf.kind == "variable" and src.buf.slot in targets:
                snap = Ref(self.buffer(val.type.dtype, val.dims, "scratch"), val.dims)
                copy_ref(self, src, snap, label="update snapshot")
                src = snap
            copies.append((val, src, dst))
        for val, src, dst in copies:
            if src is None:
                copy_value(self, val, dst, label="update")
            else:
                copy_ref(self, src, dst, label="update")


def lower(graph: Graph, materialize: Set[int] = frozenset()) -> Plan:
    return Lowerer(graph, materialize).lower()
