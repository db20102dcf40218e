"""From a graph to a loaded native function: prepare, optimize, lower, render, build, load.

    prepare   input placeholders' unknown extents get canonical names (input k, axis j)
    memo      a structurally identical graph compiled before in this process is reused as is
    passes    simplify, CSE, constant folding (kcomp/ir/passes)
    lower     fusion groups -> kernel plan (kcomp/lowering)
    render    Jinja templates -> C++ source
    cache     key = sha256(source, ABI, toolchain, flags); build with Ninja on a miss
    load      dlopen through kcomp._runtime, checking ABI version and key
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np

from . import config, native
from .jit import ninja_build
from .jit.cache import default_cache
from .jit.toolchain import toolchain
from .ir import shapes as S
from .ir.canonical import graph_key
from .ir.graph import Graph, Node, Tensor, TensorType, Variable
from .ir.ops.leaf import constant
from .ir.passes import optimize
from .ir.passes.rewrite import rewrite
from .lowering.lower import lower
from .lowering.render import KEY_SLOT, render

CACHE_FORMAT = 1


@dataclass
class Compiled:
    """One loaded library and what calling it needs; shared by structurally equal functions."""
    library: object                   # kcomp._runtime.Library, or kcomp.cuda.jit.CudaLibrary
    key: str                          # cache key
    device: str                       # 'cpu' or 'cuda'
    source_path: str
    input_specs: List[tuple]          # (name, dtype code, static dims with -1)
    output_types: List[TensorType]
    const_values: List[np.ndarray]
    variable_positions: List[int]     # plan variable i = prepared graph variable positions[i]
    graph_text: str
    plan_text: str
    optimized: Graph
    kernel_labels: List[str]          # the plan's top-level kernels (Function.profile's rows)


# structurally identical graphs of this process -> their compiled function (least recently used
# entries go first: an entry keeps the first graph it was compiled for alive)
MEMO_SIZE = 512
_memo: "OrderedDict[str, Compiled]" = OrderedDict()
_memo_lock = threading.Lock()


def variables_of(graph: Graph) -> List[Variable]:
    """Variables in a canonical order: as read by the graph, then update targets."""
    seen, out = set(), []
    for n in graph.nodes() + [v.node for v, _ in graph.updates]:
        if n.op.name == "variable" and n.uid not in seen:
            seen.add(n.uid)
            out.append(n.outputs[0])
    return out


# ---- prepare -------------------------------------------------------------------------------------

def _all_nodes(graph: Graph):
    """The graph's nodes and, recursively, those of the loop bodies in its attributes."""
    for n in graph.nodes():
        yield n
        for value in n.attrs.values():
            if isinstance(value, Graph):
                yield from _all_nodes(value)


def resolve_control(graph: Graph) -> Graph:
    """Nodes made under K.control_dependencies read the new values of the variables those
    updates write, and the function applies the updates."""
    extra = {}

    def visit(node: Node, inputs):
        if not node.control:
            return None
        new = {}
        for var, value in node.control:
            new[var.node.uid] = value
            extra.setdefault(var.node.uid, (var, value))
        swapped = [new.get(t.node.uid, t) if t.node.op.name == "variable" else t for t in inputs]
        if all(a is b for a, b in zip(swapped, node.inputs)):
            return None
        return list(Node(node.op, swapped, node.attrs, [t.type for t in node.outputs],
                         node.checks, name=node.name).outputs)

    if not any(n.control for n in graph.nodes()):
        return graph
    graph = rewrite(graph, visit)
    have = {v.node.uid for v, _ in graph.updates}
    added = tuple(u for uid, u in extra.items() if uid not in have)
    return graph._replace(updates=added + graph.updates)


def state_updates(graph: Graph) -> Graph:
    """Add the updates ops ask for (OpDef.extra['state_updates']: a random node advances its
    call counter), unless the graph updates that variable itself."""
    have = {v.node.uid for v, _ in graph.updates}
    extra = []
    for n in _all_nodes(graph):
        hook = n.op.extra.get("state_updates")
        for var, value in hook(n) if hook else ():
            if var.node.uid not in have:
                have.add(var.node.uid)
                extra.append((var, value))
    return graph._replace(updates=graph.updates + tuple(extra)) if extra else graph


def prepare(graph: Graph) -> Graph:
    """Validate inputs and rename their unknown extents to ('in', k, j)."""
    names: Dict[S.Sym, S.Sym] = {}
    seen = set()
    for k, t in enumerate(graph.inputs):
        if not isinstance(t, Tensor) or t.node.op.name != "placeholder":
            raise TypeError(f"function inputs must be placeholders; input {k} is {t!r}")
        if t.node.uid in seen:
            raise ValueError(f"placeholder {t.name!r} is given twice as a function input")
        seen.add(t.node.uid)
        for j, d in enumerate(t.dims):
            if isinstance(d, S.Sym) and d.op == "var":
                names.setdefault(d, S.var(("in", k, j)))

    def rename(v: S.Sym) -> S.Dim:
        try:
            return names[v]
        except KeyError:
            raise ValueError("an output depends on a placeholder of unknown shape that is not an "
                             "input of the function") from None

    def sub(x):
        if isinstance(x, S.Sym):
            return S.subst(x, rename)
        if isinstance(x, Graph):  # a loop's body
            return rewrite(x, visit)
        if isinstance(x, TensorType):
            return TensorType(x.dtype, tuple(sub(d) for d in x.dims))
        if isinstance(x, tuple) and not isinstance(x, S.Check):
            return tuple(sub(v) for v in x)
        if isinstance(x, S.Check):
            return S.Check(sub(tuple(x)))
        if isinstance(x, dict):
            return {k: sub(v) for k, v in x.items()}
        return x

    def has_sym(x) -> bool:
        if isinstance(x, (S.Sym, Graph)):
            return True
        if isinstance(x, (tuple, list)):
            return any(has_sym(v) for v in x)
        if isinstance(x, dict):
            return any(has_sym(v) for v in x.values())
        return False

    def visit(node: Node, inputs):
        if node.op.name == "variable":
            return None
        types = [t.type for t in node.outputs]
        if not (has_sym(types) or has_sym(node.attrs) or has_sym(node.checks)) and \
                all(a is b for a, b in zip(inputs, node.inputs)):
            return None
        n = Node(node.op, inputs, sub(node.attrs), [sub(t) for t in types],
                 [sub(c) for c in node.checks], name=node.name)
        return list(n.outputs)

    return rewrite(graph, visit)


# ---- compile ------------------------------------------------------------------------------------

def describe_graph(graph: Graph) -> str:
    """One line per node: %id = op(inputs) attrs -> type."""
    nodes = graph.nodes()
    idx = {n.uid: i for i, n in enumerate(nodes)}
    inputs = {t.node.uid: k for k, t in enumerate(graph.inputs)}
    lines = []
    for n in nodes:
        args = ", ".join(f"%{idx[t.node.uid]}" + (f".{t.index}" if len(t.node.outputs) > 1 else "")
                         for t in n.inputs)
        attrs = {k: v for k, v in n.attrs.items() if k not in ("type", "default", "body")}
        if n.op.name == "constant":
            v = attrs.pop("value")
            attrs = {"value": v.reshape(-1)[0].item()} if v.size == 1 else {"shape": v.shape}
        extra = f" input {inputs[n.uid]}" if n.uid in inputs else ""
        extra += f" {n.name!r}" if n.op.name == "variable" else ""
        a = " ".join(f"{k}={v}" for k, v in attrs.items() if v not in (None, False))
        out = ", ".join(str(t.type) for t in n.outputs)
        lines.append(f"%{idx[n.uid]} = {n.op.name}({args}){(' ' + a) if a else ''}{extra} -> {out}")
        if "body" in n.attrs:  # a loop: its body, indented
            lines += ["    " + ln for ln in describe_graph(n.attrs["body"]).splitlines()]
    outs = ", ".join(f"%{idx[t.node.uid]}" for t in graph.outputs)
    lines.append(f"outputs: {outs or '-'}")
    for v, val in graph.updates:
        lines.append(f"update {v.name} <- %{idx[val.node.uid]}")
    return "\n".join(lines)


def source_key(source: str, tc) -> str:
    _runtime = native()
    record = {"format": CACHE_FORMAT, "abi": int(_runtime.ABI_VERSION),
              "source_sha256": hashlib.sha256(source.encode()).hexdigest(),
              "toolchain": tc.identity()}
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


@dataclass
class Generated:
    """A prepared graph turned into C++: the source still has KEY_SLOT where its key goes."""
    optimized: Graph
    plan: object  # kcomp.lowering.plan.Plan
    source: str


def generate(prepared: Graph, name: str, timings: Dict[str, float] | None = None,
             target: str = "cpu") -> Generated:
    """Passes, lowering and rendering of a prepared graph (no toolchain involved); target 'cpu'
    renders C++, 'cuda' renders CUDA."""
    timings = {} if timings is None else timings
    t = time.perf_counter()
    optimized = optimize(prepared, target)
    timings["passes"] = time.perf_counter() - t
    t = time.perf_counter()
    plan = lower(optimized, target=target)
    timings["lower"] = time.perf_counter() - t
    t = time.perf_counter()
    source = render(plan, name, bytecode_dir=os.path.join(default_cache().root, "jinja"),
                    target=target)
    timings["render"] = time.perf_counter() - t
    return Generated(optimized, plan, source)


def placeholders_as_constants(graph: Graph, values: Dict[int, np.ndarray]) -> Graph:
    """graph with the placeholders of these uids read as constants of these values (which the
    passes may fold); graph.inputs are mapped as the rest (a fixed input becomes a constant)."""
    def visit(node: Node, _inputs):
        v = values.get(node.uid)
        return None if v is None else [constant(v, node.outputs[0].type.dtype)]

    return rewrite(graph, visit) if values else graph


def defaults_as_constants(graph: Graph) -> Graph:
    """A placeholder that is not an input reads its default value (as Keras's learning phase
    does, 0, outside Keras's functions)."""
    inputs = {t.node.uid for t in graph.inputs}
    return placeholders_as_constants(graph, {
        n.uid: n.attrs["default"] for n in graph.nodes()
        if n.op.name == "placeholder" and n.uid not in inputs and
        n.attrs.get("default") is not None})


def prepare_function(graph: Graph) -> Graph:
    """A function's graph as the compiler takes it: control dependencies resolved, ops' state
    updates added, defaults of placeholders that are not inputs read as constants, inputs'
    unknown extents named."""
    return prepare(defaults_as_constants(state_updates(resolve_control(graph))))


def compile_graph(graph: Graph, name: str = "function", device: str | None = None
                  ) -> Tuple[Compiled, Graph, dict]:
    """(compiled function, prepared graph, what this call did: memo_hit, cache_hit and the
    seconds spent in each phase). device: 'cpu' or 'cuda' (default: kcomp.get_device())."""
    from .device import get_device
    device = device or get_device()
    t0 = time.perf_counter()
    prepared = prepare_function(graph)
    # (the build settings too: a function compiled again at another -march is another build)
    mkey = graph_key(prepared) + (
        f":{config.march()}:{config.extra_cxxflags()}:{config.cxx()}" if device == "cpu" else
        f":{device}:tf32={int(config.cuda_tf32())}")
    with _memo_lock:
        hit = _memo.get(mkey)
        if hit is not None:
            _memo.move_to_end(mkey)
    if hit is not None:
        return hit, prepared, {"memo_hit": True, "cache_hit": True,
                               "timings": {"memo": time.perf_counter() - t0}}
    timings = {"prepare": time.perf_counter() - t0}
    gen = generate(prepared, name, timings, target=device)
    optimized, plan, template = gen.optimized, gen.plan, gen.source
    cache = default_cache()
    t = time.perf_counter()
    if device == "cuda":
        from .cuda import jit as cuda_jit
        tc, builder = cuda_jit.toolchain(), cuda_jit.build
    else:
        tc, builder = toolchain(), ninja_build.build
    timings["toolchain"] = time.perf_counter() - t
    key = source_key(template, tc)
    source = template.replace(KEY_SLOT, key)
    t = time.perf_counter()
    built = []

    def build(workdir):
        built.append(True)
        return builder(tc, source, workdir, os.path.join(cache.root, "failed", key))

    entry = cache.get_or_build(key, build)
    timings["build"] = time.perf_counter() - t
    t = time.perf_counter()
    _runtime = native()
    try:
        if device == "cuda":
            from .cuda.runtime import library as cuda_library
            cuda_library()  # the kernel library the function calls into, built on first use
            library = cuda_jit.CudaLibrary(entry.lib, key)
        else:
            library = _runtime.Library(entry.lib, key)
    except (RuntimeError, OSError) as e:
        msg = str(e)
        if "failed to map segment" in msg or "operation not permitted" in msg.lower():
            msg += (f"\nThe cache directory {cache.root} may be on a filesystem mounted noexec; "
                    f"set KCOMP_CACHE_DIR to a directory where programs may run.")
        cache.quarantine(key, f"dlopen failed: {e}")
        raise RuntimeError(msg) from None
    timings["load"] = time.perf_counter() - t

    prepared_vars = {v.node.uid: i for i, v in enumerate(variables_of(prepared))}
    compiled = Compiled(
        library=library, key=key, device=device,
        source_path=entry.source if device == "cpu" else os.path.join(entry.path, "source.cu"),
        input_specs=[(t.name, t.type.dtype.code,
                      [d if isinstance(d, int) else -1 for d in t.dims]) for t in prepared.inputs],
        output_types=[t.type for t in optimized.outputs],
        const_values=list(plan.const_values),
        variable_positions=[prepared_vars[v.node.uid] for v in plan.variable_objects],
        graph_text=describe_graph(optimized), plan_text=plan.describe(), optimized=optimized,
        kernel_labels=[f"{k.name} [{k.template}] {k.label}" for k in plan.kernels])
    with _memo_lock:
        compiled = _memo.setdefault(mkey, compiled)
        while len(_memo) > MEMO_SIZE:
            _memo.popitem(last=False)
    if config.explain():
        sys.stderr.write(explain_text(compiled, name) + "\n")
    return compiled, prepared, {"memo_hit": False, "cache_hit": not built, "timings": timings}


def explain_text(c: Compiled, name: str) -> str:
    return (f"== kcomp function {name!r} ==\n-- graph after passes --\n{c.graph_text}\n"
            f"-- kernel plan --\n{c.plan_text}\n-- generated source --\n{c.source_path}\n")


def clear_memo() -> None:
    with _memo_lock:
        _memo.clear()
