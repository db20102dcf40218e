"""`kcomp.function`: a graph compiled to native code, called with numpy arrays.

Calls run native code only (the GIL is released meanwhile, so several Python threads may call
one function at once). A function that takes Keras's learning phase (switch_inputs) is compiled
once per value it is called with, on the first call with that value. In debug mode
(KCOMP_MODE=debug) each call also evaluates the numpy reference and names the first node whose
native result differs.
"""
from __future__ import annotations

import sys
import time
from typing import List, Optional, Sequence, Tuple

import numpy as np

from . import config, deferred, native
from .compiler import (Compiled, compile_graph, explain_text, placeholders_as_constants,
                       variables_of)
from .ir.graph import Graph, Tensor, Update, Variable, consumers  # noqa: F401 (Update)
from .ir.interpret import evaluate


def _updates(updates) -> tuple:
    out = []
    for u in updates or ():
        if isinstance(u, (tuple, list)) and len(u) == 2:
            var, val = u
        else:
            raise TypeError(f"an update must be K.update(...) or a (variable, value) pair, "
                            f"got {u!r}")
        if not isinstance(var, Variable):
            raise TypeError(f"only variables can be updated, got {var!r}")
        if not isinstance(val, Tensor):
            from .ir.build import as_tensor
            val = as_tensor(val, var.type.dtype)
        out.append((var, val))
    return tuple(out)


MAX_VERSIONS = 4  # compiled values of a function's switch inputs; others run the general form


def switch_inputs(graph: Graph) -> Tuple[int, ...]:
    """Positions of the inputs a function is compiled for per value: rank-0 bool or uint8
    placeholders that choose a select's branch, directly or through rank-0 ops (Keras's
    learning phase). With the value fixed, simplify keeps one branch: dropout's random numbers
    and the training branch of BatchNormalization are not computed at inference."""
    users = consumers(graph.nodes())

    def chooses(node) -> bool:
        todo, seen = [node], set()
        while todo:
            n = todo.pop()
            for u in users.get(n.uid, ()):
                if u.op.name == "select" and u.inputs[0].node is n:
                    return True
                if u.uid not in seen and all(o.ndim == 0 for o in u.outputs):
                    seen.add(u.uid)
                    todo.append(u)
        return False

    return tuple(k for k, t in enumerate(graph.inputs)
                 if t.ndim == 0 and t.type.dtype.name in ("bool", "uint8") and chooses(t.node))


def specialize(graph: Graph, values: dict) -> Graph:
    """graph with the inputs at these positions read as constants. They stay inputs (unread),
    so that calls and their error messages are those of the general function."""
    fixed = {graph.inputs[k].node.uid: v for k, v in values.items()}
    return placeholders_as_constants(graph, fixed)._replace(inputs=graph.inputs)


def _switch_value(v, dtype: np.dtype):
    """v as a value of a switch input of this dtype (a Python int, bool or numpy integer
    scalar that it holds exactly), else None. Keras feeds Python ints: they skip numpy."""
    if type(v) is int or type(v) is bool:
        if 0 <= v <= (1 if dtype.kind == "b" else 255):  # (switch inputs: bool or uint8)
            return bool(v) if dtype.kind == "b" else int(v)
        return None
    a = np.asarray(v)
    if a.shape != () or a.dtype.kind not in "biu" or a.astype(dtype) != a:
        return None
    return a.astype(dtype).item()


class _Version:
    """One compiled form of a Function: its native runner and the variables that it reads."""

    def __init__(self, compiled: Compiled, prepared: Graph, info: dict, graph: Graph,
                 device_outputs: bool, name: str):
        self.compiled, self.info = compiled, info
        self.debug: Optional[Compiled] = None  # debug mode's build with every value an output
        variables = variables_of(prepared)
        self.variables = [variables[p] for p in compiled.variable_positions]
        updated = {v.node.uid for v, _ in graph.updates}
        self.updated = [v for v in self.variables if v.node.uid in updated]
        self.exe = _executable(compiled, self.variables, updated, f"kcomp function {name!r}",
                               device_outputs)


class Profile:
    """Function.profile's result: `kernels` [(label, mean seconds a call)] in the order they run,
    `total` (mean seconds a call); str() is a table."""

    def __init__(self, name: str, kernels, total: float):
        self.name, self.kernels, self.total = name, kernels, total

    def __str__(self) -> str:
        rest = self.total - sum(s for _, s in self.kernels)
        rows = [(f"{s * 1e6:10.1f}", f"{100 * s / self.total:5.1f}%", label)
                for label, s in self.kernels]
        rows.append((f"{rest * 1e6:10.1f}", f"{100 * rest / self.total:5.1f}%",
                     "(outside kernels: argument checks, outputs, Python)"))
        head = f"{self.name!r}: {self.total * 1e6:.1f} us a call\n        us  share  kernel\n"
        return head + "\n".join(" ".join(r) for r in rows)

    __repr__ = __str__


class Function:
    """A compiled function. `Function(inputs, outputs, updates)(values)` returns the outputs'
    values as numpy arrays and applies the updates to their variables."""

    def __init__(self, inputs: Sequence[Tensor], outputs, updates=None, name: str | None = None,
                 device: str | None = None, device_outputs: bool = False):
        """device: 'cpu' or 'cuda' (default: kcomp.get_device()). device_outputs: a CUDA
        function returns kcomp.cuda.DeviceArrays instead of copying its outputs to numpy."""
        deferred.flush()  # waiting initial values first: their draws come before this one's
        self.single = isinstance(outputs, Tensor)
        outputs = [outputs] if self.single else list(outputs)
        from .ir.build import as_tensor
        outputs = [o if isinstance(o, Tensor) else as_tensor(o) for o in outputs]
        # bounded outputs (ctc_decode's): padded to their bound inside, trimmed when returned to
        # the extent an extra scalar output computes
        self._trims = []
        for i, o in enumerate(list(outputs)):
            trim = getattr(o, "_kcomp_trim", None)
            if trim is not None:
                self._trims.append((i, trim[0], len(outputs)))
                outputs.append(trim[1])
        self.name = name or "function"
        self.graph = Graph(tuple(inputs), tuple(outputs), _updates(updates))
        from .device import get_device
        self.device = device or get_device()
        self._device_outputs = device_outputs
        self._rank0 = [i for i, t in enumerate(outputs[:len(outputs) - len(self._trims)])
                       if t.ndim == 0]
        # compiled once per value of these inputs, on the first call with that value
        self._switches = switch_inputs(self.graph)
        self._versions = {}
        self._v = None if self._switches else self._version(None)

    def _version(self, values) -> "_Version":
        """The function compiled with the switch inputs fixed to `values` (None: as given)."""
        v = self._versions.get(values)
        if v is None:
            graph = self.graph if values is None else \
                specialize(self.graph, dict(zip(self._switches, values)))
            compiled, prepared, info = compile_graph(graph, self.name, self.device)
            v = self._versions[values] = _Version(compiled, prepared, info, self.graph,
                                                  self._device_outputs, self.name)
        return v

    def _choose(self, inputs) -> "_Version":
        """The version for these switch values: the general one for values that are not
        integer scalars of the input's dtype (it reports them) or past MAX_VERSIONS."""
        values = []
        for k in self._switches:
            if k >= len(inputs):
                return self._version(None)  # the general version reports the missing input
            value = _switch_value(inputs[k], self.graph.inputs[k].type.dtype.np)
            if value is None:
                return self._version(None)
            values.append(value)
        values = tuple(values)
        if values not in self._versions and len(self._versions) >= MAX_VERSIONS:
            return self._version(None)
        return self._version(values)

    @property
    def _current(self) -> "_Version":
        """The version last called; before any call, the one for the switch inputs' defaults
        (Keras's learning phase: 0), else the general one."""
        if self._v is None:
            defaults = [self.graph.inputs[k].node.attrs.get("default") for k in self._switches]
            self._v = self._version(None if any(d is None for d in defaults) else
                                    tuple(d.item() for d in defaults))
        return self._v

    def __call__(self, inputs=None):
        return self._call(inputs)

    def _call(self, inputs, profile=None):
        if inputs is None:
            inputs = []
        elif not isinstance(inputs, (list, tuple)):
            inputs = [inputs]
        # scipy.sparse matrices (fed to sparse placeholders) become dense arrays at the boundary
        if "scipy.sparse" in sys.modules and any(hasattr(v, "tocoo") for v in inputs):
            inputs = [v.toarray() if hasattr(v, "tocoo") else v for v in inputs]
        if deferred.waiting:
            deferred.flush()
        v = self._v = self._choose(inputs) if self._switches else self._v
        if config.debug_mode():
            self._check_against_reference(v, inputs)
        outs = v.exe.run(inputs) if profile is None else v.exe.run(inputs, profile)
        if self.device == "cpu":
            for var in v.updated:  # the host value changed: a GPU copy of it is stale
                var._device = None
        if self._trims:
            for i, axis, at in self._trims:
                outs[i] = outs[i][(slice(None),) * axis + (slice(0, int(outs[at])),)]
            del outs[len(outs) - len(self._trims):]
        # a rank-0 result is a numpy scalar, as TensorFlow's session returns it (Keras rounds
        # and formats metric values)
        for i in self._rank0:
            if isinstance(outs[i], np.ndarray):
                outs[i] = outs[i][()]
        return outs[0] if self.single else outs

    # ---- introspection ----------------------------------------------------------------------
    def profile(self, inputs=None, rounds: int = 20) -> "Profile":
        """Calls the function `rounds` times on `inputs` (after one call to warm up) and returns
        where a call's time goes: each top-level kernel's mean time (a loop counts as one
        kernel), and the rest of the call (argument checks, output arrays, this wrapper). The
        calls are real: updates apply at each. CPU functions only."""
        if self.device != "cpu":
            raise NotImplementedError(f"{self.name}: profile() times CPU functions only (CUDA "
                                      "kernels run asynchronously)")
        if int(rounds) < 1:
            raise ValueError(f"{self.name}: profile() needs rounds >= 1, got {rounds}")
        self._call(inputs)
        v = self._v
        seconds = np.zeros(v.exe.n_kernels)
        t = time.perf_counter()
        for _ in range(int(rounds)):
            self._call(inputs, seconds)
        total = (time.perf_counter() - t) / int(rounds)
        return Profile(self.name, list(zip(v.compiled.kernel_labels, seconds / int(rounds))),
                       total)

    @property
    def source_path(self) -> str:
        """The generated C++ source of this function (in the cache)."""
        return self._current.compiled.source_path

    def explain(self) -> str:
        """The graph after the passes, the kernel plan and the generated source's path."""
        return explain_text(self._current.compiled, self.name)

    @property
    def compile_info(self) -> dict:
        """What compiling this function (the version last called, see _current) did: memo_hit
        (reused a compiled function of this process), cache_hit (no compiler ran), and seconds
        per phase."""
        v = self._current
        return {"key": v.compiled.key, **v.info}

    # ---- debug mode -------------------------------------------------------------------------
    def _check_against_reference(self, v: "_Version", inputs) -> None:
        g = v.compiled.optimized
        watched = [t for n in g.nodes() if n.op.kind not in ("leaf",) for t in n.outputs]
        if v.debug is None:
            # compile the optimized graph with every intermediate value as an output
            dbg_graph = Graph(g.inputs, tuple(watched), ())
            v.debug, _, _ = compile_graph(dbg_graph, self.name + " (debug)", self.device)
        variables = variables_of(v.debug.optimized)
        dv = [variables[p] for p in v.debug.variable_positions]
        exe = _executable(v.debug, dv, set(), self.name + " (debug)", False, copies=True)
        results = exe.run(list(inputs))
        record = {}
        feeds = [np.asarray(x) for x in inputs]
        evaluate(Graph(g.inputs, tuple(watched), ()), feeds, record)
        for t, got in zip(watched, results):
            want = record[t.node.uid][t.index]
            if not _close(got, want):
                err = np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))) \
                    if got.size and got.shape == want.shape else "shape"
                raise AssertionError(
                    f"KCOMP_MODE=debug: {self.name!r}: native result of {t.node.op.name} "
                    f"({t.type}) differs from the numpy reference (max abs error {err}).\n"
                    f"graph:\n{v.compiled.graph_text}")


def _code(a: np.ndarray) -> int:
    from .ir.dtypes import as_dtype
    return as_dtype(a.dtype).code


def _close(got: np.ndarray, want: np.ndarray) -> bool:
    if got.shape != want.shape or got.dtype != want.dtype:
        return False
    if got.dtype.kind in "biu":
        return bool(np.array_equal(got, want))
    tol = {2: 1e-2, 4: 1e-4, 8: 1e-10}[got.dtype.itemsize]
    return bool(np.allclose(got, want, rtol=tol, atol=tol, equal_nan=True))


def function(inputs, outputs, updates=None, name=None, device=None, device_outputs=False,
             **kwargs) -> Function:
    """Keras's K.function. Unknown keyword arguments are rejected, as Keras's own backends do.
    device, device_outputs: see Function."""
    if kwargs:
        raise ValueError(f"kcomp.function got unsupported arguments: {', '.join(sorted(kwargs))}")
    return Function(inputs, outputs, updates, name, device, device_outputs)


def _executable(c: Compiled, variables: List[Variable], updated: set, name: str,
                device_outputs: bool, copies: bool = False):
    """The native runner of compiled function c (CPU: kcomp._runtime.Executable; CUDA:
    kcomp.cuda.executable). copies: run on copies of the variables (debug mode)."""
    if c.device == "cuda":
        from .cuda.executable import CudaExecutable
        return CudaExecutable(c.library, c.input_specs, [t.dtype.code for t in c.output_types],
                              c.const_values, variables,
                              [i for i, v in enumerate(variables) if v.node.uid in updated],
                              name, device_outputs, copies=copies)
    exe = native().Executable(
        c.library, [tuple(s) for s in c.input_specs], [t.dtype.code for t in c.output_types],
        c.const_values, [_code(v) for v in c.const_values],
        [v._value.copy() if copies else v._value for v in variables],
        [v.type.dtype.code for v in variables])
    exe.set_name(name)
    return exe
