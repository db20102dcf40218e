"""Building model functions into an artifact directory that runs without Python or a compiler.

    <out>/manifest.json                      what is inside, with sha256 of every file (last)
    <out>/include/<name>.h, include/kcomp/abi.h    the C API
    <out>/lib/lib<name>.so, lib/libkcomp_kernels.so (a CUDA artifact: lib/libkcomp_cuda.so)
    <out>/lib/cmake/<name>/<name>Config.cmake      find_package(<name>)
    <out>/weights.bin                        constants and variables (unless embedded)
    <out>/src/                               the generated sources and build.ninja

The functions are generated exactly as the JIT generates them (same passes, same templates),
compiled for a portable instruction-set level (a CUDA artifact: for a GPU architecture, by
nvcc, which needs no GPU), one translation unit each, in parallel. The
artifact is assembled in a private directory beside <out> and renamed into place only when
complete, so an interrupted build never leaves something that looks like an artifact.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, List

import numpy as np

from .. import __version__, _paths, native
from ..ir.dtypes import as_dtype
from ..jit.fsutil import file_sha256
from . import isa as ISA
from .load import FORMAT

if TYPE_CHECKING:
    from ..ir.graph import Graph

# The compiler, the templates and the toolchain are imported by the functions that use them, so
# that `import kcomp.aot` in a program that only loads artifacts does not pay for them (~0.1 s).

_C_KEYWORDS = {"auto", "break", "case", "char", "const", "continue", "default", "do", "double",
               "else", "enum", "extern", "float", "for", "goto", "if", "inline", "int", "long",
               "register", "restrict", "return", "short", "signed", "sizeof", "static", "struct",
               "switch", "typedef", "union", "unsigned", "void", "volatile", "while", "class",
               "new", "delete", "template", "this", "namespace", "operator", "private",
               "public", "protected", "virtual", "bool", "true", "false", "kc"}


class BuildError(RuntimeError):
    pass


@dataclass
class _Function:
    name: str
    graph: Graph
    trims: tuple = ()  # bounded outputs: (output, axis, output holding the extent)
    single: bool = False  # made with one output tensor, not a list: called, returns it alone


def check_name(name: str) -> str:
    """The artifact's name prefixes its C API: a lowercase C identifier."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name or "") or name in _C_KEYWORDS:
        raise ValueError(f"artifact name {name!r} must be a lowercase C identifier "
                         f"([a-z_][a-z0-9_]*, not a keyword): it prefixes the C API")
    return name


# ---- what to build ---------------------------------------------------------------------------

def _is_keras_model(obj) -> bool:
    return hasattr(obj, "layers") and hasattr(obj, "outputs") and hasattr(obj, "inputs")


def _keras_graph(model, input_shapes=None) -> Graph:
    """Keras's predict function of a model: its outputs in the test phase, with the state
    updates of stateful layers. input_shapes fixes the inputs' shapes (None dims allowed)."""
    from .. import backend as K
    from ..ir.graph import Graph, Tensor
    if not all(isinstance(x, Tensor) for x in model.inputs):
        raise TypeError(f"the Keras model {getattr(model, 'name', '')!r} was not built on kcomp: "
                        f"set KERAS_BACKEND=kcomp.backend before Keras is first imported")
    if input_shapes is None:
        from ..function import _updates
        return Graph(tuple(model.inputs), tuple(model.outputs),
                     _updates(getattr(model, "state_updates", None) or []))
    shapes = [tuple(s) for s in input_shapes]
    if len(shapes) != len(model.inputs):
        raise ValueError(f"the Keras model {model.name!r} has {len(model.inputs)} input(s) "
                         f"({', '.join(x.name for x in model.inputs)}); {len(shapes)} input "
                         f"shape(s) given")
    for s, x in zip(shapes, model.inputs):
        want = tuple(d if isinstance(d, int) else None for d in x.dims)
        if len(s) != len(want) or any(a is not None and b is not None and a != b
                                      for a, b in zip(s, want)):
            raise ValueError(f"input {x.name!r} of the Keras model {model.name!r} has shape "
                             f"{want}; the input shape {s} does not fit it")
        if any(d is not None and (not isinstance(d, int) or d < 1) for d in s):
            raise ValueError(f"input shape {s}: extents must be positive integers or None")
    # placeholders named as the model's inputs: the names the C API and the checks report
    xs = [K.placeholder(s, dtype=x.dtype, name=x.name) for s, x in zip(shapes, model.inputs)]
    outs = model(xs if len(xs) > 1 else xs[0])
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    return Graph(tuple(xs), tuple(outs), ())


def _load_keras_file(path: str):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no Keras model file {path}")
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = "kcomp.backend"  # the model's layers must build kcomp nodes
    import keras
    # h5py 3 returns str where Keras 2.3.1's loader calls .decode(); kcomp.backend's compat
    # layer fixes that only when Keras is what first imports kcomp.backend, which is not so
    # in a process that used kcomp before Keras. The fix is idempotent.
    from ..backend import compat
    compat._patch_h5py()
    return keras.models.load_model(path, compile=False)


def collect(obj, input_shapes=None) -> List[_Function]:
    """Functions to build from a kcomp Function, a Keras model, a Keras .h5 file, or a dict of
    name -> any of those."""
    from ..function import Function
    items = obj.items() if isinstance(obj, dict) else [(None, obj)]
    out: List[_Function] = []
    for name, item in items:
        if isinstance(item, (str, os.PathLike)):
            item = _load_keras_file(os.fspath(item))
        if isinstance(item, Function):
            out.append(_Function(name or item.name, item.graph, tuple(item._trims), item.single))
        elif _is_keras_model(item):
            out.append(_Function(name or "predict", _keras_graph(item, input_shapes)))
        else:
            raise TypeError(f"cannot build {type(item).__name__}: give a kcomp function, a Keras "
                            f"model, a Keras .h5 file, or a dict of them")
    names = [f.name for f in out]
    if len(set(names)) != len(names):
        raise ValueError(f"function names must be unique, got {names}")
    return out


# ---- weights ---------------------------------------------------------------------------------

class _Weights:
    """Arrays laid out 64-byte aligned in one file; variables shared by functions appear once."""

    def __init__(self):
        self.arrays: List[np.ndarray] = []
        self.by_variable: Dict[int, int] = {}

    def add(self, value: np.ndarray, variable=None) -> int:
        if variable is not None and variable.node.uid in self.by_variable:
            return self.by_variable[variable.node.uid]
        self.arrays.append(np.array(value, order="C"))  # (ascontiguousarray makes 0-d 1-d)
        if variable is not None:
            self.by_variable[variable.node.uid] = len(self.arrays) - 1
        return len(self.arrays) - 1

    def write(self, path: str) -> List[dict]:
        layout, offset = [], 0
        with open(path, "wb") as f:
            for a in self.arrays:
                pad = -offset % 64
                f.write(b"\0" * pad)
                offset += pad
                data = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
                f.write(data)
                layout.append({"dtype": a.dtype.name, "shape": list(a.shape), "offset": offset,
                               "nbytes": len(data)})
                offset += len(data)
        return layout


# ---- the build -------------------------------------------------------------------------------

def _dims_code(dims):
    from ..lowering.names import Code, int_lit, join
    vals = [int_lit(d) for d in dims] or [Code("0")]
    return join(", ", vals)


def build(obj, out_dir: str, *, name: str = "model", isa: str = ISA.DEFAULT,
          weights: str = "sidecar", input_shapes=None, quiet: bool = False, force: bool = False,
          jobs: int | None = None, device: str = "cpu", cuda_arch: str | None = None) -> dict:
    """Build obj (see collect) into the artifact directory out_dir; returns its manifest.
    device 'cuda': the functions as CUDA for cuda_arch (default: KCOMP_CUDA_ARCH, else this
    machine's GPU), with kcomp's CUDA kernel library; isa does not apply (the host code is
    baseline x86-64)."""
    from ..jit.toolchain import toolchain
    from ..compiler import generate, prepare_function, source_key
    from ..lowering.render import KEY_SLOT
    check_name(name)
    if weights not in ("sidecar", "embedded"):
        raise ValueError("weights must be 'sidecar' or 'embedded'")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', not {device!r}")
    cuda = None
    if device == "cuda":
        if isa not in (ISA.DEFAULT, "x86-64"):
            raise ValueError(f"isa={isa!r}: the instruction-set level applies to CPU artifacts")
        from ..cuda import jit as cuda_jit
        from ..cuda.toolkit import check_arch, device_arch
        cuda = cuda_jit.toolchain(check_arch(cuda_arch) if cuda_arch else device_arch())
        isa = "x86-64"
    elif cuda_arch is not None:
        raise ValueError("cuda_arch is for device='cuda'")
    features = ISA.features(isa)
    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir) and not force:
        raise FileExistsError(f"{out_dir} exists; pass force=True (--force) to replace it")
    functions = collect(obj, input_shapes)
    tc = toolchain("native" if isa == "native" else isa)

    store = _Weights()
    specs, sources = [], []
    for i, fn in enumerate(functions):
        prepared = prepare_function(fn.graph)
        gen = generate(prepared, fn.name, target=device)
        key = source_key(gen.source, cuda or tc)  # gen.source: the very source the JIT compiles
        sources.append(gen.source.replace(KEY_SLOT, key))
        plan = gen.plan
        consts = [store.add(v) for v in plan.const_values]
        variables = [store.add(v._value, v) for v in plan.variable_objects]
        specs.append({
            "name": fn.name, "key": key, "symbol_suffix": f"_f{i}",
            "inputs": [{"name": t.name, "dtype": t.dtype,
                        "shape": [d if isinstance(d, int) else None for d in t.dims]}
                       for t in prepared.inputs],
            "outputs": [{"dtype": t.dtype, "rank": t.ndim} for t in gen.optimized.outputs],
            "consts": consts, "variables": variables, "trims": [list(t) for t in fn.trims],
            "single": fn.single,
            # the generated source before its key is filled in, as the JIT's cache keys it
            "source_sha256": hashlib.sha256(gen.source.encode()).hexdigest()})

    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    work = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.building-", dir=parent)
    try:
        manifest = _assemble(work, name, specs, sources, store, tc, features, isa, weights,
                             quiet, jobs, cuda)
        if os.path.exists(out_dir):  # force: move the old artifact away before replacing it
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.old-", dir=parent)
            os.rename(out_dir, os.path.join(old, "a"))
            shutil.rmtree(old, ignore_errors=True)
        os.rename(work, out_dir)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return manifest


def _assemble(work, name, specs, sources, store, tc, features, isa, weights, quiet, jobs,
              cuda) -> dict:
    """cuda: the CUDA toolchain of a CUDA artifact, else None."""
    from ..lowering.names import c_string
    from ..lowering.render import environment
    env = environment()
    for sub in ("src", "include/kcomp", f"lib/cmake/{name}", "obj"):
        os.makedirs(os.path.join(work, sub), exist_ok=True)
    layout = store.write(os.path.join(work, "weights.bin"))
    digest = file_sha256(os.path.join(work, "weights.bin"))
    ext = "cu" if cuda else "cpp"
    for i, src in enumerate(sources):
        with open(os.path.join(work, "src", f"f{i}.{ext}"), "w") as f:
            f.write(src)
    kernels = "libkcomp_cuda.so" if cuda else "libkcomp_kernels.so"

    ctx = {
        "name": name, "embedded": weights == "embedded", "kernels_library": kernels,
        "cuda": cuda is not None, "arch": cuda.arch if cuda else "",
        "arch_number": int(re.match(r"\d+", cuda.arch).group()) if cuda else 0,
        "arch_specific": bool(cuda and not cuda.arch.isdigit()),  # 90a: that GPU alone
        "first_function": specs[0]["name"] if specs else "",
        "arrays": [{"dtype": as_dtype(a["dtype"]).code, "rank": len(a["shape"]),
                    "dims": _dims_code(a["shape"]), "offset": a["offset"], "nbytes": a["nbytes"]}
                   for a in layout],
        "weights_size": os.path.getsize(os.path.join(work, "weights.bin")),
        "weights_sha256": c_string(digest),
        "functions": [{"index": i, "name": c_string(s["name"]),
                       "inputs": [{"name": c_string(t["name"]), "dtype": as_dtype(t["dtype"]).code,
                                   "rank": len(t["shape"]),
                                   "dims": _dims_code([-1 if d is None else d
                                                       for d in t["shape"]])}
                                  for t in s["inputs"]],
                       "outputs": [{"dtype": as_dtype(t["dtype"]).code, "rank": t["rank"]}
                                   for t in s["outputs"]],
                       "consts": _dims_code(s["consts"]), "n_consts": len(s["consts"]),
                       "variables": _dims_code(s["variables"]),
                       "n_variables": len(s["variables"])} for i, s in enumerate(specs)],
        "features": features,
        "required": c_string(f"{isa}: {', '.join(features) or 'baseline x86-64'}"),
    }
    for template, target in (("model.h.j2", f"include/{name}.h"),
                             ("model.cpp.j2", f"src/model.{ext}"),
                             ("isa.cpp.j2", "src/isa.cpp"), ("weights.cpp.j2", "src/weights.cpp"),
                             ("Config.cmake.j2", f"lib/cmake/{name}/{name}Config.cmake")):
        if template == "weights.cpp.j2" and weights != "embedded":
            continue
        with open(os.path.join(work, target), "w") as f:
            f.write(env.get_template(f"aot/{template}").render(**ctx))
    shutil.copy(os.path.join(tc.include_dir, "kcomp", "abi.h"),
                os.path.join(work, "include", "kcomp", "abi.h"))
    if cuda:
        from ..cuda.runtime import CUDA_ABI_VERSION, build_library
        shutil.copy(build_library(cuda.arch), os.path.join(work, "lib", kernels))
    else:
        shutil.copy(_paths.kernels_library(), os.path.join(work, "lib", kernels))

    _compile(work, name, specs, tc, weights == "embedded", quiet, jobs, cuda)
    shutil.rmtree(os.path.join(work, "obj"))
    if weights == "embedded":
        os.remove(os.path.join(work, "weights.bin"))

    files = {}
    for root, _, names in os.walk(work):
        for n in sorted(names):
            p = os.path.join(root, n)
            files[os.path.relpath(p, work)] = file_sha256(p)
    manifest = {
        "format": FORMAT, "name": name, "kcomp_version": __version__,
        "abi_version": int(native().ABI_VERSION), "device": "cuda" if cuda else "cpu",
        "isa": {"level": isa, "features": features}, "compiler": tc.compiler,
        "flags": list(tc.flags), "weights": weights, "weights_sha256": digest,
        "arrays": layout, "functions": specs, "files": dict(sorted(files.items())),
        **({"cuda": {"arch": cuda.arch, "nvcc": cuda.nvcc, "nvcc_version": cuda.version,
                     "flags": list(cuda.flags), "abi_version": CUDA_ABI_VERSION}} if cuda else {}),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    tmp = os.path.join(work, "manifest.json.tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, os.path.join(work, "manifest.json"))  # last: its presence means complete
    return manifest


def _compile(work, name, specs, tc, embedded, quiet, jobs, cuda=None) -> None:
    """One build.ninja: every translation unit compiled in parallel, then one link. A CUDA
    artifact's functions and C API are compiled by nvcc (cuda: its toolchain), which links."""
    q = lambda a: shlex.quote(a).replace("$", "$$")  # noqa: E731 (shell, then ninja, quoting)
    flags = [f for f in tc.flags]
    base_flags = [f for f in flags if not f.startswith("-march=")]
    includes = f"-I{q(tc.include_dir)} -I{q(os.path.join(work, 'include'))}"
    lines = ["ninja_required_version = 1.5",
             "builddir = obj",  # .ninja_log and .ninja_deps go with the objects, not to the artifact
             f"cxx = {q(tc.cxx)}",
             f"flags = {' '.join(q(f) for f in flags)} {includes}",
             f"base_flags = {' '.join(q(f) for f in base_flags)} {includes}",
             "rule cxx", "  command = $cxx $flags $defs -c $in -o $out", "  description = $what",
             "rule cxx_base", "  command = $cxx $base_flags -c $in -o $out",
             "  description = $what"]
    if cuda:  # the JIT's nvcc flags, for objects instead of a library
        nv_flags = [f for f in cuda.flags if f not in ("-shared", "-cudart=static")]
        lines += [f"nvcc = {q(cuda.nvcc)}",
                  f"nvcc_flags = {' '.join(q(f) for f in nv_flags)} {includes}",
                  "rule nvcc", "  command = $nvcc $nvcc_flags $defs -c $in -o $out",
                  "  description = $what",
                  "rule link",
                  "  command = $nvcc -shared -cudart=static -o $out $in -Llib -lkcomp_cuda "
                  "'-Xlinker=-rpath,$$ORIGIN' -Xlinker=--no-undefined",
                  "  description = linking lib" + name + ".so"]
        symbols = ["kc_cuda_get_module"]
    else:
        lines += ["rule link",
                  "  command = $cxx -shared -o $out $in -Llib -lkcomp_kernels '-Wl,-rpath,$$ORIGIN' "
                  "-lm -Wl,--no-undefined -lc",
                  "  description = linking lib" + name + ".so"]
        symbols = ["kc_get_module", "kc_abi_version"]
    ext, main = ("cu", "nvcc") if cuda else ("cpp", "cxx")
    objects = []
    for i, s in enumerate(specs):
        what = re.sub(r"[^A-Za-z0-9_.:+\- ]", "_", s["name"])[:60]
        lines += [f"build obj/f{i}.o: {main} src/f{i}.{ext}",
                  "  defs = " + " ".join(f"-D{sym}={sym}_f{i}" for sym in symbols),
                  f"  what = compiling function {i + 1} of {len(specs)}: {what}"]
        objects.append(f"obj/f{i}.o")
    lines += [f"build obj/model.o: {main} src/model.{ext}", "  defs =",
              "  what = compiling the C API",
              "build obj/isa.o: cxx_base src/isa.cpp", "  what = compiling the CPU check"]
    objects += ["obj/model.o", "obj/isa.o"]
    if embedded:
        lines += ["build obj/weights.o: cxx src/weights.cpp | weights.bin", "  defs =",
                  "  what = embedding the weights"]
        objects.append("obj/weights.o")
    lines.append(f"build lib/lib{name}.so: link {' '.join(objects)}")
    with open(os.path.join(work, "src", "build.ninja"), "w") as f:
        f.write("\n".join(lines) + "\n")
    cmd = [tc.ninja, "-f", "src/build.ninja"] + (["-j", str(jobs)] if jobs else [])
    proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace", env=dict(os.environ,
                                                                  NINJA_STATUS="[%f/%t] "))
    log = []
    progress = _Progress(quiet)
    for line in proc.stdout:
        log.append(line)
        progress.line(line)
    proc.wait()
    progress.done()
    if proc.returncode != 0:
        errors = [ln.rstrip() for ln in log if " error" in ln or "error:" in ln][:10]
        raise BuildError(f"building the artifact failed (sources in {work}/src):\n" +
                         "\n".join(errors or [ln.rstrip() for ln in log[-20:]]))


class _Progress:
    """A one-line progress bar on stderr from ninja's "[done/total] step" lines."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.width = 0

    def line(self, line: str) -> None:
        m = re.match(r"\[(\d+)/(\d+)\] (.*)", line)
        if self.quiet or not m:
            return
        done, total, what = int(m.group(1)), int(m.group(2)), m.group(3).strip()
        bar = "#" * (20 * done // total) + "." * (20 - 20 * done // total)
        text = f"[{bar}] {done}/{total} {what}"
        if self.tty:
            sys.stderr.write("\r" + text.ljust(self.width))
            self.width = len(text)
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def done(self) -> None:
        if self.tty and self.width and not self.quiet:
            sys.stderr.write("\n")
