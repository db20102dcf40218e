"""The Keras 2.3.1 model API on kcomp: Sequential and functional models, summary(), predict,
predict_on_batch, evaluate and test_on_batch (losses and metrics, no training), saving and
loading weights (HDF5) and whole models."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")
from keras import layers as L  # noqa: E402
from keras.models import Model, Sequential, load_model  # noqa: E402

import keras_reference as R  # noqa: E402
from keras_helpers import close, data, randomize  # noqa: E402


def _mlp():
    return Sequential([L.Dense(6, activation="relu", input_shape=(4,), name="hidden"),
                       L.Dense(5, activation="tanh", name="frozen", trainable=False),
                       L.Dropout(0.3),
                       L.Dense(3, activation="softmax", name="probs")])


def _mlp_reference(w, x):
    h = R.dense(x.astype("float64"), w[0], w[1], "relu")
    h = R.dense(h, w[2], w[3], "tanh")
    return R.dense(h, w[4], w[5], "softmax")


def _branchy():
    """A functional model with two inputs, a shared layer, two outputs."""
    a, b = L.Input((5,), name="a"), L.Input((5,), name="b")
    shared = L.Dense(4, activation="tanh", name="shared")
    merged = L.Concatenate()([shared(a), shared(b)])
    out1 = L.Dense(2, name="out1")(merged)
    out2 = L.Dense(1, activation="sigmoid", name="out2")(L.Subtract()([shared(a), shared(b)]))
    return Model([a, b], [out1, out2])


def _branchy_reference(w, xs):
    a, b = (x.astype("float64") for x in xs)
    ha, hb = R.dense(a, w[0], w[1], "tanh"), R.dense(b, w[0], w[1], "tanh")
    return [R.dense(np.concatenate([ha, hb], 1), w[2], w[3]), R.dense(ha - hb, w[4], w[5],
                                                                        "sigmoid")]


def test_sequential_and_functional_models_agree():
    seq = _mlp()
    w = randomize(seq, 30)
    inp = L.Input((4,))
    h = inp
    for layer in seq.layers:
        h = layer(h)          # the same layers (same weights) in a functional model
    fun = Model(inp, h)
    nested = Sequential([seq, L.Activation("linear")])
    for n in (1, 7):
        x = data((n, 4), n)
        want = _mlp_reference(w, x)
        close(seq.predict(x), want, what="sequential")
        close(fun.predict(x), want, what="functional")
        close(nested.predict(x), want, what="nested sequential")
        close(seq.predict_on_batch(x), want, what="predict_on_batch")
        close(seq.predict(x, batch_size=3), want, what="predict in batches of 3")


def test_functional_model_multiple_inputs_outputs():
    model = _branchy()
    w = randomize(model, 31)
    for n in (1, 7):
        xs = [data((n, 5), n), data((n, 5), n + 1)]
        got = model.predict(xs, batch_size=3)
        want = _branchy_reference(w, xs)
        close(got[0], want[0], what="out1")
        close(got[1], want[1], what="out2")
        got = model.predict({"a": xs[0], "b": xs[1]})
        close(got[0], want[0], what="dict inputs")
        got = model.predict_on_batch(xs)
        close(got[1], want[1], what="predict_on_batch")


def test_summary_and_count_params():
    model = _mlp()
    lines = []
    model.summary(print_fn=lines.append, line_length=100)
    text = "\n".join(lines)
    for name in ("hidden", "frozen", "probs"):
        assert name in text
    assert "(None, 6)" in text and "(None, 5)" in text and "(None, 3)" in text
    total = 4 * 6 + 6 + 6 * 5 + 5 + 5 * 3 + 3
    assert f"Total params: {total:,}" in text
    assert f"Trainable params: {total - 35:,}" in text
    assert "Non-trainable params: 35" in text
    assert model.count_params() == total
    branchy = _branchy()
    lines = []
    branchy.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "Connected to" in text and "shared[0][0]" in text


def test_evaluate_losses_and_metrics_without_training():
    model = _mlp()
    w = randomize(model, 32)
    model.compile(optimizer="sgd", loss="categorical_crossentropy",
                  metrics=["accuracy", "mae", "categorical_crossentropy"])
    assert model.metrics_names == ["loss", "accuracy", "mae", "categorical_crossentropy"]
    for n in (1, 7):
        x = data((n, 4), n)
        y = np.eye(3, dtype="float32")[np.random.RandomState(n).randint(0, 3, n)]
        p = _mlp_reference(w, x)
        p_clip = np.clip(p / p.sum(-1, keepdims=True), 1e-7, 1 - 1e-7)
        cce = -(y * np.log(p_clip)).sum(-1).mean()
        acc = (p.argmax(-1) == y.argmax(-1)).mean()
        mae = np.abs(y - p).mean()
        for batch_size in (n, 3):
            got = model.evaluate(x, y, batch_size=batch_size, verbose=0)
            close(got, [cce, acc, mae, cce], rtol=1e-4, atol=1e-5,
                  what=f"evaluate, {n} samples in batches of {batch_size}")
        got = model.test_on_batch(x, y)
        close(got, [cce, acc, mae, cce], rtol=1e-4, atol=1e-5, what="test_on_batch")


def test_evaluate_multiple_outputs_with_loss_weights():
    model = _branchy()
    w = randomize(model, 33)
    model.compile(optimizer="rmsprop", loss=["mse", "binary_crossentropy"],
                  loss_weights=[0.5, 2.0], metrics={"out2": ["binary_accuracy"]})
    n = 7
    xs = [data((n, 5), 1), data((n, 5), 2)]
    ys = [data((n, 2), 3), (data((n, 1), 4) > 0).astype("float32")]
    p1, p2 = _branchy_reference(w, xs)
    mse = ((p1 - ys[0]) ** 2).mean()
    q = np.clip(p2, 1e-7, 1 - 1e-7)
    bce = -(ys[1] * np.log(q) + (1 - ys[1]) * np.log(1 - q)).mean()
    bacc = ((p2 > 0.5) == ys[1]).mean()
    got = model.evaluate(xs, ys, batch_size=7, verbose=0)
    assert model.metrics_names == ["loss", "out1_loss", "out2_loss", "out2_binary_accuracy"]
    close(got, [0.5 * mse + 2.0 * bce, mse, bce, bacc], rtol=1e-4, atol=1e-5)


def test_save_and_load_weights_hdf5(tmp_path):
    model = _mlp()
    w = randomize(model, 34)
    path = str(tmp_path / "weights.h5")
    model.save_weights(path)
    other = _mlp()
    randomize(other, 35)
    other.load_weights(path)
    for a, b in zip(other.get_weights(), w):
        close(a, b, rtol=0, atol=0)
    x = data((7, 4), 1)
    close(other.predict(x), _mlp_reference(w, x), what="after load_weights")
    by_name = Sequential([L.Dense(6, input_shape=(4,), name="hidden"),
                          L.Dense(5, name="unrelated")])
    by_name.load_weights(path, by_name=True)
    close(by_name.get_weights()[0], w[0], rtol=0, atol=0, what="load_weights(by_name=True)")


def test_save_and_load_whole_model(tmp_path):
    model = _mlp()
    w = randomize(model, 36)
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    path = str(tmp_path / "model.h5")
    model.save(path)
    loaded = load_model(path)
    x = data((7, 4), 2)
    close(loaded.predict(x), _mlp_reference(w, x), what="loaded model")
    assert [l.name for l in loaded.layers] == [l.name for l in model.layers]
    y = np.eye(3, dtype="float32")[[0, 1, 2, 0, 1, 2, 0]]
    close(loaded.evaluate(x, y, verbose=0), model.evaluate(x, y, verbose=0), what="evaluate")


def test_save_and_load_functional_model_with_lambda(tmp_path):
    a = L.Input((3, 4))
    h = L.Lambda(lambda t: t * 2.0 + 1.0)(a)
    h = L.LSTM(2, return_sequences=True)(h)
    out = L.Flatten()(L.Conv1D(2, 2)(h))
    model = Model(a, out)
    w = randomize(model, 37)
    path = str(tmp_path / "model.h5")
    model.save(path)
    loaded = load_model(path)

    def ref(x):
        seq, _ = R.lstm(x.astype("float64") * 2 + 1, w[0], w[1], w[2])
        return R.conv(seq, w[3], w[4]).reshape(x.shape[0], -1)
    for n in (1, 7):
        x = data((n, 3, 4), n)
        close(loaded.predict(x), ref(x), what=f"loaded model, batch {n}")


def test_weights_are_initialized_by_one_build(tmp_path, builds):
    """Initializers wait (kcomp/deferred.py): a model's weights cost one build, and none when
    loading replaces them."""
    model = Sequential([L.Dense(17, input_shape=(9,)), L.BatchNormalization(),
                        L.Dense(8, kernel_initializer="he_normal"), L.Dense(5, activation="softmax")])
    assert builds == []
    kernel = model.layers[0].get_weights()[0]
    limit = np.sqrt(6 / (9 + 17))  # glorot_uniform
    assert kernel.shape == (9, 17) and np.abs(kernel).max() <= limit and kernel.std() > limit / 3
    assert builds == ["initial values"]
    path = str(tmp_path / "model.h5")
    model.save(path)
    loaded = load_model(path)
    x = data((4, 9), 3)
    close(loaded.predict(x), model.predict(x), rtol=1e-6, what="loaded model")
    assert builds.count("initial values") == 1  # the loaded model's were replaced, not computed
