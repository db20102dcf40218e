"""Array construction and indexing (gather, one_hot, reverse, slice, arange, repeat, padding,
resizing): native results against the reference interpreter, an independent numpy computation
and Keras 2.3.1's numpy backend, over every dtype, unknown batch sizes (fed at 1 and odd) and a
large case; errors at graph-build time and at call time."""
import numpy as np
import pytest

import kcomp.backend as K
from util import FLOATS, INTS, assert_numpy, assert_same, keras_numpy_backend, rand, run

ALL = FLOATS + INTS + ("bool",)


@pytest.fixture(scope="module")
def knp():
    return keras_numpy_backend()


def check(got, want, expected, names):
    for g, w, e, what in zip(got, want, expected, names):
        assert_same(g, w, what)
        assert_numpy(g, e, e.dtype, what)


def first_rows(pairs):
    """The inputs with an unknown batch size cut to their first row."""
    return [a[:1] if p.shape[:1] == (None,) else a for p, a in pairs]


# ---- gather -----------------------------------------------------------------------------------

def test_gather_every_dtype_and_index_rank(knp):
    rng = np.random.default_rng(1)
    pairs, outs, cases = [], [], []
    idx_shapes = [(), (None,), (2, 3), (1, 2, 1)]
    for k, dt in enumerate(ALL):
        ref_shape = [(7,), (None, 4), (5, 3, 2)][k % 3]
        ref = K.placeholder(ref_shape, dtype=dt)
        a = rand(rng, tuple(6 if d is None else d for d in ref_shape), dt, -9, 9)
        ishape = idx_shapes[k % 4]
        idt = "int32" if k % 2 else "int64"
        ix = K.placeholder(ishape, dtype=idt)
        i = rng.integers(0, a.shape[0], tuple(9 if d is None else d for d in ishape)).astype(idt)
        pairs += [(ref, a), (ix, i)]
        outs.append(K.gather(ref, ix))
        cases.append((a, i))
    # other index types, a Python list of indices and a large case
    big = K.placeholder((1000, 64))
    bi = K.placeholder((None,), dtype="int32")
    ab = rand(rng, (1000, 64), "float32")
    ib = rng.integers(0, 1000, 5001).astype("int32")
    pairs += [(big, ab), (bi, ib)]
    outs += [K.gather(big, bi), K.gather(big, [3, 999, 0])]
    cases += [(ab, ib), (ab, np.array([3, 999, 0]))]
    for dt in ("uint8", "int16", "uint64"):
        i = rng.integers(0, 200, 7).astype(dt)
        outs.append(K.gather(big, K.constant(i, dtype=dt)))
        cases.append((ab, i))
    got, want, f = run(pairs, outs)
    for g, w, (a, i) in zip(got, want, cases):
        assert_same(g, w, f"gather {a.dtype}{a.shape}[{i.shape}]")
        np.testing.assert_array_equal(g, np.take(a, i, axis=0))
        np.testing.assert_array_equal(g, knp.gather(a, i))
    # size 1 for every unknown extent (the outputs of placeholder pairs come first)
    arrays = []
    for (ref, a), (ix, i) in zip(pairs[::2], pairs[1::2]):
        a1 = a[:1] if ref.shape[0] is None else a
        i1 = i.reshape(-1)[:1].reshape((1,) + i.shape[1:]) if ix.shape[:1] == (None,) else i
        arrays += [a1, np.minimum(i1, len(a1) - 1)]
    for g, a1, i1 in zip(f(arrays), arrays[::2], arrays[1::2]):
        np.testing.assert_array_equal(g, np.take(a1, i1, axis=0))


def test_gather_out_of_range_raises_index_error_at_call_time():
    x = K.placeholder((None, 3))
    i = K.placeholder((None,), dtype="int64")
    f = K.function([x, i], [K.gather(x, i), x * 2])
    a = np.arange(12, dtype=np.float32).reshape(4, 3)
    for bad, value in (([0, 4], 4), ([-1], -1), ([2, 1, 100], 100)):
        with pytest.raises(IndexError, match=rf"gather: index out of range: {value} vs 4"):
            f([a, np.array(bad)])
    g, _ = f([a, np.array([3, 0])])  # the function is still usable
    np.testing.assert_array_equal(g, a[[3, 0]])
    with pytest.raises(IndexError):
        f([a[:0], np.array([0])])  # nothing to gather from


def test_gather_errors_name_the_op():
    x = K.placeholder((4, 3))
    with pytest.raises(ValueError, match=r"gather: indices must be integers, got float32 "
                                         r"\(operand shapes: \(4, 3\), \(2,\)\)"):
        K.gather(x, K.placeholder((2,)))
    with pytest.raises(ValueError, match="gather: needs reference rank > 0"):
        K.gather(K.placeholder(()), K.placeholder((2,), dtype="int32"))


# ---- one_hot ----------------------------------------------------------------------------------

def test_one_hot(knp):
    rng = np.random.default_rng(2)
    pairs, outs, expect = [], [], []
    for k, (shape, dt) in enumerate([((None,), "int32"), ((2, 3), "int64"), ((), "uint8"),
                                     ((None, 1), "int16"), ((4000,), "int32")]):
        ix = K.placeholder(shape, dtype=dt)
        i = rng.integers(0, 5, tuple(7 if d is None else d for d in shape)).astype(dt)
        pairs.append((ix, i))
        outs.append(K.one_hot(ix, 5))
        expect.append((i, 5))
    # num_classes from a shape; out-of-range and negative indices give rows of zeros
    x = K.placeholder((None, 6))
    ix = K.placeholder((None,), dtype="int32")
    a = np.zeros((3, 6), np.float32)
    i = np.array([5, 6, -1, 0, 2], np.int32)
    pairs += [(x, a), (ix, i)]
    outs.append(K.one_hot(ix, K.shape(x)[1]))
    expect.append((i, 6))
    got, want, f = run(pairs, outs)
    for g, w, (i, n) in zip(got, want, expect):
        e = (i[..., None] == np.arange(n)).astype(np.float32)
        check([g], [w], [e], [f"one_hot {i.dtype}{i.shape}"])
        if i.ndim and i.shape[-1] != 1 and i.min() >= 0 and i.max() < n:
            # (to_categorical drops a trailing axis of 1 and rejects out-of-range indices)
            np.testing.assert_array_equal(g, knp.one_hot(i, n))
    assert got[-1][1].sum() == 0 and got[-1][2].sum() == 0
    arrays = first_rows(pairs)
    by_input = {id(p): a for (p, _), a in zip(pairs, arrays)}
    for g, t, (_, n) in zip(f(arrays), outs, expect):
        i = by_input[id(t.node.inputs[0])]
        np.testing.assert_array_equal(g, (i[..., None] == np.arange(n)).astype(np.float32))
    with pytest.raises(ValueError, match="one_hot: indices must be integers"):
        K.one_hot(K.placeholder((3,)), 4)


# ---- reverse ----------------------------------------------------------------------------------

def test_reverse(knp):
    rng = np.random.default_rng(3)
    pairs, outs, expect = [], [], []
    for k, dt in enumerate(ALL):
        shape, axes = [((None, 3, 4), 1), ((2, 1, 5), [0, -1]), ((None, 4), [0, 1]),
                       ((6,), 0)][k % 4]
        x = K.placeholder(shape, dtype=dt)
        a = rand(rng, tuple(5 if d is None else d for d in shape), dt, -9, 9)
        pairs.append((x, a))
        outs.append(K.reverse(x, axes))
        expect.append((a, axes))
    big = K.placeholder((None, 257, 33), dtype="float32")
    ab = rand(rng, (31, 257, 33), "float32")
    pairs.append((big, ab))
    outs += [K.reverse(big, [1, 2]), K.reverse(big, -1) + K.reverse(big, 0)]
    expect.append((ab, [1, 2]))
    got, want, f = run(pairs, outs)
    for g, w, (a, axes) in zip(got, want, expect):
        e = np.flip(a, axes)
        check([g], [w], [e], [f"reverse {a.dtype}{a.shape} {axes}"])
        np.testing.assert_array_equal(g, knp.reverse(a, axes))
    np.testing.assert_array_equal(got[-1], ab[..., ::-1] + ab[::-1])
    # batch 1
    g = f([a[:1] if p.shape[0] is None else a for p, a in pairs])
    np.testing.assert_array_equal(g[0], np.flip(pairs[0][1][:1], 1))
    x = K.placeholder((2, 3))
    with pytest.raises(ValueError, match="reverse: an axis is given more than once"):
        K.reverse(x, [1, -1])
    with pytest.raises(ValueError, match="reverse: axis 2 is out of range for rank 2"):
        K.reverse(x, 2)


# ---- slice ------------------------------------------------------------------------------------

def test_slice(knp):
    rng = np.random.default_rng(4)
    x = K.placeholder((None, 6, 5), dtype="float64")
    y = K.placeholder((4, 7), dtype="uint8")
    a, b = rand(rng, (9, 6, 5), "float64"), rand(rng, (4, 7), "uint8", 0, 200)
    cases = [
        (K.slice(x, [1, 0, 2], [3, -1, 2]), lambda a, b: a[1:4, :, 2:4]),
        (K.slice(x, (0, 5, 0), (-1, 1, -1)), lambda a, b: a[:, 5:6]),
        (K.slice(x, [2, 2, 2], [0, 2, 3]), lambda a, b: a[2:2, 2:4, 2:5]),
        (K.slice(y, [0, 3], [4, 4]), lambda a, b: b[:, 3:]),
        (K.slice(y, [1, 0], [2, -1]), lambda a, b: b[1:3]),
        (K.slice(y, K.constant([1, 2], "int32"), [1, 1]), lambda a, b: b[1:2, 2:3]),
        # size derived from input shapes: the rest of the axis, and an explicit extent
        (K.slice(x, [0, 1, 0], [K.shape(x)[0], 5, K.shape(x)[2]]), lambda a, b: a[:, 1:]),
        (K.slice(x, [0, 0, 0], K.shape(x)), lambda a, b: a),
    ]
    got, want, f = run([(x, a), (y, b)], [t for t, _ in cases])
    for (t, fn), g, w in zip(cases, got, want):
        check([g], [w], [fn(a, b)], [t.name])
    np.testing.assert_array_equal(got[0], knp.slice(a, [1, 0, 2], [3, 6, 2]))
    assert got[0].shape == (3, 6, 2) and cases[0][0].shape == (3, 6, 2)
    # the window must fit the run-time extent (TensorFlow raises too)
    with pytest.raises(ValueError, match="slice: the window does not fit"):
        f([a[:3], b])
    g = f([a[:4], b])
    np.testing.assert_array_equal(g[0], a[1:4, :, 2:4])


def test_slice_errors():
    x = K.placeholder((None, 6))
    with pytest.raises(ValueError, match=r"slice: start 4 and size 3 do not fit axis 1 "
                                         r"\(operand shapes: \(None, 6\)\)"):
        K.slice(x, [0, 4], [1, 3])
    with pytest.raises(ValueError, match="slice: start -1 and size 2 do not fit axis 0"):
        K.slice(x, [-1, 0], [2, 2])
    with pytest.raises(ValueError, match="one entry per axis"):
        K.slice(x, [0], [1])
    with pytest.raises(ValueError, match="not derived from input shapes"):
        K.slice(x, K.placeholder((2,), dtype="int32"), [1, 1])


# ---- arange -----------------------------------------------------------------------------------

def _tf_range(start, stop, step, acc):
    """tf.range: size from the bounds, values accumulated in the range's type."""
    start, stop, step = (np.asarray(v, acc) for v in (start, stop, step))
    if np.dtype(acc).kind == "f":
        n = int(np.ceil(np.abs((stop - start) / step)))
    else:
        n = max(0, -(-(int(stop) - int(start)) // int(step)))
    out, v = [], start
    for _ in range(n):
        out.append(v)
        v = np.asarray(v + step, acc)
    return np.array(out, acc)


def test_arange(knp):
    x = K.placeholder((None, 7))
    a = np.zeros((5, 7), np.float32)
    n0 = K.shape(x)[0]
    cases = [
        (K.arange(5), np.arange(5, dtype=np.int32)),
        (K.arange(-3), np.arange(0, dtype=np.int32)),
        (K.arange(2, 9, 3), np.arange(2, 9, 3, dtype=np.int32)),
        (K.arange(9, 2, -2, dtype="int64"), np.arange(9, 2, -2)),
        (K.arange(3, dtype="float32"), np.arange(3, dtype=np.float32)),
        (K.arange(-4, 4, 3, dtype="uint8"), np.arange(-4, 4, 3).astype(np.uint8)),
        (K.arange(0.5, 3.0, 0.5, dtype="float64"),
         _tf_range(0.5, 3.0, 0.5, np.float32).astype(np.float64)),
        (K.arange(0, 1, 0.1, dtype="float32"), _tf_range(0, 1, 0.1, np.float32)),
        (K.arange(np.float64(1), 2.05, 0.25, dtype="float64"), _tf_range(1, 2.05, 0.25, "f8")),
        (K.arange(2.5), _tf_range(0, 2.5, 1, np.float32).astype(np.int32)),
        # bounds from input shapes
        (K.arange(n0), np.arange(5, dtype=np.int32)),
        (K.arange(n0, dtype="float16"), np.arange(5, dtype=np.float16)),
        (K.arange(1, K.shape(x)[1], 2), np.arange(1, 7, 2, dtype=np.int32)),
        (K.arange(n0, n0 * 3, 3), np.arange(5, 15, 3, dtype=np.int32)),
        (K.arange(n0, 20, 4, dtype="int64"), np.arange(5, 20, 4)),
        (K.arange(10, n0, -3), np.arange(10, 5, -3, dtype=np.int32)),
    ]
    got, want, f = run([(x, a)], [t for t, _ in cases])
    for (t, e), g, w in zip(cases, got, want):
        check([g], [w], [e], [f"arange {t.name}"])
    for t, args in ((cases[0], (5,)), (cases[2], (2, 9, 3)), (cases[3], (9, 2, -2, "int64"))):
        np.testing.assert_array_equal(got[cases.index(t)], knp.arange(*args))
    # batch 1: the shape-derived ranges follow
    g = f([np.zeros((1, 7), np.float32)])
    np.testing.assert_array_equal(g[10], [0])
    np.testing.assert_array_equal(g[13], [1])
    np.testing.assert_array_equal(g[15], [10, 7, 4])


def test_arange_errors():
    x = K.placeholder((None, 3))
    f = K.function([x], [K.arange(K.shape(x)[0], 4)])
    np.testing.assert_array_equal(f([np.zeros((2, 3))])[0], [2, 3])
    with pytest.raises(ValueError, match="arange: requires start <= stop when step > 0"):
        f([np.zeros((6, 3))])  # start 6 > stop 4: TensorFlow's range refuses it too
    with pytest.raises(ValueError, match="requires start <= stop"):
        K.arange(5, 2)
    with pytest.raises(ValueError, match="step must be a nonzero"):
        K.arange(0, 5, 0)
    with pytest.raises(ValueError, match="depends on data"):
        K.arange(K.placeholder((), dtype="float32"))
    with pytest.raises(ValueError, match="data-dependent extent cannot be compiled"):
        K.arange(K.placeholder((), dtype="int32"))


# ---- repeat -----------------------------------------------------------------------------------

def test_repeat(knp):
    rng = np.random.default_rng(5)
    pairs, outs, expect = [], [], []
    for k, dt in enumerate(("float16", "int8", "bool", "uint64", "float64")):
        x = K.placeholder((None, 3 + k), dtype=dt)
        a = rand(rng, (5, 3 + k), dt, -9, 9)
        pairs.append((x, a))
        outs.append(K.repeat(x, k + 1))
        expect.append((a, k + 1))
    y = K.placeholder((None, 2))
    b = rand(rng, (4, 2), "float32")
    pairs.append((y, b))
    outs.append(K.repeat(y, K.shape(y)[0]))  # n from a shape: the batch size
    expect.append((b, None))
    got, want, f = run(pairs, outs)
    for g, w, (a, n) in zip(got, want, expect):
        n = len(a) if n is None else n
        check([g], [w], [np.repeat(a[:, None], n, axis=1)], [f"repeat {a.dtype} {n}"])
        np.testing.assert_array_equal(g, knp.repeat(a, n))
    for g, (a, n) in zip(f(first_rows(pairs)), expect):
        np.testing.assert_array_equal(g, np.repeat(a[:1, None], n or 1, axis=1))
    with pytest.raises(ValueError, match=r"repeat: needs a rank-2 input \(operand shapes: "
                                         r"\(2, 3, 4\)\)"):
        K.repeat(K.placeholder((2, 3, 4)), 2)


# ---- padding ----------------------------------------------------------------------------------

def test_padding(knp):
    rng = np.random.default_rng(6)
    pairs, outs, expect = [], [], []

    def add(t, pads, keras=None):  # t pads the last input added
        outs.append(t)
        expect.append((len(pairs) - 1, pads, keras))

    for k, dt in enumerate(ALL):
        x = K.placeholder((None, 5, 3), dtype=dt)
        pairs.append((x, rand(rng, (3, 5, 3), dt, -9, 9)))
        p = [(1, 1), (0, 2), (3, 0)][k % 3]
        add(K.temporal_padding(x, p), [(0, 0), p, (0, 0)],
            lambda a, p=p: knp.temporal_padding(a, p))
    add(K.temporal_padding(x, (0, 0)), [(0, 0)] * 3)
    for df in ("channels_last", "channels_first"):
        def spatial(pads, df=df):
            return [(0, 0)] + list(pads) + [(0, 0)] if df == "channels_last" else \
                [(0, 0), (0, 0)] + list(pads)
        x4 = K.placeholder((None, 4, 5, 3), dtype="float32")
        pairs.append((x4, rand(rng, (3, 4, 5, 3), "float32")))
        p2 = ((2, 0), (1, 3))
        add(K.spatial_2d_padding(x4, p2, df), spatial(p2),
            lambda a, df=df, p2=p2: knp.spatial_2d_padding(a, p2, df))
        add(K.spatial_2d_padding(x4, data_format=df), spatial(((1, 1), (1, 1))))
        x5 = K.placeholder((None, 2, 3, 4, 1), dtype="int32")
        pairs.append((x5, rand(rng, (3, 2, 3, 4, 1), "int32", -9, 9)))
        p3 = ((1, 0), (0, 2), (1, 1))
        add(K.spatial_3d_padding(x5, p3, df), spatial(p3),
            lambda a, df=df, p3=p3: knp.spatial_3d_padding(a, p3, df))
    big = K.placeholder((None, 128, 96, 8), dtype="float32")
    pairs.append((big, rand(rng, (2, 128, 96, 8), "float32")))
    add(K.spatial_2d_padding(big, ((3, 4), (5, 6))), [(0, 0), (3, 4), (5, 6), (0, 0)])
    got, want, f = run(pairs, outs)
    for g, w, (src, pads, keras) in zip(got, want, expect):
        a = pairs[src][1]
        check([g], [w], [np.pad(a, pads)], [f"pad {a.dtype}{a.shape} {pads}"])
        if keras is not None:
            np.testing.assert_array_equal(g, keras(a))
    # batch 1 and another odd batch
    for n in (1, 7):
        arrays = [rand(rng, (n,) + a.shape[1:], a.dtype, -9, 9) for _, a in pairs]
        for g, (src, pads, _) in zip(f(arrays), expect):
            np.testing.assert_array_equal(g, np.pad(arrays[src], pads))


def test_padding_errors():
    x = K.placeholder((None, 5, 3))
    with pytest.raises(ValueError, match=r"spatial_2d_padding: needs a rank-4 input "
                                         r"\(operand shapes: \(None, 5, 3\)\)"):
        K.spatial_2d_padding(x)
    with pytest.raises(ValueError, match="temporal_padding: negative padding"):
        K.temporal_padding(x, (1, -1))
    with pytest.raises(ValueError, match="must be 3 pairs"):
        K.spatial_3d_padding(K.placeholder((1, 2, 3, 4, 5)), ((1, 1), (1, 1)))
    with pytest.raises(ValueError, match="data_format"):
        K.spatial_2d_padding(K.placeholder((1, 2, 3, 4)), data_format="nhwc")


# ---- resize_images and resize_volumes ---------------------------------------------------------

def _legacy_source(n, f):
    """TensorFlow's legacy scaler, written out per item in float32."""
    scale = np.float32(n) / np.float32(n * f)
    return [np.float32(i) * scale for i in range(n * f)]


def _nearest(a, axes, factors):
    for ax, f in zip(axes, factors):
        n = a.shape[ax]
        a = np.take(a, [min(int(np.floor(v)), n - 1) for v in _legacy_source(n, f)], axis=ax)
    return a


def _bilinear64(a, axes, factors):
    """Bilinear interpolation in float64 at the positions i / f (align_corners=False)."""
    a = a.astype(np.float64)
    for ax, f in zip(axes, factors):
        n = a.shape[ax]
        pos = np.arange(n * f) / f
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, n - 1)
        t = (pos - lo).reshape([-1 if i == ax else 1 for i in range(a.ndim)])
        a = np.take(a, lo, axis=ax) * (1 - t) + np.take(a, hi, axis=ax) * t
    return a


def test_resize_images(knp):
    rng = np.random.default_rng(7)
    pairs, outs, expect = [], [], []
    for k, dt in enumerate(ALL):
        df = ("channels_last", "channels_first")[k % 2]
        x = K.placeholder((None, 3, 4, 2), dtype=dt)
        a = rand(rng, (3, 3, 4, 2), dt, -9, 9)
        pairs.append((x, a))
        axes = (1, 2) if df == "channels_last" else (2, 3)
        fh, fw = 2, 3 if k % 3 else 1
        outs.append(K.resize_images(x, fh, fw, df))
        expect.append(("nearest", a, axes, (fh, fw), df))
        if dt != "bool":
            outs.append(K.resize_images(x, fw, fh, df, interpolation="bilinear"))
            expect.append(("bilinear", a, axes, (fw, fh), df))
    # factors whose float32 scale is below 1/f: TensorFlow's mapping differs from i // f
    x = K.placeholder((1, 3, 2, 1))
    a = rand(rng, (1, 3, 2, 1), "float32")
    pairs.append((x, a))
    outs.append(K.resize_images(x, 41, 47, "channels_last"))
    expect.append(("nearest", a, (1, 2), (41, 47), None))
    big = K.placeholder((None, 64, 48, 3))
    ab = rand(rng, (2, 64, 48, 3), "float32")
    pairs.append((big, ab))
    outs += [K.resize_images(big, 2, 2, "channels_last", "bilinear"),
             K.resize_images(big, 3, 2, "channels_last")]
    expect += [("bilinear", ab, (1, 2), (2, 2), None), ("nearest", ab, (1, 2), (3, 2), None)]
    got, want, f = run(pairs, outs)
    for g, w, (method, a, axes, fs, df) in zip(got, want, expect):
        what = f"resize_images {method} {a.dtype} {fs} {df}"
        assert_same(g, w, what)
        if method == "nearest":
            assert g.dtype == a.dtype
            np.testing.assert_array_equal(g, _nearest(a, axes, fs), err_msg=what)
            if df is not None:  # Keras's numpy backend repeats: the same for small factors
                np.testing.assert_array_equal(g, knp.resize_images(a, *fs, df), err_msg=what)
        else:
            assert g.dtype == np.float32, what  # TensorFlow's resize_bilinear returns float32
            tol = 2e-3 if a.dtype == np.float16 else 1e-5
            assert_numpy(g, _bilinear64(a.astype(np.float32), axes, fs), "float32", what,
                         rtol=tol, atol=tol * 10)
    odd = got[-3]
    assert not np.array_equal(odd, np.repeat(np.repeat(a, 41, 1), 47, 2))
    for g, (method, a, axes, fs, _) in zip(f(first_rows(pairs)), expect):
        a = a[:1]
        e = _nearest(a, axes, fs) if method == "nearest" else \
            _bilinear64(a.astype(np.float32), axes, fs)
        assert_numpy(g, e, g.dtype, f"{method} batch 1", rtol=2e-3, atol=2e-2)


def test_resize_volumes(knp):
    rng = np.random.default_rng(8)
    x = K.placeholder((None, 2, 3, 1, 2), dtype="float16")
    y = K.placeholder((None, 2, 3, 1, 2), dtype="int64")
    a, b = rand(rng, (3, 2, 3, 1, 2), "float16"), rand(rng, (3, 2, 3, 1, 2), "int64", -9, 9)
    cases = [(K.resize_volumes(x, 2, 1, 3, "channels_last"), a, (1, 2, 3), (2, 1, 3)),
             (K.resize_volumes(y, 2, 2, 2, "channels_first"), b, (2, 3, 4), (2, 2, 2)),
             (K.resize_volumes(y, 1, 1, 1, "channels_last"), b, (1, 2, 3), (1, 1, 1))]
    got, want, f = run([(x, a), (y, b)], [t for t, *_ in cases])
    for (t, v, axes, fs), g, w in zip(cases, got, want):
        e = v
        for ax, r in zip(axes, fs):
            e = np.repeat(e, r, axis=ax)
        check([g], [w], [e], [f"resize_volumes {fs}"])
        df = "channels_last" if axes[0] == 1 else "channels_first"
        np.testing.assert_array_equal(g, knp.resize_volumes(v, *fs, df))
    g = f([a[:1], b[:1]])
    np.testing.assert_array_equal(g[0], np.repeat(np.repeat(a[:1], 2, 1), 3, 3))


def test_resize_errors():
    x = K.placeholder((None, 3, 4, 2))
    with pytest.raises(ValueError, match='interpolation should be one of "nearest"'):
        K.resize_images(x, 2, 2, "channels_last", "bicubic")
    with pytest.raises(ValueError, match="resize_images: factors must be ints >= 1"):
        K.resize_images(x, 0, 2, "channels_last")
    with pytest.raises(ValueError, match=r"resize_images: needs a rank-4 input"):
        K.resize_images(K.placeholder((3, 4, 2)), 2, 2, "channels_last")
    with pytest.raises(ValueError, match="bilinear interpolation of bool"):
        K.resize_images(K.placeholder((1, 3, 4, 2), dtype="bool"), 2, 2, "channels_last",
                        "bilinear")
    with pytest.raises(ValueError, match="resize_volumes: needs a rank-5 input"):
        K.resize_volumes(x, 2, 2, 2, "channels_last")
    with pytest.raises(ValueError, match="data_format"):
        K.resize_volumes(K.placeholder((1, 2, 3, 4, 5)), 2, 2, 2, "ncdhw")


def test_an_empty_batch_through_ops():
    """Ops fed an empty batch give empty results, compiled and in the reference interpreter
    (whose reshapes once inferred an extent with -1, which numpy cannot do for no elements)."""
    x, y = K.placeholder((None, 3, 4)), K.placeholder((None, 4, 5))
    i = K.placeholder((None, 2), dtype="int32")
    dw, pw = K.variable(np.ones((2, 4, 1), np.float32)), K.variable(np.ones((1, 4, 2), np.float32))
    outs = [K.batch_dot(x, y, axes=(2, 1)), K.softmax(x[:, 0], axis=0),
            K.gather(K.ones((6, 3)), i), K.separable_conv1d(x, dw, pw), K.sum(x, axis=0)]
    for b in (0, 2):
        feeds = [(x, np.ones((b, 3, 4), np.float32)), (y, np.ones((b, 4, 5), np.float32)),
                 (i, np.zeros((b, 2), np.int32))]
        got, want, _ = run(feeds, outs)
        for g, r in zip(got, want):
            assert g.shape == r.shape
            np.testing.assert_allclose(g, r, rtol=1e-6)
        assert got[0].shape == (b, 3, 5) and got[2].shape == (b, 2, 3) and got[4].shape == (3, 4)
