"""float32 GEMM without TF32 over batched shapes: kc_cuda_gemm against torch.bmm (TF32 off) on
the same GPU, row-major operands, each result checked against float64 first. Three alternated
rounds of CUDA-event medians; the middle round is reported.

    python bench/gpu_sgemm_shapes.py
"""
import ctypes
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from gpu_gemm import _args  # noqa: E402
from gpu_timing import cuda_time_ms  # noqa: E402

SHAPES = [(32, 512, 512, 512), (8, 1024, 1024, 1024), (2, 2048, 2048, 2048),
          (64, 256, 256, 256), (16, 384, 384, 384), (4, 1000, 1000, 1000),
          (128, 128, 128, 128), (1, 4096, 4096, 4096)]
_KC_FLOAT32, _KC_PREC_EXACT = 11, 0


def main() -> int:
    import torch
    from kcomp.cuda import runtime as rt
    lib = rt.library()
    torch.backends.cuda.matmul.allow_tf32 = False
    print("| (batch, m, n, k) | kcomp ms | torch.bmm ms | torch/kcomp |\n|---|---:|---:|---:|")
    for (b, m, n, k) in SHAPES:
        a = torch.randn(b, m, k, device="cuda")
        bb = torch.randn(b, k, n, device="cuda")
        c = torch.empty(b, m, n, device="cuda")
        args = ctypes.byref(_args(rt, _KC_FLOAT32, _KC_PREC_EXACT, a, bb, c))
        want = torch.bmm(a.double(), bb.double())
        c.fill_(float("nan"))
        rt.check(lib.kc_cuda_gemm(args, None), "kc_cuda_gemm")
        torch.cuda.synchronize()
        norm = torch.linalg.vector_norm
        err = float(norm(c.double() - want) / norm(want))
        if not err < 1e-5:  # NaN fails too
            raise AssertionError(f"{(b, m, n, k)}: relative error {err:.3g}")
        kc, peer = [], []
        for _ in range(3):
            kc.append(cuda_time_ms(torch, lambda: lib.kc_cuda_gemm(args, None)))
            peer.append(cuda_time_ms(torch, lambda: torch.bmm(a, bb)))
        k_ms, p_ms = sorted(kc)[1], sorted(peer)[1]
        print(f"| {(b, m, n, k)} | {k_ms:.4f} | {p_ms:.4f} | {p_ms / k_ms:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
