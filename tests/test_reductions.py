"""Reductions and scans over every axis form, against the reference and plain numpy."""
import numpy as np
import pytest

import kcomp.backend as K
from util import FLOATS, assert_numpy, assert_same, concrete, rand, run

# (shape, axis) covering rows, columns (a tile of 256 lanes and a ragged tile), the middle axis,
# non-adjacent axes (a transpose first), all axes, negative axes and size-1 axes
AXES = [((None, 7), 1), ((None, 7), 0), ((5, 1, 3), None), ((4, 6, 9), (0, 2)), ((4, 6, 9), 1),
        ((4, 6, 9), -1), ((3, 300), 0), ((2, 5, 257), 1), ((1,), 0), ((2, 1, 3), [1]),
        ((3, 4, 5, 6), (1, 3)), ((6,), None)]

FLOAT_REDUCTIONS = {
    "sum": (K.sum, np.sum), "mean": (K.mean, np.mean), "prod": (K.prod, np.prod),
    "max": (K.max, np.max), "min": (K.min, np.min), "var": (K.var, np.var),
    "std": (K.std, np.std),
    "logsumexp": (K.logsumexp, lambda a, axis, keepdims: np.log(np.sum(
        np.exp(a), axis=axis, keepdims=keepdims))),
}


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("keepdims", [False, True])
def test_float_reductions(dtype, keepdims):
    rng = np.random.default_rng(10)
    pairs, outs, expect = [], [], []
    for shape, axis in AXES:
        x = K.placeholder(shape, dtype=dtype)
        a = rand(rng, concrete(shape, 3), dtype, 0.5, 1.5)  # keeps prod well scaled
        pairs.append((x, a))
        for name, (fn, ref) in FLOAT_REDUCTIONS.items():
            outs.append(fn(x, axis=axis, keepdims=keepdims))
            np_axis = tuple(axis) if isinstance(axis, list) else axis
            expect.append((f"{name} {shape} axis={axis}", ref, a, np_axis))
    got, want, _ = run(pairs, outs)
    for g, w, (what, ref, a, axis) in zip(got, want, expect):
        assert_same(g, w, what)
        assert_numpy(g, ref(a.astype(np.float64), axis=axis, keepdims=keepdims), dtype, what)


@pytest.mark.parametrize("dtype", ["int8", "int32", "int64", "uint8", "uint32"])
def test_int_reductions(dtype):
    """Integers keep their dtype: sums accumulate in 64 bits and wrap into the result type,
    mean divides like C (towards zero), as Keras's TensorFlow backend does."""
    rng = np.random.default_rng(11)
    x = K.placeholder((None, 6, 5), dtype=dtype)
    lo = -100 if dtype[0] == "i" else 0
    a = rand(rng, (4, 6, 5), dtype, lo, 100)
    outs = [K.sum(x, 1), K.sum(x), K.prod(x, 2), K.max(x, (0, 2)), K.min(x, -1, True),
            K.mean(x, 1), K.mean(x)]
    got, want, _ = run([(x, a)], outs)
    wide = a.astype(np.int64 if dtype[0] == "i" else np.uint64)
    trunc = lambda s, n: (np.sign(s) * (np.abs(s) // n)).astype(dtype)  # noqa: E731
    expected = [wide.sum(1), wide.sum(), wide.prod(2), a.max((0, 2)), a.min(-1, keepdims=True),
                trunc(wide.sum(1).astype(np.int64), 6), trunc(wide.sum().astype(np.int64), a.size)]
    for g, w, e in zip(got, want, expected):
        assert_same(g, w)
        with np.errstate(over="ignore"):
            assert_numpy(g, np.asarray(e).astype(dtype), dtype)


def test_bool_reductions():
    rng = np.random.default_rng(12)
    x = K.placeholder((None, 4, 3), dtype="bool")
    f = K.placeholder((None, 4))
    a, b = rand(rng, (5, 4, 3), "bool"), rand(rng, (5, 4), "float32", -1, 1)
    b[1] = 0
    outs = [K.any(x, 1), K.all(x, (0, 2)), K.any(x), K.all(x, keepdims=True), K.any(f, 1),
            K.all(f), K.sum(x, 1), K.mean(x)]
    got, want, _ = run([(x, a), (f, b)], outs)
    expected = [a.any(1), a.all((0, 2)), a.any(), a.all(keepdims=True), (b != 0).any(1),
                (b != 0).all(), a.sum(1).astype(np.float32), a.mean().astype(np.float32)]
    for g, w, e in zip(got, want, expected):
        assert_same(g, w)
        assert_numpy(g, e, e.dtype)


def test_large_reductions_split_rows_and_stay_accurate():
    """Few long rows are split into blocks across threads; float32 sums stay within float32
    rounding of the float64 result; variance is stable with a large mean."""
    rng = np.random.default_rng(13)
    x = K.placeholder((None, 200001))
    a = (rng.standard_normal((3, 200001)) + 1000.0).astype(np.float32)
    a[1, 12345] = 1e6
    outs = [K.sum(x, 1), K.mean(x, 1), K.var(x, 1), K.std(x, 1), K.max(x, 1), K.sum(x),
            K.logsumexp(x * 1e-3, 1), K.argmax(x, 1), K.prod(x * 0 + 1.00001, 1)]
    got, want, _ = run([(x, a)], outs)
    d = a.astype(np.float64)
    ef = (a * np.float32(1e-3)).astype(np.float64)
    expected = [d.sum(1), d.mean(1), d.var(1), d.std(1), d.max(1), d.sum(),
                np.log(np.exp(ef - ef.max(1, keepdims=True)).sum(1)) + ef.max(1), a.argmax(1),
                np.full(3, np.float32(1.00001) ** 200001)]
    for g, w, e in zip(got, want, expected):
        assert_same(g, w)
        assert_numpy(g, e, g.dtype, rtol=2e-6 if g.dtype == np.float32 else None)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int32", "uint8"])
def test_argmax_argmin(dtype):
    rng = np.random.default_rng(14)
    x = K.placeholder((None, 5, 300), dtype=dtype)
    a = rand(rng, (3, 5, 300), dtype, 0, 4)  # many ties: the first index must win
    outs = [K.argmax(x), K.argmin(x, 1), K.argmax(x, 0), K.argmin(x, -1), K.argmax(x, 1)]
    got, want, _ = run([(x, a)], outs)
    expected = [a.argmax(-1), a.argmin(1), a.argmax(0), a.argmin(-1), a.argmax(1)]
    for g, w, e in zip(got, want, expected):
        assert g.dtype == np.int64
        assert_same(g, w)
        np.testing.assert_array_equal(g, e)


def test_nan_in_reductions():
    a = np.array([[1.0, np.nan, 3.0, np.nan], [2.0, 5.0, -1.0, 0.0]], np.float32)
    x = K.placeholder((None, 4))
    got, want, _ = run([(x, a)], [K.max(x, 1), K.min(x, 1), K.argmax(x, 1), K.argmin(x, 1),
                                  K.sum(x, 1), K.max(x, 0)])
    expected = [np.max(a, 1), np.min(a, 1), np.argmax(a, 1), np.argmin(a, 1), np.sum(a, 1),
                np.max(a, 0)]
    for g, w, e in zip(got, want, expected):
        assert_same(g, w)
        np.testing.assert_array_equal(g, e)


def test_logsumexp_infinities():
    """TensorFlow's formulation: all -inf gives -inf, +inf gives +inf, no NaN from inf - inf."""
    a = np.array([[-np.inf, -np.inf], [np.inf, 1.0], [1000.0, 1000.0]], np.float32)
    x = K.placeholder((None, 2))
    got, want, _ = run([(x, a)], [K.logsumexp(x, 1)])
    assert_same(got[0], want[0])
    np.testing.assert_allclose(got[0], [-np.inf, np.inf, 1000 + np.log(2)], rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int32", "int8"])
def test_cumsum_cumprod(dtype):
    rng = np.random.default_rng(15)
    x = K.placeholder((None, 4, 300), dtype=dtype)
    a = rand(rng, (3, 4, 300), dtype, -2, 2) if dtype[0] == "i" else \
        rand(rng, (3, 4, 300), dtype, 0.9, 1.1)
    outs = [K.cumsum(x), K.cumsum(x, 1), K.cumsum(x, -1), K.cumprod(x, 1), K.cumprod(x, 0)]
    got, want, _ = run([(x, a)], outs)
    with np.errstate(over="ignore"):
        expected = [np.cumsum(a, 0, dtype=a.dtype), np.cumsum(a, 1, dtype=a.dtype),
                    np.cumsum(a, -1, dtype=a.dtype), np.cumprod(a, 1, dtype=a.dtype),
                    np.cumprod(a, 0, dtype=a.dtype)]
    for g, w, e in zip(got, want, expected):
        assert_same(g, w)
        # sequential accumulation in the data type, exactly like numpy
        assert_numpy(g, e, dtype, rtol=1e-2 if dtype == "float16" else 1e-6)


def test_empty_reductions():
    x = K.placeholder((None, 3))
    a = np.zeros((0, 3), np.float32)
    got, want, f = run([(x, a)], [K.sum(x, 0), K.prod(x, 0), K.mean(x, 0), K.any(x, 0),
                                  K.all(x, 0), K.sum(x, 1)])
    expected = [np.zeros(3), np.ones(3), np.full(3, np.nan), np.zeros(3, bool), np.ones(3, bool),
                np.zeros(0)]
    for g, w, e in zip(got, want, expected):
        assert_same(g, w)
        np.testing.assert_array_equal(g, e.astype(g.dtype))
    # max of nothing has no value: a static empty axis fails when the graph is built,
    # an empty batch fails when the function runs
    with pytest.raises(ValueError, match="max: zero-size axis"):
        K.max(K.placeholder((0, 3)), 0)
    g = K.function([x], [K.max(x, 0)])
    with pytest.raises(ValueError, match="max: zero-size reduction"):
        g([a])


def test_reduction_axis_errors():
    x = K.placeholder((None, 3))
    with pytest.raises(ValueError, match=r"sum: axis 2 is out of range for rank 2 \(operand "
                                         r"shapes: \(None, 3\)\)"):
        K.sum(x, 2)
    with pytest.raises(ValueError, match="argmax: axis -3 is out of range"):
        K.argmax(x, -3)
    with pytest.raises(ValueError, match="cumsum: axis 5"):
        K.cumsum(x, 5)


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "int32"])
def test_reduction_prologues(dtype):
    """An elementwise group read only by a reduction over its last axis is computed row by row
    into the reduction's buffer (fusion's prologue): every reduction kind, broadcast operands
    (a row, a column, a scalar), a slice read through, an unknown batch extent, keepdims; not
    fused where the value is needed elsewhere, where the axis is not the last one, or where
    rows are longer than the buffer."""
    rng = np.random.default_rng(15)
    x, y = K.placeholder((None, 6, 37), dtype=dtype), K.placeholder((37,), dtype=dtype)
    c = K.placeholder((6, 1), dtype=dtype)
    w = K.placeholder((2, 9000), dtype=dtype)
    a, b = rand(rng, (4, 6, 37), dtype, -3, 3), rand(rng, (37,), dtype, -3, 3)
    e, v = rand(rng, (6, 1), dtype, -3, 3), rand(rng, (2, 9000), dtype, -1, 1)
    def d(i):  # a value private to each reduction (distinct after CSE)
        return (x * (i + 2) - y) * c

    fused = [K.sum(K.square(d(0)), -1), K.mean(K.abs(d(1)), -1, keepdims=True),
             K.max(d(2) + 1, -1), K.min(d(3), 2), K.prod(K.sign(d(4)), -1), K.var(d(5), -1),
             K.std(d(6), -1), K.argmax(d(7), -1), K.argmin(K.abs(d(8)), -1),
             K.any(K.greater(d(9), 2), -1), K.all(K.greater(d(10), -8), -1),
             K.sum(x[:, 1:, ::2] * 2, -1)]
    if dtype != "int32":
        fused += [K.logsumexp(d(11) / 4, -1)]
    used = x * c                                                      # needed elsewhere too
    apart = [K.sum(K.exp(w * 1), -1),                                 # rows longer than the buffer
             K.sum(used, -1), used, K.sum(K.square(d(12)), 1)]        # not the last axis
    got, want, f = run([(x, a), (y, b), (c, e), (w, v)], fused + apart)
    for t, g, wnt in zip(fused + apart, got, want):
        assert_same(g, wnt, t.name)
    dn = [(a * (i + 2) - b) * e for i in range(13)]  # in the data type, as compiled code rounds
    d0 = dn[0].astype(np.float64)
    np.testing.assert_allclose(got[0], np.sum(d0 * d0, -1), rtol=2e-3 if dtype == "float16" else 1e-5)
    np.testing.assert_array_equal(got[2], np.max(dn[2] + 1, -1))
    np.testing.assert_array_equal(got[7], np.argmax(dn[7], -1))
    np.testing.assert_array_equal(got[9], np.any(dn[9] > 2, -1))
    plan = f.explain().split("kernels:")[1].split("arena")[0]
    fused_kernels = [ln for ln in plan.splitlines() if "[reduce]" in ln and "+" in ln]
    assert len(fused_kernels) >= len(fused), plan


def test_generic_reductions_over_every_accumulator_count():
    """Reductions without a float32 fast path take 1, 8 or 32 accumulators by row length
    (kc::red::fold): row lengths around both limits, with tails, for integer sums and extremes,
    boolean any/all, float64 and float32 products."""
    rng = np.random.default_rng(16)
    pairs, outs, expect = [], [], []
    for n in (5, 15, 16, 100, 255, 256, 300, 1000):
        ai = rng.integers(-1000, 1000, (3, n)).astype(np.int32)
        ab = rng.random((3, n)) > 0.02
        ab[0] = True
        ab[1, -1] = False                                   # the last element decides
        af = (1 + rng.standard_normal((3, n)) * 0.01).astype(np.float64)
        xi, xb, xf = (K.placeholder((3, n), dtype=d) for d in ("int32", "bool", "float64"))
        pairs += [(xi, ai), (xb, ab), (xf, af)]
        outs += [K.sum(xi, 1), K.max(xi, 1), K.all(xb, 1), K.any(K.equal(xb, False), 1),
                 K.prod(xf, 1), K.prod(K.cast(xf, "float32"), 1)]
        expect += [ai.sum(1, dtype=np.int64).astype(np.int32), ai.max(1), ab.all(1),
                   (~ab).any(1), af.prod(1), af.astype(np.float32).astype(np.float64).prod(1)]
    got, want, _ = run(pairs, outs)
    for t, g, w, e in zip(outs, got, want, expect):
        assert_same(g, w, t.name)
        if g.dtype.kind == "f":
            np.testing.assert_allclose(g, e, rtol=1e-6 if g.dtype == np.float32 else 1e-13,
                                       err_msg=t.name)
        else:
            np.testing.assert_array_equal(g, e, err_msg=t.name)
