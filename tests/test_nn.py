"""softmax over every axis and dtype, including large inputs (stability)."""
import numpy as np
import pytest

import kcomp.backend as K
from util import FLOATS, assert_numpy, assert_same, rand, run


def _softmax(a, axis):
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.mark.parametrize("dtype", FLOATS)
def test_softmax(dtype):
    rng = np.random.default_rng(40)
    cases = [((None, 10), -1), ((None, 10), 0), ((4, 300, 3), 1), ((2, 5, 300), 1), ((7,), 0),
             ((None, 1), -1), ((3, 4, 5), 0)]
    pairs, outs, expect = [], [], []
    for shape, axis in cases:
        x = K.placeholder(shape, dtype=dtype)
        a = rand(rng, tuple(6 if d is None else d for d in shape), dtype, -5, 5)
        pairs.append((x, a))
        outs.append(K.softmax(x, axis))
        expect.append((f"softmax {shape} axis={axis}", a, axis))
    big = K.placeholder((3, 4), dtype=dtype)
    b = np.array([[1e4, 1e4 - 1, 0, -1e4], [-50, -60, -70, -80], [0, 0, 0, 0]], dtype)
    pairs.append((big, b))
    outs.append(K.softmax(big))
    expect.append(("softmax of large values", b, -1))
    got, want, _ = run(pairs, outs)
    for g, w, (what, a, axis) in zip(got, want, expect):
        assert_same(g, w, what)
        assert_numpy(g, _softmax(a.astype(np.float64), axis), dtype, what)
        assert np.all(np.isfinite(g)), what


def test_softmax_of_ints_is_float():
    x = K.placeholder((None, 3), dtype="int32")
    got, want, _ = run([(x, np.array([[1, 2, 3]], np.int32))], [K.softmax(x)])
    assert got[0].dtype == np.float32
    assert_numpy(got[0], _softmax(np.array([[1.0, 2, 3]]), -1), "float32")
