"""Convolution and pooling: native results against the reference interpreter, against
independent numpy computations (sliding windows, or Keras 2.3.1's own definition for the
locally connected ops) and against Keras's numpy backend where it defines the op. Each
function compiles once and runs at two batch sizes through its unknown batch dimension."""
import os

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import kcomp.backend as K
from kcomp.ir.graph import Graph
from kcomp.ir.interpret import evaluate
from util import kernel_plan, rand


@pytest.fixture(scope="module")
def knp():
    """Keras 2.3.1's numpy reference backend (importing it loads Keras, on kcomp)."""
    old = os.environ.get("KERAS_BACKEND")
    os.environ["KERAS_BACKEND"] = "kcomp.backend"
    try:
        from keras.backend import numpy_backend
    finally:
        if old is None:
            del os.environ["KERAS_BACKEND"]
        else:
            os.environ["KERAS_BACKEND"] = old
    return numpy_backend


# ---- independent numpy computations (float64, channels last inside) ---------------------------

def tf_window(n, k, s, d, padding):
    """(output extent, pad before, pad after), as TensorFlow defines them."""
    ke = (k - 1) * d + 1
    if padding == "valid":
        return -(-(n - ke + 1) // s), 0, 0
    out = -(-n // s)
    if padding == "causal":
        return out, ke - 1, 0
    total = max((out - 1) * s + ke - n, 0)
    return out, total // 2, total - total // 2


def last(x, df):
    return np.moveaxis(x, 1, -1) if df == "channels_first" else x


def first(y, df):
    return np.moveaxis(y, -1, 1) if df == "channels_first" else y


def windows(x, ks, strides, dilation, padding, fill=0.0):
    """(batch, outs..., C, ks...): every output's window, read from a padded copy."""
    geo = [tf_window(n, k, s, d, padding) for n, k, s, d in
           zip(x.shape[1:-1], ks, strides, dilation)]
    xp = np.pad(x.astype(np.float64), [(0, 0)] + [(b, a) for _, b, a in geo] + [(0, 0)],
                constant_values=fill)
    spans = [(k - 1) * d + 1 for k, d in zip(ks, dilation)]
    win = sliding_window_view(xp, spans, axis=tuple(range(1, len(ks) + 1)))
    win = win[(slice(None),) + tuple(slice(0, (o - 1) * s + 1, s) for (o, _, _), s in
                                     zip(geo, strides))]
    return win[(Ellipsis,) + tuple(slice(None, None, d) for d in dilation)]


def np_conv(x, w, strides, padding, df, dilation):
    n = w.ndim - 2
    win = windows(last(x, df), w.shape[:n], strides, dilation, padding)
    wc = np.moveaxis(w.astype(np.float64), n, 0)      # (C, ks..., O)
    return first(np.tensordot(win, wc, axes=(list(range(n + 1, 2 * n + 2)),
                                             list(range(n + 1)))), df)


def np_depthwise(x, w, strides, padding, df, dilation):
    n = w.ndim - 2
    win = windows(last(x, df), w.shape[:n], strides, dilation, padding)
    taps = "ijk"[:n]
    y = np.einsum(f"...c{taps},{taps}cm->...cm", win, w.astype(np.float64))
    return first(y.reshape(y.shape[:-2] + (y.shape[-2] * y.shape[-1],)), df)


def np_pool(x, pool, strides, padding, df, mode):
    win = windows(last(x, df), pool, strides, (1,) * len(pool), padding, fill=np.nan)
    axes = tuple(range(-len(pool), 0))
    return first(np.nanmax(win, axes) if mode == "max" else np.nanmean(win, axes), df)


def np_conv_transpose(x, w, out_spatial, strides, padding, df, dilation):
    """Zero-upsample x by the strides, pad it, and correlate with the flipped kernel."""
    n = w.ndim - 2
    xl = last(x, df).astype(np.float64)
    up = np.zeros((xl.shape[0],) + tuple((i - 1) * s + 1 for i, s in
                                          zip(xl.shape[1:-1], strides)) + xl.shape[-1:])
    up[(slice(None),) + tuple(slice(None, None, s) for s in strides)] = xl
    pads = []
    for o, i, k, s, d, u in zip(out_spatial, xl.shape[1:-1], w.shape, strides, dilation,
                                up.shape[1:-1]):
        ke = (k - 1) * d + 1
        before = 0 if padding == "valid" else max((i - 1) * s + ke - o, 0) // 2
        pads.append((ke - 1 - before, o + ke - 1 - (ke - 1 - before) - u))
    up = np.pad(up, [(0, 0)] + pads + [(0, 0)])
    flipped = np.swapaxes(w[(slice(None, None, -1),) * n], -1, -2)
    return first(last(np_conv(up, flipped, (1,) * n, "valid", "channels_last", dilation),
                      "channels_last"), df)


def keras_local_conv(x, kernel, kernel_size, strides, out_spatial, df):
    """Keras 2.3.1's tensorflow_backend local_conv1d/local_conv2d, step by step in numpy."""
    feature_dim, xs = kernel.shape[1], []
    for pos in np.ndindex(*out_spatial):
        sl = tuple(slice(p * s, p * s + k) for p, s, k in zip(pos, strides, kernel_size))
        patch = x[(slice(None), slice(None)) + sl] if df == "channels_first" else \
            x[(slice(None),) + sl + (slice(None),)]
        xs.append(patch.reshape(1, -1, feature_dim))
    out = np.matmul(np.concatenate(xs, 0).astype(np.float64), kernel.astype(np.float64))
    out = out.reshape(tuple(out_spatial) + (-1, kernel.shape[-1]))
    n = len(out_spatial)
    return np.moveaxis(out, n, 0) if df == "channels_last" else \
        np.moveaxis(np.moveaxis(out, n, 0), -1, 1)


# ---- running and comparing ----------------------------------------------------------------------

class Case:
    """One output: its inputs (placeholder shapes with a None batch), the expected float64
    result and its error bound from the arrays, and Keras's numpy backend result if any."""

    def __init__(self, what, shapes, build, expect, terms, knp=None):
        self.what, self.shapes, self.build, self.expect, self.terms, self.knp = \
            what, shapes, build, expect, terms, knp
        self.inputs = self.output = None

    def make(self, dtype):
        self.inputs = [K.placeholder(s, dtype=dtype) for s in self.shapes]
        self.output = self.build(*self.inputs)
        return self.output


def check(got, want, exact, bound, terms, dtype, what):
    """|error| <= 2 * terms * eps * (the result computed on absolute values): the classic
    bound of a sum of `terms` products, against the reference and the float64 computation."""
    assert got.dtype == np.dtype(dtype), f"{what}: dtype {got.dtype}"
    assert got.shape == exact.shape, f"{what}: shape {got.shape} vs {exact.shape}"
    eps = np.finfo(dtype).eps
    for ref, name in ((want, "reference"), (exact, "numpy")):
        err = np.abs(got.astype(np.float64) - np.asarray(ref, np.float64))
        limit = 2 * terms * eps * bound + np.finfo(dtype).tiny
        assert np.all(err <= limit), f"{what} vs {name}: error {err.max()} > {limit.max()}"


def run_cases(cases, dtype, batches=(3, 1), knp=None):
    rng = np.random.default_rng(0)
    outs = [c.make(dtype) for c in cases]
    phs = [p for c in cases for p in c.inputs]
    f = K.function(phs, outs)
    for batch in batches:
        arrays = [[rand(rng, tuple(batch if d is None else d for d in s), dtype)
                   for s in c.shapes] for c in cases]
        flat = [a for arrs in arrays for a in arrs]
        got = f(flat)
        want, _ = evaluate(Graph(tuple(phs), tuple(outs), ()), flat)
        for c, g, w, arrs in zip(cases, got, want, arrays):
            exact = c.expect(*arrs)
            bound = c.expect(*[np.abs(a) for a in arrs])
            what = f"{c.what} [{dtype}, batch {batch}]"
            check(g, w, exact, bound, c.terms, dtype, what)
            if c.knp is not None and knp is not None:
                ref = c.knp(knp, *[a.astype(np.float64) for a in arrs])
                check(g, w, ref, bound, c.terms, dtype, what + " vs Keras numpy_backend")
    return f


# ---- forward convolutions ----------------------------------------------------------------------

def conv_case(n, sp, cin, ks, cout, strides=1, padding="valid", df="channels_last", dil=1):
    strides = (strides,) * n if isinstance(strides, int) else strides
    dil = (dil,) * n if isinstance(dil, int) else dil
    x_shape = (None, cin) + sp if df == "channels_first" else (None,) + sp + (cin,)
    fn = {1: K.conv1d, 2: K.conv2d, 3: K.conv3d}[n]
    kw = dict(strides=strides[0] if n == 1 else strides, padding=padding, data_format=df,
              dilation_rate=dil[0] if n == 1 else dil)
    # Keras's numpy backend: stride 1 and a centred window ('valid', or an odd span)
    spans_odd = all(((k - 1) * d) % 2 == 0 for k, d in zip(ks, dil))
    knp = None
    if all(s == 1 for s in strides) and (padding == "valid" or (padding == "same" and spans_odd)):
        knp = lambda m, x, w: m.conv(x, w, padding=padding, data_format=df,  # noqa: E731
                                     dilation_rate=dil)
    return Case(f"conv{n}d x{x_shape} k{ks} s{strides} d{dil} {padding} {df}",
                [x_shape, ks + (cin, cout)], lambda x, w: fn(x, w, **kw),
                lambda x, w: np_conv(x, w, strides, padding, df, dil),
                cin * int(np.prod(ks)), knp)


def depthwise_case(sp, cin, ks, mult, strides=(1, 1), padding="valid", df="channels_last",
                   dil=(1, 1), pointwise=None):
    x_shape = (None, cin) + sp if df == "channels_first" else (None,) + sp + (cin,)
    n = len(sp)
    knp = None
    if all(s == 1 for s in strides) and (padding == "valid" or all(k % 2 for k in ks)):
        knp = (lambda m, x, w: m.depthwise_conv(x, w, padding=padding, data_format=df,  # noqa
                                                dilation_rate=dil)) if pointwise is None else \
            (lambda m, x, w, p: m.separable_conv(x, w, p, padding=padding, data_format=df))
    if pointwise is None:
        return Case(f"depthwise_conv2d x{x_shape} k{ks}x{mult} s{strides} d{dil} {padding} {df}",
                    [x_shape, ks + (cin, mult)],
                    lambda x, w: K.depthwise_conv2d(x, w, strides, padding, df, dil),
                    lambda x, w: np_depthwise(x, w, strides, padding, df, dil),
                    int(np.prod(ks)), knp)
    sep = K.separable_conv1d if n == 1 else K.separable_conv2d
    args = (strides[0], padding, df, dil[0]) if n == 1 else (strides, padding, df, dil)
    return Case(f"separable_conv{n}d x{x_shape} k{ks}x{mult}->{pointwise} s{strides} {padding} "
                f"{df}", [x_shape, ks + (cin, mult), (1,) * n + (cin * mult, pointwise)],
                lambda x, w, p: sep(x, w, p, *args),
                lambda x, w, p: np_conv(np_depthwise(x, w, strides, padding, df, dil), p,
                                        (1,) * n, "valid", df, (1,) * n),
                int(np.prod(ks)) + cin * mult, knp if dil == (1,) * n else None)


FORWARD = [
    conv_case(1, (9,), 3, (3,), 4),
    conv_case(1, (9,), 3, (3,), 4, padding="same", strides=2),
    conv_case(1, (10,), 2, (3,), 5, padding="causal", dil=2),
    conv_case(1, (8,), 3, (2,), 4, padding="same", df="channels_first"),
    conv_case(1, (7,), 1, (1,), 1),
    conv_case(2, (7, 6), 3, (3, 3), 4, padding="same"),
    conv_case(2, (7, 6), 3, (3, 3), 4, padding="same", df="channels_first"),
    conv_case(2, (9, 8), 2, (3, 2), 3, strides=(2, 3), padding="same"),
    conv_case(2, (9, 8), 2, (3, 2), 3, strides=(2, 3), padding="valid", df="channels_first"),
    conv_case(2, (9, 9), 3, (3, 3), 2, padding="same", dil=(2, 1)),
    conv_case(2, (9, 9), 3, (2, 3), 2, padding="valid", dil=2, df="channels_first"),
    conv_case(2, (4, 4), 2, (4, 4), 3, padding="same"),
    conv_case(2, (1, 1), 1, (1, 1), 1),
    conv_case(2, (5, 3), 6, (1, 1), 7),                                # a plain GEMM
    conv_case(2, (5, 3), 6, (1, 1), 7, df="channels_first"),
    conv_case(2, (5, 4), 3, (1, 1), 2, strides=2, padding="same"),     # 1x1 that gathers
    conv_case(3, (4, 5, 3), 2, (2, 3, 2), 3, padding="same"),
    conv_case(3, (4, 5, 3), 2, (2, 3, 1), 3, strides=(1, 2, 2), df="channels_first"),
    depthwise_case((7, 6), 3, (3, 3), 1, padding="same"),
    depthwise_case((7, 6), 3, (3, 3), 2, padding="same", df="channels_first"),
    depthwise_case((8, 7), 2, (3, 2), 3, strides=(2, 2), padding="same"),
    depthwise_case((9, 9), 4, (3, 3), 1, strides=(2, 1), padding="valid", df="channels_first",
                   dil=(1, 2)),
    depthwise_case((6, 5), 3, (3, 3), 2, padding="same", pointwise=4),
    depthwise_case((6, 5), 3, (3, 3), 1, strides=(2, 2), padding="valid", pointwise=2,
                   df="channels_first"),
    depthwise_case((9,), 2, (3,), 2, padding="same", pointwise=3),
    depthwise_case((9,), 2, (3,), 1, strides=(2,), padding="valid", pointwise=3,
                   df="channels_first", dil=(2,)),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_convolutions(dtype, knp):
    run_cases(FORWARD, dtype, knp=knp)


# ---- pooling ------------------------------------------------------------------------------------

def pool_case(sp, c, pool, strides, padding, df, mode):
    x_shape = (None, c) + sp if df == "channels_first" else (None,) + sp + (c,)
    fn = K.pool2d if len(sp) == 2 else K.pool3d
    knp = None
    if padding == "valid" or (all(s == 1 for s in strides) and all(p % 2 for p in pool)):
        knp = lambda m, x: m.pool(x, pool, strides, padding, df, mode)  # noqa: E731
    return Case(f"pool x{x_shape} p{pool} s{strides} {padding} {df} {mode}", [x_shape],
                lambda x: fn(x, pool, strides, padding, df, mode),
                lambda x: np_pool(x, pool, strides, padding, df, mode),
                int(np.prod(pool)), knp)


POOLS = [pool_case(sp, c, p, s, pad, df, mode)
         for sp, c, p, s in [((7, 6), 3, (2, 2), (2, 2)), ((7, 6), 2, (3, 3), (1, 1)),
                             ((9, 5), 1, (3, 2), (2, 3)), ((1, 1), 2, (1, 1), (1, 1)),
                             ((5, 4, 3), 2, (2, 2, 2), (2, 2, 1)),
                             ((5, 4, 3), 3, (3, 1, 3), (1, 1, 1))]
         for pad in ("valid", "same") for df in ("channels_last", "channels_first")
         for mode in ("max", "avg")] + \
    [pool_case(sp, 16, p, (1,) * len(sp), "same", df, mode)  # a vector of channels
     # pixels of one tap per row or column: GCC 12 miscompiled their sums (conv_window.j2)
     for sp, p in [((7, 1), (3, 2)), ((1, 7), (2, 3)), ((5, 1, 1), (3, 2, 2))]
     for df in ("channels_last", "channels_first") for mode in ("max", "avg")]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_pooling(dtype, knp):
    run_cases(POOLS, dtype, knp=knp)


# ---- transposed convolutions -------------------------------------------------------------------

def transpose_case(sp, cin, ks, cout, out_sp, strides, padding, df, dil=None, batch_of=None):
    n = len(sp)
    x_shape = (None, cin) + sp if df == "channels_first" else (None,) + sp + (cin,)
    dil = dil or (1,) * n

    def build(x, w):
        batch = K.shape(x)[0] if batch_of == "shape" else None
        shape = (batch, cout) + out_sp if df == "channels_first" else (batch,) + out_sp + (cout,)
        if n == 2:
            return K.conv2d_transpose(x, w, shape, strides, padding, df, dil)
        return K.conv3d_transpose(x, w, shape, strides, padding, df)

    knp = None
    if all(s == 1 for s in strides) and padding == "same" and all(k % 2 for k in ks):
        knp = lambda m, x, w: m.conv_transpose(  # noqa: E731
            x, w, None, padding=padding, data_format=df, dilation_rate=dil)
    return Case(f"conv{n}d_transpose x{x_shape} k{ks} -> {out_sp} s{strides} d{dil} {padding} "
                f"{df}", [x_shape, ks + (cout, cin)], build,
                lambda x, w: np_conv_transpose(x, w, out_sp, strides, padding, df, dil),
                cin * int(np.prod(ks)), knp)


TRANSPOSED = [
    transpose_case((4, 3), 3, (3, 3), 2, (8, 6), (2, 2), "same", "channels_last"),
    transpose_case((4, 3), 3, (3, 3), 2, (8, 6), (2, 2), "same", "channels_first",
                   batch_of="shape"),
    transpose_case((4, 3), 2, (3, 2), 3, (9, 8), (2, 3), "valid", "channels_last"),
    transpose_case((4, 3), 2, (3, 2), 3, (10, 9), (2, 3), "valid", "channels_first"),  # larger
    transpose_case((5, 5), 2, (3, 3), 2, (5, 5), (1, 1), "same", "channels_last"),
    transpose_case((5, 5), 2, (3, 3), 2, (9, 9), (1, 1), "valid", "channels_first", dil=(2, 2)),
    transpose_case((5, 4), 2, (3, 3), 2, (5, 4), (1, 1), "same", "channels_last", dil=(2, 2)),
    transpose_case((3, 3), 1, (4, 4), 1, (9, 9), (3, 3), "same", "channels_last"),
    transpose_case((2, 3, 2), 2, (2, 3, 3), 3, (4, 6, 4), (2, 2, 2), "same", "channels_last"),
    transpose_case((2, 3, 2), 2, (3, 2, 2), 2, (5, 6, 3), (2, 2, 1), "valid", "channels_first"),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_transposed_convolutions(dtype, knp):
    run_cases(TRANSPOSED, dtype, knp=knp)


# ---- locally connected --------------------------------------------------------------------------

def local_case(sp, cin, ks, strides, cout, df, out_sp=None):
    n = len(sp)
    out_sp = out_sp or tuple((s - k) // st + 1 for s, k, st in zip(sp, ks, strides))
    layout = "channels_last" if n == 1 else df   # Keras reads (batch, steps, C) in 1-d
    x_shape = (None, cin) + sp if layout == "channels_first" else (None,) + sp + (cin,)
    w_shape = (int(np.prod(out_sp)), cin * int(np.prod(ks)), cout)
    if n == 1:
        build = lambda x, w: K.local_conv1d(x, w, ks, strides, df)  # noqa: E731
    else:
        build = lambda x, w: K.local_conv2d(x, w, ks, strides, out_sp, df)  # noqa: E731
    return Case(f"local_conv{n}d x{x_shape} k{ks} s{strides} -> {out_sp} {df}",
                [x_shape, w_shape], build,
                lambda x, w: keras_local_conv(x, w, ks, strides, out_sp, layout),
                w_shape[1])


LOCAL = [local_case((9,), 3, (3,), (2,), 4, "channels_last"),
         local_case((5,), 1, (1,), (1,), 1, "channels_first"),
         local_case((6, 5), 2, (3, 2), (1, 2), 3, "channels_last"),
         local_case((6, 5), 2, (3, 2), (2, 1), 3, "channels_first"),
         local_case((7, 7), 3, (3, 3), (2, 2), 2, "channels_last", out_sp=(2, 3))]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_locally_connected(dtype):
    run_cases(LOCAL, dtype)


# ---- float16, unknown spatial extents, a larger case -------------------------------------------

def test_float16_computes_in_float32():
    rng = np.random.default_rng(5)
    x, w = K.placeholder((None, 6, 5, 3), dtype="float16"), K.placeholder((3, 3, 3, 4),
                                                                             dtype="float16")
    outs = [K.conv2d(x, w, padding="same"), K.pool2d(x, (2, 2), (2, 2), pool_mode="avg"),
            K.depthwise_conv2d(x, w[..., :1], padding="same")]
    a, b = rand(rng, (2, 6, 5, 3), "float16"), rand(rng, (3, 3, 3, 4), "float16")
    got = K.function([x, w], outs)([a, b])
    want = [np_conv(a, b, (1, 1), "same", "channels_last", (1, 1)),
            np_pool(a, (2, 2), (2, 2), "valid", "channels_last", "avg"),
            np_depthwise(a, b[..., :1], (1, 1), "same", "channels_last", (1, 1))]
    for g, e in zip(got, want):
        assert g.dtype == np.float16 and g.shape == e.shape
        # float32 arithmetic, one rounding to float16 at the end
        np.testing.assert_allclose(g.astype(np.float64), e, rtol=1e-3, atol=2e-3)


def test_unknown_spatial_extents():
    """Stride 1 with 'same' or 'causal' padding keeps a run-time extent; batch 0 works."""
    rng = np.random.default_rng(6)
    x, w = K.placeholder((None, None, 3)), K.placeholder((3, 3, 4))
    xi = K.placeholder((None, None, None, 2))
    outs = [K.conv1d(x, w, padding="same"), K.conv1d(x, w, padding="causal", dilation_rate=2),
            K.pool2d(xi, (3, 3), padding="same", pool_mode="avg"),
            K.depthwise_conv2d(xi, K.ones((3, 3, 2, 1)), padding="same")]
    assert [K.int_shape(o) for o in outs] == [(None, None, 4)] * 2 + [(None, None, None, 2)] * 2
    f = K.function([x, w, xi], outs)
    for b, steps, hw in ((2, 11, (5, 7)), (1, 1, (1, 1)), (0, 4, (3, 2))):
        a, k = rand(rng, (b, steps, 3), "float32"), rand(rng, (3, 3, 4), "float32")
        c = rand(rng, (b,) + hw + (2,), "float32")
        got = f([a, k, c])
        want = [np_conv(a, k, (1,), "same", "channels_last", (1,)),
                np_conv(a, k, (1,), "causal", "channels_last", (2,)),
                np_pool(c, (3, 3), (1, 1), "same", "channels_last", "avg"),
                np_depthwise(c, np.ones((3, 3, 2, 1)), (1, 1), "same", "channels_last", (1, 1))]
        for g, e in zip(got, want):
            assert g.shape == e.shape
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)


def test_larger_multithreaded():
    """Many im2col tiles over both threads, pooling and transposed rows in parallel."""
    cases = [conv_case(2, (32, 32), 16, (3, 3), 24, padding="same"),
             conv_case(2, (33, 31), 16, (3, 3), 8, strides=2, padding="same",
                       df="channels_first"),
             conv_case(1, (300,), 32, (5,), 16, padding="causal", dil=3),
             depthwise_case((32, 32), 16, (3, 3), 1, padding="same"),
             depthwise_case((32, 32), 16, (3, 3), 1, padding="same", df="channels_first"),
             pool_case((32, 32), 16, (3, 3), (2, 2), "same", "channels_last", "avg"),
             pool_case((32, 32), 16, (2, 2), (2, 2), "valid", "channels_first", "max"),
             transpose_case((16, 16), 16, (3, 3), 8, (32, 32), (2, 2), "same", "channels_last"),
             transpose_case((16, 16), 16, (3, 3), 8, (32, 32), (2, 2), "same",
                            "channels_first")]
    run_cases(cases, "float32", batches=(5,))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_direct_kernel_tiles(dtype):
    """channels_last convolutions run the direct kernel: output channels that fill no whole
    vector or several panels, one input channel, tiles cut short by the row's end, windows
    crossing the padding on both sides with strides and dilation along the row, rows that lie
    in the padding, and few rows split into blocks for the threads."""
    cases = [conv_case(2, (5, 13), 3, (3, 3), 7, padding="same"),
             conv_case(2, (6, 17), 1, (3, 5), 20, strides=(1, 2), padding="same"),
             conv_case(2, (4, 19), 4, (2, 3), 70, padding="same", dil=(1, 3)),
             conv_case(2, (3, 9), 5, (5, 2), 40, strides=(2, 3), padding="same"),
             conv_case(1, (150,), 6, (4,), 33, padding="causal", dil=2),
             conv_case(1, (61,), 2, (7,), 130, strides=3, padding="same"),
             conv_case(3, (3, 4, 14), 3, (3, 2, 3), 17, strides=(2, 1, 2), padding="same")]
    run_cases(cases, dtype, batches=(2, 1))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_few_output_channels_vectorize_over_pixels(dtype):
    """channels_last convolutions with at most 4 output channels and stride 1 along the row run
    conv_rows.j2 (vectors of output pixels over transposed input rows kept from row to row):
    rows shorter and longer than a vector, ragged channel tiles of the transposes, strides
    and dilation across rows, dilation along them, causal padding, 1 to 3 spatial dims, a
    batch boundary inside a thread's rows, 1x1 kernels (not the GEMM: 3 columns); a row stride
    of 3 takes the direct kernel."""
    cases = [conv_case(2, (5, 13), 3, (3, 3), 1, padding="same"),
             conv_case(2, (6, 37), 5, (3, 5), 2, strides=(2, 1), padding="same"),
             conv_case(2, (4, 19), 17, (2, 3), 3, padding="same", dil=(2, 3)),
             conv_case(2, (8, 40), 16, (3, 3), 4),
             conv_case(1, (150,), 6, (4,), 1, padding="causal", dil=2),
             conv_case(3, (3, 4, 14), 3, (3, 2, 3), 2, strides=(2, 1, 1), padding="same"),
             conv_case(2, (3, 9), 5, (5, 2), 2, strides=(2, 3), padding="same"),
             conv_case(2, (6, 21), 9, (1, 1), 3),
             epilogue_case(conv_case(2, (9, 21), 4, (3, 3), 1, padding="same"), 1, "relu")]
    run_cases(cases, dtype, batches=(3, 1))


def epilogue_case(base, cout, act, df="channels_last"):
    """base's convolution + bias, then act (relu: a layer's; mix: relu(z) + z * 0.5, z used
    twice)."""
    acts = {"relu": (K.relu, lambda z: np.maximum(z, 0)),
            "mix": (lambda z: K.relu(z) + z * 0.5, lambda z: np.maximum(z, 0) + z * 0.5)}
    fk, fn = acts[act]
    return Case(f"{base.what} + bias, {act}", base.shapes + [(cout,)],
                lambda x, w, b: fk(K.bias_add(base.build(x, w), b, data_format=df)),
                lambda x, w, b: fn(first(last(base.expect(x, w), df) + b, df)),
                base.terms + 1)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_conv_epilogues(dtype):
    """Bias and activation after a channels_last convolution run inside its kernel, on each
    block of output pixels while it is in cache (the direct kernel at 1-3 spatial dims, several
    panels of output channels, strides; 4 output channels' rows of pixels; a 1x1
    convolution's GEMM; depthwise rows, with a
    channel multiplier too), and give the unfused values.
    channels_first convolutions are not fused (the CPU runs them between transposes)."""
    cases = [epilogue_case(conv_case(2, (7, 6), 3, (3, 3), 4, padding="same"), 4, "relu"),
             epilogue_case(conv_case(1, (61,), 2, (7,), 130, strides=3, padding="same"), 130,
                           "relu"),
             epilogue_case(conv_case(3, (3, 4, 14), 3, (3, 2, 3), 17, strides=(2, 1, 2),
                                     padding="same"), 17, "mix"),
             epilogue_case(conv_case(2, (5, 3), 6, (1, 1), 7), 7, "relu"),
             epilogue_case(conv_case(2, (30, 30), 16, (3, 3), 32, padding="same"), 32, "mix"),
             epilogue_case(depthwise_case((9, 7), 5, (3, 3), 1, padding="same"), 5, "relu"),
             epilogue_case(depthwise_case((8, 7), 2, (3, 2), 3, strides=(2, 2), padding="same"),
                           6, "mix"),
             epilogue_case(conv_case(2, (7, 6), 3, (3, 3), 4, padding="same",
                                     df="channels_first"), 4, "relu", df="channels_first")]
    f = run_cases(cases, dtype, batches=(5, 1))
    plan = kernel_plan(f)
    assert plan.count("[conv_direct] conv+add+") == 3 and plan.count("[gemm] conv+add+") == 1 \
        and plan.count("[conv_rows] conv+add+") == 1 \
        and plan.count("[conv_window] depthwise_conv+add+") == 2, plan


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_depthwise_rows_at_every_alignment(dtype):
    """kc::conv::depthwise_row: the input at every element offset from a 64-byte boundary
    (vectors of channels shifted onto aligned loads, with rotated weights at the pixel
    boundary), 'same' and 'valid', dilation, rows short of a block of pixels, channels not a
    whole vector (overlapping last vector; fewer than a vector), stride 2."""
    rng = np.random.default_rng(11)
    cases = [((6, 19, 32), (3, 3), 1, "same", (1, 1)), ((5, 9, 48), (3, 5), 1, "valid", (1, 1)),
             ((7, 23, 16), (3, 3), 1, "same", (2, 3)), ((4, 30, 40), (2, 3), 1, "same", (1, 1)),
             ((5, 11, 5), (3, 3), 1, "same", (1, 1)), ((6, 21, 32), (3, 3), 2, "same", (1, 1))]
    for (h, w_, c), ks, st, pad, dil in cases:
        x = K.placeholder((2, h, w_, c), dtype=dtype)
        kern = rng.standard_normal(ks + (c, 1)).astype(dtype)
        f = K.function([x], [K.depthwise_conv2d(x, K.constant(kern, dtype=dtype), (st, st), pad,
                                                "channels_last", dil)])
        n = 2 * h * w_ * c
        buf = rng.standard_normal(n + 16).astype(dtype)
        for off in range(16):
            a = buf[off:off + n].reshape(2, h, w_, c)
            want = np_depthwise(a, kern, (st, st), pad, "channels_last", dil)
            np.testing.assert_allclose(f([a])[0], want, rtol=1e-5, atol=1e-5,
                                       err_msg=f"{(h, w_, c)} {ks} offset {off}")


def test_channels_first_runs_channels_last_on_the_cpu():
    """kcomp/ir/passes/layout.py: a channels_first convolution compiles to the channels_last
    one between transposes (a 1x1 stride-1 one stays a GEMM on the input as it lies); between
    two convolutions in a row the transposes cancel."""
    rng = np.random.default_rng(7)
    x = K.placeholder((None, 3, 9, 8))
    w1, w2, w3 = (rng.standard_normal(s).astype(np.float32)
                  for s in ((3, 3, 3, 4), (2, 3, 4, 5), (1, 1, 5, 2)))
    h = K.conv2d(x, K.constant(w1), padding="same", data_format="channels_first")
    y = K.conv2d(h, K.constant(w2), strides=(2, 1), data_format="channels_first")
    z = K.conv2d(y, K.constant(w3), data_format="channels_first")
    f = K.function([x], [z])
    graph = f.explain().split("-- kernel plan --")[0]
    assert graph.count(" = conv(") == 3 and graph.count("data_format=channels_last") == 2
    assert graph.count(" = transpose(") == 2, graph
    a = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
    want = a.astype(np.float64)
    for w, st, pad in ((w1, (1, 1), "same"), (w2, (2, 1), "valid"), (w3, (1, 1), "valid")):
        want = np_conv(want, w, st, pad, "channels_first", (1, 1))
    np.testing.assert_allclose(f([a])[0], want, rtol=1e-4, atol=1e-4)


def test_max_pooling_propagates_nan():
    """Like numpy's maximum (the reference): a NaN in a window gives NaN."""
    x, xc = K.placeholder((None, 4, 4, 1)), K.placeholder((None, 1, 4, 5))
    a, c = np.zeros((1, 4, 4, 1), np.float32), np.zeros((1, 1, 4, 5), np.float32)
    a[0, 1, 2, 0] = c[0, 0, 3, 0] = np.nan
    f = K.function([x, xc], [K.pool2d(x, (2, 2), (2, 2)),
                             K.pool2d(xc, (3, 3), (1, 2), "same", "channels_first")])
    got = f([a, c])
    np.testing.assert_array_equal(np.isnan(got[0][0, ..., 0]), [[False, True], [False, False]])
    np.testing.assert_array_equal(np.isnan(got[1][0, 0]), [[False] * 3, [False] * 3,
                                                           [True, False, False],
                                                           [True, False, False]])


# ---- arguments and errors ------------------------------------------------------------------------

def test_default_data_format_follows_image_data_format():
    old = K.image_data_format()
    try:
        K.set_image_data_format("channels_first")
        y = K.conv2d(K.placeholder((None, 3, 8, 6)), K.placeholder((3, 3, 3, 5)))
        p = K.pool2d(K.placeholder((None, 3, 8, 6)), (2, 2), (2, 2))
        assert K.int_shape(y) == (None, 5, 6, 4) and K.int_shape(p) == (None, 3, 4, 3)
    finally:
        K.set_image_data_format(old)


def test_bad_arguments_fail_at_graph_build_time():
    x4, x3 = K.placeholder((None, 8, 8, 3)), K.placeholder((None, 8, 3))
    with pytest.raises(ValueError, match=r"conv2d: input channels differ from the kernel's: 3 "
                                         r"vs 4 \(operand shapes: \(None, 8, 8, 3\), "
                                         r"\(3, 3, 4, 2\)\)"):
        K.conv2d(x4, K.placeholder((3, 3, 4, 2)))
    with pytest.raises(ValueError, match=r"conv2d: needs a rank-4 input"):
        K.conv2d(x3, K.placeholder((3, 3, 3, 2)))
    with pytest.raises(ValueError, match=r"conv2d: a window of 9 does not fit in 8"):
        K.conv2d(x4, K.placeholder((9, 1, 3, 2)))
    with pytest.raises(ValueError, match="Invalid padding: full"):
        K.conv2d(x4, K.placeholder((3, 3, 3, 2)), padding="full")
    with pytest.raises(ValueError, match="Invalid padding: causal"):
        K.conv2d(x4, K.placeholder((3, 3, 3, 2)), padding="causal")
    with pytest.raises(ValueError, match="causal padding in `conv1d`"):
        K.conv1d(x3, K.placeholder((3, 3, 2)), padding="causal", data_format="channels_first")
    with pytest.raises(ValueError, match="conv1d: strides must be a positive integer"):
        K.conv1d(x3, K.placeholder((3, 3, 2)), strides=0)
    with pytest.raises(ValueError, match="data_format"):
        K.conv1d(x3, K.placeholder((3, 3, 2)), data_format="NHWC")
    with pytest.raises(ValueError, match="Invalid pool_mode: min"):
        K.pool2d(x4, (2, 2), pool_mode="min")
    with pytest.raises(ValueError, match="pool2d: spatial dimensions must be known"):
        K.pool2d(K.placeholder((None, None, 8, 3)), (2, 2), (2, 2))
    with pytest.raises(ValueError, match=r"conv2d_transpose: output shape \(None, 9, 9, 2\) "
                                         r"does not give the input's spatial shape \(8, 8\)"):
        K.conv2d_transpose(x4, K.placeholder((3, 3, 2, 3)), (None, 9, 9, 2), padding="same")
    with pytest.raises(ValueError, match="conv2d_transpose: output channels 5 differ"):
        K.conv2d_transpose(x4, K.placeholder((3, 3, 2, 3)), (None, 8, 8, 5), padding="same")
    with pytest.raises(ValueError, match="conv2d_transpose: a dilation_rate other than 1"):
        K.conv2d_transpose(x4, K.placeholder((3, 3, 2, 3)), (None, 16, 16, 2), (2, 2), "same",
                           dilation_rate=(2, 2))
    with pytest.raises(ValueError, match="local_conv2d: 4 windows of 3 with stride 2 do not fit"):
        K.local_conv2d(x4, K.placeholder((12, 27, 2)), (3, 3), (2, 2), (4, 3))
    with pytest.raises(ValueError, match="depthwise_conv2d: needs a kernel of static shape"):
        K.depthwise_conv2d(x4, K.placeholder((3, 3, 3, None)))


def test_run_time_channel_check():
    x, w = K.placeholder((None, 5, None)), K.placeholder((3, 2, 4))
    y = K.conv1d(x, w)
    assert K.int_shape(y) == (None, 3, 4)
    f = K.function([x, w], [y])
    with pytest.raises(ValueError, match="conv1d: input channels differ"):
        f([np.ones((1, 5, 3), np.float32), np.ones((3, 2, 4), np.float32)])
