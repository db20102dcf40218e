"""Where kcomp's installed pieces are: C headers for generated code, templates, tools."""
from __future__ import annotations

import os
import shutil

_PKG = os.path.dirname(os.path.abspath(__file__))


def include_dir() -> str:
    """kcomp/include when installed; csrc/include in a source checkout (editable installs)."""
    for d in (os.path.join(_PKG, "include"),
              os.path.join(os.path.dirname(_PKG), "csrc", "include")):
        if os.path.isfile(os.path.join(d, "kcomp", "abi.h")):
            return d
    raise RuntimeError("kcomp's C headers are missing: reinstall kcomp")


def kernels_library() -> str:
    """libkcomp_kernels.so, installed beside the runtime module (kcomp/lib/)."""
    from . import native
    path = os.path.join(os.path.dirname(native().__file__), "lib", "libkcomp_kernels.so")
    if not os.path.isfile(path):
        raise RuntimeError(f"kcomp's kernel library is missing ({path}): reinstall kcomp")
    return path


def cuda_source_dir() -> str:
    """The CUDA kernel library's sources: kcomp/cuda_src when installed, csrc/cuda in a checkout
    (built on demand by kcomp/cuda/runtime.py)."""
    for d in (os.path.join(_PKG, "cuda_src"), os.path.join(os.path.dirname(_PKG), "csrc", "cuda")):
        if os.path.isfile(os.path.join(d, "CMakeLists.txt")):
            return d
    raise RuntimeError("kcomp's CUDA sources are missing: reinstall kcomp")


def templates_dir() -> str:
    return os.path.join(_PKG, "templates")


def tool(name: str) -> str:
    """cmake or ninja: the PyPI packages' binaries first, then PATH."""
    try:
        if name == "cmake":
            import cmake
            path = os.path.join(cmake.CMAKE_BIN_DIR, "cmake")
        else:
            import ninja
            path = os.path.join(ninja.BIN_DIR, "ninja")
        if os.access(path, os.X_OK):
            return path
    except ImportError:
        pass
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found: pip install {name}")
    return found
