#!/usr/bin/env python
"""Cold compiles of Keras 2.3.1 models on kcomp: an LSTM text classifier's predict function,
and a deep MLP's training function.

    python bench/keras_compile.py [--repeat N] [--out PATH]

Model: Embedding(20000, 128, input_length=80) -> LSTM(128) -> Dense(1, sigmoid), the shape of
Keras's imdb_lstm example. Each repetition is a new Python process with a new, empty kcomp cache
directory; it builds the model and computes its weights' values (`get_weights()`: the CMake
toolchain probe of the empty cache and the one build of the initializers, kcomp/deferred.py),
then times `model._make_predict_function()` (the K.function call Keras makes before the first
predict: trace, passes, lowering, C++ build, load) and checks one prediction against a numpy
forward pass. Target: at most 1 s. The construction and the weights are timed too.

Deep models, compiled with SGD and categorical cross-entropy:
  - MLP: Dense(64) on 32 inputs, then 20 blocks of Dense(64) -> BatchNormalization -> ReLU, then
    Dense(10, softmax); 64 samples;
  - CNN: Conv2D(32, 3, same) on 32x32x3 images, then 10 blocks of Conv2D(32, 3, same) ->
    BatchNormalization -> ReLU, then GlobalAveragePooling2D and Dense(10, softmax); 8 images.
Timed: construction (the layers, `model.compile`, and `get_weights`, which computes the
initializers' values: the toolchain probe of the empty cache and one build, kcomp/deferred.py),
then the first `train_on_batch` (the training function's trace, gradients, passes and build,
and one step); its loss is checked against a numpy forward pass in training mode.

Needs keras==2.3.1. Writes markdown (default bench/results/keras_compile.md).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "results", "keras_compile.md")
TARGET_S = 1.0


def child():
    """The classifier built in an empty cache; prints JSON {construction, weights, seconds,
    max_error}: the seconds to create the model, to have its weights' values (the toolchain
    probe and one build) and to compile its predict function."""
    os.environ["KERAS_BACKEND"] = "kcomp.backend"
    import numpy as np
    import keras
    L = keras.layers
    start = time.perf_counter()
    model = keras.models.Sequential([L.Embedding(20000, 128, input_length=80), L.LSTM(128),
                                     L.Dense(1, activation="sigmoid")])
    construction = time.perf_counter() - start
    start = time.perf_counter()
    model.get_weights()  # the toolchain probe and the initializers' values (kcomp/deferred.py)
    weights = time.perf_counter() - start
    start = time.perf_counter()
    model._make_predict_function()
    seconds = time.perf_counter() - start
    x = np.random.default_rng(0).integers(0, 20000, (7, 80))
    got = model.predict(x)
    print(json.dumps({"seconds": seconds, "construction": construction, "weights": weights,
                      "max_error": float(np.max(np.abs(got - forward(model, x))))}))


DEEP = {"mlp": (20, "Dense-BatchNorm-ReLU"), "cnn": (10, "Conv2D-BatchNorm-ReLU")}


def child_deep(kind):
    """A deep model built in an empty cache, then its first training step; prints JSON
    {construction, seconds, max_error}: the seconds from creating the model to having its
    weights' values, and those of the first train_on_batch."""
    os.environ["KERAS_BACKEND"] = "kcomp.backend"
    import numpy as np
    import keras
    L = keras.layers
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    if kind == "mlp":
        model = keras.models.Sequential([L.Dense(64, input_shape=(32,))])
        x = rng.uniform(-1, 1, (64, 32)).astype("float32")
    else:
        model = keras.models.Sequential([L.Conv2D(32, 3, padding="same",
                                                  input_shape=(32, 32, 3))])
        x = rng.uniform(-1, 1, (8, 32, 32, 3)).astype("float32")
    for _ in range(DEEP[kind][0]):
        model.add(L.Dense(64) if kind == "mlp" else L.Conv2D(32, 3, padding="same"))
        model.add(L.BatchNormalization())
        model.add(L.Activation("relu"))
    if kind == "cnn":
        model.add(L.GlobalAveragePooling2D())
    model.add(L.Dense(10, activation="softmax"))
    model.compile("sgd", "categorical_crossentropy")
    model.get_weights()  # computes the initializers' values (kcomp/deferred.py)
    construction = time.perf_counter() - start
    y = np.eye(10, dtype="float32")[rng.integers(0, 10, len(x))]
    want = deep_loss(model, x, y)  # (before the step changes the weights)
    start = time.perf_counter()
    loss = model.train_on_batch(x, y)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "construction": construction,
                      "max_error": abs(float(loss) - want)}))


def deep_loss(model, x, y):
    """A deep model's loss in numpy, BatchNormalization in training mode (batch statistics
    over every axis but the channels')."""
    import numpy as np
    from numpy.lib.stride_tricks import sliding_window_view
    h = x.astype(np.float64)
    for layer in model.layers:
        w = [a.astype(np.float64) for a in layer.get_weights()]
        kind = type(layer).__name__
        if kind == "Conv2D":  # 3x3, same, stride 1
            win = sliding_window_view(np.pad(h, ((0, 0), (1, 1), (1, 1), (0, 0))), (3, 3),
                                      axis=(1, 2))  # (n, h, w, c, 3, 3)
            h = np.einsum("nhwcij,ijcf->nhwf", win, w[0]) + w[1]
        elif kind == "GlobalAveragePooling2D":
            h = h.mean(axis=(1, 2))
        elif kind == "Dense":
            h = h @ w[0] + w[1]
            if layer.get_config()["activation"] == "softmax":
                h = np.exp(h - h.max(axis=1, keepdims=True))
                h /= h.sum(axis=1, keepdims=True)
        elif kind == "BatchNormalization":  # gamma, beta (the moving statistics: unused)
            axes = tuple(range(h.ndim - 1))
            h = (h - h.mean(axes)) / np.sqrt(h.var(axes) + layer.epsilon) * w[0] + w[1]
        else:  # Activation("relu")
            h = np.maximum(h, 0)
    return float(np.mean(-np.sum(y * np.log(np.clip(h, 1e-7, 1 - 1e-7)), axis=1)))


def forward(model, x):
    """The classifier in numpy (Keras's LSTM: gates i, f, c, o; sigmoid recurrence)."""
    import numpy as np
    emb, (kernel, rec, bias), (w, b) = (model.layers[0].get_weights()[0],
                                        model.layers[1].get_weights(),
                                        model.layers[2].get_weights())
    u = rec.shape[0]
    h = c = np.zeros((x.shape[0], u))
    sigmoid = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    for t in range(x.shape[1]):
        z = emb[x[:, t]] @ kernel + h @ rec + bias
        i, f = sigmoid(z[:, :u]), sigmoid(z[:, u:2 * u])
        c = f * c + i * np.tanh(z[:, 2 * u:3 * u])
        h = sigmoid(z[:, 3 * u:]) * np.tanh(c)
    return sigmoid(h @ w + b)


def run_child(which="predict"):
    cache = tempfile.mkdtemp(prefix="kcomp-bench-")
    os.chmod(cache, 0o700)
    env = {k: v for k, v in os.environ.items() if k not in ("KCOMP_MODE", "KCOMP_EXPLAIN")}
    env["KCOMP_CACHE_DIR"] = cache
    try:
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", which],
                             env=env,
                             capture_output=True, text=True, check=True)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--deep-repeat", type=int, default=3)
    p.add_argument("--out", default=DEFAULT_OUT)
    p.add_argument("--child", choices=("predict",) + tuple(DEEP), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child() if args.child == "predict" else child_deep(args.child)
    runs = [run_child() for _ in range(args.repeat)]
    times = [r["seconds"] for r in runs]
    error = max(r["max_error"] for r in runs)
    if error > 1e-5:
        sys.exit(f"kcomp's predictions differ from the numpy forward pass by {error:.3g}")
    deep = {kind: [run_child(kind) for _ in range(args.deep_repeat)] for kind in DEEP}
    deep_error = max(r["max_error"] for runs in deep.values() for r in runs)
    if deep_error > 1e-4:
        sys.exit(f"a deep model's loss differs from numpy's by {deep_error:.3g}")
    from kcomp.bench import machine
    info = machine.describe()
    med = statistics.median(times)
    text = "\n".join([
        "# Keras models: cold compiles", "",
        f"Command: `python bench/keras_compile.py {' '.join(argv)}`".rstrip() + "  ",
        f"Date: {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC  ",
        f"Machine: {info.get('cpu')}, {info.get('cores')} cores; compiler {info.get('compiler')}; "
        f"kcomp {info.get('kcomp_revision', info.get('kcomp'))}", "",
        "Embedding(20000, 128) -> LSTM(128) -> Dense(1, sigmoid), input length 80. Each run: a new "
        "process and an empty cache directory; timed: the model's construction, then "
        "`model.get_weights()` (the toolchain probe and the one build of the initializers' "
        "values), then `model._make_predict_function()` (the cold compile). Predictions "
        f"checked against a numpy forward pass (max |difference| {error:.2g}).", "",
        "| measurement | median | min | max | target | result |",
        "|---|---:|---:|---:|---:|:---:|",
        f"| cold compile, {len(times)} runs | {med:.3f} s | {min(times):.3f} s | "
        f"{max(times):.3f} s | ≤ {TARGET_S:.1f} s | {'pass' if med <= TARGET_S else 'FAIL'} |",
        *[f"| {what}, {len(runs)} runs | {statistics.median(t):.3f} s | {min(t):.3f} s | "
          f"{max(t):.3f} s | — | — |"
          for what, key in (("before it: construction", "construction"),
                            ("before it: the weights' values (incl. the toolchain probe)",
                             "weights"))
          for t in [[r[key] for r in runs]]],
        *[f"| deep {kind.upper()} ({DEEP[kind][0]} {DEEP[kind][1]} blocks), {what}, "
          f"{len(runs)} runs | {statistics.median(t):.2f} s | {min(t):.2f} s | "
          f"{max(t):.2f} s | — | — |"
          for kind, runs in deep.items()
          for what, key in (("construction", "construction"), ("first train_on_batch", "seconds"))
          for t in [[r[key] for r in runs]]], "",
        f"Deep models: see the docstring; their first losses agree with a numpy forward pass "
        f"in training mode (max |difference| {deep_error:.2g}).", ""])
    from kcomp.bench.report import write_text
    write_text(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
