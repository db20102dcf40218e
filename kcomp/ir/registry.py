"""The op registry: every op is defined once (kcomp/ir/ops/*), with its shape and dtype
inference and its numpy reference implementation; lowering looks ops up here by name."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Sequence

import numpy as np

from . import shapes as S
from .graph import Node, Tensor, TensorType

# kinds: 'leaf' (placeholder, variable, constant), 'elementwise' (one output element from the
# same-index elements of broadcast inputs; fusible), 'view' (a new shape over the same contiguous
# buffer), 'reduce', and 'other' (lowered by a dedicated kernel).
KINDS = ("leaf", "elementwise", "view", "reduce", "other")
MAX_RANK = 8  # KC_MAX_RANK of csrc/include/kcomp/abi.h


@dataclass(frozen=True)
class OpDef:
    name: str
    kind: str
    # (input types, attrs) -> output types; raises ValueError naming the op and the shapes
    infer: Callable[[List[TensorType], dict], List[TensorType]]
    # (input arrays, attrs, output types) -> output arrays, computed with numpy
    reference: Callable[[List[np.ndarray], dict, List[TensorType]], List[np.ndarray]]
    # the native result is bit-identical to the reference, so constant folding may use it
    exact: bool = False
    doc: str = ""
    extra: dict = field(default_factory=dict)

    def __repr__(self):
        return f"<op {self.name}>"


REGISTRY: Dict[str, OpDef] = {}

# (variable, new value) updates of the K.control_dependencies blocks being traced, innermost last
CONTROL: List[tuple] = []


def register(name: str, kind: str, infer, reference, exact: bool = False, doc: str = "",
             **extra) -> OpDef:
    if name in REGISTRY:
        raise RuntimeError(f"op {name!r} registered twice")
    if kind not in KINDS:
        raise ValueError(kind)
    op = OpDef(name, kind, infer, reference, exact, doc, extra)
    REGISTRY[name] = op
    return op


def get(name: str) -> OpDef:
    return REGISTRY[name]


def apply(name: str, inputs: Sequence[Tensor], attrs: dict | None = None, *,
          node_name: str | None = None, tensor_cls=None) -> List[Tensor]:
    """Create a node of op `name`; returns its output tensors."""
    op = REGISTRY[name]
    attrs = dict(attrs or {})
    types = [t.type for t in inputs]
    with S.collecting_checks() as checks:
        out_types = op.infer(types, attrs)
    for t in out_types:
        if t.ndim > MAX_RANK:
            raise shape_error(name, f"rank {t.ndim} exceeds kcomp's limit of {MAX_RANK}", *types)
    node = Node(op, inputs, attrs, out_types, checks, name=node_name, tensor_cls=tensor_cls)
    if CONTROL and op.kind != "leaf":
        node.control = tuple(CONTROL)
    return list(node.outputs)


def apply1(name: str, inputs: Sequence[Tensor], attrs: dict | None = None, **kw) -> Tensor:
    return apply(name, inputs, attrs, **kw)[0]


def shape_error(op: str, msg: str, *types: TensorType) -> ValueError:
    """The ValueError inference raises: names the op and the operand shapes."""
    shapes = ", ".join(S.fmt(t.dims) for t in types)
    return ValueError(f"{op}: {msg} (operand shapes: {shapes})" if types else f"{op}: {msg}")
