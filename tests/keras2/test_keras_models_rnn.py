"""Keras 2.3.1 recurrent models on kcomp, checked against independent numpy forward passes:
SimpleRNN, GRU (reset_after both ways), LSTM with return_sequences, return_state, go_backwards,
masks, initial states, stateful layers; Bidirectional and TimeDistributed. Batch sizes 1 and 7."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")
from keras import layers as L  # noqa: E402
from keras.models import Model, Sequential  # noqa: E402

import keras_reference as R  # noqa: E402
from keras_helpers import check_model, close, data, randomize  # noqa: E402

T, D, U = 5, 3, 4


def _reference(kind, w, x, reset_after=False, **kw):
    """(outputs over time, final states) of one layer whose weights are w."""
    x = x.astype("float64")
    if kind == "SimpleRNN":
        return R.simple_rnn(x, w[0], w[1], w[2], **kw)
    if kind == "GRU":
        return R.gru(x, w[0], w[1], w[2], reset_after=reset_after, **kw)
    return R.lstm(x, w[0], w[1], w[2], **kw)


def _layer(kind, reset_after=False, **kwargs):
    if kind == "GRU":
        return L.GRU(U, reset_after=reset_after, **kwargs)
    return getattr(L, kind)(U, **kwargs)


CASES = [("SimpleRNN", False), ("GRU", False), ("GRU", True), ("LSTM", False)]
IDS = ["SimpleRNN", "GRU", "GRU-reset_after", "LSTM"]


@pytest.mark.parametrize("kind,reset_after", CASES, ids=IDS)
def test_recurrent_outputs_and_states(kind, reset_after):
    """return_sequences / return_state / go_backwards, in one model of three layers."""
    inp = L.Input((T, D))
    seq = _layer(kind, reset_after, return_sequences=True)(inp)
    backwards = _layer(kind, reset_after, return_sequences=True, go_backwards=True,
                       return_state=True)(inp)
    last = _layer(kind, reset_after, activation="relu")(inp)
    model = Model(inp, [seq] + backwards + [last])
    w = randomize(model, 20)

    def ref(x):
        seq, _ = _reference(kind, w[0:3], x, reset_after)
        bseq, bstates = _reference(kind, w[3:6], x, reset_after, go_backwards=True)
        lseq, _ = _reference(kind, w[6:9], x, reset_after, activation="relu")
        return [seq, bseq] + list(bstates) + [lseq[:, -1]]
    check_model(model, lambda n: data((n, T, D), n), ref)


@pytest.mark.parametrize("kind,reset_after", CASES, ids=IDS)
def test_recurrent_initial_state_and_mask(kind, reset_after):
    inp = L.Input((T, D))
    n_states = 2 if kind == "LSTM" else 1
    states = [L.Input((U,)) for _ in range(n_states)]
    masked = L.Masking(0.0)(inp)
    gates = {} if kind == "SimpleRNN" else {"recurrent_activation": "sigmoid"}
    out = _layer(kind, reset_after, return_sequences=True, return_state=True,
                 **gates)(masked, initial_state=states)
    model = Model([inp] + states, out)
    w = randomize(model, 21)

    def make(n):
        x = data((n, T, D), n)
        x[0, -2:] = 0.0
        if n > 1:
            x[2, 1] = 0.0
            x[4, :] = 0.0
        return [x] + [data((n, U), 100 + n + i) for i in range(n_states)]

    def ref(xs):
        x = xs[0].astype("float64")
        mask = np.any(x != 0, axis=-1)
        init = {"h0": xs[1].astype("float64")}
        if kind == "LSTM":
            init["c0"] = xs[2].astype("float64")
        seq, final = _reference(kind, w, x, reset_after, mask=mask, **gates, **init)
        return [seq] + list(final)
    check_model(model, make, ref)


@pytest.mark.parametrize("kind,reset_after", CASES, ids=IDS)
def test_stateful_recurrent_layer(kind, reset_after):
    """A stateful layer carries its states from one predict to the next until reset_states."""
    for batch in (1, 7):
        model = Sequential([_layer(kind, reset_after, stateful=True, return_sequences=True,
                                   batch_input_shape=(batch, T, D))])
        w = randomize(model, 22)
        x1, x2 = data((batch, T, D), batch), data((batch, T, D), batch + 1)
        y1 = model.predict(x1, batch_size=batch)
        y2 = model.predict(x2, batch_size=batch)
        want, _ = _reference(kind, w, np.concatenate([x1, x2], axis=1), reset_after)
        close(y1, want[:, :T], what=f"batch {batch}, first call")
        close(y2, want[:, T:], what=f"batch {batch}, second call (carried states)")
        model.reset_states()
        close(model.predict(x2, batch_size=batch), _reference(kind, w, x2, reset_after)[0],
              what=f"batch {batch}, after reset_states")


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
def test_bidirectional(merge_mode):
    inp = L.Input((T, D))
    seq = L.Bidirectional(L.LSTM(U, return_sequences=True), merge_mode=merge_mode)(inp)
    last = L.Bidirectional(L.GRU(U), merge_mode=merge_mode)(inp)
    seq = seq if isinstance(seq, list) else [seq]
    last = last if isinstance(last, list) else [last]
    model = Model(inp, seq + last)
    w = randomize(model, 23)

    def merge(a, b):
        if merge_mode == "concat":
            return [np.concatenate([a, b], axis=-1)]
        if merge_mode == "sum":
            return [a + b]
        if merge_mode == "mul":
            return [a * b]
        if merge_mode == "ave":
            return [(a + b) / 2]
        return [a, b]

    def ref(x):
        f, _ = _reference("LSTM", w[0:3], x)
        b, _ = _reference("LSTM", w[3:6], x, go_backwards=True)
        gf, _ = _reference("GRU", w[6:9], x)
        gb, _ = _reference("GRU", w[9:12], x, go_backwards=True)
        return merge(f, b[:, ::-1]) + merge(gf[:, -1], gb[:, -1])
    check_model(model, lambda n: data((n, T, D), n), ref)


def test_bidirectional_with_states_and_simple_rnn():
    inp = L.Input((T, D))
    outs = L.Bidirectional(L.SimpleRNN(U, return_state=True, return_sequences=True))(inp)
    model = Model(inp, outs)
    w = randomize(model, 24)

    def ref(x):
        f, (hf,) = _reference("SimpleRNN", w[0:3], x)
        b, (hb,) = _reference("SimpleRNN", w[3:6], x, go_backwards=True)
        return [np.concatenate([f, b[:, ::-1]], axis=-1), hf, hb]
    check_model(model, lambda n: data((n, T, D), n), ref)


def test_time_distributed():
    inp = L.Input((T, 6))
    td_dense = L.TimeDistributed(L.Dense(3, activation="tanh"))
    conv_in = L.Input((T, 6, 5, 2))
    td_conv = L.TimeDistributed(L.Conv2D(3, 2, activation="relu"))
    pooled = L.TimeDistributed(L.GlobalAveragePooling2D())(td_conv(conv_in))
    model = Model([inp, conv_in], [td_dense(inp), pooled])
    randomize(model, 25)
    wd = [v.astype("float64") for v in td_dense.get_weights()]
    wc = [v.astype("float64") for v in td_conv.get_weights()]

    def ref(xs):
        x, c = (v.astype("float64") for v in xs)
        d = R.dense(x, wd[0], wd[1], "tanh")
        n = c.shape[0]
        y = R.conv(c.reshape((n * T,) + c.shape[2:]), wc[0], wc[1], activation="relu")
        return [d, y.mean((1, 2)).reshape(n, T, -1)]
    check_model(model, lambda n: [data((n, T, 6), n), data((n, T, 6, 5, 2), n + 1)], ref)


def test_stacked_recurrent_classifier():
    """Embedding -> LSTM -> GRU -> Dense softmax, with masking from the embedding."""
    model = Sequential([
        L.Embedding(12, 5, mask_zero=True, input_length=T),
        L.LSTM(U, return_sequences=True),
        L.GRU(U, reset_after=True),
        L.Dense(3, activation="softmax"),
    ])
    w = randomize(model, 26)

    def make(n):
        t = np.random.RandomState(n).randint(1, 12, (n, T)).astype("int32")
        t[0, 3:] = 0
        return t

    def ref(t):
        e = w[0][t]
        mask = t != 0
        seq, _ = R.lstm(e, w[1], w[2], w[3], mask=mask)
        _, (h,) = R.gru(seq, w[4], w[5], w[6], reset_after=True, mask=mask)
        return R.dense(h, w[7], w[8], "softmax")
    check_model(model, make, ref)
