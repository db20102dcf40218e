"""A CUDA artifact's functions from Python, run through the artifact's own C API (lib<name>.so,
templates/aot/model.cpp.j2): create() checks the GPU and puts the weights on it; a call checks
its inputs, copies them to the GPU, runs, and copies the outputs back into numpy arrays."""
from __future__ import annotations

import ctypes
import weakref
from typing import Dict

import numpy as np

from ..ir.dtypes import BY_CODE, as_dtype


class CudaModel:
    """The artifact library loaded and one model created from it (destroyed with this object)."""

    def __init__(self, lib_path: str, name: str, error_type):
        from ..cuda import runtime as rt
        from ..cuda.executable import host_input
        self.rt, self.host_input = rt, host_input
        lib = ctypes.CDLL(lib_path)
        fn = lambda suffix, res, args: _declare(lib, f"{name}_{suffix}", res, args)  # noqa: E731
        p, i32 = ctypes.c_void_p, ctypes.c_int32
        fn("create", p, [ctypes.c_char_p])
        fn("destroy", None, [p])
        fn("error", ctypes.c_char_p, [p])
        for call in ("output_shapes", "run"):
            fn(call, i32, [p, i32, ctypes.POINTER(rt.Tensor), ctypes.POINTER(rt.Tensor)])
        self.lib, self.name = lib, name
        self.handle = getattr(lib, f"{name}_create")(None)
        if not self.handle:
            raise error_type(f"cannot create the CUDA artifact {name!r}: "
                             f"{self._error()}")
        weakref.finalize(self, getattr(lib, f"{name}_destroy"), self.handle)

    def _error(self) -> str:
        return (getattr(self.lib, f"{self.name}_error")(None) or b"").decode(errors="replace")

    def call(self, index: int, spec: dict, inputs) -> list:
        rt = self.rt
        n = len(spec["inputs"])
        if len(inputs) != n:
            raise ValueError(f"{spec['name']} expects {n} input{'s' if n != 1 else ''}, "
                             f"got {len(inputs)}")
        held, ins = [], (rt.Tensor * max(1, n))()
        for t, x, s in zip(ins, inputs, spec["inputs"]):
            a = self.host_input(x, np.dtype(s["dtype"]), f"{spec['name']}: input {s['name']!r}")
            held.append(a)
            _fill(t, a, as_dtype(a.dtype).code)
        outs = (rt.Tensor * max(1, len(spec["outputs"])))()
        self._check(getattr(self.lib, f"{self.name}_output_shapes")(self.handle, index, ins, outs))
        results = []
        for t in outs[:len(spec["outputs"])]:
            a = np.empty(tuple(t.shape[:t.rank]), BY_CODE[t.dtype].np)
            _fill(t, a, t.dtype)
            results.append(a)
        self._check(getattr(self.lib, f"{self.name}_run")(self.handle, index, ins, outs))
        return results

    def _check(self, status: int) -> None:
        if status:
            exc = {1: ValueError, 2: IndexError, 3: MemoryError}.get(status, RuntimeError)
            raise exc(self._error())


def _declare(lib, symbol: str, restype, argtypes) -> None:
    f = getattr(lib, symbol)
    f.restype, f.argtypes = restype, argtypes


def _fill(t, a: np.ndarray, code: int) -> None:
    t.data = a.ctypes.data if a.size else None
    t.dtype, t.rank = code, a.ndim
    for d in range(a.ndim):
        t.shape[d], t.strides[d] = a.shape[d], a.strides[d] // a.itemsize if a.itemsize else 0


def cuda_functions(model: CudaModel, specs) -> Dict[str, "object"]:
    """name -> a callable running that function on the model (inputs -> numpy outputs)."""
    return {s["name"]: (lambda inputs, i=i, s=s: model.call(i, s, inputs))
            for i, s in enumerate(specs)}
