"""The kernel plan: buffers, kernels in execution order, and the scratch memory plan."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List

import numpy as np

from ..ir import shapes as S
from ..ir.dtypes import DType
from ..ir.graph import Graph, Variable
from .dims import DimTable
from .names import Code

@dataclass(eq=False)
class Buffer:
    slot: int            # index into the generated Frame's pointer table
    dtype: DType
    dims: S.Shape
    kind: str            # input, const, variable, output, scratch, or window (a pointer
                         # that a loop moves at every step)
    index: int = -1      # position among the call's inputs / consts / variables / outputs
    arena: int = -1      # scratch buffers: their arena slot

    @property
    def nbytes(self) -> S.Dim:
        return S.mul(self.dtype.itemsize, *self.dims)

    def describe(self) -> str:
        where = f"arena[{self.arena}]" if self.kind == "scratch" else \
            "window" if self.kind == "window" else f"{self.kind}[{self.index}]"
        return f"p{self.slot} {self.dtype.name}{S.fmt(self.dims)} {where}"


@dataclass(frozen=True)
class Ref:
    """Where a value lives: a buffer, seen with the value's own dims (views share buffers)."""
    buf: Buffer
    dims: S.Shape


@dataclass(eq=False)
class Kernel:
    name: Code
    template: str        # kcomp/templates/cpu/<template>.j2
    ctx: dict            # what the template prints: Code, ints, and containers of them;
                         # ctx["can_fail"]: the kernel may report bad data via kc_frame_fail
    label: str           # for explain(): the ops and shapes this kernel computes
    reads: List[Buffer] = field(default_factory=list)
    writes: List[Buffer] = field(default_factory=list)


@dataclass
class Plan:
    graph: Graph                          # the optimized graph this plan computes
    inputs: List[Buffer]
    consts: List[Buffer]
    const_values: List[np.ndarray]
    variables: List[Buffer]
    variable_objects: List[Variable]
    outputs: List[Buffer]
    scratch: List[Buffer]
    kernels: List[Kernel]
    dims: DimTable
    arena: List[S.Dim] = field(default_factory=list)  # bytes of each arena slot
    includes: List[str] = field(default_factory=list)
    windows: List[Buffer] = field(default_factory=list)

    @property
    def buffers(self) -> List[Buffer]:
        return self.inputs + self.consts + self.variables + self.outputs + self.scratch + \
            self.windows

    def describe(self) -> str:
        lines = ["buffers:"]
        lines += [f"  {b.describe()}" for b in self.buffers]
        lines.append("kernels:")

        def listing(kernels, indent):
            for k in kernels:
                reads = ", ".join(f"p{b.slot}" for b in k.reads)
                writes = ", ".join(f"p{b.slot}" for b in k.writes)
                lines.append(f"{indent}{k.name} [{k.template}] {k.label}  reads {reads or '-'} "
                             f"writes {writes or '-'}")
                listing(k.ctx.get("loop_body", ()), indent + "    ")
        listing(self.kernels, "  ")
        lines.append("arena slots: " + (", ".join(f"{n}B" for n in self.arena) or "none"))
        return "\n".join(lines)


def variables_written(kernels: List[Kernel]) -> set:
    """Slots of the variable buffers these kernels (loops with their bodies') write."""
    return {b.slot for k in kernels for b in k.writes if b.kind == "variable"}


def plan_arena(plan: Plan) -> None:
    """Give each scratch buffer an arena slot, reusing the slot of a dead buffer of the same
    size (buffers are dead after the last kernel that reads them)."""
    last_use: Dict[int, int] = {}
    first_def: Dict[int, int] = {}
    for i, k in enumerate(plan.kernels):
        for b in k.reads + k.writes:
            if b.kind == "scratch":
                last_use[b.slot] = i
        for b in k.writes:
            if b.kind == "scratch":
                first_def.setdefault(b.slot, i)
    free: Dict[S.Dim, List[int]] = {}
    sizes: List[S.Dim] = []
    by_kernel: Dict[int, List[Buffer]] = {}
    for b in plan.scratch:
        by_kernel.setdefault(first_def.get(b.slot, 0), []).append(b)
    for i, k in enumerate(plan.kernels):
        for b in by_kernel.get(i, []):
            slots = free.get(b.nbytes)
            if slots:
                b.arena = slots.pop()
            else:
                b.arena = len(sizes)
                sizes.append(b.nbytes)
        for b in plan.scratch:
            if last_use.get(b.slot) == i and b.arena >= 0:
                free.setdefault(b.nbytes, []).append(b.arena)
    for b in plan.scratch:  # never written (cannot happen in a valid plan, but stay safe)
        if b.arena < 0:
            b.arena = len(sizes)
            sizes.append(b.nbytes)
    plan.arena = sizes
