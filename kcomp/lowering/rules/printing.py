"""print_tensor: copy the value, then hand (message, value) to the runtime's print hook."""
from __future__ import annotations

from ...ir.graph import Node
from ..names import c_string
from ..plan import Kernel
from . import rule
from .common import copy_value, label_of


@rule("print_tensor")
def _print_tensor(L, node: Node):
    x, out = node.inputs[0], node.outputs[0]
    dst = L.ref(out)
    copy_value(L, x, dst, label="print_tensor: value")
    ctx = {"slot": dst.buf.slot, "dtype": out.type.dtype.code, "rank": out.ndim,
           "itemsize": out.type.dtype.itemsize,
           "extents": [L.dims.expr(d) for d in out.dims],
           "message": c_string(node.attrs["message"])}  # user text, escaped byte by byte
    L.add(Kernel(L.kernel_name(), "print", ctx, label_of([node]), [dst.buf], []))
