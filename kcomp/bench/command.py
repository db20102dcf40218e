"""The options of `kcomp bench` and `python -m kcomp.bench`, and running them.

Nothing heavy is imported here at module level: `kcomp --help` builds this parser.
"""
from __future__ import annotations

import argparse
import datetime
import os
import shlex
import sys
import time

DEFAULT_ROUNDS, QUICK_ROUNDS = 7, 3
DEFAULT_SAMPLE_S, QUICK_SAMPLE_S = 0.1, 0.02
DEFAULT_WARM_S, QUICK_WARM_S = 0.5, 0.1
DEFAULT_SETTLE_S, QUICK_SETTLE_S = 0.1, 0.02
# settings that would distort timings: debug mode runs numpy beside every call
DROPPED_ENV = ("KCOMP_MODE", "KCOMP_EXPLAIN")


def positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def _positive_float(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not x > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return x


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workload", action="append", default=[], metavar="NAME",
                   help="a workload to run (repeatable; see --list); default: all")
    p.add_argument("--group", action="append", default=[], metavar="NAME",
                   help="a group of workloads to run (repeatable)")
    p.add_argument("--shape", action="append", default=[], metavar="SPEC",
                   help="run the one --workload at this shape instead of its defaults "
                        "(repeatable), e.g. --workload dot --shape 512x256,256x128")
    p.add_argument("--peers", metavar="LIST",
                   help="comma-separated peers: numpy, torch, torch.compile, onnxruntime, jax, "
                        "tensorflow, or none (default: every one that imports)")
    p.add_argument("--rounds", type=positive_int, metavar="N",
                   help=f"timing rounds per case (default {DEFAULT_ROUNDS}, --quick "
                        f"{QUICK_ROUNDS})")
    p.add_argument("--sample-time", type=_positive_float, metavar="SECONDS",
                   help=f"length of one timed sample (default {DEFAULT_SAMPLE_S}, --quick "
                        f"{QUICK_SAMPLE_S})")
    p.add_argument("--warmup", type=float, metavar="SECONDS",
                   help=f"calls of each implementation for at least this long before it is "
                        f"timed (default {DEFAULT_WARM_S}, --quick {QUICK_WARM_S})")
    p.add_argument("--settle", type=float, metavar="SECONDS",
                   help=f"untimed calls of an implementation before each of its samples, so "
                        f"that the previous library's spinning threads have stopped (default "
                        f"{DEFAULT_SETTLE_S}, --quick {QUICK_SETTLE_S})")
    p.add_argument("--quick", action="store_true",
                   help="fewer rounds, shorter samples, a smaller peak measurement: a smoke "
                        "test")
    p.add_argument("--out", metavar="DIR",
                   help="write NAME.json, NAME.md, NAME.html and NAME.png (with matplotlib) "
                        "there")
    p.add_argument("--name", default="kernels", metavar="NAME",
                   help="base name of the files --out writes (default kernels)")
    p.add_argument("--json", action="store_true", help="print the JSON instead of the table")
    p.add_argument("--peak-gflops", type=_positive_float, metavar="X",
                   help="the machine's FP32 peak for the roofline, instead of measuring it")
    p.add_argument("--bandwidth", type=_positive_float, metavar="GBS",
                   help="the machine's memory bandwidth in GB/s, instead of measuring it")
    p.add_argument("--report", metavar="JSON",
                   help="make the reports again from a saved JSON file (with --out), without "
                        "running anything")
    p.add_argument("--list", action="store_true",
                   help="list the workloads, groups and peers, and exit")


def list_text() -> str:
    from .peers import IMPLS
    from .workloads import GROUPS, WORKLOADS
    lines = ["Workloads (group: name  --shape syntax; default shapes):"]
    for g, names in GROUPS.items():
        for n in names:
            w = WORKLOADS[n]
            lines.append(f"  {g}: {n}  {w.shape_help}")
            lines.append(f"      {w.title}")
            lines.append(f"      defaults: {'  '.join(w.defaults)}")
    lines.append("Implementations:")
    for n, impl in IMPLS.items():
        p = impl.probe()
        state = p["version"] if p["available"] else f"not available ({p['reason']})"
        lines.append(f"  {n}: {state}")
    return "\n".join(lines) + "\n"


def bench(cases, peers, rounds, sample_s, quick=False, peak_gflops=None, bandwidth=None,
          command="", log=None, warm_s=DEFAULT_WARM_S, settle_s=DEFAULT_SETTLE_S) -> dict:
    """Run the cases against the peers and return the run as a JSON-able dict."""
    from . import machine, report
    from .peers import IMPLS
    from .runner import apply_roofline, run_suite
    for k in DROPPED_ENV:
        os.environ.pop(k, None)
    start = time.perf_counter()
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    impls = {}
    for n in ["kcomp"] + list(peers):
        impls[n] = dict(IMPLS[n].probe(), description=IMPLS[n].description)
    info = machine.describe()
    if log:
        log("measuring the machine's peak FP32 rate and memory bandwidth ...")
    info["peak"] = ({"gflops": peak_gflops, "given": True} if peak_gflops
                    else machine.measure_peak(quick))
    info["bandwidth"] = ({"gbs": bandwidth, "given": True} if bandwidth
                         else machine.measure_bandwidth(quick))
    if log:
        log(f"    peak {info['peak']['gflops']:.1f} GFLOP/s, bandwidth "
            f"{info['bandwidth']['gbs']:.1f} GB/s")
    results = run_suite(cases, list(peers), rounds, sample_s, info["peak"]["gflops"],
                        info["bandwidth"]["gbs"], log, warm_s, settle_s)
    if not (peak_gflops and bandwidth) and results:
        # again after the suite: on a shared machine the better of the two is the peak
        if log:
            log("measuring the peak and the bandwidth again ...")
        for key, unit, given, measure in (("peak", "gflops", peak_gflops, machine.measure_peak),
                                          ("bandwidth", "gbs", bandwidth,
                                           machine.measure_bandwidth)):
            if given:
                continue
            before, after = info[key], measure(quick)
            best = after if after[unit] > before[unit] else before
            info[key] = dict(best, before=before[unit], after=after[unit])
        for r in results:
            apply_roofline(r, info["peak"]["gflops"], info["bandwidth"]["gbs"])
        if log:
            log(f"    peak {info['peak']['gflops']:.1f} GFLOP/s, bandwidth "
                f"{info['bandwidth']['gbs']:.1f} GB/s")
    return {"schema": report.SCHEMA, "command": command, "date": date,
            "duration_s": time.perf_counter() - start,
            "settings": {"rounds": rounds, "sample_s": sample_s, "warmup_s": warm_s,
                         "settle_s": settle_s,
                         "quick": quick,
                         "peers": list(peers)},
            "machine": info, "impls": impls, "results": results}


def write_outputs(run: dict, out_dir: str, name: str) -> list:
    """NAME.json, NAME.md, NAME.html and (with matplotlib) NAME.png in out_dir."""
    from . import report
    os.makedirs(out_dir, exist_ok=True)
    base = os.path.join(out_dir, name)
    png = report.chart_png(run)
    written = []
    for ext, text in (("json", report.to_json(run)), ("md", report.markdown(run)),
                      ("html", report.html_page(run, png))):
        with open(f"{base}.{ext}", "w", encoding="utf-8") as f:
            f.write(text)
        written.append(f"{base}.{ext}")
    if png:
        with open(f"{base}.png", "wb") as f:
            f.write(png)
        written.append(f"{base}.png")
    return written


def command_line(prog: str, args) -> str:
    """The options given, as one command line (what the reports show)."""
    words = prog.split()
    for opt in ("workload", "group", "shape"):
        for v in getattr(args, opt):
            words += [f"--{opt}", v]
    for opt in ("peers", "rounds", "sample_time", "warmup", "settle", "peak_gflops",
                "bandwidth", "out"):
        v = getattr(args, opt)
        if v is not None:
            words += ["--" + opt.replace("_", "-"), str(v)]
    if args.name != "kernels":
        words += ["--name", args.name]
    words += [f"--{flag}" for flag in ("quick", "json") if getattr(args, flag)]
    return shlex.join(words)


def run(args, prog: str = "kcomp bench") -> int:
    """Carry out parsed options; 1 when kcomp was wrong or failed on a case."""
    if args.list:
        sys.stdout.write(list_text())
        return 0
    from . import report
    if args.report:
        import json
        with open(args.report, encoding="utf-8") as f:
            result = json.load(f)
        sys.stdout.write(report.to_json(result) if args.json else report.terminal(result))
        if args.out:
            for path in write_outputs(result, args.out, args.name):
                print(f"wrote {path}", file=sys.stderr)
        return 0
    from .peers import parse_peers
    from .runner import stderr_log
    from .workloads import select
    cases = select(args.workload, args.group, args.shape)
    peers = parse_peers(args.peers)
    rounds = args.rounds or (QUICK_ROUNDS if args.quick else DEFAULT_ROUNDS)
    sample_s = args.sample_time or (QUICK_SAMPLE_S if args.quick else DEFAULT_SAMPLE_S)
    warm_s = args.warmup if args.warmup is not None else (QUICK_WARM_S if args.quick
                                                          else DEFAULT_WARM_S)
    settle_s = args.settle if args.settle is not None else (QUICK_SETTLE_S if args.quick
                                                            else DEFAULT_SETTLE_S)
    command = command_line(prog, args)
    result = bench(cases, peers, rounds, sample_s, args.quick, args.peak_gflops,
                   args.bandwidth, command, stderr_log, warm_s, settle_s)
    if args.json:
        sys.stdout.write(report.to_json(result))
    else:
        sys.stdout.write(report.terminal(result))
    if args.out:
        for path in write_outputs(result, args.out, args.name):
            print(f"wrote {path}", file=sys.stderr)
    bad = [r for r in result["results"]
           if r["impls"].get("kcomp", {}).get("status") in ("wrong", "error")]
    return 1 if bad else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m kcomp.bench",
                                description="Time kcomp's kernels against numpy, PyTorch, "
                                            "ONNX Runtime, JAX and TensorFlow.")
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        return run(args, prog="python -m kcomp.bench")
    except ValueError as e:  # bad --workload / --shape / --peers
        p.error(str(e))
        return 2
