"""The machine: what it is, and its own attainable peaks for the roofline.

- FP32 peak: the best rate of a large float32 GEMM, by kcomp and by numpy's BLAS (the faster
  one counts), best of several calls: what this machine attains on dense float32 math.
- memory bandwidth: the best of a 256 MiB numpy copy (read + write, one thread; counted as
  2 bytes moved per byte copied, so the write-allocate reads are not counted) and kcomp sums of
  the same 256 MiB (read only, all cores: rows of 8192, and the flat array), in bytes moved per
  second.

Both are measured, not taken from a data sheet, so the roofline is the one this (shared,
possibly throttled) machine gives right now: before the suite and again after it, the better
of the two counting (`kcomp bench` records both); `--peak-gflops` and `--bandwidth` override
them. Peers can beat the measured peak where their GEMM is faster than kcomp's and numpy's.
"""
from __future__ import annotations

import os
import platform
import subprocess
import time

import numpy as np


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list:
    """The vector ISA flags of interest that /proc/cpuinfo lists."""
    wanted = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16",
              "avx512_vnni", "amx_tile")
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return [w for w in wanted if w in have]
    except OSError:
        pass
    return []


def memory_gib() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return 0.0


def kcomp_revision() -> str:
    """The commit measured, and whether kcomp's sources differed from it."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    git = ["git", "-C", root]
    try:
        rev = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(git + ["status", "--porcelain", "--", "kcomp", "csrc"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + (" plus uncommitted changes in kcomp/ or csrc/" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"


def describe() -> dict:
    """What the machine and software are (no measurement)."""
    import kcomp
    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "arch": platform.machine(),
            "os": f"{platform.system()} {platform.release()}", "memory_gib": memory_gib(),
            "cpu_flags": cpu_flags(), "python": platform.python_version(),
            "numpy": np.__version__, "kcomp": kcomp.__version__,
            "kcomp_revision": kcomp_revision(),
            "settings": {k: v for k, v in sorted(os.environ.items())
                         if (k.startswith("KCOMP_") and k != "KCOMP_CACHE_DIR")
                         or k.startswith("OPENBLAS_") or k.startswith("OMP_")
                         or k.startswith("MKL_") or k == "XLA_FLAGS"}}
    if hasattr(os, "sched_getaffinity"):
        info["usable_cores"] = len(os.sched_getaffinity(0))
    try:
        from kcomp import native
        rt = native()
        info["kcomp_isa"], info["kcomp_threads"] = rt.kernels_isa(), rt.num_threads()
    except Exception as e:  # still describe the rest
        info["kcomp_isa"] = f"unavailable ({e})"
    try:
        from kcomp.jit.toolchain import toolchain
        tc = toolchain()
        info["compiler"] = f"{tc.compiler} ({tc.cxx})"
    except Exception as e:  # no compiler: the kcomp rows will say so
        info["compiler"] = f"unavailable ({e})"
    return info


def _best(fn, reps: int, min_time: float = 0.0) -> float:
    """Fewest seconds of one call of fn over reps calls (after one warm-up)."""
    fn()
    best = float("inf")
    t_end = time.perf_counter() + min_time
    done = 0
    while done < reps or time.perf_counter() < t_end:
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
        done += 1
    return best


def measure_peak(quick: bool = False) -> dict:
    """FP32 GEMM rates (GFLOP/s) of kcomp and numpy; 'gflops' is the better one. The best
    call over about a second each (on a shared machine, a quiet moment)."""
    n = 1024 if quick else 2048
    reps = 3 if quick else 7
    min_time = 0.0 if quick else 1.0
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    flops = 2.0 * n ** 3
    rates = {}
    try:
        import kcomp.backend as K
        x, y = K.placeholder((n, n)), K.placeholder((n, n))
        f = K.function([x, y], [K.dot(x, y)], name="bench_peak_gemm")
        rates["kcomp_gemm"] = flops / _best(lambda: f([a, b]), reps, min_time) / 1e9
    except Exception as e:  # kcomp broken: numpy still gives a peak
        rates["kcomp_gemm_error"] = str(e)[:200]
    out = np.empty((n, n), np.float32)
    rates["numpy_gemm"] = flops / _best(lambda: np.matmul(a, b, out=out), reps, min_time) / 1e9
    best = max(v for k, v in rates.items() if k.endswith("_gemm"))
    return {"gflops": best, "gemm_n": n, **rates}


def _copy_seconds(src: np.ndarray, reps: int) -> float:
    dst = np.empty_like(src)
    return _best(lambda: np.copyto(dst, src), reps)


def measure_bandwidth(quick: bool = False) -> dict:
    """Memory bandwidth (GB/s, 1e9 bytes/s): numpy copy and kcomp sum of a large array."""
    n = (32 if quick else 64) * 2**20  # float32 elements: 128 or 256 MiB
    reps = 3 if quick else 7
    src = np.ones(n, np.float32)
    rates = {"numpy_copy": 2 * 4 * n / _copy_seconds(src, reps) / 1e9}
    try:
        import kcomp.backend as K
        rows = src.reshape(-1, 8192)
        x = K.placeholder(rows.shape)
        f = K.function([x], [K.sum(x, axis=-1)], name="bench_bandwidth_row_sum")
        rates["kcomp_row_sum"] = 4 * n / _best(lambda: f([rows]), reps) / 1e9
        x = K.placeholder((n,))
        f = K.function([x], [K.sum(x)], name="bench_bandwidth_sum")
        rates["kcomp_flat_sum"] = 4 * n / _best(lambda: f([src]), reps) / 1e9
    except Exception as e:  # numpy's copy still gives a figure
        rates["kcomp_sum_error"] = str(e)[:200]
    best = max(v for k, v in rates.items() if not k.endswith("_error"))
    return {"gbs": best, "bytes": 4 * n, **rates}


def roofline(peak_gflops: float, bandwidth_gbs: float, flops: float, nbytes: float) -> float:
    """Attainable GFLOP/s at this arithmetic intensity."""
    if nbytes <= 0:
        return peak_gflops
    return min(peak_gflops, bandwidth_gbs * flops / nbytes)
