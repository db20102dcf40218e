#!/usr/bin/env python
"""Compile latency and call overhead of kcomp functions.

    python bench/compile_latency.py [--repeat N] [--quick] [--out PATH]

Measures, and writes as a markdown table (default bench/results/compile_latency.md):

  1. cold build: K.function of the demo MLP in a new process with an empty cache directory,
     so the CMake toolchain probe, the Jinja template compile and the C++ build all happen
     (without the precompiled header, which that build starts in the background)
  2. new function: the demo MLP made unique (a cache miss) in a new process whose cache
     directory already holds a probed toolchain
  3. disk cache hit: the same MLP again in a new process; the library is loaded from the cache
  4. memo hit: K.function of a structurally identical graph again in the same process
  5. per-call overhead of f([a]) with f = K.function([x], [x + 1.0]) on a (16,) float32 array,
     against numpy's a + 1.0 on the same array
  8. new function, deep graph: the loss and gradients of a chain of residual layers (hundreds
     of kernels), as a Keras training step of a deep model compiles

Every kcomp measurement runs in a child process (this script with --child) that prints one
JSON line, so that nothing kcomp caches in memory survives from one measurement to the next.
Children time only the K.function(...) call (or the calls of f), with time.perf_counter, not
interpreter start-up, `import kcomp` or building the graph. After each child, the script waits
for the precompiled header's background build, if one is running, before the next one.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import itertools
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from kcomp.bench.machine import cpu_model, kcomp_revision
from kcomp.bench.report import fmt_in, write_text

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "results", "compile_latency.md")

# Targets in seconds; a row passes when its median is at or below its target.
TARGETS = {"cold": 1.5, "new": 0.5, "disk": 0.030, "memo": 0.001, "call": 10e-6}
PHASES = ("prepare", "passes", "lower", "render", "build", "load")

# Settings that would distort timings (debug mode runs numpy beside every call) are dropped.
DROPPED_ENV = ("KCOMP_MODE", "KCOMP_EXPLAIN")


# ---- child side: runs in a fresh process, prints one JSON line ----------------------------------

def build_mlp(K, k: int):
    """The demo MLP; k > 0 adds 1e-7 * k, which changes the generated source (a cache miss)."""
    import numpy as np
    rng = np.random.default_rng(0)
    x = K.placeholder((None, 784))
    W1 = K.variable(rng.standard_normal((784, 256)).astype("float32") * 0.05)
    b1 = K.variable(np.zeros(256, "float32"))
    W2 = K.variable(rng.standard_normal((256, 10)).astype("float32") * 0.05)
    b2 = K.variable(np.zeros(10, "float32"))
    y = K.softmax(K.dot(K.relu(K.dot(x, W1) + b1), W2) + b2)
    if k:
        y = y + 1e-7 * k
    return x, y


def child_compile(k: int) -> dict:
    """Time one K.function of the MLP; report kcomp's phase timings and the toolchain."""
    import kcomp.backend as K
    from kcomp.jit.toolchain import toolchain
    x, y = build_mlp(K, k)
    t0 = time.perf_counter()
    f = K.function([x], [y])
    seconds = time.perf_counter() - t0
    tc = toolchain()
    return {"seconds": seconds, "compile_info": f.compile_info,
            # only meaningful where this process probed (an empty cache dir): otherwise it is
            # the figure recorded on disk by whichever process probed
            "probe_seconds": tc.probe_seconds, "compiler": tc.compiler, "cxx": tc.cxx}


def build_deep(K, layers: int, k: int):
    """Loss and gradients of `layers` residual layers h = tanh(dot(e + 1, W)) + sigmoid(2 e) * h
    with e = exp(h / 10) (each layer: a GEMM with an epilogue and sibling-fused loops); k > 0
    changes the source."""
    import numpy as np
    rng = np.random.default_rng(0)
    x = K.placeholder((None, 64))
    ws, h = [], x
    for _ in range(layers):
        ws.append(K.variable(rng.uniform(0, 0.1, (64, 64)).astype("float32")))
        e = K.exp(h * 0.1)
        h = K.tanh(K.dot(e + 1.0, ws[-1])) + K.sigmoid(e * 2.0) * h
    loss = K.sum(h * h) + 1e-7 * k
    return x, [loss] + K.gradients(loss, ws + [x])


def child_deep(layers: int, k: int) -> dict:
    import kcomp.backend as K
    x, outs = build_deep(K, layers, k)
    t0 = time.perf_counter()
    f = K.function([x], outs)
    seconds = time.perf_counter() - t0
    if f.compile_info["cache_hit"]:
        raise RuntimeError("deep child: expected a cache miss")
    return {"seconds": seconds, "kernels": f._current.exe.n_kernels}


def child_memo(reps: int) -> dict:
    """Time K.function on freshly built, structurally identical graphs (in-process memo)."""
    import kcomp.backend as K
    K.function(*[[t] for t in build_mlp(K, 0)])
    times = []
    for _ in range(reps):
        x, y = build_mlp(K, 0)  # new placeholder and variable objects, same shapes and values
        t0 = time.perf_counter()
        f = K.function([x], [y])
        times.append(time.perf_counter() - t0)
        if not f.compile_info["memo_hit"]:
            raise RuntimeError("memo child: K.function on an identical graph did not reuse the "
                               "in-process compiled function")
    return {"times": times}


def child_calls(batches: int, calls: int) -> dict:
    """Seconds per call of f([a]) and of numpy's a + 1.0, in interleaved batches."""
    import numpy as np
    import kcomp.backend as K
    x = K.placeholder((16,))
    f = K.function([x], [x + 1.0])
    a = np.arange(16, dtype=np.float32)
    if not np.array_equal(f([a])[0], a + 1.0):
        raise RuntimeError("calls child: f([a]) differs from a + 1.0")

    def time_kcomp():
        t0 = time.perf_counter()
        for _ in itertools.repeat(None, calls):
            f([a])
        return (time.perf_counter() - t0) / calls

    def time_numpy():
        t0 = time.perf_counter()
        for _ in itertools.repeat(None, calls):
            a + 1.0
        return (time.perf_counter() - t0) / calls

    time_kcomp(), time_numpy()  # warm up caches and branch predictors
    kc, npy = [], []
    gc.disable()  # as timeit does: a collection in one batch would be noise
    try:
        for i in range(batches):
            # alternate which goes first, so neither always runs right after the other
            if i % 2:
                npy.append(time_numpy())
                kc.append(time_kcomp())
            else:
                kc.append(time_kcomp())
                npy.append(time_numpy())
    finally:
        gc.enable()
    return {"kcomp": kc, "numpy": npy}


def child_main(args) -> None:
    if args.child == "compile":
        out = child_compile(args.k)
    elif args.child == "memo":
        out = child_memo(args.reps)
    elif args.child == "deep":
        out = child_deep(args.layers, args.k)
    else:
        out = child_calls(args.batches, args.calls)
    import numpy as np
    out["numpy_version"] = np.__version__
    print(json.dumps(out))


# ---- parent side: orchestrates the children ---------------------------------------------------

def run_child(cache_dir: str, *args: str) -> dict:
    """Run this script as a child with its own KCOMP_CACHE_DIR; return its JSON."""
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
    env["KCOMP_CACHE_DIR"] = cache_dir
    p = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", *args], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"child {' '.join(args)} failed (exit {p.returncode}):\n{p.stderr}")
    wait_background(cache_dir)
    return json.loads(p.stdout.strip().splitlines()[-1])


def wait_background(cache_dir: str, seconds: float = 120.0) -> None:
    """Wait for the build of the precompiled header that a child's first build starts in the
    background (kcomp/jit/pch.py), so that it does not compete with the next measurement."""
    from kcomp.jit import pch
    t = time.monotonic()
    while pch.building(cache_dir) and time.monotonic() - t < seconds:
        time.sleep(0.05)


def compile_child(cache_dir: str, k: int, expect_hit: bool, what: str) -> dict:
    """One compile child, checking it was the cache miss or hit the measurement is about."""
    r = run_child(cache_dir, "compile", "--k", str(k))
    if r["compile_info"]["cache_hit"] != expect_hit:
        raise RuntimeError(f"{what}: expected cache_hit={expect_hit}, got {r['compile_info']}")
    return r


def measure_cold(repeat: int, tmp: str):
    """Each repetition in a brand-new cache dir; the first dir is kept as the warmed-up one."""
    runs, warm = [], None
    for _ in range(repeat):
        d = tempfile.mkdtemp(prefix="cold-", dir=tmp)
        runs.append(compile_child(d, 0, False, "cold build"))
        if warm is None:
            warm = d
        else:
            shutil.rmtree(d, ignore_errors=True)  # keeps the disk use of the run small
    return runs, warm


def measure_new(repeat: int, warm: str):
    # k = 1, 2, ... never built in this warm dir (k = 0 is the plain MLP already in it)
    return [compile_child(warm, k, False, "new function") for k in range(1, repeat + 1)]


def measure_disk(repeat: int, warm: str):
    return [compile_child(warm, 0, True, "disk cache hit") for _ in range(repeat)]


def summary(values) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def phase_medians(runs) -> dict:
    """Median of each kcomp phase over the runs, plus what the phases do not cover."""
    out = {p: statistics.median(r["compile_info"]["timings"].get(p, 0.0) for r in runs)
           for p in PHASES}
    # K.function time outside the phases: toolchain look-up (or probe), cache key, binding
    out["other"] = statistics.median(
        r["seconds"] - sum(r["compile_info"]["timings"].get(p, 0.0) for p in PHASES)
        for r in runs)
    out["total"] = statistics.median(r["seconds"] for r in runs)
    return out


# ---- report -----------------------------------------------------------------------------------

def machine_lines(cold_run: dict) -> list:
    settings = " ".join(f"{k}={v}" for k, v in sorted(os.environ.items())
                        if k.startswith("KCOMP_") and k not in DROPPED_ENV + ("KCOMP_CACHE_DIR",))
    cores = f"{os.cpu_count()} cores"
    if hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) != os.cpu_count():
        cores += f" ({len(os.sched_getaffinity(0))} usable by this process)"
    return [f"- CPU: {cpu_model()}, {cores} ({platform.machine()}, "
            f"{platform.system()} {platform.release()})",
            f"- Python {platform.python_version()}, numpy {cold_run['numpy_version']}",
            f"- compiler: {cold_run['compiler']} ({cold_run['cxx']})",
            f"- kcomp: {kcomp_revision()}",
            f"- KCOMP settings: {settings or 'defaults'}"]


def results_table(rows) -> list:
    lines = ["| measurement | median | min | max | target | result |",
             "|---|---:|---:|---:|---:|:---:|"]
    for name, s, unit, target in rows:
        verdict = "—" if target is None else ("pass" if s["median"] <= target else "**FAIL**")
        tgt = "—" if target is None else "≤ " + fmt_in(target, unit)
        med, lo, hi = (fmt_in(s[k], unit) for k in ("median", "min", "max"))
        lines.append(f"| {name} | {med} | {lo} | {hi} | {tgt} | {verdict} |")
    return lines


def phase_table(phases, probe: float) -> list:
    cols = PHASES + ("other",)
    lines = ["| measurement | total | " + " | ".join(cols) + " |",
             "|---|" + "---:|" * (len(cols) + 1)]
    for name, p in phases:
        lines.append(f"| {name} | {fmt_in(p['total'], 'ms')} | "
                     + " | ".join(fmt_in(p[c], "ms") for c in cols) + " |")
    lines.append("")
    lines.append(f"\"other\" is K.function time outside kcomp's phases: finding the toolchain "
                 f"(in the cold build, the CMake probe: median {fmt_in(probe, 'ms')}), the cache "
                 f"key, and binding the library to the function's variables.")
    return lines


def render_report(args, command, rows, phases, probe, cold_run, elapsed, deep) -> str:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["# kcomp compile latency", "",
             f"Command: `{command}`  ", f"Date: {now}  ",
             f"Repetitions: {args.repeat} child processes per row 1-3, {args.memo_reps} memo "
             f"hits, {args.call_batches} batches of {args.batch_calls} calls; "
             f"whole run {elapsed:.0f} s", "",
             "Machine:", *machine_lines(cold_run), "",
             *results_table(rows), "",
             "Phase breakdown of rows 1-3 (medians, from `f.compile_info['timings']`):", "",
             *phase_table(phases, probe), "",
             "Rows 1-3 each run in a new Python process and time only the `K.function(...)` "
             "call. Row 1 uses a new, empty cache directory each time; rows 2-3 share one "
             "directory whose toolchain is probed; row 2 adds `1e-7 * k` to the output (a "
             "different k each time) so that the source differs, row 3 checks "
             "`compile_info['cache_hit']`. Row 4 builds the same graph anew from new "
             "placeholders and variables in one process. Rows 5-7 time `f([a])` for "
             "`f = K.function([x], [x + 1.0])` and `a + 1.0` on the same (16,) float32 array, "
             "in alternating batches; the difference is taken batch by batch.", "",
             f"Row 8 (`build_deep`): {args.layers} layers, {deep[0]['kernels']} kernels, "
             f"{args.deep_repeat} new processes in the warm directory (a different k each "
             f"time); {fmt_in(statistics.median(r['seconds'] for r in deep) / deep[0]['kernels'], 'ms')} "
             f"per kernel."]
    return "\n".join(lines) + "\n"


# ---- main -------------------------------------------------------------------------------------

def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=None,
                    help="new processes per subprocess measurement (default 5, --quick 3)")
    ap.add_argument("--out", default=DEFAULT_OUT, help="markdown file to write")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, for a smoke test")
    # child side (internal)
    ap.add_argument("--layers", type=int, default=None,
                    help="layers of row 8's deep graph (default 80, --quick 20)")
    ap.add_argument("--child", choices=("compile", "memo", "calls", "deep"),
                    help=argparse.SUPPRESS)
    ap.add_argument("--k", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--reps", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--batches", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--calls", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.repeat is None:
        args.repeat = 3 if args.quick else 5
    if args.layers is None:
        args.layers = 20 if args.quick else 80
    if args.repeat < 1 or args.layers < 1:
        ap.error("--repeat and --layers must be at least 1")
    args.deep_repeat = 1 if args.quick else 2
    # counts for the in-process measurements (the children get them as --reps, --batches, --calls)
    args.memo_reps = 30 if args.quick else 200
    args.call_batches, args.batch_calls = (6, 500) if args.quick else (20, 2000)
    return args


def main(argv=None) -> None:
    raw = sys.argv[1:] if argv is None else argv
    args = parse_args(raw)
    if args.child:
        child_main(args)
        return
    command = shlex.join(["python", os.path.relpath(os.path.abspath(__file__)), *raw])
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kcomp-bench-") as tmp:
        print(f"cold builds ({args.repeat} processes) ...", file=sys.stderr)
        cold, warm = measure_cold(args.repeat, tmp)
        print("new functions ...", file=sys.stderr)
        new = measure_new(args.repeat, warm)
        print("disk cache hits ...", file=sys.stderr)
        disk = measure_disk(args.repeat, warm)
        print("memo hits and per-call overhead ...", file=sys.stderr)
        memo = run_child(warm, "memo", "--reps", str(args.memo_reps))
        calls = run_child(warm, "calls", "--batches", str(args.call_batches),
                          "--calls", str(args.batch_calls))
        print("deep graphs ...", file=sys.stderr)
        deep = [run_child(warm, "deep", "--layers", str(args.layers), "--k", str(k))
                for k in range(1, args.deep_repeat + 1)]
    elapsed = time.perf_counter() - start

    secs = lambda runs: [r["seconds"] for r in runs]  # noqa: E731
    diff = [k - n for k, n in zip(calls["kcomp"], calls["numpy"])]
    rows = [("1. cold build, empty cache dir (incl. toolchain probe)", summary(secs(cold)), "s",
             TARGETS["cold"]),
            ("2. new function, toolchain ready (cache miss)", summary(secs(new)), "s",
             TARGETS["new"]),
            ("3. load from disk cache, new process", summary(secs(disk)), "ms", TARGETS["disk"]),
            ("4. in-process memo hit", summary(memo["times"]), "ms", TARGETS["memo"]),
            ("5. per call: kcomp `f([a])`, (16,) float32", summary(calls["kcomp"]), "µs",
             TARGETS["call"]),
            ("6. per call: numpy `a + 1.0`, same array", summary(calls["numpy"]), "µs", None),
            ("7. per call: kcomp − numpy", summary(diff), "µs", None),
            (f"8. new function, deep graph ({deep[0]['kernels']} kernels)",
             summary(secs(deep)), "s", None)]
    phases = [("1. cold build", phase_medians(cold)), ("2. new function", phase_medians(new)),
              ("3. disk cache hit", phase_medians(disk))]
    probe = statistics.median(r["probe_seconds"] for r in cold)
    report = render_report(args, command, rows, phases, probe, cold[0], elapsed, deep)
    print(report)
    write_text(args.out, report)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
