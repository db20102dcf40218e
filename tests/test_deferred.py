"""Initial values that wait (kcomp/deferred.py): computed together by one compiled function,
with the values that computing each at once gives, never computed when set_value replaces them."""
import threading

import numpy as np
import pytest

import kcomp.backend as K
import kcomp.function
from kcomp import deferred
from kcomp.ir.dtypes import as_dtype
from kcomp.ir.ops.random import sample


def uniform(shape, lo, hi, seed, call=0, dtype="float32"):
    return sample("uniform", (float(lo), float(hi)), seed, call, shape, as_dtype(dtype))


def test_many_initial_values_build_one_function(builds):
    shapes = [(1,), (7, 3), (64, 65), (2, 1, 5), (1000,)]
    vs = [K.variable(K.random_uniform(s, -i - 1, i + 2, seed=100 + i)) for i, s in enumerate(shapes)]
    normal = K.variable(K.random_normal((33,), 1.0, 2.0, seed=5) * 3.0 + 1.0, dtype="float64")
    zeros = K.variable(K.zeros_like(K.constant(np.ones((4, 2)))))
    assert builds == [] and len(deferred.waiting) == 7
    assert [K.int_shape(v) for v in vs] == shapes and normal.dtype == "float64"
    got = [K.get_value(v) for v in vs]
    assert builds == ["initial values"] and not deferred.waiting
    for i, (s, g) in enumerate(zip(shapes, got)):
        assert g.dtype == np.float32 and g.flags.c_contiguous
        np.testing.assert_array_equal(g, uniform(s, -i - 1, i + 2, 100 + i))
    want = sample("normal", (1.0, 2.0), 5, 0, (33,), as_dtype("float32"))
    np.testing.assert_allclose(K.get_value(normal), (want * 3.0 + 1.0).astype(np.float64),
                               rtol=1e-6)
    np.testing.assert_array_equal(K.get_value(zeros), np.zeros((4, 2), np.float32))
    assert builds == ["initial values"]


def test_a_compiled_call_computes_waiting_values_first(builds):
    r = K.random_uniform((5, 4), seed=21)
    f = K.function([], [r])
    v = K.variable(r)
    assert len(deferred.waiting) == 1
    drawn = f([])[0]  # v's draw (call 0) comes first, as if v had been computed at once
    np.testing.assert_array_equal(K.get_value(v), uniform((5, 4), 0, 1, 21, call=0))
    np.testing.assert_array_equal(drawn, uniform((5, 4), 0, 1, 21, call=1))
    # a random node waits in one value at most: the second one takes the next draw
    a, b = K.variable(r), K.variable(r)
    np.testing.assert_array_equal(K.get_value(a), uniform((5, 4), 0, 1, 21, call=2))
    np.testing.assert_array_equal(K.get_value(b), uniform((5, 4), 0, 1, 21, call=3))


def test_values_reading_state_are_computed_at_once(builds):
    w = K.variable(np.full((3,), 2.0, np.float32))
    doubled = K.variable(w * 2.0)
    copied = K.variable(w)
    assert builds == ["eval"] and not deferred.waiting
    K.set_value(w, np.zeros(3))
    np.testing.assert_array_equal(K.get_value(doubled), [4, 4, 4])
    np.testing.assert_array_equal(K.get_value(copied), [2, 2, 2])
    x = K.placeholder((None, 3))
    with pytest.raises(ValueError, match="not fed|placeholder"):
        K.variable(x + 1.0)
    assert not deferred.waiting


def test_set_value_replaces_a_waiting_value_without_computing_it(builds):
    v = K.variable(K.random_normal((6, 7), seed=3))
    other = K.variable(K.random_uniform((2,), seed=4))
    with pytest.raises(ValueError, match="shape"):  # refused before anything changes
        K.set_value(other, np.zeros(3))
    K.batch_set_value([(v, np.arange(42).reshape(6, 7))])
    assert builds == [] and list(deferred.waiting) == [other.node.uid]
    np.testing.assert_array_equal(K.get_value(v), np.arange(42).reshape(6, 7))
    np.testing.assert_array_equal(K.get_value(other), uniform((2,), 0, 1, 4))
    assert builds == ["initial values"]


def test_a_failed_computation_leaves_the_values_waiting(builds, monkeypatch):
    v = K.variable(K.random_uniform((3,), seed=8))
    compile_graph = kcomp.function.compile_graph

    def failing(graph, name, *args, **kwargs):
        raise RuntimeError("no compiler today")
    monkeypatch.setattr(kcomp.function, "compile_graph", failing)
    for _ in range(2):  # each read reports the error again
        with pytest.raises(RuntimeError, match="no compiler today"):
            K.get_value(v)
    assert list(deferred.waiting) == [v.node.uid]
    monkeypatch.setattr(kcomp.function, "compile_graph", compile_graph)
    np.testing.assert_array_equal(K.get_value(v), uniform((3,), 0, 1, 8))


def test_threads_reading_at_once_see_the_same_values(builds):
    vs = [K.variable(K.random_uniform((50,), seed=30 + i)) for i in range(4)]
    results = [None] * 8
    start = threading.Barrier(len(results))

    def read(i):
        start.wait()
        results[i] = K.get_value(vs[i % 4])
    threads = [threading.Thread(target=read, args=(i,)) for i in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert builds == ["initial values"]
    for i, got in enumerate(results):
        np.testing.assert_array_equal(got, uniform((50,), 0, 1, 30 + i % 4))

