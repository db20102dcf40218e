"""Helpers shared by the op tests: random inputs, compile-and-compare against the numpy reference
interpreter and against an independent numpy computation."""
from __future__ import annotations

import numpy as np

import kcomp.backend as K
from kcomp.ir.graph import Graph
from kcomp.ir.interpret import evaluate

FLOATS = ("float16", "float32", "float64")
SIGNED = ("int8", "int16", "int32", "int64")
UNSIGNED = ("uint8", "uint16", "uint32", "uint64")
INTS = SIGNED + UNSIGNED

# tolerance of a native result against a float64 computation, per result dtype
RTOL = {"float16": 2e-3, "float32": 2e-6, "float64": 1e-13}
ATOL = {"float16": 2e-3, "float32": 1e-6, "float64": 1e-13}


def rand(rng, shape, dtype, lo=-3.0, hi=3.0):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return rng.uniform(lo, hi, shape).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, shape).astype(bool)
    info = np.iinfo(dtype)
    lo_i, hi_i = max(int(lo), int(info.min)), min(int(hi), int(info.max))
    return rng.integers(lo_i, hi_i + 1, shape).astype(dtype)


def concrete(shape, fill=5):
    return tuple(fill if d is None else d for d in shape)


def kernel_plan(f) -> str:
    """The kernel plan of compiled function f (its explain() text after the graph)."""
    return f.explain().split("-- kernel plan --")[1]


def run(inputs, outputs, name="test", device=None):
    """Compile inputs -> outputs (for `device`, default kcomp's) and run it on the arrays paired
    with the placeholders. inputs: [(placeholder, array)]. Returns (native results, reference
    results, function)."""
    phs = [p for p, _ in inputs]
    arrays = [a for _, a in inputs]
    f = K.function(phs, list(outputs), name=name, device=device)
    got = f(arrays)
    # bounded outputs (ctc_decode's) come trimmed from functions: trim the reference alike
    trims = [(i, *o._kcomp_trim) for i, o in enumerate(outputs) if hasattr(o, "_kcomp_trim")]
    want, _ = evaluate(Graph(tuple(phs), tuple(outputs) + tuple(t for _, _, t in trims), ()),
                       arrays)
    for k, (i, axis, _) in enumerate(trims):
        want[i] = want[i][(slice(None),) * axis + (slice(0, int(want[len(outputs) + k])),)]
    return got, want[:len(outputs)], f


def assert_same(got, want, what=""):
    """Native vs reference: same dtype and shape; exact for integers and bools, a few ulps for
    floats (the reference computes as the native code does)."""
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} vs {want.dtype}"
    assert got.shape == want.shape, f"{what}: shape {got.shape} vs {want.shape}"
    if got.dtype.kind == "f":
        tol = {2: 1e-3, 4: 4e-6, 8: 1e-14}[got.dtype.itemsize]
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol, equal_nan=True, err_msg=what)
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


def assert_numpy(got, expected, dtype=None, what="", rtol=None, atol=None):
    """Native vs an independent numpy computation (usually in float64)."""
    dtype = np.dtype(dtype or got.dtype)
    assert got.dtype == dtype, f"{what}: dtype {got.dtype}, expected {dtype}"
    expected = np.asarray(expected)
    assert got.shape == expected.shape, f"{what}: shape {got.shape} vs {expected.shape}"
    if dtype.kind == "f":
        np.testing.assert_allclose(got.astype(np.float64), expected.astype(np.float64),
                                   rtol=rtol if rtol is not None else RTOL[dtype.name],
                                   atol=atol if atol is not None else ATOL[dtype.name],
                                   equal_nan=True, err_msg=what)
    else:
        np.testing.assert_array_equal(got, expected.astype(dtype), err_msg=what)


def keras_numpy_backend():
    """Keras 2.3.1's numpy reference backend (keras/backend/numpy_backend.py), imported with
    kcomp as Keras's backend so that TensorFlow is never needed."""
    import importlib.util
    import os

    import pytest
    if importlib.util.find_spec("keras") is None:
        pytest.skip("Keras 2.3.1 is not installed")
    os.environ.setdefault("KERAS_BACKEND", "kcomp.backend")
    import kcomp.backend  # noqa: F401  (its compat aliases let numpy_backend run on numpy 2)
    from keras.backend import numpy_backend
    return numpy_backend
