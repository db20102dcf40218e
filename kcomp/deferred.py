"""Variables whose initial value is a tensor, computed together by one compiled function.

Keras creates each weight as K.variable(initializer(shape)): a random draw, scaled. Computing
each at once built one library per weight (their shapes and seeds differ), about 0.25 s each:
Keras's ResNet50 took 13 s to construct. Instead such a value waits; everything that waits is
computed by one function, right before anything reads a variable's value or runs a compiled
function, and a value that set_value replaces first is never computed (loading saved weights
builds nothing for the initializers).

The values are those computing each at once would give: only graphs of constants and random
draws wait (no placeholder, no other variable: nothing another call could change), a random
node waits in at most one value, and a compiled call first computes what waits, so a random
node's call counter advances in the same order. One difference: a replaced value never draws
its samples, so its random node's counter stays where it was.
"""
from __future__ import annotations

import threading
from typing import Dict, Optional, Tuple

import numpy as np

from .ir.dtypes import DType
from .ir.graph import Tensor, TensorType, Variable, toposort
from .ir.ops import leaf

# variable uid -> (variable, value tensor, dtype of the variable), in order of creation
waiting: Dict[int, Tuple[Variable, Tensor, DType]] = {}
_random_nodes: set = set()  # uids of the random nodes in waiting values
_lock = threading.RLock()


def variable(value: Tensor, dtype: DType, name: str) -> Optional[Variable]:
    """A variable whose value `value` (cast to dtype) is computed when first needed; None when
    it cannot wait (see the module docstring): the caller computes it now."""
    if not all(isinstance(d, int) for d in value.dims):
        return None
    nodes = toposort([value])
    randoms = [n for n in nodes if n.op.name == "random"]
    counters = {n.inputs[0].node.uid for n in randoms}
    for n in nodes:
        if n.op.name in ("placeholder", "print_tensor", "loop") or n.control or \
                n.op.name == "variable" and n.uid not in counters:
            return None
    with _lock:
        if any(n.uid in _random_nodes for n in randoms):
            flush()  # that draw is made once per computation: this value takes the next one
        var = leaf.unset_variable(TensorType(dtype, value.dims), name)
        var._materialize = flush
        waiting[var.node.uid] = (var, value, dtype)
        _random_nodes.update(n.uid for n in randoms)
    return var


def flush() -> None:
    """Compute every waiting value, in one compiled function."""
    with _lock:
        if not waiting:
            return
        items = list(waiting.values())
        waiting.clear()
        randoms = set(_random_nodes)
        _random_nodes.clear()
        from .function import Function
        try:
            # on the CPU whatever the device: a C++ build is quicker than nvcc's, the draws
            # are the same bits, and a GPU function uploads the values when it first runs
            outs = Function([], [t for _, t, _ in items], name="initial values",
                            device="cpu")([])
        except BaseException:
            for var, t, dt in items:  # they still wait: the error shows again at the next read
                waiting[var.node.uid] = (var, t, dt)
            _random_nodes.update(randoms)
            raise
        for (var, _, dt), out in zip(items, outs):
            var._value = np.array(out, dtype=dt.np, order="C")
            del var._materialize


def replace(var: Variable) -> None:
    """var's value is about to be overwritten whole: if it waits, it is not computed (an
    uninitialized array of its shape takes its place)."""
    with _lock:
        item = waiting.pop(var.node.uid, None)
        if item is None:
            return
        _random_nodes.difference_update(n.uid for n in toposort([item[1]])
                                        if n.op.name == "random")
        var._value = np.empty(tuple(var.dims), var.type.dtype.np)
        del var._materialize
