"""Random tensors: one parallel loop drawing each element from its own counter (random.h)."""
from __future__ import annotations

import numpy as np

from ...ir import dtypes as D
from ...ir import shapes as S
from ...ir.graph import Node
from ..names import Code
from ..plan import Kernel
from . import rule
from .common import Pointers, label_of, loop_ctx


@rule("random")
def _random(L, node: Node):
    L.include("kcomp/random.h")
    counter, out = node.inputs[0], node.outputs[0]
    dist, params = node.attrs["dist"], node.attrs["params"]
    # draws are made in double for float64 data and in float otherwise (float16 rounds after);
    # uniform bounds and binomial p are in that precision, normal mean and stddev in double
    draw_t = D.float64 if out.type.dtype.name == "float64" else D.float32
    param_t = draw_t if dist in ("uniform", "binomial") else D.float64
    # the seed and the parameters are data passed at run time, not literals: the kernels of a
    # model's initializers then have one definition, and a new seed is not a new source
    seed = L.const_array(np.array([int(node.attrs["seed"]) % 2 ** 64], np.uint64))
    ab = L.const_array(np.array([params[0], params[1] if len(params) > 1 else 0], np.float64))
    ptrs = Pointers()
    ctx = loop_ctx(L, [S.size(out.dims)])
    ctx.update(ptrs=ptrs.decls, counter=ptrs.get(L.ref(counter).buf),
               seed=ptrs.get(seed.buf), ab=ptrs.get(ab.buf),
               y=ptrs.get(L.ref(out).buf, write=True), dist=Code(dist),
               T=Code(draw_t.ctype), S=Code(out.type.dtype.ctype), P=Code(param_t.ctype))
    L.add(Kernel(L.kernel_name(), "random", ctx, label_of([node]), ptrs.reads, ptrs.writes))
