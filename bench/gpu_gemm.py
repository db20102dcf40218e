"""GPU benchmark of kcomp's batched matrix product (kc_cuda_gemm) against torch.bmm (cuBLAS).

Imported by the GPU benchmark script, which passes the torch module in:

    rows = []
    bench_gemm(torch, rows)   # appends {"workload", "kcomp_ms", "peer", "peer_ms", "flops"}

Workloads (row-major, no transposes, alpha 1, no bias): float32 exact (FFMA) at
(32,512,512)x(32,512,512) and (256,64,64)x(256,64,64) against torch.bmm with TF32 off; float32
TF32 (tensor cores) at (32,512,512)^2 against torch.bmm with TF32 allowed; bfloat16 at
(32,512,512)^2 against torch.bmm in bfloat16; a batch of small matrices, (4096,16,16)x(4096,16,16)
float32, against torch.bmm with TF32 off. Each kcomp result is checked against torch.bmm in
float64 before it is timed (AssertionError on a mismatch). Times are medians of 30 calls after 5
warm-ups, measured with CUDA events on torch's current stream, which kcomp's calls are queued on
too. `flops` is 2 * batch * m * n * k.
"""
import ctypes

from gpu_timing import cuda_time_ms

WARMUP, REPS = 5, 30

# csrc/include/kcomp/abi.h and cuda_api.h
_KC_FLOAT32, _KC_BFLOAT16 = 11, 13
_EXACT, _TF32 = 0, 1

# (workload, dtype name, precision, (batch, m, n, k), TF32 allowed for the peer, tolerance)
_CASES = [
    ("gemm float32 exact (32,512,512)x(32,512,512)", "float32", _EXACT, (32, 512, 512, 512),
     False, 1e-5),
    ("gemm float32 exact (256,64,64)x(256,64,64)", "float32", _EXACT, (256, 64, 64, 64),
     False, 1e-5),
    ("gemm float32 tf32 (32,512,512)x(32,512,512)", "float32", _TF32, (32, 512, 512, 512),
     True, 5e-3),
    ("gemm bfloat16 (32,512,512)x(32,512,512)", "bfloat16", _EXACT, (32, 512, 512, 512),
     False, 2e-2),
    ("gemm float32 exact (4096,16,16)x(4096,16,16)", "float32", _EXACT, (4096, 16, 16, 16),
     False, 1e-5),
]


def _args(cr, dtype_code, precision, a, b, c):
    batch, m, k = a.shape
    n = b.shape[2]
    g = cr.GemmArgs()
    g.dtype, g.trans_a, g.trans_b = dtype_code, 0, 0
    g.m, g.n, g.k, g.batch = m, n, k, batch
    g.a, g.lda, g.stride_a = a.data_ptr(), k, m * k
    g.b, g.ldb, g.stride_b = b.data_ptr(), n, k * n
    g.c, g.ldc, g.stride_c = c.data_ptr(), n, m * n
    args = cr.CudaGemmArgs()
    args.g = g
    args.precision, args.act, args.bias, args.alpha = precision, 0, None, 1.0
    return args


def bench_gemm(torch, rows: list) -> None:
    from kcomp.cuda import runtime as cr

    lib = cr.library()
    stream = torch.cuda.current_stream().cuda_stream  # 0: the legacy default stream
    gen = torch.Generator(device="cuda")
    gen.manual_seed(0)
    matmul = torch.backends.cuda.matmul
    saved_tf32 = matmul.allow_tf32
    try:
        for name, dtype_name, precision, (batch, m, n, k), peer_tf32, tol in _CASES:
            dt = getattr(torch, dtype_name)
            code = _KC_FLOAT32 if dtype_name == "float32" else _KC_BFLOAT16
            a = torch.randn(batch, m, k, device="cuda", dtype=torch.float32, generator=gen).to(dt)
            b = torch.randn(batch, k, n, device="cuda", dtype=torch.float32, generator=gen).to(dt)
            c = torch.empty(batch, m, n, device="cuda", dtype=dt)
            c_peer = torch.empty_like(c)
            args = _args(cr, code, precision, a, b, c)
            ref_args = ctypes.byref(args)
            gemm = lib.kc_cuda_gemm

            c.fill_(float("nan"))
            cr.check(gemm(ref_args, stream), name)
            torch.cuda.synchronize()
            want = torch.bmm(a.double(), b.double())
            norm = torch.linalg.vector_norm
            err = float(norm(c.double() - want) / norm(want))
            if not err < tol:  # NaN fails too
                raise AssertionError(f"{name}: relative error {err:.3g} against torch.bmm in "
                                     f"float64 (tolerance {tol})")

            def run_kcomp():
                gemm(ref_args, stream)

            def run_peer():
                torch.bmm(a, b, out=c_peer)

            matmul.allow_tf32 = peer_tf32
            kc_ms = cuda_time_ms(torch, run_kcomp, WARMUP, REPS)
            peer_ms = cuda_time_ms(torch, run_peer, WARMUP, REPS)
            matmul.allow_tf32 = saved_tf32
            rows.append({"workload": name, "kcomp_ms": kc_ms, "peer": "torch.bmm",
                         "peer_ms": peer_ms, "flops": 2.0 * batch * m * n * k})
    finally:
        matmul.allow_tf32 = saved_tf32
