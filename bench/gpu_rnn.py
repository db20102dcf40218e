"""GPU benchmark of kcomp's recurrent time loops (kc_cuda_rnn, csrc/cuda/rnn.cu) against
PyTorch's cuDNN layers, for the GPU benchmark script, which imports bench_rnn.

    bench_rnn(torch, rows)   # appends one dict per workload to rows

Workloads: LSTM(256) and GRU(256) at batch 32 and 1, SimpleRNN(256) (tanh) at batch 32, over
100 steps of 128 features, float32. Both sides run the whole layer: kcomp's time is the input
projection as one GEMM by PyTorch (torch.addmm: x (steps*batch, 128) @ W + b into xproj)
followed by kc_cuda_rnn; the peer is torch.nn.LSTM / GRU / RNN in eval mode under
torch.no_grad() with the same weights:
  LSTM: PyTorch's gate order i, f, g, o is Keras's i, f, c, o: W = weight_ih.T,
        W_rec = weight_hh.T, b = b_ih + b_hh.
  GRU:  PyTorch's is Keras's reset_after=True GRU (KC_RNN_GRU) with the gates r, z, n reordered
        to Keras's z, r, h: W = weight_ih[p].T, W_rec = weight_hh[p].T, b = b_ih[p],
        b_rec = b_hh[p].
  RNN:  W = weight_ih.T, W_rec = weight_hh.T, b = b_ih + b_hh.
TF32 is switched off for cuDNN and for matrix products while timing, so that both sides compute
in float32 (kcomp's kernel is float32 FFMA); the previous settings are restored afterwards.
Before timing, kcomp's h_seq and final h (and c) are checked against torch's outputs (max abs
error < 1e-4). Times: CUDA events around one call, 5 warm-up calls, median of 30.

Importable without torch or a GPU: torch is passed in, kcomp.cuda.runtime imported on use.
"""
import ctypes

from gpu_timing import cuda_time_ms

STEPS, INPUTS, UNITS = 100, 128, 256
WORKLOADS = (("LSTM", 32), ("LSTM", 1), ("GRU", 32), ("GRU", 1), ("SimpleRNN", 32))
WARMUP, REPS = 5, 30
TOLERANCE = 1e-4


def _bench_one(torch, cr, lib, kind, batch):
    dev = torch.device("cuda")
    gen = torch.Generator().manual_seed(1234 + batch)
    layer = {"LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU, "SimpleRNN": torch.nn.RNN}[kind]
    net = layer(INPUTS, UNITS, batch_first=False).to(dev).eval()
    x = torch.randn(STEPS, batch, INPUTS, generator=gen).to(dev)
    h0 = (0.5 * torch.randn(1, batch, UNITS, generator=gen)).to(dev)
    c0 = (0.5 * torch.randn(1, batch, UNITS, generator=gen)).to(dev)
    gates = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}[kind]
    with torch.no_grad():
        w_ih, w_hh, b_ih, b_hh = (t.detach() for t in (net.weight_ih_l0, net.weight_hh_l0,
                                                       net.bias_ih_l0, net.bias_hh_l0))
        b_rec = None
        if kind == "GRU":  # PyTorch's r, z, n -> Keras's z, r, h
            p = torch.cat([torch.arange(UNITS, 2 * UNITS), torch.arange(UNITS),
                           torch.arange(2 * UNITS, 3 * UNITS)]).to(dev)
            w_ih, w_hh, b, b_rec = w_ih[p], w_hh[p], b_ih[p], b_hh[p].contiguous()
        else:
            b = b_ih + b_hh
        w, w_rec = w_ih.t().contiguous(), w_hh.t().contiguous()
        x2d = x.reshape(STEPS * batch, INPUTS)
        xproj = torch.empty(STEPS * batch, gates * UNITS, device=dev)
        h_seq = torch.empty(STEPS, batch, UNITS, device=dev)
        h_out = torch.empty(batch, UNITS, device=dev)
        c_out = torch.empty(batch, UNITS, device=dev) if kind == "LSTM" else None
        h0k, c0k = h0[0].contiguous(), c0[0].contiguous()
        ptr = lambda t: t.data_ptr() if t is not None else None  # noqa: E731
        args = cr.RnnArgs(cell={"LSTM": cr.RNN_LSTM, "GRU": cr.RNN_GRU,
                                "SimpleRNN": cr.RNN_SIMPLE}[kind],
                          act=cr.ACT_TANH, recurrent_act=cr.ACT_SIGMOID, steps=STEPS,
                          batch=batch, units=UNITS, xproj=xproj.data_ptr(),
                          w_rec=w_rec.data_ptr(), b_rec=ptr(b_rec), h0=h0k.data_ptr(),
                          c0=c0k.data_ptr() if kind == "LSTM" else None,
                          h_seq=h_seq.data_ptr(), h_out=h_out.data_ptr(), c_out=ptr(c_out))
        args_ref = ctypes.byref(args)

        def run_kcomp():
            torch.addmm(b, x2d, w, out=xproj)
            stream = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream or None)
            cr.check(lib.kc_cuda_rnn(args_ref, stream), "kc_cuda_rnn")

        def run_torch():
            return net(x, (h0, c0)) if kind == "LSTM" else net(x, h0)

        run_kcomp()
        y, state = run_torch()
        torch.cuda.synchronize()
        hn = state[0] if kind == "LSTM" else state
        err = max(float((h_seq - y).abs().max()), float((h_out - hn[0]).abs().max()))
        if kind == "LSTM":
            err = max(err, float((c_out - state[1][0]).abs().max()))
        if not err < TOLERANCE:
            raise RuntimeError(f"kc_cuda_rnn differs from torch.nn.{layer.__name__} at batch "
                               f"{batch}: max abs error {err:.3g}")
        kcomp_ms = cuda_time_ms(torch, run_kcomp, WARMUP, REPS)
        peer_ms = cuda_time_ms(torch, run_torch, WARMUP, REPS)
    return {"workload": f"{kind} b{batch} T{STEPS} in{INPUTS} u{UNITS}", "kcomp_ms": kcomp_ms,
            "peer": f"torch.nn.{layer.__name__} (cuDNN)", "peer_ms": peer_ms}


def bench_rnn(torch, rows: list) -> None:
    from kcomp.cuda import runtime as cr
    lib = cr.library()
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        for kind, batch in WORKLOADS:
            rows.append(_bench_one(torch, cr, lib, kind, batch))
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
