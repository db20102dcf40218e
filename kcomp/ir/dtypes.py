"""Element types of the IR: names, numpy twins, C types and ABI codes in one table."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DType:
    name: str      # numpy / Keras spelling, e.g. "float32"
    code: int      # kc_dtype value in csrc/include/kcomp/abi.h
    ctype: str     # storage type in generated C++
    compute: str   # type values are held in inside fused kernels
    kind: str      # 'b' bool, 'i' signed int, 'u' unsigned int, 'f' float

    @property
    def np(self) -> np.dtype:
        return np.dtype(self.name)

    @property
    def itemsize(self) -> int:
        return self.np.itemsize

    @property
    def is_float(self) -> bool:
        return self.kind == "f"

    @property
    def is_int(self) -> bool:
        return self.kind in "iu"

    @property
    def is_bool(self) -> bool:
        return self.kind == "b"

    def __repr__(self) -> str:
        return self.name

    def __str__(self) -> str:
        return self.name


_TABLE = [
    DType("bool", 1, "bool", "bool", "b"),
    DType("int8", 2, "int8_t", "int8_t", "i"),
    DType("int16", 3, "int16_t", "int16_t", "i"),
    DType("int32", 4, "int32_t", "int32_t", "i"),
    DType("int64", 5, "int64_t", "int64_t", "i"),
    DType("uint8", 6, "uint8_t", "uint8_t", "u"),
    DType("uint16", 7, "uint16_t", "uint16_t", "u"),
    DType("uint32", 8, "uint32_t", "uint32_t", "u"),
    DType("uint64", 9, "uint64_t", "uint64_t", "u"),
    # float16 is stored as _Float16 and computed in float, rounded after each op like numpy.
    DType("float16", 10, "kc::f16", "float", "f"),
    DType("float32", 11, "float", "float", "f"),
    DType("float64", 12, "double", "double", "f"),
]
BY_NAME = {d.name: d for d in _TABLE}
BY_CODE = {d.code: d for d in _TABLE}  # by kc_dtype value
FLOATS = tuple(d for d in _TABLE if d.is_float)
INTS = tuple(d for d in _TABLE if d.is_int)

bool_ = BY_NAME["bool"]
int32 = BY_NAME["int32"]
int64 = BY_NAME["int64"]
float16 = BY_NAME["float16"]
float32 = BY_NAME["float32"]
float64 = BY_NAME["float64"]


def as_dtype(x) -> DType:
    """DType from a DType, a name ('float32'), a numpy dtype or a numpy scalar type."""
    if isinstance(x, DType):
        return x
    try:
        name = np.dtype(x).name
    except TypeError:
        raise TypeError(f"not a dtype: {x!r}") from None
    try:
        return BY_NAME[name]
    except KeyError:
        raise TypeError(f"kcomp does not support dtype {name!r}; supported: "
                        f"{', '.join(BY_NAME)}") from None


def result_type(*args) -> DType:
    """numpy 2 promotion: DTypes are strong, Python scalars weak (NEP 50)."""
    np_args = [a.np if isinstance(a, DType) else a for a in args]
    return as_dtype(np.result_type(*np_args))
