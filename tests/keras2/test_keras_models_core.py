"""Keras 2.3.1 models on kcomp, checked against independent numpy forward passes: core layers
(Dense, Activation, Dropout, Lambda, shape layers), merge layers, Embedding with masking,
BatchNormalization. Each model predicts at batch sizes 1 and 7."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")
from keras import layers as L  # noqa: E402
from keras.models import Model, Sequential  # noqa: E402

import keras_reference as R  # noqa: E402
from keras_helpers import check_model, close, data, randomize  # noqa: E402


def test_dense_stack_with_activations():
    model = Sequential([
        L.Dense(8, input_shape=(5,), activation="relu"),
        L.Dense(6, activation="tanh"),
        L.Dense(6, activation="sigmoid", use_bias=False),
        L.Dense(5, activation="elu"),
        L.Dense(4, activation="softmax"),
    ])
    w = randomize(model, 1)

    def ref(x):
        h = R.dense(x, w[0], w[1], "relu")
        h = R.dense(h, w[2], w[3], "tanh")
        h = R.dense(h, w[4], None, "sigmoid")
        h = R.dense(h, w[5], w[6], "elu")
        return R.dense(h, w[7], w[8], "softmax")
    check_model(model, lambda n: data((n, 5), n), ref)


@pytest.mark.parametrize("names", [
    ("relu", "tanh", "sigmoid", "hard_sigmoid", "softmax", "linear"),
    ("elu", "selu", "softplus", "softsign", "exponential"),
])
def test_activation_layers(names):
    inp = L.Input((6,))
    model = Model(inp, [L.Activation(a)(inp) for a in names])
    check_model(model, lambda n: data((n, 6), n, -2, 2),
                lambda x: [R.act(a, x.astype("float64")) for a in names])


def test_advanced_activation_layers():
    inp = L.Input((3, 4))
    outs = [L.ReLU(max_value=1.5, negative_slope=0.1, threshold=0.2)(inp),
            L.LeakyReLU(alpha=0.25)(inp), L.ELU(alpha=0.7)(inp),
            L.ThresholdedReLU(theta=0.3)(inp), L.Softmax(axis=1)(inp)]
    model = Model(inp, outs)

    def ref(x):
        x = x.astype("float64")
        relu = np.where(x >= 0.2, np.minimum(x, 1.5), 0.1 * (x - 0.2))
        return [relu, np.where(x > 0, x, 0.25 * x), R.elu(x, 0.7), np.where(x > 0.3, x, 0.0),
                R.softmax(x, axis=1)]
    check_model(model, lambda n: data((n, 3, 4), n, -2, 2), ref)


def test_dropout_is_identity_at_inference():
    inp = L.Input((10,))
    h = L.Dense(10)(inp)
    out = L.Dense(3)(L.AlphaDropout(0.3)(L.GaussianDropout(0.4)(L.GaussianNoise(1.0)(
        L.SpatialDropout1D(0.5)(L.Reshape((5, 2))(L.Dropout(0.5)(h)))))))
    model = Model(inp, out)
    w = randomize(model, 2)

    def ref(x):
        h = R.dense(x, w[0], w[1]).reshape(-1, 5, 2)
        return R.dense(h, w[2], w[3])
    check_model(model, lambda n: data((n, 10), n), ref)


def test_lambda_and_shape_layers():
    inp = L.Input((4, 6))
    outs = [
        L.Lambda(lambda t: keras.backend.square(t) * 2.0 - 1.0)(inp),
        L.Reshape((2, 12))(inp),
        L.Reshape((-1, 3))(inp),
        L.Permute((2, 1))(inp),
        L.Flatten()(inp),
        L.RepeatVector(3)(L.Flatten()(inp)),
        L.Lambda(lambda t: keras.backend.max(t, axis=1), output_shape=(6,))(inp),
    ]
    model = Model(inp, outs)

    def ref(x):
        x = x.astype("float64")
        n = x.shape[0]
        flat = x.reshape(n, -1)
        return [x * x * 2 - 1, x.reshape(n, 2, 12), x.reshape(n, -1, 3), x.transpose(0, 2, 1),
                flat, np.repeat(flat[:, None, :], 3, axis=1), x.max(axis=1)]
    check_model(model, lambda n: data((n, 4, 6), n), ref)


def test_merge_layers():
    a, b, c = L.Input((5,)), L.Input((5,)), L.Input((5,))
    outs = [L.Add()([a, b, c]), L.Subtract()([a, b]), L.Multiply()([a, b, c]),
            L.Average()([a, b, c]), L.Maximum()([a, b, c]), L.Minimum()([a, b]),
            L.Concatenate()([a, b, c]), L.Dot(axes=1)([a, b]),
            L.Dot(axes=1, normalize=True)([a, c])]
    model = Model([a, b, c], outs)

    def ref(xs):
        a, b, c = (x.astype("float64") for x in xs)
        na, nc = R.l2_normalize(a, 1), R.l2_normalize(c, 1)
        return [a + b + c, a - b, a * b * c, (a + b + c) / 3, np.maximum(np.maximum(a, b), c),
                np.minimum(a, b), np.concatenate([a, b, c], axis=1),
                (a * b).sum(1, keepdims=True), (na * nc).sum(1, keepdims=True)]
    check_model(model, lambda n: [data((n, 5), 10 * n + i) for i in range(3)], ref)


def test_merge_layers_3d():
    a, b = L.Input((3, 4)), L.Input((5, 4))
    outs = [L.Concatenate(axis=1)([a, b]), L.Dot(axes=(2, 2))([a, b]),
            L.Dot(axes=(1, 1))([a, a]),
            L.Dot(axes=2, normalize=True)([a, b])]
    model = Model([a, b], outs)

    def ref(xs):
        a, b = (x.astype("float64") for x in xs)
        return [np.concatenate([a, b], axis=1), np.einsum("nik,njk->nij", a, b),
                np.einsum("nki,nkj->nij", a, a),
                np.einsum("nik,njk->nij", R.l2_normalize(a, 2), R.l2_normalize(b, 2))]
    check_model(model, lambda n: [data((n, 3, 4), n), data((n, 5, 4), n + 100)], ref)


def test_embedding_with_mask_zero_feeds_masked_rnn():
    inp = L.Input((6,), dtype="int32")
    emb = L.Embedding(10, 4, mask_zero=True)(inp)
    seq = L.SimpleRNN(3, return_sequences=True)(emb)
    last = L.SimpleRNN(3, go_backwards=True)(emb)
    pooled = L.GlobalAveragePooling1D()(emb)   # a masked mean over time
    model = Model(inp, [emb, seq, last, pooled])
    w = randomize(model, 3)

    def tokens(n):
        t = np.random.RandomState(n).randint(1, 10, (n, 6)).astype("int32")
        t[0, 4:] = 0            # trailing padding
        if n > 1:
            t[1, :2] = 0        # leading padding
            t[2, 3] = 0         # a hole
            t[3, :] = 0         # all masked
        return t

    def ref(t):
        e = w[0][t]
        mask = (t != 0).astype("float64")
        seq, _ = R.simple_rnn(e, w[1], w[2], w[3], mask=mask)
        _, (h,) = R.simple_rnn(e, w[4], w[5], w[6], go_backwards=True, mask=mask)
        m = mask[:, :, None]
        pooled = (e * m).sum(1) / m.sum(1).clip(min=1e-300)
        pooled = np.where(m.sum(1) > 0, pooled, np.nan)
        return [e, seq, h, pooled]

    for n in (1, 7):
        t = tokens(n)
        got = model.predict(t, batch_size=n)
        want = ref(t)
        for i in range(3):
            close(got[i], want[i], what=f"batch {n}, output {i}")
        # an all-masked row divides 0 by 0 in Keras's masked mean: compare the others only
        rows = ~np.isnan(want[3][:, 0])
        close(got[3][rows], want[3][rows], what=f"batch {n}, masked mean")


def test_masking_layer():
    inp = L.Input((5, 3))
    masked = L.Masking(mask_value=0.0)(inp)
    out = L.LSTM(4, return_sequences=True)(masked)
    model = Model(inp, [masked, out])
    w = randomize(model, 4)

    def make(n):
        x = data((n, 5, 3), n)
        x[0, 2] = 0.0
        if n > 1:
            x[3, 3:] = 0.0
        return x

    def ref(x):
        x = x.astype("float64")
        mask = np.any(x != 0.0, axis=-1)
        seq, _ = R.lstm(x, w[0], w[1], w[2], mask=mask)
        return [x * mask[..., None], seq]
    check_model(model, make, ref)


@pytest.mark.parametrize("axis,shape", [(-1, (6,)), (-1, (4, 5, 3)), (1, (3, 4, 5))])
def test_batch_normalization_inference(axis, shape):
    inp = L.Input(shape)
    out = L.BatchNormalization(axis=axis, momentum=0.9, epsilon=1e-3)(inp)
    out2 = L.BatchNormalization(axis=axis, center=False, scale=False, epsilon=0.01)(inp)
    model = Model(inp, [out, out2])
    w = randomize(model, 5)

    def ref(x):
        x = x.astype("float64")
        bshape = [1] * x.ndim
        bshape[axis] = x.shape[axis]
        g, b, m, v = (p.reshape(bshape) for p in w[:4])
        m2, v2 = (p.reshape(bshape) for p in w[4:6])
        return [R.batch_norm(x, g, b, m, v, 1e-3), R.batch_norm(x, 1.0, 0.0, m2, v2, 0.01)]
    check_model(model, lambda n: data((n,) + shape, n, -2, 2), ref)


def test_new_weights_reach_a_compiled_model(tmp_path):
    """A model that has predicted (its Dense and Conv2D weights packed and kept by the kernel
    library) predicts with new weights after set_weights and after load_weights from a file
    another model saved."""
    def build():
        return Sequential([L.Conv2D(12, 3, activation="relu", input_shape=(7, 7, 3)),
                           L.Flatten(), L.Dense(9, activation="relu"), L.Dense(4)])

    def ref(w, x):
        h = R.conv(x, w[0], w[1], activation="relu").reshape(len(x), -1)
        return R.dense(R.dense(h, w[2], w[3], "relu"), w[4], w[5])
    model, other = build(), build()
    x = data((3, 7, 7, 3), 5)
    for seed in (1, 2):
        w = randomize(model, seed)
        close(model.predict(x), ref(w, x), what=f"set_weights {seed}")
    w = randomize(other, 3)
    other.save_weights(str(tmp_path / "other.h5"))
    model.load_weights(str(tmp_path / "other.h5"))
    close(model.predict(x), ref(w, x), what="load_weights")
