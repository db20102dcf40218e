"""Reductions and scans. axis: None (all), an int, or a list of ints; keepdims keeps reduced
axes as size 1. Integer inputs keep their dtype (mean divides like C), bool inputs are cast."""
from __future__ import annotations

from ..ir import build as B

__all__ = ["max", "min", "sum", "prod", "mean", "var", "std", "any", "all", "logsumexp", "argmax",
           "argmin", "cumsum", "cumprod"]


def max(x, axis=None, keepdims=False): return B.reduce("max", x, axis, keepdims)  # noqa: A001
def min(x, axis=None, keepdims=False): return B.reduce("min", x, axis, keepdims)  # noqa: A001
def sum(x, axis=None, keepdims=False): return B.reduce("sum", x, axis, keepdims)  # noqa: A001
def prod(x, axis=None, keepdims=False): return B.reduce("prod", x, axis, keepdims)
def mean(x, axis=None, keepdims=False): return B.reduce("mean", x, axis, keepdims)
def var(x, axis=None, keepdims=False): return B.reduce("var", x, axis, keepdims)
def std(x, axis=None, keepdims=False): return B.reduce("std", x, axis, keepdims)
def any(x, axis=None, keepdims=False): return B.reduce("any", x, axis, keepdims)  # noqa: A001
def all(x, axis=None, keepdims=False): return B.reduce("all", x, axis, keepdims)  # noqa: A001


def logsumexp(x, axis=None, keepdims=False):
    return B.reduce("logsumexp", x, axis, keepdims)


def _arg(op, x, axis):
    from ..ir.registry import apply1
    x = B.as_tensor(x)
    if x.type.dtype.is_bool:
        x = B.cast(x, "int8")
    return apply1(op, [x], {"axis": B.axis_arg(op, x, int(axis))})


def argmax(x, axis=-1): return _arg("argmax", x, axis)
def argmin(x, axis=-1): return _arg("argmin", x, axis)


def _scan(op, x, axis):
    from ..ir.registry import apply1
    x = B.as_tensor(x)
    if x.type.dtype.is_bool:
        x = B.cast(x, "int32")
    return apply1(op, [x], {"axis": B.axis_arg(op, x, int(axis))})


def cumsum(x, axis=0): return _scan("cumsum", x, axis)
def cumprod(x, axis=0): return _scan("cumprod", x, axis)
