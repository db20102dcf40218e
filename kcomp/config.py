"""kcomp's own settings, from environment variables (read when used, never at import).

Keras-facing configuration (floatx, epsilon, image_data_format) lives in kcomp/backend/config.py.
"""
from __future__ import annotations

import os

VARIABLES = {
    "KCOMP_CACHE_DIR": "where compiled functions are cached (default $XDG_CACHE_HOME/kcomp, "
                       "else ~/.cache/kcomp)",
    "KCOMP_MODE": "'debug' runs the numpy reference beside native code and names the first "
                  "node that differs",
    "KCOMP_EXPLAIN": "1 prints each compiled function's graph, kernel plan and source path",
    "KCOMP_CXX": "C++ compiler for generated code (default: what CMake finds)",
    "KCOMP_MARCH": "-march for generated code (default native; 'none' for no -march flag)",
    "KCOMP_CXXFLAGS": "extra flags for generated code",
    "KCOMP_PCH": "0 builds generated C++ without kcomp's precompiled header (GCC; default on)",
    "KCOMP_NUM_THREADS": "threads of the kernel library's pool (default: all cores)",
    "KCOMP_LOCK_TIMEOUT": "seconds to wait for another process building the same function "
                          "(default 600)",
    "KCOMP_ISA": "force the kernel library's 'generic' or 'avx2' path (testing)",
    "KCOMP_PACK_CACHE_MB": "memory for variables' packed matrix-product panels and "
                           "convolution kernels kept across calls (default 256; 0: off)",
    "KCOMP_DEVICE": "'cpu' (default) or 'cuda': where compiled functions run (also "
                    "kcomp.set_device() and keras.json's \"kcomp_device\")",
    "KCOMP_CUDA_ARCH": "GPU architecture for CUDA code, e.g. 90 (default: the GPU's own)",
    "KCOMP_NVCC": "nvcc for CUDA code (default: CUDACXX, PATH, /usr/local/cuda/bin)",
    "KCOMP_CUDA_TF32": "1 lets float32 matrix products on the GPU use TF32 tensor cores "
                       "(relative error near 3e-4; default off: float32 accuracy)",
    "KCOMP_CUDA_REDUCE_CLUSTER": "0 turns off the GPU reductions' thread-block clusters "
                                 "(sm_90: a long row split over several blocks, a column "
                                 "softmax's columns held on chip)",
}


def cache_dir() -> str:
    d = os.environ.get("KCOMP_CACHE_DIR")
    if d:
        return os.path.abspath(os.path.expanduser(d))
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = xdg if xdg and os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "kcomp")


# os.environ's own dict of encoded names and values (POSIX CPython): every function call asks
# for KCOMP_MODE, and os.environ.get costs about 0.5 us, a third of a small function's call
_ENVIRON_DATA = getattr(os.environ, "_data", None) if os.name == "posix" else None


def debug_mode() -> bool:
    if _ENVIRON_DATA is not None:
        mode = _ENVIRON_DATA.get(b"KCOMP_MODE")
        return mode is not None and mode.lower() == b"debug"
    return os.environ.get("KCOMP_MODE", "").lower() == "debug"


def explain() -> bool:
    return os.environ.get("KCOMP_EXPLAIN", "") not in ("", "0")


def march() -> str:
    return os.environ.get("KCOMP_MARCH", "native")


def extra_cxxflags() -> list:
    import shlex
    return shlex.split(os.environ.get("KCOMP_CXXFLAGS", ""))


def pch() -> bool:
    return os.environ.get("KCOMP_PCH", "1") != "0"


def cxx() -> str | None:
    return os.environ.get("KCOMP_CXX") or None


def lock_timeout() -> float:
    try:
        return float(os.environ.get("KCOMP_LOCK_TIMEOUT", "600"))
    except ValueError:
        return 600.0


def cuda_tf32() -> bool:
    return os.environ.get("KCOMP_CUDA_TF32", "") not in ("", "0")
