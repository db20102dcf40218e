"""Calling a generated CUDA function from Python: arguments to device tensors, output allocation,
the call, errors; and variables' device copies.

Inputs may be numpy arrays (copied in), or GPU arrays taken without a copy: kcomp DeviceArrays,
anything with __cuda_array_interface__ (CuPy, PyTorch, Numba) or DLPack. Outputs come back as
numpy arrays, or as DeviceArrays when the function was made with device_outputs=True.

A variable's value stays on the GPU between calls (`Variable._device`); set_value and CPU
functions that update the variable drop that copy, and a CUDA function that updates it copies
the new value back into the variable's numpy array, so CPU functions see it too.
"""
from __future__ import annotations

import ctypes
from typing import List, Sequence

import numpy as np

from .. import native
from ..ir.dtypes import BY_CODE, as_dtype
from . import runtime as rt


def device_value(var) -> rt.DeviceArray:
    """The variable's value on the GPU, uploaded when the host copy is newer."""
    dev = getattr(var, "_device", None)
    if dev is None:
        dev = rt.DeviceArray.from_numpy(var._value)
        var._device = dev
    return dev


def _fill(t: rt.Tensor, a: rt.DeviceArray, code: int) -> None:
    t.data = a.ptr or None
    t.dtype = code
    t.rank = len(a.shape)
    stride = 1
    for i in range(len(a.shape) - 1, -1, -1):
        t.shape[i] = a.shape[i]
        t.strides[i] = stride
        stride *= a.shape[i]


def _raise(status: int, msg: str):
    exc = {rt.KC_EINVAL: ValueError, rt.KC_EINDEX: IndexError,
           rt.KC_ENOMEM: MemoryError}.get(status, RuntimeError)
    raise exc(msg)


class CudaExecutable:
    def __init__(self, library, input_specs: Sequence[tuple], output_codes: Sequence[int],
                 const_values: Sequence[np.ndarray], variables: Sequence, updated: Sequence[int],
                 name: str, device_outputs: bool = False, copies: bool = False):
        self.lib = library
        self.kernels = rt.library()
        self.api = self.kernels.kc_cuda_get_api()
        self.specs = [(n, code, list(dims), BY_CODE[code].np) for n, code, dims in input_specs]
        self.output_codes = list(output_codes)
        # constants: uploaded once, their tensor table built once (read-only, so calls from
        # several threads can share it)
        self.consts = [rt.DeviceArray.from_numpy(v) for v in const_values]
        self.const_table = (rt.Tensor * max(1, len(self.consts)))()
        for t, a, v in zip(self.const_table, self.consts, const_values):
            _fill(t, a, as_dtype(v.dtype).code)
        self.variables = list(variables)
        self.updated = list(updated)
        self.name = name
        self.device_outputs = device_outputs
        self.copies = copies  # debug mode: run on fresh copies of the variables

    def _input(self, i: int, x) -> rt.DeviceArray:
        name, code, dims, dt = self.specs[i]
        what = f"{self.name}: input {name!r} (#{i})"
        a = rt.gpu_array(x)
        if a is not None:
            if a.dtype != dt:
                raise ValueError(f"{what} is a GPU array of dtype {a.dtype}; this function takes "
                                 f"{dt} (GPU inputs are not converted)")
        else:
            h = np.asarray(x)
            if h.dtype != dt:
                if h.dtype.kind in "OUS" or (h.dtype.kind == "f" and dt.kind != "f") or \
                        (isinstance(x, np.ndarray) and not np.can_cast(h.dtype, dt, "same_kind")):
                    raise ValueError(f"{what} has dtype {h.dtype}, which does not convert to {dt} "
                                     f"without changing kind")
                h = h.astype(dt)
            a = rt.DeviceArray.from_numpy(h)
        if len(a.shape) != len(dims) or any(d >= 0 and d != s for d, s in zip(dims, a.shape)):
            want = tuple(None if d < 0 else d for d in dims)
            raise ValueError(f"{what} has shape {a.shape}; expected {want}")
        return a

    def run(self, inputs: Sequence) -> List:
        n = len(self.specs)
        if len(inputs) != n:
            raise ValueError(f"{self.name} expects {n} input{'s' if n != 1 else ''}, "
                             f"got {len(inputs)}")
        held = [self._input(i, x) for i, x in enumerate(inputs)]
        variables = [rt.DeviceArray.from_numpy(v._value) if self.copies else device_value(v)
                     for v in self.variables]
        call = rt.Call()
        ins = (rt.Tensor * max(1, n))()
        for t, a, spec in zip(ins, held, self.specs):
            _fill(t, a, spec[1])
        vs = (rt.Tensor * max(1, len(variables)))()
        for t, a, v in zip(vs, variables, self.variables):
            _fill(t, a, v.type.dtype.code)
        outs = (rt.Tensor * max(1, len(self.output_codes)))()
        call.api, call.stream = self.api, None
        call.inputs, call.n_inputs = ins, n
        call.consts, call.n_consts = self.const_table, len(self.consts)
        call.variables, call.n_variables = vs, len(variables)
        call.outputs, call.n_outputs = outs, len(self.output_codes)
        m = self.lib.module
        st = m.shapes(ctypes.byref(call))
        if st:
            _raise(st, f"{self.name}: {call.error.decode(errors='replace')}")
        results = []
        for t, code in zip(outs, self.output_codes):
            shape = tuple(t.shape[i] for i in range(t.rank))
            a = rt.DeviceArray.empty(shape, BY_CODE[code].np)
            _fill(t, a, code)
            results.append(a)
        st = m.run(ctypes.byref(call))
        if st:
            _raise(st, f"{self.name}: {call.error.decode(errors='replace')}")
        # keep the host copy of updated variables current (CPU functions and get_value read it)
        for i in ([] if self.copies else self.updated):
            v = self.variables[i]
            rt.check(self.kernels.kc_cuda_memcpy(v._value.ctypes.data, variables[i].ptr,
                                                 variables[i].nbytes, rt.D2H), "variable update")
            # CPU functions' packed panels of the old value are stale
            native().weights_written(v._value.ctypes.data, v._value.nbytes)
        if self.device_outputs:
            return results
        return [a.numpy() for a in results]
