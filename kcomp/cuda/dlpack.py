"""Zero-copy import of GPU arrays through DLPack (`x.__dlpack__()`, unversioned capsules)."""
from __future__ import annotations

import ctypes

import numpy as np


class _Device(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _Device), ("ndim", ctypes.c_int32),
                ("dtype", _DType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


class _Managed(ctypes.Structure):
    _fields_ = [("dl_tensor", _DLTensor), ("manager_ctx", ctypes.c_void_p),
                ("deleter", ctypes.c_void_p)]


_CODES = {0: "i", 1: "u", 2: "f", 6: "b"}  # kDLInt, kDLUInt, kDLFloat, kDLBool

_get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_get_pointer.restype = ctypes.c_void_p
_get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def from_dlpack(x):
    """A DeviceArray viewing x's GPU memory. The capsule is kept (unconsumed) as the array's
    owner, so its deleter runs when the array goes."""
    from .runtime import DeviceArray, check_c_contiguous
    capsule = x.__dlpack__(stream=1)  # ordered with the legacy default stream kcomp uses
    t = _Managed.from_address(_get_pointer(capsule, b"dltensor")).dl_tensor
    if t.device.device_type != 2:
        raise ValueError("kcomp: a DLPack array on a CUDA device was expected")
    kind = _CODES.get(t.dtype.code)
    if kind is None or t.dtype.lanes != 1:
        raise TypeError(f"kcomp cannot take a DLPack array of type code {t.dtype.code}")
    dtype = np.dtype("?" if kind == "b" else f"{kind}{t.dtype.bits // 8}")
    shape = tuple(t.shape[i] for i in range(t.ndim))
    if t.strides:
        check_c_contiguous(shape, [t.strides[i] for i in range(t.ndim)])
    return DeviceArray(shape, dtype, ptr=(t.data or 0) + t.byte_offset, owner=(capsule, x))
