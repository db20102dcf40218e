"""Lowering of an optimized graph to a kernel plan: where every value lives, which kernel
computes it, and in what order. The per-op kernel rules are in kcomp/lowering/rules/.

A loop body is lowered by the same machinery into the same frame (`lower_body`): its values get
buffers of their own, its parameters are bound to "window" buffers whose pointers the loop
moves at every step, and its kernels run inside the loop kernel.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Dict, List, Sequence, Set, Tuple, Union

import numpy as np

from ..ir.dtypes import as_dtype
from ..ir.graph import Graph, Tensor
from ..ir.passes.fusion import fuse
from .dims import DimTable
from .names import Code, ident, literal
from .plan import Buffer, Kernel, Plan, Ref, plan_arena, variables_written
from .rules import lower_group
from .rules.common import copy_ref, copy_value

Key = Tuple[int, int]
Binding = Union[Ref, Code]  # where a parameter lives, or the literal it is


def key(t: Tensor) -> Key:
    return (t.node.uid, t.index)


class Lowerer:
    def __init__(self, graph: Graph, materialize: Set[int] = frozenset(), target: str = "cpu"):
        self.graph = graph
        self.target = target  # 'cpu' or 'cuda': the few rules that differ ask
        self.materialize = materialize
        self.dims = DimTable()
        self.storage: Dict[Key, Ref] = {}
        self.inline: Dict[Key, Code] = {}
        self.kernels: List[Kernel] = []  # where add() appends (a loop body swaps its own in)
        self.n_kernels = 0
        # headers kernels need: generated CUDA includes those it shares (render.CUDA_HEADERS);
        # generated C++ includes all of them through kcomp/prelude.h
        self.includes: List[str] = ["kcomp/rt.h"]
        self.slots = 0
        self.by_kind: Dict[str, List[Buffer]] = {k: [] for k in
                                                 ("input", "const", "variable", "output",
                                                  "scratch", "window")}
        self.const_values = []
        self.variable_objects = []
        # values a fused loop stores into more places than their own buffer (an output that is
        # also another output: an RNN step's h, both its state and its step output)
        self.also_store: Dict[Key, List[Ref]] = {}

    # ---- buffers and kernels ------------------------------------------------------------
    def buffer(self, dtype, dims, kind, index=-1) -> Buffer:
        b = Buffer(self.slots, dtype, tuple(dims), kind, index)
        self.slots += 1
        self.by_kind[kind].append(b)
        return b

    def scratch_for(self, t: Tensor) -> Ref:
        return Ref(self.buffer(t.type.dtype, t.type.dims, "scratch"), t.type.dims)

    def window(self, dtype, dims) -> Ref:
        """A buffer whose pointer a loop sets at every step (a slice of a sequence, a state)."""
        return Ref(self.buffer(dtype, dims, "window"), tuple(dims))

    def ref(self, t: Tensor) -> Ref:
        return self.storage[key(t)]

    def kernel_name(self) -> Code:
        self.n_kernels += 1
        return ident("k", self.n_kernels - 1)

    def add(self, kernel: Kernel) -> None:
        self.kernels.append(kernel)

    def include(self, header: str) -> None:
        if header not in self.includes:
            self.includes.append(header)

    def const_array(self, value: np.ndarray) -> Ref:
        """A buffer of constant data (a constant's, a placeholder's default, a kernel's
        parameters): passed at run time, so it is not part of the source."""
        ref = Ref(self.buffer(as_dtype(value.dtype), value.shape, "const",
                              len(self.by_kind["const"])), tuple(value.shape))
        self.const_values.append(value)
        return ref

    # ---- the function ---------------------------------------------------------------------
    def lower(self) -> Plan:
        g = self.graph
        bound: Dict[Key, Binding] = {}
        for k, t in enumerate(g.inputs):
            bound[key(t)] = Ref(self.buffer(t.type.dtype, t.dims, "input", k), t.dims)
        seen = set()
        for n in g.nodes() + [v.node for v, _ in g.updates]:
            if n.op.name == "variable" and n.uid not in seen:
                seen.add(n.uid)
                v = n.outputs[0]
                bound[key(v)] = Ref(self.buffer(v.type.dtype, v.dims, "variable",
                                                len(self.variable_objects)), v.dims)
                self.variable_objects.append(v)
        self.storage.update({k: r for k, r in bound.items()})
        outputs = [Ref(self.buffer(t.type.dtype, t.dims, "output", i), t.dims)
                   for i, t in enumerate(g.outputs)]
        self._lower_graph(g, bound, outputs, self.materialize)
        self._lower_updates()
        _mark_cached_weights(self, self.kernels)
        for b in self.all_buffers():
            for d in b.dims:
                self.dims.expr(d)
        plan = Plan(g, self.by_kind["input"], self.by_kind["const"], self.const_values,
                    self.by_kind["variable"], self.variable_objects, self.by_kind["output"],
                    self.by_kind["scratch"], self.kernels, self.dims, includes=self.includes,
                    windows=self.by_kind["window"])
        plan_arena(plan)
        return plan

    def all_buffers(self) -> List[Buffer]:
        return [b for kind in self.by_kind.values() for b in kind]

    # ---- a loop body ----------------------------------------------------------------------
    @contextmanager
    def collecting(self):
        """Kernels added inside the block go to the yielded list instead of the plan."""
        saved, self.kernels = self.kernels, []
        try:
            yield self.kernels
        finally:
            self.kernels = saved

    def lower_body(self, body: Graph, params: Sequence[Binding], outputs: Sequence[Ref]
                   ) -> List[Kernel]:
        """Kernels computing body's outputs into `outputs` from its inputs bound to `params`."""
        bound = {key(p): b for p, b in zip(body.inputs, params)}
        for k, b in bound.items():
            if isinstance(b, Ref):
                self.storage[k] = b
        with self.collecting() as kernels:
            self._lower_graph(body, bound, list(outputs))
        return kernels

    # ---- shared by both -------------------------------------------------------------------
    def _lower_graph(self, g: Graph, bound: Dict[Key, Binding], outputs: List[Ref],
                     materialize: Set[int] = frozenset()) -> None:
        """Storage and kernels for g's nodes (update values included): outputs go to `outputs`."""
        nodes = g.nodes()
        roots = {key(t) for t in g.roots()}
        needs_buffer = self._needs_buffer(nodes, roots)
        for n in nodes:
            t = n.outputs[0] if n.outputs else None
            if n.op.kind != "leaf" or key(t) in self.storage or key(t) in self.inline:
                continue
            if key(t) in bound:  # a body parameter bound to a literal
                self.inline[key(t)] = bound[key(t)]
            elif n.op.name == "constant":
                value = n.attrs["value"]
                if value.size == 1 and key(t) not in needs_buffer:
                    self.inline[key(t)] = literal(value.reshape(()), t.type.dtype)
                else:
                    self.storage[key(t)] = self.const_array(value)
            elif n.op.name == "placeholder":
                if n.attrs.get("default") is None:
                    raise ValueError(f"placeholder {t.name!r} is needed by an output but is not "
                                     f"an input of the function")
                self.storage[key(t)] = self.const_array(n.attrs["default"])

        # outputs: a value computed by a kernel is written straight into its output buffer
        claimed: Set[Key] = set()
        copies = []
        for t, out in zip(g.outputs, outputs):
            src = self._view_source(t)
            if src.node.op.kind not in ("leaf", "view") and key(src) not in claimed and \
                    key(src) not in self.storage:
                claimed.add(key(src))
                self.storage[key(src)] = Ref(out.buf, src.dims)
            else:
                copies.append((t, out))

        groups = fuse(g, materialize, self.target)
        self._claim_update_targets(g, groups, claimed)

        # storage of everything else, in execution order (views alias their source)
        stored = {key(t) for grp in groups for t in grp.stored}
        for n in nodes:
            if n.op.kind == "view":
                src = key(n.inputs[0])
                if src in self.storage:
                    self.storage[key(n.outputs[0])] = Ref(self.storage[src].buf,
                                                          n.outputs[0].dims)
                elif src in self.inline:
                    self.inline[key(n.outputs[0])] = self.inline[src]
            elif n.op.kind != "leaf":
                for t in n.outputs:
                    if key(t) in stored and key(t) not in self.storage:
                        self.storage[key(t)] = self.scratch_for(t)

        # an output whose value a fused loop computes is one more store of that loop, not a copy
        looped = {key(t) for grp in groups if grp.fused for t in grp.stored}
        rest = []
        for t, out in copies:
            if key(t) in looped and t.node.op.kind == "elementwise":
                self.also_store.setdefault(key(t), []).append(out)
            else:
                rest.append((t, out))
        for grp in groups:
            lower_group(self, grp)
        for t, out in rest:
            copy_value(self, t, out, label="output copy")
        for n in nodes:
            for c in n.checks:
                self.dims.check(*c)

    def _claim_update_targets(self, g: Graph, groups, claimed: Set[Key]) -> None:
        """An update value computed by a fused elementwise kernel is written straight into its
        variable (an optimizer step updates weights in place, without a copy) when nothing
        reads the variable's old value after that kernel: every reader runs in an earlier
        kernel, or in that kernel itself, which reads each element before writing it. Not so an
        epilogue of a matrix product or convolution: the product writes its block of the output
        before the epilogue reads the variable there (W + dot(x^T, y) would compute 2 dot); nor
        a read through a view in the kernel (w[::-1] + w reads elements written before)."""
        if not g.updates:
            return
        group_at = {m.uid: i for i, grp in enumerate(groups) for m in grp.members}
        last = {}
        for var, val in g.updates:
            last[var.node.uid] = (var, val)
        # variable uid -> (node reading it, through views too; whether it reads it directly)
        readers: Dict[int, List] = {}
        for n in g.nodes():
            for t in n.inputs:
                src = self._view_source(t)
                if src.node.op.name == "variable" and n.op.kind != "view":
                    readers.setdefault(src.node.uid, []).append((n, t is src))
        kept = {self._view_source(t).node.uid for t in g.outputs} | \
            {self._view_source(v).node.uid for _, v in g.updates}
        for var, val in last.values():
            src = self._view_source(val)
            at = group_at.get(src.node.uid)
            if at is None or not groups[at].fused or src.dims != var.dims or \
                    var.node.uid in kept or key(src) in claimed or key(src) in self.storage:
                continue
            same_kernel_ok = groups[at].product is None
            # (a reader in the kernel reads element i where it writes element i: an elementwise
            # op reading the variable itself, not a slice of it or an op on a view of it)
            if all(group_at.get(r.uid, -1) < at or (
                    same_kernel_ok and group_at.get(r.uid) == at and direct and
                    r.op.kind == "elementwise" and r.outputs[0].dims == var.dims)
                   for r, direct in readers.get(var.node.uid, [])):
                claimed.add(key(src))
                self.storage[key(src)] = Ref(self.ref(var).buf, src.dims)

    def _view_source(self, t: Tensor) -> Tensor:
        while t.node.op.kind == "view":
            t = t.node.inputs[0]
        return t

    def _needs_buffer(self, nodes, roots) -> Set[Key]:
        """Values that must live in memory: read by a non-fused kernel, or an output."""
        need = set(roots)
        for n in reversed(nodes):
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


def lower(graph: Graph, materialize: Set[int] = frozenset(), target: str = "cpu") -> Plan:
    return Lowerer(graph, materialize, target).lower()


def _mark_cached_weights(L, kernels) -> None:
    """CPU matrix products whose B is a variable that the function never writes take B's packed
    panels from the kernel library's cache, kept across calls (gemm.j2, kc_api.pack_cached);
    so do the fused LSTM for its recurrent weights (lstm.j2) and the direct convolution for its
    kernel (conv_direct.j2). A variable the function writes is left out: a read may see the
    value written in the call."""
    if L.target != "cpu":
        return
    written = variables_written(kernels)

    def cacheable(k, slot):
        b = next(r for r in k.reads if r.slot == slot)
        return b.kind == "variable" and b.slot not in written

    def mark(ks):
        for k in ks:
            if k.template == "gemm" and k.ctx["native"]:
                k.ctx["cache_b"] = cacheable(k, k.ctx["slot_b"])
            elif k.template in ("lstm", "conv_direct"):
                k.ctx["cache_w"] = cacheable(k, k.ctx["w"])
            mark(k.ctx.get("loop_body") or [])
    mark(kernels)
