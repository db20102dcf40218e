"""The only producer of text that reaches generated source.

Templates print `Code` values (and ints) only; the Jinja environment rejects anything else
(kcomp/lowering/render.py). Identifiers are made here from counters, literals from numbers, and
user text (tensor names) never becomes code: it can appear in comments, sanitized, and nowhere else.
"""
from __future__ import annotations

import math
import re

import numpy as np

from ..ir.dtypes import DType


class Code(str):
    """A fragment of C++ built by kcomp itself."""
    __slots__ = ()

    def fmt(self, *args, **kwargs) -> "Code":
        for a in list(args) + list(kwargs.values()):
            _check(a)
        return Code(str.format(self, *args, **kwargs))


def _check(a):
    if isinstance(a, str) and not isinstance(a, Code):
        raise TypeError(f"plain string {a!r} would reach generated code; build it with "
                        f"kcomp.lowering.names")
    if isinstance(a, float):
        raise TypeError("floats reach generated code only through names.literal()")


def join(sep: str, parts) -> Code:
    parts = list(parts)
    for p in parts:
        _check(p)
    return Code(sep.join(str(p) for p in parts))


def ident(prefix: str, n: int) -> Code:
    assert re.fullmatch(r"[a-z][a-z0-9_]*", prefix), prefix
    return Code(f"{prefix}{int(n)}")


def int_lit(v) -> Code:
    v = int(v)
    if -(1 << 31) <= v < (1 << 31):
        return Code(str(v))
    return Code(f"INT64_C({v})" if v >= -(1 << 63) else f"(INT64_C({v + 1}) - 1)")


def literal(value, dtype: DType) -> Code:
    """A C++ literal of `value` in dtype's compute type, exact (floats as hex literals)."""
    if dtype.is_bool:
        return Code("true" if bool(value) else "false")
    if dtype.is_int:
        v = int(value)
        if dtype.kind == "u":
            return Code(f"(({dtype.ctype}){v}ull)")
        if v == -(1 << 63):
            return Code("(INT64_MIN)")
        return Code(f"(({dtype.ctype}){v}ll)")
    ctype = dtype.compute
    suffix = "f" if ctype == "float" else ""
    v = float(np.asarray(value, dtype=dtype.np))  # round to the dtype first (float16 too)
    if math.isnan(v):
        return Code(f"__builtin_nan{suffix}(\"\")")
    if math.isinf(v):
        return Code(f"({'-' if v < 0 else ''}__builtin_inf{suffix}())")
    return Code(f"(({ctype}){v.hex()}{suffix})")


_UNSAFE = re.compile(r"[^A-Za-z0-9_.:\-+>()\[\],= ]")


def comment_text(text: str, limit: int = 80) -> Code:
    """Text made safe for a // comment: no newline, no backslash (a line continuation)."""
    return Code(_UNSAFE.sub("_", str(text))[:limit])


def c_string(text: str) -> Code:
    """A C string literal with every byte outside [A-Za-z0-9 ,.:_()=-] octal-escaped."""
    out = []
    for b in str(text).encode("utf-8"):
        c = chr(b)
        if c.isascii() and (c.isalnum() or c in " ,.:_()=-"):
            out.append(c)
        else:
            out.append(f"\\{b:03o}")
    return Code('"' + "".join(out) + '"')
