"""A CUDA artifact's functions from Python, run through the artifact's own C API (lib<name>.so,
templates/aot/model.cpp.j2): create() checks the GPU and puts the weights on it; a call checks
its inputs, copies them to the GPU, runs, and copies the outputs back into numpy arrays."""
from __future__ import annotations

import ctypes
import weakref

import numpy as np

from ..ir.dtypes import BY_CODE, as_dtype


class CudaModel:
    """The artifact library loaded and one model created from it (destroyed with this object)."""

    def __init__(self, lib_path: str, name: str, error_type):
        from ..cuda import runtime as rt
        from ..cuda.executable import host_input
        self.rt, self.host_input = rt, host_input
        lib = ctypes.CDLL(lib_path)

        def bind(suffix, restype, argtypes):
            f = getattr(lib, f"{name}_{suffix}")
            f.restype, f.argtypes = restype, argtypes
            return f
        p, i32, tensors = ctypes.c_void_p, ctypes.c_int32, ctypes.POINTER(rt.Tensor)
        self._error = bind("error", ctypes.c_char_p, [p])
        self._shapes = bind("output_shapes", i32, [p, i32, tensors, tensors])
        self._run = bind("run", i32, [p, i32, tensors, tensors])
        self.handle = bind("create", p, [ctypes.c_char_p])(None)
        if not self.handle:
            raise error_type(f"cannot create the CUDA artifact {name!r}: {self._message()}")
        weakref.finalize(self, bind("destroy", None, [p]), self.handle)

    def _message(self) -> str:
        return (self._error(None) or b"").decode(errors="replace")

    def _check(self, status: int) -> None:
        if status:
            self.rt.raise_status(status, self._message())

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
            rt.fill_tensor(t, a.ctypes.data, a.shape, as_dtype(a.dtype).code)
        outs = (rt.Tensor * max(1, len(spec["outputs"])))()
        self._check(self._shapes(self.handle, index, ins, outs))
        results = []
        for t in outs[:len(spec["outputs"])]:
            a = np.empty(tuple(t.shape[:t.rank]), BY_CODE[t.dtype].np)
            rt.fill_tensor(t, a.ctypes.data, a.shape, t.dtype)
            results.append(a)
        self._check(self._run(self.handle, index, ins, outs))
        return results
