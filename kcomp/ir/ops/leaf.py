"""Leaves of a graph: placeholders (function inputs), variables (state) and constants."""
from __future__ import annotations

import numpy as np

from .. import shapes as S
from ..dtypes import DType, as_dtype
from ..graph import Tensor, TensorType, Variable
from ..registry import apply1, register


def _leaf_infer(types, attrs):
    return [attrs["type"]]


def _no_reference(op):
    def ref(values, attrs, out_types):
        raise RuntimeError(f"{op} has no value of its own; the interpreter feeds it")
    return ref


register("placeholder", "leaf", _leaf_infer, _no_reference("placeholder"),
         doc="A function input. attrs: type, sparse, default (array fed when the input is omitted)")
register("variable", "leaf", _leaf_infer, _no_reference("variable"),
         doc="State owned by a Variable tensor; its current value is bound at call time")
register("constant", "leaf", _leaf_infer, lambda v, a, t: [a["value"]], exact=True,
         doc="A literal array. attrs: type, value")


def placeholder(dtype: DType, shape, name: str | None = None, sparse: bool = False,
                default: np.ndarray | None = None) -> Tensor:
    """shape: ints and None (a fresh symbolic extent per None)."""
    dims = tuple(S.fresh() if d is None else _static_dim(d) for d in shape)
    _check_rank(name, len(dims))
    if default is not None:
        default = np.array(default, dtype=dtype.np)
        if any(not isinstance(d, int) for d in dims) or default.shape != dims:
            raise ValueError(f"placeholder {name!r}: a default value needs a static shape "
                             f"equal to the default's {default.shape}")
    attrs = {"type": TensorType(dtype, dims), "sparse": bool(sparse), "default": default}
    return apply1("placeholder", [], attrs, node_name=name)


def variable(value: np.ndarray, name: str) -> Variable:
    value = np.array(value, order="C", copy=True)
    _check_rank(name, value.ndim)
    as_dtype(value.dtype)  # rejects unsupported dtypes
    v = apply1("variable", [], {"type": TensorType(as_dtype(value.dtype), tuple(value.shape))},
               node_name=name, tensor_cls=Variable)
    v._value = value
    return v


def unset_variable(type_: TensorType, name: str) -> Variable:
    """A variable without a value yet: its creator sets one before anything reads it
    (kcomp/deferred.py)."""
    _check_rank(name, type_.ndim)
    return apply1("variable", [], {"type": type_}, node_name=name, tensor_cls=Variable)


def constant(value, dtype: DType | None = None, name: str | None = None) -> Tensor:
    arr = np.array(value, dtype=dtype.np if dtype is not None else None)
    dt = as_dtype(arr.dtype)
    arr = np.array(arr, order="C")  # a private, contiguous copy (rank 0 stays rank 0)
    _check_rank(name, arr.ndim)
    arr.flags.writeable = False
    return apply1("constant", [], {"type": TensorType(dt, tuple(arr.shape)), "value": arr},
                  node_name=name)


def _check_rank(name, rank: int) -> None:
    from ..registry import MAX_RANK
    if rank > MAX_RANK:
        raise ValueError(f"{name or 'tensor'}: rank {rank} exceeds kcomp's limit of {MAX_RANK}")


def _static_dim(d) -> int:
    d = int(d)
    if d < 0:
        raise ValueError(f"negative dimension {d}")
    return d
