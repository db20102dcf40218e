"""rnn, map_fn, foldl, foldr: traced once, run as native loops; in_train_phase/in_test_phase."""
import numpy as np
import pytest

import kcomp.backend as K
from kcomp.function import MAX_VERSIONS
from util import assert_numpy, assert_same, kernel_plan, keras_numpy_backend, rand, run


def test_map_fn_foldl_foldr():
    rng = np.random.default_rng(50)
    x = K.placeholder((None, 5))
    n = K.placeholder((None, 3), dtype="int32")
    w = K.variable(rng.standard_normal((5, 2)).astype(np.float32))
    outs = [K.map_fn(lambda r: K.sum(r * r) + 1.0, x),
            K.map_fn(lambda r: K.dot(K.expand_dims(r, 0), w)[0], x),       # captures a variable
            K.map_fn(lambda r: K.map_fn(lambda v: v * 2.0 + 1.0, r), x),   # nested loops
            K.foldl(lambda acc, r: acc + r * 2.0, x),
            K.foldr(lambda acc, r: acc * 0.5 + r, x, initializer=K.zeros((5,))),
            K.foldl(lambda acc, r: K.maximum(acc, r), n),
            K.foldl(lambda acc, r: acc + K.sum(r), x, initializer=K.constant(0.0))]
    a, b = rand(rng, (7, 5), "float32"), rand(rng, (4, 3), "int32", -9, 9)
    got, want, f = run([(x, a), (n, b)], outs)
    fr = np.zeros(5, np.float32)
    for r in a[::-1]:
        fr = fr * np.float32(0.5) + r
    expected = [(a * a).sum(1) + 1, a @ K.get_value(w), a * 2 + 1,
                a[0] + 2 * a[1:].sum(0), fr, b.max(0), a.sum()]
    for g, w_, e in zip(got, want, expected):
        assert_same(g, w_)
        assert_numpy(g, e, e.dtype, rtol=1e-5)
    # another number of elements, including one
    c = rand(rng, (1, 5), "float32")
    got1 = f([c, b[:1]])
    np.testing.assert_allclose(got1[3], c[0], rtol=1e-6)
    np.testing.assert_array_equal(got1[5], b[0])


def _simple_rnn_numpy(W, U, bias):
    def step(x, states):
        h = np.tanh(x @ W + states[0] @ U + bias)
        return h, [h]
    return step


def _lstm_step(K_, W, U, bias, units):
    """An LSTM step written against a backend (kcomp or numpy), Keras's gate layout."""
    def step(x, states):
        h, c = states[0], states[1]
        z = K_.dot(x, W) + K_.dot(h, U) + bias
        i, f, g, o = (z[:, k * units:(k + 1) * units] for k in range(4))
        c2 = K_.sigmoid(f) * c + K_.sigmoid(i) * K_.tanh(g)
        h2 = K_.sigmoid(o) * K_.tanh(c2)
        return h2, [h2, c2]
    return step


class NP:
    """The few numpy functions _lstm_step needs, under backend names."""
    dot = staticmethod(np.dot)
    tanh = staticmethod(np.tanh)

    @staticmethod
    def sigmoid(x):
        return 1 / (1 + np.exp(-x))


@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_rnn_against_keras_numpy_backend(go_backwards, masked):
    KNP = keras_numpy_backend()
    rng = np.random.default_rng(51)
    units, feat, steps = 6, 4, 9
    W = rng.standard_normal((feat, 4 * units)).astype(np.float32) * 0.4
    U = rng.standard_normal((units, 4 * units)).astype(np.float32) * 0.4
    bias = rng.standard_normal(4 * units).astype(np.float32) * 0.1
    x = K.placeholder((None, steps, feat))
    m = K.placeholder((None, steps), dtype="bool")
    h0, c0 = K.placeholder((None, units)), K.placeholder((None, units))
    step = _lstm_step(K, K.variable(W), K.variable(U), K.variable(bias), units)
    last, seq, (h, c) = K.rnn(step, x, [h0, c0], go_backwards=go_backwards,
                              mask=m if masked else None)
    for batch in (1, 5):
        a = rand(rng, (batch, steps, feat), "float32", -1, 1)
        mask = rng.random((batch, steps)) > 0.3
        hv, cv = rand(rng, (batch, units), "float32", -1, 1), rand(rng, (batch, units), "float32", -1, 1)
        got, want, _ = run([(x, a), (m, mask), (h0, hv), (c0, cv)], [last, seq, h, c])
        exp = KNP.rnn(_lstm_step(NP, W, U, bias, units), a, [hv, cv], go_backwards=go_backwards,
                      mask=mask if masked else None)
        for g, w_, e in zip(got, want, [exp[0], exp[1], exp[2][0], exp[2][1]]):
            assert_same(g, w_)
            assert_numpy(g, e, "float32", rtol=1e-5, atol=1e-5)


def test_rnn_over_a_slice_of_the_batch():
    """The loop's sequence and state have the extent of x[1:] (an expression of the batch
    extent, which binds nothing by itself): the interpreter evaluates the body with the
    extents of the evaluation running the loop (found by the fuzzer, tests/graph_fuzz.py)."""
    rng = np.random.default_rng(53)
    x = K.placeholder((None, 4, 3))
    w = K.constant(rng.uniform(-1, 1, (3, 2)).astype(np.float32))
    part = x[1:]

    def step(inp, states):
        out = K.tanh(K.dot(inp, w) + states[0])
        return out, [out]
    last, seq, _ = K.rnn(step, part, [K.dot(part[:, 0], w)])
    for batch in (2, 6):
        a = rand(rng, (batch, 4, 3), "float32")
        got, want, _ = run([(x, a)], [last, seq])
        h, outs = a[1:, 0] @ K.get_value(w), []
        for t in range(4):
            h = np.tanh(a[1:, t] @ K.get_value(w) + h)
            outs.append(h)
        for g, w_, e in zip(got, want, [h, np.stack(outs, 1)]):
            assert_same(g, w_)
            assert_numpy(g, e, "float32", rtol=1e-5, atol=1e-5)


def test_rnn_constants_unroll_and_errors():
    rng = np.random.default_rng(52)
    x = K.placeholder((None, 4, 3))
    h0 = K.placeholder((None, 2))
    k = K.placeholder((3, 2))

    def step(inp, states):
        h, kernel = states[0], states[1]  # the constant comes after the states
        out = K.tanh(K.dot(inp, kernel) + h)
        return out, [out]

    outs = K.rnn(step, x, [h0], constants=[k])
    outs_u = K.rnn(step, x, [h0], constants=[k], unroll=True)
    a, hv, kv = rand(rng, (3, 4, 3), "float32"), rand(rng, (3, 2), "float32"), rand(rng, (3, 2), "float32")
    got, want, _ = run([(x, a), (h0, hv), (k, kv)], [outs[0], outs[1], outs[2][0],
                                                      outs_u[0], outs_u[1], outs_u[2][0]])
    for g, w_ in zip(got, want):
        assert_same(g, w_)
    for g, gu in zip(got[:3], got[3:]):
        np.testing.assert_allclose(g, gu, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="rnn: inputs need at least 3 dimensions"):
        K.rnn(step, K.placeholder((None, 3)), [h0])
    with pytest.raises(ValueError, match="a mask needs at least one state"):
        K.rnn(lambda i, s: (i, []), x, [], mask=K.placeholder((None, 4)))


def test_learning_phase_branches():
    x = K.placeholder((None, 3))
    lp = K.learning_phase()
    y = K.in_train_phase(x * 2.0, lambda: x * 3.0)
    z = K.in_test_phase(x * 2.0, x * 3.0)
    assert y._uses_learning_phase and z._uses_learning_phase
    f = K.function([x, lp], [y, z])
    a = np.ones((2, 3), np.float32)
    train, test = f([a, 1]), f([a, 0])
    np.testing.assert_array_equal(train[0], a * 2)
    np.testing.assert_array_equal(train[1], a * 3)
    np.testing.assert_array_equal(test[0], a * 3)
    np.testing.assert_array_equal(test[1], a * 2)
    assert K.in_train_phase(1, 2, training=1) == 1 and K.in_train_phase(1, lambda: 2, training=0) == 2


def test_learning_phase_is_compiled_per_value():
    """A function that takes the learning phase compiles once per value it is called with, on
    the first such call: at 0 (Keras's predict) dropout draws no random numbers; at 1 it does.
    A learning phase that is not an input reads its default, 0, as a constant."""
    x = K.placeholder((None, 64))
    lp = K.learning_phase()
    y = K.in_train_phase(lambda: K.dropout(x, 0.5), x)
    f = K.function([x, lp], [y])
    a = np.random.default_rng(0).uniform(1, 2, (9, 64)).astype(np.float32)
    assert "random" not in kernel_plan(f)  # before any call: the version for the default
    for phase in (0, 1, 0, np.uint8(1), True, np.array(0, np.uint8)):
        (got,) = f([a, phase])
        if phase:
            kept = got != 0
            np.testing.assert_allclose(got[kept], a[kept] * 2, rtol=1e-6)
            assert 0.3 < kept.mean() < 0.7
            assert "[random]" in kernel_plan(f)
        else:
            np.testing.assert_array_equal(got, a)
            assert "random" not in kernel_plan(f)
    assert len(f._versions) == 2
    g = K.function([x], [y])
    np.testing.assert_array_equal(g([a])[0], a)
    assert "random" not in kernel_plan(g) and not g._switches
    with pytest.raises(ValueError, match="expects 2 inputs"):
        f([a])
    with pytest.raises(ValueError, match="rank|shape"):
        f([a, np.zeros(3, np.uint8)])


def test_switch_inputs_beyond_the_versions_run_the_general_function():
    s = K.placeholder((), dtype="uint8")
    x = K.placeholder((3,))
    f = K.function([x, s], [K.switch(s, x * 2.0, x * 3.0)])
    a = np.arange(3, dtype=np.float32)
    for v in range(7):
        np.testing.assert_array_equal(f([a, v])[0], a * (2 if v else 3))
    assert len(f._versions) == MAX_VERSIONS + 1 and None in f._versions
    with pytest.raises(ValueError, match="does not convert to uint8"):  # as without versions
        f([a, 1.5])


def test_input_projections_are_hoisted_out_of_the_loop():
    """x_t . W + b depends on the sequence alone: it is computed for all steps in one GEMM
    before the loop; the body keeps only the recurrent product."""
    rng = np.random.default_rng(53)
    W, U, b = (rng.standard_normal(s).astype(np.float32) * 0.5 for s in ((3, 4), (4, 4), (4,)))
    x, h0 = K.placeholder((None, 6, 3)), K.placeholder((None, 4))
    Wv, Uv, bv = K.variable(W), K.variable(U), K.variable(b)

    def step(inp, s):
        h = K.tanh(K.dot(inp * 2.0, Wv) + bv + K.dot(s[0], Uv))
        return h, [h]

    last, seq, _ = K.rnn(step, x, [h0])
    a, hv = rand(rng, (5, 6, 3), "float32"), rand(rng, (5, 4), "float32")
    got, want, f = run([(x, a), (h0, hv)], [last, seq])
    for g, w_ in zip(got, want):
        assert_same(g, w_)
    h, outs = hv, []
    for t in range(6):
        h = np.tanh((a[:, t] * 2) @ W + b + h @ U)
        outs.append(h)
    assert_numpy(got[1], np.stack(outs, 1), "float32", rtol=1e-5, atol=1e-6)
    graph = f.explain().split("-- kernel plan --")[0]
    outer, body = graph.split("= loop(")
    assert "dot(" in outer and "-> float32(6, None, 4)" in outer  # all steps at once
    assert body.count("dot(") == 1  # the recurrent product only
