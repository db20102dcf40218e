"""Keras 2.3.1 trains on kcomp: fit's loss trajectory and final weights match an independent
numpy implementation (tests/keras2/numpy_training.py, forward and backward written by hand) for
an MLP, a small CNN and an LSTM, with SGD (momentum, nesterov) and Adam, sample and class
weights, a regularizer and a constraint; every optimizer trains; callbacks read the logs;
stateful RNNs carry their state across batches."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")
from keras import layers as L  # noqa: E402
from keras.models import Sequential, load_model  # noqa: E402

import numpy_training as N  # noqa: E402
from keras_helpers import close, data, randomize  # noqa: E402

RTOL, ATOL = 2e-4, 2e-5  # float32 training against float64 numpy over a dozen steps


def one_hot(n, classes, seed):
    return np.eye(classes, dtype="float32")[np.random.RandomState(seed).randint(0, classes, n)]


def check(model, history, reference, epochs):
    want_hist, want_w = reference
    assert len(history.history["loss"]) == epochs
    close(history.history["loss"], want_hist, RTOL, ATOL, "epoch losses")
    for i, (got, want) in enumerate(zip(model.get_weights(), want_w)):
        close(got, want, RTOL, ATOL, f"weight {i}")


def mlp(**dense_kw):
    return Sequential([L.Dense(16, activation="relu", input_shape=(10,), **dense_kw),
                       L.Dense(16, activation="relu"), L.Dense(3, activation="softmax")])


def test_mlp_sgd_nesterov():
    model = mlp()
    w = randomize(model, 1)
    x, t = data((64, 10), 2), one_hot(64, 3, 3)
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
                  "categorical_crossentropy")
    h = model.fit(x, t, epochs=3, batch_size=16, shuffle=False, verbose=0)
    ref = N.train([N.Dense("relu"), N.Dense("relu"), N.Dense("softmax")], w,
                  N.categorical_crossentropy, N.SGD(0.1, 0.9, True), x, t, 3, 16)
    check(model, h, ref, 3)


def test_mlp_sample_and_class_weights_regularizer_and_constraint():
    model = mlp(kernel_regularizer=keras.regularizers.l2(0.01),
                kernel_constraint=keras.constraints.max_norm(0.8))
    w = randomize(model, 4)
    x, t = data((40, 10), 5), one_hot(40, 3, 6)
    sw = np.random.RandomState(7).uniform(0.2, 2.0, 40)
    model.compile(keras.optimizers.SGD(0.2), "categorical_crossentropy")
    h = model.fit(x, t, epochs=2, batch_size=8, shuffle=False, verbose=0, sample_weight=sw)
    layers = [N.Dense("relu"), N.Dense("relu"), N.Dense("softmax")]
    ref = N.train(layers, w, N.categorical_crossentropy, N.SGD(0.2), x, t, 2, 8,
                  sample_weight=sw, l2={0: 0.01}, max_norm={0: 0.8})
    check(model, h, ref, 2)

    class_weight = {0: 0.5, 1: 2.0, 2: 1.0}
    h = model.fit(x, t, epochs=1, batch_size=8, shuffle=False, verbose=0,
                  class_weight=class_weight)
    cw = np.array([class_weight[c] for c in t.argmax(axis=1)])
    ref = N.train(layers, ref[1], N.categorical_crossentropy, N.SGD(0.2), x, t, 1, 8,
                  sample_weight=cw, l2={0: 0.01}, max_norm={0: 0.8})
    check(model, h, ref, 1)


def test_lstm_adam():
    model = Sequential([L.LSTM(6, recurrent_activation="sigmoid", input_shape=(5, 3)),
                        L.Dense(2)])
    w = randomize(model, 8)
    x, t = data((24, 5, 3), 9), data((24, 2), 10)
    model.compile(keras.optimizers.Adam(0.01), "mse")
    h = model.fit(x, t, epochs=3, batch_size=8, shuffle=False, verbose=0)
    ref = N.train([N.LSTM(), N.Dense()], w, N.mse, N.Adam(0.01), x, t, 3, 8)
    check(model, h, ref, 3)


def test_cnn_sgd():
    model = Sequential([L.Conv2D(4, 3, padding="same", activation="relu", input_shape=(6, 7, 2)),
                        L.MaxPooling2D(2), L.Flatten(), L.Dense(3, activation="softmax")])
    w = randomize(model, 11)
    x, t = data((12, 6, 7, 2), 12), one_hot(12, 3, 13)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.5), "categorical_crossentropy")
    h = model.fit(x, t, epochs=2, batch_size=4, shuffle=False, verbose=0)
    ref = N.train([N.Conv2D("same"), N.MaxPool2(), N.Flatten(), N.Dense("softmax")], w,
                  N.categorical_crossentropy, N.SGD(0.05, 0.5), x, t, 2, 4)
    check(model, h, ref, 2)


OPTIMIZERS = ["sgd", "rmsprop", "adagrad", "adadelta", "adam", "adamax", "nadam",
              keras.optimizers.Adam(amsgrad=True), keras.optimizers.SGD(momentum=0.9)]


@pytest.mark.parametrize("optimizer", OPTIMIZERS, ids=[
    o if isinstance(o, str) else type(o).__name__ + ("-amsgrad" if getattr(o, "amsgrad", 0)
                                                      else "-momentum") for o in OPTIMIZERS])
def test_every_optimizer_learns(optimizer):
    """A separable problem: every optimizer lowers the loss and train_on_batch / evaluate agree
    with a numpy forward pass of the weights they leave."""
    rng = np.random.RandomState(0)
    x = rng.normal(size=(128, 4)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0]) > 0).astype("float32")[:, None]
    model = Sequential([L.Dense(8, activation="tanh", input_shape=(4,)),
                        L.Dense(1, activation="sigmoid")])
    model.compile(optimizer, "binary_crossentropy", metrics=["accuracy"])
    first = model.evaluate(x, y, verbose=0)[0]
    model.fit(x, y, epochs=5, batch_size=16, verbose=0)
    loss, acc = model.evaluate(x, y, verbose=0)
    assert loss < first
    w0, b0, w1, b1 = model.get_weights()
    p = 1 / (1 + np.exp(-(np.tanh(x @ w0 + b0) @ w1 + b1)))
    p = np.clip(p, 1e-7, 1 - 1e-7)
    want = np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p)))
    close(loss, want, 1e-4, 1e-5, "evaluate")
    close(acc, np.mean((p > 0.5) == y), 0, 1e-6, "accuracy")
    # train_on_batch reports the loss before its update
    want = model.evaluate(x[:16], y[:16], verbose=0)[0]
    close(model.train_on_batch(x[:16], y[:16])[0], want, 1e-5, 1e-6, "train_on_batch")


def test_callbacks_read_the_logs(tmp_path):
    model = mlp()
    randomize(model, 14)
    x, t = data((32, 10), 15), one_hot(32, 3, 16)
    model.compile(keras.optimizers.SGD(0.0), "categorical_crossentropy", metrics=["accuracy"])
    path = str(tmp_path / "best.h5")
    stop = keras.callbacks.EarlyStopping(monitor="loss", patience=1)
    save = keras.callbacks.ModelCheckpoint(path, monitor="loss", save_best_only=True)
    h = model.fit(x, t, epochs=10, batch_size=8, verbose=0, shuffle=False,
                  callbacks=[stop, save])
    # a learning rate of 0 never improves the loss: stopped after patience + 1 epochs
    assert len(h.history["loss"]) == 2 and stop.stopped_epoch == 1
    assert set(h.history) == {"loss", "accuracy"}
    restored = load_model(path)
    close(restored.predict(x), model.predict(x), 1e-6, 1e-7, "checkpoint")


def test_stateful_lstm_carries_state_across_batches():
    model = Sequential([L.LSTM(4, stateful=True, batch_input_shape=(2, 3, 2),
                               recurrent_activation="sigmoid"), L.Dense(1)])
    w = randomize(model, 17)
    x, t = data((4, 3, 2), 18), data((4, 1), 19)
    model.compile(keras.optimizers.SGD(0.0), "mse")
    model.fit(x, t, epochs=1, batch_size=2, shuffle=False, verbose=0)
    # with a zero learning rate, the weights stay: the state after batch 2 is the LSTM run over
    # both batches' sequences one after the other
    layer = N.LSTM()
    seq = np.concatenate([x[:2], x[2:]], axis=1).astype(np.float64)
    h, _ = layer.forward(seq, *w[:3])
    close(keras.backend.get_value(model.layers[0].states[0]), h, RTOL, ATOL, "carried state")
    model.reset_states()
    assert not np.any(keras.backend.get_value(model.layers[0].states[0]))
