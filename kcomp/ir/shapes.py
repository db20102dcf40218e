"""Shapes with static and symbolic dimensions.

A dimension is a Python int (static: baked into generated code as a constant) or a `Sym`, an
immutable expression over run-time extents (a placeholder's None dimensions). Generated code
evaluates every Sym once per call, in dependency order (`bcast` fails on incompatible extents,
`div` on an inexact division), and checks the `Check`s that shape inference recorded where a
result is static although an operand is not. One compiled function serves every batch size.
"""
from __future__ import annotations

import contextlib
import functools
import itertools
from typing import Callable, Iterable, Optional, Tuple, Union

Dim = Union[int, "Sym"]
Shape = Tuple[Dim, ...]

_uids = itertools.count(1)

# ops: var (an unknown extent), mul and add (an int coefficient/offset first, then sorted terms),
# div (exact division), bcast (numpy broadcasting of two unknown extents), slice (length of a
# Python slice of an extent).


class Sym:
    __slots__ = ("op", "args", "_hash", "_key")

    def __init__(self, op: str, args: tuple):
        self.op = op
        self.args = args
        self._hash = hash((op, args))
        self._key = None

    def __eq__(self, other):
        return isinstance(other, Sym) and self._hash == other._hash and self.op == other.op \
            and self.args == other.args

    def __hash__(self):
        return self._hash

    def __repr__(self):
        if self.op == "var":
            return f"?{self.args[0]}" if not isinstance(self.args[0], tuple) else \
                "?" + ".".join(str(a) for a in self.args[0])
        return f"{self.op}({', '.join(map(repr, self.args))})"

    def key(self):
        """A total order for sorting commutative operands (remembered: extents are DAGs)."""
        if self._key is None:
            self._key = (self.op, tuple(a.key() if isinstance(a, Sym) else (0, repr(a))
                                        for a in self.args))
        return self._key

    def vars(self):
        if self.op == "var":
            yield self
        for a in self.args:
            if isinstance(a, Sym):
                yield from a.vars()


def fresh() -> Sym:
    """A new unknown extent (each None of a placeholder)."""
    return Sym("var", (next(_uids),))


def var(name) -> Sym:
    return Sym("var", (name,))


def is_static(d: Dim) -> bool:
    return isinstance(d, int)


def _sort(xs):
    return tuple(sorted(xs, key=lambda s: s.key()))


def mul(*ds: Dim) -> Dim:
    coef, factors = 1, []
    for d in ds:
        if isinstance(d, int):
            coef *= d
        elif d.op == "mul":
            coef *= d.args[0]
            factors.extend(d.args[1:])
        else:
            factors.append(d)
    if coef == 0 or not factors:
        return coef
    if coef == 1 and len(factors) == 1:
        return factors[0]
    return Sym("mul", (coef,) + _sort(factors))


def add(*ds: Dim) -> Dim:
    const, terms = 0, []
    for d in ds:
        if isinstance(d, int):
            const += d
        elif d.op == "add":
            const += d.args[0]
            terms.extend(d.args[1:])
        else:
            terms.append(d)
    if not terms:
        return const
    if const == 0 and len(terms) == 1:
        return terms[0]
    return Sym("add", (const,) + _sort(terms))


def div(a: Dim, b: Dim, where: str = "reshape", if_empty: Optional[int] = None) -> Dim:
    """a / b where b must divide a exactly (checked at run time when symbolic). if_empty: the
    quotient when a and b are both 0, for splits of an empty axis where any value would do;
    None makes 0 / 0 an error, as numpy's reshape does."""
    if isinstance(b, int) and b == 1:
        return a
    if isinstance(a, int) and isinstance(b, int):
        if a == b == 0 and if_empty is not None:
            return if_empty
        if b == 0 or a % b:
            raise ValueError(f"{where}: {a} is not divisible by {b}")
        return a // b
    # cancel common factors of products
    num_c, num_f = (a, []) if isinstance(a, int) else \
        ((a.args[0], list(a.args[1:])) if a.op == "mul" else (1, [a]))
    den_c, den_f = (b, []) if isinstance(b, int) else \
        ((b.args[0], list(b.args[1:])) if b.op == "mul" else (1, [b]))
    rest = []
    for f in den_f:
        if f in num_f:
            num_f.remove(f)
        else:
            rest.append(f)
    if not rest and den_c and num_c % den_c == 0:
        return mul(num_c // den_c, *num_f)
    empty = () if if_empty is None else (if_empty,)
    return Sym("div", (mul(num_c, *num_f), mul(den_c, *rest)) + empty)


# Constraints found while inferring a node's shape whose result is static although an operand is
# symbolic (a None batch broadcast against 3 gives 3, but only if the run-time extent is 1 or 3).
# Node construction collects them; generated code checks them before running anything.
_sinks: list = []


class Check(tuple):
    """(kind, a, b, where): kind 'bcast' (a broadcasts with b) or 'same' (a == b)."""
    __slots__ = ()


@contextlib.contextmanager
def collecting_checks():
    sink: list = []
    _sinks.append(sink)
    try:
        yield sink
    finally:
        _sinks.pop()


def _require(kind: str, a: Dim, b: Dim, where: str) -> None:
    if _sinks:
        _sinks[-1].append(Check((kind, a, b, where)))


def bcast(a: Dim, b: Dim, where: str = "broadcast") -> Dim:
    """The extent numpy broadcasting gives two extents; raises when statically incompatible."""
    if a == b:
        return a
    if isinstance(a, int) and isinstance(b, int):
        if a == 1:
            return b
        if b == 1:
            return a
        raise ValueError(f"{where}: dimensions {a} and {b} do not broadcast")
    if a == 1:
        return b
    if b == 1:
        return a
    if isinstance(a, int) or isinstance(b, int):
        _require("bcast", a, b, where)
        return a if isinstance(a, int) else b
    # n-ary, flat and without repeats (broadcasting is associative, commutative, idempotent):
    # an unrolled loop that broadcasts its state against the same extent at every step keeps
    # one small extent instead of one that doubles per step
    terms = set()
    for d in (a, b):
        terms.update(d.args if d.op == "bcast" else (d,))
    return terms.pop() if len(terms) == 1 else Sym("bcast", _sort(terms))


def same(a: Dim, b: Dim, where: str) -> Dim:
    """An extent that two operands must share (matrix product depth, concat side dims, ...).
    `where` is the whole error message ("dot: contracted dimensions differ")."""
    if a == b:
        return a
    if isinstance(a, int) and isinstance(b, int):
        raise ValueError(f"{where}: {a} vs {b}")
    _require("same", a, b, where)
    return a if isinstance(a, int) or (isinstance(b, Sym) and a.key() <= b.key()) else b


def slice_len(n: Dim, start, stop, step: int) -> Dim:
    """len(range(n)[start:stop:step])."""
    if isinstance(n, int):
        return len(range(n)[start:stop:step])
    if start is None and stop is None and step == 1 and n.op == "var":
        # the whole of an extent (x[:, 0] of ones_like: the same extent, so that x * it is x);
        # not of other expressions, which may be negative (arange clamps spans this way)
        return n
    return Sym("slice", (n, start, stop, step))


def evaluate(d: Dim, env: Callable[[Sym], int]) -> int:
    """Value of a dimension given the values of its variables; raises ValueError like the
    run-time checks of generated code do."""
    if isinstance(d, int):
        return d
    op, args = d.op, d.args
    if op == "var":
        return env(d)
    vals = [evaluate(a, env) if isinstance(a, (int, Sym)) else a for a in args]
    if op == "mul":
        out = 1
        for v in vals:
            out *= v
        return out
    if op == "add":
        return sum(vals)
    if op == "div":
        if vals[0] == vals[1] == 0 and len(vals) == 3:
            return vals[2]
        if vals[1] == 0 or vals[0] % vals[1]:
            raise ValueError(f"reshape: {vals[0]} elements do not divide into {vals[1]}")
        return vals[0] // vals[1]
    if op == "bcast":
        out = vals[0]
        for v in vals[1:]:
            if out != v and out != 1 and v != 1:
                raise ValueError(f"broadcast: dimensions {out} and {v} do not broadcast")
            out = v if out == 1 else out
        return out
    if op == "slice":
        return len(range(vals[0])[slice(vals[1], vals[2], vals[3])])
    raise AssertionError(op)


def subst(d: Dim, fn: Callable[[Sym], Dim]) -> Dim:
    """Rebuild a dimension with each variable replaced by fn(var), re-simplifying."""
    if isinstance(d, int):
        return d
    if d.op == "var":
        return fn(d)
    args = [subst(a, fn) if isinstance(a, (int, Sym)) and not isinstance(a, bool) else a
            for a in d.args]
    if d.op == "mul":
        return mul(*args)
    if d.op == "add":
        return add(*args)
    if d.op == "div":
        return div(*args[:2], if_empty=args[2] if len(args) == 3 else None)
    if d.op == "bcast":
        return functools.reduce(bcast, args)
    if d.op == "slice":
        return slice_len(args[0], *d.args[1:])
    raise AssertionError(d.op)


def size(shape: Iterable[Dim]) -> Dim:
    return mul(*shape)


def to_keras(shape: Shape) -> tuple:
    """Keras's int_shape view: None for every symbolic dimension."""
    return tuple(d if isinstance(d, int) else None for d in shape)


def fmt(shape: Shape) -> str:
    return "(" + ", ".join(str(d) if isinstance(d, int) else "None" for d in shape) + \
        ("," if len(shape) == 1 else "") + ")"


def broadcast_shapes(*shapes: Shape, where: str = "broadcast") -> Shape:
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(rank):
        d: Dim = 1
        for s in shapes:
            j = i - (rank - len(s))
            if j >= 0:
                try:
                    d = bcast(d, s[j], where)
                except ValueError:
                    raise ValueError(f"{where}: shapes {', '.join(fmt(s) for s in shapes)} "
                                     f"do not broadcast") from None
        out.append(d)
    return tuple(out)
