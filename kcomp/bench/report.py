"""Reports of a benchmark run: a terminal table, markdown, JSON, a roofline chart (PNG, needs
matplotlib) and one self-contained HTML page with the table and the chart embedded.

Every report works from the run's JSON-able dict (see kcomp/bench/command.py), so a report can
be made again from a saved JSON file.
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from typing import List, Optional

SCHEMA = "kcomp.bench/1"

NOTES = [
    "Times are per call: the median over interleaved rounds (each round times a sample of "
    "every implementation, in an order that rotates) of each sample's median batch (a batch is "
    "one call, or enough calls to last 50 µs), after untimed calls that let the previous "
    "library's threads settle.",
    "kcomp vs best = the fastest peer's median time / kcomp's median time: above 1, kcomp is "
    "faster than every peer; below 1, the fastest peer is that many times faster "
    "(1 / the ratio).",
    "roofline = kcomp's GFLOP/s / min(peak GFLOP/s, bandwidth x FLOP per byte), with this "
    "machine's measured peak and bandwidth; rate is GB/s (compulsory bytes: inputs, weights and "
    "outputs once) where the roofline is bandwidth-bound, else GFLOP/s.",
    "Every implementation's result was checked against a float64 numpy reference before it "
    "was timed; 'wrong' marks one that disagreed (not timed), 'n/a' one that cannot run the "
    "case, 'error' one that failed.",
]


# ---- formatting -----------------------------------------------------------------------------

def fmt_in(seconds: float, unit: str) -> str:
    """seconds in a fixed unit (s, ms or µs) with 3-4 significant digits."""
    v = seconds * {"s": 1.0, "ms": 1e3, "µs": 1e6}[unit]
    digits = 3 if v < 1 else 2 if v < 10 else 1 if v < 100 else 0
    return f"{v:.{digits}f} {unit}"


def write_text(path: str, text: str) -> None:
    """A report file, its directory created if needed."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def script_header(title: str, command: str, elapsed: float) -> List[str]:
    """The first lines of a bench/ script's markdown report: the title, the command, the date,
    the run's length and the machine (kcomp.bench.machine.describe's scalar fields)."""
    import datetime
    from .machine import describe
    lines = [f"# {title}", "", f"Command: `{command}`  ",
             f"Date: {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC  ",
             f"Whole run: {elapsed:.0f} s", "", "Machine:", ""]
    return lines + [f"- {k}: {v}" for k, v in describe().items()
                    if isinstance(v, (str, int, float))]


def fmt_time(s: Optional[float]) -> str:
    if s is None or not math.isfinite(s):
        return "—"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} µs"


def fmt_count(n: float, unit: str) -> str:
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.3g} {prefix}{unit}"
    return f"{n:.3g} {unit}"


def bandwidth_bound(r: dict, run: dict) -> bool:
    m = run["machine"]
    return r["roofline_gflops"] < m["peak"]["gflops"] * (1 - 1e-9)


def fmt_rate(r: dict, run: dict, impl: str = "kcomp") -> str:
    e = r["impls"].get(impl, {})
    if e.get("status") != "ok":
        return "—"
    if bandwidth_bound(r, run):
        return f"{e['gbs']:.3g} GB/s"
    return f"{e['gflops']:.3g} GFLOP/s"


def fmt_ratio(x: Optional[float]) -> str:
    if x is None:
        return "—"
    return f"{x:.2f}x"


def fmt_fraction(x: Optional[float]) -> str:
    return "—" if x is None else f"{100 * x:.0f}%"


def cell(e: Optional[dict]) -> str:
    if not e:
        return "—"
    st = e.get("status")
    if st == "ok":
        return fmt_time(e["median_s"])
    return {"unavailable": "n/a", "wrong": "wrong", "error": "error"}.get(st, str(st))


def impl_names(run: dict) -> List[str]:
    names = []
    for r in run["results"]:
        for n in r["impls"]:
            if n not in names:
                names.append(n)
    return names


def rows(run: dict, bold_best: bool = False) -> (List[str], List[List[str]]):
    names = impl_names(run)
    head = ["#", "workload", "case"] + names + ["best peer", "kcomp vs best", "kcomp rate",
                                                "roofline"]
    body = []
    for i, r in enumerate(run["results"], 1):
        ok = {n: e["median_s"] for n, e in r["impls"].items() if e.get("status") == "ok"}
        fastest = min(ok, key=ok.get) if ok else None
        cells = []
        for n in names:
            c = cell(r["impls"].get(n))
            if bold_best and n == fastest:
                c = f"**{c}**"
            cells.append(c)
        body.append([str(i), r["workload"], r["label"]] + cells +
                    [r.get("best_peer") or "—", fmt_ratio(r.get("kcomp_vs_best")),
                     fmt_rate(r, run), fmt_fraction(r.get("kcomp_roofline_fraction"))])
    return head, body


def problems(run: dict) -> List[str]:
    out = []
    for i, r in enumerate(run["results"], 1):
        for n, e in r["impls"].items():
            if e.get("status") in ("wrong", "error", "unavailable"):
                out.append(f"#{i} {r['workload']} {r['label']}: {n} {e['status']}: "
                           f"{e.get('message', '')}")
    return out


def peer_lines(run: dict) -> List[str]:
    out = []
    for n, p in run["impls"].items():
        if p.get("available"):
            out.append(f"{n} {p.get('version', '?')}: {p.get('description', '')}")
        else:
            out.append(f"{n}: not available ({p.get('reason', 'not requested')})")
    return out


def machine_lines(run: dict) -> List[str]:
    m = run["machine"]
    cores = f"{m.get('cores')} cores"
    if m.get("usable_cores") and m["usable_cores"] != m.get("cores"):
        cores += f" ({m['usable_cores']} usable)"
    pk, bw = m["peak"], m["bandwidth"]
    settings = " ".join(f"{k}={v}" for k, v in m.get("settings", {}).items())
    gemm = ", ".join(f"{k.replace('_gemm', '')} {v:.1f}" for k, v in pk.items()
                     if k.endswith("_gemm"))
    bws = ", ".join(f"{k.replace('_', ' ')} {v:.1f}" for k, v in bw.items()
                    if k.startswith(("numpy_", "kcomp_")) and not k.endswith("_error"))
    return [
        f"CPU: {m.get('cpu')}, {cores}, {m.get('memory_gib')} GiB ({m.get('arch')}, "
        f"{m.get('os')}); flags: {' '.join(m.get('cpu_flags', [])) or '?'}",
        f"Python {m.get('python')}, numpy {m.get('numpy')}; kcomp {m.get('kcomp')} "
        f"({m.get('kcomp_revision')}), kernels {m.get('kcomp_isa')}, "
        f"{m.get('kcomp_threads')} threads; compiler {m.get('compiler')}",
        f"peak FP32: {pk['gflops']:.1f} GFLOP/s"
        + (" (given)" if pk.get("given") else f" (best {pk.get('gemm_n')}^3 GEMM: {gemm}"
           + _before_after(pk) + ")"),
        f"memory bandwidth: {bw['gbs']:.1f} GB/s"
        + (" (given)" if bw.get("given") else f" (best of: {bws}" + _before_after(bw) + ")"),
        f"environment: {settings or 'no KCOMP_/OPENBLAS_/OMP_/MKL_ settings'}",
    ] + _load_line(run)


def _before_after(m: dict) -> str:
    if "before" not in m:
        return ""
    return f"; best before the suite {m['before']:.1f}, after it {m['after']:.1f}"


def _load_line(run: dict) -> List[str]:
    loads = [x for r in run.get("results", []) for x in r.get("load_avg") or [] if x is not None]
    if not loads:
        return []
    return [f"1-minute load average during the run: {min(loads):.1f} to {max(loads):.1f} "
            f"(with {run['machine'].get('cores')} cores, above that other processes competed "
            f"for them)"]


# ---- terminal and markdown ------------------------------------------------------------------

def _text_table(head, body) -> List[str]:
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h)
              for i, h in enumerate(head)]
    numeric = set(range(3, len(head)))

    def line(cells):
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return [line(head), line(["-" * w for w in widths])] + [line(r) for r in body]


def terminal(run: dict) -> str:
    head, body = rows(run)
    lines = [f"kcomp bench: {len(run['results'])} cases, {run['settings']['rounds']} rounds, "
             f"{run['date']}"]
    lines += ["  " + m for m in machine_lines(run)]
    lines += [""] + _text_table(head, body)
    probs = problems(run)
    if probs:
        lines += ["", "Not timed:"] + ["  " + p for p in probs]
    lines += ["", "kcomp vs best: the fastest peer's time / kcomp's (above 1: kcomp faster); "
              "roofline: kcomp's share of min(peak, bandwidth x intensity)."]
    return "\n".join(lines) + "\n"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(run: dict) -> str:
    head, body = rows(run, bold_best=True)
    lines = ["# kcomp kernel benchmarks", "",
             f"Command: `{run['command']}`  ", f"Date: {run['date']}  ",
             f"Rounds: {run['settings']['rounds']} per case, samples of about "
             f"{run['settings']['sample_s'] * 1e3:.0f} ms after "
             f"{run['settings'].get('settle_s', 0) * 1e3:.0f} ms of untimed calls; whole run "
             f"{run['duration_s']:.0f} s", "", "Machine:", ""]
    lines += [f"- {_md_escape(m)}" for m in machine_lines(run)]
    lines += ["", "Implementations:", ""] + [f"- {_md_escape(p)}" for p in peer_lines(run)]
    lines += ["", "| " + " | ".join(head) + " |",
              "|" + "|".join("---" if i < 3 else "---:" for i in range(len(head))) + "|"]
    lines += ["| " + " | ".join(_md_escape(c) for c in r) + " |" for r in body]
    lines += ["", "Fastest time of each row in bold.", ""]
    lines += [f"- {n}" for n in NOTES]
    probs = problems(run)
    if probs:
        lines += ["", "Not timed:", ""] + [f"- {_md_escape(p)}" for p in probs]
    return "\n".join(lines) + "\n"


def to_json(run: dict) -> str:
    return json.dumps(run, indent=1, sort_keys=False, default=str) + "\n"


# ---- chart ----------------------------------------------------------------------------------

GROUP_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                "#7f7f7f", "#bcbd22", "#17becf"]


def _points(run: dict):
    """(index, group, intensity, kcomp GFLOP/s or None, best peer GFLOP/s or None)."""
    for i, r in enumerate(run["results"], 1):
        k = r["impls"].get("kcomp", {})
        kg = k.get("gflops") if k.get("status") == "ok" else None
        bp = r.get("best_peer")
        pg = r["impls"][bp]["gflops"] if bp else None
        if r.get("intensity") and (kg or pg):
            yield i, r["group"], r["intensity"], kg, pg


def chart_png(run: dict) -> Optional[bytes]:
    """The roofline chart as PNG bytes, or None without matplotlib."""
    try:
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
    except ImportError:
        return None
    pts = list(_points(run))
    peak = run["machine"]["peak"]["gflops"]
    bw = run["machine"]["bandwidth"]["gbs"]
    fig = Figure(figsize=(10, 6.5), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    ridge = peak / bw
    xs = [p[2] for p in pts] + [ridge]
    lo, hi = min(xs) / 3, max(xs) * 3
    grid = [lo * (hi / lo) ** (k / 200) for k in range(201)]
    ax.plot(grid, [min(peak, bw * x) for x in grid], color="black", lw=2,
            label=f"roofline: {peak:.0f} GFLOP/s, {bw:.1f} GB/s")
    groups = list(dict.fromkeys(p[1] for p in pts))
    color = {g: GROUP_COLORS[i % len(GROUP_COLORS)] for i, g in enumerate(groups)}
    for i, g, x, kg, pg in pts:
        c = color[g]
        if kg and pg:
            ax.plot([x, x], [kg, pg], color=c, lw=0.8, ls=":")
        if pg:
            ax.scatter([x], [pg], s=40, facecolors="none", edgecolors=c, linewidths=1.2)
        if kg:
            ax.scatter([x], [kg], s=40, color=c)
            ax.annotate(str(i), (x, kg), textcoords="offset points", xytext=(4, 3), fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP per compulsory byte)")
    ax.set_ylabel("GFLOP/s")
    ax.set_title("kcomp (filled, numbered as in the table) and the fastest peer (hollow)")
    ax.grid(True, which="both", alpha=0.25)
    handles = [Line2D([], [], color="black", lw=2,
                      label=f"roofline: {peak:.0f} GFLOP/s peak, {bw:.1f} GB/s")]
    handles += [Line2D([], [], marker="o", ls="", color=color[g], label=g) for g in groups]
    handles += [Line2D([], [], marker="o", ls="", color="gray", label="kcomp"),
                Line2D([], [], marker="o", ls="", markerfacecolor="none", color="gray",
                       label="fastest peer")]
    ax.legend(handles=handles, loc="lower right", fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def chart_svg(run: dict) -> str:
    """The roofline chart as inline SVG (no dependencies): the HTML page's chart where
    matplotlib is not installed."""
    pts = list(_points(run))
    peak = run["machine"]["peak"]["gflops"]
    bw = run["machine"]["bandwidth"]["gbs"]
    ridge = peak / bw
    xs = [p[2] for p in pts] + [ridge]
    ys = [v for p in pts for v in (p[3], p[4]) if v] + [peak]
    lx0, lx1 = math.floor(math.log10(min(xs) / 2)), math.ceil(math.log10(max(xs) * 2))
    ly0, ly1 = math.floor(math.log10(min(ys + [bw * 10 ** lx0]) / 2)), \
        math.ceil(math.log10(max(ys) * 2))
    W, H, L, R, T, B = 900, 560, 70, 20, 30, 50

    def X(x):
        return L + (math.log10(x) - lx0) / (lx1 - lx0) * (W - L - R)

    def Y(y):
        return H - B - (math.log10(y) - ly0) / (ly1 - ly0) * (H - T - B)
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{W}' height='{H}' "
           f"font-family='sans-serif' font-size='11'>",
           f"<rect x='{L}' y='{T}' width='{W - L - R}' height='{H - T - B}' fill='white' "
           f"stroke='#444'/>"]
    for k in range(lx0, lx1 + 1):
        out.append(f"<line x1='{X(10 ** k):.1f}' y1='{T}' x2='{X(10 ** k):.1f}' y2='{H - B}' "
                   f"stroke='#ddd'/><text x='{X(10 ** k):.1f}' y='{H - B + 16}' "
                   f"text-anchor='middle'>{10.0 ** k:g}</text>")
    for k in range(ly0, ly1 + 1):
        out.append(f"<line x1='{L}' y1='{Y(10 ** k):.1f}' x2='{W - R}' y2='{Y(10 ** k):.1f}' "
                   f"stroke='#ddd'/><text x='{L - 6}' y='{Y(10 ** k) + 4:.1f}' "
                   f"text-anchor='end'>{10.0 ** k:g}</text>")
    x_lo, x_hi = 10.0 ** lx0, 10.0 ** lx1
    roof = [(x_lo, min(peak, bw * x_lo)), (min(max(ridge, x_lo), x_hi),
                                            min(peak, bw * min(max(ridge, x_lo), x_hi))),
            (x_hi, min(peak, bw * x_hi))]
    out.append("<polyline fill='none' stroke='black' stroke-width='2' points='"
               + " ".join(f"{X(a):.1f},{Y(b):.1f}" for a, b in roof) + "'/>")
    groups = list(dict.fromkeys(p[1] for p in pts))
    color = {g: GROUP_COLORS[i % len(GROUP_COLORS)] for i, g in enumerate(groups)}
    for i, g, x, kg, pg in pts:
        c = color[g]
        if kg and pg:
            out.append(f"<line x1='{X(x):.1f}' y1='{Y(kg):.1f}' x2='{X(x):.1f}' "
                       f"y2='{Y(pg):.1f}' stroke='{c}' stroke-dasharray='2,2'/>")
        if pg:
            out.append(f"<circle cx='{X(x):.1f}' cy='{Y(pg):.1f}' r='4.5' fill='none' "
                       f"stroke='{c}' stroke-width='1.5'/>")
        if kg:
            out.append(f"<circle cx='{X(x):.1f}' cy='{Y(kg):.1f}' r='4.5' fill='{c}'/>"
                       f"<text x='{X(x) + 6:.1f}' y='{Y(kg) - 4:.1f}' font-size='9'>{i}</text>")
    for j, g in enumerate(groups):
        out.append(f"<circle cx='{W - R - 120}' cy='{H - B - 20 - 15 * j}' r='4.5' "
                   f"fill='{color[g]}'/><text x='{W - R - 110}' y='{H - B - 16 - 15 * j}'>"
                   f"{html.escape(g)}</text>")
    out.append(f"<text x='{(L + W - R) / 2}' y='{H - 12}' text-anchor='middle'>arithmetic "
               f"intensity (FLOP per compulsory byte); roofline {peak:.0f} GFLOP/s, "
               f"{bw:.1f} GB/s</text>")
    out.append(f"<text x='14' y='{(T + H - B) / 2}' transform='rotate(-90 14 "
               f"{(T + H - B) / 2})' text-anchor='middle'>GFLOP/s</text>")
    out.append(f"<text x='{L}' y='{T - 10}'>kcomp (filled, numbered as in the table) and the "
               f"fastest peer (hollow)</text></svg>")
    return "\n".join(out)


# ---- HTML -----------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1400px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.best { font-weight: bold; }
td.win { background: #e3f4e1; }
td.lose { background: #fbe4e1; }
td.bad { color: #b00; }
code { background: #f4f4f4; padding: 1px 4px; }
ul { font-size: 13px; }
img { max-width: 100%; }
"""


def html_page(run: dict, png: Optional[bytes]) -> str:
    e = html.escape
    head, body = rows(run)
    names = impl_names(run)
    out = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>",
           "<title>kcomp kernel benchmarks</title>", f"<style>{_CSS}</style></head><body>",
           "<h1>kcomp kernel benchmarks</h1>",
           f"<p>Command: <code>{e(run['command'])}</code><br>Date: {e(run['date'])}<br>"
           f"Rounds: {run['settings']['rounds']} per case; whole run "
           f"{run['duration_s']:.0f} s</p>",
           "<h2>Machine</h2><ul>"] + [f"<li>{e(m)}</li>" for m in machine_lines(run)]
    out += ["</ul><h2>Implementations</h2><ul>"] + [f"<li>{e(p)}</li>" for p in peer_lines(run)]
    out += ["</ul><h2>Results</h2><table><tr>"] + [f"<th>{e(h)}</th>" for h in head] + ["</tr>"]
    for r, cells in zip(run["results"], body):
        ok = {n: x["median_s"] for n, x in r["impls"].items() if x.get("status") == "ok"}
        fastest = min(ok, key=ok.get) if ok else None
        tds = []
        for j, c in enumerate(cells):
            cls = []
            if j >= 3:
                cls.append("num")
            if 3 <= j < 3 + len(names):
                n = names[j - 3]
                if n == fastest:
                    cls.append("best")
                if r["impls"].get(n, {}).get("status") in ("wrong", "error"):
                    cls.append("bad")
            if head[j] == "kcomp vs best" and r.get("kcomp_vs_best") is not None:
                cls.append("win" if r["kcomp_vs_best"] >= 1 else "lose")
            title = ""
            if j == 2:
                title = f" title='{e(r['title'])}; --shape {e(r['spec'])}'"
            tds.append(f"<td class='{' '.join(cls)}'{title}>{e(c)}</td>")
        out.append("<tr>" + "".join(tds) + "</tr>")
    out.append("</table>")
    out.append("<h2>Roofline</h2>")
    if png:
        out.append(f"<img alt='roofline chart' src='data:image/png;base64,"
                   f"{base64.b64encode(png).decode('ascii')}'>")
    elif any(True for _ in _points(run)):
        out.append(chart_svg(run))
        out.append("<p>(drawn without matplotlib; install it for the PNG chart)</p>")
    else:
        out.append("<p>(no chart: nothing was timed)</p>")
    out += ["<h2>Notes</h2><ul>"] + [f"<li>{e(n)}</li>" for n in NOTES] + ["</ul>"]
    probs = problems(run)
    if probs:
        out += ["<h2>Not timed</h2><ul>"] + [f"<li>{e(p)}</li>" for p in probs] + ["</ul>"]
    out.append("</body></html>")
    return "\n".join(out) + "\n"
