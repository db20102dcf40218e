"""kc_cuda_lstm (csrc/cuda/rnn.cu) against a float64 numpy LSTM: the persistent cooperative
kernel (W_rec on chip: small and odd units, batch 1 to 257, several batch chunks at units 1000),
the per-step fallback (units 2048, whose weights cannot stay on chip), h_seq given or NULL with
odd and even step counts (the NULL case alternates h_out and c_out as h buffers), both recurrent
activations, unaligned h buffers, steps 0, and bad arguments."""
import ctypes

import numpy as np
import pytest

pytestmark = pytest.mark.cuda

try:
    from kcomp.cuda import runtime as cr
except Exception:  # pragma: no cover - the runtime is missing or broken: nothing to test
    cr = None
if cr is None or not cr.available():
    pytest.skip("no CUDA GPU", allow_module_level=True)

KC_ACT_SIGMOID, KC_ACT_TANH, KC_ACT_HARD_SIGMOID = 2, 3, 4
POINTERS = ("xproj", "w_rec", "h0", "c0", "h_seq", "h_out", "c_out")


def reference(xproj, w_rec, h0, c0, hard):
    """Keras's LSTM recurrence in float64: (h_seq, h, c)."""
    if hard:
        rec = lambda v: np.clip(0.2 * v + 0.5, 0.0, 1.0)  # noqa: E731
    else:
        rec = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    u = h0.shape[1]
    w = w_rec.astype(np.float64)
    h, c = h0.astype(np.float64), c0.astype(np.float64)
    seq = []
    for t in range(xproj.shape[0]):
        z = xproj[t].astype(np.float64) + h @ w
        c = rec(z[:, u:2 * u]) * c + rec(z[:, :u]) * np.tanh(z[:, 2 * u:3 * u])
        h = rec(z[:, 3 * u:]) * np.tanh(c)
        seq.append(h)
    return (np.stack(seq) if seq else np.zeros((0,) + h.shape)), h, c


def make_args(**fields):
    """cr.LstmArgs from sizes and integer device addresses (0 or None: NULL), whatever ctypes
    types the runtime gave the pointer fields."""
    args = cr.LstmArgs()
    types = dict(cr.LstmArgs._fields_)
    for name, value in fields.items():
        if name in POINTERS:
            ftype = types[name]
            if not value:
                value = None
            elif isinstance(ftype, type) and issubclass(ftype, ctypes._Pointer):
                value = ctypes.cast(ctypes.c_void_p(value), ftype)
        setattr(args, name, value)
    return args


def call(args):
    return cr.library().kc_cuda_lstm(ctypes.byref(args), None)


def inputs(steps, batch, units, seed):
    rng = np.random.default_rng(seed)
    f32 = np.float32
    xproj = (0.5 * rng.standard_normal((steps, batch, 4 * units))).astype(f32)
    w_rec = (rng.standard_normal((units, 4 * units)) / np.sqrt(units)).astype(f32)
    h0 = (0.5 * rng.standard_normal((batch, units))).astype(f32)
    c0 = (0.5 * rng.standard_normal((batch, units))).astype(f32)
    return xproj, w_rec, h0, c0


def run_lstm(xproj, w_rec, h0, c0, hard, with_seq):
    steps, batch, units = xproj.shape[0], h0.shape[0], h0.shape[1]
    keep = []  # device arrays live until the results are copied back

    def dev(a):
        d = cr.DeviceArray.from_numpy(np.ascontiguousarray(a))
        keep.append(d)
        return d.ptr

    def out(shape):
        d = cr.DeviceArray.empty(shape, np.float32)
        cr.poison(d)
        keep.append(d)
        return d

    h_seq = out((steps, batch, units)) if with_seq else None
    h_out, c_out = out((batch, units)), out((batch, units))
    args = make_args(steps=steps, batch=batch, units=units,
                     xproj=dev(xproj) if steps else None, w_rec=dev(w_rec) if steps else None,
                     h0=dev(h0), c0=dev(c0), h_seq=h_seq.ptr if h_seq is not None else None,
                     h_out=h_out.ptr, c_out=c_out.ptr,
                     recurrent_act=KC_ACT_HARD_SIGMOID if hard else KC_ACT_SIGMOID)
    cr.check(call(args), "kc_cuda_lstm")
    return (h_seq.numpy() if h_seq is not None else None), h_out.numpy(), c_out.numpy()


def assert_close(got, want, what, tol=1e-5):
    assert got.shape == want.shape, (what, got.shape, want.shape)
    assert np.isfinite(got).all(), f"{what}: unwritten (NaN) or non-finite elements"
    err = np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30)
    assert err < tol, f"{what}: relative error {err:.3g}"


CASES = [  # steps, batch, units, hard_sigmoid, h_seq given
    (1, 1, 1, False, True),
    (1, 2, 3, True, False),
    (2, 1, 5, False, False),
    (3, 3, 37, True, True),
    (4, 3, 37, False, False),
    (5, 1, 256, False, False),   # one row: 64 threads per tile, across warps
    (6, 32, 256, False, True),
    (7, 32, 256, True, False),
    (4, 257, 33, False, True),
    (3, 64, 128, True, True),
    (3, 5, 1000, False, False),
    (4, 64, 1000, True, True),   # several batch chunks per step
    (5, 64, 1000, False, False),
    (3, 3, 2048, False, False),  # per-step fallback, with its scratch h buffer
    (2, 65, 2048, True, True),   # fallback, two batch tiles
]


@pytest.mark.parametrize("steps,batch,units,hard,with_seq", CASES)
def test_lstm_matches_float64(steps, batch, units, hard, with_seq):
    xproj, w_rec, h0, c0 = inputs(steps, batch, units, seed=steps * 1000 + batch * 10 + units)
    seq, h, c = run_lstm(xproj, w_rec, h0, c0, hard, with_seq)
    ref_seq, ref_h, ref_c = reference(xproj, w_rec, h0, c0, hard)
    if with_seq:
        assert_close(seq, ref_seq, "h_seq")
    assert_close(h, ref_h, "h_out")
    assert_close(c, ref_c, "c_out")


def test_hard_sigmoid_saturates():
    """Large pre-activations drive hard_sigmoid into both clipped ends."""
    xproj, w_rec, h0, c0 = inputs(4, 9, 24, seed=3)
    xproj *= 8.0
    seq, h, c = run_lstm(xproj, w_rec, h0, c0, True, True)
    ref_seq, ref_h, ref_c = reference(xproj, w_rec, h0, c0, True)
    z = xproj[0].astype(np.float64) + h0 @ w_rec.astype(np.float64)
    assert (z < -2.5).any() and (z > 2.5).any()
    assert_close(seq, ref_seq, "h_seq")
    assert_close(c, ref_c, "c_out")


def test_steps_zero_copies_the_initial_state():
    _, _, h0, c0 = inputs(1, 3, 7, seed=4)
    seq, h, c = run_lstm(np.zeros((0, 3, 28), np.float32), np.zeros((7, 28), np.float32), h0, c0,
                         False, False)
    np.testing.assert_array_equal(h, h0)
    np.testing.assert_array_equal(c, c0)


@pytest.mark.parametrize("with_seq", [True, False])
def test_unaligned_state_buffers(with_seq):
    """units % 4 == 0 but h0 and the outputs 4 bytes off a 16-byte boundary: scalar h loads."""
    steps, batch, units = 3, 6, 64
    xproj, w_rec, h0, c0 = inputs(steps, batch, units, seed=5)
    n = batch * units
    keep = []

    def buf(count, fill=None):
        d = cr.DeviceArray.from_numpy(np.zeros(count + 1, np.float32) if fill is None else
                                      np.concatenate([[np.float32(0)], fill.ravel()]))
        if fill is None:
            cr.poison(d)
        keep.append(d)
        return d

    h0d, c0d = buf(n, h0), buf(n, c0)
    xd, wd = cr.DeviceArray.from_numpy(xproj), cr.DeviceArray.from_numpy(w_rec)
    hs, ho, co = buf(steps * n), buf(n), buf(n)
    args = make_args(steps=steps, batch=batch, units=units, xproj=xd.ptr, w_rec=wd.ptr,
                     h0=h0d.ptr + 4, c0=c0d.ptr + 4, h_seq=hs.ptr + 4 if with_seq else None,
                     h_out=ho.ptr + 4, c_out=co.ptr + 4, recurrent_act=KC_ACT_SIGMOID)
    cr.check(call(args), "kc_cuda_lstm")
    ref_seq, ref_h, ref_c = reference(xproj, w_rec, h0, c0, False)
    if with_seq:
        assert_close(hs.numpy()[1:].reshape(steps, batch, units), ref_seq, "h_seq")
    assert_close(ho.numpy()[1:].reshape(batch, units), ref_h, "h_out")
    assert_close(co.numpy()[1:].reshape(batch, units), ref_c, "c_out")


def test_bad_arguments():
    steps, batch, units = 2, 3, 4
    xproj, w_rec, h0, c0 = inputs(steps, batch, units, seed=6)
    d = {k: cr.DeviceArray.from_numpy(v) for k, v in
         dict(xproj=xproj, w_rec=w_rec, h0=h0, c0=c0).items()}
    h_out = cr.DeviceArray.empty((batch, units), np.float32)
    c_out = cr.DeviceArray.empty((batch, units), np.float32)
    good = dict(steps=steps, batch=batch, units=units, xproj=d["xproj"].ptr,
                w_rec=d["w_rec"].ptr, h0=d["h0"].ptr, c0=d["c0"].ptr, h_seq=None,
                h_out=h_out.ptr, c_out=c_out.ptr, recurrent_act=KC_ACT_SIGMOID)
    cr.check(call(make_args(**good)), "kc_cuda_lstm")
    bad = [
        dict(steps=-1),
        dict(batch=-2),
        dict(units=-1),
        dict(recurrent_act=KC_ACT_TANH),
        dict(recurrent_act=99),
        dict(h_out=None),
        dict(c0=None),
        dict(xproj=None),
        dict(w_rec=None),
        dict(c_out=h_out.ptr),          # h_out and c_out alias
        dict(h_out=d["h0"].ptr),        # an output over an input
        dict(h_seq=d["xproj"].ptr),
    ]
    for change in bad:
        with pytest.raises(ValueError, match="kc_cuda_lstm"):
            cr.check(call(make_args(**dict(good, **change))), "kc_cuda_lstm")
    assert cr.library().kc_cuda_lstm(None, None) != 0
    # empty problems are fine and write nothing
    cr.check(call(make_args(**dict(good, batch=0))), "kc_cuda_lstm")
    cr.check(call(make_args(**dict(good, units=0, xproj=None, w_rec=None))), "kc_cuda_lstm")
    cr.synchronize()
