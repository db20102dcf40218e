"""`kcomp.function`: a graph compiled to native code, called with numpy arrays.

Calls run native code only (the GIL is released meanwhile, so several Python threads may call
one function at once). In debug mode (KCOMP_MODE=debug) each call also evaluates the numpy
reference and names the first node whose native result differs.
"""
from __future__ import annotations

import sys
from typing import List, Optional, Sequence

import numpy as np

from . import config, native
from .compiler import Compiled, compile_graph, explain_text, variables_of
from .ir.graph import Graph, Tensor, Update, Variable  # noqa: F401 (Update: re-exported)
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


class Function:
    """A compiled function. `Function(inputs, outputs, updates)(values)` returns the outputs'
    values as numpy arrays and applies the updates to their variables."""

    def __init__(self, inputs: Sequence[Tensor], outputs, updates=None, name: str | None = None,
                 device: str | None = None, device_outputs: bool = False):
        """device: 'cpu' or 'cuda' (default: kcomp.get_device()). device_outputs: a CUDA
        function returns kcomp.cuda.DeviceArrays instead of copying its outputs to numpy."""
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
        self._compiled, prepared, self._compile_info = compile_graph(self.graph, self.name,
                                                                     device)
        self.device = self._compiled.device
        self._rank0 = [i for i, t in enumerate(outputs[:len(outputs) - len(self._trims)])
                       if t.ndim == 0]
        self._bind(self._compiled, variables_of(prepared), device_outputs)
        self._debug: Optional[Compiled] = None

    def _bind(self, c: Compiled, variables: List[Variable], device_outputs: bool) -> None:
        self._variables = [variables[p] for p in c.variable_positions]
        updated = {v.node.uid for v, _ in self.graph.updates}
        self._updated = [v for v in self._variables if v.node.uid in updated]
        self._exe = _executable(c, self._variables, updated, f"kcomp function {self.name!r}",
                                device_outputs)

    def __call__(self, inputs=None):
        if inputs is None:
            inputs = []
        elif not isinstance(inputs, (list, tuple)):
            inputs = [inputs]
        # scipy.sparse matrices (fed to sparse placeholders) become dense arrays at the boundary
        if "scipy.sparse" in sys.modules and any(hasattr(v, "tocoo") for v in inputs):
            inputs = [v.toarray() if hasattr(v, "tocoo") else v for v in inputs]
        if config.debug_mode():
            self._check_against_reference(inputs)
        outs = self._exe.run(inputs)
        if self.device == "cpu":
            for v in self._updated:  # the host value changed: a GPU copy of it is stale
                v._device = None
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
    @property
    def source_path(self) -> str:
        """The generated C++ source of this function (in the cache)."""
        return self._compiled.source_path

    def explain(self) -> str:
        """The graph after the passes, the kernel plan and the generated source's path."""
        return explain_text(self._compiled, self.name)

    @property
    def compile_info(self) -> dict:
        """What creating this function did: memo_hit (reused a compiled function of this
        process), cache_hit (no compiler ran), and seconds per phase."""
        return {"key": self._compiled.key, **self._compile_info}

    # ---- debug mode -------------------------------------------------------------------------
    def _check_against_reference(self, inputs) -> None:
        g = self._compiled.optimized
        watched = [t for n in g.nodes() if n.op.kind not in ("leaf",) for t in n.outputs]
        if self._debug is None:
            # compile the optimized graph with every intermediate value as an output
            dbg_graph = Graph(g.inputs, tuple(watched), ())
            self._debug, _, _ = compile_graph(dbg_graph, self.name + " (debug)", self.device)
        variables = variables_of(self._debug.optimized)
        dv = [variables[p] for p in self._debug.variable_positions]
        exe = _executable(self._debug, dv, set(), self.name + " (debug)", False, copies=True)
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
                    f"graph:\n{self._compiled.graph_text}")


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
