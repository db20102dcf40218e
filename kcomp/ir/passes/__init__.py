"""Graph passes. Each takes a Graph and returns a new one (user tensors are never mutated);
dead code disappears in every pass because graphs are rebuilt from their roots."""
from __future__ import annotations

from ..graph import Graph
from ..ops.conv import CUDA_IMPLICIT_GEMM
from .cse import cse
from .fold import fold_constants
from .layout import channels_last_convs
from .loops import hoist_loops
from .merge_loops import merge_loops
from .rewrite import rewrite
from .simplify import simplify

PIPELINE = (simplify, cse, merge_loops, fold_constants, simplify, cse, hoist_loops, cse)


def optimize(graph: Graph, target: str = "cpu") -> Graph:
    """The pipeline, after the target's layout choices (channels_last convolutions: all on the
    CPU, float32 ones in CUDA)."""
    graph = channels_last_convs(graph, None if target == "cpu" else CUDA_IMPLICIT_GEMM)
    for p in PIPELINE:
        graph = p(graph)
    return graph


__all__ = ["optimize", "rewrite", "channels_last_convs", "cse", "fold_constants", "simplify",
           "hoist_loops", "merge_loops", "PIPELINE"]
