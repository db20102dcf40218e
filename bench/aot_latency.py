#!/usr/bin/env python
"""Latency of an ahead-of-time artifact: loading it, and calling it from Python and from C++,
beside the JIT function it was built from and ONNX Runtime on the same model.

    python bench/aot_latency.py [--rounds N] [--calls N] [--loads N] [--quick] [--out PATH]

The model is the MLP 784-512-512-10 (relu, relu, softmax), float32, batch 1. The script

  1. builds it as a kcomp function (K.function, the JIT path) and as an artifact
     (kcomp.aot.build, --isa, default x86-64-v3), and checks that they agree;
  2. (a) load: times kcomp.aot.load(artifact) in --loads new Python processes (each imports
     kcomp.aot first, untimed; the import and the first call are reported beside it);
  3. builds examples/cpp_consumer against the artifact with CMake (Release) and checks its
     output; exports the same weights to ONNX (built with the onnx package) and checks ONNX
     Runtime's output;
  4. (b, c) per call: --rounds interleaved rounds; each round takes one sample of every
     implementation, in an order that rotates from round to round, after a pause that lets
     the previous one's threads go idle. A sample is --calls calls, each timed on its own
     (time.perf_counter_ns in Python, std::chrono::steady_clock in the C++ consumer); its value
     is the median call. The table gives the median, min and max of the samples.

Implementations: the C++ consumer (one process per sample, REPEATS = --calls; create() is not
timed); ONNX Runtime's Python API with a preallocated IOBinding (run_with_iobinding) and with
plain session.run (the C/C++ API's headers are not part of the onnxruntime wheel); the artifact
from Python (kcomp.aot.load(...)([x])); the JIT function (f([x])).

ONNX Runtime is optional: put it on the path (see bench/README.md); without it those rows are
left out. Results go to bench/results/aot_latency.md (--out) with the command, date and machine.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

from kcomp.bench.report import fmt_in, write_text

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_OUT = os.path.join(HERE, "results", "aot_latency.md")
LAYERS = (784, 512, 512, 10)
LOAD_TARGET = 0.030  # seconds, kcomp.aot.load in a new process
DROPPED_ENV = ("KCOMP_MODE", "KCOMP_EXPLAIN")  # they would distort timings

LOAD_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import kcomp.aot as aot
t1 = time.perf_counter()
art = aot.load(sys.argv[1])
t2 = time.perf_counter()
art([np.zeros((1, 784), np.float32)])
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "load": t2 - t1, "first_call": t3 - t2}))
"""


# ---- the model --------------------------------------------------------------------------------

def weights():
    import numpy as np
    rng = np.random.default_rng(0)
    out = []
    for a, b in zip(LAYERS[:-1], LAYERS[1:]):
        out.append((rng.standard_normal((a, b)).astype(np.float32) * np.float32((2 / a) ** 0.5),
                    (rng.standard_normal(b) * 0.1).astype(np.float32)))
    return out


def kcomp_function(ws):
    import kcomp.backend as K
    x = K.placeholder((None, LAYERS[0]), name="x")
    h = x
    for i, (w, b) in enumerate(ws):
        h = K.dot(h, K.variable(w)) + K.variable(b)
        h = K.relu(h) if i < len(ws) - 1 else K.softmax(h)
    return K.function([x], [h], name="predict")


def onnx_model(ws, path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    nodes, inits, h = [], [], "x"
    for i, (w, b) in enumerate(ws):
        inits += [numpy_helper.from_array(w, f"W{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes += [helper.make_node("MatMul", [h, f"W{i}"], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"])]
        last = i == len(ws) - 1
        nodes.append(helper.make_node("Softmax" if last else "Relu", [f"a{i}"],
                                      ["y" if last else f"h{i}"], **({"axis": -1} if last else {})))
        h = f"h{i}"
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 784])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


# ---- measurements -----------------------------------------------------------------------------

def child_env(cache_dir):
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
    env["KCOMP_CACHE_DIR"] = cache_dir
    return env


def measure_loads(art_dir, n, env):
    runs = []
    for _ in range(n):
        p = subprocess.run([sys.executable, "-c", LOAD_CHILD, art_dir], env=env,
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"load child failed:\n{p.stderr}")
        runs.append(json.loads(p.stdout.strip().splitlines()[-1]))
    return runs


def build_consumer(art_dir, work):
    import cmake
    cmake_bin = os.path.join(cmake.CMAKE_BIN_DIR, "cmake")
    build = os.path.join(work, "consumer")
    for cmd in ([cmake_bin, "-S", os.path.join(ROOT, "examples", "cpp_consumer"), "-B", build,
                 "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release", "-DKCOMP_ARTIFACT=mlp",
                 f"-Dmlp_DIR={os.path.join(art_dir, 'lib', 'cmake', 'mlp')}"],
                [cmake_bin, "--build", build]):
        env = dict(os.environ)
        import ninja  # CMake's Ninja generator finds ninja from PyPI on PATH
        env["PATH"] = ninja.BIN_DIR + os.pathsep + env.get("PATH", "")
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stdout}{p.stderr}")
    return os.path.join(build, "consumer")


def run_consumer(exe, work, calls, env):
    p = subprocess.run([exe, os.path.join(work, "in.kct"), os.path.join(work, "out.kct"),
                        "predict", str(calls)], capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"consumer failed: {p.stderr}")
    return {k: float(v) for k, v in (ln.split() for ln in p.stdout.splitlines()
                                     if len(ln.split()) == 2)}


def python_sample(call, calls):
    """Median seconds of `calls` calls, each timed on its own."""
    times = []
    clock = time.perf_counter_ns
    gc.disable()  # as timeit does
    try:
        for _ in range(calls):
            t0 = clock()
            call()
            times.append(clock() - t0)
    finally:
        gc.enable()
    return statistics.median(times) * 1e-9


def paired_sample(a, b, calls):
    """Medians of `calls` calls of a and of b, alternating call by call, so that both see the
    same load: the fairest A/B on a shared machine."""
    ta, tb = [], []
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for i in range(calls):
            for call, times in ((a, ta), (b, tb)) if i % 2 else ((b, tb), (a, ta)):
                t0 = clock()
                call()
                times.append(clock() - t0)
    finally:
        gc.enable()
    return statistics.median(ta) * 1e-9, statistics.median(tb) * 1e-9


# ---- report -----------------------------------------------------------------------------------

def row(name, values, unit, note=""):
    med, lo, hi = (fmt_in(v, unit) for v in (statistics.median(values), min(values), max(values)))
    return f"| {name} | {med} | {lo} | {hi} | {note} |"


def render(args, command, info, res, elapsed):
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    loads = res["loads"]
    load_med = statistics.median(r["load"] for r in loads)
    verdict = "pass" if load_med <= LOAD_TARGET else "**FAIL**"
    flags = set(info.get("cpu_flags", []))
    isa_flags = (", ".join(f for f in ("avx2", "fma", "avx512f") if f in flags)
                 or "none of avx2/fma/avx512f")
    lines = [
        "# kcomp ahead-of-time artifact latency", "",
        f"Command: `{command}`  ", f"Date: {now}  ",
        f"Model: MLP 784-512-512-10 (relu, relu, softmax), float32, batch 1; artifact built for "
        f"`{args.isa}` in {res['build_seconds']:.1f} s; the JIT function compiled with "
        f"`-march=native`.  ",
        f"Load average (1 min) at the start / end: {res['load_before']:.2f} / "
        f"{res['load_after']:.2f} on {info['cores']} cores; whole run {elapsed:.0f} s", "",
        "Machine:",
        f"- CPU: {info['cpu']}, {info['cores']} cores ({info['arch']}, {info['os']}); "
        f"{isa_flags}",
        f"- Python {info['python']}, numpy {info['numpy']}, compiler {info['compiler']}",
        f"- kcomp {info['kcomp']} ({info['kcomp_revision']}); kernels: {info.get('kcomp_isa')} "
        f"ISA, {info.get('kcomp_threads')} threads",
        f"- ONNX Runtime: {res.get('ort_version', 'not installed')} (CPU execution provider, "
        f"default session options: {res.get('ort_threads', '-')})",
        f"- settings: {' '.join(f'{k}={v}' for k, v in info['settings'].items()) or 'defaults'}",
        "", "## (a) Loading the artifact from Python, new process", "",
        f"{len(loads)} processes. Each imports `kcomp.aot` (and numpy), then times "
        f"`kcomp.aot.load(dir)` (manifest, sha256 of every file, CPU check, weights, dlopen), "
        f"then one call.", "",
        "| measurement | median | min | max | note |", "|---|---:|---:|---:|---|",
        row("`kcomp.aot.load(dir)`", [r["load"] for r in loads], "ms",
            f"target ≤ {fmt_in(LOAD_TARGET, 'ms')}: {verdict}"),
        row("`import kcomp.aot` (numpy included)", [r["import"] for r in loads], "ms"),
        row("first call after loading", [r["first_call"] for r in loads], "ms"),
        row("C++ `mlp_create(NULL)` (weights read + sha256)", res["create"], "ms",
            "from the consumer's runs"),
        "", "## (b, c) Per call, batch 1", "",
        f"{args.rounds} interleaved rounds; a sample is {args.calls} calls each timed on its "
        f"own, its value the median call; median / min / max over the samples. The last three "
        f"rows come from one more sample per round that alternates artifact and JIT calls, so "
        f"that both see the same load (kcomp's 2-thread pool makes its batch-1 latency bimodal "
        f"when another process holds a core).", "",
        "| implementation | median | min | max | note |", "|---|---:|---:|---:|---|"]
    for name, values, note in res["rows"]:
        lines.append(row(name, values, "µs", note))
    lines += ["", "Differences of the medians: " + "; ".join(res["diffs"]) + ".", "",
              "Every implementation's output was checked first: the artifact against the JIT "
              "function (from Python and from the C++ consumer) and ONNX Runtime against kcomp "
              f"(max |difference| {res.get('ort_err', float('nan')):.1e})."]
    if max(res["load_before"], res["load_after"]) > 1.5 * info["cores"] / 2:
        lines += ["", f"**The machine was loaded** (load average above {info['cores'] * 0.75:.1f}"
                  f"): other processes shared the cores; compare medians of runs made close "
                  f"together."]
    return "\n".join(lines) + "\n"


# ---- main -------------------------------------------------------------------------------------

def main(argv=None):
    raw = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 9)")
    ap.add_argument("--calls", type=int, default=None, help="calls per sample (default 2000)")
    ap.add_argument("--loads", type=int, default=None, help="load processes (default 9)")
    ap.add_argument("--isa", default="x86-64-v3", help="the artifact's --isa")
    ap.add_argument("--pause", type=float, default=0.2,
                    help="seconds between samples, for other implementations' threads to idle")
    ap.add_argument("--quick", action="store_true", help="fewer rounds, calls and loads")
    ap.add_argument("--out", default=DEFAULT_OUT, help="markdown file to write")
    args = ap.parse_args(raw)
    args.rounds = args.rounds or (3 if args.quick else 9)
    args.calls = args.calls or (300 if args.quick else 2000)
    args.loads = args.loads or (3 if args.quick else 9)
    command = shlex.join(["python", os.path.relpath(os.path.abspath(__file__)), *raw])
    start = time.perf_counter()
    load_before = os.getloadavg()[0]

    with tempfile.TemporaryDirectory(prefix="kcomp-aot-bench-") as work:
        cache = os.path.join(work, "cache")
        os.environ["KCOMP_CACHE_DIR"] = cache
        for k in DROPPED_ENV:
            os.environ.pop(k, None)
        env = child_env(cache)
        import numpy as np
        import kcomp.aot as aot
        from kcomp.aot import tensorfile
        from kcomp.bench.machine import describe
        info = describe()
        res = {"load_before": load_before}

        print("building the JIT function and the artifact ...", file=sys.stderr)
        ws = weights()
        f = kcomp_function(ws)
        art_dir = os.path.join(work, "mlp")
        t = time.perf_counter()
        aot.build(f, art_dir, name="mlp", isa=args.isa, quiet=True)
        res["build_seconds"] = time.perf_counter() - t
        art = aot.load(art_dir)
        x = np.random.default_rng(1).standard_normal((1, 784)).astype(np.float32)
        want = f([x])[0]
        np.testing.assert_allclose(art([x])[0], want, rtol=1e-5, atol=1e-7)

        print(f"(a) loading in {args.loads} new processes ...", file=sys.stderr)
        res["loads"] = measure_loads(art_dir, args.loads, env)

        print("building the C++ consumer ...", file=sys.stderr)
        exe = build_consumer(art_dir, work)
        tensorfile.save(os.path.join(work, "in.kct"), [x])
        run_consumer(exe, work, 1, env)
        np.testing.assert_allclose(tensorfile.load(os.path.join(work, "out.kct"))[0], want,
                                   rtol=1e-5, atol=1e-7)

        impls = {}  # name -> (sample function returning seconds, note)
        impls["kcomp artifact, C++ consumer (`mlp_run`)"] = None
        try:
            import onnxruntime as ort
        except ImportError:
            ort = None
            print("onnxruntime is not importable: its rows are left out", file=sys.stderr)
        if ort is not None:
            path = os.path.join(work, "mlp.onnx")
            onnx_model(ws, path)
            sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            so = sess.get_session_options()
            res["ort_version"] = ort.__version__
            res["ort_threads"] = (f"intra-op threads {so.intra_op_num_threads or 'default'}, "
                                  f"graph optimisation {so.graph_optimization_level.name}")
            y = np.empty((1, 10), np.float32)
            binding = sess.io_binding()
            binding.bind_cpu_input("x", x)
            binding.bind_output("y", "cpu", 0, np.float32, list(y.shape), y.ctypes.data)
            sess.run_with_iobinding(binding)
            res["ort_err"] = float(np.max(np.abs(y - want)))
            np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(sess.run(None, {"x": x})[0], want, rtol=1e-4, atol=1e-6)
            impls["ONNX Runtime, Python, IOBinding (`run_with_iobinding`)"] = (
                lambda: sess.run_with_iobinding(binding), "output preallocated")
            impls["ONNX Runtime, Python, `session.run`"] = (
                lambda: sess.run(None, {"x": x}), "allocates its output")
        impls["kcomp artifact, Python (`kcomp.aot.load(dir)([x])`)"] = (
            lambda: art([x]), "allocates its output")
        impls["kcomp JIT, Python (`f([x])`)"] = (lambda: f([x]), "allocates its output")

        names = list(impls)
        samples = {n: [] for n in names}
        res["create"] = []
        paired = []  # (artifact, JIT) per round, from alternating calls
        print(f"(b, c) {args.rounds} rounds of {len(names)} implementations ...", file=sys.stderr)
        for r in range(args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                time.sleep(args.pause)
                if impls[name] is None:
                    out = run_consumer(exe, work, args.calls, env)
                    samples[name].append(out["median_us"] * 1e-6)
                    res["create"].append(out["create_ms"] * 1e-3)
                else:
                    call = impls[name][0]
                    python_sample(call, 50)  # untimed warm-up calls
                    samples[name].append(python_sample(call, args.calls))
            time.sleep(args.pause)
            pa, pj = paired_sample(lambda: art([x]), lambda: f([x]), args.calls)
            paired.append((pa, pj))
        res["load_after"] = os.getloadavg()[0]
        med = {n: statistics.median(v) for n, v in samples.items()}
        res["rows"] = [(n, samples[n], impls[n][1] if impls[n] else "one process per sample")
                       for n in names]
        res["rows"] += [
            ("kcomp artifact, Python, paired with the JIT call by call", [p[0] for p in paired],
             "the same calls as below, alternating"),
            ("kcomp JIT, Python, paired with the artifact call by call", [p[1] for p in paired],
             ""),
            ("difference artifact − JIT, paired", [p[0] - p[1] for p in paired], "per round")]
        cpp, py_art, py_jit = names[0], names[-2], names[-1]
        diffs = [f"artifact − JIT from Python {fmt_in(med[py_art] - med[py_jit], 'µs')} "
                 f"(paired call by call: "
                 f"{fmt_in(statistics.median(p[0] - p[1] for p in paired), 'µs')})",
                 f"artifact from Python − from C++ {fmt_in(med[py_art] - med[cpp], 'µs')}"]
        for n in names[1:-2]:
            diffs.append(f"{n.split(',')[0]} ({n.split(', ', 2)[-1]}) / kcomp C++ "
                         f"{med[n] / med[cpp]:.2f}x")
        res["diffs"] = diffs
    report = render(args, command, info, res, time.perf_counter() - start)
    print(report)
    write_text(args.out, report)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
