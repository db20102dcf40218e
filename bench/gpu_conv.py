"""GPU benchmark of kcomp's implicit-GEMM convolution (kc_cuda_conv) against torch's conv2d
(cuDNN) on channels_last float32 data, TF32 off for both, cuDNN's autotuner on for the peer.

Imported by the GPU benchmark script, which passes the torch module in:

    rows = []
    bench_conv(torch, rows)   # appends {"workload", "kcomp_ms", "peer", "peer_ms", "flops"}

The last row is a Conv2D layer (convolution, bias, relu) compiled by K.function, called on a
torch tensor with the output left on the GPU, against the same three ops in torch.

Each kcomp result is checked against torch's conv2d in float64 before it is timed
(AssertionError on a mismatch). Times: medians of 30 CUDA-event-timed calls after 5 warm-ups.
`flops` is 2 * batch * oh * ow * o * kh * kw * c.
"""
import ctypes

from gpu_timing import cuda_time_ms

WARMUP, REPS = 5, 30
_KC_FLOAT32 = 11

# (batch, h, w, c), (kh, kw, o), padding ("same" with stride 1, or 0)
_CASES = [((32, 32, 32, 64), (3, 3, 64), 1),
          ((64, 56, 56, 64), (3, 3, 64), 1),
          ((32, 64, 64, 3), (3, 3, 32), 1),
          ((128, 14, 14, 256), (3, 3, 256), 1),
          ((16, 32, 32, 128), (1, 1, 256), 0)]


def conv_args(cr, x, w, y, pad):
    """kc_cuda_conv_args for y = conv(x, w), x (b, h, w, c), w (kh, kw, c, o), stride 1."""
    b, h, wd, c = x.shape
    kh, kw, _, o = w.shape
    oh, ow = h + 2 * pad - kh + 1, wd + 2 * pad - kw + 1
    g = cr.GemmArgs()
    g.dtype, g.trans_a, g.trans_b = _KC_FLOAT32, 0, 0
    g.m, g.n, g.k, g.batch = b * oh * ow, o, kh * kw * c, 1
    g.a, g.lda, g.stride_a = x.data_ptr(), kh * kw * c, 0
    g.b, g.ldb, g.stride_b = w.data_ptr(), o, 0
    g.c, g.ldc, g.stride_c = y.data_ptr(), o, 0
    args = cr.ConvArgs()
    args.gemm.g = g
    args.gemm.precision, args.gemm.act, args.gemm.bias, args.gemm.alpha = 0, 0, None, 1.0
    for name, v in dict(d=1, h=h, w=wd, c=c, od=1, oh=oh, ow=ow, kd=1, kh=kh, kw=kw, sd=1, sh=1,
                        sw=1, pd=0, ph=pad, pw=pad, dd=1, dh=1, dw=1).items():
        setattr(args, name, v)
    return args


def bench_conv(torch, rows: list) -> None:
    from kcomp.cuda import runtime as cr

    lib = cr.library()
    stream = torch.cuda.current_stream().cuda_stream
    F = torch.nn.functional
    cudnn = torch.backends.cudnn
    saved = cudnn.allow_tf32, cudnn.benchmark
    cudnn.allow_tf32, cudnn.benchmark = False, True
    gen = torch.Generator(device="cuda")
    gen.manual_seed(0)
    try:
        for (b, h, wd, c), (kh, kw, o), pad in _CASES:
            name = f"conv2d NHWC ({b},{h},{wd},{c}) {kh}x{kw} {o}" + (" same" if pad else "")
            x = torch.randn(b, h, wd, c, device="cuda", generator=gen)
            w = torch.randn(kh, kw, c, o, device="cuda", generator=gen)
            oh, ow = h + 2 * pad - kh + 1, wd + 2 * pad - kw + 1
            y = torch.full((b, oh, ow, o), float("nan"), device="cuda")
            args = ctypes.byref(conv_args(cr, x, w, y, pad))
            xt = x.permute(0, 3, 1, 2)           # NCHW view of NHWC memory: cuDNN's NHWC path
            wt = w.permute(3, 2, 0, 1).contiguous(memory_format=torch.channels_last)
            cr.check(lib.kc_cuda_conv(args, stream), name)
            want = F.conv2d(xt.double(), wt.double(), padding=pad).permute(0, 2, 3, 1)
            norm = torch.linalg.vector_norm
            err = float(norm(y.double() - want) / norm(want))
            if not err < 1e-5:  # NaN fails too
                raise AssertionError(f"{name}: relative error {err:.3g} against float64")
            kc_ms = cuda_time_ms(torch, lambda: lib.kc_cuda_conv(args, stream), WARMUP, REPS)
            peer_ms = cuda_time_ms(torch, lambda: F.conv2d(xt, wt, padding=pad), WARMUP, REPS)
            rows.append({"workload": name, "kcomp_ms": kc_ms, "peer": "torch conv2d (cuDNN)",
                         "peer_ms": peer_ms, "flops": 2.0 * b * oh * ow * o * kh * kw * c})
        _layer(torch, rows, gen)
    finally:
        cudnn.allow_tf32, cudnn.benchmark = saved


def _layer(torch, rows, gen) -> None:
    import kcomp.backend as K
    F = torch.nn.functional
    (b, h, wd, c), (kh, kw, o), _ = _CASES[0]
    x = torch.randn(b, h, wd, c, device="cuda", generator=gen)
    w = torch.randn(kh, kw, c, o, device="cuda", generator=gen)
    bias = torch.randn(o, device="cuda", generator=gen)
    p = K.placeholder((None, h, wd, c))
    wv, bv = K.variable(w.cpu().numpy()), K.variable(bias.cpu().numpy())
    f = K.function([p], [K.relu(K.bias_add(K.conv2d(p, wv, padding="same"), bv))],
                   device="cuda", device_outputs=True)
    xt = x.permute(0, 3, 1, 2)
    wt = w.permute(3, 2, 0, 1).contiguous(memory_format=torch.channels_last)

    def peer():
        return F.relu(F.conv2d(xt, wt, bias, padding=1))
    got = torch.as_tensor(f([x])[0], device="cuda").double()
    want = F.relu(F.conv2d(xt.double(), wt.double(), bias.double(), padding=1)).permute(0, 2, 3, 1)
    err = ((got - want).norm() / want.norm()).item()
    if not err < 1e-5:
        raise AssertionError(f"Conv2D layer: relative error {err:.3g} against float64")
    rows.append({"workload": f"Conv2D layer ({b},{h},{wd},{c}) {kh}x{kw} {o} + bias + relu "
                             "(K.function)",
                 "kcomp_ms": cuda_time_ms(torch, lambda: f([x]), WARMUP, REPS),
                 "peer": "torch conv2d + relu", "peer_ms": cuda_time_ms(torch, peer, WARMUP, REPS),
                 "flops": 2.0 * b * h * wd * o * kh * kw * c})
