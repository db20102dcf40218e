"""The C++ toolchain for generated code, probed once with CMake and remembered on disk.

The probe configures a tiny CMake project (kcomp/templates/cmake) with Ninja: CMake finds the
compiler and checks the flags, the probe library proves headers and flags work. Its result is
kept in <cache>/toolchains/<id>.json, keyed by everything that could change it (compiler choice,
flags, the CPU for -march=native, kcomp's headers), and revalidated with one stat() of the
compiler per process.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from typing import Dict, List

from .. import _paths, config
from .fsutil import atomic_write, private_dir


class ToolchainError(RuntimeError):
    pass


@dataclass(frozen=True)
class Toolchain:
    cxx: str               # compiler, resolved path
    compiler: str          # "GNU 12.2.0"
    target: str            # -dumpmachine
    flags: tuple           # every flag generated code is compiled with, in order
    isa: str               # what -march resolved to (hash of the expanded target flags)
    ninja: str
    include_dir: str
    headers_sha256: str    # of the headers generated code includes
    cxx_stat: tuple        # (size, mtime_ns) of the compiler binary when probed
    probe_seconds: float = 0.0

    def identity(self) -> dict:
        """What a cache key must cover about the toolchain."""
        return {"cxx": self.cxx, "compiler": self.compiler, "target": self.target,
                "flags": list(self.flags), "isa": self.isa, "headers": self.headers_sha256}


_lock = threading.Lock()
_probed: Dict[str, Toolchain] = {}  # by -march level, for this process


def headers_digest(include_dir: str) -> str:
    h = hashlib.sha256()
    base = os.path.join(include_dir, "kcomp")
    for name in sorted(os.listdir(base)):
        if name.endswith(".h"):
            h.update(name.encode())
            with open(os.path.join(base, name), "rb") as f:
                h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()


def _cpu_fingerprint() -> str:
    """For -march=native: the CPU model and feature flags (a cache moved to another machine must
    not hand out code built for this one)."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f.read().splitlines()
                     if ln.startswith(("model name", "flags", "Features", "CPU part"))]
        return hashlib.sha256("\n".join(sorted(set(lines))).encode()).hexdigest()[:16]
    except OSError:
        return platform.processor() or platform.machine()


def _probe_id(include_dir: str, headers: str, march: str) -> str:
    record = {
        "format": 1, "cxx": config.cxx(), "CXX": os.environ.get("CXX"), "march": march,
        "extra": config.extra_cxxflags(), "headers": headers, "machine": platform.machine(),
        "cpu": _cpu_fingerprint() if march == "native" else None,
        "probe": hashlib.sha256(open(os.path.join(_paths.templates_dir(), "cmake",
                                                  "CMakeLists.txt"), "rb").read()).hexdigest(),
        "include": include_dir,
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:32]


def _stat(path: str) -> tuple:
    st = os.stat(path)
    return (st.st_size, st.st_mtime_ns)


def _run(cmd: List[str], cwd: str | None = None, what: str = "") -> str:
    p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, errors="replace")
    if p.returncode != 0:
        raise ToolchainError(f"{what or cmd[0]} failed ({' '.join(cmd)}):\n{p.stdout[-4000:]}")
    return p.stdout


def _resolved_isa(cxx: str, flags: List[str]) -> str:
    """The target flags the compiler expands -march=... into (GCC and Clang print them with -v)."""
    try:
        p = subprocess.run([cxx, *flags, "-E", "-v", "-x", "c++", os.devnull],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           errors="replace")
        lines = [ln for ln in p.stderr.splitlines() if " -march=" in ln or "-target-cpu" in ln]
        text = "\n".join(lines) or p.stderr
    except OSError:
        text = " ".join(flags)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def probe(cache_root: str, march: str) -> Toolchain:
    """Configure the probe project with CMake, build it with Ninja, record the result.
    march: the -march level for generated code ('native', 'x86-64-v3', ..., or 'none')."""
    include = _paths.include_dir()
    headers = headers_digest(include)
    pid = _probe_id(include, headers, march)
    store = private_dir(os.path.join(cache_root, "toolchains"))
    path = os.path.join(store, pid + ".json")
    try:
        with open(path) as f:
            data = json.load(f)
        data["flags"] = tuple(data["flags"])
        data["cxx_stat"] = tuple(data["cxx_stat"])
        tc = Toolchain(**data)
        if os.path.exists(tc.ninja) and _stat(tc.cxx) == tc.cxx_stat:
            return tc
    except (OSError, ValueError, TypeError, KeyError):
        pass  # missing, stale or unreadable: probe again

    t0 = time.perf_counter()
    cmake, ninja = _paths.tool("cmake"), _paths.tool("ninja")
    work = tempfile.mkdtemp(prefix="probe-", dir=store)
    try:
        src = os.path.join(work, "src")
        shutil.copytree(os.path.join(_paths.templates_dir(), "cmake"), src)
        bld = os.path.join(work, "build")
        cmd = [cmake, "-S", src, "-B", bld, "-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}",
               f"-DKCOMP_INCLUDE={include}", "-DCMAKE_BUILD_TYPE=",
               f"-DKCOMP_MARCH={'' if march in ('', 'none') else march}"]
        if config.cxx():
            cmd.append(f"-DCMAKE_CXX_COMPILER={config.cxx()}")
        _run(cmd, what="CMake configure of the kcomp toolchain probe")
        _run([ninja, "-C", bld], what="building the kcomp toolchain probe")
        info = dict(line.split("=", 1) for line in
                    open(os.path.join(bld, "toolchain.txt")).read().splitlines() if "=" in line)
        flags = [f for f in open(os.path.join(bld, "flags.txt")).read().split("\n") if f]
        flags += config.extra_cxxflags()
        cxx = os.path.realpath(info["cxx"])
        target = _run([cxx, "-dumpmachine"]).strip()
        tc = Toolchain(cxx=cxx, compiler=f"{info['id']} {info['version']}", target=target,
                       flags=tuple(flags), isa=_resolved_isa(cxx, flags), ninja=ninja,
                       include_dir=include, headers_sha256=headers, cxx_stat=_stat(cxx),
                       probe_seconds=round(time.perf_counter() - t0, 3))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    atomic_write(path, json.dumps(asdict(tc), indent=1).encode())
    return tc


def toolchain(march: str | None = None) -> Toolchain:
    """The toolchain for generated code at -march=`march` (default: KCOMP_MARCH, else native),
    probed or loaded from the cache on first use in this process."""
    march = march or config.march()
    with _lock:
        if march not in _probed:
            from .cache import default_cache
            _probed[march] = probe(default_cache().root, march)
        return _probed[march]
