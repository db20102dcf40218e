"""Instruction-set levels of ahead-of-time builds, and whether this CPU has them."""
from __future__ import annotations

import platform
from typing import List

LEVELS = ("x86-64", "x86-64-v2", "x86-64-v3", "x86-64-v4", "native")
DEFAULT = "x86-64-v3"

# GCC's __builtin_cpu_supports names -> /proc/cpuinfo flags
_CPUINFO = {"popcnt": "popcnt", "sse4.1": "sse4_1", "sse4.2": "sse4_2", "ssse3": "ssse3",
            "avx": "avx", "avx2": "avx2", "bmi": "bmi1", "bmi2": "bmi2", "f16c": "f16c",
            "fma": "fma", "lzcnt": "abm", "movbe": "movbe", "avx512f": "avx512f",
            "avx512bw": "avx512bw", "avx512cd": "avx512cd", "avx512dq": "avx512dq",
            "avx512vl": "avx512vl", "avx512vnni": "avx512_vnni", "avx512ifma": "avx512ifma",
            "avx512vbmi": "avx512vbmi", "avx512vbmi2": "avx512_vbmi2",
            "avx512bitalg": "avx512_bitalg", "avx512vpopcntdq": "avx512_vpopcntdq",
            "avx512bf16": "avx512_bf16"}
_V2 = ["popcnt", "sse4.1", "sse4.2", "ssse3"]
_V3 = _V2 + ["avx", "avx2", "bmi", "bmi2", "f16c", "fma", "lzcnt", "movbe"]
_V4 = _V3 + ["avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"]
_FEATURES = {"x86-64": [], "x86-64-v2": _V2, "x86-64-v3": _V3, "x86-64-v4": _V4}


def cpu_flags() -> set:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def features(level: str) -> List[str]:
    """The CPU features (GCC names) code built for `level` may use; 'native': this CPU's."""
    if level not in LEVELS:
        raise ValueError(f"unknown instruction-set level {level!r}; choose one of {LEVELS}")
    if level == "native":
        have = cpu_flags()
        return [f for f, flag in _CPUINFO.items() if flag in have]
    return list(_FEATURES[level])


def missing(required: List[str]) -> List[str]:
    """The required features this CPU lacks (none on a non-x86 CPU asked for nothing)."""
    if not required:
        return []
    if platform.machine() not in ("x86_64", "AMD64"):
        return list(required)
    have = cpu_flags()
    return [f for f in required if _CPUINFO.get(f, f) not in have]
