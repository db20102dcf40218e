"""Gradients of convolutions and pooling: every rule against central finite differences
(tests/gradcheck.py), the new gradient ops (conv_filter_grad, depthwise_input_grad,
depthwise_filter_grad, pool_grad) native against the reference interpreter and against an
independent numpy check (the adjoint identity <f(x, w), g> = <x, df/dx* g> = <w, df/dw* g> with
the forward computed by test_conv's sliding-window numpy), max pooling's routing of ties and
NaN as TensorFlow does, and bad operands. Shapes are small: several cases share one function."""
import numpy as np
import pytest

import kcomp.backend as K
from gradcheck import check_gradients
from kcomp.ir.registry import apply1
from test_conv import np_conv, np_depthwise, np_pool
from util import assert_same, rand, run


def R(rng, *shape):
    return rng.standard_normal(shape)


def layout(df, b, c, *sp):
    return (b, c) + sp if df == "channels_first" else (b,) + sp + (c,)


# ---- gradient rules against finite differences --------------------------------------------------

def test_conv_gradients():
    rng = np.random.default_rng(0)
    cases = [  # (fn, x shape, kernel shape, keyword arguments)
        (K.conv1d, (2, 7, 2), (3, 2, 3), dict(strides=2, padding="valid")),
        (K.conv1d, (1, 6, 2), (3, 2, 2), dict(padding="causal", dilation_rate=2)),
        (K.conv1d, (2, 3, 5), (2, 3, 2), dict(padding="same", data_format="channels_first")),
        (K.conv2d, (2, 4, 5, 3), (3, 3, 3, 2), dict(padding="same")),             # flipped conv
        (K.conv2d, (1, 2, 5, 4), (3, 2, 2, 3), dict(strides=(2, 2), padding="same",
                                                   data_format="channels_first")),  # overhang
        (K.conv2d, (1, 7, 6, 2), (2, 2, 2, 2), dict(strides=(2, 3), padding="same",
                                                   dilation_rate=(2, 2))),
        (K.conv2d, (1, 6, 5, 2), (2, 2, 2, 2), dict(padding="valid", dilation_rate=(2, 1))),
        (K.conv2d, (1, 4, 3, 2), (2, 2, 2, 3), dict(padding="same")),             # even kernel
        (K.conv2d, (2, 3, 2, 3), (1, 1, 3, 2), dict()),                            # pointwise
        (K.conv2d, (1, 1, 1, 2), (3, 3, 2, 2), dict(padding="same")),             # size 1
        (K.conv2d, (1, 5, 4, 2), (1, 1, 2, 2), dict(strides=(2, 2), padding="same")),
        (K.conv3d, (1, 3, 4, 3, 2), (2, 3, 2, 2, 2), dict(strides=(1, 2, 1), padding="same")),
        (K.conv3d, (1, 2, 3, 3, 2), (2, 2, 1, 2, 1), dict(padding="valid",
                                                         data_format="channels_first")),
    ]
    arrays = [R(rng, *s) for _, xs, ws, _ in cases for s in (xs, ws)]

    def build(*t):
        return [fn(t[2 * i], t[2 * i + 1], **kw) for i, (fn, _, _, kw) in enumerate(cases)]
    check_gradients(build, arrays)


def test_conv_gradients_run_time_extents():
    """Stride 1 with 'same' or 'causal' keeps a run-time length: the input gradient is a conv
    of the flipped gradient; an unknown batch too."""
    rng = np.random.default_rng(1)
    arrays = [R(rng, 2, 6, 2), R(rng, 2, 2, 3), R(rng, 3, 2, 2), R(rng, 1, 5, 4, 2)]
    shapes = [(None, None, 2), (2, 2, 3), (3, 2, 2), (None, None, None, 2)]
    check_gradients(lambda x, w, v, y: [K.conv1d(x, w, padding="same"),
                                        K.conv1d(x, v, padding="causal", dilation_rate=2),
                                        K.pool2d(y, (2, 3), padding="same", pool_mode="avg"),
                                        K.depthwise_conv2d(y, K.reshape(v, (3, 2, 2, 1)),
                                                           padding="same")],
                    arrays, shapes=shapes)


def test_conv_transpose_gradients():
    rng = np.random.default_rng(2)
    cases = [((2, 3, 2, 3), (3, 3, 2, 3), (2, 6, 4, 2), (2, 2), "same", "channels_last", 1),
             ((1, 3, 3, 2), (3, 2, 2, 3), (1, 2, 8, 7), (2, 3), "valid", "channels_first", 1),
             ((1, 4, 4, 2), (3, 3, 2, 2), (1, 4, 4, 2), (1, 1), "same", "channels_last", 2),
             ((1, 2, 3, 2, 2), (2, 2, 2, 3, 2), (1, 4, 6, 2, 3), (2, 2, 1), "same",
              "channels_last", 1)]
    arrays = [R(rng, *s) for xs, ws, *_ in cases for s in (xs, ws)]

    def build(*t):
        out = []
        for i, (_, _, shape, st, pad, df, dil) in enumerate(cases):
            x, w = t[2 * i], t[2 * i + 1]
            if len(shape) == 4:
                out.append(K.conv2d_transpose(x, w, shape, st, pad, df, (dil, dil)))
            else:
                out.append(K.conv3d_transpose(x, w, shape, st, pad, df))
        return out
    check_gradients(build, arrays)


def test_depthwise_and_separable_gradients():
    rng = np.random.default_rng(3)
    arrays = [R(rng, 2, 5, 4, 3), R(rng, 3, 3, 3, 2),        # same, stride 2: overhang
              R(rng, 1, 2, 6, 5), R(rng, 2, 3, 2, 1),        # channels_first, dilation
              R(rng, 1, 4, 3, 2), R(rng, 3, 3, 2, 2), R(rng, 1, 1, 4, 3),   # separable 2d
              R(rng, 2, 7, 2), R(rng, 3, 2, 1), R(rng, 1, 2, 3),            # separable 1d
              R(rng, 2, 7, 1, 16), R(rng, 3, 2, 16, 1)]  # one column (conv_window_grad.j2)
    check_gradients(
        lambda x, w, y, v, s, sd, sp, t, td, tp, z, u: [
            K.depthwise_conv2d(x, w, (2, 2), "same"),
            K.depthwise_conv2d(z, u, padding="same"),
            K.depthwise_conv2d(y, v, (1, 1), "valid", "channels_first", (2, 1)),
            K.separable_conv2d(s, sd, sp, padding="same"),
            K.separable_conv1d(t, td, tp, strides=2, padding="valid")],
        arrays)


POOLS = [((2, 5, 4, 3), (3, 3), (2, 2), "same", "channels_last"),
         ((1, 2, 5, 4), (2, 2), (2, 1), "valid", "channels_first"),
         ((1, 3, 3, 1), (3, 3), (3, 3), "valid", "channels_last"),
         ((1, 3, 4, 3, 2), (2, 2, 2), (1, 2, 2), "same", "channels_last"),
         ((1, 2, 3, 3, 2), (2, 1, 2), (2, 1, 1), "same", "channels_first")]


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pool_gradients(mode):
    rng = np.random.default_rng(4)
    # distinct values, so that no window's maximum is a tie (where no derivative exists)
    arrays = [rng.permutation(int(np.prod(s))).reshape(s) * 0.01 + R(rng, *s) * 1e-3
              for s, *_ in POOLS]

    def build(*t):
        return [(K.pool2d if len(p) == 2 else K.pool3d)(x, p, s, pad, df, mode)
                for x, (_, p, s, pad, df) in zip(t, POOLS)]
    check_gradients(build, arrays)


def test_local_conv_gradients():
    rng = np.random.default_rng(5)
    arrays = [R(rng, 2, 9, 3), R(rng, 4, 9, 2),
              R(rng, 2, 2, 6, 5), R(rng, 8, 12, 3),
              R(rng, 1, 6, 5, 2), R(rng, 8, 12, 1)]
    check_gradients(lambda a, ka, b, kb, c, kc: [
        K.local_conv1d(a, ka, (3,), (2,)),
        K.local_conv2d(b, kb, (3, 2), (2, 1), (2, 4), "channels_first"),
        K.local_conv2d(c, kc, (3, 2), (1, 2), (4, 2), "channels_last")], arrays)


def test_float16_gradients_compute_in_float32():
    rng = np.random.default_rng(6)
    a, b = rand(rng, (2, 5, 4, 2), "float16"), rand(rng, (3, 3, 2, 2), "float16")
    got = {}
    for dt in ("float16", "float64"):
        x, w = K.placeholder((None, 5, 4, 2), dtype=dt), K.placeholder((3, 3, 2, 2), dtype=dt)
        loss = K.sum(K.conv2d(x, w, padding="same") * K.constant(np.linspace(0, 1, 40).reshape(
            1, 5, 4, 2), dtype=dt)) + K.sum(K.pool2d(x, (2, 2), pool_mode="avg"))
        got[dt] = K.function([x, w], K.gradients(loss, [x, w]))([a.astype(dt), b.astype(dt)])
    for g16, g64 in zip(got["float16"], got["float64"]):
        assert g16.dtype == np.float16
        np.testing.assert_allclose(g16.astype(np.float64), g64, rtol=5e-3, atol=2e-2)


# ---- the gradient ops, native against the reference and the adjoint identity -------------------

def conv_ops(rng, dtype, n, df, sp, cin, ks, cout, strides, padding, dil):
    """conv_filter_grad and depthwise ops of one window: (placeholders with arrays, outputs,
    independent checks)."""
    attrs = {"strides": strides, "dilation": dil, "padding": padding, "data_format": df}
    x = rand(rng, layout(df, 2, cin, *sp), dtype)
    w = rand(rng, ks + (cin, cout), dtype)
    wd = rand(rng, ks + (cin, 2), dtype)
    y = np_conv(x, w, strides, padding, df, dil)
    yd = np_depthwise(x, wd, strides, padding, df, dil)
    g, gd = rand(rng, y.shape, dtype), rand(rng, yd.shape, dtype)
    px, pg, pgd, pwd = (K.placeholder((None,) + a.shape[1:] if a.ndim == n + 2 and a is not wd
                                      else a.shape, dtype=dtype) for a in (x, g, gd, wd))
    outs = [apply1("conv_filter_grad", [px, pg], dict(attrs, kernel_dims=w.shape)),
            apply1("depthwise_filter_grad", [px, pgd], dict(attrs, kernel_dims=wd.shape)),
            apply1("depthwise_input_grad", [pgd, pwd], dict(attrs, in_dims=px.dims))]

    def check(got):
        dw, dwd, dxd = (o.astype(np.float64) for o in got)
        # <conv(x, w), g> = <w, dw>; <dw(x, wd), gd> = <wd, dwd> = <x, dxd>
        for lhs, rhs in ((np.vdot(y, g), np.vdot(w, dw)), (np.vdot(yd, gd), np.vdot(wd, dwd)),
                         (np.vdot(yd, gd), np.vdot(x, dxd))):
            scale = np.abs(y).sum() * 3 + np.abs(yd).sum() * 3 + 1
            assert abs(lhs - rhs) <= (1e-4 if dtype == "float32" else 1e-11) * scale
    return [(px, x), (pg, g), (pgd, gd), (pwd, wd)], outs, check


OPS = [  # n, data_format, spatial, C, taps, O, strides, padding, dilation
    (1, "channels_last", (7,), 3, (3,), 4, (2,), "same", (1,)),
    (1, "channels_last", (9,), 2, (3,), 3, (1,), "causal", (2,)),
    (1, "channels_first", (1,), 1, (1,), 1, (1,), "valid", (1,)),
    (2, "channels_last", (5, 4), 3, (3, 3), 2, (2, 2), "same", (1, 1)),
    (2, "channels_first", (5, 4), 3, (3, 3), 2, (2, 2), "same", (1, 1)),
    (2, "channels_first", (7, 6), 2, (2, 3), 3, (1, 2), "valid", (2, 1)),
    (2, "channels_last", (6, 7), 1, (4, 2), 5, (3, 1), "same", (1, 2)),
    (2, "channels_last", (3, 4), 13, (2, 3), 70, (1, 1), "same", (1, 1)),   # several panels
    (1, "channels_last", (40,), 2, (3,), 17, (1,), "causal", (3,)),           # blocks of a row
    (3, "channels_last", (3, 4, 3), 2, (2, 2, 3), 2, (1, 2, 2), "same", (1, 1, 1)),
    (3, "channels_first", (4, 3, 3), 2, (2, 1, 2), 3, (2, 1, 1), "valid", (1, 1, 2)),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gradient_ops(dtype):
    rng = np.random.default_rng(7)
    inputs, outs, checks = [], [], []
    for case in OPS:
        i, o, c = conv_ops(rng, dtype, *case)
        inputs += i
        outs += o
        checks.append(c)
    got, want, _ = run(inputs, outs)
    for k, (gv, wv) in enumerate(zip(got, want)):
        assert_same(gv, wv, f"{OPS[k // 3]} output {k % 3}")
    for k, c in enumerate(checks):
        c(got[3 * k:3 * k + 3])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_pool_grad_op(dtype):
    rng = np.random.default_rng(8)
    inputs, outs, cases = [], [], []
    for shape, pool, strides, padding, df in POOLS + [((2, 7, 6, 3), (2, 3), (2, 2), "same",
                                                       "channels_last")]:
        for mode in ("max", "avg"):
            attrs = {"pool_size": pool, "strides": strides, "padding": padding,
                     "data_format": df, "mode": mode}
            x = rand(rng, shape, dtype)
            y = np_pool(x, pool, strides, padding, df, mode)
            g = rand(rng, y.shape, dtype)
            px, pg = K.placeholder((None,) + x.shape[1:], dtype=dtype), K.placeholder(
                (None,) + g.shape[1:], dtype=dtype)
            inputs += [(px, x), (pg, g)]
            outs.append(apply1("pool_grad", [px, pg], attrs))
            cases.append((x, g, y, mode))
    got, want, _ = run(inputs, outs)
    for gv, wv, (x, g, y, mode) in zip(got, want, cases):
        assert_same(gv, wv, mode)
        if mode == "avg":  # avg pooling is linear: <pool(x), g> = <x, pool_grad(g)>
            assert abs(np.vdot(y, g) - np.vdot(x.astype(np.float64), gv)) < 1e-4 * np.abs(
                y).sum() * 3 + 1e-3
        else:  # every output's gradient lands on one element holding its maximum
            assert abs(gv.astype(np.float64).sum() - g.astype(np.float64).sum()) < 1e-3


def tf_max_pool_grad(x, g, pool, strides):
    """TensorFlow's MaxPoolGrad for 'valid' 2-d channels_last windows, loop by loop: each
    output's gradient to the first maximum of its window in row-major order."""
    dx = np.zeros(x.shape)
    for b, i, j, c in np.ndindex(*g.shape):
        win = x[b, i * strides[0]:i * strides[0] + pool[0], j * strides[1]:j * strides[1] +
                pool[1], c]
        flat = win.ravel()
        k = int(np.argmax(np.isnan(flat))) if np.isnan(flat).any() else int(np.argmax(flat))
        dx[b, i * strides[0] + k // pool[1], j * strides[1] + k % pool[1], c] += g[b, i, j, c]
    return dx


def test_max_pool_gradient_ties_and_nan():
    """Ties go to the first maximum of the window, a NaN takes the gradient (the first one)."""
    x = np.array([[1, 1, 2, 2, 0], [1, 0, 2, 2, 0], [3, 3, 0, 0, 0], [3, 3, 5, 5, 5]],
                 np.float32).reshape(1, 4, 5, 1)
    x = np.concatenate([x, x], -1)
    x[0, 0, 1, 1] = x[0, 2, 2, 1] = x[0, 2, 3, 1] = np.nan
    xc = np.moveaxis(x, -1, 1).copy()
    px, pc = K.placeholder((None, 4, 5, 2)), K.placeholder((None, 2, 4, 5))
    y = K.pool2d(px, (2, 2), (1, 1))
    yc = K.pool2d(pc, (2, 2), (1, 1), data_format="channels_first")
    w = np.arange(1, 25, dtype=np.float32).reshape(1, 3, 4, 2)
    gx, gc = K.gradients(K.sum(y * K.constant(w)) + K.sum(yc * K.constant(np.moveaxis(w, -1, 1))),
                         [px, pc])
    got, want, _ = run([(px, x), (pc, xc)], [gx, gc])
    assert_same(got[0], want[0])
    expect = tf_max_pool_grad(x.astype(np.float64), w.astype(np.float64), (2, 2), (1, 1))
    np.testing.assert_array_equal(got[0], expect)
    np.testing.assert_array_equal(got[1], np.moveaxis(expect, -1, 1))


def test_larger_multithreaded_gradients():
    """Many im2col tiles and chunks in the kernel gradient, many scatter tasks."""
    rng = np.random.default_rng(9)
    x = K.placeholder((None, 20, 18, 16))
    w = K.placeholder((3, 3, 16, 24))
    wd = K.placeholder((3, 3, 16, 1))
    xc = K.placeholder((None, 16, 20, 18))
    loss = K.sum(K.conv2d(x, w, (2, 1), "same") ** 2) + K.sum(
        K.depthwise_conv2d(x, wd, padding="same") * 0.5) + K.sum(
        K.pool2d(x, (3, 3), (2, 2), "same") * 0.3) + K.sum(
        K.conv2d(xc, w, padding="same", data_format="channels_first") ** 2)
    grads = K.gradients(loss, [x, w, wd, xc])
    arrays = [rand(rng, (7, 20, 18, 16), "float32"), rand(rng, (3, 3, 16, 24), "float32"),
              rand(rng, (3, 3, 16, 1), "float32"), rand(rng, (5, 16, 20, 18), "float32")]
    got, want, _ = run(list(zip([x, w, wd, xc], arrays)), grads)
    for g, r in zip(got, want):
        np.testing.assert_allclose(g, r, rtol=2e-4, atol=2e-4 * np.abs(r).max())


# ---- errors -------------------------------------------------------------------------------------

def test_bad_operands_fail_at_graph_build_time():
    attrs = {"strides": (1, 1), "dilation": (1, 1), "padding": "same",
             "data_format": "channels_last"}
    x, g = K.placeholder((None, 5, 5, 3)), K.placeholder((None, 5, 4, 2))
    with pytest.raises(ValueError, match=r"conv_filter_grad: output spatial extents differ"):
        apply1("conv_filter_grad", [x, g], dict(attrs, kernel_dims=(3, 3, 3, 2)))
    with pytest.raises(ValueError, match=r"conv_filter_grad: output channels differ"):
        apply1("conv_filter_grad", [x, K.placeholder((None, 5, 5, 4))],
               dict(attrs, kernel_dims=(3, 3, 3, 2)))
    with pytest.raises(ValueError, match=r"conv_filter_grad: needs float32 or float64"):
        apply1("conv_filter_grad", [x, K.placeholder((None, 5, 5, 2), dtype="float64")],
               dict(attrs, kernel_dims=(3, 3, 3, 2)))
    with pytest.raises(ValueError, match=r"depthwise_input_grad: output channels differ"):
        apply1("depthwise_input_grad", [K.placeholder((None, 5, 5, 5)),
                                        K.placeholder((3, 3, 3, 2))], dict(attrs, in_dims=x.dims))
    with pytest.raises(ValueError, match=r"pool_grad: needs rank-4 operands"):
        apply1("pool_grad", [x, K.placeholder((None, 5, 5))],
               {"pool_size": (2, 2), "strides": (1, 1), "padding": "same",
                "data_format": "channels_last", "mode": "max"})


def test_run_time_mismatch_raises():
    """A gradient whose batch differs from the input's is caught before native code runs."""
    attrs = {"strides": (1,), "dilation": (1,), "padding": "same", "data_format": "channels_last"}
    x, g = K.placeholder((None, 4, 2)), K.placeholder((None, 4, 3))
    dw = apply1("conv_filter_grad", [x, g], dict(attrs, kernel_dims=(3, 2, 3)))
    f = K.function([x, g], [dw])
    with pytest.raises(ValueError, match="conv_filter_grad: batch differs"):
        f([np.ones((2, 4, 2), np.float32), np.ones((3, 4, 3), np.float32)])
