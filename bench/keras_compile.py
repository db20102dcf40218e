#!/usr/bin/env python
"""Cold compiles of Keras 2.3.1 models on kcomp: an LSTM text classifier's predict function,
and a deep MLP's training function.

    python bench/keras_compile.py [--repeat N] [--out PATH]

Model: Embedding(20000, 128, input_length=80) -> LSTM(128) -> Dense(1, sigmoid), the shape of
Keras's imdb_lstm example. Each repetition is a new Python process with a new, empty kcomp cache
directory; it builds the model, then times `model._make_predict_function()` (the K.function call
Keras makes before the first predict: trace, passes, lowering, C++ build, load, including the
CMake toolchain probe of an empty cache) and checks one prediction against a numpy forward pass.
Target: at most 1 s.

Deep model: Dense(64) on 32 inputs, then 20 blocks of Dense(64) -> BatchNormalization ->
ReLU, then Dense(10, softmax), compiled with SGD and categorical cross-entropy. Timed: the first
`train_on_batch` on 64 samples (the training function's trace, gradients, passes and build, and
one step); its loss is checked against a numpy forward pass in training mode.

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
    """One cold compile in this process; prints JSON {seconds, max_error}."""
    os.environ["KERAS_BACKEND"] = "kcomp.backend"
    import numpy as np
    import keras
    L = keras.layers
    model = keras.models.Sequential([L.Embedding(20000, 128, input_length=80), L.LSTM(128),
                                     L.Dense(1, activation="sigmoid")])
    start = time.perf_counter()
    model._make_predict_function()
    seconds = time.perf_counter() - start
    x = np.random.default_rng(0).integers(0, 20000, (7, 80))
    got = model.predict(x)
    print(json.dumps({"seconds": seconds, "max_error": float(np.max(np.abs(got - forward(
        model, x))))}))


BLOCKS = 20


def child_deep():
    """One cold compile of the deep MLP's training function; prints JSON {seconds, max_error}."""
    os.environ["KERAS_BACKEND"] = "kcomp.backend"
    import numpy as np
    import keras
    L = keras.layers
    model = keras.models.Sequential([L.Dense(64, input_shape=(32,))])
    for _ in range(BLOCKS):
        model.add(L.Dense(64))
        model.add(L.BatchNormalization())
        model.add(L.Activation("relu"))
    model.add(L.Dense(10, activation="softmax"))
    model.compile("sgd", "categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (64, 32)).astype("float32")
    y = np.eye(10, dtype="float32")[rng.integers(0, 10, 64)]
    want = deep_loss(model, x, y)  # (before the step changes the weights)
    start = time.perf_counter()
    loss = model.train_on_batch(x, y)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "max_error": abs(float(loss) - want)}))


def deep_loss(model, x, y):
    """The deep MLP's loss in numpy, BatchNormalization in training mode (batch statistics)."""
    import numpy as np
    h = x.astype(np.float64)
    for layer in model.layers:
        w = [a.astype(np.float64) for a in layer.get_weights()]
        kind = type(layer).__name__
        if kind == "Dense":
            h = h @ w[0] + w[1]
            if layer.get_config()["activation"] == "softmax":
                h = np.exp(h - h.max(axis=1, keepdims=True))
                h /= h.sum(axis=1, keepdims=True)
        elif kind == "BatchNormalization":  # gamma, beta (the moving statistics: unused)
            h = (h - h.mean(0)) / np.sqrt(h.var(0) + layer.epsilon) * w[0] + w[1]
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
    p.add_argument("--child", choices=("predict", "deep"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child() if args.child == "predict" else child_deep()
    runs = [run_child() for _ in range(args.repeat)]
    times = [r["seconds"] for r in runs]
    error = max(r["max_error"] for r in runs)
    if error > 1e-5:
        sys.exit(f"kcomp's predictions differ from the numpy forward pass by {error:.3g}")
    deep = [run_child("deep") for _ in range(args.deep_repeat)]
    deep_times = [r["seconds"] for r in deep]
    deep_error = max(r["max_error"] for r in deep)
    if deep_error > 1e-4:
        sys.exit(f"the deep MLP's loss differs from numpy's by {deep_error:.3g}")
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
        "process and an empty cache directory; timed: `model._make_predict_function()` "
        "(including the toolchain probe). Predictions checked against a numpy forward pass "
        f"(max |difference| {error:.2g}).", "",
        "| measurement | median | min | max | target | result |",
        "|---|---:|---:|---:|---:|:---:|",
        f"| cold compile, {len(times)} runs | {med:.3f} s | {min(times):.3f} s | "
        f"{max(times):.3f} s | ≤ {TARGET_S:.1f} s | {'pass' if med <= TARGET_S else 'FAIL'} |",
        f"| deep MLP ({BLOCKS} Dense-BatchNorm-ReLU blocks), first train_on_batch, "
        f"{len(deep_times)} runs | {statistics.median(deep_times):.2f} s | "
        f"{min(deep_times):.2f} s | {max(deep_times):.2f} s | — | — |", "",
        f"Deep MLP: see the docstring; its first loss agrees with a numpy forward pass in "
        f"training mode (max |difference| {deep_error:.2g}).", ""])
    from kcomp.bench.report import write_text
    write_text(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
