"""Column softmax on the GPU: kc_cuda_softmax's two kernels for a softmax over a middle axis,
compared on the same GPU in one run, against torch.softmax: the streamed kernel (x read twice;
KCOMP_CUDA_REDUCE_CLUSTER=0 forces it) and, where it applies (n <= 8192 on sm_90), the cluster
kernel that holds a stripe of 32 columns on chip (x read once). A run of this script with 16-
and 32-column stripes at every size chose those limits (csrc/cuda/reduce.cu, launch_resident).

    python bench/gpu_softmax_cols.py
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from gpu_bench import bench_copy  # noqa: E402
from gpu_reduce import poisoned_error, softmax_call  # noqa: E402
from gpu_timing import cuda_time_ms  # noqa: E402

SHAPES = [(1, 16384, 16384), (1, 4096, 65536), (8, 2048, 4096), (1, 8192, 16384), (64, 3000, 64)]
VARIANTS = {"streamed": "0", "default": "1"}


def main() -> int:
    import torch
    from kcomp.cuda import runtime as cr
    lib = cr.library()
    copy_gbs = bench_copy(torch, [])
    print(f"copy bandwidth {copy_gbs:.0f} GB/s (read + write)")
    print("| (outer, n, inner) | " + " | ".join(VARIANTS) + " | torch.softmax |")
    print("|---|" + "---:|" * (len(VARIANTS) + 1))
    for outer, n, inner in SHAPES:
        x = torch.randn(outer, n, inner, device="cuda") * 3
        y = torch.empty_like(x)
        want = torch.softmax(x.double(), 1)
        nbytes = 2 * x.numel() * 4
        cells = []
        for env in VARIANTS.values():
            os.environ["KCOMP_CUDA_REDUCE_CLUSTER"] = env
            run = softmax_call(cr, lib, x, y, outer, n, inner)
            rel = poisoned_error(torch, run, y, want)
            if not rel < 1e-5:
                cells.append(f"WRONG (rel {rel:.2g})")
                continue
            ms = cuda_time_ms(torch, run)
            cells.append(f"{ms:.3f} ms ({100 * nbytes / ms / 1e6 / copy_gbs:.0f}%)")
        ms = cuda_time_ms(torch, lambda: torch.softmax(x, 1))
        cells.append(f"{ms:.3f} ms")
        print(f"| ({outer}, {n}, {inner}) | " + " | ".join(cells) + " |", flush=True)
    os.environ.pop("KCOMP_CUDA_REDUCE_CLUSTER")
    return 0


if __name__ == "__main__":
    sys.exit(main())
