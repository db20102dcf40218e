"""Layout: a channels_first convolution becomes the channels_last one between two
transpositions. On the CPU, the channels_last direct kernel (kcomp/conv.h) reads the input as it
lies; channels_first would take im2col tiles that the GEMM then packs again. Two transposes cost
less than that second copy: conv2d (8,32,56,56) 3x3 x32 'same', two threads, 1.40 -> 1.03 ms
(PyTorch 1.09; bench/sweep.py). In CUDA, float32 ones, for the implicit GEMM (channels_last
only) in place of a one-thread-per-output kernel. simplify then cancels the transposes between
two such convolutions in a row."""
from __future__ import annotations

from ..graph import Graph
from ..registry import apply1
from .rewrite import rewrite


def channels_last_convs(graph: Graph, dtypes=None) -> Graph:
    """dtypes: the names of the dtypes whose convolutions change (None: all)."""
    def visit(node, inputs):
        if node.op.name != "conv" or node.attrs["data_format"] != "channels_first" or \
                dtypes is not None and node.outputs[0].type.dtype.name not in dtypes:
            return None
        x, w = inputs
        n = len(node.attrs["strides"])
        if all(k == 1 for k in w.dims[:n]) and all(s == 1 for s in node.attrs["strides"]):
            return None  # pointwise: a GEMM on the input as it lies, either layout
        last = (0,) + tuple(range(2, n + 2)) + (1,)
        first = (0, n + 1) + tuple(range(1, n + 1))
        y = apply1("conv", [apply1("transpose", [x], {"perm": last}), w],
                   dict(node.attrs, data_format="channels_last"))
        return [apply1("transpose", [y], {"perm": first})]
    return rewrite(graph, visit)
