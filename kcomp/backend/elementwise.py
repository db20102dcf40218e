"""Elementwise math and comparisons (Keras 2.3.1 semantics, TensorFlow backend)."""
from __future__ import annotations

import numpy as np

from ..ir import build as B
from ..ir import dtypes as D

__all__ = ["square", "abs", "exp", "log", "round", "sign", "sin", "cos", "sqrt", "pow", "clip",
           "equal", "not_equal", "greater", "greater_equal", "less", "less_equal",
           "maximum", "minimum", "switch"]


def square(x): return B.unary("square", x)
def abs(x): return B.unary("abs", x)  # noqa: A001
def exp(x): return B.unary("exp", x)
def log(x): return B.unary("log", x)
def round(x): return B.unary("round", x)  # noqa: A001
def sign(x): return B.unary("sign", x)
def sin(x): return B.unary("sin", x)
def cos(x): return B.unary("cos", x)


def sqrt(x):
    """Keras clips negative inputs to 0 before the square root."""
    x = B.as_tensor(x)
    if not x.type.dtype.is_float:
        x = B.cast(x, B.floatx_dtype())
    return B.unary("sqrt", B.binary("maximum", x, 0))


def pow(x, a):  # noqa: A001
    return B.binary("pow", x, a)


def clip(x, min_value, max_value):
    x = B.as_tensor(x)
    if isinstance(min_value, (int, float)) and isinstance(max_value, (int, float)) and \
            max_value < min_value:
        max_value = min_value
    if min_value is not None and not (x.type.dtype.is_int and min_value == -np.inf):
        x = B.binary("maximum", x, min_value)
    if max_value is not None and not (x.type.dtype.is_int and max_value == np.inf):
        x = B.binary("minimum", x, max_value)
    return x


def equal(x, y): return B.binary("equal", x, y)
def not_equal(x, y): return B.binary("not_equal", x, y)
def greater(x, y): return B.binary("greater", x, y)
def greater_equal(x, y): return B.binary("greater_equal", x, y)
def less(x, y): return B.binary("less", x, y)
def less_equal(x, y): return B.binary("less_equal", x, y)
def maximum(x, y): return B.binary("maximum", x, y)
def minimum(x, y): return B.binary("minimum", x, y)


def switch(condition, then_expression, else_expression):
    """where(condition, then, else). A condition of lower rank selects along the leading axes
    (its shape is padded with 1s on the right), as Keras's TensorFlow backend does."""
    if callable(then_expression):
        then_expression = then_expression()
    if callable(else_expression):
        else_expression = else_expression()
    if not B.is_tensor(condition):
        return then_expression if condition else else_expression
    cond = B.cast(condition, D.bool_)
    ranks = [t.ndim for t in (then_expression, else_expression) if B.is_tensor(t)]
    expr_ndim = max(ranks) if ranks else 0
    if cond.ndim > expr_ndim:
        raise ValueError("Rank of `condition` should be less than or equal to rank of "
                         f"`then_expression` and `else_expression`. ndim(condition)={cond.ndim}, "
                         f"ndim(then_expression)={expr_ndim}")
    if 0 < cond.ndim < expr_ndim:
        cond = B.reshape(cond, cond.dims + (1,) * (expr_ndim - cond.ndim))
    return B.select(cond, then_expression, else_expression)
