"""The gradient check every gradient test uses: kcomp's symbolic gradients, compiled and
interpreted, against central finite differences of the numpy reference interpreter in float64.

    check_gradients(lambda x, w: K.dot(x, w), [x, w])

differentiates loss = sum(y * r) (r: fixed random weights, so that every element of y matters
differently) with respect to every float input and asserts, for each:
- the compiled float64 gradient equals the reference interpreter's evaluation of the same
  gradient graph (to rounding),
- both match central differences of the loss (step 1e-6 relative, float64),
- for each other dtype asked for (float32 by default), the compiled gradient of the graph built
  in that dtype matches the float64 gradient within that dtype's tolerance.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

import kcomp.backend as K
from kcomp.ir.graph import Graph
from kcomp.ir.interpret import evaluate

TOL = {"float64": (1e-5, 1e-7), "float32": (2e-3, 2e-4), "float16": (3e-2, 3e-2)}


def _graph(build, arrays, shapes, dtype, seed):
    """Placeholders of the inputs and loss = sum over outputs y of sum(y * r)."""
    phs = [K.placeholder(shape=shape, dtype=dtype if a.dtype.kind == "f" else a.dtype.name)
           for a, shape in zip(arrays, shapes)]
    ys = build(*phs)
    ys = list(ys) if isinstance(ys, (list, tuple)) else [ys]
    feeds = [a.astype(dtype) if a.dtype.kind == "f" else a for a in arrays]
    values, _ = evaluate(Graph(tuple(phs), tuple(ys), ()), feeds)
    rng = np.random.default_rng(seed + 1)
    loss = None
    for y, v in zip(ys, values):
        term = K.sum(y * K.constant(rng.uniform(0.5, 1.5, v.shape), dtype=dtype))
        loss = term if loss is None else loss + term
    return phs, loss


def check_gradients(build: Callable, arrays: Sequence[np.ndarray], wrt: Sequence[int] = None,
                    shapes=None, dtypes=("float32",), seed: int = 0, none: Sequence[int] = (),
                    tol=None, step: float = 1e-6):
    """See the module docstring. wrt: indices of the inputs to differentiate (default: the float
    ones); none: indices whose gradient must be None (unconnected or not differentiable);
    shapes: placeholder shapes (None for an extent known only at run time), default the arrays'.
    tol: {dtype or "interpreted": (rtol, atol)} overrides; step: the relative finite-difference
    step (larger for a linear op that rounds to float32 inside). Returns the float64 gradients."""
    arrays = [np.asarray(a) for a in arrays]
    shapes = shapes or [a.shape for a in arrays]
    if wrt is None:
        wrt = [i for i, a in enumerate(arrays) if a.dtype.kind == "f" and i not in none]
    feeds64 = [a.astype(np.float64) if a.dtype.kind == "f" else a for a in arrays]

    phs, loss = _graph(build, arrays, shapes, "float64", seed)
    grads = K.gradients(loss, [phs[i] for i in list(wrt) + list(none)])
    for i, g in zip(none, grads[len(wrt):]):
        assert g is None, f"input {i}: expected no gradient, got {g}"
    grads = grads[:len(wrt)]
    for i, g in zip(wrt, grads):
        assert g is not None, f"input {i}: no gradient"
    compiled = K.function(phs, grads)(feeds64)
    graph = Graph(tuple(phs), tuple(grads) + (loss,), ())
    interpreted, _ = evaluate(graph, feeds64)
    interpreted = interpreted[:len(wrt)]

    def f(values):
        return float(evaluate(Graph(tuple(phs), (loss,), ()), values)[0][0])

    rtol, atol = (tol or {}).get("float64", TOL["float64"])
    for i, got, ref in zip(wrt, compiled, interpreted):
        np.testing.assert_allclose(got, ref, *(tol or {}).get("interpreted", (1e-9, 1e-12)),
                                   err_msg=f"input {i}: compiled vs interpreted gradient")
        x = feeds64[i]
        fd = np.zeros_like(x)
        for j in np.ndindex(x.shape):
            h = step * max(1.0, abs(x[j]))
            plus, minus = [v.copy() for v in feeds64], [v.copy() for v in feeds64]
            plus[i][j] += h
            minus[i][j] -= h
            fd[j] = (f(plus) - f(minus)) / (2 * h)
        scale = max(1.0, float(np.max(np.abs(fd), initial=0)))
        np.testing.assert_allclose(got, fd, rtol=rtol, atol=atol * scale,
                                   err_msg=f"input {i}: gradient vs central differences")

    for dt in dtypes:
        phs_d, loss_d = _graph(build, arrays, shapes, dt, seed)
        grads_d = K.gradients(loss_d, [phs_d[i] for i in wrt])
        feeds = [a.astype(dt) if a.dtype.kind == "f" else a for a in arrays]
        got_d = K.function(phs_d, grads_d)(feeds)
        rtol, atol = (tol or {}).get(dt, TOL[dt])
        for i, got, ref in zip(wrt, got_d, compiled):
            assert got.dtype == np.dtype(dt), f"input {i}: {dt} gradient is {got.dtype}"
            scale = max(1.0, float(np.max(np.abs(ref), initial=0)))
            np.testing.assert_allclose(got.astype(np.float64), ref, rtol=rtol, atol=atol * scale,
                                       err_msg=f"input {i}: {dt} gradient vs float64")
    return compiled
