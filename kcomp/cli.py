"""The `kcomp` command line.

    kcomp info [--json]          versions, kernel library, C++ toolchain, CPU, CUDA, cache
    kcomp cache list|clear|path  the compile cache
    kcomp demo [--batch N] [--fresh]
                                 compile a small MLP, check it, time compile, load and calls
    kcomp check-backend MODULE   the Keras 2 backend names a module lacks, all at once
    kcomp build SOURCE -o DIR    model functions as a library that runs without Python
    kcomp bench [--workload W]   kcomp's kernels against numpy, PyTorch, ONNX Runtime, JAX, TF

Heavy modules (numpy, the backend, the runtime) are imported by the commands that need them,
so that `kcomp --version` and `kcomp cache path` stay instant.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

NOT_FOUND = "not found"


# ---- formatting ----------------------------------------------------------------------------

def human_size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if n < 1024:
            break
    return f"{n:.1f} {unit}"


def human_duration(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} us"


def human_age(seconds: float) -> str:
    for limit, unit, div in ((120, "s", 1), (7200, "min", 60), (172800, "h", 3600)):
        if seconds < limit:
            return f"{max(seconds, 0) / div:.0f} {unit}"
    return f"{seconds / 86400:.0f} d"


def entries_text(n: int) -> str:
    return f"{n} {'entry' if n == 1 else 'entries'}"


def print_rows(rows) -> None:
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")


# ---- kcomp info ----------------------------------------------------------------------------

def _try(fn):
    """fn(), or 'unavailable (why)': info reports what it can and never fails on one piece."""
    try:
        return fn()
    except Exception as e:  # any failure of one piece is that piece's answer
        why = str(e).strip().splitlines()
        return f"unavailable ({why[0]})" if why else "unavailable"


def _kernels() -> dict:
    from . import native
    rt = native()
    return {"isa": rt.kernels_isa(), "threads": rt.num_threads()}


def _toolchain() -> dict:
    from .jit.toolchain import toolchain
    tc = toolchain()
    return {"cxx": tc.cxx, "compiler": tc.compiler, "target": tc.target, "flags": list(tc.flags),
            "ninja": tc.ninja, "probe_seconds": tc.probe_seconds}


def _tools() -> dict:
    from . import _paths
    return {name: _try(lambda: _paths.tool(name)) for name in ("cmake", "ninja")}


def _cpu() -> dict:
    info = {}
    with open("/proc/cpuinfo") as f:
        for line in f:
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())  # the first CPU speaks for all
    flags = set((info.get("flags") or info.get("Features") or "").split())
    return {"model": info.get("model name") or platform.processor() or platform.machine(),
            **{feature: feature in flags for feature in ("avx2", "avx512f", "fma")}}


def _run_tool(cmd) -> str:
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       errors="replace", timeout=20)
    if p.returncode != 0:
        raise RuntimeError(p.stdout.strip() or f"{cmd[0]} exited with {p.returncode}")
    return p.stdout


def _cuda() -> dict:
    from .cuda.toolkit import CudaUnavailableError, nvcc as find_nvcc, nvcc_version
    try:
        nvcc = find_nvcc()
    except CudaUnavailableError:
        return {"nvcc": NOT_FOUND, "version": NOT_FOUND}
    return {"nvcc": nvcc, "version": _try(lambda: nvcc_version(nvcc))}


def _gpus():
    """nvidia-smi's list of GPUs, or 'no GPU' (with the reason when nvidia-smi exists)."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return "no GPU"
    try:
        return [ln.strip() for ln in _run_tool([smi, "-L"]).splitlines() if ln.strip()]
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as e:
        return f"no GPU ({str(e).strip().splitlines()[0]})"


def _cache() -> dict:
    from .jit.cache import default_cache
    cache = default_cache()
    size = cache.size_bytes()
    return {"root": cache.root, "entries": len(cache.entries()), "size_bytes": size,
            "size": human_size(size)}


def _environment() -> dict:
    # every KCOMP_* variable, so that a misspelt one shows (info_rows marks it)
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith("KCOMP_")}


def collect_info() -> dict:
    import numpy
    from . import __version__
    return {
        "kcomp": __version__,
        "python": {"version": platform.python_version(), "executable": sys.executable},
        "numpy": numpy.__version__,
        "kernels": _try(_kernels),
        "toolchain": _try(_toolchain),
        "tools": _tools(),
        "cpu": _try(_cpu),
        "cuda": _cuda(),
        "gpu": _gpus(),
        "device": _try(lambda: __import__("kcomp").get_device()),
        "cache": _try(_cache),
        "environment": _environment(),
    }


def _or(value, fmt):
    """fmt(value), unless value is a string already: a piece not found or unavailable."""
    return value if isinstance(value, str) else fmt(value)


def info_rows(info: dict) -> list:
    from .config import VARIABLES
    tc = info["toolchain"]
    rows = [
        ("kcomp", info["kcomp"]),
        ("python", f"{info['python']['version']} ({info['python']['executable']})"),
        ("numpy", info["numpy"]),
        ("kernels", _or(info["kernels"], lambda k: f"{k['isa']} ISA, {k['threads']} threads")),
        ("c++ compiler", _or(tc, lambda t: f"{t['compiler']} ({t['cxx']})")),
    ]
    if not isinstance(tc, str):
        rows += [("target", tc["target"]), ("cxx flags", " ".join(tc["flags"])),
                 ("toolchain probe", human_duration(tc["probe_seconds"]))]
    rows += [
        ("cmake", info["tools"]["cmake"]),
        ("ninja", info["tools"]["ninja"]),
        ("cpu", _or(info["cpu"], lambda c: f"{c['model']} (" + ", ".join(
            f"{k} {'yes' if c[k] else 'no'}" for k in ("avx2", "avx512f", "fma")) + ")")),
        ("cuda", info["cuda"]["nvcc"] if info["cuda"]["nvcc"] == NOT_FOUND
         else f"{info['cuda']['version']} ({info['cuda']['nvcc']})"),
        ("gpu", _or(info["gpu"], "; ".join)),
        ("device", info["device"]),
        ("cache", _or(info["cache"], lambda c: f"{c['root']} ({entries_text(c['entries'])}, "
                                               f"{c['size']})")),
    ]
    env = [(k, v if k in VARIABLES else f"{v}  (not a kcomp setting)")
           for k, v in info["environment"].items()]
    rows += [("environment", "no KCOMP_* variables set")] if not env else \
        [("environment" if i == 0 else "", f"{k}={v}") for i, (k, v) in enumerate(env)]
    return rows


def cmd_info(args) -> int:
    info = collect_info()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print_rows(info_rows(info))
    return 0


# ---- kcomp cache ---------------------------------------------------------------------------

def cmd_cache_list(args) -> int:
    from .jit.cache import default_cache
    cache = default_cache()
    entries = cache.entries()
    now = time.time()
    rows = [("KEY", "SIZE", "CREATED", "AGE", "COMPILER", "PATH")]
    for e in entries:
        created = e.meta.get("created", 0)
        rows.append((e.key[:16], human_size(e.meta.get("lib_size", 0)),
                     time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created)),
                     human_age(now - created), e.meta.get("compiler", "?"), e.path))
    if entries:
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    libs = sum(e.meta.get("lib_size", 0) for e in entries)
    print(f"{entries_text(len(entries))}, {human_size(libs)} of libraries; "
          f"{human_size(cache.size_bytes())} in all under {cache.root}")
    return 0


def cmd_cache_clear(args) -> int:
    from .jit.cache import default_cache
    cache = default_cache()
    before = cache.size_bytes()
    entries = cache.clear()
    freed = before - cache.size_bytes()
    print(f"removed {entries_text(entries)}, freed {human_size(freed)} from {cache.root}")
    return 0


def cmd_cache_path(args) -> int:
    from .config import cache_dir
    print(cache_dir())
    return 0


# ---- kcomp demo ----------------------------------------------------------------------------

DEMO_LAYERS = (784, 256, 10)
TOLERANCE = 1e-4
CALLS = 200

# Rebuilds the demo's function in a fresh interpreter: only the disk cache can help it there.
_LOAD_SCRIPT = """
import json, time
import kcomp.backend as K
from kcomp.cli import demo_model
x, y, _ = demo_model()
t = time.perf_counter()
f = K.function([x], [y])
print(json.dumps(dict(f.compile_info, seconds=time.perf_counter() - t)))
"""


def demo_weights() -> dict:
    import numpy as np
    rng = np.random.default_rng(0)
    n_in, n_hidden, n_out = DEMO_LAYERS

    def rand(*shape):
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)
    # biases are nonzero so that the check covers the bias adds too
    return {"W1": rand(n_in, n_hidden), "b1": rand(n_hidden),
            "W2": rand(n_hidden, n_out), "b2": rand(n_out)}


def demo_model():
    """(input placeholder, softmax output, numpy weights) of the demo's two-layer MLP."""
    import kcomp.backend as K
    w = demo_weights()
    x = K.placeholder((None, DEMO_LAYERS[0]))
    h = K.relu(K.dot(x, K.variable(w["W1"])) + K.variable(w["b1"]))
    y = K.softmax(K.dot(h, K.variable(w["W2"])) + K.variable(w["b2"]))
    return x, y, w


def numpy_forward(batch, w):
    """The same MLP written directly in numpy: the independent reference and the speed baseline."""
    import numpy as np
    h = np.maximum(batch @ w["W1"] + w["b1"], 0)
    z = h @ w["W2"] + w["b2"]
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def max_abs_error(got, want) -> float:
    import numpy as np
    return float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))


def paired_median_seconds(fa, fb, calls: int = CALLS, rounds: int = 4, settle: float = 0.1):
    """Median seconds per call of fa and of fb, timed in alternating runs so that both see the
    same machine. Each run starts with `settle` seconds of untimed calls: after a numpy matrix
    product OpenBLAS's threads spin for up to ~0.1 s, and on two cores they would take the
    core kcomp's second thread needs."""
    times = ([], [])
    for _ in range(rounds):
        for fn, out in zip((fa, fb), times):
            end = time.perf_counter() + settle
            while time.perf_counter() < end:
                fn()
            for _ in range(calls // rounds):
                t = time.perf_counter()
                fn()
                out.append(time.perf_counter() - t)
    return statistics.median(times[0]), statistics.median(times[1])


def load_in_new_process() -> dict:
    # run where this kcomp lies: `python -c` puts its working directory first on sys.path, and
    # from a source checkout (README's `pip install . && kcomp demo`) it imported the unbuilt tree
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = subprocess.run([sys.executable, "-c", _LOAD_SCRIPT], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=600, cwd=here)
    if p.returncode != 0:
        raise RuntimeError(f"the new process failed to load the demo function:\n"
                           f"{p.stderr.strip()[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def fresh_cache_dir(enabled: bool):
    """With enabled, a new empty KCOMP_CACHE_DIR for the block (and its child processes)."""
    if not enabled:
        yield
        return
    old = os.environ.get("KCOMP_CACHE_DIR")
    os.environ["KCOMP_CACHE_DIR"] = tempfile.mkdtemp(prefix="kcomp-demo-")
    try:
        yield
    finally:
        shutil.rmtree(os.environ["KCOMP_CACHE_DIR"], ignore_errors=True)
        if old is None:
            del os.environ["KCOMP_CACHE_DIR"]
        else:
            os.environ["KCOMP_CACHE_DIR"] = old


def _compile_rows(info: dict, seconds: float) -> list:
    timings = info["timings"]
    # phases under a millisecond are noise beside the build; they are summed as "other"
    big = {k: v for k, v in timings.items() if v >= 1e-3}
    phases = [f"{k} {human_duration(v)}" for k, v in big.items()]
    if len(big) < len(timings):
        phases.append(f"other {human_duration(sum(timings.values()) - sum(big.values()))}")
    if info.get("memo_hit"):
        how = "memo hit, compiled earlier in this process"
    elif info["cache_hit"]:
        how = "cache hit, loaded from disk"
    else:
        how = "cache miss, the compiler ran"
    return [("compile", f"{human_duration(sum(info['timings'].values()))}  first K.function "
                        f"call: {how} (wall {human_duration(seconds)})"),
            ("", ", ".join(phases))]


def run_demo(batch_rows: int, fresh: bool) -> int:
    import numpy as np
    import kcomp.backend as K
    from .jit.cache import default_cache
    from .jit.toolchain import toolchain
    from .ir.graph import Graph
    from .ir.interpret import evaluate

    import kcomp
    n_in, n_hidden, n_out = DEMO_LAYERS
    device = kcomp.get_device()
    print(f"kcomp demo: MLP {n_in}-{n_hidden}-{n_out} (relu, softmax), float32, "
          f"batch {batch_rows}, on the {device.upper()}")
    rows = [("cache", default_cache().root + ("  (fresh, removed at exit)" if fresh else ""))]

    # resolve the toolchain (and on a GPU the kernel library) first, so that the compile time
    # below is the function's own
    t = time.perf_counter()
    if device == "cuda":
        from .cuda import jit, runtime
        tc = jit.toolchain()
        runtime.library()
        what = f"nvcc {tc.version} for sm_{tc.arch}, {runtime.device_info()['name']}"
    else:
        what = toolchain().compiler
    rows.append(("toolchain", f"{what}, ready in {human_duration(time.perf_counter() - t)}"))

    x, y, w = demo_model()
    t = time.perf_counter()
    f = K.function([x], [y])
    first = f.compile_info
    rows += _compile_rows(first, time.perf_counter() - t)

    loaded = load_in_new_process()
    problems = []
    if not loaded["cache_hit"] or loaded["key"] != first["key"]:
        problems.append("the new process did not find the function in the disk cache")
    rows.append(("disk load", f"{human_duration(loaded['seconds'])}  K.function in a new process: "
                              + ("cache hit, no compiler ran" if loaded["cache_hit"]
                                 else "CACHE MISS, the compiler ran")))

    t = time.perf_counter()
    K.function([x], [y])
    rows.append(("memo hit", f"{human_duration(time.perf_counter() - t)}  K.function again "
                             f"in this process"))

    batch = np.random.default_rng(1).standard_normal((batch_rows, n_in)).astype(np.float32)
    got = f([batch])[0]
    (interpreted,), _ = evaluate(Graph((x,), (y,), ()), [batch])
    errors = {"reference interpreter": max_abs_error(got, interpreted),
              "plain numpy": max_abs_error(got, numpy_forward(batch, w))}
    worst = max(errors.values())
    if worst > TOLERANCE:
        problems.append(f"max abs error {worst:.1e} exceeds the tolerance {TOLERANCE:.0e}")
    rows.append(("accuracy", "max abs error " + ", ".join(f"{e:.1e} vs {k}" for k, e in
                                                         errors.items())
                 + (f": ok (< {TOLERANCE:.0e})" if worst <= TOLERANCE else ": FAILED")))

    ours, theirs = paired_median_seconds(lambda: f([batch]), lambda: numpy_forward(batch, w))
    ratio = theirs / ours
    rows.append(("per call", f"kcomp {human_duration(ours)}, numpy {human_duration(theirs)} "
                             f"(median of {CALLS}): kcomp " +
                 (f"{ratio:.1f}x faster" if ratio >= 1 else f"{1 / ratio:.1f}x slower")))
    print_rows(rows)
    for p in problems:
        print(f"FAILED: {p}", file=sys.stderr)
    return 1 if problems else 0


def cmd_demo(args) -> int:
    from .cuda.toolkit import CudaUnavailableError
    if args.device:
        os.environ["KCOMP_DEVICE"] = args.device  # the new process of the disk-load check too
    try:
        with fresh_cache_dir(args.fresh):
            return run_demo(args.batch, args.fresh)
    except CudaUnavailableError as e:
        print(f"kcomp demo: {e}", file=sys.stderr)
        return 2


# ---- kcomp check-backend -------------------------------------------------------------------

def check_backend(module_name: str) -> dict:
    """{group: [missing names]} of the Keras 2 backend surface for a module. A kcomp pending stub
    (a name that only raises NotImplementedError) counts as missing."""
    import importlib
    from .backend.api import SURFACE
    from .backend.pending import is_pending
    module = importlib.import_module(module_name)
    missing = {}
    for group, names in SURFACE.items():
        lacking = [n for n in names if not callable(getattr(module, n, None))
                   or is_pending(getattr(module, n))]
        if lacking:
            missing[group] = lacking
    return missing


def cmd_check_backend(args) -> int:
    from .backend.api import NAMES
    missing = check_backend(args.module)
    total = sum(len(v) for v in missing.values())
    if args.json:
        print(json.dumps({"module": args.module, "missing": missing, "count": total,
                          "surface": len(NAMES)}, indent=2))
    else:
        for group, names in missing.items():
            print(f"{group}: {len(names)} missing")
            print("  " + ", ".join(names))
        print(f"{args.module}: {len(NAMES) - total} of {len(NAMES)} Keras 2 backend names defined"
              + (", none missing" if not total else f", {total} missing"))
    return 1 if total else 0


# ---- kcomp build ---------------------------------------------------------------------------

def _source(spec: str):
    """A Keras .h5 file, or module:attribute naming a kcomp function, a Keras model, a dict of
    those, or a callable returning one."""
    if spec.endswith((".h5", ".hdf5", ".keras")) or os.path.isfile(spec):
        return spec
    import importlib
    module, _, attr = spec.partition(":")
    if not attr:
        raise ValueError(f"{spec!r}: give a Keras .h5 file or module:attribute")
    obj = getattr(importlib.import_module(module), attr)
    return obj() if callable(obj) and not hasattr(obj, "graph") and not hasattr(obj, "layers") \
        else obj


def _shape(text: str) -> tuple:
    return tuple(None if d.strip().lower() in ("none", "?", "") else int(d)
                 for d in text.split(","))


def cmd_build(args) -> int:
    from . import aot
    sys.path.insert(0, os.getcwd())  # module:attribute resolves against the current directory
    t = time.perf_counter()
    manifest = aot.build(_source(args.source), args.output, name=args.name, isa=args.isa,
                         weights=args.weights, quiet=args.quiet, force=args.force, jobs=args.jobs,
                         input_shapes=[_shape(s) for s in args.input_shape] or None,
                         device=args.device, cuda_arch=args.cuda_arch)
    if not args.quiet:
        names = ", ".join(f["name"] for f in manifest["functions"])
        target = (f"CUDA sm_{manifest['cuda']['arch']}" if manifest["device"] == "cuda" else
                  manifest["isa"]["level"])
        print(f"built {args.output} ({names}) for {target} in "
              f"{human_duration(time.perf_counter() - t)}")
    return 0


# ---- kcomp bench ---------------------------------------------------------------------------

def cmd_bench(args) -> int:
    from .bench.command import run
    return run(args)


# ---- entry point ---------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    from .bench.command import add_arguments as add_bench_arguments, positive_int
    from . import __version__
    # --traceback is accepted before or after the subcommand
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--traceback", action="store_true", default=argparse.SUPPRESS,
                        help="show the full Python traceback of an error")
    parser = argparse.ArgumentParser(prog="kcomp", parents=[common],
                                     description="kcomp: a compiling Keras 2 backend.")
    parser.add_argument("--version", action="version", version=f"kcomp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("info", parents=[common], help="versions, toolchain, hardware, cache")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(run=cmd_info)

    p = sub.add_parser("cache", parents=[common], help="inspect or clear the compile cache")
    cache_sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, run, text in (("list", cmd_cache_list, "one line per compiled function"),
                            ("clear", cmd_cache_clear, "remove every cached function"),
                            ("path", cmd_cache_path, "print the cache directory")):
        cache_sub.add_parser(name, parents=[common], help=text).set_defaults(run=run)

    p = sub.add_parser("build", parents=[common],
                       help="build model functions into a library that runs without Python")
    p.add_argument("source", help="a Keras .h5 file, or module:attribute (a kcomp function, a "
                                  "Keras model, a dict of them, or a callable returning one)")
    p.add_argument("-o", "--output", required=True, help="the artifact directory to create")
    p.add_argument("--name", default="model", help="the C API prefix (a C identifier)")
    p.add_argument("--isa", default="x86-64-v3",
                   choices=["x86-64", "x86-64-v2", "x86-64-v3", "x86-64-v4", "native"],
                   help="instruction-set level (default x86-64-v3)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="cpu (default) or cuda: the functions as CUDA for an NVIDIA GPU, built "
                        "with nvcc (no GPU needed to build)")
    p.add_argument("--cuda-arch", metavar="CC",
                   help="with --device cuda: the compute capability to build for (80, 90, "
                        "90a, ...; default KCOMP_CUDA_ARCH, else this machine's GPU)")
    p.add_argument("--weights", default="sidecar", choices=["sidecar", "embedded"],
                   help="weights in weights.bin (default) or inside the library")
    p.add_argument("--input-shape", action="append", default=[], metavar="D,D,...",
                   help="an input's shape for a Keras model (None for any extent); repeat per "
                        "input")
    p.add_argument("--force", action="store_true", help="replace an existing artifact")
    p.add_argument("-j", "--jobs", type=positive_int, help="parallel compiles (default: ninja's)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_build)

    p = sub.add_parser("check-backend", parents=[common],
                       help="list the Keras 2 backend names a module lacks")
    p.add_argument("module", help="the module to import, e.g. kcomp.backend")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(run=cmd_check_backend)

    p = sub.add_parser("demo", parents=[common],
                       help="compile, check and time a small MLP")
    p.add_argument("--batch", type=positive_int, default=64, metavar="N",
                   help="rows of the input batch (default 64)")
    p.add_argument("--fresh", action="store_true",
                   help="use a new temporary cache directory, so the compile is cold")
    p.add_argument("--device", choices=("cpu", "cuda"),
                   help="where the function runs (default: KCOMP_DEVICE, keras.json, else cpu)")
    p.set_defaults(run=cmd_demo)

    p = sub.add_parser("bench", parents=[common],
                       help="time kcomp's kernels against numpy, PyTorch, ONNX Runtime, JAX "
                            "and TensorFlow")
    add_bench_arguments(p)
    p.set_defaults(run=cmd_bench)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("kcomp: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `kcomp cache list | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as e:  # the one place where errors become messages
        if getattr(args, "traceback", False):
            raise
        print(f"kcomp: error: {type(e).__name__}: {e}\n(run again with --traceback for the "
              f"full traceback)", file=sys.stderr)
        return 1
