"""kc_cuda_gemm (csrc/cuda/gemm.cu) against numpy float64 references: every path (float32 exact
and TF32, float16, bfloat16, float64), the four transpose combinations, tails, broadcast batch
strides, padded and misaligned leading dimensions, alpha, bias and every activation, k == 0, a
batch past gridDim limits, and argument errors. Runs only where a CUDA GPU is usable."""
import ctypes

import numpy as np
import pytest

pytestmark = pytest.mark.cuda

try:
    from kcomp.cuda import runtime as cr
except Exception:  # the CUDA runtime module itself is missing or broken: nothing to test
    cr = None
if cr is None or not cr.available():
    pytest.skip("no CUDA GPU", allow_module_level=True)

KC_FLOAT16, KC_FLOAT32, KC_FLOAT64, KC_BFLOAT16 = 10, 11, 12, 13
EXACT, TF32 = 0, 1
NONE, RELU, SIGMOID, TANH, HARD_SIGMOID = range(5)
ACTS = (NONE, RELU, SIGMOID, TANH, HARD_SIGMOID)

# (dtype code, precision): the kernel paths
PATHS = {
    "f32": (KC_FLOAT32, EXACT),
    "tf32": (KC_FLOAT32, TF32),
    "f16": (KC_FLOAT16, EXACT),
    "bf16": (KC_BFLOAT16, EXACT),
    "f64": (KC_FLOAT64, EXACT),
}
TOL = {"f32": 1e-5, "tf32": 3e-3, "f16": 1e-2, "bf16": 1e-2, "f64": 1e-12}


# ---- host-side representations ---------------------------------------------------------------
# Device buffers hold float32/float64/float16 as themselves and bfloat16 as uint16 bit patterns.

def to_bf16_bits(x):
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def from_bf16_bits(b):
    return (b.astype(np.uint32) << 16).view(np.float32)


def encode(path, x):
    """float64 values -> (host array to upload, the float64 values it really holds)."""
    if path == "bf16":
        bits = to_bf16_bits(x)
        return bits, from_bf16_bits(bits).astype(np.float64)
    dt = {"f32": np.float32, "tf32": np.float32, "f16": np.float16, "f64": np.float64}[path]
    h = np.ascontiguousarray(x, dtype=dt)
    return h, h.astype(np.float64)


def decode(path, h):
    if path == "bf16":
        return from_bf16_bits(h).astype(np.float64)
    return h.astype(np.float64)


def storage_dtype(path):
    return {"f32": np.float32, "tf32": np.float32, "f16": np.float16, "bf16": np.uint16,
            "f64": np.float64}[path]


def act_ref(v, act):
    if act == RELU:
        return np.maximum(v, 0.0)
    if act == SIGMOID:
        return 1.0 / (1.0 + np.exp(-v))
    if act == TANH:
        return np.tanh(v)
    if act == HARD_SIGMOID:
        return np.clip(0.2 * v + 0.5, 0.0, 1.0)
    return v


def rel_err(out, ref):
    den = np.linalg.norm(ref)
    return np.linalg.norm(out - ref) / (den if den > 0 else 1.0)


def call(args, stream=None):
    lib = cr.library()
    return lib.kc_cuda_gemm(ctypes.byref(args), stream)


def make_args(dtype, precision, ta, tb, m, n, k, batch, a, lda, sa, b, ldb, sb, c, ldc, sc,
              alpha=1.0, bias=None, act=NONE):
    g = cr.GemmArgs()
    g.dtype, g.trans_a, g.trans_b = dtype, int(ta), int(tb)
    g.m, g.n, g.k, g.batch = m, n, k, batch
    g.a, g.lda, g.stride_a = a, lda, sa
    g.b, g.ldb, g.stride_b = b, ldb, sb
    g.c, g.ldc, g.stride_c = c, ldc, sc
    args = cr.CudaGemmArgs()
    args.g = g
    args.precision, args.act, args.bias, args.alpha = precision, act, bias, alpha
    return args


def run_gemm(path, m, n, k, batch=1, ta=False, tb=False, alpha=1.0, use_bias=False, act=NONE,
             bcast_a=False, bcast_b=False, pad_a=0, pad_b=0, pad_c=0, offset=0, seed=0):
    """Runs one product on the device and checks it (and C's padding) against float64."""
    rng = np.random.default_rng(seed)
    alpha = float(np.float32(alpha))  # the C struct holds a float
    dtype, prec = PATHS[path]
    sd = storage_dtype(path)
    # stored shapes: A (k, m) when ta else (m, k); B (n, k) when tb else (k, n)
    a_rows, a_cols = (k, m) if ta else (m, k)
    b_rows, b_cols = (n, k) if tb else (k, n)
    lda, ldb, ldc = a_cols + pad_a, b_cols + pad_b, n + pad_c
    ba, bb = (1 if bcast_a else batch), (1 if bcast_b else batch)
    # `offset` extra leading elements make every base pointer misaligned for vector access
    # (+1 element: never an empty upload when k == 0)
    a_host, a_val = encode(path, rng.standard_normal(offset + ba * a_rows * lda + 1))
    b_host, b_val = encode(path, rng.standard_normal(offset + bb * b_rows * ldb + 1))
    A = a_val[offset:-1].reshape(ba, a_rows, lda)[:, :, :a_cols]
    B = b_val[offset:-1].reshape(bb, b_rows, ldb)[:, :, :b_cols]
    opA = np.swapaxes(A, 1, 2) if ta else A
    opB = np.swapaxes(B, 1, 2) if tb else B
    ref = alpha * np.matmul(opA, opB)
    if ref.shape[0] != batch:
        ref = np.broadcast_to(ref, (batch, m, n))
    bias_dev = None
    if use_bias:
        bias_host, bias_val = encode(path, rng.standard_normal(n))
        ref = ref + bias_val
        bias_dev = cr.DeviceArray.from_numpy(bias_host)
    ref = act_ref(ref, act)

    da = cr.DeviceArray.from_numpy(a_host)
    db = cr.DeviceArray.from_numpy(b_host)
    dc = cr.DeviceArray.empty((offset + batch * m * ldc,), sd)
    cr.poison(dc)
    item = np.dtype(sd).itemsize
    args = make_args(dtype, prec, ta, tb, m, n, k, batch,
                     da.ptr + offset * item, lda, 0 if bcast_a else a_rows * lda,
                     db.ptr + offset * item, ldb, 0 if bcast_b else b_rows * ldb,
                     dc.ptr + offset * item, ldc, m * ldc,
                     alpha=alpha, bias=bias_dev.ptr if bias_dev else None, act=act)
    cr.check(call(args), "kc_cuda_gemm")
    cr.synchronize()
    c_host = dc.numpy()
    full = decode(path, c_host[offset:]).reshape(batch, m, ldc)
    out = full[:, :, :n]
    assert np.isfinite(out).all(), "unwritten (NaN) or non-finite outputs"
    if pad_c:
        # padding columns keep the poison: 0xFF bytes
        pad = c_host[offset:].reshape(batch, m, ldc)[:, :, n:]
        assert (pad.view(np.uint8) == 0xFF).all(), "wrote outside the n columns of C"
    if offset:
        assert (c_host[:offset].view(np.uint8) == 0xFF).all(), "wrote before C"
    err = rel_err(out, ref)
    assert err < TOL[path], f"{path} m={m} n={n} k={k} batch={batch} ta={ta} tb={tb}: {err:.3g}"
    return err


TRANS = [(False, False), (False, True), (True, False), (True, True)]
ALL_PATHS = list(PATHS)

# each tail size of {1, 3, 17, 63, 65, 130, 257} in each of m, n and k
TAIL_SHAPES = [(1, 1, 1), (3, 17, 63), (17, 63, 65), (63, 65, 130), (65, 130, 257),
               (130, 257, 1), (257, 1, 3), (1, 257, 17), (257, 3, 130), (65, 65, 17)]


@pytest.mark.parametrize("path", ALL_PATHS)
@pytest.mark.parametrize("ta,tb", TRANS)
def test_transposes_and_tails(path, ta, tb):
    for i, (m, n, k) in enumerate(TAIL_SHAPES):
        run_gemm(path, m, n, k, batch=2, ta=ta, tb=tb, seed=i)


@pytest.mark.parametrize("path", ALL_PATHS)
@pytest.mark.parametrize("ta,tb", TRANS)
def test_tiled_interior_and_edges(path, ta, tb):
    # several full tiles plus tails in every dimension, on the tiled kernels
    run_gemm(path, 200, 272, 96, batch=3, ta=ta, tb=tb, seed=1)


@pytest.mark.parametrize("ta,tb", TRANS)
def test_f32_big_tile_kernel(ta, tb):
    # enough 128x128 tiles to fill an H100 twice: the 128x128 register-tiled kernel
    run_gemm("f32", 1030, 1030, 67, batch=4, ta=ta, tb=tb, seed=2)


@pytest.mark.parametrize("ta,tb", TRANS)
def test_f32_wide_tile_kernel(ta, tb):
    # enough 128x256 tiles to fill an H100 once, n a multiple of 256 or just under: the 128x256
    # kernel (8x16 a thread), with tails in m and k, and with its epilogue
    run_gemm("f32", 1030, 1000, 67, batch=4, ta=ta, tb=tb, seed=4)
    run_gemm("f32", 300, 512, 45, batch=60, ta=ta, tb=tb, alpha=0.5, use_bias=True, act=TANH,
             seed=5)


@pytest.mark.parametrize("path", ["f32", "tf32", "bf16"])
def test_big(path):
    run_gemm(path, 512, 512, 512, batch=4, seed=3)


@pytest.mark.parametrize("path", ALL_PATHS)
def test_alpha_bias_acts(path):
    for act in ACTS:
        run_gemm(path, 70, 45, 33, batch=2, alpha=0.37, use_bias=True, act=act, seed=10 + act)
        run_gemm(path, 9, 11, 5, batch=3, alpha=-1.5, use_bias=True, act=act, seed=20 + act)
    run_gemm(path, 66, 130, 40, batch=2, alpha=2.0, act=SIGMOID, seed=30)


@pytest.mark.parametrize("path", ALL_PATHS)
def test_broadcast_batch_strides(path):
    run_gemm(path, 40, 70, 50, batch=3, bcast_a=True, seed=40)
    run_gemm(path, 70, 40, 50, batch=3, bcast_b=True, tb=True, seed=41)
    run_gemm(path, 5, 6, 7, batch=5, bcast_b=True, seed=42)


@pytest.mark.parametrize("path", ALL_PATHS)
@pytest.mark.parametrize("ta,tb", [(False, False), (True, True)])
def test_padded_and_misaligned(path, ta, tb):
    # padded leading dims that keep 16-byte alignment, then odd ones that break it, then a
    # misaligned base pointer: the vector and the element load paths
    run_gemm(path, 75, 90, 70, batch=2, ta=ta, tb=tb, pad_a=8, pad_b=16, pad_c=8, seed=50)
    run_gemm(path, 75, 90, 70, batch=2, ta=ta, tb=tb, pad_a=1, pad_b=3, pad_c=1, seed=51)
    run_gemm(path, 75, 90, 70, batch=2, ta=ta, tb=tb, offset=1, seed=52)


@pytest.mark.parametrize("path", ALL_PATHS)
def test_k_zero_gives_act_of_bias(path):
    run_gemm(path, 7, 9, 0, batch=2, use_bias=True, act=SIGMOID, seed=60)
    run_gemm(path, 70, 90, 0, batch=2, use_bias=True, act=TANH, seed=61)
    run_gemm(path, 70, 90, 0, batch=1, act=HARD_SIGMOID, seed=62)


@pytest.mark.parametrize("path", ["f32", "bf16", "f64"])
def test_many_tiny_matrices(path):
    # 70000 batch items: more than gridDim.y/z allow
    run_gemm(path, 2, 3, 4, batch=70000, use_bias=True, act=RELU, seed=70)


@pytest.mark.parametrize("path", ALL_PATHS)
def test_tiny_batches_copy_runs(path):
    # gemm_tiny: items back to back copied as one run of 16-byte chunks, a partial last group,
    # runs whose size or alignment rules chunks out (element copies), transposed operands
    run_gemm(path, 16, 16, 16, batch=4099, seed=90)
    run_gemm(path, 5, 6, 8, batch=1001, use_bias=True, act=TANH, seed=91)
    run_gemm(path, 5, 6, 7, batch=1001, seed=92)
    run_gemm(path, 16, 16, 16, batch=600, offset=1, seed=93)
    run_gemm(path, 8, 12, 4, batch=700, ta=True, tb=True, seed=94)


def test_small_batched_float32():
    run_gemm("f32", 64, 64, 64, batch=256, seed=80)
    run_gemm("f32", 16, 16, 16, batch=4096, seed=81)
    run_gemm("tf32", 64, 64, 64, batch=256, seed=82)


def test_empty_problems_launch_nothing():
    c = cr.DeviceArray.empty((16,), np.float32)
    cr.poison(c)
    for m, n, k, batch in [(0, 4, 4, 2), (4, 0, 4, 2), (2, 2, 4, 0)]:
        args = make_args(KC_FLOAT32, EXACT, False, False, m, n, k, batch,
                         None, max(k, 1), 0, None, max(n, 1), 0, c.ptr, max(n, 1), 0)
        cr.check(call(args), "empty gemm")
    cr.synchronize()
    assert (c.numpy().view(np.uint8) == 0xFF).all()


def test_bad_arguments():
    a = cr.DeviceArray.empty((64,), np.float32)
    b = cr.DeviceArray.empty((64,), np.float32)
    c = cr.DeviceArray.empty((64,), np.float32)

    def good(**kw):
        base = dict(dtype=KC_FLOAT32, precision=EXACT, ta=False, tb=False, m=4, n=4, k=4,
                    batch=1, a=a.ptr, lda=4, sa=16, b=b.ptr, ldb=4, sb=16, c=c.ptr, ldc=4, sc=16)
        base.update(kw)
        act = base.pop("act", NONE)
        return make_args(base.pop("dtype"), base.pop("precision"), base.pop("ta"),
                         base.pop("tb"), base.pop("m"), base.pop("n"), base.pop("k"),
                         base.pop("batch"), base.pop("a"), base.pop("lda"), base.pop("sa"),
                         base.pop("b"), base.pop("ldb"), base.pop("sb"), base.pop("c"),
                         base.pop("ldc"), base.pop("sc"), act=act)

    cr.check(call(good()), "good gemm")
    bad = [
        dict(dtype=3),                                  # int32: unsupported
        dict(dtype=KC_FLOAT64, precision=TF32),         # TF32 is float32 only
        dict(dtype=KC_FLOAT16, precision=TF32),
        dict(precision=7),
        dict(act=9),
        dict(act=-1),
        dict(m=-1), dict(n=-2), dict(k=-3), dict(batch=-1),
        dict(lda=3),                                    # < k
        dict(ta=True, m=8, lda=4),                      # < m when trans_a
        dict(ldb=3),                                    # < n
        dict(tb=True, k=8, ldb=4, lda=8),               # < k when trans_b
        dict(ldc=3),                                    # < n
        dict(a=None), dict(b=None), dict(c=None),
        dict(sa=-16),
    ]
    for kw in bad:
        with pytest.raises(ValueError):
            cr.check(call(good(**kw)), f"gemm {kw}")
    lib = cr.library()
    with pytest.raises(ValueError):
        cr.check(lib.kc_cuda_gemm(None, None), "gemm NULL args")
    # a and b may be NULL when k == 0 (nothing is read)
    cr.check(call(good(k=0, a=None, b=None, lda=0, ldb=4)), "k == 0")
    cr.synchronize()


def test_conv_bad_arguments():
    """kc_cuda_conv refuses inconsistent geometry with kcomp's ValueError, and computes a small
    convolution (one 2x2 tap window over a 3x3 image of ones, two output channels) right."""
    x = cr.DeviceArray.from_numpy(np.ones(9, np.float32))
    w = cr.DeviceArray.from_numpy(np.arange(8, dtype=np.float32))  # (2, 2, 1, 2)
    y = cr.DeviceArray.empty((8,), np.float32)
    lib = cr.library()

    def args(**kw):
        a = cr.ConvArgs()
        g = a.gemm.g
        g.dtype, g.m, g.n, g.k, g.batch = KC_FLOAT32, 4, 2, 4, 1
        g.a, g.lda, g.b, g.ldb, g.c, g.ldc = x.ptr, 4, w.ptr, 2, y.ptr, 2
        a.gemm.alpha = 1.0
        geo = dict(d=1, h=3, w=3, c=1, od=1, oh=2, ow=2, kd=1, kh=2, kw=2, sd=1, sh=1, sw=1,
                   pd=0, ph=0, pw=0, dd=1, dh=1, dw=1)
        for name, v in kw.items():
            setattr(g if name in ("dtype", "trans_a", "batch", "m", "k") else a, name, v)
        for name, v in geo.items():
            if name not in kw:
                setattr(a, name, v)
        return ctypes.byref(a)

    cr.poison(y)
    cr.check(lib.kc_cuda_conv(args(), None), "good conv")
    np.testing.assert_array_equal(y.numpy(), np.tile([12.0, 16.0], 4))
    for kw in [dict(dtype=KC_FLOAT64), dict(trans_a=1), dict(batch=2), dict(c=0), dict(kh=0),
               dict(sh=0), dict(dw=0), dict(ph=-1), dict(k=5), dict(m=5), dict(oh=1 << 30),
               dict(oh=0), dict(h=-1),
               dict(ow=1 << 20, sw=1 << 12)]:
        with pytest.raises(ValueError):
            cr.check(lib.kc_cuda_conv(args(**kw), None), f"conv {kw}")
    with pytest.raises(ValueError):
        cr.check(lib.kc_cuda_conv(None, None), "conv NULL args")
    # no output pixels (an input smaller than the taps): nothing to do
    cr.check(lib.kc_cuda_conv(args(m=0, oh=0, h=1), None), "empty conv")
