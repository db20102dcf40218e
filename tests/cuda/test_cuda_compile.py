"""CUDA code that does not compile never lands: on any machine with nvcc (no GPU needed), the CUDA
kernel library and generated code for a corpus of graphs that uses every CUDA template are
compiled for sm_80 and sm_90. Also: choosing the device, and the error where no GPU exists."""
import os
import subprocess

import numpy as np
import pytest

import kcomp
import kcomp.backend as K
from kcomp.compiler import generate, prepare_function
from kcomp.ir.graph import Graph

ARCHS = ("80", "90")


def _nvcc():
    from kcomp.cuda.toolkit import CudaUnavailableError, nvcc
    try:
        return nvcc()
    except CudaUnavailableError:
        return None


needs_nvcc = pytest.mark.skipif(_nvcc() is None, reason="no nvcc (CUDA toolkit) on this machine")


def _lstm_step(x, states):
    h, c = states
    z = K.dot(x, K.constant(np.ones((3, 8), np.float32) * 0.1)) + \
        K.dot(h, K.constant(np.ones((2, 8), np.float32) * 0.2))
    i, f, g, o = (z[:, k * 2:(k + 1) * 2] for k in range(4))
    c = K.sigmoid(f) * c + K.sigmoid(i) * K.tanh(g)
    h = K.sigmoid(o) * K.tanh(c)
    return h, [h, c]


def corpus():
    """(name, inputs, outputs) graphs that together reach every template in
    kcomp/templates/cuda and the dtypes they specialise on."""
    out = []
    for dt in ("float16", "float32", "float64", "int32", "uint8", "bool"):
        a, b = K.placeholder((None, 5), dtype=dt), K.placeholder((5,), dtype=dt)
        if dt == "bool":
            outs = [K.cast(a, "float32"), K.all(a, axis=1), K.any(a, axis=0)]
        elif dt.startswith("float"):
            outs = [K.tanh(a * b + 1) * K.sigmoid(a), K.softplus(a), a % b, a // b, K.elu(a),
                    K.softmax(a), K.sum(a, 1), K.max(a, 0), K.var(a, 1), K.logsumexp(a, 0),
                    K.argmax(a, 1), K.cumsum(a, 0), K.cumprod(a, 1), K.dot(a, K.transpose(a)),
                    K.relu(K.dot(a, K.transpose(a)) + 1.0), K.mean(a, 1), K.prod(a, 0),
                    K.std(a, 0), K.argmin(a, 0), K.min(a, 1),
                    K.sum(K.square(a - b), 1)]  # a reduction prologue (stored on CUDA)
        else:
            outs = [a * b + a // b - a % b, K.sum(a, 1), K.max(a, 0), K.argmax(a, 1),
                    K.dot(a, K.transpose(a)), K.cumsum(a, 1)]
        out.append((f"ops_{dt}", [a, b], outs))
    x, y = K.placeholder((4, 3, 5)), K.placeholder((4, 5, 6))
    out.append(("batch_dot", [x, y], [K.batch_dot(x, y, axes=(2, 1)),
                                      K.batch_dot(x, K.permute_dimensions(y, (0, 2, 1)), (2, 2))]))
    ref, idx = K.placeholder((50, 8)), K.placeholder((None, 5), dtype="int32")
    gathered = K.gather(ref, idx)
    out.append(("gather_scatter", [ref, idx],
                [gathered, K.gradients(K.sum(gathered * 2.0), [ref])[0],
                 K.temporal_padding(gathered, (1, 2)), K.arange(7), K.shape(idx),
                 K.random_uniform((3, 4), seed=1), K.random_normal((3, 4), seed=2),
                 K.dropout(ref, 0.5, seed=3), K.one_hot(idx, 9),
                 K.print_tensor(gathered * 3.0, message="gathered")]))
    img = K.placeholder((None, 9, 8, 3))
    out.append(("conv", [img], [
        K.conv2d(img, K.constant(np.ones((3, 3, 3, 4), np.float32)), padding="same"),
        K.pool2d(img, (2, 2), strides=(2, 2), pool_mode="max"),
        K.pool2d(img, (3, 3), padding="same", pool_mode="avg"),
        K.depthwise_conv2d(img, K.constant(np.ones((3, 3, 3, 2), np.float32))),
        K.pool2d(img, (2, 2), pool_mode="max", data_format="channels_first"),
        # the implicit GEMM with a fused bias and relu; conv1d and conv3d through it too
        K.relu(K.bias_add(K.conv2d(img, K.constant(np.ones((3, 3, 3, 8), np.float32)),
                                   strides=(2, 2)), K.constant(np.ones(8, np.float32)))),
        K.conv1d(K.reshape(img, (-1, 72, 3)), K.constant(np.ones((5, 3, 4), np.float32)),
                 dilation_rate=2),
        K.conv3d(K.reshape(img, (-1, 3, 3, 8, 3)),
                 K.constant(np.ones((2, 2, 2, 3, 4), np.float32)), padding="same")]))
    for dt in ("float32", "float64"):  # convolutions' other kernels: gradients and transposes
        cf, cl = K.placeholder((None, 3, 9, 8), dtype=dt), K.placeholder((None, 9, 8, 3), dtype=dt)
        w, tw = K.placeholder((3, 2, 3, 4), dtype=dt), K.placeholder((3, 3, 5, 3), dtype=dt)
        dw, v = K.placeholder((3, 3, 3, 2), dtype=dt), K.placeholder((None, 2, 4, 5, 4), dtype=dt)
        ys = [K.conv2d(cf, w, strides=(2, 1), padding="same", data_format="channels_first"),
              K.conv2d(cl, w, dilation_rate=(2, 2), padding="same"),
              K.pool2d(cl, (2, 2), strides=(2, 2), pool_mode="max"),
              K.pool2d(cf, (3, 3), padding="same", pool_mode="avg", data_format="channels_first"),
              K.depthwise_conv2d(cl, dw, padding="same"),
              K.depthwise_conv2d(cf, dw, strides=(2, 2), data_format="channels_first"),
              K.pool3d(v, (2, 2, 2), padding="same", pool_mode="max", data_format="channels_first")]
        loss = sum(K.sum(y * y) for y in ys)
        out.append((f"conv_grads_{dt}", [cf, cl, w, tw, dw, v], [
            ys[0], K.conv2d_transpose(cf, tw, (2, 5, 18, 16), strides=(2, 2), padding="same",
                                      data_format="channels_first"),
            K.conv2d_transpose(cl, tw, (2, 11, 10, 5))] + K.gradients(loss, [cf, cl, w, dw, v])))
    for dt in ("float16", "float32", "float64"):  # CTC
        y = K.placeholder((None, 6, 4), dtype=dt)
        labels = K.placeholder((None, 3), dtype="int32")
        flabels = K.placeholder((None, 3))
        lens = K.placeholder((None,), dtype="int32")
        cost = K.ctc_batch_cost(labels, y, lens, lens)
        greedy, greedy_lp = K.ctc_decode(y, lens)
        beam, beam_lp = K.ctc_decode(y, lens, greedy=False, beam_width=3, top_paths=2)
        out.append((f"ctc_{dt}", [y, labels, flabels, lens], [
            cost, K.gradients(K.sum(cost), [y])[0], greedy[0], greedy_lp, *beam, beam_lp,
            *K.ctc_label_dense_to_sparse(labels, lens),
            *K.ctc_label_dense_to_sparse(flabels, lens)]))
    seq = K.placeholder((None, 6, 3))
    last, outputs, states = K.rnn(_lstm_step, seq, [K.zeros((2, 2)), K.zeros((2, 2))])
    out.append(("rnn", [seq], [last, outputs]))
    # a Keras LSTM layer's loop: one fused kernel (kcomp/lowering/rules/recurrent.py)
    xw = K.placeholder((None, 6, 8))
    w_rec, bias = K.variable(np.ones((2, 8), np.float32)), K.variable(np.ones(8, np.float32))

    def keras_lstm_step(x, states):
        h, c = states
        z = x + K.dot(h, w_rec) + bias
        i, f, g, o = (z[:, k * 2:(k + 1) * 2] for k in range(4))
        c = K.sigmoid(f) * c + K.sigmoid(i) * K.tanh(g)
        h = K.sigmoid(o) * K.tanh(c)
        return h, [h, c]
    zeros = K.zeros_like(xw[:, 0, :2])
    last, outputs, _ = K.rnn(keras_lstm_step, xw, [zeros, zeros])
    out.append(("lstm", [xw], [last, outputs]))
    # GRU (reset after, with a recurrent bias; reset before) and SimpleRNN loops: kc_cuda_rnn
    xg = K.placeholder((None, 6, 6))
    w3, b3 = K.variable(np.ones((2, 6), np.float32)), K.variable(np.ones(6, np.float32))

    def gru_step(x, states, reset_after=True):
        h = states[0]
        zr = K.dot(h, w3) + b3 if reset_after else K.dot(h, w3[:, :4])
        z, r = K.sigmoid(x[:, :2] + zr[:, :2]), K.sigmoid(x[:, 2:4] + zr[:, 2:4])
        cand = r * zr[:, 4:] if reset_after else K.dot(r * h, w3[:, 4:])
        h = z * h + (1 - z) * K.tanh(x[:, 4:] + cand)
        return h, [h]

    def simple_step(x, states):
        h = K.relu(x + K.dot(states[0], w3[:, :2]))
        return h, [h]
    zeros = K.zeros_like(xg[:, 0, :2])
    for name, step in (("gru", gru_step), ("gru_reset_before", lambda x, s: gru_step(x, s, False)),
                       ("simple_rnn", simple_step)):
        last, outputs, _ = K.rnn(step, xg if name != "simple_rnn" else xg[:, :, :2], [zeros])
        out.append((name, [xg], [last, outputs]))
    return out


@needs_nvcc
@pytest.mark.parametrize("arch", ARCHS)
def test_generated_cuda_compiles(arch, tmp_path):
    from kcomp.cuda import jit
    tc = jit.toolchain(arch)
    templates = set()
    for name, inputs, outputs in corpus():
        gen = generate(prepare_function(Graph(tuple(inputs), tuple(outputs), ())), name,
                       target="cuda")
        templates |= {k.template for k in gen.plan.kernels}
        templates |= {b.template for k in gen.plan.kernels for b in k.ctx.get("loop_body", ())}
        work = tmp_path / f"{name}-{arch}"
        work.mkdir()
        jit.build(tc, gen.source.replace("@@KCOMP_KEY@@", "0" * 64), str(work),
                  str(tmp_path / "failed"))
        assert (work / "lib.so").stat().st_size > 0
    shipped = {f[:-3] for f in os.listdir(os.path.join(os.path.dirname(kcomp.__file__),
                                                       "templates", "cuda"))
               if f.endswith(".j2") and f != "module.cu.j2"}
    assert shipped <= templates, f"templates no graph of the corpus reaches: {shipped - templates}"


@needs_nvcc
@pytest.mark.parametrize("arch", ARCHS)
def test_kernel_library_compiles(arch):
    from kcomp.cuda.runtime import build_library
    path = build_library(arch)
    assert os.path.getsize(path) > 0


@needs_nvcc
def test_bench_elementwise_access_compiles(tmp_path):
    """bench/gpu_elementwise_access.cu (the experiment behind elementwise.j2's vector path)
    still builds against kcomp's headers."""
    from kcomp import _paths
    from kcomp.cuda import jit
    src = os.path.join(os.path.dirname(__file__), "..", "..", "bench",
                       "gpu_elementwise_access.cu")
    if not os.path.exists(src):
        pytest.skip("not a source checkout")
    p = subprocess.run([jit.toolchain("90").nvcc, "-std=c++17", "-O3", "-arch=sm_90",
                        f"-I{_paths.include_dir()}", "-o", str(tmp_path / "ew"), src],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]


def test_a_kernel_without_cuda_template_names_itself():
    """Every op has a CUDA lowering now; a kernel whose template had none would be named."""
    from types import SimpleNamespace
    from kcomp.lowering.render import _template, environment
    with pytest.raises(NotImplementedError, match="CUDA kernel for frobnicate"):
        _template(environment(), "cuda", SimpleNamespace(template="frobnicate",
                                                         label="frobnicate"))


def test_device_choice(monkeypatch, tmp_path):
    from kcomp.device import get_device
    monkeypatch.delenv("KCOMP_DEVICE", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert get_device() == "cpu"
    (tmp_path / "keras.json").write_text('{"backend": "kcomp.backend", "kcomp_device": "cuda"}')
    assert get_device() == "cuda"
    monkeypatch.setenv("KCOMP_DEVICE", "cpu")
    assert get_device() == "cpu"
    kcomp.set_device("cuda:0")
    try:
        assert kcomp.get_device() == "cuda"
    finally:
        kcomp.set_device(None)
    with pytest.raises(ValueError, match="unknown device"):
        kcomp.set_device("tpu")
    monkeypatch.setenv("KCOMP_DEVICE", "gpu")
    with pytest.raises(ValueError, match="KCOMP_DEVICE"):
        get_device()


def test_cuda_without_gpu_is_a_clear_error(monkeypatch):
    from kcomp.cuda.toolkit import CudaUnavailableError, gpu_present
    if gpu_present():
        pytest.skip("this machine has a GPU")
    monkeypatch.delenv("KCOMP_CUDA_ARCH", raising=False)
    x = K.placeholder((3,))
    with pytest.raises(CudaUnavailableError, match="asked for a CUDA device"):
        K.function([x], [x * 2.0], device="cuda")
    # the CPU never needs CUDA
    np.testing.assert_allclose(K.function([x], [x * 2.0])([np.ones(3, np.float32)])[0], 2.0)
    # README's main job asked to run on a GPU says why it cannot, without a traceback
    import sys
    p = subprocess.run([sys.executable, "-m", "kcomp", "demo", "--device", "cuda"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600)
    assert p.returncode == 2 and "asked for a CUDA device" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr


def test_dense_epilogues_go_to_the_library_gemm():
    """dot + bias row [+ relu / sigmoid / tanh / hard_sigmoid], stored once, is one library GEMM
    call with its own epilogue on the GPU; anything else keeps a generated epilogue."""
    x = K.placeholder((None, 16))
    w = K.variable(np.ones((16, 8), np.float32))
    b = K.variable(np.ones(8, np.float32))
    z = K.dot(x, w) + b
    cases = [([K.relu(z)], "KC_ACT_RELU", True),
             ([K.sigmoid(b + K.dot(x, w))], "KC_ACT_SIGMOID", True),
             ([K.tanh(z)], "KC_ACT_TANH", True), ([z], "KC_ACT_NONE", True),
             ([K.relu(z, max_value=6.0)], "KC_ACT_NONE", False),
             ([K.relu(K.dot(x, w) + 1.0)], "KC_ACT_NONE", False),
             ([z, K.tanh(z)], "KC_ACT_NONE", False)]
    for outputs, act, fused in cases:
        plan = generate(prepare_function(Graph((x,), tuple(outputs), ())), "dense",
                        target="cuda").plan
        gemm = next(k for k in plan.kernels if k.template == "gemm")
        assert (gemm.ctx["act"], gemm.ctx["bias_slot"] >= 0, not gemm.ctx["epi"]) == \
            (act, fused, fused), (outputs, gemm.ctx["act"])


def test_elementwise_vector_path():
    """Elementwise kernels whose operands are read whole or broadcast from one element get the
    vector path (elementwise.j2: kc_vec4 accesses where the launch finds the buffers aligned);
    a broadcast along a middle axis or a strided slice keeps the scalar one."""
    a, b = K.placeholder((None, 6)), K.placeholder((None, 6), dtype="float64")
    c, m = K.placeholder((1,)), K.placeholder((6,))
    # (output, alignments of the vector-read inputs and the output, in bytes)
    cases = [(K.tanh(a) * c + 2.0, [16, 16]),             # c: one element, broadcast
             (K.cast(b, "float32") * 2.0, [16, 32]),      # mixed dtypes: their own widths
             (a * m, None),                               # m is broadcast along the rows
             (a[:, ::2] + 1.0, None)]                     # a strided slice
    for y, widths in cases:
        plan = generate(prepare_function(Graph((a, b, c, m), (y,), ())), "vec",
                        target="cuda").plan
        k = next(k for k in plan.kernels if k.template == "elementwise")
        vec = k.ctx["vec"]
        assert (vec is not None) == (widths is not None), y
        if widths:
            assert sorted(w for _, w in vec["aligned"]) == widths
            assert len(vec["loads"]) == len(widths) - 1 and len(vec["stores"]) == 1


def test_tf32_only_for_float32_products(monkeypatch):
    """KCOMP_CUDA_TF32=1 lets float32 products use TF32; other dtypes keep their own precision
    (the library refuses TF32 for them)."""
    monkeypatch.setenv("KCOMP_CUDA_TF32", "1")
    for dtype, want in (("float32", 1), ("float64", 0), ("float16", 0)):
        x = K.placeholder((None, 8), dtype=dtype)
        plan = generate(prepare_function(Graph((x,), (K.dot(x, K.transpose(x)),), ())), "tf32",
                        target="cuda").plan
        assert next(k for k in plan.kernels if k.template == "gemm").ctx["precision"] == want


def test_float32_convs_go_to_the_implicit_gemm():
    """conv2d (+ bias + relu, in the library GEMM's epilogue), conv1d and conv3d of float32
    data are kc_cuda_conv calls (channels_first ones between transposes); float64 ones keep
    their direct kernels."""
    img = K.placeholder((None, 9, 8, 4))
    w = K.variable(np.ones((3, 3, 4, 8), np.float32))
    b = K.variable(np.ones(8, np.float32))
    y = K.relu(K.bias_add(K.conv2d(img, w, strides=(2, 1), padding="same"), b))
    plan = generate(prepare_function(Graph((img,), (y,), ())), "conv", target="cuda").plan
    gemm = next(k for k in plan.kernels if k.template == "gemm")
    assert gemm.ctx["conv"]["sh"] == 2 and gemm.ctx["conv"]["ph"] == 1
    # the geometry of conv3d (taps 2x3x2, strides (1, 2, 1), "same": 1 zero after along each
    # axis, none before) and of a dilated causal conv1d (4 taps of reach 2: 8 zeros before)
    x3, x1 = K.placeholder((None, 5, 6, 7, 4)), K.placeholder((None, 50, 6))
    for y, want in (
            (K.conv3d(x3, K.variable(np.ones((2, 3, 2, 4, 5), np.float32)), strides=(1, 2, 1),
                      padding="same"),
             dict(c=4, d="5", od="5", kd=2, sd=1, pd=0, dd=1, h="6", oh="3", kh=3, sh=2, ph=0,
                  dh=1, w="7", ow="7", kw=2, sw=1, pw=0, dw=1)),
            (K.conv1d(x1, K.variable(np.ones((5, 6, 7), np.float32)), padding="causal",
                      dilation_rate=2),
             dict(c=6, d="1", od="1", kd=1, sd=1, pd=0, dd=1, h="1", oh="1", kh=1, sh=1, ph=0,
                  dh=1, w="50", ow="50", kw=5, sw=1, pw=8, dw=2))):
        x = x3 if y.ndim == 5 else x1
        plan = generate(prepare_function(Graph((x,), (y,), ())), "conv", target="cuda").plan
        conv = next(k for k in plan.kernels if k.template == "gemm").ctx["conv"]
        assert conv == want
    assert (gemm.ctx["act"], gemm.ctx["bias_slot"] >= 0, gemm.ctx["epi"]) == \
        ("KC_ACT_RELU", True, None)
    w64 = K.variable(np.ones((3, 3, 4, 8)), dtype="float64")
    for shape, ker, fmt, implicit in (((None, 9, 8, 4), w64, "channels_last", False),
                                      ((None, 4, 9, 8), w64, "channels_first", False),
                                      ((None, 4, 9, 8), w, "channels_first", True)):
        x = K.placeholder(shape, dtype=K.dtype(ker))
        plan = generate(prepare_function(Graph((x,), (K.conv2d(x, ker, data_format=fmt),), ())),
                        "conv", target="cuda").plan
        assert any("conv" in k.ctx for k in plan.kernels if k.template == "gemm") == implicit, \
            (fmt, K.dtype(ker))


def test_keras_conv_layers_fuse_into_the_implicit_gemm():
    """Keras Conv2D/Conv1D layers (convolution, bias_add, activation) are one kc_cuda_conv
    call each, with the bias and activation in the library GEMM's epilogue."""
    os.environ.setdefault("KERAS_BACKEND", "kcomp.backend")
    pytest.importorskip("keras")
    from keras.layers import Conv1D, Conv2D, Flatten, MaxPooling2D
    from keras.models import Sequential
    for model, acts in (
            (Sequential([Conv2D(8, 3, activation="relu", input_shape=(12, 11, 3)),
                         MaxPooling2D(), Conv2D(16, 3, strides=2, padding="same",
                                                activation="sigmoid"), Flatten()]),
             ["KC_ACT_RELU", "KC_ACT_SIGMOID"]),
            (Sequential([Conv1D(5, 4, padding="causal", dilation_rate=2, activation="tanh",
                                input_shape=(20, 7))]), ["KC_ACT_TANH"])):
        plan = generate(prepare_function(Graph(tuple(model.inputs), tuple(model.outputs), ())),
                        "keras_conv", target="cuda").plan
        convs = [k for k in plan.kernels if k.template == "gemm" and k.ctx["conv"]]
        assert [k.ctx["act"] for k in convs] == acts
        assert all(k.ctx["bias_slot"] >= 0 and not k.ctx["epi"] for k in convs)


def test_keras_recurrent_layers_run_as_one_rnn_call():
    """Keras LSTM, GRU (both reset_after forms) and SimpleRNN layers each become one kc_cuda_rnn
    call (kcomp/lowering/rules/recurrent.py) with the cell, activations and weights they use."""
    os.environ.setdefault("KERAS_BACKEND", "kcomp.backend")
    pytest.importorskip("keras")
    from keras.layers import GRU, LSTM, SimpleRNN
    from keras.models import Sequential
    tanh, sigmoid = "KC_ACT_TANH", "KC_ACT_SIGMOID"
    for layer, cell, act, rec, extra in (
            (LSTM(5, input_shape=(4, 3)), "KC_RNN_LSTM", tanh, sigmoid, "c0"),
            (GRU(5, input_shape=(4, 3), reset_after=True), "KC_RNN_GRU", tanh, sigmoid, "b_rec"),
            (GRU(5, input_shape=(4, 3), activation="relu", recurrent_activation="hard_sigmoid",
                 return_sequences=True), "KC_RNN_GRU_RESET_BEFORE", "KC_ACT_RELU",
             "KC_ACT_HARD_SIGMOID", "w2"),
            (SimpleRNN(5, input_shape=(4, 3), go_backwards=True), "KC_RNN_SIMPLE", tanh, None,
             None)):
        model = Sequential([layer])
        plan = generate(prepare_function(Graph(tuple(model.inputs), tuple(model.outputs), ())),
                        "keras_rnn", target="cuda").plan
        assert not any(k.template == "loop" for k in plan.kernels), layer
        (k,) = [k for k in plan.kernels if k.template == "rnn"]
        assert (k.ctx["cell"], k.ctx["act"]) == (cell, act), layer
        assert rec is None or k.ctx["rec"] == rec
        for field in ("c0", "b_rec", "w2"):
            assert (k.ctx[field] >= 0) == (field == extra), (layer, field)

