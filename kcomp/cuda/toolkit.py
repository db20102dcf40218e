"""The CUDA toolkit and the GPU: nvcc, its version, and the target architecture.

Nothing here needs a GPU except `device_arch` (which asks the driver, libcuda, through ctypes):
lowering and nvcc compilation for an explicit architecture (KCOMP_CUDA_ARCH) work on any machine
with the toolkit, for CI and for ahead-of-time builds.
"""
from __future__ import annotations

import ctypes
import functools
import os
import re
import shutil
import subprocess


class CudaUnavailableError(RuntimeError):
    """A CUDA device was asked for where there is none (no driver, no GPU, or no nvcc)."""


def nvcc() -> str:
    """nvcc: $KCOMP_NVCC, $CUDACXX, PATH, then $CUDA_HOME/bin and /usr/local/cuda/bin."""
    forced = os.environ.get("KCOMP_NVCC")
    if forced:
        if not os.access(forced, os.X_OK):
            raise CudaUnavailableError(f"KCOMP_NVCC={forced!r} is not an executable")
        return os.path.realpath(forced)
    for cand in (os.environ.get("CUDACXX"), shutil.which("nvcc")):
        if cand and os.access(cand, os.X_OK):
            return os.path.realpath(cand)
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home and os.access(os.path.join(home, "bin", "nvcc"), os.X_OK):
            return os.path.realpath(os.path.join(home, "bin", "nvcc"))
    raise CudaUnavailableError("the CUDA toolkit's nvcc was not found: install the CUDA toolkit "
                               "or set KCOMP_NVCC to nvcc's path")


@functools.lru_cache(maxsize=None)
def nvcc_version(path: str) -> str:
    out = subprocess.run([path, "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, errors="replace").stdout
    m = re.search(r"release ([0-9.]+), V([0-9.]+)", out)
    return m.group(2) if m else out.strip().splitlines()[-1]


@functools.lru_cache(maxsize=1)
def _driver_arch():
    """(device count, compute capability of device 0 as 'MAJOR MINOR') from libcuda, or the
    reason there is none."""
    try:
        cu = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0, "no NVIDIA driver (libcuda.so.1 cannot be loaded)"
    if cu.cuInit(0) != 0:
        return 0, "the NVIDIA driver found no usable GPU (cuInit failed)"
    n = ctypes.c_int(0)
    if cu.cuDeviceGetCount(ctypes.byref(n)) != 0 or n.value == 0:
        return 0, "no CUDA GPU is present"
    dev, major, minor = ctypes.c_int(0), ctypes.c_int(0), ctypes.c_int(0)
    cu.cuDeviceGet(ctypes.byref(dev), 0)
    cu.cuDeviceGetAttribute(ctypes.byref(major), 75, dev)  # COMPUTE_CAPABILITY_MAJOR
    cu.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev)  # COMPUTE_CAPABILITY_MINOR
    return n.value, f"{major.value}{minor.value}"


def gpu_present() -> bool:
    return _driver_arch()[0] > 0


def check_arch(arch: str, what: str = "") -> str:
    """arch if it names a compute capability nvcc compiles for (80, 90, 90a, ...)."""
    if not re.fullmatch(r"[1-9][0-9]{1,2}[af]?", str(arch)):
        raise ValueError(f"{what}{arch!r}: expected a compute capability such as 80, 90 or 90a")
    return str(arch)


def device_arch() -> str:
    """The architecture to compile for: $KCOMP_CUDA_ARCH (e.g. 90, 80, 90a), else the GPU's."""
    forced = os.environ.get("KCOMP_CUDA_ARCH", "").strip()
    if forced:
        return check_arch(forced, "KCOMP_CUDA_ARCH=")
    n, arch = _driver_arch()
    if n == 0:
        raise CudaUnavailableError(f"kcomp was asked for a CUDA device, but {arch}. Use the CPU "
                                   f"(KCOMP_DEVICE=cpu), or set KCOMP_CUDA_ARCH to compile "
                                   f"for a GPU without running")
    return arch


def gencode(arch: str) -> list:
    """nvcc's flags for one architecture: machine code for it and PTX for newer ones."""
    return [f"-gencode=arch=compute_{arch},code=[compute_{arch},sm_{arch}]"]
