"""Implementations to time: kcomp itself and one adapter per peer.

An adapter turns a workload's builder for its framework (kcomp/bench/workloads.py) into a
`Built`: a `run()` that computes the case once on inputs already in the framework's own form
(converted before timing) and returns the framework's result, and `to_numpy` for the check.
`build` also makes the first calls, so that just-in-time compilers (torch.compile, XLA) have
compiled before anything is checked or timed.

A peer is used only where its module imports; every peer runs on all the machine's cores
(each library's default thread pool, sized explicitly where the library allows).
"""
from __future__ import annotations

import importlib
import os
import tempfile
import time
from typing import Callable, Dict, List, Optional

import numpy as np

from .workloads import Case

WARMUP_CALLS = 2


class Unavailable(Exception):
    """This implementation cannot run this case (not written, or an op kcomp lacks)."""


class Built:
    def __init__(self, run: Callable[[], object], to_numpy: Callable[[object], np.ndarray],
                 build_s: float, note: str = ""):
        self.run, self.to_numpy, self.build_s, self.note = run, to_numpy, build_s, note


def cpu_threads() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _builder(case: Case, framework: str):
    fn = getattr(case.workload, framework, None)
    if fn is None:
        raise Unavailable(f"{case.name} has no {framework} implementation")
    return fn


def _warm(run: Callable[[], object]) -> None:
    for _ in range(WARMUP_CALLS):
        run()


class Impl:
    """An implementation of the suite: kcomp or a peer."""
    name = ""
    module = ""          # what must import for it to be available
    description = ""

    def __init__(self):
        self._probed: Optional[dict] = None

    def probe(self) -> dict:
        """{'available': bool, 'version': str} or {'available': False, 'reason': str}."""
        if self._probed is None:
            try:
                mod = importlib.import_module(self.module)
                self._probed = {"available": True, "version": self._version(mod)}
                self.setup(mod)
            except Exception as e:  # ImportError, or a library that fails to initialise
                self._probed = {"available": False,
                                "reason": f"{type(e).__name__}: {str(e).strip()[:200]}"}
        return self._probed

    def _version(self, mod) -> str:
        return str(getattr(mod, "__version__", "?"))

    def setup(self, mod) -> None:
        """Once, after the import: thread settings."""

    def build(self, case: Case, inputs: List[np.ndarray], weights: Dict[str, np.ndarray]) -> Built:
        raise NotImplementedError


# ---- kcomp ----------------------------------------------------------------------------------

class Kcomp(Impl):
    name, module = "kcomp", "kcomp.backend"
    description = "kcomp: K.function compiled to native code"

    def _version(self, mod) -> str:
        import kcomp
        from kcomp import native
        try:
            isa = native().kernels_isa()
        except Exception:  # the version is still worth reporting
            isa = "?"
        return f"{kcomp.__version__} ({isa})"

    def build(self, case, inputs, weights):
        import kcomp.backend as K
        t = time.perf_counter()
        try:
            placeholders, out = case.workload.kcomp(K, case.params, weights)
        except NotImplementedError as e:  # a pending backend name
            raise Unavailable(f"kcomp lacks an op: {str(e).strip()[:200]}") from None
        f = K.function(placeholders, [out], name=f"bench_{case.name}")
        build_s = time.perf_counter() - t
        info = f.compile_info
        note = ("memo hit" if info.get("memo_hit") else
                "cache hit" if info.get("cache_hit") else "compiled")
        feeds = list(inputs)

        def run():
            return f(feeds)
        _warm(run)
        return Built(run, lambda out: out[0], build_s, note)


# ---- peers ----------------------------------------------------------------------------------

class Numpy(Impl):
    name, module = "numpy", "numpy"
    description = "numpy (its BLAS for matrix products; one thread for elementwise work)"

    def _version(self, mod) -> str:
        try:
            blas = mod.show_config(mode="dicts")["Build Dependencies"]["blas"]
            return f"{mod.__version__} ({blas.get('name', '?')} {blas.get('version', '')})".strip()
        except Exception:  # older numpy: no dict mode
            return mod.__version__

    def build(self, case, inputs, weights):
        t = time.perf_counter()
        fn = case.workload.numpy(case.params, weights)
        feeds = list(inputs)

        def run():
            return fn(*feeds)
        _warm(run)
        return Built(run, np.asarray, time.perf_counter() - t)


class Torch(Impl):
    name, module = "torch", "torch"
    description = "PyTorch eager, inference (no autograd)"

    def setup(self, torch):
        torch.set_num_threads(cpu_threads())
        torch.set_grad_enabled(False)

    def _module(self, case, weights):
        import torch
        fn = _builder(case, "torch")(torch, case.params, weights)
        return fn

    def build(self, case, inputs, weights):
        t = time.perf_counter()
        return self._built(self._module(case, weights), inputs, t)

    @staticmethod
    def _built(fn, inputs, started):
        """fn over the inputs as tensors, warmed; build time counted from `started`."""
        import torch
        xs = [torch.from_numpy(a) for a in inputs]

        def run():
            return fn(*xs)
        _warm(run)
        return Built(run, lambda out: out.numpy(), time.perf_counter() - started)


class TorchCompile(Torch):
    name, module = "torch.compile", "torch"
    description = "torch.compile (Inductor, C++ on CPU), static shapes"

    def build(self, case, inputs, weights):
        import torch
        t = time.perf_counter()
        torch._dynamo.reset()  # a fresh compile per case, never dynamo's recompile limit
        fn = self._module(case, weights)
        if not isinstance(fn, torch.nn.Module):
            inner = fn

            def fn(*a):  # a Python function for dynamo to trace, also over builtins
                return inner(*a)
        return self._built(torch.compile(fn, dynamic=False), inputs, t)


class OnnxRuntime(Impl):
    name, module = "onnxruntime", "onnxruntime"
    description = "ONNX Runtime (CPU provider) on a model exported from the PyTorch version"

    def probe(self):
        r = super().probe()
        if r["available"]:
            try:  # the models come from torch.onnx.export
                import torch  # noqa: F401
                import onnx  # noqa: F401
            except ImportError as e:
                self._probed = r = {"available": False,
                                    "reason": f"needs torch and onnx to export models: {e}"}
        return r

    def build(self, case, inputs, weights):
        import onnxruntime as ort
        import torch
        t = time.perf_counter()
        fn = _builder(case, "torch")(torch, case.params, weights)
        if not isinstance(fn, torch.nn.Module):
            inner = fn

            class Wrap(torch.nn.Module):
                def forward(self, *a):
                    return inner(*a)
            fn = Wrap()
        xs = tuple(torch.from_numpy(a) for a in inputs)
        names = [f"x{i}" for i in range(len(inputs))]
        with tempfile.TemporaryDirectory(prefix="kcomp-bench-onnx-") as tmp:
            path = os.path.join(tmp, "model.onnx")
            self._export(torch, fn, xs, names, path)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = cpu_threads()
            opts.log_severity_level = 3
            sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        feeds = dict(zip([i.name for i in sess.get_inputs()], inputs))

        def run():
            return sess.run(None, feeds)[0]
        _warm(run)
        return Built(run, np.asarray, time.perf_counter() - t, self.exporter)

    exporter = ""

    def _export(self, torch, module, xs, names, path):
        """The TorchScript exporter where it exists (it keeps LSTM/GRU as ONNX's own ops),
        else the torch.export-based one."""
        import io
        import contextlib
        import warnings
        errors = []
        for dynamo in (False, True):
            try:
                with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                    warnings.simplefilter("ignore")
                    torch.onnx.export(module, xs, path, input_names=names, dynamo=dynamo,
                                      opset_version=17 if not dynamo else None)
                self.exporter = "dynamo export" if dynamo else "TorchScript export"
                return
            except Exception as e:  # try the other exporter
                errors.append(f"{'dynamo' if dynamo else 'torchscript'}: "
                              f"{type(e).__name__}: {str(e).strip()[:200]}")
        raise RuntimeError("torch.onnx.export failed: " + "; ".join(errors))


class Jax(Impl):
    name, module = "jax", "jax"
    description = "JAX, jax.jit (XLA CPU)"

    def setup(self, jax):
        jax.config.update("jax_platforms", "cpu")

    def build(self, case, inputs, weights):
        import jax
        t = time.perf_counter()
        f = jax.jit(_builder(case, "jax")(jax, case.params, weights))
        xs = [jax.device_put(a) for a in inputs]

        def run():
            return f(*xs).block_until_ready()
        _warm(run)
        return Built(run, np.asarray, time.perf_counter() - t)


class TensorFlow(Impl):
    name, module = "tensorflow", "tensorflow"
    description = "TensorFlow, tf.function(jit_compile=True) (XLA), else a plain tf.function"

    def probe(self):
        if self._probed is None:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # no INFO lines on stderr
            # tf.keras is Keras 3, which reads KERAS_BACKEND (kcomp's users may point it at
            # kcomp.backend for Keras 2); this process only uses it through TensorFlow
            os.environ["KERAS_BACKEND"] = "tensorflow"
        return super().probe()

    def setup(self, tf):
        n = cpu_threads()
        try:
            tf.config.threading.set_intra_op_parallelism_threads(n)
        except RuntimeError:  # already initialised: keeps its default (all cores)
            pass

    def build(self, case, inputs, weights):
        import tensorflow as tf
        t = time.perf_counter()
        fn = _builder(case, "tensorflow")(tf, case.params, weights)
        xs = [tf.constant(a) for a in inputs]
        note = "XLA"
        try:
            f = tf.function(lambda *a: fn(*a), jit_compile=True)
            _warm(lambda: f(*xs))
        except Exception as e:  # an op XLA cannot compile: the graph without XLA
            note = f"no XLA ({type(e).__name__})"
            f = tf.function(lambda *a: fn(*a))
            _warm(lambda: f(*xs))

        def run():
            return f(*xs)
        return Built(run, lambda out: out.numpy(), time.perf_counter() - t, note)


IMPLS: Dict[str, Impl] = {i.name: i for i in (
    Kcomp(), Numpy(), Torch(), TorchCompile(), OnnxRuntime(), Jax(), TensorFlow())}
PEERS = [n for n in IMPLS if n != "kcomp"]
ALIASES = {"np": "numpy", "pytorch": "torch", "torch-eager": "torch", "torch_compile":
           "torch.compile", "torch-compile": "torch.compile", "inductor": "torch.compile",
           "ort": "onnxruntime", "onnx": "onnxruntime", "tf": "tensorflow", "xla": "tensorflow"}


def parse_peers(text: Optional[str]) -> List[str]:
    """Peer names from a comma-separated list (None: every peer); unknown names raise."""
    if text is None:
        return list(PEERS)
    out = []
    for raw in text.split(","):
        name = ALIASES.get(raw.strip().lower(), raw.strip().lower())
        if not name:
            continue
        if name == "none":
            continue
        if name not in IMPLS or name == "kcomp":
            raise ValueError(f"unknown peer {raw.strip()!r}; peers: {', '.join(PEERS)}")
        if name not in out:
            out.append(name)
    return out
