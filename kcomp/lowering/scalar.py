"""Lowering rules of the elementwise ops: one C++ expression per op, over compute-type values.

Operands arrive as Code in the compute type of their dtype (float for float16); the result is in
the compute type of the output dtype. Scalar semantics live in csrc/include/kcomp/rt.h.
"""
from __future__ import annotations

from typing import Callable, Dict, List

from ..ir.dtypes import DType
from .names import Code, literal

Rule = Callable[[List[Code], dict, DType, DType], Code]  # (args, attrs, in dtype, out dtype)
RULES: Dict[str, Rule] = {}


def rule(*names):
    def deco(fn):
        for n in names:
            RULES[n] = fn
        return fn
    return deco


def _infix(op):
    return lambda a, attrs, i, o: Code(f"({a[0]} {op} {a[1]})")


def _call(fn):
    return lambda a, attrs, i, o: Code(f"kc::{fn}({', '.join(a)})")


for _n, _op in (("add", "+"), ("sub", "-"), ("mul", "*"), ("equal", "=="), ("not_equal", "!="),
                ("greater", ">"), ("greater_equal", ">="), ("less", "<"), ("less_equal", "<="),
                ("logical_and", "&&"), ("logical_or", "||")):
    RULES[_n] = _infix(_op)
for _n in ("abs", "square", "sqrt", "exp", "log", "sin", "cos", "tanh", "sigmoid",
           "hard_sigmoid", "softplus", "softsign", "sign", "floordiv", "mod", "pow", "maximum",
           "minimum"):
    RULES[_n] = _call(_n)
RULES["round"] = _call("rint")
RULES["truediv"] = _infix("/")


@rule("neg")
def _neg(a, attrs, i, o):
    return Code(f"(({o.compute})(0 - {a[0]}))") if i.kind == "u" else Code(f"(-{a[0]})")


@rule("logical_not")
def _not(a, attrs, i, o):
    return Code(f"(!{a[0]})")


@rule("identity")
def _identity(a, attrs, i, o):
    return a[0]


@rule("stop_gradient")
def _stop_gradient(a, attrs, i, o):
    return a[0]


@rule("select")
def _select(a, attrs, i, o):
    return Code(f"({a[0]} ? {a[1]} : {a[2]})")


@rule("relu")
def _relu(a, attrs, i, o):
    f = lambda v: literal(v, o)  # noqa: E731
    has_max = attrs["max_value"] is not None
    return Code(f"kc::relu({a[0]}, {f(attrs['alpha'])}, {f(attrs['max_value'] if has_max else 0)}, "
                f"{f(attrs['threshold'])}, {'true' if has_max else 'false'})")


@rule("elu")
def _elu(a, attrs, i, o):
    return Code(f"kc::elu({a[0]}, {literal(attrs['alpha'], o)})")


@rule("cast")
def _cast(a, attrs, i, o):
    if o.is_bool:
        return Code(f"({a[0]} != 0)")
    if o.name == "float16" and i.name != "float16":
        return Code(f"((float)(kc::f16)({a[0]}))")  # one rounding, straight to half
    return Code(f"(({o.compute})({a[0]}))")


def expression(op: str, args: List[Code], attrs: dict, in_dtype: DType, out_dtype: DType,
               loop_trig: bool = False) -> Code:
    """loop_trig: sin and cos as elementwise.j2's kernels call them (a fast pass, then a rerun
    of the range at arguments of 2^24 or more: kc::sin_loop in rt.h)."""
    if loop_trig and op in ("sin", "cos"):
        e = Code(f"kc::{op}_loop<FAST>({args[0]}, huge)")
    else:
        e = RULES[op](args, attrs, in_dtype, out_dtype)
    # numpy rounds float16 results after every op; so do we (casts round themselves)
    if out_dtype.name == "float16" and op not in ("cast", "identity", "select", "neg", "abs"):
        e = Code(f"kc::r16({e})")
    elif out_dtype.compute != "bool" and out_dtype.itemsize < 4 and out_dtype.is_int:
        e = Code(f"(({out_dtype.compute})({e}))")  # wrap narrow integer results
    return e
