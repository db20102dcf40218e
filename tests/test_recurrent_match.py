"""The recurrent-layer matchers (kcomp/lowering/rules/recurrent.py): they recognise exactly
Keras 2.3.1's LSTM, GRU (both reset_after forms) and SimpleRNN time loops, and their reading of
the loop (gate order, weights, biases, activations) computes what the loop computes, checked
against the numpy reference interpreter. A matched GRU or SimpleRNN loop runs on a GPU as one
kc_cuda_rnn call (tests/cuda); on the CPU it keeps the generic loop. A matched loop runs as
one fused kernel: on the CPU kc_api.lstm, checked here against the layer computed from its
weights in float64 (tests/test_rnn_kernels.py: every instruction set); on a GPU kc_cuda_lstm
(tests/cuda)."""
import os

import numpy as np
import pytest

from kcomp.compiler import prepare_function
from kcomp.ir.graph import Graph
from kcomp.ir.interpret import evaluate
from kcomp.ir.passes import optimize
from kcomp.lowering.rules.recurrent import match_gru, match_lstm, match_recurrent, match_simple_rnn

os.environ.setdefault("KERAS_BACKEND", "kcomp.backend")
keras = pytest.importorskip("keras")
from keras.layers import GRU, LSTM, Masking, SimpleRNN  # noqa: E402
from keras.models import Sequential  # noqa: E402


def _loop(model):
    g = optimize(prepare_function(Graph(tuple(model.inputs), tuple(model.outputs), ())))
    loops = [n for n in g.nodes() if n.op.name == "loop"]
    assert len(loops) == 1
    return g, loops[0]


def _loop_values(model, seed, batch):
    """The model's loop, its optimized body, and the values of the loop's inputs and outputs
    (reference interpreter) for random weights and a random input of `batch` rows."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(size=w.shape).astype(np.float32) * 0.5
                       for w in model.get_weights()])
    g, loop = _loop(model)
    x = rng.normal(size=(batch,) + tuple(model.input_shape[1:])).astype(np.float32)
    values, _ = evaluate(Graph(g.inputs, tuple(loop.inputs) + tuple(loop.outputs), ()), [x])
    return loop, optimize(loop.attrs["body"]), values


def _sig(x, hard):
    return np.clip(0.2 * x + 0.5, 0, 1) if hard else 1 / (1 + np.exp(-x))


@pytest.mark.parametrize("kw", [{}, {"recurrent_activation": "hard_sigmoid"},
                                {"use_bias": False}, {"return_sequences": True},
                                {"unit_forget_bias": False}])
def test_keras_lstm_is_matched_and_means_what_the_loop_computes(kw):
    units, steps = 7, 5
    loop, body, values = _loop_values(Sequential([LSTM(units, input_shape=(steps, 3), **kw)]),
                                      0, 4)
    m = match_lstm(loop, body)
    assert m is not None and m.units == units
    assert m.rec == kw.get("recurrent_activation", "sigmoid")
    assert (m.bias is None) == (kw.get("use_bias", True) is False)
    xw, h, c = (v.astype(np.float64) for v in values[:3])
    w = values[m.w_rec].astype(np.float64)
    b = values[m.bias].astype(np.float64) if m.bias is not None else 0.0
    h_seq = []
    for t in range(steps):
        z = xw[t] + h @ w + b
        i, f, gg, o = (z[:, k * units:(k + 1) * units] for k in range(4))
        hard = m.rec == "hard_sigmoid"
        c = _sig(f, hard) * c + _sig(i, hard) * np.tanh(gg)
        h = _sig(o, hard) * np.tanh(c)
        h_seq.append(h)
    n = len(loop.inputs)
    got_h, got_c, got_seq = values[n:n + 3]
    np.testing.assert_allclose(got_h, h, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_c, c, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_seq, np.stack(h_seq), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layers", [
    lambda: [LSTM(6, input_shape=(4, 3), activation="relu")],
    lambda: [LSTM(6, input_shape=(4, 3), implementation=1)],
    lambda: [Masking(input_shape=(4, 3)), LSTM(6)],
    lambda: [GRU(6, input_shape=(4, 3))],
    lambda: [SimpleRNN(6, input_shape=(4, 3))],
], ids=["relu", "implementation1", "masking", "gru", "simple_rnn"])
def test_other_loops_are_not_matched(layers):
    _, loop = _loop(Sequential(layers()))
    assert match_lstm(loop, optimize(loop.attrs["body"])) is None


def _acts(name):
    return {"tanh": np.tanh, "sigmoid": lambda v: _sig(v, False),
            "hard_sigmoid": lambda v: _sig(v, True), "relu": lambda v: np.maximum(v, 0),
            "linear": lambda v: v}[name]


GRU_CASES = [
    ({}, "gru_reset_before"),
    ({"reset_after": True}, "gru"),
    ({"reset_after": True, "use_bias": False}, "gru"),
    ({"use_bias": False, "return_sequences": True}, "gru_reset_before"),
    ({"recurrent_activation": "hard_sigmoid", "activation": "relu"}, "gru_reset_before"),
    ({"reset_after": True, "activation": "sigmoid", "go_backwards": True}, "gru"),
]


@pytest.mark.parametrize("kw,cell", GRU_CASES)
def test_keras_gru_is_matched_and_means_what_the_loop_computes(kw, cell):
    units, steps = 6, 5
    loop, body, values = _loop_values(Sequential([GRU(units, input_shape=(steps, 3), **kw)]),
                                      1, 4)
    m = match_gru(loop, body)
    assert m is not None and m.cell == cell and m.units == units
    assert match_recurrent(loop, body, "cuda") == m and match_recurrent(loop, body, "cpu") is None
    assert m.rec == kw.get("recurrent_activation", "sigmoid")
    assert m.act == kw.get("activation", "tanh")
    assert (m.b_rec is not None) == (cell == "gru" and kw.get("use_bias", True))
    xw, h = (v.astype(np.float64) for v in values[:2])
    w = values[m.w_rec].astype(np.float64)
    rec, act = _acts(m.rec), _acts(m.act)
    u = units
    seq = []
    for t in (range(steps - 1, -1, -1) if loop.attrs["reverse"] else range(steps)):
        x_t = xw[t]
        if cell == "gru":
            zr = h @ w + (values[m.b_rec] if m.b_rec is not None else 0.0)
            z, r = rec(x_t[:, :u] + zr[:, :u]), rec(x_t[:, u:2 * u] + zr[:, u:2 * u])
            hh = act(x_t[:, 2 * u:] + r * zr[:, 2 * u:])
        else:
            zr = h @ w
            z, r = rec(x_t[:, :u] + zr[:, :u]), rec(x_t[:, u:2 * u] + zr[:, u:2 * u])
            hh = act(x_t[:, 2 * u:] + (r * h) @ values[m.w_rec2].astype(np.float64))
        h = z * h + (1 - z) * hh
        seq.append(h)
    n = len(loop.inputs)
    got_h, got_seq = values[n:n + 2]
    np.testing.assert_allclose(got_h, h, rtol=1e-5, atol=1e-6)
    want_seq = np.stack(seq[::-1] if loop.attrs.get("stack_at_index") else seq)
    np.testing.assert_allclose(got_seq, want_seq, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kw", [{}, {"activation": "relu", "use_bias": False},
                                {"activation": "linear"}, {"activation": "hard_sigmoid"}])
def test_keras_simple_rnn_is_matched_and_means_what_the_loop_computes(kw):
    units, steps = 5, 4
    loop, body, values = _loop_values(
        Sequential([SimpleRNN(units, input_shape=(steps, 3), **kw)]), 2, 3)
    m = match_simple_rnn(loop, body)
    assert m is not None and m.cell == "simple" and m.act == kw.get("activation", "tanh")
    xw, h = (v.astype(np.float64) for v in values[:2])
    w, act = values[m.w_rec].astype(np.float64), _acts(m.act)
    seq = []
    for t in range(steps):
        h = act(xw[t] + h @ w)
        seq.append(h)
    n = len(loop.inputs)
    np.testing.assert_allclose(values[n], h, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(values[n + 1], np.stack(seq), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layers", [
    lambda: [GRU(6, input_shape=(4, 3), implementation=1)],
    lambda: [Masking(input_shape=(4, 3)), GRU(6)],
    lambda: [Masking(input_shape=(4, 3)), SimpleRNN(6)],
    lambda: [GRU(6, input_shape=(4, 3), activation="elu")],
    lambda: [SimpleRNN(6, input_shape=(4, 3), activation="softplus")],
    lambda: [LSTM(6, input_shape=(4, 3))],
], ids=["gru_implementation1", "gru_masking", "simple_masking", "gru_elu", "simple_softplus",
        "lstm"])
def test_other_loops_are_not_gru_or_simple_rnn(layers):
    _, loop = _loop(Sequential(layers()))
    body = optimize(loop.attrs["body"])
    assert match_gru(loop, body) is None and match_simple_rnn(loop, body) is None


@pytest.mark.parametrize("kw", [{}, {"recurrent_activation": "hard_sigmoid"},
                                {"use_bias": False}, {"return_sequences": True},
                                {"dropout": 0.3, "recurrent_dropout": 0.4},
                                {"go_backwards": True},
                                {"go_backwards": True, "return_sequences": True}])
@pytest.mark.parametrize("batch", [1, 6])
def test_keras_lstm_runs_as_the_fused_cpu_kernel(kw, batch):
    """(With dropout: in inference its masks are ones, by which the step multiplies its input
    and state; kcomp/ir/passes/simplify.py drops those products, and the loop is matched.
    go_backwards: the steps run from the last, and the sequence comes in the order they ran.)"""
    from keras import backend as K
    units, steps, inputs = 19, 7, 5
    model = Sequential([LSTM(units, input_shape=(steps, inputs), **kw)])
    rng = np.random.default_rng(batch)
    model.set_weights([rng.normal(size=w.shape).astype(np.float32) * 0.5
                       for w in model.get_weights()])
    f = K.function([model.input], [model.output])
    assert "c->api->lstm(" in open(f.source_path).read()
    x = rng.normal(size=(batch, steps, inputs)).astype(np.float32)
    hard = kw.get("recurrent_activation") == "hard_sigmoid"
    for _ in range(2):  # new weights between calls: the kernel's cached recurrent weights too
        weights = [w.astype(np.float64) for w in model.get_weights()]
        kernel, recurrent = weights[:2]
        bias = weights[2] if len(weights) == 3 else 0.0
        h = c = np.zeros((batch, units))
        seq = []
        for t in (range(steps - 1, -1, -1) if kw.get("go_backwards") else range(steps)):
            z = x[:, t].astype(np.float64) @ kernel + h @ recurrent + bias
            i, fg, g, o = (z[:, k * units:(k + 1) * units] for k in range(4))
            c = _sig(fg, hard) * c + _sig(i, hard) * np.tanh(g)
            h = _sig(o, hard) * np.tanh(c)
            seq.append(h)
        want = np.stack(seq, 1) if kw.get("return_sequences") else h
        np.testing.assert_allclose(f([x])[0], want, rtol=1e-5, atol=2e-6)
        model.set_weights([rng.normal(size=w.shape).astype(np.float32) * 0.5
                           for w in model.get_weights()])
