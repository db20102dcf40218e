"""Nodes and tensors of the IR, and graph traversal.

Backend calls build `Node`s; each node's outputs are `Tensor`s (the symbolic values users hold).
Tensors carry no data. They accept arbitrary attributes because Keras annotates them
(`_keras_shape`, `_keras_history`, `_uses_learning_phase`), and they support Python operators.
Graphs are never mutated: compiler passes build new nodes, so user tensors stay valid.
"""
from __future__ import annotations

import itertools
from typing import Dict, Iterable, List, NamedTuple, Sequence, Tuple

from . import shapes as S
from .dtypes import DType

_node_uids = itertools.count(1)


class TensorType(NamedTuple):
    dtype: DType
    dims: S.Shape

    @property
    def ndim(self) -> int:
        return len(self.dims)

    def __str__(self):
        return f"{self.dtype.name}{S.fmt(self.dims)}"


class Node:
    """One application of an op. `checks` are the run-time shape constraints its inference found;
    `control` the (variable, new value) updates it was created under K.control_dependencies of:
    it reads those variables' new values."""
    __slots__ = ("op", "inputs", "attrs", "outputs", "checks", "uid", "name", "control")

    def __init__(self, op, inputs: Sequence["Tensor"], attrs: dict, out_types: Sequence[TensorType],
                 checks=(), name: str | None = None, tensor_cls=None):
        self.op = op
        self.inputs = tuple(inputs)
        self.attrs = attrs
        self.checks = tuple(checks)
        self.uid = next(_node_uids)
        self.name = name
        self.control = ()
        cls = tensor_cls or Tensor
        self.outputs = tuple(cls._make(self, i, t) for i, t in enumerate(out_types))

    def __repr__(self):
        return f"<Node {self.op.name}#{self.uid}>"


class Tensor:
    """A symbolic value: output `index` of `node`."""

    @classmethod
    def _make(cls, node: Node, index: int, type_: TensorType):
        t = cls.__new__(cls)
        t.node = node
        t.index = index
        t.type = type_
        return t

    # ---- Keras-facing introspection -------------------------------------------------------
    @property
    def dtype(self) -> str:
        return self.type.dtype.name

    @property
    def dims(self) -> S.Shape:
        """The shape with symbolic dimensions (internal view)."""
        return self.type.dims

    @property
    def shape(self) -> tuple:
        """The shape Keras sees: ints, None where unknown until run time."""
        return S.to_keras(self.type.dims)

    @property
    def ndim(self) -> int:
        return len(self.type.dims)

    @property
    def name(self) -> str:
        n = self.node.name or f"{self.node.op.name}_{self.node.uid}"
        return n if len(self.node.outputs) == 1 else f"{n}:{self.index}"

    def __repr__(self):
        return f"<kcomp.Tensor {self.name!r} shape={S.fmt(self.dims)} dtype={self.dtype}>"

    def __hash__(self):
        return id(self)

    def __bool__(self):
        raise TypeError("a symbolic kcomp tensor has no truth value; use K.switch or compare "
                        "inside the graph")

    def __len__(self):
        d = self.dims[0] if self.dims else None
        if not isinstance(d, int):
            raise TypeError(f"len() of a tensor whose first dimension is unknown: {self!r}")
        return d

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    # numpy defers to our reflected operators (np.float32(2) * x builds a node).
    __array_ufunc__ = None

    def __array__(self, *args, **kwargs):
        raise TypeError(f"{self!r} is symbolic; evaluate it with K.eval or K.function first")

    # ---- operators (Keras code uses them on backend tensors) ------------------------------
    def __add__(self, o): return _b().binary("add", self, o)
    def __radd__(self, o): return _b().binary("add", o, self)
    def __sub__(self, o): return _b().binary("sub", self, o)
    def __rsub__(self, o): return _b().binary("sub", o, self)
    def __mul__(self, o): return _b().binary("mul", self, o)
    def __rmul__(self, o): return _b().binary("mul", o, self)
    def __truediv__(self, o): return _b().binary("truediv", self, o)
    def __rtruediv__(self, o): return _b().binary("truediv", o, self)
    def __floordiv__(self, o): return _b().binary("floordiv", self, o)
    def __rfloordiv__(self, o): return _b().binary("floordiv", o, self)
    def __mod__(self, o): return _b().binary("mod", self, o)
    def __rmod__(self, o): return _b().binary("mod", o, self)
    def __pow__(self, o): return _b().binary("pow", self, o)
    def __rpow__(self, o): return _b().binary("pow", o, self)
    def __neg__(self): return _b().unary("neg", self)
    def __pos__(self): return self
    def __abs__(self): return _b().unary("abs", self)
    def __invert__(self): return _b().unary("logical_not", self)
    def __and__(self, o): return _b().binary("logical_and", self, o)
    def __rand__(self, o): return _b().binary("logical_and", o, self)
    def __or__(self, o): return _b().binary("logical_or", self, o)
    def __ror__(self, o): return _b().binary("logical_or", o, self)
    def __lt__(self, o): return _b().binary("less", self, o)
    def __le__(self, o): return _b().binary("less_equal", self, o)
    def __gt__(self, o): return _b().binary("greater", self, o)
    def __ge__(self, o): return _b().binary("greater_equal", self, o)
    # == and != stay identity comparisons: Keras keeps tensors in sets and dicts and compares
    # them with ==. Element-wise equality is K.equal / K.not_equal.
    __eq__ = object.__eq__

    def __getitem__(self, key):
        return _b().getitem(self, key)


def _b():
    from . import build
    return build


class Variable(Tensor):
    """A variable: state that compiled functions read and update in place.

    Its value (`_value`) is a C-contiguous numpy array owned by the variable; set_value writes
    into it, so every compiled function bound to the variable sees the current value. Created by
    the `variable` leaf op (kcomp/ir/ops/leaf.py). A variable whose initial value waits to be
    computed (kcomp/deferred.py) has `_materialize` set until that is done."""

    _materialize = None

    @property
    def _value(self):
        if self._materialize is not None:
            self._materialize()
        return self._array

    @_value.setter
    def _value(self, value) -> None:
        self._array = value

    @property
    def name(self) -> str:
        return self.node.name

    def __repr__(self):
        return f"<kcomp.Variable {self.name!r} shape={S.fmt(self.dims)} dtype={self.dtype}>"


class Update(tuple):
    """(variable, new value): what K.update and friends return, for function(updates=...).
    Used as a value (K.eval(update), an output), it is the new value, and computing it applies
    the update, as TensorFlow's assign does (kcomp.ir.build.as_tensor)."""
    __slots__ = ()

    @property
    def variable(self) -> Variable:
        return self[0]

    @property
    def value(self) -> Tensor:
        return self[1]


def toposort(roots: Iterable[Tensor]) -> List[Node]:
    """Nodes reachable from roots, inputs before users, in a deterministic order."""
    order: List[Node] = []
    seen = set()
    for root in roots:
        stack = [(root.node, False)]
        while stack:
            node, done = stack.pop()
            if done:
                order.append(node)
                continue
            if node.uid in seen:
                continue
            seen.add(node.uid)
            stack.append((node, True))
            for t in reversed(node.inputs):
                if t.node.uid not in seen:
                    stack.append((t.node, False))
    return order


def consumers(nodes: Sequence[Node]) -> Dict[int, List[Node]]:
    """uid of each node -> the nodes (among `nodes`) that read one of its outputs."""
    out: Dict[int, List[Node]] = {n.uid: [] for n in nodes}
    for n in nodes:
        for t in n.inputs:
            lst = out.get(t.node.uid)
            if lst is not None and (not lst or lst[-1] is not n):
                lst.append(n)
    return out


class Graph(NamedTuple):
    """A function to compile: its inputs, its outputs, and (variable, new value) updates."""
    inputs: Tuple[Tensor, ...]
    outputs: Tuple[Tensor, ...]
    updates: Tuple[Tuple[Variable, Tensor], ...]

    def roots(self) -> List[Tensor]:
        return list(self.outputs) + [v for _, v in self.updates]

    def nodes(self) -> List[Node]:
        return toposort(self.roots())
