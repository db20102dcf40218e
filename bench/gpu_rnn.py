"""GPU benchmark of kcomp's LSTM time loop (kc_cuda_lstm, csrc/cuda/rnn.cu) against
torch.nn.LSTM (cuDNN), for the GPU benchmark script, which imports bench_lstm.

    bench_lstm(torch, rows)   # appends one dict per workload to rows

Workloads: LSTM(256) over 100 steps of 128 features at batch 32 and at batch 1, float32. Both
sides run the whole layer: kcomp's time is the input projection as one GEMM by PyTorch
(torch.addmm: x (steps*batch, 128) @ W + b into xproj) followed by kc_cuda_lstm; the peer is
torch.nn.LSTM in eval mode under torch.no_grad() with the same weights (PyTorch's gate order
i, f, g, o is Keras's i, f, c, o: W = weight_ih.T, W_rec = weight_hh.T, b = b_ih + b_hh).
TF32 is switched off for cuDNN and for matrix products while timing, so that both sides compute
in float32 (kcomp's kernel is float32 FFMA); the previous settings are restored afterwards.
Before timing, kcomp's h_seq and final h and c are checked against torch's outputs (max abs
error < 1e-4). Times: CUDA events around one call, 5 warm-up calls, median of 30.

Importable without torch or a GPU: torch is passed in, kcomp.cuda.runtime imported on use.
"""
import ctypes

from gpu_timing import cuda_time_ms

STEPS, INPUTS, UNITS = 100, 128, 256
BATCHES = (32, 1)
WARMUP, REPS = 5, 30
TOLERANCE = 1e-4
KC_ACT_SIGMOID = 2


def _lstm_args(cr, **fields):
    """cr.LstmArgs from sizes and integer device addresses (0 or None: NULL)."""
    args = cr.LstmArgs()
    types = dict(cr.LstmArgs._fields_)
    for name, value in fields.items():
        ftype = types[name]
        if isinstance(ftype, type) and issubclass(ftype, ctypes._Pointer):
            value = ctypes.cast(ctypes.c_void_p(value), ftype) if value else None
        elif ftype is ctypes.c_void_p and not value:
            value = None
        setattr(args, name, value)
    return args


def _bench_one(torch, cr, lib, batch):
    dev = torch.device("cuda")
    gen = torch.Generator().manual_seed(1234 + batch)
    lstm = torch.nn.LSTM(INPUTS, UNITS, batch_first=False).to(dev).eval()
    x = torch.randn(STEPS, batch, INPUTS, generator=gen).to(dev)
    h0 = (0.5 * torch.randn(1, batch, UNITS, generator=gen)).to(dev)
    c0 = (0.5 * torch.randn(1, batch, UNITS, generator=gen)).to(dev)
    with torch.no_grad():
        w = lstm.weight_ih_l0.t().contiguous()                  # (128, 4u)
        w_rec = lstm.weight_hh_l0.t().contiguous()              # (u, 4u)
        b = (lstm.bias_ih_l0 + lstm.bias_hh_l0).contiguous()    # (4u,)
        x2d = x.reshape(STEPS * batch, INPUTS)
        xproj = torch.empty(STEPS * batch, 4 * UNITS, device=dev)
        h_seq = torch.empty(STEPS, batch, UNITS, device=dev)
        h_out = torch.empty(batch, UNITS, device=dev)
        c_out = torch.empty(batch, UNITS, device=dev)
        h0k, c0k = h0[0].contiguous(), c0[0].contiguous()
        args = _lstm_args(cr, steps=STEPS, batch=batch, units=UNITS, xproj=xproj.data_ptr(),
                          w_rec=w_rec.data_ptr(), h0=h0k.data_ptr(), c0=c0k.data_ptr(),
                          h_seq=h_seq.data_ptr(), h_out=h_out.data_ptr(),
                          c_out=c_out.data_ptr(), recurrent_act=KC_ACT_SIGMOID)
        args_ref = ctypes.byref(args)

        def run_kcomp():
            torch.addmm(b, x2d, w, out=xproj)
            stream = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream or None)
            cr.check(lib.kc_cuda_lstm(args_ref, stream), "kc_cuda_lstm")

        def run_torch():
            return lstm(x, (h0, c0))

        run_kcomp()
        y, (hn, cn) = run_torch()
        torch.cuda.synchronize()
        err = max(float((h_seq - y).abs().max()), float((h_out - hn[0]).abs().max()),
                  float((c_out - cn[0]).abs().max()))
        if not err < TOLERANCE:
            raise RuntimeError(f"kc_cuda_lstm differs from torch.nn.LSTM at batch {batch}: "
                               f"max abs error {err:.3g}")
        kcomp_ms = cuda_time_ms(torch, run_kcomp, WARMUP, REPS)
        peer_ms = cuda_time_ms(torch, run_torch, WARMUP, REPS)
    return {"workload": f"LSTM b{batch} T{STEPS} in{INPUTS} u{UNITS}", "kcomp_ms": kcomp_ms,
            "peer": "torch.nn.LSTM (cuDNN)", "peer_ms": peer_ms}


def bench_lstm(torch, rows: list) -> None:
    from kcomp.cuda import runtime as cr
    lib = cr.library()
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        for batch in BATCHES:
            rows.append(_bench_one(torch, cr, lib, batch))
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
