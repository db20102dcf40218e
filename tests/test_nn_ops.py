"""in_top_k, l2_normalize, bias_add, batch normalization, cross-entropies and stop_gradient:
native results against the reference interpreter, an independent float64 numpy computation of
TensorFlow's formulas and Keras 2.3.1's numpy backend, over every float dtype, unknown batch
sizes, ties, non-finite values and extreme logits; errors at graph-build and call time."""
import numpy as np
import pytest

import kcomp.backend as K
from util import FLOATS, assert_numpy, assert_same, keras_numpy_backend, rand, run

EPS = 1e-7  # Keras's default epsilon, which the losses use


@pytest.fixture(scope="module")
def knp():
    return keras_numpy_backend()


def compare(got, want, expected, what, dtype=None, rtol=None, atol=None):
    for g, w, e, name in zip(got, want, expected, what):
        if w is not None:
            assert_same(g, w, name)
        assert_numpy(g, e, dtype or g.dtype, name, rtol=rtol, atol=atol)


def run_twice(pairs, outs):
    """([(rows, native, reference)], function): results for the inputs as given, then for their
    first row only (every input has an unknown batch size; no reference results there)."""
    got, want, f = run(pairs, outs)
    return [(None, got, want), (1, f([v[:1] for _, v in pairs]), [None] * len(outs))], f


# ---- in_top_k ---------------------------------------------------------------------------------

def _in_top_k(pred, targets, k):
    """TensorFlow's rule through a stable sort: the target is in when the first of the scores
    equal to its own sits before position k. numpy's default sort is not stable for ties on
    some machines (AVX-512), which makes Keras's numpy in_top_k machine-dependent."""
    out = np.zeros(len(targets), bool)
    for r, t in enumerate(targets):
        row = pred[r].astype(np.float64)
        if 0 <= t < len(row) and np.all(np.isfinite(row)):
            ordered = row[np.argsort(-row, kind="stable")]
            out[r] = np.flatnonzero(ordered == row[t])[0] < k
    return out


def test_in_top_k(knp):
    rng = np.random.default_rng(10)
    pairs, outs, expect = [], [], []
    for j, (pdt, tdt) in enumerate([("float32", "int32"), ("float16", "int64"),
                                    ("float64", "int32"), ("int32", "int64"), ("uint8", "int16")]):
        p = K.placeholder((None, 6), dtype=pdt)
        t = K.placeholder((None,), dtype=tdt)
        a = rng.integers(0, 4, (9, 6)).astype(pdt)  # many ties
        b = rng.integers(0, 6, 9).astype(tdt)
        b[0], b[1] = 6, -1 if tdt != "uint8" else 200  # out of range: False
        if a.dtype.kind == "f":
            a[2, 3], a[3, 0], a[4, 5] = np.nan, np.inf, -np.inf  # non-finite rows: False
        pairs += [(p, a), (t, b)]
        for k in (0, 1, 2, 3, 6, 10):
            outs.append(K.in_top_k(p, t, k))
            expect.append((a, b, k))
    big_p, big_t = K.placeholder((None, 100)), K.placeholder((None,), dtype="int32")
    a, b = rand(rng, (3001, 100), "float32"), rng.integers(0, 100, 3001).astype("int32")
    pairs += [(big_p, a), (big_t, b)]
    outs.append(K.in_top_k(big_p, big_t, 5))
    expect.append((a, b, 5))
    got, want, f = run(pairs, outs)
    for g, w, (a, b, k) in zip(got, want, expect):
        what = f"in_top_k {a.dtype} k={k}"
        assert_same(g, w, what)
        np.testing.assert_array_equal(g, _in_top_k(a, b, k), err_msg=what)
    # no ties: Keras's numpy backend agrees
    np.testing.assert_array_equal(got[-1], knp.in_top_k(a, b, 5))
    # batch 1
    arrays = [x[:1] for _, x in pairs]
    for g, (a, b, k) in zip(f(arrays), expect):
        np.testing.assert_array_equal(g, _in_top_k(a[:1], b[:1], k))


def test_in_top_k_errors():
    p = K.placeholder((None, 5))
    with pytest.raises(ValueError, match=r"in_top_k: needs predictions of rank 2 and targets "
                                         r"of rank 1 \(operand shapes: \(None, 5\), \(3, 1\)\)"):
        K.in_top_k(p, K.placeholder((3, 1), dtype="int32"), 1)
    with pytest.raises(ValueError, match="in_top_k: needs numeric predictions and integer"):
        K.in_top_k(p, K.placeholder((None,)), 1)
    with pytest.raises(ValueError, match="in_top_k: batch sizes differ"):
        K.in_top_k(K.placeholder((4, 5)), K.placeholder((3,), dtype="int32"), 1)
    with pytest.raises(TypeError, match="in_top_k: k must be an int"):
        K.in_top_k(p, K.placeholder((None,), dtype="int32"), 1.5)
    f = K.function([p, q := K.placeholder((None,), dtype="int32")], [K.in_top_k(p, q, 1)])
    with pytest.raises(ValueError, match="in_top_k: batch sizes differ"):
        f([np.zeros((4, 5), np.float32), np.zeros(3, np.int32)])


# ---- l2_normalize -----------------------------------------------------------------------------

def test_l2_normalize(knp):
    rng = np.random.default_rng(11)
    pairs, outs, expect = [], [], []
    for dt in FLOATS + ("int32",):
        x = K.placeholder((None, 3, 4), dtype=dt)
        a = rand(rng, (5, 3, 4), dt, -3, 3)
        a[-1] = 0  # a zero slice: the 1e-12 floor keeps it 0 (NaN in float16, as in TF)
        pairs.append((x, a))
        for axis in (None, 1, -1, [0, 2]):
            outs.append(K.l2_normalize(x, axis))
            expect.append((a, axis))
    big = K.placeholder((None, 300))
    ab = rand(rng, (2048, 300), "float32")
    pairs.append((big, ab))
    outs.append(K.l2_normalize(big, 1))
    expect.append((ab, 1))
    for rows, got, want in run_twice(pairs, outs)[0]:
        for g, w, (a, axis) in zip(got, want, expect):
            a = a[:rows]
            ax = tuple(axis) if isinstance(axis, list) else axis
            dt = np.dtype("float32" if a.dtype.kind != "f" else a.dtype)
            a64 = a.astype(np.float64)
            with np.errstate(invalid="ignore"):
                e = a64 / np.sqrt(np.maximum(np.sum(a64 ** 2, axis=ax, keepdims=True),
                                             float(np.asarray(1e-12, dt))))
            compare([g], [w], [e], [f"l2_normalize {a.dtype} {axis}"], dt,
                    atol=4e-3 if dt == np.float16 else None)
            if isinstance(ax, int) and a.dtype == np.float64:
                np.testing.assert_allclose(g[:4], knp.l2_normalize(a[:4], ax), rtol=1e-12)


# ---- bias_add ---------------------------------------------------------------------------------

def _tf_bias(bias, nd, df):
    """The bias reshaped as Keras 2.3.1's TensorFlow backend reshapes it."""
    shape = (1,) * (nd - bias.ndim) + bias.shape
    if df == "channels_first" and nd in (3, 4, 5):
        shape = shape[:1] + shape[-1:] + shape[1:-1]
    return bias.reshape(shape)


BIAS_CASES = [  # x shape, bias shape, data format, dtype
    ((None, 5), (5,), None, "float32"),
    ((None, 4, 5), (5,), "channels_last", "float16"),
    ((None, 4, 5), (4,), "channels_first", "float64"),
    ((None, 4, 5), (4, 5), "channels_last", "int32"),
    ((None, 4, 5), (5, 4), "channels_first", "float32"),
    ((None, 2, 3, 4), (4,), "channels_last", "float32"),
    ((None, 2, 3, 4), (2,), "channels_first", "int64"),
    ((None, 2, 3, 4), (2, 3, 4), "channels_last", "float32"),
    ((None, 2, 3, 4), (3, 4, 2), "channels_first", "float64"),
    ((None, 2, 1, 3, 4), (4,), "channels_last", "float16"),
    ((None, 2, 1, 3, 4), (2,), "channels_first", "float32"),
    ((None, 2, 1, 3, 4), (1, 3, 4, 2), "channels_first", "uint8"),
    ((None, 1, 1, 2, 1, 3), (3,), "channels_first", "float32"),  # rank 6: tf.nn.bias_add
    ((1024, 33, 40), (40,), "channels_last", "float32"),
]


def test_bias_add(knp):
    rng = np.random.default_rng(12)
    pairs, outs, expect = [], [], []
    for xs, bs, df, dt in BIAS_CASES:
        x, b = K.placeholder(xs, dtype=dt), K.placeholder(bs, dtype=dt)
        a = rand(rng, tuple(3 if d is None else d for d in xs), dt, 0, 9)
        c = rand(rng, bs, dt, 0, 9)
        pairs += [(x, a), (b, c)]
        outs.append(K.bias_add(x, b, df))
        expect.append((a, c, df))
    got, want, f = run(pairs, outs)
    for g, w, (a, c, df) in zip(got, want, expect):
        what = f"bias_add {a.shape} {c.shape} {df}"
        e = a + _tf_bias(c, a.ndim, df or "channels_last")
        compare([g], [w], [e], [what])
        # Keras's numpy backend reshapes bigger biases otherwise, and follows data_format at
        # ranks where TensorFlow adds along the last axis
        if (c.ndim == 1 or a.ndim == 3) and a.ndim <= 5:
            np.testing.assert_array_equal(g, knp.bias_add(a, c, df or "channels_last"))
    # batch 1
    arrays = [v[:1] if p.shape[0] is None else v for p, v in pairs]
    for g, (a, c, df) in zip(f(arrays), expect):
        np.testing.assert_array_equal(g, (a[:1] if len(a) == 3 else a) +
                                      _tf_bias(c, a.ndim, df or "channels_last"))


def test_bias_add_errors():
    x = K.placeholder((None, 2, 3, 4))
    with pytest.raises(ValueError, match=r"bias_add: unexpected bias rank 2: expected 1 or 3 "
                                         r"\(operand shapes: \(None, 2, 3, 4\), \(3, 4\)\)"):
        K.bias_add(x, K.placeholder((3, 4)))
    with pytest.raises(ValueError, match="bias_add: the bias length differs from the channel"):
        K.bias_add(x, K.placeholder((3,)), "channels_last")
    with pytest.raises(ValueError, match="bias_add: the bias does not broadcast"):
        K.bias_add(x, K.placeholder((3,)), "channels_first")
    with pytest.raises(ValueError, match="bias_add: needs an input of rank >= 2"):
        K.bias_add(K.placeholder((4,)), K.placeholder((4,)))
    with pytest.raises(ValueError, match="data_format"):
        K.bias_add(x, K.placeholder((4,)), "nchw")


# ---- batch normalization ----------------------------------------------------------------------

def _bn(x, mean, var, beta, gamma, eps):
    y = (x - mean) / np.sqrt(var + eps)
    return y * (1 if gamma is None else gamma) + (0 if beta is None else beta)


def test_normalize_batch_in_training(knp):
    rng = np.random.default_rng(13)
    cases = [  # x shape, reduction axes, gamma/beta shape (None: not given), dtype
        ((None, 3, 4), [0, 1], (4,), "float32"),
        ((None, 3, 4, 2), [0, 2, 3], (3,), "float32"),
        ((None, 5), [0], None, "float64"),
        ((None, 6), [0], (6,), "float16"),
        ((None, 3, 4), [-1, 0], (3,), "float64"),
        ((4096, 64), [0], (64,), "float32"),
    ]
    pairs, outs, expect = [], [], []
    for xs, axes, ps, dt in cases:
        x = K.placeholder(xs, dtype=dt)
        a = rand(rng, tuple(7 if d is None else d for d in xs), dt, -2, 4)
        pairs.append((x, a))
        g = b = None
        if ps is not None:
            g, b = K.placeholder(ps, dtype=dt), K.placeholder(ps, dtype=dt)
            gv, bv = rand(rng, ps, dt, 0.5, 2), rand(rng, ps, dt, -1, 1)
            pairs += [(g, gv), (b, bv)]
        outs += K.normalize_batch_in_training(x, g, b, axes, epsilon=1e-3)
        expect.append((a, axes, None if ps is None else (gv, bv)))
    got, want, f = run(pairs, outs)
    for k, (a, axes, params) in enumerate(expect):
        ax = tuple(sorted(x % a.ndim for x in axes))
        a64 = a.astype(np.float64)
        m, v = a64.mean(ax, keepdims=True), a64.var(ax, keepdims=True)
        kept = [d for i, d in enumerate(a.shape) if i not in ax]
        g, b = (None, None) if params is None else \
            (p.astype(np.float64).reshape(m.shape) for p in params)
        e = [_bn(a64, m, v, b, g, 1e-3), m.reshape(kept), v.reshape(kept)]
        tol = {"float16": 4e-3, "float32": 1e-5, "float64": 1e-12}[a.dtype.name]
        compare(got[3 * k:3 * k + 3], want[3 * k:3 * k + 3], e,
                [f"normalize_batch {a.shape} {axes} {n}" for n in ("normed", "mean", "var")],
                rtol=tol, atol=tol)
        if a.dtype == np.float64:
            np.testing.assert_allclose(got[3 * k], knp.batch_normalization(
                a, m, v, b if b is not None else 0, g if g is not None else 1, epsilon=1e-3),
                rtol=1e-12, atol=1e-12)


def test_batch_normalization(knp):
    rng = np.random.default_rng(14)
    x = K.placeholder((None, 4))
    y = K.placeholder((None, 3, 2, 2), dtype="float64")
    a, c = rand(rng, (5, 4), "float32"), rand(rng, (6, 3, 2, 2), "float64")
    mean, var = rand(rng, (4,), "float32"), rand(rng, (4,), "float32", 0.1, 2)
    beta, gamma = rand(rng, (4,), "float32"), rand(rng, (4,), "float32")
    m4, v4 = rand(rng, (1, 3, 1, 1), "float64"), rand(rng, (1, 3, 1, 1), "float64", 0.1, 2)
    cases = [
        (K.batch_normalization(x, K.variable(mean), K.variable(var), K.variable(beta),
                               K.variable(gamma)), _bn(a, mean, var, beta, gamma, 1e-3)),
        (K.batch_normalization(x, mean, var, None, None, epsilon=0.5),
         _bn(a, mean, var, None, None, 0.5)),
        (K.batch_normalization(x, mean, var, beta, None), _bn(a, mean, var, beta, None, 1e-3)),
        (K.batch_normalization(y, m4, v4, None, m4 * 2, axis=1),
         _bn(c, m4, v4, None, m4 * 2, 1e-3)),
        # integer statistics are cast to x's type
        (K.batch_normalization(x, np.array([1, 2, 3, 4]), np.array([1, 1, 2, 2]), None, None),
         _bn(a, np.arange(1, 5), np.array([1, 1, 2, 2]), None, None, 1e-3)),
    ]
    got, want, f = run([(x, a), (y, c)], [t for t, _ in cases])
    for (t, e), g, w in zip(cases, got, want):
        compare([g], [w], [e], [t.name], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[0], knp.batch_normalization(a, mean, var, beta, gamma),
                               rtol=1e-5, atol=1e-5)
    assert got[3].dtype == np.float64 and got[4].dtype == np.float32


# ---- cross-entropies --------------------------------------------------------------------------

def _clip(p, dt):
    return np.clip(p, np.asarray(EPS, dt), np.asarray(1, dt) - np.asarray(EPS, dt))


def _lse(x, axis):
    m = x.max(axis, keepdims=True)
    return np.log(np.exp(x - m).sum(axis, keepdims=True)) + m


def _probs(rng, shape, dt, axis=-1):
    p = rng.uniform(0, 1, shape)
    p[0] = 0
    p[0, 0] = 1  # a row with exact 0 and 1 (clipped)
    return (p / p.sum(axis, keepdims=True) * 1.3).astype(dt)  # not normalized


def test_categorical_crossentropy(knp):
    rng = np.random.default_rng(15)
    pairs, outs, expect = [], [], []
    for dt in FLOATS:
        t, o, z = (K.placeholder((None, 5), dtype=dt) for _ in range(3))
        tv = np.eye(5, dtype=dt)[rng.integers(0, 5, 7)]
        tv[1] = 0.2  # soft targets
        ov, zv = _probs(rng, (7, 5), dt), rand(rng, (7, 5), dt, -60, 60)
        pairs += [(t, tv), (o, ov), (z, zv)]
        outs += [K.categorical_crossentropy(t, o), K.categorical_crossentropy(t, z, True),
                 K.categorical_crossentropy(t, K.softmax(z))]
        expect += [("probs", tv, ov, -1), ("logits", tv, zv, -1), ("logits", tv, zv, -1)]
    # the class axis elsewhere, and a large case
    t3, o3 = K.placeholder((None, 4, 3)), K.placeholder((None, 4, 3))
    tv3 = np.eye(4, dtype="float32")[rng.integers(0, 4, (5, 3))].transpose(0, 2, 1)
    ov3 = _probs(rng, (5, 4, 3), "float32", 1)
    tb, ob = K.placeholder((None, 1000)), K.placeholder((None, 1000))
    tvb = np.eye(1000, dtype="float32")[rng.integers(0, 1000, 64)]
    ovb = rand(rng, (64, 1000), "float32", -30, 30)
    pairs += [(t3, tv3), (o3, ov3), (tb, tvb), (ob, ovb)]
    outs += [K.categorical_crossentropy(t3, o3, axis=1),
             K.categorical_crossentropy(t3, o3, from_logits=True, axis=-2),
             K.categorical_crossentropy(tb, ob, from_logits=True)]
    expect += [("probs", tv3, ov3, 1), ("logits", tv3, ov3, 1), ("logits", tvb, ovb, -1)]
    results, _ = run_twice(pairs, outs)
    for rows, got, want in results:
        for g, w, (kind, tv, ov, axis) in zip(got, want, expect):
            t64, o64 = tv[:rows].astype(np.float64), ov[:rows].astype(np.float64)
            if kind == "probs":
                p = _clip(o64 / o64.sum(axis, keepdims=True), ov.dtype)
                e = -(t64 * np.log(p)).sum(axis)
            else:
                e = (t64 * (_lse(o64, axis) - o64)).sum(axis)
            tol = {"float16": 2e-2, "float32": 2e-5, "float64": 1e-12}[ov.dtype.name]
            compare([g], [w], [e], [f"cce {kind} {ov.dtype} axis={axis}"], rtol=tol, atol=tol)
            assert np.all(np.isfinite(g))
    got = results[0][1]
    # the loss of a softmax output is computed from its logits (TensorFlow): here probabilities
    # would clip at 1e-7
    np.testing.assert_array_equal(got[5], got[4])
    # Keras's numpy backend: probabilities (it normalizes and clips the same way)
    np.testing.assert_allclose(got[3], knp.categorical_crossentropy(
        pairs[3][1].astype(np.float64), pairs[4][1].astype(np.float64)), rtol=1e-5, atol=1e-7)


def test_sparse_categorical_crossentropy():
    rng = np.random.default_rng(16)
    op = K.sparse_categorical_crossentropy
    pairs, outs, expect = [], [], []
    for dt in FLOATS:
        t, o = K.placeholder((None,), dtype="int64"), K.placeholder((None, 5), dtype=dt)
        tv, ov = rng.integers(0, 5, 7), _probs(rng, (7, 5), dt)
        ov[1, tv[1]] = 0  # a clipped label probability
        pairs += [(t, tv), (o, ov)]
        outs += [op(t, o), op(t, o, from_logits=True), op(t, K.softmax(o))]
        expect += [("probs", tv, ov, -1), ("logits", tv, ov, -1), ("logits", tv, ov, -1)]
    # Keras's y_true: float labels of shape (batch, 1); a sequence output; the class axis first
    tf_, of = K.placeholder((None, 1)), K.placeholder((None, 4))
    tfv, ofv = rng.integers(0, 4, (6, 1)).astype("float32"), _probs(rng, (6, 4), "float32")
    ts, os_ = K.placeholder((None, 3), dtype="int32"), K.placeholder((None, 3, 4))
    tsv, osv = rng.integers(0, 4, (5, 3)).astype("int32"), rand(rng, (5, 3, 4), "float32")
    tc, oc = K.placeholder((None, 3), dtype="uint8"), K.placeholder((None, 4, 3))
    tcv, ocv = rng.integers(0, 4, (5, 3)).astype("uint8"), rand(rng, (5, 4, 3), "float32")
    pairs += [(tf_, tfv), (of, ofv), (ts, tsv), (os_, osv), (tc, tcv), (oc, ocv)]
    outs += [op(tf_, of), op(ts, os_, from_logits=True), op(tc, oc, True, axis=1)]
    expect += [("probs", tfv, ofv, -1), ("logits", tsv, osv, -1), ("logits", tcv, ocv, 1)]
    results, f = run_twice(pairs, outs)
    for rows, got, want in results:
        for g, w, (kind, tv, ov, axis) in zip(got, want, expect):
            o64 = np.moveaxis(ov[:rows].astype(np.float64), axis, -1)
            logits = np.log(_clip(o64, ov.dtype)) if kind == "probs" else o64
            lab = tv[:rows].astype(np.int64).reshape(o64.shape[:-1])
            e = _lse(logits, -1)[..., 0] - np.take_along_axis(logits, lab[..., None], -1)[..., 0]
            tol = {"float16": 2e-2, "float32": 2e-5, "float64": 1e-12}[ov.dtype.name]
            compare([g], [w], [e], [f"scce {kind} {ov.dtype} {ov.shape} axis={axis}"],
                    rtol=tol, atol=tol)
    got = results[0][1]
    assert got[-3].shape == (6,) and got[-2].shape == (5, 3) and got[-1].shape == (5, 3)
    np.testing.assert_array_equal(got[2], got[1])  # a softmax output: its logits are used
    # a label out of range raises IndexError when the function runs (TensorFlow's CPU kernel)
    arrays = [v for _, v in pairs]
    for bad in (5, -1):
        arrays[0] = np.array([0, 1, bad, 2, 3, 4, 0])
        with pytest.raises(IndexError, match=rf"sparse_categorical_crossentropy: index out of "
                                             rf"range: {bad} vs 5"):
            f(arrays)


def test_sparse_categorical_crossentropy_errors():
    with pytest.raises(ValueError, match=r"sparse_categorical_crossentropy: one label per row "
                                         r"of output is needed \(labels vs rows\): 4 vs 6"):
        K.sparse_categorical_crossentropy(K.placeholder((4,)), K.placeholder((6, 3)))
    t, o = K.placeholder((None,)), K.placeholder((None, 3))
    f = K.function([t, o], [K.sparse_categorical_crossentropy(t, o)])
    with pytest.raises(ValueError, match=r"sparse_categorical_crossentropy: one label per row "
                                         r"of output is needed \(labels vs rows\): 4 vs 6"):
        f([np.zeros(4, np.float32), np.full((6, 3), 0.3, np.float32)])
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        K.sparse_categorical_crossentropy(t, o, axis=2)


def test_binary_crossentropy(knp):
    rng = np.random.default_rng(17)
    pairs, outs, expect = [], [], []
    for dt in FLOATS:
        t, o, z = (K.placeholder((None, 4), dtype=dt) for _ in range(3))
        tv = rng.uniform(0, 1, (9, 4)).astype(dt)
        tv[:3] = rng.integers(0, 2, (3, 4))
        ov = rng.uniform(0, 1, (9, 4)).astype(dt)
        ov[0] = [0, 1, 0, 1]  # clipped
        zv = rand(rng, (9, 4), dt, -40, 40)
        pairs += [(t, tv), (o, ov), (z, zv)]
        outs += [K.binary_crossentropy(t, o), K.binary_crossentropy(t, z, True),
                 K.binary_crossentropy(t, K.sigmoid(z))]
        expect += [("probs", tv, ov), ("logits", tv, zv), ("logits", tv, zv)]
    big_t, big_o = K.placeholder((None, 999)), K.placeholder((None, 999))
    bt, bo = rng.uniform(0, 1, (300, 999)).astype("float32"), rng.uniform(0, 1, (300, 999))
    bo = bo.astype("float32")
    pairs += [(big_t, bt), (big_o, bo)]
    outs.append(K.binary_crossentropy(big_t, big_o))
    expect.append(("probs", bt, bo))
    results, _ = run_twice(pairs, outs)
    for rows, got, want in results:
        for g, w, (kind, tv, ov) in zip(got, want, expect):
            t64, o64 = tv[:rows].astype(np.float64), ov[:rows].astype(np.float64)
            if kind == "probs":
                p = _clip(o64, ov.dtype)
                e = -(t64 * np.log(p + EPS) + (1 - t64) * np.log(1 - p + EPS))
            else:
                e = np.maximum(o64, 0) - o64 * t64 + np.log1p(np.exp(-np.abs(o64)))
            tol = {"float16": 3e-2, "float32": 5e-5, "float64": 1e-10}[ov.dtype.name]
            compare([g], [w], [e], [f"bce {kind} {ov.dtype}"], rtol=tol, atol=tol)
            assert np.all(np.isfinite(g))
    got = results[0][1]
    np.testing.assert_array_equal(got[5], got[4])  # a sigmoid output: its logits are used
    # Keras's numpy backend (log(p / (1 - p)) then the logits form): the same loss away from
    # the clipping bounds
    inner = (bo > 0.01) & (bo < 0.99)
    keras = knp.binary_crossentropy(bt.astype(np.float64), bo.astype(np.float64))
    np.testing.assert_allclose(got[-1][inner], keras[inner], rtol=1e-4, atol=1e-5)


# ---- stop_gradient ----------------------------------------------------------------------------

def test_stop_gradient():
    rng = np.random.default_rng(18)
    x, y = K.placeholder((None, 3), dtype="float16"), K.placeholder((2,), dtype="bool")
    a, b = rand(rng, (4, 3), "float16"), np.array([True, False])
    sx, sy = K.stop_gradient([x, y])
    assert sx.node.op.name == "stop_gradient" and sy.node.op.name == "stop_gradient"
    got, want, _ = run([(x, a), (y, b)], [sx, sy, K.stop_gradient(x * 2) + 1])
    compare(got, want, [a, b, a * 2 + 1], ["list", "bool", "in a chain"])
    assert isinstance(K.stop_gradient((x,)), list)
