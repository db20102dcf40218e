"""Variable updates and compiled functions."""
from __future__ import annotations

import contextlib

from ..function import function  # noqa: F401  (re-exported)
from ..ir.graph import Update
from ..ir import build as B
from ..ir.graph import Variable
from ..ir import registry
from ..ir.registry import shape_error

__all__ = ["function", "update", "update_add", "update_sub", "moving_average_update",
           "control_dependencies"]


def update(x, new_x):
    """x <- new_x when the function that receives this update runs."""
    if not isinstance(x, Variable):
        raise TypeError(f"update: only variables can be updated, got {x!r}")
    new_x = B.as_tensor(new_x, x.type.dtype)
    if new_x.dims != x.dims:
        if new_x.ndim != x.ndim or any(isinstance(a, int) and a != b
                                       for a, b in zip(new_x.dims, x.dims)):
            raise shape_error("update", f"the new value of {x.name!r} must have its shape",
                              x.type, new_x.type)
        new_x = B.reshape(new_x, x.dims)  # unknown extents: checked at run time
    return Update((x, new_x))


def update_add(x, increment):
    return update(x, B.binary("add", x, increment))


def update_sub(x, decrement):
    return update(x, B.binary("sub", x, decrement))


def moving_average_update(x, value, momentum):
    """x <- x - (x - value) * (1 - momentum), as Keras 2.3.1 computes it."""
    value = B.cast(B.as_tensor(value), x.type.dtype)
    decay = 1.0 - momentum
    return update(x, B.binary("sub", x, B.binary("mul", B.binary("sub", x, value), decay)))


@contextlib.contextmanager
def control_dependencies(control_inputs):
    """Values computed inside the block see the effect of the updates among control_inputs
    (they read the updated variables), and a function computing such a value applies those
    updates too, as TensorFlow would run them first. Tensors among control_inputs add nothing:
    kcomp's graphs have no side effects to order."""
    updates = [u for u in (control_inputs or []) if isinstance(u, Update)]
    registry.CONTROL.extend(updates)
    try:
        yield
    finally:
        del registry.CONTROL[len(registry.CONTROL) - len(updates):]
