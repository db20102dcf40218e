"""More kernels on the GPU against the numpy reference interpreter: channels_first and
transposed convolutions; the gradients of convolution, pooling and depthwise convolution
(kernel gradients are fixed-order block sums: the same bits on every run); CTC (the loss and its
gradient, greedy and beam-search decoding, dense labels to sparse, data errors). Small awkward
shapes: odd extents, strides that do not divide, dilation, padding, batch 1."""
import numpy as np
import pytest

import kcomp.backend as K
from test_cuda_functions import check
from util import rand

pytestmark = pytest.mark.cuda


def _layout(fmt, batch, channels, *spatial):
    return (batch, channels) + spatial if fmt == "channels_first" else \
        (batch,) + spatial + (channels,)


# ---- convolutions ------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_conv_channels_first(gpu, dtype):
    rng = np.random.default_rng(21)
    cf = "channels_first"
    x = K.placeholder((None, 3, 9, 10), dtype=dtype)
    w = K.placeholder((3, 2, 3, 5), dtype=dtype)
    x1, w1 = K.placeholder((None, 2, 17), dtype=dtype), K.placeholder((4, 2, 3), dtype=dtype)
    x3, w3 = K.placeholder((None, 2, 4, 5, 6), dtype=dtype), K.placeholder((2, 3, 2, 2, 3),
                                                                          dtype=dtype)
    outs = [K.conv2d(x, w, data_format=cf),
            K.conv2d(x, w, strides=(2, 3), padding="same", data_format=cf),
            K.conv2d(x, w, dilation_rate=(2, 3), padding="same", data_format=cf),
            K.conv2d(x, w, strides=(1, 2), dilation_rate=(3, 1), data_format=cf),
            K.conv1d(x1, w1, strides=2, padding="same", data_format=cf),
            K.conv1d(x1, w1, dilation_rate=3, padding="valid", data_format=cf),
            K.conv3d(x3, w3, strides=(2, 1, 2), padding="same", data_format=cf)]
    for batch in (3, 1):
        check([(x, rand(rng, (batch, 3, 9, 10), dtype)), (w, rand(rng, (3, 2, 3, 5), dtype)),
               (x1, rand(rng, (batch, 2, 17), dtype)), (w1, rand(rng, (4, 2, 3), dtype)),
               (x3, rand(rng, (batch, 2, 4, 5, 6), dtype)),
               (w3, rand(rng, (2, 3, 2, 2, 3), dtype))],
              outs, rtol=1e-4 if dtype == "float32" else None)


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_conv2d_transpose(gpu, fmt):
    rng = np.random.default_rng(22)
    B, C, O = 2, 3, 4
    x = K.placeholder(_layout(fmt, B, C, 5, 4))
    w = K.placeholder((3, 2, O, C))   # (taps..., output channels, input channels)
    outs = [K.conv2d_transpose(x, w, _layout(fmt, B, O, 9, 8), strides=(2, 2), padding="same",
                               data_format=fmt),
            K.conv2d_transpose(x, w, _layout(fmt, B, O, 7, 5), strides=(1, 1), padding="valid",
                               data_format=fmt),
            K.conv2d_transpose(x, w, _layout(fmt, B, O, 16, 9), strides=(3, 2),
                               padding="valid", data_format=fmt),
            K.conv2d_transpose(x, w, _layout(fmt, B, O, 9, 6), padding="valid", data_format=fmt,
                               dilation_rate=(2, 2))]
    check([(x, rand(rng, _layout(fmt, B, C, 5, 4), "float32")),
           (w, rand(rng, (3, 2, O, C), "float32"))], outs, rtol=1e-4)


# ---- gradients ---------------------------------------------------------------------------------

def _weights(rng, y):
    """A constant of y's shape: the gradient of sum(y * c) is c, so no two outputs look alike."""
    return K.constant(rng.uniform(-1, 1, K.int_shape(y)[1:]).astype(np.float32)[None])


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_conv_gradients(gpu, fmt):
    rng = np.random.default_rng(23)
    xs, ws = _layout(fmt, 3, 3, 7, 8), (3, 2, 3, 4)
    x, w = K.placeholder((None,) + xs[1:]), K.placeholder(ws)
    ys = [K.conv2d(x, w, data_format=fmt),
          K.conv2d(x, w, strides=(2, 3), padding="same", data_format=fmt),
          K.conv2d(x, w, dilation_rate=(2, 2), padding="same", data_format=fmt)]
    loss = sum(K.sum(y * _weights(rng, y)) for y in ys)
    f, _ = check([(x, rand(rng, xs, "float32")), (w, rand(rng, ws, "float32"))],
                 K.gradients(loss, [x, w]), rtol=1e-4)
    # the kernel gradient sums in a fixed order: the same bits again (a larger batch)
    xv, wv = rand(rng, (9,) + xs[1:], "float32"), rand(rng, ws, "float32")
    a, b = f([xv, wv]), f([xv, wv])
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pool_gradients(gpu, fmt, mode):
    rng = np.random.default_rng(24)
    xs = _layout(fmt, 2, 3, 7, 9)
    x = K.placeholder((None,) + xs[1:])
    x3 = K.placeholder((None,) + _layout(fmt, 1, 2, 5, 4, 5)[1:])
    ys = [K.pool2d(x, (2, 2), strides=(2, 2), pool_mode=mode, data_format=fmt),
          K.pool2d(x, (3, 2), strides=(2, 3), padding="same", pool_mode=mode, data_format=fmt),
          K.pool2d(x, (3, 3), strides=(1, 1), padding="same", pool_mode=mode, data_format=fmt),
          K.pool3d(x3, (2, 3, 2), strides=(2, 1, 2), padding="same", pool_mode=mode,
                   data_format=fmt)]
    loss = sum(K.sum(y * _weights(rng, y)) for y in ys)
    grads = K.gradients(loss, [x, x3])
    x3v = rand(rng, _layout(fmt, 2, 2, 5, 4, 5), "float32")
    check([(x, rand(rng, xs, "float32")), (x3, x3v)], grads, rtol=1e-4)
    # ties (small integers): max pooling's gradient goes to each window's first maximum
    check([(x, rng.integers(0, 3, xs).astype(np.float32)),
           (x3, rng.integers(0, 2, x3v.shape).astype(np.float32))], grads, rtol=1e-4)


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_depthwise_gradients(gpu, fmt):
    rng = np.random.default_rng(25)
    xs, ws = _layout(fmt, 2, 3, 8, 7), (3, 2, 3, 2)
    x, w = K.placeholder((None,) + xs[1:]), K.placeholder(ws)
    ys = [K.depthwise_conv2d(x, w, data_format=fmt),
          K.depthwise_conv2d(x, w, strides=(2, 2), padding="same", data_format=fmt),
          K.depthwise_conv2d(x, w, padding="same", dilation_rate=(2, 3), data_format=fmt)]
    loss = sum(K.sum(y * _weights(rng, y)) for y in ys)
    f, _ = check([(x, rand(rng, xs, "float32")), (w, rand(rng, ws, "float32"))],
                 K.gradients(loss, [x, w]), rtol=1e-4)
    xv, wv = rand(rng, (5,) + xs[1:], "float32"), rand(rng, ws, "float32")
    for u, v in zip(f([xv, wv]), f([xv, wv])):
        np.testing.assert_array_equal(u, v)


def test_separable_and_conv1d_gradients(gpu):
    rng = np.random.default_rng(26)
    x = K.placeholder((None, 11, 4))
    w = K.placeholder((3, 4, 5))
    x2 = K.placeholder((None, 3, 6, 5))
    dw, pw = K.placeholder((2, 2, 3, 2)), K.placeholder((1, 1, 6, 4))
    ys = [K.conv1d(x, w, strides=2, padding="causal"),
          K.separable_conv2d(x2, dw, pw, padding="same", data_format="channels_first")]
    loss = sum(K.sum(y * _weights(rng, y)) for y in ys)
    check([(x, rand(rng, (2, 11, 4), "float32")), (w, rand(rng, (3, 4, 5), "float32")),
           (x2, rand(rng, (3, 3, 6, 5), "float32")), (dw, rand(rng, (2, 2, 3, 2), "float32")),
           (pw, rand(rng, (1, 1, 6, 4), "float32"))],
          K.gradients(loss, [x, w, x2, dw, pw]), rtol=1e-4)


# ---- CTC ---------------------------------------------------------------------------------------

def _probabilities(rng, shape, dtype="float32"):
    y = rng.uniform(0.05, 1.0, shape)
    return (y / y.sum(-1, keepdims=True)).astype(dtype)


def _i32(v):
    return np.array(v, np.int32)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_ctc_batch_cost_and_gradient(gpu, dtype):
    rng = np.random.default_rng(27)
    C = 5
    y_true = K.placeholder((None, 3), dtype="int32")
    y_pred = K.placeholder((None, None, C), dtype=dtype)
    input_len, label_len = K.placeholder((None, 1), dtype="int32"), K.placeholder(
        (None, 1), dtype="int32")
    cost = K.ctc_batch_cost(y_true, y_pred, input_len, label_len)
    scale = K.placeholder((None, 1), dtype=dtype)
    grad = K.gradients(K.sum(cost * scale), [y_pred])[0]
    # repeats, an empty label, a label as long as the steps, end labels (>= C - 1) after the
    # label, a length beyond the row, no steps at all
    labels = [[0, 1, 2], [1, 1, 0], [3, 0, 0], [2, 2, 3], [0, 4, 4], [1, 2, 3], [0, 0, 0]]
    lens = [3, 2, 0, 2, 1, 9, 0]
    steps = [6, 5, 4, 4, 1, 6, 0]
    T = 6
    y = _probabilities(rng, (len(labels), T, C), dtype)
    sc = rng.uniform(0.5, 2.0, (len(labels), 1)).astype(dtype)
    feeds = [(y_true, _i32(labels)), (y_pred, y), (input_len, _i32(steps)[:, None]),
             (label_len, _i32(lens)[:, None]), (scale, sc)]
    check(feeds, [cost, grad], rtol=1e-4 if dtype == "float32" else 1e-10)
    # an impossible label (repeats need more steps than there are): infinite loss
    feeds = [(y_true, _i32([[1, 1, 1]])), (y_pred, y[:1, :4]), (input_len, _i32([[4]])),
             (label_len, _i32([[3]]))]
    _, got = check(feeds, [cost])
    assert np.isinf(got[0][0, 0])
    # longer sequences, batch 1 and an empty batch
    T = 23
    y = _probabilities(rng, (9, T, C), dtype)
    feeds = [(y_true, rng.integers(0, C - 1, (9, 3)).astype(np.int32)), (y_pred, y),
             (input_len, rng.integers(7, T + 1, (9, 1)).astype(np.int32)),
             (label_len, rng.integers(0, 4, (9, 1)).astype(np.int32)),
             (scale, np.ones((9, 1), dtype))]
    for n in (9, 1, 0):
        check([(p, a[:n]) for p, a in feeds], [cost, grad],
              rtol=1e-4 if dtype == "float32" else 1e-10)


def test_ctc_decode(gpu):
    rng = np.random.default_rng(28)
    y = K.placeholder((None, 7, 4))
    n = K.placeholder((None,), dtype="int32")
    greedy, greedy_lp = K.ctc_decode(y, n)
    beam, beam_lp = K.ctc_decode(y, n, greedy=False, beam_width=4, top_paths=3)
    merged, merged_lp = K.ctc_decode(y, n, greedy=False, beam_width=2, top_paths=1,
                                     merge_repeated=True)
    wide, wide_lp = K.ctc_decode(y, n, greedy=False, beam_width=40, top_paths=2)
    outs = [greedy[0], greedy_lp, *beam, beam_lp, merged[0], merged_lp, *wide, wide_lp]
    for B in (6, 1):
        yv = _probabilities(rng, (B, 7, 4))
        # peaked rows: repeated labels and blanks between them
        yv[0] = np.eye(4, dtype=np.float32)[[0, 0, 3, 0, 1, 1, 3]] * 0.9 + 0.025
        steps = rng.integers(1, 8, B).astype(np.int32)
        steps[0] = 7
        check([(y, yv), (n, steps)], outs, rtol=1e-4)
    # greedy decoding of no steps (a negative length decodes nothing too)
    yv = _probabilities(rng, (3, 7, 4))
    check([(y, yv), (n, _i32([0, -1, 3]))], [greedy[0], greedy_lp])


def test_ctc_dense_to_sparse(gpu):
    labels = K.placeholder((None, 4), dtype="int32")
    flabels = K.placeholder((None, 4), dtype="float32")
    lengths = K.placeholder((None,), dtype="int32")
    sp, fsp = K.ctc_label_dense_to_sparse(labels, lengths), K.ctc_label_dense_to_sparse(
        flabels, lengths)
    rng = np.random.default_rng(29)
    for lens in ([2, 0, 7, -1, 4], [3], [], [4] * 40):
        lens = _i32(lens)
        a = rng.integers(0, 9, (len(lens), 4)).astype(np.int32)
        check([(labels, a), (flabels, a.astype(np.float32)), (lengths, lens)],
              list(sp) + list(fsp))


def test_ctc_data_errors(gpu):
    labels = K.placeholder((None, 3), dtype="int32")
    y = K.placeholder((None, 4, 4))
    input_len, label_len = (K.placeholder((None,), dtype="int32") for _ in range(2))
    loss = K.function([labels, y, input_len, label_len],
                      [K.ctc_batch_cost(labels, y, input_len, label_len)], device="cuda")
    greedy = K.function([y, input_len], K.ctc_decode(y, input_len)[0], device="cuda")
    beam = K.function([y, input_len], K.ctc_decode(y, input_len, greedy=False, beam_width=4,
                                                   top_paths=2)[0], device="cuda")
    y_ok = _probabilities(np.random.default_rng(30), (2, 4, 4))
    loss([_i32([[0, 1, 2], [1, 3, 3]]), y_ok, _i32([4, 3]), _i32([3, 3])])
    cases = [
        (([[0, 1, 2], [0, 1, 2]], [4, 5], [3, 3]), r"must lie in \[0, time steps\]: 5 vs 4"),
        (([[0, -2, 2], [0, 1, 2]], [4, 4], [3, 3]), "must not be negative .*: -2 vs 1"),
        (([[0, 3, 1], [0, 1, 2]], [4, 4], [3, 3]), "follows an end label .*: 1 vs 2"),
        (([[0, 1, 2], [0, 1, 2]], [4, 2], [3, 3]), "more labels than time steps .*: 3 vs 2"),
    ]
    for (lab, steps, lens), message in cases:
        with pytest.raises(ValueError, match="ctc_loss: .*" + message):
            loss([_i32(lab), y_ok, _i32(steps), _i32(lens)])
    # the function still works after a data error (the message does not stick)
    loss([_i32([[0, 1, 2], [1, 3, 3]]), y_ok, _i32([4, 3]), _i32([3, 3])])
    with pytest.raises(ValueError, match="ctc_greedy_decode: .* exceed the time steps: 5 vs 4"):
        greedy([y_ok, _i32([4, 5])])
    with pytest.raises(ValueError, match="ctc_beam_decode: .* exceed the time steps: 5 vs 4"):
        beam([y_ok, _i32([5, 4])])
    with pytest.raises(ValueError, match="ctc_beam_decode: fewer beams than top_paths: 1 vs 2"):
        beam([y_ok, _i32([4, 0])])
