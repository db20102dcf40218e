"""Loading an artifact in Python: no compiler involved, everything checked first.

The manifest must be complete and of this kcomp's ABI; every file must match its sha256; the
CPU must have the instruction sets the artifact was built for. Then each function's module is
loaded from the artifact's library by the runtime that runs JIT-compiled functions, so an
artifact runs exactly as fast as the JIT path. A CUDA artifact runs through its own C API
instead (cuda_artifact.py: numpy arrays in and out, copied to and from the GPU).
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import tempfile
import threading
from typing import Dict, List

import numpy as np

from .. import config, native
from ..ir.dtypes import as_dtype
from ..jit.fsutil import file_sha256
from . import isa as ISA


FORMAT = "kcomp-artifact-1"  # the manifest's "format"


class ArtifactError(RuntimeError):
    pass


class LoadedFunction:
    """One function of an artifact: called like the compiled function it came from."""

    def __init__(self, spec: dict, run):
        """run: inputs -> the outputs as numpy arrays (the runtime's Executable.run, or a CUDA
        artifact's C API)."""
        self.name = spec["name"]
        self.spec = spec
        self.single = bool(spec.get("single", False))
        self._trims = [tuple(t) for t in spec.get("trims", [])]
        self._run = run

    def __call__(self, inputs=None):
        """Runs the function as the compiled function it came from runs: outputs as a list
        (a single output alone if the function was made with one), rank-0 results as numpy
        scalars, bounded outputs trimmed, variables updated in place."""
        if inputs is None:
            inputs = []
        elif not isinstance(inputs, (list, tuple)):
            inputs = [inputs]
        if any(hasattr(v, "tocoo") for v in inputs):  # scipy.sparse, densified at the boundary
            inputs = [v.toarray() if hasattr(v, "tocoo") else v for v in inputs]
        outs = self._run(inputs)
        for i, axis, at in self._trims:
            outs[i] = outs[i][(slice(None),) * axis + (slice(0, int(outs[at])),)]
        if self._trims:
            del outs[len(outs) - len(self._trims):]
        outs = [o[()] if o.ndim == 0 else o for o in outs]
        return outs[0] if self.single else outs

    def __repr__(self):
        return f"<kcomp artifact function {self.name!r}>"


class Artifact:
    """A loaded artifact: `artifact(inputs)` runs its first function, `artifact.functions[name]`
    any of them."""

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        self.manifest = _read_manifest(self.path)
        m = self.manifest
        self.name = m["name"]
        _check_files(self.path, m)
        lacking = ISA.missing(m["isa"]["features"])
        if lacking:
            raise ArtifactError(f"{self.path} was built for {m['isa']['level']}; this CPU lacks "
                                f"{', '.join(lacking)}")
        if config.debug_mode():
            import warnings
            warnings.warn("KCOMP_MODE=debug does not apply to artifacts (they hold no graph to "
                          "check against); use the kcomp function they were built from",
                          stacklevel=3)
        lib = os.path.join(self.path, "lib", f"lib{self.name}.so")
        self.functions: Dict[str, LoadedFunction] = {}
        if m["device"] == "cuda":  # through its C API: the weights go to the GPU there
            from .cuda_artifact import CudaModel
            self._cuda = CudaModel(lib, self.name, ArtifactError)
            for i, spec in enumerate(m["functions"]):
                self.functions[spec["name"]] = LoadedFunction(
                    spec, lambda xs, i=i, spec=spec: self._cuda.call(i, spec, xs))
            return
        private = _private_copy(lib, m["files"][f"lib/lib{self.name}.so"])
        try:
            if private:
                lib = private
            arrays = self._arrays(lib)
            rt = native()
            for spec in m["functions"]:
                exe = rt.Executable(
                    rt.Library(lib, spec["key"], spec["symbol_suffix"]),
                    [(t["name"], as_dtype(t["dtype"]).code,
                      [-1 if d is None else d for d in t["shape"]]) for t in spec["inputs"]],
                    [as_dtype(t["dtype"]).code for t in spec["outputs"]],
                    [arrays[i] for i in spec["consts"]],
                    [as_dtype(arrays[i].dtype).code for i in spec["consts"]],
                    [arrays[i] for i in spec["variables"]],
                    [as_dtype(arrays[i].dtype).code for i in spec["variables"]])
                exe.set_name(f"kcomp artifact function {spec['name']!r}")
                self.functions[spec["name"]] = LoadedFunction(spec, exe.run)
        finally:
            if private:  # mapped now (never unloaded): the copy is no longer needed
                shutil.rmtree(os.path.dirname(private), ignore_errors=True)

    def _arrays(self, lib: str) -> List[np.ndarray]:
        m = self.manifest
        if m["weights"] == "embedded":
            handle = ctypes.CDLL(lib)
            get = getattr(handle, f"{self.name}_embedded_weights")
            get.restype = ctypes.c_void_p
            size = ctypes.c_uint64()
            ptr = get(ctypes.byref(size))
            blob = ctypes.string_at(ptr, size.value)
        else:
            with open(os.path.join(self.path, "weights.bin"), "rb") as f:
                blob = f.read()
        if hashlib.sha256(blob).hexdigest() != m["weights_sha256"]:
            raise ArtifactError(f"{self.path}: the weights do not match the manifest")
        # private, writable copies: functions with updates change variables in place
        return [np.frombuffer(blob, np.dtype(a["dtype"]).newbyteorder("<"),
                              count=int(np.prod(a["shape"], dtype=np.int64)), offset=a["offset"])
                .reshape(a["shape"]).astype(a["dtype"]) for a in m["arrays"]]

    def __call__(self, inputs=None):
        return next(iter(self.functions.values()))(inputs)

    def __repr__(self):
        return f"<kcomp artifact {self.name!r} at {self.path}: {', '.join(self.functions)}>"


# A process keeps every library it loads (the runtime never unloads one), and the dynamic
# loader hands out the library already mapped for a path it has seen. An artifact rebuilt in
# place (build(..., force=True)) and loaded again by the same process would therefore run the
# old code: the loader is given a private copy of a library whose contents changed instead.
_loaded: Dict[str, str] = {}  # real path of an artifact library -> sha256 of what was mapped
_loaded_lock = threading.Lock()


def _private_copy(lib: str, digest: str):
    """None to load lib from its own path, or the path of a private copy to load instead."""
    real = os.path.realpath(lib)
    with _loaded_lock:
        first = _loaded.setdefault(real, digest)
    if first == digest:
        return None
    tmp = tempfile.mkdtemp(prefix="kcomp-artifact-")
    copy = os.path.join(tmp, os.path.basename(lib))
    shutil.copyfile(lib, copy)
    if file_sha256(copy) != digest:  # replaced again while we copied
        shutil.rmtree(tmp, ignore_errors=True)
        raise ArtifactError(f"{lib} changed while it was being loaded")
    return copy


def _read_manifest(path: str) -> dict:
    mpath = os.path.join(path, "manifest.json")
    try:
        with open(mpath) as f:
            m = json.load(f)
    except FileNotFoundError:
        raise ArtifactError(f"{path} is not a kcomp artifact (no manifest.json: not built, or "
                            f"its build did not finish)") from None
    except ValueError as e:
        raise ArtifactError(f"{mpath} is damaged: {e}") from None
    if m.get("format") != FORMAT:
        raise ArtifactError(f"{path}: unknown artifact format {m.get('format')!r}, "
                            f"this kcomp reads {FORMAT!r}")
    m.setdefault("device", "cpu")  # (artifacts built before CUDA ones existed)
    if m["device"] not in ("cpu", "cuda"):
        raise ArtifactError(f"{path}: unknown device {m['device']!r}")
    abi = int(native().ABI_VERSION)
    if m.get("abi_version") != abi:
        raise ArtifactError(f"{path} was built by kcomp {m.get('kcomp_version')} for ABI "
                            f"{m.get('abi_version')}; this kcomp speaks ABI {abi}. Rebuild the "
                            f"artifact with this kcomp.")
    return m


def _check_files(path: str, m: dict) -> None:
    for rel, digest in m["files"].items():
        full = os.path.join(path, rel)
        if not os.path.isfile(full):
            raise ArtifactError(f"{path}: {rel} is missing")
        if file_sha256(full) != digest:
            raise ArtifactError(f"{path}: {rel} is corrupted or was replaced (its sha256 differs "
                                f"from the manifest)")


def load(path: str) -> Artifact:
    return Artifact(path)
