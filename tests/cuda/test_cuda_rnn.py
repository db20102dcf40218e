"""kc_cuda_rnn (csrc/cuda/rnn.cu) against float64 numpy recurrences, for every cell (LSTM, GRU
with the reset gate after and before its product, SimpleRNN): the persistent cooperative kernel
(weights on chip: small and odd units, batch 1 to 257, several batch chunks at units 1000), the
per-step fallback (units 2048, whose weights cannot stay on chip), h_seq given or NULL with odd
and even step counts (NULL: the steps alternate h_out and a scratch buffer), every activation,
unaligned h buffers, steps 0, and bad arguments. Outputs are poisoned (NaN) before each call."""
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

CELLS = {"lstm": 0, "gru": 1, "gru_reset_before": 2, "simple": 3}
X_GATES = {"lstm": 4, "gru": 3, "gru_reset_before": 3, "simple": 1}
W_GATES = {"lstm": 4, "gru": 3, "gru_reset_before": 2, "simple": 1}
ACTS = {"linear": 0, "relu": 1, "sigmoid": 2, "tanh": 3, "hard_sigmoid": 4}
FN = {"linear": lambda v: v, "relu": lambda v: np.maximum(v, 0.0),
      "sigmoid": lambda v: 1.0 / (1.0 + np.exp(-v)), "tanh": np.tanh,
      "hard_sigmoid": lambda v: np.clip(0.2 * v + 0.5, 0.0, 1.0)}
POINTERS = ("xproj", "w_rec", "w_rec2", "b_rec", "h0", "c0", "h_seq", "h_out", "c_out")


def reference(cell, p, act="tanh", rec="sigmoid"):
    """Keras's recurrence in float64: (h_seq, h, c or None)."""
    f, g = FN[act], FN[rec]
    h = p["h0"].astype(np.float64)
    c = p["c0"].astype(np.float64) if cell == "lstm" else None
    u = h.shape[1]
    w = p["w_rec"].astype(np.float64)
    seq = []
    for t in range(p["xproj"].shape[0]):
        x = p["xproj"][t].astype(np.float64)
        if cell == "lstm":
            z = x + h @ w
            c = g(z[:, u:2 * u]) * c + g(z[:, :u]) * f(z[:, 2 * u:3 * u])
            h = g(z[:, 3 * u:]) * f(c)
        elif cell == "simple":
            h = f(x + h @ w)
        else:
            zr = h @ w + (p["b_rec"].astype(np.float64) if p.get("b_rec") is not None else 0.0)
            z, r = g(x[:, :u] + zr[:, :u]), g(x[:, u:2 * u] + zr[:, u:2 * u])
            if cell == "gru":
                hh = f(x[:, 2 * u:] + r * zr[:, 2 * u:])
            else:
                hh = f(x[:, 2 * u:] + (r * h) @ p["w_rec2"].astype(np.float64))
            h = z * h + (1 - z) * hh
        seq.append(h)
    return (np.stack(seq) if seq else np.zeros((0,) + h.shape)), h, c


def inputs(cell, steps, batch, units, seed, b_rec=True):
    rng = np.random.default_rng(seed)
    f32, scale = np.float32, 1 / np.sqrt(units)
    p = {"xproj": (0.5 * rng.standard_normal((steps, batch, X_GATES[cell] * units))).astype(f32),
         "w_rec": (rng.standard_normal((units, W_GATES[cell] * units)) * scale).astype(f32),
         "h0": (0.5 * rng.standard_normal((batch, units))).astype(f32)}
    if cell == "lstm":
        p["c0"] = (0.5 * rng.standard_normal((batch, units))).astype(f32)
    if cell == "gru_reset_before":
        p["w_rec2"] = (rng.standard_normal((units, units)) * scale).astype(f32)
    if cell == "gru" and b_rec:
        p["b_rec"] = (0.3 * rng.standard_normal(3 * units)).astype(f32)
    return p


def make_args(**fields):
    """cr.RnnArgs from sizes and integer device addresses (0 or None: NULL)."""
    args = cr.RnnArgs()
    for name, value in fields.items():
        setattr(args, name, (value or None) if name in POINTERS else value)
    return args


def call(args):
    return cr.library().kc_cuda_rnn(ctypes.byref(args), None)


def run(cell, p, with_seq, act="tanh", rec="sigmoid"):
    """(h_seq or None, h_out, c_out or None) from kc_cuda_rnn."""
    steps, (batch, units) = p["xproj"].shape[0], p["h0"].shape
    keep = []  # device arrays live until the results are copied back

    def dev(name):
        if p.get(name) is None or (steps == 0 and name in ("xproj", "w_rec", "w_rec2")):
            return None
        d = cr.DeviceArray.from_numpy(np.ascontiguousarray(p[name]))
        keep.append(d)
        return d.ptr

    def out(shape):
        d = cr.DeviceArray.empty(shape, np.float32)
        cr.poison(d)
        keep.append(d)
        return d

    h_seq = out((steps, batch, units)) if with_seq else None
    h_out = out((batch, units))
    c_out = out((batch, units)) if cell == "lstm" else None
    args = make_args(cell=CELLS[cell], act=ACTS[act], recurrent_act=ACTS[rec], steps=steps,
                     batch=batch, units=units, **{n: dev(n) for n in POINTERS[:6]},
                     h_seq=h_seq.ptr if h_seq is not None else None, h_out=h_out.ptr,
                     c_out=c_out.ptr if c_out is not None else None)
    cr.check(call(args), "kc_cuda_rnn")
    return tuple(a.numpy() if a is not None else None for a in (h_seq, h_out, c_out))


def assert_close(got, want, what, tol=1e-5):
    assert got.shape == want.shape, (what, got.shape, want.shape)
    assert np.isfinite(got).all(), f"{what}: unwritten (NaN) or non-finite elements"
    err = np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30)
    assert err < tol, f"{what}: relative error {err:.3g}"


def check(cell, p, with_seq, act="tanh", rec="sigmoid"):
    seq, h, c = run(cell, p, with_seq, act, rec)
    ref_seq, ref_h, ref_c = reference(cell, p, act, rec)
    if with_seq:
        assert_close(seq, ref_seq, "h_seq")
    assert_close(h, ref_h, "h_out")
    if cell == "lstm":
        assert_close(c, ref_c, "c_out")


SHAPES = [  # steps, batch, units, h_seq given
    (1, 1, 1, True),
    (1, 2, 3, False),
    (2, 1, 5, False),
    (3, 3, 37, True),
    (4, 3, 37, False),
    (5, 1, 256, False),   # one row: 64 threads per tile, across warps
    (6, 32, 256, True),
    (7, 32, 256, False),
    (4, 257, 33, True),
    (3, 64, 128, True),
    (3, 5, 1000, False),
    (4, 64, 1000, True),   # several batch chunks per step
    (3, 3, 2048, False),   # per-step fallback, with its scratch h buffer
    (2, 65, 2048, True),   # fallback, two batch tiles
]


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("steps,batch,units,with_seq", SHAPES)
def test_matches_float64(cell, steps, batch, units, with_seq):
    p = inputs(cell, steps, batch, units, seed=steps * 1000 + batch * 10 + units)
    check(cell, p, with_seq, rec="hard_sigmoid" if units % 2 else "sigmoid")


@pytest.mark.parametrize("cell,act,rec", [
    ("lstm", "relu", "hard_sigmoid"), ("gru", "relu", "tanh"), ("gru", "sigmoid", "linear"),
    ("gru_reset_before", "hard_sigmoid", "relu"), ("simple", "relu", "sigmoid"),
    ("simple", "linear", "sigmoid"), ("simple", "sigmoid", "sigmoid"),
    ("simple", "hard_sigmoid", "sigmoid")])
@pytest.mark.parametrize("units", [9, 2048])
def test_activations(cell, act, rec, units):
    p = inputs(cell, 3, 5, units, seed=units + len(act))
    p["xproj"] *= 4.0  # both clipped ends of hard_sigmoid, both sides of relu
    check(cell, p, True, act, rec)


def test_simple_rnn_fallback():
    """A SimpleRNN's weights stay on chip up to about 2300 units (a column group is 4 units):
    4100 takes the per-step kernel."""
    check("simple", inputs("simple", 3, 3, 4100, seed=8), False)


def test_gru_without_recurrent_bias():
    check("gru", inputs("gru", 4, 6, 21, seed=7, b_rec=False), True)


@pytest.mark.parametrize("cell", list(CELLS))
def test_steps_zero_copies_the_initial_state(cell):
    p = inputs(cell, 0, 3, 7, seed=4)
    _, h, c = run(cell, p, False)
    np.testing.assert_array_equal(h, p["h0"])
    if cell == "lstm":
        np.testing.assert_array_equal(c, p["c0"])


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("with_seq", [True, False])
def test_unaligned_state_buffers(cell, with_seq):
    """units % 4 == 0 but h0 and the outputs 4 bytes off a 16-byte boundary: scalar h loads."""
    steps, batch, units = 3, 6, 64
    p = inputs(cell, steps, batch, units, seed=5)
    n = batch * units
    keep = []

    def buf(count, fill=None):
        d = cr.DeviceArray.from_numpy(np.zeros(count + 1, np.float32) if fill is None else
                                      np.concatenate([[np.float32(0)], fill.ravel()]))
        if fill is None:
            cr.poison(d)
        keep.append(d)
        return d

    dev = {k: cr.DeviceArray.from_numpy(p[k]) for k in ("xproj", "w_rec", "w_rec2", "b_rec")
           if k in p}
    lstm = cell == "lstm"
    h0d, c0d = buf(n, p["h0"]), buf(n, p["c0"]) if lstm else None
    hs, ho, co = buf(steps * n), buf(n), buf(n) if lstm else None
    args = make_args(cell=CELLS[cell], act=ACTS["tanh"], recurrent_act=ACTS["sigmoid"],
                     steps=steps, batch=batch, units=units,
                     **{k: d.ptr for k, d in dev.items()}, h0=h0d.ptr + 4,
                     c0=c0d.ptr + 4 if lstm else None, h_seq=hs.ptr + 4 if with_seq else None,
                     h_out=ho.ptr + 4, c_out=co.ptr + 4 if lstm else None)
    cr.check(call(args), "kc_cuda_rnn")
    ref_seq, ref_h, ref_c = reference(cell, p)
    if with_seq:
        assert_close(hs.numpy()[1:].reshape(steps, batch, units), ref_seq, "h_seq")
    assert_close(ho.numpy()[1:].reshape(batch, units), ref_h, "h_out")
    if lstm:
        assert_close(co.numpy()[1:].reshape(batch, units), ref_c, "c_out")


def test_bad_arguments():
    steps, batch, units = 2, 3, 4
    d = {c: {k: cr.DeviceArray.from_numpy(v) for k, v in inputs(c, steps, batch, units, 6).items()}
         for c in ("lstm", "gru", "gru_reset_before")}
    h_out = cr.DeviceArray.empty((batch, units), np.float32)
    c_out = cr.DeviceArray.empty((batch, units), np.float32)
    sizes = dict(steps=steps, batch=batch, units=units, act=ACTS["tanh"],
                 recurrent_act=ACTS["sigmoid"])
    lstm = dict(sizes, cell=CELLS["lstm"], **{k: v.ptr for k, v in d["lstm"].items()},
                h_out=h_out.ptr, c_out=c_out.ptr)
    gru = dict(sizes, cell=CELLS["gru"], **{k: v.ptr for k, v in d["gru"].items()},
               h_out=h_out.ptr)
    before = dict(sizes, cell=CELLS["gru_reset_before"], h_out=h_out.ptr,
                  **{k: v.ptr for k, v in d["gru_reset_before"].items()})
    for good in (lstm, gru, before):
        cr.check(call(make_args(**good)), "kc_cuda_rnn")
    bad = [
        (lstm, dict(steps=-1)),
        (lstm, dict(batch=-2)),
        (lstm, dict(units=-1)),
        (lstm, dict(cell=4)),
        (lstm, dict(cell=-1)),
        (lstm, dict(recurrent_act=5)),
        (lstm, dict(act=-1)),
        (lstm, dict(h_out=None)),
        (lstm, dict(c0=None)),
        (lstm, dict(xproj=None)),
        (lstm, dict(w_rec=None)),
        (lstm, dict(c_out=h_out.ptr)),          # h_out and c_out alias
        (lstm, dict(h_out=d["lstm"]["h0"].ptr)),  # an output over an input
        (lstm, dict(h_seq=d["lstm"]["xproj"].ptr)),
        (lstm, dict(w_rec2=d["lstm"]["w_rec"].ptr)),  # only the reset-before GRU has one
        (gru, dict(c0=d["lstm"]["c0"].ptr)),      # only an LSTM has a cell state
        (gru, dict(c_out=c_out.ptr)),
        (gru, dict(h_out=d["gru"]["b_rec"].ptr)),
        (before, dict(w_rec2=None)),
        (before, dict(b_rec=d["gru"]["b_rec"].ptr)),  # only the reset-after GRU has one
    ]
    for good, change in bad:
        with pytest.raises(ValueError, match="kc_cuda_rnn"):
            cr.check(call(make_args(**dict(good, **change))), "kc_cuda_rnn")
    assert cr.library().kc_cuda_rnn(None, None) != 0
    # empty problems are fine and write nothing
    cr.check(call(make_args(**dict(lstm, batch=0))), "kc_cuda_rnn")
    cr.check(call(make_args(**dict(gru, units=0, xproj=None, w_rec=None))), "kc_cuda_rnn")
    cr.synchronize()
