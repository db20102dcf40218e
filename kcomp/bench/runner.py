"""Build, check and time every implementation of every case, in interleaved rounds.

For each case: make the inputs (float32, fixed seed) and the float64 reference; build each
implementation (kcomp compiles, peers jit); run each once and compare with the reference: one
that disagrees is reported as wrong and not timed. Then each correct implementation is warmed
up and gets a sample plan: batches of one call (or of enough calls to last 50 µs, so that
reading the clock costs nothing beside them), as many as fill about `sample_s`. `rounds`
rounds each time one sample of every implementation; the order rotates from round to round,
so that none always runs right after another, and each sample follows `settle_s` of untimed
calls of the same implementation (other libraries' thread pools spin for a while after their
last call, and a pool that fell asleep makes the first calls slow: the switch from one library
to another is not what is measured). A sample's value is the median seconds per call over its
batches (robust to the batches during which another process had the core); the result is the
median (and the min) of the samples over the rounds.
"""
from __future__ import annotations

import gc
import math
import os
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional

import numpy as np

from . import machine
from .peers import IMPLS, Built, Unavailable
from .workloads import Case

MAX_CALLS = 100_000
BATCH_S = 50e-6


def rel_error(got, ref: np.ndarray):
    """max |got - ref| / max |ref|, or a reason the result cannot be compared."""
    got = np.asarray(got)
    if got.shape != ref.shape:
        return f"shape {got.shape}, expected {ref.shape}"
    got = got.astype(np.float64)
    if not np.all(np.isfinite(got)):
        return "non-finite values"
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    if ref.size == 0:
        return 0.0
    return float(np.max(np.abs(got - ref))) / max(scale, 1e-30)


def warm_up(run: Callable[[], object], seconds: float, min_calls: int = 3) -> None:
    """Calls for at least `seconds` (and min_calls): libraries start thread pools, pick and
    JIT-compile kernels and fault in memory over their first calls (PyTorch's first matrix
    products on this kind of machine take milliseconds each for about a second)."""
    end = time.perf_counter() + seconds
    n = 0
    while n < min_calls or time.perf_counter() < end:
        run()
        n += 1


def sample_plan(run: Callable[[], object], sample_s: float):
    """(calls per batch, batches per sample, estimated seconds per call). A batch is one call,
    or enough calls to last BATCH_S, so that reading the clock costs nothing beside it."""
    t = time.perf_counter()
    run()
    one = time.perf_counter() - t
    if one < sample_s:
        k = max(1, min(1000, int(0.25 * sample_s / max(one, 1e-9))))
        t = time.perf_counter()
        for _ in range(k):
            run()
        one = (time.perf_counter() - t) / k
    per_batch = max(1, math.ceil(BATCH_S / max(one, 1e-9)))
    batches = max(1, min(MAX_CALLS // per_batch, round(sample_s / (per_batch * one))))
    return per_batch, batches, one


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300]}" if text else type(e).__name__


def _build(name: str, case: Case, inputs, weights, entry: dict) -> Optional[Built]:
    impl = IMPLS[name]
    try:
        return impl.build(case, inputs, weights)
    except Unavailable as e:
        entry.update(status="unavailable", message=str(e))
    except Exception as e:  # any failure of one implementation is that row's answer
        entry.update(status="error", message=_first_line(e))
    return None


def run_case(case: Case, names: List[str], rounds: int, sample_s: float,
             peak_gflops: float, bandwidth_gbs: float, log=None, warm_s: float = 0.5,
             settle_s: float = 0.1) -> dict:
    wl = case.workload
    inputs, weights = case.make()
    t = time.perf_counter()
    ref = wl.reference(case.params, inputs, weights)
    ref_s = time.perf_counter() - t
    flops, nbytes = case.flops, case.bytes
    out = {"workload": case.name, "group": wl.group, "spec": case.spec, "label": case.label,
           "title": wl.title, "flops": flops, "bytes": nbytes,
           "intensity": flops / nbytes if nbytes else None,
           "roofline_gflops": machine.roofline(peak_gflops, bandwidth_gbs, flops, nbytes),
           "tolerance": wl.tolerance, "reference_s": ref_s, "impls": {}}
    built: Dict[str, Built] = {}
    for name in names:
        entry = out["impls"].setdefault(name, {})
        b = _build(name, case, inputs, weights, entry)
        if b is None:
            if log:
                log(f"    {name}: {entry['status']}: {entry['message']}")
            continue
        entry.update(build_s=b.build_s, note=b.note)
        try:
            err = rel_error(b.to_numpy(b.run()), ref)
        except Exception as e:  # failing at run time is an error too
            entry.update(status="error", message=_first_line(e))
            continue
        if isinstance(err, str) or err > wl.tolerance:
            entry.update(status="wrong", error=None if isinstance(err, str) else err,
                         message=err if isinstance(err, str) else
                         f"max error {err:.2e} relative to max |reference| "
                         f"(tolerance {wl.tolerance:.0e})")
            if log:
                log(f"    {name}: WRONG: {entry['message']}")
            continue
        entry.update(status="ok", error=err)
        built[name] = b

    plan = {}
    for name, b in built.items():
        warm_up(b.run, warm_s)
        plan[name] = sample_plan(b.run, sample_s)
        out["impls"][name].update(calls_per_batch=plan[name][0], batches_per_sample=plan[name][1])
    samples = {name: [] for name in built}
    order = list(built)
    gc.collect()
    gc.disable()  # as timeit does: a collection inside one sample would be noise
    try:
        for r in range(rounds):
            k = r % len(order) if order else 0
            for name in order[k:] + order[:k]:
                run = built[name].run
                per_batch, batches, per_call = plan[name]
                if per_call < settle_s:
                    # untimed calls first: the previous implementation's thread pools spin
                    # for up to ~0.1 s after its last call (OpenBLAS, XLA's), and a library
                    # whose own pool fell asleep stalls on its first calls; a steady state,
                    # not the switch from one library to another, is what gets timed
                    end = time.perf_counter() + settle_s
                    while time.perf_counter() < end:
                        run()
                times = []
                for _ in range(batches):
                    t = time.perf_counter()
                    for _ in range(per_batch):
                        run()
                    times.append((time.perf_counter() - t) / per_batch)
                # the median batch: robust to the batches during which another process on
                # the machine had the core
                samples[name].append(statistics.median(times))
    finally:
        gc.enable()

    for name, s in samples.items():
        med = statistics.median(s)
        e = out["impls"][name]
        e.update(samples_s=s, median_s=med, min_s=min(s), gflops=flops / med / 1e9,
                 gbs=nbytes / med / 1e9,
                 roofline_fraction=flops / med / 1e9 / out["roofline_gflops"])
    summarize(out)
    del built
    gc.collect()
    return out


def apply_roofline(case_result: dict, peak_gflops: float, bandwidth_gbs: float) -> None:
    """(Re)compute the case's roofline and everyone's fraction of it."""
    r = case_result
    r["roofline_gflops"] = machine.roofline(peak_gflops, bandwidth_gbs, r["flops"], r["bytes"])
    for e in r["impls"].values():
        if e.get("status") == "ok":
            e["roofline_fraction"] = e["gflops"] / r["roofline_gflops"]
    summarize(r)


def summarize(case_result: dict) -> None:
    """The best peer, kcomp's speed relative to it, and kcomp's fraction of the roofline."""
    impls = case_result["impls"]
    peers = {n: e for n, e in impls.items() if n != "kcomp" and e.get("status") == "ok"}
    best = min(peers, key=lambda n: peers[n]["median_s"]) if peers else None
    case_result["best_peer"] = best
    case_result["best_peer_s"] = peers[best]["median_s"] if best else None
    k = impls.get("kcomp", {})
    ok = k.get("status") == "ok"
    case_result["kcomp_vs_best"] = (peers[best]["median_s"] / k["median_s"]
                                    if ok and best else None)
    case_result["kcomp_roofline_fraction"] = k.get("roofline_fraction") if ok else None


def run_suite(cases: List[Case], peers: List[str], rounds: int, sample_s: float,
              peak_gflops: float, bandwidth_gbs: float, log=None,
              warm_s: float = 0.5, settle_s: float = 0.1) -> List[dict]:
    names = ["kcomp"] + [p for p in peers if IMPLS[p].probe()["available"]]
    results = []
    for i, case in enumerate(cases, 1):
        if log:
            log(f"[{i}/{len(cases)}] {case.name} {case.label}")
        t = time.perf_counter()
        load = _load()
        r = run_case(case, names, rounds, sample_s, peak_gflops, bandwidth_gbs, log, warm_s,
                     settle_s)
        r["seconds"] = time.perf_counter() - t
        # the machine's 1-minute load average before and after: other processes on a small
        # machine slow down libraries whose threads wait for each other (OpenMP barriers)
        r["load_avg"] = [load, _load()]
        results.append(r)
        if log:
            log("    " + one_line(r))
    return results


def one_line(r: dict) -> str:
    from .report import fmt_time
    parts = []
    for name, e in r["impls"].items():
        parts.append(f"{name} {fmt_time(e['median_s'])}" if e.get("status") == "ok"
                     else f"{name} {e.get('status')}")
    if r.get("kcomp_vs_best") is not None:
        parts.append(f"kcomp/best {r['kcomp_vs_best']:.2f}x")
    return ", ".join(parts)


def _load() -> Optional[float]:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def stderr_log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def isfinite(x) -> bool:
    return x is not None and math.isfinite(x)
