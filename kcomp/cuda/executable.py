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
import threading
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


def host_input(x, dt: np.dtype, what: str) -> np.ndarray:
    """x as a C-contiguous numpy array of dtype dt. Converted only where no kind is lost: never
    strings or objects, never floats to ints, and a numpy array only as np.can_cast(...,
    "same_kind") allows (so float64 to float32 and ints to floats, but not floats to ints)."""
    h = np.asarray(x)
    changes_kind = h.dtype.kind in "OUS" or (h.dtype.kind == "f" and dt.kind != "f") or \
        (isinstance(x, np.ndarray) and not np.can_cast(h.dtype, dt, "same_kind"))
    if h.dtype != dt and changes_kind:
        raise ValueError(f"{what} has dtype {h.dtype}, which does not convert to {dt} without "
                         f"changing kind")
    return np.asarray(h, dtype=dt, order="C")  # (np.ascontiguousarray makes 0-d 1-d)


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
            rt.fill_tensor(t, a.ptr, a.shape, as_dtype(v.dtype).code)
        self.variables = list(variables)
        self.updated = list(updated)
        self.name = name
        self.device_outputs = device_outputs
        self.copies = copies  # debug mode: run on fresh copies of the variables
        self._local = threading.local()

    def _input(self, i: int, x) -> rt.DeviceArray:
        name, code, dims, dt = self.specs[i]
        what = f"{self.name}: input {name!r} (#{i})"
        try:
            a = rt.gpu_array(x)
        except ValueError as e:  # (not C-contiguous, a dtype numpy lacks)
            raise ValueError(f"{what}: {e}") from None
        if a is not None:
            if a.dtype != dt:
                raise ValueError(f"{what} is a GPU array of dtype {a.dtype}; this function takes "
                                 f"{dt} (GPU inputs are not converted)")
        else:
            a = rt.DeviceArray.from_numpy(host_input(x, dt, what))
        if len(a.shape) != len(dims) or any(d >= 0 and d != s for d, s in zip(dims, a.shape)):
            want = tuple(None if d < 0 else d for d in dims)
            raise ValueError(f"{what} has shape {a.shape}; expected {want}")
        return a

    def _frame(self) -> "_Frame":
        """This thread's call structures (a fresh set when a call is already using them: a
        print_tensor hook that calls the function again)."""
        fr = getattr(self._local, "frame", None)
        if fr is None:
            fr = self._local.frame = _Frame(self)
        elif fr.busy:
            fr = _Frame(self)
        return fr

    def run(self, inputs: Sequence) -> List:
        n = len(self.specs)
        if len(inputs) != n:
            raise ValueError(f"{self.name} expects {n} input{'s' if n != 1 else ''}, "
                             f"got {len(inputs)}")
        held = [self._input(i, x) for i, x in enumerate(inputs)]
        variables = [rt.DeviceArray.from_numpy(v._value) if self.copies else device_value(v)
                     for v in self.variables]
        fr = self._frame()
        fr.busy = True
        try:
            results = fr.call(self, held, variables)
        finally:
            fr.busy = False
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


class _Frame:
    """One thread's kc_cuda_call and tensor tables for an executable, built once and refilled
    per call: a tensor's entry is rewritten only when its pointer or shape changed (building
    them anew took a third of a small call's host time)."""
    __slots__ = ("c", "ins", "vs", "outs", "seen", "busy")

    def __init__(self, exe: CudaExecutable):
        n, nv, no = len(exe.specs), len(exe.variables), len(exe.output_codes)
        self.c = c = rt.Call()
        self.ins = (rt.Tensor * max(1, n))()
        self.vs = (rt.Tensor * max(1, nv))()
        self.outs = (rt.Tensor * max(1, no))()
        c.api, c.stream = exe.api, None
        c.inputs, c.n_inputs = self.ins, n
        c.consts, c.n_consts = exe.const_table, len(exe.consts)
        c.variables, c.n_variables = self.vs, nv
        c.outputs, c.n_outputs = self.outs, no
        self.seen = {}  # (table, index) -> (pointer, shape) last written
        self.busy = False

    def _set(self, table, i: int, a: rt.DeviceArray, code: int) -> None:
        key = (a.ptr, a.shape)
        if self.seen.get((id(table), i)) != key:
            rt.fill_tensor(table[i], a.ptr, a.shape, code)
            self.seen[(id(table), i)] = key

    def call(self, exe: CudaExecutable, held, variables) -> List[rt.DeviceArray]:
        for i, (a, spec) in enumerate(zip(held, exe.specs)):
            self._set(self.ins, i, a, spec[1])
        for i, (a, v) in enumerate(zip(variables, exe.variables)):
            self._set(self.vs, i, a, v.type.dtype.code)
        c, m = self.c, exe.lib.module
        st = m.shapes(ctypes.byref(c))
        if st:
            rt.raise_status(st, f"{exe.name}: {c.error.decode(errors='replace')}")
        results = []
        for i, code in enumerate(exe.output_codes):
            t = self.outs[i]
            a = rt.DeviceArray.empty(tuple(t.shape[:t.rank]), BY_CODE[code].np)
            # (shapes() rewrote the entry's shape and rank: compare with what it last held)
            self._set(self.outs, i, a, code)
            results.append(a)
        st = m.run(ctypes.byref(c))
        if st:
            rt.raise_status(st, f"{exe.name}: {c.error.decode(errors='replace')}")
        return results
