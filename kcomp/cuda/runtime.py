"""kcomp's CUDA runtime in Python: the kernel library (libkcomp_cuda), device memory and
arrays, reached through ctypes so that the CPU-only install never needs CUDA.

The library is built from csrc/cuda with CMake's CUDA language support the first time a GPU is
used, for the device's architecture, and cached like compiled functions (the key covers its
sources, kcomp's headers, nvcc's path and version and the architecture).
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import threading
from typing import Optional

import numpy as np

from .. import _paths
from ..ir.dtypes import BY_CODE
from ..jit.cache import default_cache
from ..jit.fsutil import file_sha256
from ..jit.toolchain import headers_digest
from .toolkit import CudaUnavailableError, device_arch, gpu_present, nvcc, nvcc_version

LIB_FORMAT = 1

KC_OK, KC_EINVAL, KC_EINDEX, KC_ENOMEM = 0, 1, 2, 3
H2D, D2H, D2D = 1, 2, 3


# ---- mirrors of csrc/include/kcomp/cuda_api.h --------------------------------------------------

class GemmArgs(ctypes.Structure):
    _fields_ = [("dtype", ctypes.c_int32), ("trans_a", ctypes.c_int32),
                ("trans_b", ctypes.c_int32), ("m", ctypes.c_int64), ("n", ctypes.c_int64),
                ("k", ctypes.c_int64), ("batch", ctypes.c_int64), ("a", ctypes.c_void_p),
                ("lda", ctypes.c_int64), ("stride_a", ctypes.c_int64), ("b", ctypes.c_void_p),
                ("ldb", ctypes.c_int64), ("stride_b", ctypes.c_int64), ("c", ctypes.c_void_p),
                ("ldc", ctypes.c_int64), ("stride_c", ctypes.c_int64)]


class CudaGemmArgs(ctypes.Structure):
    _fields_ = [("g", GemmArgs), ("precision", ctypes.c_int32), ("act", ctypes.c_int32),
                ("bias", ctypes.c_void_p), ("alpha", ctypes.c_float)]


class ConvArgs(ctypes.Structure):  # kc_cuda_conv_args
    _fields_ = [("gemm", CudaGemmArgs)] + [
        (f, ctypes.c_int64) for f in ("d", "h", "w", "c", "od", "oh", "ow", "kd", "kh", "kw",
                                      "sd", "sh", "sw", "pd", "ph", "pw", "dd", "dh", "dw")]


class ReduceArgs(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_int32), ("dtype", ctypes.c_int32), ("outer", ctypes.c_int64),
                ("n", ctypes.c_int64), ("inner", ctypes.c_int64), ("x", ctypes.c_void_p),
                ("y", ctypes.c_void_p)]


class SoftmaxArgs(ctypes.Structure):
    _fields_ = [("outer", ctypes.c_int64), ("n", ctypes.c_int64), ("inner", ctypes.c_int64),
                ("x", ctypes.c_void_p), ("y", ctypes.c_void_p), ("log", ctypes.c_int32)]


class RnnArgs(ctypes.Structure):  # kc_cuda_rnn_args
    _fields_ = [("cell", ctypes.c_int32), ("act", ctypes.c_int32),
                ("recurrent_act", ctypes.c_int32), ("steps", ctypes.c_int64),
                ("batch", ctypes.c_int64), ("units", ctypes.c_int64), ("xproj", ctypes.c_void_p),
                ("w_rec", ctypes.c_void_p), ("w_rec2", ctypes.c_void_p), ("b_rec", ctypes.c_void_p),
                ("h0", ctypes.c_void_p), ("c0", ctypes.c_void_p), ("h_seq", ctypes.c_void_p),
                ("h_out", ctypes.c_void_p), ("c_out", ctypes.c_void_p)]


# kc_rnn_cell and kc_act (cuda_api.h)
RNN_LSTM, RNN_GRU, RNN_GRU_RESET_BEFORE, RNN_SIMPLE = range(4)
ACT_NONE, ACT_RELU, ACT_SIGMOID, ACT_TANH, ACT_HARD_SIGMOID = range(5)


KC_MAX_RANK = 8


class Tensor(ctypes.Structure):  # kc_tensor
    _fields_ = [("data", ctypes.c_void_p), ("shape", ctypes.c_int64 * KC_MAX_RANK),
                ("strides", ctypes.c_int64 * KC_MAX_RANK), ("dtype", ctypes.c_int32),
                ("rank", ctypes.c_int32)]


class Call(ctypes.Structure):  # kc_cuda_call
    _fields_ = [("api", ctypes.c_void_p), ("stream", ctypes.c_void_p),
                ("inputs", ctypes.POINTER(Tensor)), ("n_inputs", ctypes.c_int32),
                ("consts", ctypes.POINTER(Tensor)), ("n_consts", ctypes.c_int32),
                ("variables", ctypes.POINTER(Tensor)), ("n_variables", ctypes.c_int32),
                ("outputs", ctypes.POINTER(Tensor)), ("n_outputs", ctypes.c_int32),
                ("error", ctypes.c_char * 512)]


ENTRY = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.POINTER(Call))


class Module(ctypes.Structure):  # kc_cuda_module
    _fields_ = [("abi_version", ctypes.c_uint32), ("key", ctypes.c_char_p),
                ("n_inputs", ctypes.c_int32), ("n_consts", ctypes.c_int32),
                ("n_variables", ctypes.c_int32), ("n_outputs", ctypes.c_int32),
                ("shapes", ENTRY), ("run", ENTRY)]


CUDA_ABI_VERSION = 4

# ---- building and loading the kernel library --------------------------------------------------

_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None


def library_sources() -> list:
    src = _paths.cuda_source_dir()
    return sorted(os.path.join(src, n) for n in os.listdir(src)
                  if n.endswith((".cu", ".cuh", ".txt")))


def library_key(arch: str) -> str:
    tool = nvcc()
    record = {"format": LIB_FORMAT, "what": "libkcomp_cuda", "arch": arch, "nvcc": tool,
              "nvcc_version": nvcc_version(tool),
              "sources": {os.path.basename(p): file_sha256(p) for p in library_sources()},
              "headers": headers_digest(_paths.include_dir())}
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def build_library(arch: str) -> str:
    """Build (or find in the cache) libkcomp_cuda for `arch`; returns its path."""
    key = library_key(arch)
    tool = nvcc()

    def build(work: str) -> dict:
        bld = os.path.join(work, "cmake-build")
        cmake, ninja = _paths.tool("cmake"), _paths.tool("ninja")
        cmd = [cmake, "-S", _paths.cuda_source_dir(), "-B", bld, "-G", "Ninja",
               f"-DCMAKE_MAKE_PROGRAM={ninja}", f"-DCMAKE_CUDA_COMPILER={tool}",
               f"-DKCOMP_CUDA_ARCH={arch}", f"-DKCOMP_INCLUDE={_paths.include_dir()}",
               "-DCMAKE_BUILD_TYPE=Release"]
        for step in (cmd, [cmake, "--build", bld]):
            p = subprocess.run(step, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               errors="replace")
            if p.returncode != 0:
                raise RuntimeError(f"building kcomp's CUDA kernel library failed "
                                   f"({' '.join(step[:3])} ...):\n{p.stdout[-6000:]}")
        shutil.copy(os.path.join(bld, "libkcomp_cuda.so"), os.path.join(work, "lib.so"))
        shutil.rmtree(bld, ignore_errors=True)
        return {"what": "libkcomp_cuda", "arch": arch, "nvcc": tool}

    return default_cache().get_or_build(key, build).lib


_PrintFn = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.POINTER(Tensor))


@_PrintFn
def _print_tensor(message, tensor):
    """K.print_tensor's hook: the message and the value (in host memory, copied here) to
    sys.stderr, as the CPU runtime prints them."""
    t = tensor.contents
    shape = tuple(t.shape[i] for i in range(t.rank))
    dt = BY_CODE[t.dtype].np
    n = math.prod(shape)
    raw = ctypes.string_at(t.data, n * dt.itemsize) if n else b""
    print(message.decode(errors="replace"), np.frombuffer(raw, dt).reshape(shape),
          file=sys.stderr)


def _declare(lib: ctypes.CDLL) -> None:
    c = ctypes
    sig = {
        "kc_cuda_last_error": (c.c_char_p, []),
        "kc_cuda_set_print": (None, [_PrintFn]),
        "kc_cuda_get_api": (c.c_void_p, []),
        "kc_cuda_gemm": (c.c_int32, [c.POINTER(CudaGemmArgs), c.c_void_p]),
        "kc_cuda_reduce": (c.c_int32, [c.POINTER(ReduceArgs), c.c_void_p]),
        "kc_cuda_softmax": (c.c_int32, [c.POINTER(SoftmaxArgs), c.c_void_p]),
        "kc_cuda_rnn": (c.c_int32, [c.POINTER(RnnArgs), c.c_void_p]),
        "kc_cuda_conv": (c.c_int32, [c.POINTER(ConvArgs), c.c_void_p]),
        "kc_cuda_malloc": (c.c_void_p, [c.c_size_t]),
        "kc_cuda_free": (None, [c.c_void_p]),
        "kc_cuda_memcpy": (c.c_int32, [c.c_void_p, c.c_void_p, c.c_size_t, c.c_int32]),
        "kc_cuda_memset": (c.c_int32, [c.c_void_p, c.c_int32, c.c_size_t]),
        "kc_cuda_synchronize": (c.c_int32, []),
        "kc_cuda_device_count": (c.c_int32, []),
        "kc_cuda_device_info": (c.c_int32, [c.POINTER(c.c_int32), c.POINTER(c.c_int32),
                                            c.POINTER(c.c_int32), c.POINTER(c.c_int64),
                                            c.c_char_p, c.c_int32]),
    }
    for name, (res, args) in sig.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args


def available() -> bool:
    """A GPU and the CUDA toolkit are both present (the library may still need building)."""
    if not gpu_present():
        return False
    try:
        nvcc()
    except CudaUnavailableError:
        return False
    return True


def library() -> ctypes.CDLL:
    """libkcomp_cuda, built on first use; CudaUnavailableError where there is no GPU."""
    global _lib
    if _lib is not None:  # (every call of a GPU function gets here: no lock once loaded)
        return _lib
    with _lock:
        if _lib is None:
            if not gpu_present():
                device_arch()  # raises with the reason
                raise CudaUnavailableError("no CUDA GPU is present")
            lib = ctypes.CDLL(build_library(device_arch()))
            _declare(lib)
            lib.kc_cuda_set_print(_print_tensor)
            if lib.kc_cuda_device_count() < 1:
                raise CudaUnavailableError("the CUDA runtime sees no GPU")
            _lib = lib
        return _lib


def raise_status(status: int, msg: str):
    """kcomp's exception for a kc_status other than KC_OK (abi.h)."""
    raise {KC_EINVAL: ValueError, KC_EINDEX: IndexError,
           KC_ENOMEM: MemoryError}.get(status, RuntimeError)(msg)


def check(status: int, what: str) -> None:
    if status != KC_OK:
        raise_status(status, f"{what}: {library().kc_cuda_last_error().decode(errors='replace')}")


def fill_tensor(t: Tensor, ptr, shape, code: int) -> None:
    """t: a row-major contiguous tensor of this shape and kc_dtype at ptr (0 or None: NULL)."""
    t.data = ptr or None
    t.dtype = code
    t.rank = len(shape)
    stride = 1
    for i in range(len(shape) - 1, -1, -1):
        t.shape[i] = shape[i]
        t.strides[i] = stride
        stride *= shape[i]


def synchronize() -> None:
    """Wait for all queued GPU work; raises if a kernel failed."""
    check(library().kc_cuda_synchronize(), "synchronize")


def device_info() -> dict:
    lib = library()
    major, minor, sms = ctypes.c_int32(), ctypes.c_int32(), ctypes.c_int32()
    mem = ctypes.c_int64()
    name = ctypes.create_string_buffer(256)
    check(lib.kc_cuda_device_info(ctypes.byref(major), ctypes.byref(minor), ctypes.byref(sms),
                                  ctypes.byref(mem), name, 256), "device_info")
    return {"name": name.value.decode(), "compute_capability": f"{major.value}.{minor.value}",
            "multiprocessors": sms.value, "memory_bytes": mem.value}


# ---- device arrays ---------------------------------------------------------------------------

class _Block:
    """One device allocation, freed when the last array using it goes."""
    __slots__ = ("ptr", "lib")

    def __init__(self, nbytes: int):
        self.lib = library()
        self.ptr = self.lib.kc_cuda_malloc(nbytes)
        if not self.ptr:
            raise MemoryError(f"cannot allocate {nbytes} bytes of GPU memory: "
                              f"{self.lib.kc_cuda_last_error().decode(errors='replace')}")

    def __del__(self):
        if self.ptr:
            self.lib.kc_cuda_free(self.ptr)
            self.ptr = None


class DeviceArray:
    """A C-contiguous array in GPU memory. Speaks __cuda_array_interface__ (CuPy, PyTorch and
    Numba read it without a copy); `numpy()` copies it to the host."""

    def __init__(self, shape, dtype, ptr: int | None = None, owner=None):
        self.shape = tuple(map(int, shape))
        self.dtype = np.dtype(dtype)
        self.size = math.prod(self.shape)  # (np.prod costs a few us: this is per call)
        self.nbytes = self.size * self.dtype.itemsize
        if ptr is None:
            owner = _Block(self.nbytes)
            ptr = owner.ptr
        self._owner = owner  # keeps the memory (a _Block or a foreign array) alive
        self.ptr = int(ptr)

    @classmethod
    def empty(cls, shape, dtype) -> "DeviceArray":
        return cls(shape, dtype)

    @classmethod
    def from_numpy(cls, a) -> "DeviceArray":
        a = np.asarray(a, order="C")  # (np.ascontiguousarray would make a 0-d array 1-d)
        d = cls(a.shape, a.dtype)
        d.copy_from_host(a)
        return d

    def copy_from_host(self, a: np.ndarray) -> None:
        a = np.asarray(a, dtype=self.dtype, order="C")
        if a.shape != self.shape:
            raise ValueError(f"copy of a {a.shape} array into a device array of shape {self.shape}")
        check(library().kc_cuda_memcpy(self.ptr, a.ctypes.data, self.nbytes, H2D),
              "copy to the GPU")

    def numpy(self) -> np.ndarray:
        out = np.empty(self.shape, self.dtype)
        check(library().kc_cuda_memcpy(out.ctypes.data, self.ptr, self.nbytes, D2H),
              "copy from the GPU")
        return out

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def __cuda_array_interface__(self) -> dict:
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.ptr, False),
                "version": 3, "strides": None, "stream": None}

    def __repr__(self):
        return f"<kcomp.cuda.DeviceArray shape={self.shape} dtype={self.dtype}>"


def poison(a: DeviceArray) -> None:
    """Fill with 0xFF bytes (NaN for floats): unwritten elements show."""
    check(library().kc_cuda_memset(a.ptr, 0xFF, a.nbytes), "memset")


def gpu_array(x) -> Optional[DeviceArray]:
    """A DeviceArray over x without a copy when x is on the GPU (a DeviceArray, or anything with
    __cuda_array_interface__ or DLPack: CuPy, PyTorch) and C-contiguous; None when x is not a
    GPU array."""
    if isinstance(x, DeviceArray):
        return x
    if type(x).__module__ == "torch" and getattr(x, "is_cuda", False):
        return _torch_array(x)
    cai = getattr(x, "__cuda_array_interface__", None)
    if cai is not None:
        shape = tuple(cai["shape"])
        dt = np.dtype(cai["typestr"])
        strides = cai.get("strides")
        if strides is not None:
            check_c_contiguous(shape, [st // dt.itemsize for st in strides])
        _sync_stream(cai.get("stream"))
        return DeviceArray(shape, dt, ptr=cai["data"][0] or 0, owner=x)
    if hasattr(x, "__dlpack__") and hasattr(x, "__dlpack_device__"):
        dev_type, _ = x.__dlpack_device__()
        if int(dev_type) == 2:  # kDLCUDA
            from .dlpack import from_dlpack
            return from_dlpack(x)
    return None


_TORCH_DTYPES: dict = {}


def _torch_array(x) -> DeviceArray:
    """A DeviceArray over a CUDA torch tensor, read from the tensor's own accessors (its
    __cuda_array_interface__ costs microseconds a call)."""
    dt = _TORCH_DTYPES.get(x.dtype)
    if dt is None:
        try:
            dt = np.dtype(str(x.dtype).rpartition(".")[2])
        except TypeError:
            raise ValueError(f"a GPU tensor of dtype {x.dtype}, which numpy, and so kcomp, has "
                             f"no type for") from None
        _TORCH_DTYPES[x.dtype] = dt
    if not x.is_contiguous():
        check_c_contiguous(tuple(x.shape), x.stride())
    return DeviceArray(tuple(x.shape), dt, ptr=x.data_ptr(), owner=x)


def check_c_contiguous(shape, strides) -> None:
    """Raise unless a GPU array of `shape` with element `strides` is C-contiguous (the stride of
    a size-1 axis does not matter)."""
    expect = 1
    for d, st in zip(reversed(shape), reversed(list(strides))):
        if d != 1 and st != expect:
            raise ValueError("a GPU array given to kcomp must be C-contiguous "
                             "(call .contiguous() / cupy.ascontiguousarray first)")
        expect *= max(int(d), 1)


def _sync_stream(stream) -> None:
    """__cuda_array_interface__ v3: a producer's stream other than the legacy default one (1)
    must be synchronized before kcomp's kernels (on the legacy stream) read the data."""
    if stream not in (None, 1, 2):
        synchronize()
