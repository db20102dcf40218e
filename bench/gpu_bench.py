"""GPU benchmarks: kcomp's CUDA kernels and compiled functions against PyTorch (cuBLAS, cuDNN) on
the same GPU in the same run. Needs a CUDA GPU and PyTorch.

    python bench/gpu_bench.py --out DIR      (bench/gpu_check.sh runs it)

Every kcomp result is checked against PyTorch (in float64 where it matters) before it is timed;
times are medians of CUDA-event-timed repetitions after warm-up. Rows: the workload, kcomp's
and the peer's milliseconds, their ratio (peer / kcomp: above 1 means kcomp is faster), and the
achieved rate (GB/s from the bytes each workload must move, or TFLOP/s). Writes gpu.json and
gpu.md to DIR and prints the table last.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # the gpu_* modules beside this one

from gpu_timing import cuda_time_ms  # noqa: E402


def _load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def bench_copy(torch, rows) -> float:
    """Device-to-device copy of 2^28 floats: the bandwidth the memory-bound rows compare to."""
    x = torch.randn(1 << 28, device="cuda")
    y = torch.empty_like(x)
    ms = cuda_time_ms(torch, lambda: y.copy_(x))
    nbytes = 2 * x.numel() * 4
    rows.append({"workload": "copy 2^28 float32 (bandwidth reference)", "kcomp_ms": None,
                 "peer": "torch copy_", "peer_ms": ms, "bytes": nbytes})
    return nbytes / ms / 1e6  # GB/s


def bench_functions(torch, rows) -> None:
    """kcomp compiled functions (the whole path: graph, lowering, generated CUDA, kernel library)
    on PyTorch tensors passed without copies, outputs left on the GPU."""
    import kcomp.backend as K
    n = 1 << 28
    x = K.placeholder((None,))
    t = torch.randn(n, device="cuda")
    chains = {  # five ops each: with two transcendentals, and plain arithmetic
        "tanh(1.5x+0.5)*sigmoid(x)+0.5x": (
            K.tanh(x * 1.5 + 0.5) * K.sigmoid(x) + 0.5 * x,
            lambda v: torch.tanh(v * 1.5 + 0.5) * torch.sigmoid(v) + 0.5 * v),
        "max(1.5x+0.5, 0)*x-0.25": (
            K.maximum(x * 1.5 + 0.5, 0.0) * x - 0.25,
            lambda v: torch.clamp_min(v * 1.5 + 0.5, 0.0) * v - 0.25)}
    for name, (chain, ref) in chains.items():
        f = K.function([x], [chain], device="cuda", device_outputs=True)
        got = torch.as_tensor(f([t])[0], device="cuda")
        err = (got - ref(t)).abs().max().item()
        if err > 1e-5:
            raise AssertionError(f"fused chain {name}: max abs error {err}")
        kc = cuda_time_ms(torch, lambda: f([t]))
        peer = cuda_time_ms(torch, lambda: ref(t))
        rows.append({"workload": f"fused chain {name}, 2^28 (K.function)", "kcomp_ms": kc,
                     "peer": "torch eager", "peer_ms": peer, "bytes": 8 * n})

    m = K.placeholder((None, 16384))
    fns = {"sum -1": (K.sum(m, axis=-1), lambda a: a.sum(-1)),
           "sum 0": (K.sum(m, axis=0), lambda a: a.sum(0)),
           "softmax -1": (K.softmax(m, axis=-1), lambda a: torch.softmax(a, -1)),
           "softmax 0": (K.softmax(m, axis=0), lambda a: torch.softmax(a, 0))}
    a = torch.randn(16384, 16384, device="cuda")
    for name, (out, ref) in fns.items():
        g = K.function([m], [out], device="cuda", device_outputs=True)
        res = torch.as_tensor(g([a])[0], device="cuda")
        want = ref(a.double())
        rel = ((res.double() - want).norm() / want.norm()).item()
        if not rel < 1e-5:
            raise AssertionError(f"{name}: relative error {rel}")
        kc = cuda_time_ms(torch, lambda: g([a]))
        peer = cuda_time_ms(torch, lambda: ref(a))
        nbytes = a.numel() * 4 + res.numel() * 4
        rows.append({"workload": f"{name} of (16384,16384) (K.function)", "kcomp_ms": kc,
                     "peer": "torch", "peer_ms": peer, "bytes": nbytes})
    # per-call overhead: a tiny function's host time per call, launches included
    s = torch.randn(16, device="cuda")
    tiny = K.function([x], [x + 1.0], device="cuda", device_outputs=True)
    rows.append({"workload": "x + 1 on 16 floats, per call (K.function, host time)",
                 "kcomp_ms": host_ms_per_call(torch, lambda: tiny([s])), "peer": "torch eager",
                 "peer_ms": host_ms_per_call(torch, lambda: s + 1.0)})
    bench_rnn_function(torch, rows, "LSTM")
    bench_rnn_function(torch, rows, "GRU")


def host_ms_per_call(torch, fn, calls=2000, rounds=5) -> float:
    """Median over rounds of the host time per call of `calls` back-to-back calls (then a sync)."""
    import statistics
    for _ in range(50):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t) / calls * 1e3)
    return statistics.median(times)


def rnn_function(kind: str, steps: int, inputs: int, units: int, net):
    """A Keras 2.3.1 LSTM or GRU (reset_after=True) cell under K.rnn, written with backend ops
    and torch layer `net`'s weights, compiled for the GPU: its loop runs as one kc_cuda_rnn call
    (kcomp/lowering/rules/recurrent.py). Returns the K.function of the last output."""
    import numpy as np
    import kcomp.backend as K
    var = lambda t: K.variable(t.detach().cpu().numpy())  # noqa: E731
    w_ih, w_hh, b_ih, b_hh = net.weight_ih_l0, net.weight_hh_l0, net.bias_ih_l0, net.bias_hh_l0
    u = units
    if kind == "LSTM":  # PyTorch's i, f, g, o is Keras's i, f, c, o
        kernel, rec, bias = var(w_ih.T), var(w_hh.T), var(b_ih + b_hh)

        def step(x_t, states):
            h, c = states
            z = K.dot(x_t, kernel) + K.dot(h, rec) + bias
            i, f, g, o = (z[:, k * u:(k + 1) * u] for k in range(4))
            c = K.sigmoid(f) * c + K.sigmoid(i) * K.tanh(g)
            h = K.sigmoid(o) * K.tanh(c)
            return h, [h, c]
    else:  # PyTorch's GRU gates r, z, n are Keras's r, z, h in the order z, r, h
        p = np.r_[u:2 * u, 0:u, 2 * u:3 * u]
        kernel, rec, b_in, b_rec = var(w_ih[p].T), var(w_hh[p].T), var(b_ih[p]), var(b_hh[p])

        def step(x_t, states):
            h = states[0]
            mx = K.bias_add(K.dot(x_t, kernel), b_in)
            mh = K.bias_add(K.dot(h, rec), b_rec)
            z = K.sigmoid(mx[:, :u] + mh[:, :u])
            r = K.sigmoid(mx[:, u:2 * u] + mh[:, u:2 * u])
            h = z * h + (1 - z) * K.tanh(mx[:, 2 * u:] + r * mh[:, 2 * u:])
            return h, [h]
    x = K.placeholder((None, steps, inputs))
    zeros = K.zeros_like(K.dot(x[:, 0, :], K.constant(np.zeros((inputs, units), np.float32))))
    last, _, _ = K.rnn(step, x, [zeros] * (2 if kind == "LSTM" else 1))
    return K.function([x], [last], device="cuda", device_outputs=True)


def bench_rnn_function(torch, rows, kind: str) -> None:
    """rnn_function's layer at batch 32 against torch.nn.LSTM / GRU (cuDNN), TF32 off."""
    steps, batch, inputs, units = 100, 32, 128, 256
    net = getattr(torch.nn, kind)(inputs, units).cuda().eval()
    fn = rnn_function(kind, steps, inputs, units, net)
    xs = torch.randn(batch, steps, inputs, device="cuda")
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.no_grad():
            want = net(xs.transpose(0, 1).contiguous())[1]
            want = (want[0] if kind == "LSTM" else want)[0]
            got = torch.as_tensor(fn([xs])[0], device="cuda")
            err = (got - want).abs().max().item()
            if err > 1e-4:
                raise AssertionError(f"{kind} through K.rnn: max abs error {err}")
            kc = cuda_time_ms(torch, lambda: fn([xs]))
            peer = cuda_time_ms(torch, lambda: net(xs.transpose(0, 1).contiguous()))
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    rows.append({"workload": f"{kind} b{batch} T{steps} in{inputs} u{units}, K.rnn (K.function)",
                 "kcomp_ms": kc, "peer": f"torch.nn.{kind} (cuDNN)", "peer_ms": peer})


def table(rows, copy_gbs) -> str:
    lines = ["| workload | kcomp ms | peer | peer ms | peer/kcomp | kcomp rate |",
             "|---|---:|---|---:|---:|---:|"]
    for r in rows:
        kc, pm = r.get("kcomp_ms"), r.get("peer_ms")
        ratio = f"{pm / kc:.2f}x" if kc and pm else "-"
        ms = kc or pm
        if "bytes" in r:
            gbs = r["bytes"] / ms / 1e6
            rate = f"{gbs:.0f} GB/s ({100 * gbs / copy_gbs:.0f}% of copy)"
        elif "flops" in r:
            rate = f"{r['flops'] / ms / 1e9:.1f} TFLOP/s"
        else:
            rate = "-"
        lines.append(f"| {r['workload']} | {kc:.3f} | {r['peer']} | {pm:.3f} | {ratio} | {rate} |"
                     if kc else f"| {r['workload']} | - | {r['peer']} | {pm:.3f} | - | {rate} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=".")
    ap.add_argument("--only", default="", help="comma-separated: gemm,reduce,conv,rnn,functions")
    args = ap.parse_args(argv)
    import torch
    from kcomp.cuda import runtime
    info = runtime.device_info()
    rows: list = []
    copy_gbs = bench_copy(torch, rows)
    groups = {"gemm": lambda: _load("gpu_gemm").bench_gemm(torch, rows),
              "reduce": lambda: _load("gpu_reduce").bench_reduce(torch, rows),
              "conv": lambda: _load("gpu_conv").bench_conv(torch, rows),
              "rnn": lambda: _load("gpu_rnn").bench_rnn(torch, rows),
              "functions": lambda: bench_functions(torch, rows)}
    only = [g for g in args.only.split(",") if g] or list(groups)
    failures = []
    for name in only:
        t0 = time.perf_counter()
        try:
            groups[name]()
        except Exception as e:  # one group's failure must not hide the others' figures
            failures.append(f"{name}: {type(e).__name__}: {e}")
        print(f"[{name}: {time.perf_counter() - t0:.1f} s]", file=sys.stderr, flush=True)
    header = (f"GPU: {info['name']} ({info['multiprocessors']} SMs, compute capability "
              f"{info['compute_capability']}); PyTorch {torch.__version__}; "
              f"copy bandwidth {copy_gbs:.0f} GB/s (read + write); "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.node()}")
    text = header + "\n\n" + table(rows, copy_gbs) + "\n"
    if failures:
        text += "\nFAILED:\n" + "\n".join(failures) + "\n"
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "gpu.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.out, "gpu.json"), "w") as f:
        json.dump({"device": info, "torch": torch.__version__, "copy_gbs": copy_gbs,
                   "rows": rows, "failures": failures}, f, indent=1)
    print(text)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
