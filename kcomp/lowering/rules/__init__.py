"""Kernel rules: how each op (or op family) becomes kernels of a plan. One module per family;
each registers its rules with @rule, and importing this package imports them all. Templates are
in kcomp/templates/cpu/. Elementwise groups (fused loop nests) have one rule of their own."""
from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, Dict

from ...ir.passes.fusion import Group

RULES: Dict[str, Callable] = {}


def rule(*names):
    """Register fn(lowerer, node) as the lowering of ops `names`."""
    def deco(fn):
        for n in names:
            if n in RULES:
                raise RuntimeError(f"two lowering rules for {n!r}")
            RULES[n] = fn
        return fn
    return deco


def lower_group(L, g: Group) -> None:
    from .elementwise import lower_elementwise
    if g.fused:
        lower_elementwise(L, g)
        return
    name = g.root.op.name
    if g.prologue:
        from .reduce import lower_reduce_prologue
        lower_reduce_prologue(L, g)
        return
    if name not in RULES:
        raise NotImplementedError(f"kcomp has no CPU lowering for op {name!r}")
    RULES[name](L, g.root)


for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")
