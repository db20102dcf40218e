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
from typing import Dict, FrozenSet, Optional, Tuple

import numpy as np

from .ir.dtypes import DType
from .ir.graph import Tensor, TensorType, Variable, toposort
from .ir.ops import leaf

# variable uid -> (variable, value tensor, dtype of the variable, uids of the value's random
# nodes), in order of creation
waiting: Dict[int, Tuple[Variable, Tensor, DType, FrozenSet[int]]] = {}
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
    random_uids = frozenset(n.uid for n in randoms)
    with _lock:
        if any(random_uids & item[3] for item in waiting.values()):
            flush()  # that draw is made once per computation: this value takes the next one
        var = leaf.unset_variable(TensorType(dtype, value.dims), name)
        var._materialize = flush
        waiting[var.node.uid] = (var, value, dtype, random_uids)
    return var


def flush() -> None:
    """Compute every waiting value, in one compiled function."""
    with _lock:
        if not waiting:
            return
        items = dict(waiting)
        waiting.clear()
        from .function import Function
        try:
            # on the CPU whatever the device: a C++ build is quicker than nvcc's, the draws
            # are the same bits, and a GPU function uploads the values when it first runs
            outs = Function([], [item[1] for item in items.values()], name="initial values",
                            device="cpu")([])
        except BaseException:
            waiting.update(items)  # they still wait: the error shows again at the next read
            raise
        for (var, _, dt, _), out in zip(items.values(), outs):
            var._value = np.array(out, dtype=dt.np, order="C")
            del var._materialize


def replace(var: Variable) -> None:
    """var's value is about to be overwritten whole: if it waits, it is not computed (an
    uninitialized array of its shape takes its place)."""
    with _lock:
        if waiting.pop(var.node.uid, None) is None:
            return
        var._value = np.empty(tuple(var.dims), var.type.dtype.np)
        del var._materialize
