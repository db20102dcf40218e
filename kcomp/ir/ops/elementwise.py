"""Elementwise ops: one output element from the same-index elements of broadcast inputs.

Inputs of an elementwise node share one dtype (kcomp.ir.build inserts casts), so a fused loop
never mixes types. Each op's native twin is a scalar function or expression in
csrc/include/kcomp/rt.h, chosen by kcomp/lowering/scalar.py; the two must agree. float16 is
computed in float32 and rounded once per op, which is what numpy does.
"""
from __future__ import annotations

import numpy as np

from .. import build as B
from .. import dtypes as D
from .. import shapes as S
from ..autodiff import defgrad, no_gradient, sum_to
from ..graph import TensorType
from ..registry import register, shape_error

UNARY = {}    # name -> numpy function of (x, attrs)
BINARY = {}   # name -> numpy function of (a, b)
PREDICATES = {"equal", "not_equal", "greater", "greater_equal", "less", "less_equal"}
FLOAT_ONLY = {"sqrt", "exp", "log", "sin", "cos", "tanh", "sigmoid", "hard_sigmoid", "softplus",
              "softsign", "relu", "elu", "truediv"}
LOGICAL = {"logical_and", "logical_or", "logical_not"}


def _broadcast_infer(name, out_bool=False):
    def infer(types, attrs):
        dtypes = {t.dtype for t in types[-2:]} if name == "select" else {t.dtype for t in types}
        if len(dtypes) != 1:
            raise shape_error(name, f"operands must share one dtype, got "
                              f"{', '.join(t.dtype.name for t in types)}", *types)
        try:
            dims = S.broadcast_shapes(*(t.dims for t in types), where=name)
        except ValueError as e:
            raise shape_error(name, str(e).split(": ", 1)[-1], *types) from None
        dt = D.bool_ if out_bool else types[-1].dtype
        if name in FLOAT_ONLY and not dt.is_float:
            raise shape_error(name, f"needs a float operand, got {dt.name}", *types)
        if name in LOGICAL and not dt.is_bool:
            raise shape_error(name, f"needs bool operands, got {dt.name}", *types)
        return [TensorType(dt, dims)]
    return infer


def _compute(fn, arrays, out_dtype):
    """Run fn in numpy the way native code computes: float16 in float32, one rounding at the end."""
    arrays = [a.astype(np.float32) if a.dtype == np.float16 else a for a in arrays]
    with np.errstate(all="ignore"):
        r = fn(*arrays)
    return np.asarray(r).astype(out_dtype.np, copy=False)


def _reference(fn, with_attrs=False):
    def ref(values, attrs, out_types):
        f = (lambda *a: fn(*a, attrs)) if with_attrs else fn
        return [np.broadcast_to(_compute(f, values, out_types[0].dtype), out_types[0].dims)]
    return ref


def unary(name, fn, exact=False, with_attrs=False, doc="", infer=None):
    UNARY[name] = fn
    register(name, "elementwise", infer or _broadcast_infer(name, name == "logical_not"),
             _reference(fn, with_attrs), exact=exact, doc=doc, arity=1)


def binary(name, fn, exact=False, doc=""):
    BINARY[name] = fn
    register(name, "elementwise", _broadcast_infer(name, name in PREDICATES),
             _reference(fn), exact=exact, doc=doc, arity=2)


# ---- numpy twins of the scalar functions in rt.h ------------------------------------------------

def _sigmoid(x):
    return np.where(x >= 0, 1 / (1 + np.exp(-x)), np.exp(x) / (1 + np.exp(x)))


def _hard_sigmoid(x):
    y = x * x.dtype.type(0.2) + x.dtype.type(0.5)
    return np.where(y < 0, 0, np.where(y > 1, 1, y)).astype(x.dtype)


def _relu(x, attrs):
    """Keras 2.3.1's relu(x, alpha, max_value, threshold), step by step."""
    t = x.dtype.type
    alpha, max_value, threshold = attrs["alpha"], attrs["max_value"], attrs["threshold"]
    if threshold != 0:
        y = x * (x > t(threshold)).astype(x.dtype)
    else:
        y = np.maximum(x, t(0))
    if max_value is not None:
        y = np.minimum(np.maximum(y, t(0)), t(max_value))
    if alpha != 0:
        y = y - t(alpha) * np.maximum(-x + t(threshold), t(0))
    return y


def _int_pow(a, b):
    """Integer power with wrap-around; a negative exponent gives trunc(1 / a**-b)."""
    if a.dtype.kind not in "iu":
        return np.power(a, b)
    neg = b < 0
    r = np.power(a, np.where(neg, 0, b).astype(b.dtype))
    if neg.any():
        odd = (b % 2) != 0
        r = np.where(neg, np.where(a == 1, 1, np.where(a == -1, np.where(odd, -1, 1), 0)), r)
    return r.astype(a.dtype)


def _int_floordiv(a, b):
    if a.dtype.kind not in "iu":
        return np.floor_divide(a, b)
    return np.where(b == 0, 0, np.floor_divide(a, np.where(b == 0, 1, b)))


def _int_mod(a, b):
    if a.dtype.kind not in "iu":
        return np.mod(a, b)
    return np.where(b == 0, 0, np.mod(a, np.where(b == 0, 1, b)))


unary("neg", lambda x: np.negative(x) if x.dtype != bool else ~x, exact=True)
unary("abs", np.abs, exact=True)
unary("square", np.square, exact=True)
unary("sqrt", np.sqrt, exact=True)
unary("exp", np.exp)
unary("log", np.log)
unary("round", np.round, exact=True, doc="round half to even, like numpy and TensorFlow")
unary("sign", np.sign, exact=True)
unary("sin", np.sin)
unary("cos", np.cos)
unary("tanh", np.tanh)
unary("sigmoid", _sigmoid)
unary("hard_sigmoid", _hard_sigmoid, exact=True)
unary("softplus", lambda x: np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x))))
unary("softsign", lambda x: x / (1 + np.abs(x)), exact=True)
unary("relu", _relu, exact=True, with_attrs=True, doc="attrs: alpha, max_value, threshold")
unary("elu", lambda x, a: np.where(x > 0, x, x.dtype.type(a["alpha"]) * np.expm1(x)),
      with_attrs=True, doc="attrs: alpha")
unary("logical_not", np.logical_not, exact=True)
unary("identity", lambda x: x.copy(), exact=True, doc="a new tensor with the same value")
unary("cast", lambda x, a: x.astype(a["dtype"].np), exact=True, with_attrs=True,
      doc="attrs: dtype. numpy astype semantics",
      infer=lambda types, attrs: [TensorType(attrs["dtype"], types[0].dims)])

binary("add", np.add, exact=True)
binary("sub", np.subtract, exact=True)
binary("mul", np.multiply, exact=True)
binary("truediv", np.true_divide, exact=True)
binary("floordiv", _int_floordiv, exact=True, doc="Python floor division; x // 0 is 0 for ints")
binary("mod", _int_mod, exact=True, doc="Python modulo (sign of the divisor); x % 0 is 0 for ints")
binary("pow", _int_pow)
binary("maximum", np.maximum, exact=True, doc="NaN-propagating, like numpy")
binary("minimum", np.minimum, exact=True, doc="NaN-propagating, like numpy")
binary("equal", np.equal, exact=True)
binary("not_equal", np.not_equal, exact=True)
binary("greater", np.greater, exact=True)
binary("greater_equal", np.greater_equal, exact=True)
binary("less", np.less, exact=True)
binary("less_equal", np.less_equal, exact=True)
binary("logical_and", np.logical_and, exact=True)
binary("logical_or", np.logical_or, exact=True)


def _select_infer(types, attrs):
    cond = types[0]
    if not cond.dtype.is_bool:
        raise shape_error("select", f"condition must be bool, got {cond.dtype.name}", *types)
    return _broadcast_infer("select")(types, attrs)


register("select", "elementwise", _select_infer,
         _reference(lambda c, a, b: np.where(c, a, b)), exact=True,
         doc="where(cond, a, b) with numpy broadcasting", arity=3)

unary("stop_gradient", lambda x: x.copy(), exact=True,
      doc="the identity forward; gradients (when kcomp has them) do not flow through it")


# ---- gradients ------------------------------------------------------------------------------
# Rules see the forward node (inputs x, a, b; output y) and the output's cotangent g; binary
# ops sum each operand's gradient over the axes it was broadcast along (sum_to).

def _unary_grad(*names):
    def deco(fn):
        defgrad(*names)(lambda node, grads: [fn(node.inputs[0], node.outputs[0], grads[0],
                                                node.attrs)])
        return fn
    return deco


def _binary_grad(*names):
    def deco(fn):
        def rule(node, grads):
            parts = fn(*node.inputs, node.outputs[0], grads[0])
            return [None if p is None else sum_to(p, t.dims) for p, t in zip(parts, node.inputs)]
        defgrad(*names)(rule)
        return fn
    return deco


def _mul(a, b):
    return B.binary("mul", a, b)


def _div(a, b):
    return B.binary("truediv", a, b)


def _mask(cond, g):
    """g where cond, else 0."""
    return B.select(cond, g, 0)


no_gradient("round", "sign", "floordiv")
_unary_grad("identity")(lambda x, y, g, a: g)
_unary_grad("stop_gradient")(lambda x, y, g, a: None)
_unary_grad("cast")(lambda x, y, g, a: B.cast(g, x.type.dtype) if x.type.dtype.is_float
                    else None)
_unary_grad("neg")(lambda x, y, g, a: B.unary("neg", g))
_unary_grad("abs")(lambda x, y, g, a: _mul(g, B.unary("sign", x)))
_unary_grad("square")(lambda x, y, g, a: _mul(g, _mul(x, 2)))
_unary_grad("sqrt")(lambda x, y, g, a: _div(_mul(g, 0.5), y))
_unary_grad("exp")(lambda x, y, g, a: _mul(g, y))
_unary_grad("log")(lambda x, y, g, a: _div(g, x))
_unary_grad("sin")(lambda x, y, g, a: _mul(g, B.unary("cos", x)))
_unary_grad("cos")(lambda x, y, g, a: B.unary("neg", _mul(g, B.unary("sin", x))))
_unary_grad("tanh")(lambda x, y, g, a: _mul(g, B.binary("sub", 1, B.unary("square", y))))
_unary_grad("sigmoid")(lambda x, y, g, a: _mul(g, _mul(y, B.binary("sub", 1, y))))
_unary_grad("softplus")(lambda x, y, g, a: _mul(g, B.unary("sigmoid", x)))
_unary_grad("softsign")(lambda x, y, g, a: _div(
    g, B.unary("square", B.binary("add", 1, B.unary("abs", x)))))
_unary_grad("elu")(lambda x, y, g, a: _mul(g, B.select(
    B.binary("greater", x, 0), 1, B.binary("add", y, a["alpha"]))))


@_unary_grad("hard_sigmoid")
def _hard_sigmoid_grad(x, y, g, attrs):
    # clip(0.2 x + 0.5, 0, 1): the slope inside the clip bounds (inclusive, as TensorFlow's
    # clip_by_value passes the gradient at the bounds)
    v = B.binary("add", _mul(x, 0.2), 0.5)
    inside = B.binary("logical_and", B.binary("greater_equal", v, 0), B.binary("less_equal", v, 1))
    return _mask(inside, _mul(g, 0.2))


@_unary_grad("relu")
def _relu_grad(x, y, g, attrs):
    """The slope of each step of _relu: the linear part where it passes x (TensorFlow's relu
    gradient is 0 at x == 0), zero where max_value clips, alpha below the threshold."""
    alpha, max_value, threshold = attrs["alpha"], attrs["max_value"], attrs["threshold"]
    # a plain relu's slope reads its output (y > 0 where x > 0), which the next layer keeps
    # anyway, so the pre-activation need not be stored for the backward pass
    v = y if alpha == 0 and threshold == 0 else x
    passed = B.binary("greater", v, threshold)
    if max_value is not None:
        passed = B.binary("logical_and", passed, B.binary("less", v, max_value))
    slope = _mask(passed, g)
    if alpha != 0:
        slope = B.binary("add", slope, _mask(B.binary("less", x, threshold), _mul(g, alpha)))
    return slope


_binary_grad("add")(lambda a, b, y, g: (g, g))
_binary_grad("sub")(lambda a, b, y, g: (g, B.unary("neg", g)))
_binary_grad("mul")(lambda a, b, y, g: (_mul(g, b), _mul(g, a)))
_binary_grad("truediv")(lambda a, b, y, g: (_div(g, b), B.unary("neg", _div(_mul(g, y), b))))
_binary_grad("mod")(lambda a, b, y, g: (g, B.unary("neg", _mul(g, B.binary("floordiv", a, b)))))
_binary_grad("maximum")(lambda a, b, y, g: (_mask(B.binary("greater_equal", a, b), g),
                                            _mask(B.binary("less", a, b), g)))
_binary_grad("minimum")(lambda a, b, y, g: (_mask(B.binary("less_equal", a, b), g),
                                            _mask(B.binary("greater", a, b), g)))


@_binary_grad("pow")
def _pow_grad(a, b, y, g):
    # d/da = b a^(b-1); d/db = y log(a), taken as 0 where a <= 0 (TensorFlow's convention)
    da = _mul(g, _mul(b, B.binary("pow", a, B.binary("sub", b, 1))))
    positive = B.binary("greater", a, 0)
    log_a = B.unary("log", B.select(positive, a, 1))
    return da, _mask(positive, _mul(g, _mul(y, log_a)))


@defgrad("select")
def _select_grad(node, grads):
    cond, a, b = node.inputs
    g = grads[0]
    return [None, sum_to(_mask(cond, g), a.dims),
            sum_to(B.select(cond, 0, g), b.dims)]
