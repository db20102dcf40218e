#!/usr/bin/env python
"""Inference of whole Keras models: Keras 2.3.1 on kcomp against the same models, with the same
weights, in Keras on TensorFlow, timed side by side.

    python bench/keras_inference.py [--peer-python PATH] [--rounds N] [--only cnn,lstm] [--out PATH]

Models (float32, Keras's own initializers, BatchNormalization statistics drawn at random so
that they matter):
  cnn:       Keras's mnist_cnn example: Conv2D 32, Conv2D 64, MaxPooling, Dropout, Dense 128,
             Dense 10, at batch 128 on 28x28x1
  resnet:    Conv2D+BN+relu, then two residual blocks (the second with stride 2 and a 1x1
             projection), GlobalAveragePooling, Dense 10, at batch 32 on 32x32x3
  mobilenet: two depthwise-separable blocks (DepthwiseConv2D+BN+relu, 1x1 Conv2D+BN+relu, the
             second with stride 2), GlobalAveragePooling, Dense 10, at batch 16 on 56x56x32
  lstm:      Keras's imdb_lstm example: Embedding 20000x128, LSTM 128, Dense 1 sigmoid, at batch
             32 on 80 tokens
  conv_gru:  Embedding 5000x64, Conv1D 64 (5), MaxPooling1D 4, GRU 64 (reset_after), Dense 1
             sigmoid, at batch 64 on 200 tokens
  autoencoder: Conv2D 32, MaxPooling, Conv2D 16, MaxPooling, Conv2DTranspose 16 (stride 2),
             UpSampling2D, Conv2D 1 sigmoid, at batch 64 on 28x28x1
  inception: four branches (1x1; 1x1 then 3x3; 1x1 then 5x5; 3x3 average pooling then 1x1)
             concatenated, GlobalMaxPooling, Dense 10, at batch 16 on 28x28x64
  bilstm:    Embedding 10000x64, Bidirectional LSTM 64 (all steps), GlobalAveragePooling1D,
             Dense 1 sigmoid, at batch 32 on 50 tokens
  mlp:       Dense 784-512-512-10 (relu, relu, softmax) with Dropout 0.2, at batch 1

Each model is defined once, as a function of the `keras` module, and built in both Kerases.
kcomp runs in this process (Keras 2.3.1 with KERAS_BACKEND=kcomp.backend); TensorFlow runs in
a worker process started with --peer-python (an interpreter where `import tensorflow` works;
default: this one), which builds the model, loads kcomp's weights and answers timing requests
over a pipe, so that rounds interleave the two. Timed: `model.predict_on_batch(x)` on both
sides (what a user calls), and on TensorFlow also the model called through
`tf.function(jit_compile=True)` (XLA). Both outputs are checked against each other first.
Writes markdown (default bench/results/keras_inference.md).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "kcomp.backend")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from sampling import chosen, sample  # noqa: E402  (the worker, without kcomp, uses them too)
DEFAULT_OUT = os.path.join(HERE, "results", "keras_inference.md")


# ---- the models: each builder takes the keras module (2.3.1 on kcomp, or TensorFlow's) ------
def cnn(keras):
    L = keras.layers
    return keras.models.Sequential([
        L.Conv2D(32, 3, activation="relu", input_shape=(28, 28, 1)),
        L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(2), L.Dropout(0.25), L.Flatten(),
        L.Dense(128, activation="relu"), L.Dropout(0.5), L.Dense(10, activation="softmax")])


def _bn_relu(L, x):
    return L.Activation("relu")(L.BatchNormalization()(x))


def resnet(keras):
    L = keras.layers
    inp = L.Input((32, 32, 3))
    x = _bn_relu(L, L.Conv2D(32, 3, padding="same", use_bias=False)(inp))
    for filters, stride in ((32, 1), (64, 2)):
        y = _bn_relu(L, L.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x))
        y = L.BatchNormalization()(L.Conv2D(filters, 3, padding="same", use_bias=False)(y))
        shortcut = x if stride == 1 else L.BatchNormalization()(
            L.Conv2D(filters, 1, strides=stride, use_bias=False)(x))
        x = L.Activation("relu")(L.add([y, shortcut]))
    out = L.Dense(10, activation="softmax")(L.GlobalAveragePooling2D()(x))
    return keras.models.Model(inp, out)


def mobilenet(keras):
    L = keras.layers
    inp = L.Input((56, 56, 32))
    x = inp
    for filters, stride in ((64, 1), (128, 2)):
        x = _bn_relu(L, L.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(x))
        x = _bn_relu(L, L.Conv2D(filters, 1, use_bias=False)(x))
    out = L.Dense(10, activation="softmax")(L.GlobalAveragePooling2D()(x))
    return keras.models.Model(inp, out)


def lstm(keras):
    L = keras.layers
    return keras.models.Sequential([
        L.Embedding(20000, 128, input_length=80),
        L.LSTM(128, dropout=0.2, recurrent_dropout=0.2, recurrent_activation="sigmoid"),
        L.Dense(1, activation="sigmoid")])


def conv_gru(keras):
    L = keras.layers
    return keras.models.Sequential([
        L.Embedding(5000, 64, input_length=200), L.Conv1D(64, 5, activation="relu"),
        L.MaxPooling1D(4),
        L.GRU(64, reset_after=True, recurrent_activation="sigmoid"),
        L.Dense(1, activation="sigmoid")])


def autoencoder(keras):
    L = keras.layers
    return keras.models.Sequential([
        L.Conv2D(32, 3, padding="same", activation="relu", input_shape=(28, 28, 1)),
        L.MaxPooling2D(2), L.Conv2D(16, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
        L.Conv2DTranspose(16, 3, strides=2, padding="same", activation="relu"),
        L.UpSampling2D(2), L.Conv2D(1, 3, padding="same", activation="sigmoid")])


def inception(keras):
    L = keras.layers
    inp = L.Input((28, 28, 64))
    a = L.Conv2D(32, 1, activation="relu")(inp)
    b = L.Conv2D(48, 3, padding="same", activation="relu")(L.Conv2D(24, 1, activation="relu")(inp))
    c = L.Conv2D(16, 5, padding="same", activation="relu")(L.Conv2D(8, 1, activation="relu")(inp))
    d = L.Conv2D(16, 1, activation="relu")(L.AveragePooling2D(3, strides=1, padding="same")(inp))
    x = L.concatenate([a, b, c, d])
    out = L.Dense(10, activation="softmax")(L.GlobalMaxPooling2D()(x))
    return keras.models.Model(inp, out)


def bilstm(keras):
    L = keras.layers
    return keras.models.Sequential([
        L.Embedding(10000, 64, input_length=50),
        L.Bidirectional(L.LSTM(64, return_sequences=True, recurrent_activation="sigmoid")),
        L.GlobalAveragePooling1D(), L.Dense(1, activation="sigmoid")])


def mlp(keras):
    L = keras.layers
    return keras.models.Sequential([L.Dense(512, activation="relu", input_shape=(784,)),
                                    L.Dropout(0.2), L.Dense(512, activation="relu"),
                                    L.Dropout(0.2), L.Dense(10, activation="softmax")])


MODELS = {  # name: (builder, input shape, integer vocabulary (0: float input), description)
    "cnn": (cnn, (128, 28, 28, 1), 0, "mnist_cnn, batch 128"),
    "resnet": (resnet, (32, 32, 32, 3), 0, "ResNet blocks + BN, batch 32, 32x32x3"),
    "mobilenet": (mobilenet, (16, 56, 56, 32), 0, "depthwise-separable + BN, batch 16, 56x56x32"),
    "lstm": (lstm, (32, 80), 20000, "imdb_lstm: Embedding + LSTM 128, batch 32 x 80"),
    "conv_gru": (conv_gru, (64, 200), 5000, "Embedding + Conv1D + GRU 64, batch 64 x 200"),
    "autoencoder": (autoencoder, (64, 28, 28, 1), 0,
                    "convolutional autoencoder (Conv2DTranspose, UpSampling2D), batch 64"),
    "inception": (inception, (16, 28, 28, 64), 0, "inception block, batch 16, 28x28x64"),
    "bilstm": (bilstm, (32, 50), 10000, "Embedding + Bidirectional LSTM 64, batch 32 x 50"),
    "mlp": (mlp, (1, 784), 0, "MLP 784-512-512-10 with dropout, batch 1"),
}
IMPLS = ("kcomp", "tf predict_on_batch", "tf XLA")


# ---- the TensorFlow worker: JSON requests on stdin, one JSON answer per line on stdout --------
def worker():
    out = sys.stdout
    sys.stdout = sys.stderr  # TensorFlow's chatter must not reach the pipe
    import numpy as np
    calls, answer = {}, {}
    try:
        import tensorflow as tf
        from tensorflow import keras
        tf.keras.utils.disable_interactive_logging()
        answer = {"versions": {"tensorflow": tf.__version__, "tf keras": keras.__version__}}
    except Exception as e:  # no TensorFlow: every request is answered with the reason
        answer = {"error": f"TensorFlow unavailable: {e}"}
    print(json.dumps(answer), file=out, flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        try:
            if "error" in answer and "versions" not in answer:
                raise RuntimeError(answer["error"])
            if "build" in req:
                data = np.load(req["npz"])
                model, x = MODELS[req["build"]][0](keras), data["x"]
                model(x[:1])  # builds the weights (Keras 3 ignores Embedding's input_length)
                model.set_weights([data[f"w{i}"] for i in range(len(data.files) - 1)])
                xla = tf.function(lambda t: model(t, training=False), jit_compile=True)
                xt = tf.constant(x)
                calls = {"tf predict_on_batch": lambda: model.predict_on_batch(x),
                         "tf XLA": lambda: xla(xt).numpy()}
                outs = {k: np.asarray(f()) for k, f in calls.items()}
                np.savez(req["out"], **outs)
                reply = {"impls": list(calls)}
            else:
                reply = {"seconds": sample(calls[req["time"]], req["seconds"])}
        except Exception as e:
            reply = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(reply), file=out, flush=True)


class Peer:
    """The worker process, asked for builds and samples in turn."""

    def __init__(self, python):
        self.proc = subprocess.Popen([python, os.path.abspath(__file__), "--worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, "KERAS_BACKEND": "tensorflow",
                                          "TF_CPP_MIN_LOG_LEVEL": "3"})
        hello = self._read()
        self.versions, self.error = hello.get("versions", {}), hello.get("error")

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the TensorFlow worker exited")
        return json.loads(line)

    def ask(self, **req):
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        reply = self._read()
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


# ---- the driver -------------------------------------------------------------------------------
def kcomp_model(name, tmp):
    """kcomp's model, its input, and the npz file that gives the worker both."""
    import numpy as np
    import keras
    build, shape, vocab, _ = MODELS[name]
    rng = np.random.default_rng(0)
    model = build(keras)
    for layer in model.layers:  # statistics away from 0 and 1, so that a dropped BN shows
        if type(layer).__name__ == "BatchNormalization":
            c = layer.get_weights()[0].shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.2, c),
                               rng.normal(0, 0.2, c), rng.uniform(0.5, 1.5, c)])
    x = (rng.integers(0, vocab, shape).astype("int32") if vocab
         else rng.standard_normal(shape).astype("float32"))
    path = os.path.join(tmp, f"{name}.npz")
    weights = model.get_weights()
    np.savez(path, x=x, **{f"w{i}": w for i, w in enumerate(weights)})
    return model, x, path


def measure(name, peer, rounds, sample_s, tmp):
    import numpy as np
    model, x, path = kcomp_model(name, tmp)
    calls = {"kcomp": lambda: model.predict_on_batch(x)}
    want = np.asarray(calls["kcomp"]())
    status = {}
    impls = ["kcomp"]
    if peer.error is None:
        out = os.path.join(tmp, f"{name}_out.npz")
        try:
            impls += peer.ask(build=name, npz=path, out=out)["impls"]
            got = np.load(out)
            for k in impls[1:]:
                err = float(np.max(np.abs(got[k] - want)) / max(np.max(np.abs(want)), 1e-30))
                status[k] = err
                if err > 1e-3:
                    print(f"{name}: {k} disagrees with kcomp ({err:.1e})", file=sys.stderr)
        except RuntimeError as e:
            print(f"{name}: TensorFlow failed: {e}", file=sys.stderr)
            impls = ["kcomp"]

    def one(k, seconds):
        if k == "kcomp":
            return sample(calls[k], seconds)
        return peer.ask(time=k, seconds=seconds)["seconds"]

    for k in impls:  # warm: caches, thread pools, allocator
        one(k, sample_s / 2)
    times = {k: [] for k in impls}
    for r in range(rounds):
        for k in impls[r % len(impls):] + impls[:r % len(impls)]:
            one(k, 0.1 * sample_s)  # settle: the other side's threads go idle
            times[k].append(one(k, sample_s))
    result = {k: statistics.median(v) for k, v in times.items()}
    print(name, {k: f"{v * 1e3:.2f} ms" for k, v in result.items()}, flush=True)
    return {"times": result, "errors": status}


def report(results, versions, argv, elapsed, load):
    import keras
    from kcomp.bench.report import script_header
    lines = script_header("Keras inference: kcomp against TensorFlow",
                          " ".join(["python bench/keras_inference.py"] + list(argv)), elapsed)
    lines += [f"- keras {keras.__version__} (kcomp)"]
    lines += [f"- {name} {v}" for name, v in versions.items()]
    lines += ["", "| model | kcomp | " + " | ".join(IMPLS[1:]) + " | kcomp vs best |",
              "|---|---:|" + "---:|" * (len(IMPLS) - 1) + "---:|"]
    for name, r in results.items():
        t = r["times"]
        cells = [f"{t[k] * 1e3:.2f} ms" if k in t else "n/a" for k in IMPLS]
        peers = [t[k] for k in IMPLS[1:] if k in t]
        ratio = f"{min(peers) / t['kcomp']:.2f}x" if peers else "n/a"
        lines.append(f"| {name}: {MODELS[name][3]} | {' | '.join(cells)} | {ratio} |")
    errors = [f"{name} {max(r['errors'].values()):.1e}" for name, r in results.items()
              if r["errors"]]
    lines += ["", "Times per batch (`predict_on_batch`, or the XLA-compiled call), medians over "
              "interleaved rounds. kcomp vs best = the fastest TensorFlow time / kcomp's (above "
              "1: kcomp is faster)."]
    if errors:
        lines[-1] += (" Largest difference between a TensorFlow output and kcomp's, relative to "
                      "the output's largest magnitude: " + ", ".join(errors) + ".")
    lines += [f"Load average before and after: {load[0]:.2f}, {load[1]:.2f}.", ""]
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--worker"]:
        return worker()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--peer-python", default=sys.executable,
                   help="an interpreter where tensorflow imports (default: this one)")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--sample", type=float, default=0.5, help="seconds per timed sample")
    p.add_argument("--only", default=",".join(MODELS))
    p.add_argument("--out", default=DEFAULT_OUT)
    args = p.parse_args(argv)
    only = chosen(p, args.only, MODELS)
    start, load = time.time(), [os.getloadavg()[0]]
    peer = Peer(args.peer_python)
    if peer.error:
        print(peer.error, file=sys.stderr)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            results = {name: measure(name, peer, args.rounds, args.sample, tmp) for name in only}
    finally:
        peer.close()
    load.append(os.getloadavg()[0])
    text = report(results, peer.versions, argv, time.time() - start, load)
    from kcomp.bench.report import write_text
    write_text(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
