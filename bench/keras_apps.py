#!/usr/bin/env python
"""Keras 2.3.1's applications (ResNet50, MobileNet, NASNetMobile, ...) on kcomp: how long a user
waits for the first prediction, in a new process with an empty cache, and with the cache that
process left.

    python bench/keras_apps.py [--apps resnet50,mobilenet,...] [--out PATH]

Each application is built with weights=None (random initial values: no download) and predicts
one image; one child process per measurement:
  - cold: an empty cache directory. Timed: construction (the layers; the initializers' values
    wait, kcomp/deferred.py) and the first predict (the toolchain probe, the initial values'
    build and run, the predict function's trace, passes and build, one call);
  - warm: a new process on the cache the cold one left (the seeds differ: np.random is not
    seeded), the same two times;
  - per call: the median of 5 further predicts in the cold process, once the precompiled
    header's background build (kcomp/jit/pch.py) is done.
Every prediction must be finite with rows summing to 1 (a softmax), else the script fails.

Needs keras==2.3.1. Writes markdown (default bench/results/keras_apps.md).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "results", "keras_apps.md")
APPS = {  # name: (module, constructor)
    "resnet50": ("resnet50", "ResNet50"), "mobilenet": ("mobilenet", "MobileNet"),
    "mobilenetv2": ("mobilenet_v2", "MobileNetV2"), "densenet121": ("densenet", "DenseNet121"),
    "inceptionv3": ("inception_v3", "InceptionV3"), "xception": ("xception", "Xception"),
    "nasnetmobile": ("nasnet", "NASNetMobile"), "vgg16": ("vgg16", "VGG16"),
}


def child(app: str) -> None:
    os.environ["KERAS_BACKEND"] = "kcomp.backend"
    import importlib
    import numpy as np
    module, ctor = APPS[app]
    start = time.perf_counter()
    model = getattr(importlib.import_module(f"keras.applications.{module}"), ctor)(weights=None)
    construction = time.perf_counter() - start
    x = np.random.default_rng(0).uniform(0, 1, (1,) + tuple(model.input_shape[1:]))
    x = x.astype("float32")
    start = time.perf_counter()
    y = model.predict(x)
    first = time.perf_counter() - start
    from kcomp.jit import pch
    while pch.building(os.environ["KCOMP_CACHE_DIR"]):  # (it would compete with the calls)
        time.sleep(0.05)
    calls = []
    for _ in range(5):
        start = time.perf_counter()
        model.predict(x)
        calls.append(time.perf_counter() - start)
    ok = bool(np.isfinite(y).all() and abs(float(y.sum()) - 1) < 1e-4)
    print(json.dumps({"construction": construction, "first": first,
                      "call": statistics.median(calls), "ok": ok,
                      "params": int(model.count_params())}))


def run(app: str, cache: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("KCOMP_MODE", "KCOMP_EXPLAIN")}
    env["KCOMP_CACHE_DIR"] = cache
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", app], env=env,
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{app} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if not result["ok"]:
        sys.exit(f"{app}: the prediction is not a finite softmax")
    return result


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--apps", default=",".join(APPS))
    p.add_argument("--out", default=DEFAULT_OUT)
    p.add_argument("--child", choices=tuple(APPS), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args.child)
    apps = args.apps.split(",")
    unknown = [a for a in apps if a not in APPS]
    if unknown:
        sys.exit(f"unknown applications {unknown}; known: {', '.join(APPS)}")
    rows, started = [], time.perf_counter()
    for app in apps:
        cache = tempfile.mkdtemp(prefix="kcomp-apps-")
        os.chmod(cache, 0o700)
        try:
            cold = run(app, cache)
            warm = run(app, cache)
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        rows.append((app, cold, warm))
        print(app, json.dumps({"cold": cold, "warm": warm}), file=sys.stderr)
    from kcomp.bench.report import script_header, write_text
    s = lambda v: f"{v:.2f} s"  # noqa: E731
    text = "\n".join([
        *script_header("Keras applications: time to the first prediction",
                       f"python bench/keras_apps.py {' '.join(argv)}".rstrip(),
                       time.perf_counter() - started), "",
        "Keras 2.3.1's `keras.applications`, weights=None, one 224x224 (299x299 for InceptionV3 "
        "and Xception) image. Cold: a new process and an empty cache directory; warm: a new "
        "process on the cache the cold one left. Construction: building the model; first "
        "predict: everything the first `model.predict` does (toolchain probe, initial values, "
        "predict function build, one call). See the docstring.", "",
        "| application | parameters | cold: construction | cold: first predict | "
        "warm: construction | warm: first predict | per predict |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *[f"| {app} | {cold['params'] / 1e6:.1f} M | {s(cold['construction'])} | "
          f"{s(cold['first'])} | {s(warm['construction'])} | {s(warm['first'])} | "
          f"{cold['call'] * 1e3:.1f} ms |" for app, cold, warm in rows], ""])
    write_text(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
