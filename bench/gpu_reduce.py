"""GPU benchmark of kcomp's reductions and softmax (kc_cuda_reduce, kc_cuda_softmax) against
PyTorch on a (16384, 16384) float32 tensor, over axis -1 (rows) and axis 0 (columns).

Imported by the GPU benchmark script, which passes the torch module in:

    from gpu_reduce import bench_reduce        (bench/ on sys.path, as gpu_bench.py puts it)
    rows = []
    bench_reduce(torch, rows)   # appends {"workload", "kcomp_ms", "peer", "peer_ms", "bytes"}

Each kcomp result is checked against torch's in float64 before it is timed. Times are medians of
20 repetitions after 3 warm-ups, measured with CUDA events on the legacy default stream (the one
kcomp's calls use with stream NULL, and torch's default). `bytes` is the least traffic the
workload needs (input read once, output written once); bench/gpu_bench.py measures the
device-to-device copy bandwidth they are compared with.
"""
import ctypes

from gpu_timing import cuda_time_ms

ROWS = COLS = 16384
WARMUP, REPS = 3, 20

# kc_red_kind values (csrc/include/kcomp/cuda_api.h)
_KIND = {"sum": 0, "mean": 1, "max": 3, "var": 5, "logsumexp": 7, "argmax": 8}
_KC_FLOAT32 = 11


def _struct(cls, **kw):
    s = cls()
    types = dict(cls._fields_)
    for name, value in kw.items():
        t = types[name]
        if t is not ctypes.c_void_p and isinstance(value, int) and issubclass(t, ctypes._Pointer):
            value = ctypes.cast(ctypes.c_void_p(value), t)
        setattr(s, name, value)
    return s


def _rel(torch, out, ref):
    a = out.double()
    b = ref.double()
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def softmax_call(cr, lib, x, y, outer: int, n: int, inner: int):
    """A call of kc_cuda_softmax: y = softmax of x viewed as (outer, n, inner), along n."""
    pargs = ctypes.byref(_struct(cr.SoftmaxArgs, outer=outer, n=n, inner=inner, x=x.data_ptr(),
                                 y=y.data_ptr(), log=0))  # (byref keeps the struct alive)

    def run():
        cr.check(lib.kc_cuda_softmax(pargs, None), "kc_cuda_softmax")
    return run


def poisoned_error(torch, run, y, ref) -> float:
    """One run into y filled with NaN first (so that unwritten elements show): y's relative
    error against ref."""
    y.fill_(float("nan"))
    run()
    torch.cuda.synchronize()
    return _rel(torch, y, ref)


def bench_reduce(torch, rows: list) -> None:
    from kcomp.cuda import runtime as cr

    lib = cr.library()
    dev = "cuda"
    gen = torch.Generator(device=dev)
    gen.manual_seed(0)
    x = torch.randn(ROWS, COLS, device=dev, dtype=torch.float32, generator=gen)
    nbytes = x.numel() * x.element_size()
    shape = f"{ROWS}x{COLS}"

    peers = {
        "sum": ("torch.sum", lambda d: torch.sum(x, d)),
        "mean": ("torch.mean", lambda d: torch.mean(x, d)),
        "max": ("torch.amax", lambda d: torch.amax(x, d)),
        "var": ("torch.var(unbiased=False)", lambda d: torch.var(x, d, unbiased=False)),
        "logsumexp": ("torch.logsumexp", lambda d: torch.logsumexp(x, d)),
        "argmax": ("torch.argmax", lambda d: torch.argmax(x, d)),
    }
    for dim in (-1, 0):
        # (outer, n, inner) of x viewed for a reduction over `dim`
        outer, n, inner = (ROWS, COLS, 1) if dim == -1 else (1, ROWS, COLS)
        for name, kind in _KIND.items():
            peer, peer_fn = peers[name]
            ref = peer_fn(dim)
            y = torch.empty_like(ref)
            args = _struct(cr.ReduceArgs, kind=kind, dtype=_KC_FLOAT32, outer=outer, n=n,
                           inner=inner, x=x.data_ptr(), y=y.data_ptr())
            pargs = ctypes.byref(args)

            def run(pargs=pargs):
                cr.check(lib.kc_cuda_reduce(pargs, None), "kc_cuda_reduce")

            y.fill_(float("nan") if y.is_floating_point() else -1)
            run()
            torch.cuda.synchronize()
            if name == "argmax":
                if not torch.equal(y, ref):
                    raise AssertionError(f"kcomp {name} dim={dim} differs from {peer}")
            else:
                err = _rel(torch, y, ref)
                if not err < 1e-4:
                    raise AssertionError(f"kcomp {name} dim={dim}: relative error {err:.3g}")
            rows.append({
                "workload": f"{name} axis={dim} ({shape})",
                "kcomp_ms": cuda_time_ms(torch, run, WARMUP, REPS),
                "peer": peer,
                "peer_ms": cuda_time_ms(torch, lambda: peer_fn(dim), WARMUP, REPS),
                "bytes": float(nbytes + y.numel() * y.element_size()),
            })

        ref = torch.softmax(x, dim)
        y = torch.empty_like(x)
        run_softmax = softmax_call(cr, lib, x, y, outer, n, inner)
        err = poisoned_error(torch, run_softmax, y, ref)
        if not err < 1e-4:
            raise AssertionError(f"kcomp softmax dim={dim}: relative error {err:.3g}")
        del ref
        rows.append({
            "workload": f"softmax axis={dim} ({shape})",
            "kcomp_ms": cuda_time_ms(torch, run_softmax, WARMUP, REPS),
            "peer": "torch.softmax",
            "peer_ms": cuda_time_ms(torch, lambda: torch.softmax(x, dim), WARMUP, REPS),
            "bytes": float(2 * nbytes),
        })
        del y
