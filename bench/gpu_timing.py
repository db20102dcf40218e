"""Timing GPU work for the GPU benchmarks (bench/gpu_*.py): CUDA events around each call."""


def cuda_time_ms(torch, fn, warmup=5, reps=30) -> float:
    """Median of CUDA-event-timed calls of fn (after warm-up)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]
