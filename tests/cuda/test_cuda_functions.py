"""Compiled functions on the GPU: the same graphs as on the CPU, lowered to CUDA, against the numpy
reference interpreter (and the CPU build), over awkward shapes and the dtypes each op allows;
variables living on the device; GPU arrays in and out without copies; Keras models unmodified."""
import numpy as np
import pytest

import kcomp
import kcomp.backend as K
from util import rand, run

pytestmark = pytest.mark.cuda

TOL = {"float16": 2e-3, "float32": 2e-5, "float64": 1e-12}


def check(inputs, outputs, rtol=None, atol=None):
    """Compile for CUDA, run, compare every output with the numpy reference interpreter; bounded
    outputs (ctc_decode's paths) come trimmed from functions, the reference is trimmed alike.
    Floats may differ by rtol relative and atol absolute (default: rtol times the largest output
    magnitude). Returns the function and its results."""
    got, want, f = run(inputs, outputs, device="cuda")
    assert f.device == "cuda"
    for i, (g, w) in enumerate(zip(got, want)):
        g, w = np.asarray(g), np.asarray(w)
        assert g.dtype == w.dtype and g.shape == w.shape, (i, g.dtype, w.dtype, g.shape, w.shape)
        if g.dtype.kind == "f":
            tol = rtol or TOL[g.dtype.name]
            finite = np.abs(w[np.isfinite(w)].astype(np.float64))
            scale = max(1.0, float(finite.max())) if finite.size else 1.0
            np.testing.assert_allclose(g, w, rtol=tol, atol=tol * scale if atol is None else atol,
                                       equal_nan=True,
                                       err_msg=f"output {i}")
        else:
            np.testing.assert_array_equal(g, w, err_msg=f"output {i}")
    return f, got


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
@pytest.mark.parametrize("shape", [(1,), (7, 1), (3, 5, 33), (1000, 257)])
def test_elementwise_chain(gpu, dtype, shape):
    rng = np.random.default_rng(1)
    a, b = K.placeholder(shape, dtype=dtype), K.placeholder(shape[-1:], dtype=dtype)
    outs = [K.tanh(a * b + 1.5) * K.sigmoid(a) + 0.5 * b, K.exp(-K.abs(a)) / (1 + K.square(b)),
            K.relu(a, alpha=0.1, max_value=2.0), K.softplus(a), K.elu(a), K.sqrt(K.abs(a)),
            K.log(K.abs(a) + 1), K.minimum(a, b), K.maximum(a, b), K.clip(a, -1, 1),
            K.round(a), K.sign(a), K.hard_sigmoid(a), K.softsign(a), K.cos(a) + K.sin(b),
            K.pow(K.abs(a) + 0.5, b), a % 1.5, a // 0.7, K.cast(K.greater(a, b), dtype)]
    check([(a, rand(rng, shape, dtype)), (b, rand(rng, shape[-1:], dtype))], outs,
          rtol={"float16": 4e-3}.get(dtype))


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "int32"])
@pytest.mark.parametrize("n", [1, 4, 7, 4099, 3 * 4096 * 16 + 5])
def test_elementwise_vector_path(gpu, dtype, n):
    """Elementwise kernels over contiguous operands run four elements a vector access
    (elementwise.j2), four vectors a thread: every element is written, the last n % 4 too, with
    a one-element operand broadcast and two outputs. Two calls on different data (a reused
    allocation would keep the first call's values where nothing wrote); inputs one element off
    alignment (PyTorch views) take the scalar path and agree."""
    rng = np.random.default_rng(n)
    a, c = K.placeholder((None,), dtype=dtype), K.placeholder((1,), dtype=dtype)
    if dtype == "int32":
        y = a * c + 3
        outs = [y, y % 5 - a]
    else:
        y = K.tanh(a * c + 1.0) * K.sigmoid(a) + 0.5 * a
        outs = [y, K.cast(y * a, "float32")]
    for _ in range(2):
        av, cv = rand(rng, (n,), dtype), rand(rng, (1,), dtype)
        f, got = check([(a, av), (c, cv)], outs, rtol={"float16": 4e-3}.get(dtype))
    torch = pytest.importorskip("torch")
    tav, tcv = (torch.as_tensor(np.concatenate([v[:1], v])).cuda()[1:] for v in (av, cv))
    assert tav.data_ptr() % 16 and tcv.data_ptr() % 16  # off alignment: the scalar path
    for g, w in zip(f([tav, tcv]), got):
        np.testing.assert_allclose(g, w, rtol=TOL.get(dtype, 0), atol=TOL.get(dtype, 0))


@pytest.mark.parametrize("dtype", ["int32", "int64", "uint8", "int8"])
def test_integer_ops(gpu, dtype):
    rng = np.random.default_rng(2)
    a, b = K.placeholder((5, 9), dtype=dtype), K.placeholder((9,), dtype=dtype)
    av, bv = rand(rng, (5, 9), dtype, -50, 50), rand(rng, (9,), dtype, 1, 9)
    check([(a, av), (b, bv)], [a + b, a * b, a - b, a // b, a % b, K.maximum(a, b),
                               K.equal(a, b), K.sum(a, axis=0), K.max(a, axis=1),
                               K.cast(a, "float32") * 0.5])


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32"])
@pytest.mark.parametrize("shape,axis", [((1,), -1), ((7, 1), 0), ((5, 33), -1), ((5, 33), 0),
                                        ((4, 6, 35), 1), ((4, 6, 35), (0, 2)),
                                        ((300, 1025), -1), ((1025, 300), 0), ((3, 4, 5), None)])
def test_reductions(gpu, dtype, shape, axis):
    rng = np.random.default_rng(3)
    x = K.placeholder(shape, dtype=dtype)
    outs = [K.sum(x, axis), K.max(x, axis), K.min(x, axis), K.mean(x, axis) if dtype != "int32"
            else K.sum(x, axis)]
    if dtype != "int32":
        outs += [K.var(x, axis), K.std(x, axis), K.logsumexp(x, axis), K.prod(x * 0.1 + 1, axis)]
    if isinstance(axis, int):
        outs += [K.argmax(x, axis), K.argmin(x, axis), K.cumsum(x, axis)]
    check([(x, rand(rng, shape, dtype))], outs, rtol=1e-4 if dtype == "float32" else None)


def test_reduction_nan_and_empty(gpu):
    x = K.placeholder((3, 6))
    v = np.arange(18, dtype=np.float32).reshape(3, 6)
    v[1, 2] = np.nan
    check([(x, v)], [K.max(x, 1), K.argmax(x, 1), K.sum(x, 1), K.min(x, 0)])
    e = K.placeholder((None, 4))
    f = K.function([e], [K.max(e, axis=0)], device="cuda")
    with pytest.raises(ValueError, match="zero-size"):
        f([np.zeros((0, 4), np.float32)])


@pytest.mark.parametrize("shape,axis", [((1, 1), -1), ((7, 33), -1), ((33, 7), 0),
                                        ((2, 3000, 5), 1), ((64, 4099), -1)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax(gpu, shape, axis, dtype):
    rng = np.random.default_rng(4)
    x = K.placeholder(shape, dtype=dtype)
    check([(x, rand(rng, shape, dtype, -20, 20))], [K.softmax(x, axis=axis)])


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (1, 1024, 1024), (7, 13, 5), (65, 130, 257),
                                   (256, 784, 512)])
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "int32"])
def test_dot_and_epilogue(gpu, m, k, n, dtype):
    if dtype in ("float16", "int32") and m * k * n > 1e6:
        pytest.skip("the plain kernel of these dtypes is correct, not fast")
    rng = np.random.default_rng(5)
    x, w, b = (K.placeholder(s, dtype=dtype) for s in ((None, k), (k, n), (n,)))
    lo, hi = (-3, 3) if dtype != "float16" else (-1, 1)
    outs = [K.dot(x, w), K.relu(K.dot(x, w) + b)]
    if dtype != "int32":  # (the library GEMM's own epilogues, and a generated one)
        outs += [K.sigmoid(K.dot(x, w) + b), K.tanh(b + K.dot(x, w)),
                 K.hard_sigmoid(K.dot(x, w) + b), K.softmax(K.dot(x, w) + b)]
    xv, wv, bv = rand(rng, (m, k), dtype, lo, hi), rand(rng, (k, n), dtype, lo, hi), \
        rand(rng, (n,), dtype, lo, hi)
    # float32 products summed in another order than numpy's BLAS differ by a few roundings of
    # the sum of magnitudes (the activations' slopes are at most 1); the output's own scale can
    # be far smaller (tanh of a sum of 784 products that cancels to 0.23)
    atol = None
    if dtype == "float32":
        mags = np.abs(xv).astype(np.float64) @ np.abs(wv) + np.abs(bv)
        atol = 4 * 2.0 ** -24 * float(mags.max())
    check([(x, xv), (w, wv), (b, bv)], outs,
          rtol={"float32": 1e-4, "float16": 2e-2}.get(dtype), atol=atol)


@pytest.mark.parametrize("xs,ys,axes", [
    ((4, 3, 5), (4, 5, 6), (2, 1)), ((4, 5, 3), (4, 5, 6), (1, 1)), ((4, 3, 5), (4, 6, 5), (2, 2)),
    ((70, 2, 3), (70, 3, 4), None), ((9, 17), (9, 17), 1), ((3, 4, 5, 6), (3, 6, 2), (3, 1))])
def test_batch_dot(gpu, xs, ys, axes):
    rng = np.random.default_rng(6)
    x, y = K.placeholder(xs), K.placeholder(ys)
    check([(x, rand(rng, xs, "float32")), (y, rand(rng, ys, "float32"))],
          [K.batch_dot(x, y, axes=axes)], rtol=1e-4)


def test_gather_pad_scatter_random(gpu):
    rng = np.random.default_rng(7)
    ref = K.placeholder((50, 8))
    idx = K.placeholder((None, 5), dtype="int32")
    x = K.placeholder((2, 3, 4))
    refv, idxv = rand(rng, (50, 8), "float32"), rng.integers(0, 50, (6, 5)).astype(np.int32)
    check([(ref, refv), (idx, idxv), (x, rand(rng, (2, 3, 4), "float32"))],
          [K.gather(ref, idx), K.spatial_2d_padding(K.reshape(x, (1, 2, 3, 4)), ((1, 2), (0, 1))),
           K.temporal_padding(x, (2, 1))])
    f = K.function([ref, idx], [K.gather(ref, idx)], device="cuda")
    with pytest.raises(IndexError, match="out of range"):
        f([refv, np.full((2, 5), 50, np.int32)])
    # the GPU draws the CPU's random numbers (a pure function of seed, call and index); each
    # graph has its own call counters (variables), so both functions start from call 0
    r, ones = K.placeholder((None, 7)), np.ones((9, 7), np.float32)

    def draws(device):
        f = K.function([r], [K.random_uniform((1000, 7), seed=3), K.dropout(r, 0.5, seed=4)],
                       device=device)
        return [f([ones]) for _ in range(2)]

    cpu, gpu_out = draws("cpu"), draws("cuda")
    assert not np.array_equal(cpu[0][0], cpu[1][0])  # a second call draws new numbers
    for c, g in zip(sum(cpu, []), sum(gpu_out, [])):
        np.testing.assert_allclose(g, c, rtol=1e-6, atol=1e-6)


def test_gradients_and_updates_on_device(gpu):
    rng = np.random.default_rng(8)
    w0 = rng.normal(size=(6, 3)).astype(np.float32)
    w = K.variable(w0.copy())
    x, y = K.placeholder((None, 6)), K.placeholder((None, 3))
    loss = K.mean(K.square(K.dot(x, w) - y))
    g = K.gradients(loss, [w])[0]
    step = K.function([x, y], [loss], updates=[K.update_sub(w, 0.1 * g)], device="cuda")
    xv, yv = rand(rng, (11, 6), "float32"), rand(rng, (11, 3), "float32")
    ref = w0.astype(np.float64)
    for _ in range(3):
        out = step([xv, yv])[0]
        r = xv @ ref - yv
        np.testing.assert_allclose(out, np.mean(r ** 2), rtol=1e-5)
        ref -= 0.1 * (2.0 / r.size) * xv.T @ r
    np.testing.assert_allclose(K.get_value(w), ref, rtol=1e-5, atol=1e-6)
    # set_value reaches the device copy; a CPU function sees the GPU's updates
    K.set_value(w, np.ones((6, 3), np.float32))
    read = K.function([x], [K.dot(x, w)], device="cuda")
    np.testing.assert_allclose(read([xv])[0], xv @ np.ones((6, 3)), rtol=1e-5)
    step([xv, yv])
    cpu_read = K.function([x], [K.dot(x, w)], device="cpu")
    np.testing.assert_allclose(cpu_read([xv])[0], read([xv])[0], rtol=1e-5, atol=1e-5)


def test_device_arrays_in_and_out(gpu):
    from kcomp.cuda.runtime import DeviceArray
    rng = np.random.default_rng(9)
    x = K.placeholder((None, 5))
    f = K.function([x], [K.exp(x) * 2.0], device="cuda", device_outputs=True)
    xv = rand(rng, (4, 5), "float32")
    out = f([DeviceArray.from_numpy(xv)])[0]
    assert isinstance(out, DeviceArray) and out.shape == (4, 5)
    np.testing.assert_allclose(out.numpy(), np.exp(xv) * 2, rtol=1e-6)
    g = K.function([x], [x + 1.0], device="cuda")
    np.testing.assert_allclose(g([out])[0], np.exp(xv) * 2 + 1, rtol=1e-6)
    with pytest.raises(ValueError, match="dtype"):
        g([DeviceArray.from_numpy(xv.astype(np.float64))])
    with pytest.raises(ValueError, match="shape"):
        g([np.zeros((4, 6), np.float32)])
    torch = pytest.importorskip("torch")
    t = torch.randn(3, 5, device="cuda")
    np.testing.assert_allclose(g([t])[0], t.cpu().numpy() + 1, rtol=1e-6)        # CAI
    np.testing.assert_allclose(g([DeviceArray.from_numpy(t.cpu().numpy())])[0],
                               t.cpu().numpy() + 1, rtol=1e-6)
    from kcomp.cuda.dlpack import from_dlpack
    d = from_dlpack(t)
    np.testing.assert_allclose(d.numpy(), t.cpu().numpy())
    back = torch.as_tensor(out, device="cuda")  # kcomp's output read by PyTorch, no copy
    np.testing.assert_allclose(back.cpu().numpy(), np.exp(xv) * 2, rtol=1e-6)


def test_scalar_inputs_and_variables(gpu):
    """0-d values keep their rank on the way to the device (Keras feeds the learning phase as a
    scalar; random ops count their calls in scalar variables)."""
    x, s = K.placeholder((None, 3)), K.placeholder(())
    counter = K.variable(np.float32(2.0))
    f = K.function([x, s], [x * s + counter], updates=[K.update_add(counter, 1.0)], device="cuda")
    out = f([np.ones((2, 3), np.float32), np.float32(3.0)])[0]
    np.testing.assert_allclose(out, np.full((2, 3), 5.0))
    assert float(K.get_value(counter)) == 3.0


def test_keras_models_predict_on_gpu(gpu):
    import os
    os.environ.setdefault("KERAS_BACKEND", "kcomp.backend")
    pytest.importorskip("keras")
    from keras.layers import (GRU, LSTM, BatchNormalization, Conv1D, Conv2D, Dense, Dropout,
                              Embedding, Flatten, MaxPooling2D, SimpleRNN)
    from keras.models import Sequential
    rng = np.random.default_rng(10)
    models = [
        (Sequential([Dense(64, activation="relu", input_shape=(30,)), Dropout(0.3),
                     Dense(64, activation="relu"), BatchNormalization(),
                     Dense(10, activation="softmax")]), rand(rng, (17, 30), "float32")),
        (Sequential([Embedding(500, 16, input_length=12), LSTM(24),
                     Dense(1, activation="sigmoid")]),
         rng.integers(0, 500, (9, 12)).astype(np.float32)),
        # kc_cuda_rnn's GRU and SimpleRNN cells (kcomp/lowering/rules/recurrent.py)
        (Sequential([GRU(20, input_shape=(7, 5), reset_after=True, return_sequences=True)]),
         rand(rng, (3, 7, 5), "float32")),
        (Sequential([GRU(12, input_shape=(7, 5)), Dense(3)]), rand(rng, (4, 7, 5), "float32")),
        (Sequential([GRU(9, input_shape=(6, 4), go_backwards=True, activation="relu",
                         recurrent_activation="hard_sigmoid", return_sequences=True)]),
         rand(rng, (2, 6, 4), "float32")),
        (Sequential([SimpleRNN(16, input_shape=(8, 3), return_sequences=True),
                     SimpleRNN(5, activation="relu")]), rand(rng, (5, 8, 3), "float32")),
        # the fused LSTM kernel's variants (kcomp/lowering/rules/recurrent.py), and one it declines
        (Sequential([LSTM(33, input_shape=(6, 5), return_sequences=True, use_bias=False,
                          recurrent_activation="hard_sigmoid")]), rand(rng, (4, 6, 5), "float32")),
        (Sequential([LSTM(8, input_shape=(1, 3))]), rand(rng, (1, 1, 3), "float32")),
        (Sequential([LSTM(8, input_shape=(6, 3), go_backwards=True)]),
         rand(rng, (2, 6, 3), "float32")),
        # convolutions through the implicit GEMM (bias and relu in its epilogue)
        (Sequential([Conv2D(8, 3, activation="relu", input_shape=(12, 11, 3)), MaxPooling2D(),
                     Conv2D(16, 3, strides=2, padding="same", activation="relu"), Flatten(),
                     Dense(10, activation="softmax")]), rand(rng, (5, 12, 11, 3), "float32")),
        (Sequential([Conv2D(6, (3, 2), data_format="channels_first", input_shape=(3, 9, 8)),
                     Flatten(), Dense(4)]), rand(rng, (2, 3, 9, 8), "float32")),
        (Sequential([Conv1D(5, 4, padding="causal", dilation_rate=2, activation="tanh",
                            input_shape=(20, 7))]), rand(rng, (3, 20, 7), "float32")),
    ]
    for model, x in models:
        kcomp.set_device("cpu")
        want = model.predict(x)
        kcomp.set_device("cuda")
        try:
            model.predict_function = None  # Keras compiles its predict function again
            got = model.predict(x)
        finally:
            kcomp.set_device(None)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_conv_and_pool(gpu, fmt):
    rng = np.random.default_rng(11)
    shape = (3, 9, 10, 4) if fmt == "channels_last" else (3, 4, 9, 10)
    x = K.placeholder(shape)
    w = K.placeholder((3, 3, 4, 5))
    dw = K.placeholder((3, 2, 4, 2))
    outs = [K.pool2d(x, (2, 2), strides=(2, 2), pool_mode="max", data_format=fmt),
            K.pool2d(x, (3, 3), padding="same", pool_mode="avg", data_format=fmt),
            K.depthwise_conv2d(x, dw, padding="same", data_format=fmt)]
    if fmt == "channels_last":
        outs += [K.conv2d(x, w, padding="same"), K.conv2d(x, w, strides=(2, 1)),
                 K.conv2d(x, w, dilation_rate=(2, 2), padding="same"),
                 K.conv1d(K.reshape(x, (3, 90, 4)), K.reshape(w[0], (3, 4, 5)))]
    check([(x, rand(rng, shape, "float32")), (w, rand(rng, (3, 3, 4, 5), "float32")),
           (dw, rand(rng, (3, 2, 4, 2), "float32"))], outs, rtol=1e-4)


# float32 channels_last convolutions: the implicit GEMM (kc_cuda_conv). (input, kernel, kwargs):
# channels not a multiple of 4 (per-element patch reads), output channels not a multiple of 4,
# strides, dilations, padding, 1-3 spatial dims, one pixel, and tiles of 128x128 and 128x64 (m
# large)
IMPLICIT_GEMM_CONVS = [
    ((1, 1, 1, 1), (1, 1, 1, 1), dict(strides=(2, 2))),
    ((2, 7, 9, 3), (3, 3, 3, 5), dict(padding="same")),
    ((3, 11, 10, 8), (3, 2, 8, 17), dict(strides=(2, 3))),
    ((2, 12, 13, 4), (3, 3, 4, 6), dict(dilation_rate=(2, 3), padding="same")),
    ((2, 16, 15, 12), (5, 5, 12, 130), dict(padding="same")),
    ((1, 4, 4, 5), (4, 4, 5, 3), {}),
    ((32, 32, 32, 16), (3, 3, 16, 256), dict(padding="same")),
    ((32, 24, 24, 8), (3, 3, 8, 61), dict(padding="same")),
    ((3, 50, 6), (5, 6, 7), dict(padding="causal", dilation_rate=2)),
    ((4, 61, 8), (4, 8, 9), dict(strides=3)),
    ((2, 5, 6, 7, 4), (2, 3, 2, 4, 5), dict(strides=(1, 2, 1), padding="same")),
    ((2, 5, 9, 8), (3, 3, 5, 6), dict(strides=(2, 1), padding="same",
                                      data_format="channels_first")),
]


@pytest.mark.parametrize("case", IMPLICIT_GEMM_CONVS, ids=lambda c: "x".join(map(str, c[0])))
def test_conv_implicit_gemm(gpu, case):
    """conv1d/2d/3d as the implicit GEMM (channels_first between transposes), alone, with a
    bias and relu (the library's epilogue) and with another elementwise epilogue, against the
    reference interpreter."""
    shape, kshape, kw = case
    rng = np.random.default_rng(len(shape) * 100 + kshape[-1])
    conv = {3: K.conv1d, 4: K.conv2d, 5: K.conv3d}[len(shape)]
    x, w, b = K.placeholder(shape), K.placeholder(kshape), K.placeholder(kshape[-1:])
    y = conv(x, w, **kw)
    fmt = kw.get("data_format", "channels_last")
    outs = [y, K.relu(K.bias_add(conv(x, w, **kw), b, data_format=fmt)),
            K.tanh(y) * 2.0 + (b if fmt == "channels_last" else 0.5)]
    check([(x, rand(rng, shape, "float32")), (w, rand(rng, kshape, "float32")),
           (b, rand(rng, kshape[-1:], "float32"))], outs, rtol=1e-4)


def test_tanh_and_sigmoid_accuracy(gpu):
    """float32 tanh and sigmoid use the hardware's approximate exp2 and reciprocal (rt.h): within
    a few ulp of float64 over the whole range, exact at 0, -0, the infinities and NaN."""
    ramp = np.geomspace(1e-38, 40, 1 << 16)
    x = np.concatenate([np.linspace(-30, 30, 1 << 20), ramp, -ramp,
                        [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, 0.625, -0.625, 0.62499994]])
    x = x.astype(np.float32)
    p = K.placeholder((None,))
    th, sg = K.function([p], [K.tanh(p), K.sigmoid(p)], device="cuda")([x])
    x64 = x.astype(np.float64)
    with np.errstate(over="ignore"):
        wants = (np.tanh(x64), 1.0 / (1.0 + np.exp(-x64)))
    for name, got, want in (("tanh", th, wants[0]), ("sigmoid", sg, wants[1])):
        fin = np.isfinite(x)
        ulp = np.spacing(np.abs(want[fin]).astype(np.float32)).astype(np.float64)
        err = np.abs(got[fin] - want[fin]) / ulp
        assert err.max() <= 8, (name, x[fin][err.argmax()], err.max())
        np.testing.assert_array_equal(got[~fin], want[~fin].astype(np.float32), err_msg=name)
    assert np.signbit(th[x.size - 8]) and th[x.size - 8] == 0  # tanh(-0) = -0


def test_print_tensor_on_the_gpu(gpu, capfd):
    """K.print_tensor in a GPU function prints the message and the value to stderr as the CPU
    build does, once per call, and passes the value on."""
    x = K.placeholder((None, 3))
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    outs = [K.print_tensor(x * 2.0, message="twice x:") + 1.0]
    cpu = K.function([x], outs, device="cpu")([a])
    printed_cpu = capfd.readouterr().err
    gpu_out = K.function([x], outs, device="cuda")([a])
    printed_gpu = capfd.readouterr().err
    np.testing.assert_array_equal(gpu_out[0], cpu[0])
    assert printed_gpu == printed_cpu and "twice x:" in printed_gpu and "10." in printed_gpu
