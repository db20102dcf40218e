"""Rendering a kernel plan to C++ (target cpu) or CUDA (target cuda) with the Jinja templates in
kcomp/templates/<target>/. Both targets render the same plan; a kernel whose template has no
CUDA version makes the CUDA rendering fail with NotImplementedError naming it.

Contexts are validated before rendering: they may hold Code (made by kcomp/lowering/names.py),
ints, bools and containers of those, never a plain str or a float, so no user text and no
inexact number can reach generated source."""
from __future__ import annotations

import os
import re
from typing import Any

from .rules.common import PARALLEL_MIN
from .names import Code, c_string, comment_text, int_lit, join
from .plan import Plan, variables_written

TEMPLATES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "templates")
KEY_SLOT = "@@KCOMP_KEY@@"  # replaced by the cache key once the source is final
# entry_run's launches go into functions of this many: GCC's optimisation time grows faster
# than linearly with a function's size (points-to analysis), and a function of all the
# launches of a deep model took minutes to compile
LAUNCHES_PER_FUNCTION = 16
# a function with more launches or arguments than this has its glue compiled unoptimised
# (module.cpp.j2: KC_GLUE)
LARGE_GLUE = 64
# the host-and-device headers generated CUDA includes
CUDA_HEADERS = ("kcomp/array.h", "kcomp/random.h", "kcomp/ctc.h")

_env = None


def _validate(value: Any, where: str = "context") -> None:
    if isinstance(value, Code) or value is None or isinstance(value, (bool, int)):
        return
    if isinstance(value, str):
        raise TypeError(f"{where}: plain string {value!r} would reach generated code")
    if isinstance(value, float):
        raise TypeError(f"{where}: float {value!r} must go through names.literal()")
    if isinstance(value, dict):
        for k, v in value.items():
            _validate(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for v in value:
            _validate(v, where)
    else:
        raise TypeError(f"{where}: {type(value).__name__} cannot reach generated code")


def _finalize(value):
    if isinstance(value, float):
        raise TypeError("a float reached a template unformatted")
    if callable(value):  # {{ c.values }} finds dict.values, not the "values" key
        raise TypeError(f"a callable reached a template: {value!r}; rename the context key")
    return value


def environment(bytecode_dir: str | None = None):
    global _env
    if _env is None:
        import jinja2
        cache = None
        if bytecode_dir:
            os.makedirs(bytecode_dir, mode=0o700, exist_ok=True)
            cache = jinja2.FileSystemBytecodeCache(bytecode_dir)
        _env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                                  undefined=jinja2.StrictUndefined, autoescape=False,
                                  trim_blocks=True, keep_trailing_newline=True,
                                  finalize=_finalize, bytecode_cache=cache)
    return _env


def _template(env, target: str, k):
    import jinja2
    try:
        return env.get_template(f"{target}/{k.template}.j2").module
    except jinja2.TemplateNotFound:
        raise NotImplementedError(f"kcomp has no {target.upper()} kernel for {k.label} (template "
                                  f"{k.template!r}) yet; compile this function for the CPU "
                                  f"(kcomp.set_device('cpu'))") from None


_SLOT = re.compile(r"f->p\[(\d+)\]")
# (no template local is named so: test_templates; kc::r2 is a function)
_POINTER = re.compile(r"(?<!::)(?<!\.)(?<!->)\b([rw])(\d+)\b")


def _share(text: str):
    """A CPU kernel's definition with its buffers numbered in order of first use: f->p[N]
    becomes f->p[f->S[i]] (the launch sets frame.S to its slots) and pointer rN (wN) becomes
    r_i (w_i). Kernels that differ only in their buffers (the layers of a deep model) then have
    the same text, compiled once. Returns (that text, the slots)."""
    slots: list = []

    def index(slot: str) -> int:
        if int(slot) not in slots:
            slots.append(int(slot))
        return slots.index(int(slot))
    text = _SLOT.sub(lambda m: f"f->p[f->S[{index(m.group(1))}]]", text)
    return _POINTER.sub(lambda m: f"{m.group(1)}_{index(m.group(2))}", text), slots


def _named(text: str, name: Code, comment: Code) -> Code:
    return Code(text.replace("KC_KERNEL", name).replace("KC_COMMENT", comment))


def _render_kernels(env, kernels, defines: list, target: str, shared=None) -> list:
    """Render kernels: their definitions (a loop's body kernels first) are appended to
    `defines`; returns their launches, in order. On the CPU, kernels whose definitions differ
    only in their buffers and comments share one, with the first one's comment (_share;
    `shared`: the texts emitted, with the kernel named KC_KERNEL, -> the name they were emitted
    under), except a loop (its body's launches set frame.S while it runs) and a kernel that
    hoists statements into a loop (named after it)."""
    shared = {} if shared is None else shared
    launches = []
    for k in kernels:
        ctx = dict(k.ctx)
        if "loop_body" in ctx:  # a loop: its body's launches go inside the loop's launch
            ctx["loop_body"] = _render_kernels(env, ctx["loop_body"], defines, target, shared)
        _validate(ctx, f"kernel {k.template}")
        macros = _template(env, target, k)
        info = {"name": k.name, "comment": comment_text(k.label, 120)}
        # hoist: statements an enclosing loop runs once before its steps (packing weights)
        hoist = Code(macros.hoist(info, ctx).strip()) if hasattr(macros, "hoist") else Code("")
        # (rendered without its comment, which names shapes that the code may not depend on)
        text = macros.define(dict(info, name="KC_KERNEL", comment="KC_COMMENT"), ctx).strip()
        slots = []
        if target == "cpu" and "loop_body" not in ctx and not hoist and text:
            text, slots = _share(text)
            if text not in shared:
                shared[text] = k.name
                defines.append(_named(text, k.name, info["comment"]))
            info["name"] = shared[text]
        else:
            defines.append(_named(text, k.name, info["comment"]))
        launch = macros.launch(info, ctx).strip()
        if slots:
            launch = (f"{{\n    static const int32_t slots[] = {{{join(', ', map(int_lit, slots))}}};"
                      f"\n    frame.S = slots;\n    {launch}\n  }}")
        launches.append({"index": len(launches), "launch": Code(launch),
                         "can_fail": bool(ctx.get("can_fail", False)), "hoist": hoist})
    return launches


def _can_fail(kernels) -> bool:
    return any(k.ctx.get("can_fail") or _can_fail(k.ctx.get("loop_body", ())) for k in kernels)


def _uses_pack_cache(kernels) -> bool:
    return any(k.ctx.get("cache_b") or k.template == "conv_direct" and k.ctx["cache_w"] or
               _uses_pack_cache(k.ctx.get("loop_body") or []) for k in kernels)


def render(plan: Plan, title: str, bytecode_dir: str | None = None, target: str = "cpu") -> str:
    env = environment(bytecode_dir)
    dims = plan.dims
    defines: list = []
    launches = _render_kernels(env, plan.kernels, defines, target)

    def static_dims(b):
        return join(", ", [int_lit(d if isinstance(d, int) else -1) for d in b.dims] or
                    [Code("-1")])

    arg_checks = []
    for array, bufs in (("inputs", plan.inputs), ("consts", plan.consts),
                        ("variables", plan.variables)):
        for b in bufs:
            arg_checks.append({"array": Code(array), "index": b.index, "dtype": b.dtype.code,
                               "rank": len(b.dims), "dims": static_dims(b),
                               "what": c_string(f"{array[:-1]} {b.index}")})
    pointer_lines = []
    for array, bufs in (("inputs", plan.inputs), ("consts", plan.consts),
                        ("variables", plan.variables), ("outputs", plan.outputs)):
        for b in bufs:
            pointer_lines.append(Code(f"frame.p[{b.slot}] = (void *)c->{array}[{b.index}].data;"))
    outputs = [{"index": b.index, "dtype": b.dtype.code, "rank": len(b.dims),
                "extents": [dims.expr(d) for d in b.dims],
                "none": join(", ", [Code("-1")] * max(1, len(b.dims)))} for b in plan.outputs]
    arena = [dims.expr(n) for n in plan.arena]
    written = variables_written(plan.kernels)
    scratch = [{"slot": b.slot, "arena": b.arena} for b in plan.scratch]
    ctx = {
        "title": comment_text(title, 120),
        # every CPU runtime header, precompiled where the compiler is GCC (kcomp/jit/pch.py)
        "includes": [Code("kcomp/prelude.h")],
        "n_dims": max(1, len(dims)), "n_ptrs": max(1, len(plan.buffers)),
        "parallel_min": PARALLEL_MIN,
        "n_inputs": len(plan.inputs), "n_consts": len(plan.consts),
        "n_variables": len(plan.variables), "n_outputs": len(plan.outputs),
        "arg_checks": arg_checks, "dim_lines": list(dims.lines), "outputs": outputs,
        "pointer_lines": pointer_lines, "arena": arena, "scratch": scratch,
        "defines": [d for d in defines if d], "launches": launches,
        "parts": [launches[i:i + LAUNCHES_PER_FUNCTION]
                  for i in range(0, len(launches), LAUNCHES_PER_FUNCTION)],
        "written_variables": [{"index": b.index, "bytes": dims.expr(b.nbytes)}
                              for b in plan.variables if b.slot in written],
        "uses_pack_cache": _uses_pack_cache(plan.kernels),
        "large_glue": max(len(launches), len(plan.inputs) + len(plan.consts) +
                          len(plan.variables) + len(plan.outputs)) > LARGE_GLUE,
    }
    if target == "cuda":
        ctx["can_fail"] = _can_fail(plan.kernels)
        # the CPU kernels' headers (SIMD reductions, convolutions, CTC) stay out of CUDA code
        ctx["includes"] = [Code(h) for h in plan.includes if h in CUDA_HEADERS]
        _validate(ctx)
        return env.get_template("cuda/module.cu.j2").render(**ctx)
    _validate(ctx)
    return env.get_template("cpu/module.cpp.j2").render(**ctx)
