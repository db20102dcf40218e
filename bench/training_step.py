#!/usr/bin/env python
"""One training step (forward, backward and an Adam update) of Keras 2.3.1 models on kcomp,
against the same models in PyTorch eager, timed side by side.

    python bench/training_step.py [--rounds N] [--out PATH] [--only mlp,lstm]

Models (float32, categorical cross-entropy over 10 classes, Adam(1e-3)):
  mlp:  Dense 784-512-512-10 (relu, relu, softmax) at batch 128
  lstm: LSTM(256) over 100 steps of 128 features (sigmoid gates, tanh), then Dense(10,
        softmax), at batch 32

kcomp runs Keras's compiled train function (model.train_function: the step Keras's fit and
train_on_batch call, without their Python data handling); the time of a whole train_on_batch
is reported beside it. PyTorch runs zero_grad, forward, CrossEntropyLoss, backward and
Adam.step, with as many threads as kcomp. Rounds interleave the implementations; each round
times a sample of steps of each, and the table reports the median over rounds of the time per
step. Needs keras==2.3.1 and torch in the same environment (PyTorch is skipped without it).
Writes markdown (default bench/results/training.md).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ["KERAS_BACKEND"] = "kcomp.backend"
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from sampling import chosen, sample  # noqa: E402
DEFAULT_OUT = os.path.join(HERE, "results", "training.md")
CLASSES = 10


def keras_mlp(keras):
    L = keras.layers
    return keras.models.Sequential([L.Dense(512, activation="relu", input_shape=(784,)),
                                    L.Dense(512, activation="relu"),
                                    L.Dense(CLASSES, activation="softmax")])


def keras_lstm(keras):
    L = keras.layers
    return keras.models.Sequential([
        L.LSTM(256, recurrent_activation="sigmoid", input_shape=(100, 128)),
        L.Dense(CLASSES, activation="softmax")])


def torch_mlp(torch):
    nn = torch.nn
    return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                         nn.Linear(512, CLASSES))


def torch_lstm(torch):
    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(128, 256, batch_first=True)
            self.dense = torch.nn.Linear(256, CLASSES)

        def forward(self, x):
            return self.dense(self.lstm(x)[0][:, -1])
    return Model()


MODELS = {  # name: (input shape, Keras builder, PyTorch builder, description)
    "mlp": ((128, 784), keras_mlp, torch_mlp, "MLP 784-512-512-10, batch 128"),
    "lstm": ((32, 100, 128), keras_lstm, torch_lstm, "LSTM(256), 100 steps x 128, batch 32"),
}


def steps(name):
    """{implementation: a function running one training step} for model `name`."""
    import numpy as np
    import keras
    shape, make_keras, make_torch, _ = MODELS[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype("float32")
    labels = rng.integers(0, CLASSES, shape[0])
    y = np.eye(CLASSES, dtype="float32")[labels]
    model = make_keras(keras)
    model.compile(keras.optimizers.Adam(1e-3), "categorical_crossentropy")
    model.train_on_batch(x, y)  # builds and compiles the train function
    f, weights = model.train_function, np.ones(shape[0], "float32")
    out = {"kcomp": lambda: f([x, y, weights]),
           "kcomp train_on_batch": lambda: model.train_on_batch(x, y)}
    try:
        import torch
    except ImportError:
        return out
    from kcomp.bench.peers import cpu_threads
    torch.set_num_threads(cpu_threads())
    net = make_torch(torch)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    loss = torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(labels)

    def torch_step():
        opt.zero_grad()
        loss(net(xt), yt).backward()
        opt.step()
    out["torch eager"] = torch_step
    return out


def measure(rounds, sample_s, only):
    results = {}
    for name in only:
        impls = steps(name)
        for fn in impls.values():  # warm: caches, thread pools, allocator
            sample(fn, sample_s / 2)
        times = {k: [] for k in impls}
        keys = list(impls)
        for r in range(rounds):
            for k in keys[r % len(keys):] + keys[:r % len(keys)]:
                times[k].append(sample(impls[k], sample_s))
        results[name] = {k: statistics.median(v) for k, v in times.items()}
        print(name, {k: f"{v * 1e3:.2f} ms" for k, v in results[name].items()}, flush=True)
    return results


def peer_versions():
    versions = {}
    for name in ("keras", "torch"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            pass
    return versions


def report(results, argv, elapsed):
    from kcomp.bench.report import script_header
    lines = script_header("Training step: kcomp against PyTorch eager",
                          " ".join(["python bench/training_step.py"] + list(argv)), elapsed)
    lines += [f"- {name} {version}" for name, version in peer_versions().items()]
    lines += ["",
              "| model | kcomp step | kcomp train_on_batch | PyTorch eager | kcomp vs PyTorch |",
              "|---|---:|---:|---:|---:|"]
    for name, r in results.items():
        torch_t = r.get("torch eager")
        ratio = f"{torch_t / r['kcomp']:.2f}x" if torch_t else "n/a"
        cells = [f"{r[k] * 1e3:.2f} ms" if k in r else "n/a"
                 for k in ("kcomp", "kcomp train_on_batch", "torch eager")]
        lines.append(f"| {MODELS[name][3]} | {' | '.join(cells)} | {ratio} |")
    lines += ["", "kcomp vs PyTorch = PyTorch's median time per step / kcomp's (above 1: kcomp "
              "is faster). Times are medians over interleaved rounds of the time per step.", ""]
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--sample", type=float, default=1.0, help="seconds per timed sample")
    p.add_argument("--only", default="mlp,lstm")
    p.add_argument("--out", default=DEFAULT_OUT)
    args = p.parse_args(argv)
    only = chosen(p, args.only, MODELS)
    start = time.time()
    results = measure(args.rounds, args.sample, only)
    text = report(results, argv, time.time() - start)
    from kcomp.bench.report import write_text
    write_text(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
