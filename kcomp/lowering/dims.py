"""Run-time extents in generated code: each symbolic dimension gets a slot d[i], computed once
per call in dependency order by the prologue, with the shape checks of the graph."""
from __future__ import annotations

from typing import Dict, List

from ..ir import shapes as S
from .names import Code, c_string, int_lit


class DimTable:
    def __init__(self):
        self.slots: Dict[S.Sym, int] = {}
        self.lines: List[Code] = []

    def __len__(self):
        return len(self.slots)

    def expr(self, d: S.Dim) -> Code:
        """C expression of a dimension: a literal or d[slot]."""
        if isinstance(d, int):
            return int_lit(d)
        slot = self.slots.get(d)
        if slot is None:
            value = self._compute(d)
            slot = len(self.slots)
            self.slots[d] = slot
            self.lines.extend(value(Code(f"d[{slot}]")))
        return Code(f"d[{slot}]")

    def computed(self, code: Code) -> S.Sym:
        """A run-time integer computed by a C expression (over other slots), as a dimension."""
        sym = S.var(("code", str(code)))
        if sym not in self.slots:
            self.slots[sym] = len(self.slots)
            self.lines.append(Code(f"d[{self.slots[sym]}] = {code};"))
        return sym

    def _compute(self, d: S.Sym):
        op, args = d.op, d.args
        if op == "var":
            kind, k, j = args[0]
            assert kind == "in", args
            return lambda out: [Code(f"{out} = c->inputs[{int(k)}].shape[{int(j)}];")]
        sub = [self.expr(a) if isinstance(a, (int, S.Sym)) and not isinstance(a, bool) else a
               for a in args]
        if op == "mul":
            return lambda out: [Code(f"{out} = {' * '.join(sub)};")]
        if op == "add":
            return lambda out: [Code(f"{out} = {' + '.join(sub)};")]
        if op == "div":
            a, b = sub[:2]
            msg = c_string("reshape: the element count does not divide evenly")
            fail = f"if ({b} == 0 || {a} % {b} != 0) return kc::fail_dims(c, {msg}, {a}, {b});"
            if len(sub) == 2:
                return lambda out: [Code(fail), Code(f"{out} = {a} / {b};")]
            # 0 / 0 has a value: an empty axis split by an empty extent (shapes.div)
            return lambda out: [Code(f"if ({a} != 0 || {b} != 0) {{ {fail} }}"),
                                Code(f"{out} = {b} == 0 ? {sub[2]} : {a} / {b};")]
        if op == "bcast":  # n-ary: extents folded left to right
            msg = c_string("broadcast: dimensions do not broadcast")
            return lambda out: [Code(f"{out} = {sub[0]};")] + [
                Code(f"if (kc::bcast({out}, {b}) < 0) return kc::fail_dims(c, {msg}, {out}, {b});"
                     f" else {out} = kc::bcast({out}, {b});") for b in sub[1:]]
        if op == "slice":
            n = sub[0]
            start, stop, step = args[1:]
            lit = lambda v: int_lit(0 if v is None else v)  # noqa: E731
            has = lambda v: Code("0" if v is None else "1")  # noqa: E731
            return lambda out: [Code(f"{out} = kc::slice_len({n}, {lit(start)}, {has(start)}, "
                                     f"{lit(stop)}, {has(stop)}, {int_lit(step)});")]
        raise AssertionError(op)

    def check(self, kind: str, a: S.Dim, b: S.Dim, where: str) -> None:
        ea, eb = self.expr(a), self.expr(b)
        if kind == "same":
            msg = c_string(where)
            self.lines.append(Code(f"if ({ea} != {eb}) return kc::fail_dims(c, {msg}, {ea}, {eb});"))
        else:
            msg = c_string(f"{where}: dimensions do not broadcast")
            self.lines.append(Code(f"if (!({ea} == {eb} || {ea} == 1 || {eb} == 1)) "
                                   f"return kc::fail_dims(c, {msg}, {ea}, {eb});"))
