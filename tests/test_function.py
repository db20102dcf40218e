"""K.function: updates, variables, batch sizes, threads, input checking, introspection,
debug mode."""
import concurrent.futures
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import kcomp.backend as K
from kcomp.function import Function


def test_updates_read_the_pre_update_state():
    """Every update value and every output is computed from the state before the call; then
    the variables are written in place."""
    a, b = K.variable([1.0, 2.0]), K.variable([10.0, 20.0])
    x = K.placeholder((2,))
    f = K.function([x], [a + b, a * 1], updates=[K.update(a, b), K.update(b, a + x)])
    s, old_a = f([np.array([100.0, 200.0])])
    np.testing.assert_array_equal(s, [11, 22])
    np.testing.assert_array_equal(old_a, [1, 2])
    np.testing.assert_array_equal(K.get_value(a), [10, 20])   # swapped, not chained
    np.testing.assert_array_equal(K.get_value(b), [101, 202])
    f([np.zeros(2)])
    np.testing.assert_array_equal(K.get_value(a), [101, 202])
    np.testing.assert_array_equal(K.get_value(b), [10, 20])


def test_in_place_updates_never_clobber_a_later_reader():
    """An update computed by a fused kernel writes its variable in place only when nothing
    reads the old value afterwards: here a matrix product, a reduction and a transposed copy
    read the old weights, and one update writes in place."""
    rng = np.random.default_rng(0)
    w0, v0 = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    w, v = K.variable(w0), K.variable(v0)
    x = K.placeholder((2, 4))
    f = K.function([x], [K.dot(x, w), K.sum(w, axis=0), K.transpose(w)],
                   updates=[K.update(w, w * 2.0 + 1.0), K.update(v, v * 3.0)])
    xv = rng.normal(size=(2, 4))
    for _ in range(2):
        w_old, v_old = K.get_value(w), K.get_value(v)
        d, s, t = f([xv])
        np.testing.assert_allclose(d, xv @ w_old, rtol=1e-6)
        np.testing.assert_allclose(s, w_old.sum(axis=0), rtol=1e-6)
        np.testing.assert_array_equal(t, w_old.T)
        np.testing.assert_allclose(K.get_value(w), w_old * 2 + 1, rtol=1e-6)
        np.testing.assert_allclose(K.get_value(v), v_old * 3, rtol=1e-6)


def test_updates_reading_the_variable_elsewhere_in_their_kernel():
    """A fused update kernel that also reads its variable at other positions (a reversed
    slice, a transposed view) cannot write it in place: it would read elements it has
    already written. Long enough for the vectorized loop."""
    w0 = np.arange(1000, dtype=np.float32)
    m0 = np.arange(48 * 48, dtype=np.float32).reshape(48, 48)
    w, m, u = K.variable(w0), K.variable(m0), K.variable(w0)
    f = K.function([], [], updates=[K.update(w, w[::-1] * 2.0 + w),
                                    K.update(m, K.transpose(m) - m),
                                    K.update(u, u * 2.0 + 1.0)])
    f([])
    np.testing.assert_array_equal(K.get_value(w), w0[::-1] * 2 + w0)
    np.testing.assert_array_equal(K.get_value(m), m0.T - m0)
    np.testing.assert_array_equal(K.get_value(u), w0 * 2 + 1)


def test_updates_computed_by_a_product_epilogue():
    """An update whose value is a product's epilogue reading the variable (a gradient step
    W - lr dot(x^T, d), W + dot(x^T, e)) is not written into the variable by the product: the
    epilogue would read the old value where the product has already written."""
    rng = np.random.default_rng(3)
    w0 = rng.normal(size=(6, 5)).astype(np.float32)
    w, w2 = K.variable(w0), K.variable(w0)
    x, d, e = K.placeholder((None, 6)), K.placeholder((None, 5)), K.placeholder((None, 5))
    f = K.function([x, d, e], [K.dot(x, w), K.dot(x, w2)],  # read first: the update may claim w
                   updates=[K.update(w, w - 0.1 * K.dot(K.transpose(x), d)),
                            K.update_add(w2, K.dot(K.transpose(x), e))])
    g, h = np.zeros((6, 5)), np.zeros((6, 5))
    for _ in range(2):
        xv, dv, ev = (rng.normal(size=(7, n)).astype(np.float32) for n in (6, 5, 5))
        f([xv, dv, ev])
        g += xv.T.astype(np.float64) @ dv
        h += xv.T.astype(np.float64) @ ev
        np.testing.assert_allclose(K.get_value(w), w0 - 0.1 * g, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(K.get_value(w2), w0 + h, rtol=1e-5, atol=1e-5)


def test_update_helpers():
    v = K.variable(np.ones((2, 3)))
    n = K.variable(0, dtype="int64")
    m = K.variable(np.zeros(3))
    x = K.placeholder((None, 3))
    f = K.function([x], [], updates=[K.update_add(v, K.sum(x, 0)), K.update_sub(n, -1),
                                     K.moving_average_update(m, K.mean(x, 0), 0.9),
                                     (v, v * 2)])  # a later update of v wins
    batch = np.arange(12, dtype=np.float32).reshape(4, 3)
    assert f([batch]) == []
    np.testing.assert_array_equal(K.get_value(v), np.full((2, 3), 2.0))
    assert K.get_value(n) == 1
    np.testing.assert_allclose(K.get_value(m), 0.1 * batch.mean(0), rtol=1e-6)
    f([batch])
    assert K.get_value(n) == 2
    np.testing.assert_allclose(K.get_value(m), 0.1 * batch.mean(0) * 1.9, rtol=1e-6)


def test_set_value_is_seen_by_compiled_functions():
    w = K.variable(np.eye(3))
    x = K.placeholder((None, 3))
    f = K.function([x], [K.dot(x, w)])
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(f([a])[0], a)
    K.set_value(w, 2 * np.eye(3))
    np.testing.assert_array_equal(f([a])[0], 2 * a)


def test_update_shape_must_match():
    v = K.variable(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"update: the new value of .* must have its shape"):
        K.update(v, K.placeholder((3, 2)))
    x = K.placeholder((None, 3))
    f = K.function([x], [], updates=[K.update(v, x * 1)])
    f([np.ones((2, 3))])
    np.testing.assert_array_equal(K.get_value(v), np.ones((2, 3)))
    with pytest.raises(ValueError, match="reshape: element counts differ"):
        f([np.ones((5, 3))])


def test_one_compile_serves_every_batch_size():
    x = K.placeholder((None, 4))
    f = K.function([x], [K.tanh(x) * 2])
    for n in (1, 2, 17, 1000, 0):
        a = np.random.default_rng(n).standard_normal((n, 4)).astype(np.float32)
        np.testing.assert_allclose(f([a])[0], np.tanh(a) * 2, rtol=1e-6, atol=1e-6)


def test_structurally_equal_functions_share_one_compile():
    def build():
        x = K.placeholder((None, 3))
        v = K.variable(np.full(3, 2.0))
        return x, v, K.function([x], [x * v + 1.0])
    x1, v1, f1 = build()
    x2, v2, f2 = build()
    assert f2.compile_info["memo_hit"] and f2.compile_info["key"] == f1.compile_info["key"]
    K.set_value(v2, np.full(3, 5.0))  # each function keeps its own variables
    a = np.ones((1, 3), np.float32)
    np.testing.assert_array_equal(f1([a])[0], [[3, 3, 3]])
    np.testing.assert_array_equal(f2([a])[0], [[6, 6, 6]])


def test_calls_from_many_threads():
    x = K.placeholder((None, 64))
    w = K.variable(np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32))
    f = K.function([x], [K.softmax(K.dot(x, w)), K.sum(x, 1)])
    rng = np.random.default_rng(1)
    batches = [rng.standard_normal((int(rng.integers(1, 300)), 64)).astype(np.float32)
               for _ in range(64)]
    expected = [f([b]) for b in batches]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda b: f([b]), batches * 4))
    for got, want in zip(results, expected * 4):
        for g, w_ in zip(got, want):
            np.testing.assert_array_equal(g, w_)


def test_reused_scratch_memory_starts_no_result():
    """Scratch arenas are recycled between calls (the kernel library keeps freed blocks): a
    call after a larger one, whose arena is full of its values, must not read them. The graph
    has kernels with scratch of every kind (GEMM, conv windows, column reductions, softmax,
    cumsum, a loop's saved states), called big, small, big, small."""
    from kcomp.ir.graph import Graph
    from kcomp.ir.interpret import evaluate
    rng = np.random.default_rng(3)
    x = K.placeholder((None, 9, 9, 3))
    s = K.placeholder((None, 7, 5))
    w = K.variable(rng.standard_normal((3, 3, 3, 4)).astype(np.float32))
    v = K.variable(rng.standard_normal((5, 6)).astype(np.float32))
    c = K.conv2d(x, w, padding="same", data_format="channels_last")
    pooled = K.pool2d(K.relu(c), (2, 2), padding="same", pool_mode="max")
    seq = K.cumsum(K.dot(s, v), axis=1)
    _, h, _ = K.rnn(lambda xt, st: (K.tanh(xt + st[0]), [K.tanh(xt + st[0])]), seq,
                    [K.zeros_like(seq[:, 0])])
    outs = [K.softmax(K.batch_flatten(pooled)), K.sum(c, axis=0), K.max(h, axis=1)]
    f = K.function([x, s], outs)
    for n in (40, 1, 33, 2):
        arrays = [rng.standard_normal((n, 9, 9, 3)).astype(np.float32),
                  rng.standard_normal((n, 7, 5)).astype(np.float32)]
        want, _ = evaluate(Graph((x, s), tuple(outs), ()), arrays)
        for got, ref in zip(f(arrays), want):
            np.testing.assert_allclose(got, ref, rtol=2e-5, atol=2e-5)


def test_recycled_output_blocks_never_alias_live_arrays():
    """Large outputs reuse the blocks of arrays that are gone; an output that is still held,
    or only a view of it, keeps its values through later calls."""
    x = K.placeholder((None, 1024))
    f = K.function([x], [x * 2.0, x + 1.0])
    a = np.full((600, 1024), 1.0, np.float32)  # 2.4 MB per output: pooled
    first = f([a])
    view = first[1][::7, 3]
    del first[1]
    for k in range(2, 6):
        again = f([a * k])
        np.testing.assert_array_equal(again[0], 2.0 * k)
        np.testing.assert_array_equal(first[0], 2.0)
        np.testing.assert_array_equal(view, 2.0)
        assert not np.shares_memory(again[0], again[1])
        del again
    assert f([a])[0].flags.c_contiguous and f([a[:1]])[0].shape == (1, 1024)


def test_input_checking_names_the_input():
    x = K.placeholder((None, 3), name="features")
    n = K.placeholder((2,), dtype="int32", name="ids")
    f = K.function([x, n], [K.sum(x, 1) + K.cast(K.sum(n), "float32")])
    good_x, good_n = np.ones((4, 3), np.float32), np.array([1, 2], np.int32)
    np.testing.assert_array_equal(f([good_x, good_n])[0], np.full(4, 6.0))
    # conversions that keep the kind are accepted: float64 -> float32, lists, Python ints
    np.testing.assert_array_equal(f([np.ones((1, 3)), [1, 2]])[0], [6.0])
    np.testing.assert_array_equal(f([good_x[:, ::-1], good_n])[0], np.full(4, 6.0))  # strided
    with pytest.raises(ValueError, match="expects 2 inputs, got 1"):
        f([good_x])
    with pytest.raises(ValueError, match=r"input 'features' \(#0\) expects rank 2 \(None, 3\), "
                                         r"got shape \(3,\)"):
        f([np.ones(3), good_n])
    with pytest.raises(ValueError, match=r"input 'features' \(#0\) expects shape \(None, 3\), "
                                         r"got \(4, 2\)"):
        f([np.ones((4, 2)), good_n])
    with pytest.raises(ValueError, match=r"input 'ids' \(#1\) has dtype float32, which does not "
                                         r"convert to int32"):
        f([good_x, np.ones(2, np.float32)])
    with pytest.raises(ValueError, match="input 'ids'"):
        f([good_x, [1.5, 2.5]])
    with pytest.raises(ValueError, match="input 'ids'"):
        f([good_x, ["a", "b"]])


def test_unknown_extents_must_agree_at_run_time():
    x, y = K.placeholder((None, 3)), K.placeholder((None, 3))
    f = K.function([x, y], [x + y])
    np.testing.assert_array_equal(f([np.ones((2, 3)), np.ones((1, 3))])[0], np.full((2, 3), 2))
    with pytest.raises(ValueError, match="broadcast: dimensions do not broadcast: 2 vs 3"):
        f([np.ones((2, 3)), np.ones((3, 3))])
    z = K.placeholder((None, 3))
    g = K.function([z], [z + K.constant(np.ones((4, 3)))])  # unknown against static 4
    np.testing.assert_array_equal(g([np.ones((1, 3))])[0], np.full((4, 3), 2))
    with pytest.raises(ValueError, match="do not broadcast"):
        g([np.ones((2, 3))])


def test_broadcasts_of_many_unknown_extents():
    """Broadcast extents are flat sets: a chain that broadcasts against the same unknown extents
    again and again (an unrolled RNN with dropout masks) keeps a small extent, and every pair
    is still checked at run time."""
    from kcomp.ir import shapes as S
    xs = [K.placeholder((None, 2)) for _ in range(3)]
    h = xs[0]
    for step in range(40):  # was a tree that doubled per step
        h = K.tanh(h + xs[1 + step % 2]) * xs[step % 3]
    ext = h.dims[0]
    assert isinstance(ext, S.Sym) and ext.op == "bcast" and len(ext.args) == 3
    f = K.function(xs, [h])
    a = [np.full((n, 2), 0.5, np.float32) for n in (4, 1, 4)]
    want = a[0]
    for step in range(40):
        want = np.tanh(want + a[1 + step % 2]) * a[step % 3]
    np.testing.assert_allclose(f(a)[0], want, rtol=1e-6)
    with pytest.raises(ValueError, match="do not broadcast: 4 vs 3"):
        f([a[0], a[1], np.ones((3, 2), np.float32)])


def test_inputs_must_be_placeholders_and_outputs_reachable():
    x = K.placeholder((2,))
    with pytest.raises(TypeError, match="function inputs must be placeholders"):
        K.function([x * 2], [x])
    with pytest.raises(ValueError, match="given twice"):
        K.function([x, x], [x])
    other = K.placeholder((None,), name="other")
    with pytest.raises(ValueError, match="not an input"):
        K.function([x], [other * 2])
    with pytest.raises(ValueError, match="unsupported arguments: fetches"):
        K.function([x], [x], fetches=[])


def test_outputs_that_are_inputs_variables_constants_or_views_are_copies():
    x = K.placeholder((2, 3))
    v = K.variable(np.arange(6.0).reshape(2, 3))
    f = K.function([x], [x, v, K.constant([1.0, 2.0]), K.reshape(x, (3, 2)), x, K.flatten(v)])
    a = np.ones((2, 3), np.float32)
    outs = f([a])
    assert not any(np.shares_memory(o, a) for o in outs)
    assert not any(np.shares_memory(o, v._value) for o in outs)
    np.testing.assert_array_equal(outs[3], a.reshape(3, 2))
    np.testing.assert_array_equal(outs[5], np.arange(6.0))
    single = K.function([x], K.sum(x))([a])  # a lone output tensor gives a lone array
    assert single == 6.0


def test_eval_runs_native_code(monkeypatch):
    from kcomp.ir import interpret

    def no_interpreter(*args, **kwargs):
        raise AssertionError("the reference interpreter ran")
    monkeypatch.setattr(interpret, "evaluate", no_interpreter)
    monkeypatch.setattr(interpret, "run_node", no_interpreter)
    np.testing.assert_allclose(K.eval(K.exp(K.constant(1.5))), np.exp(1.5), rtol=2e-7)
    np.testing.assert_array_equal(K.eval(K.variable([[1, 2]]) * 2), [[2, 4]])
    f = Function([], [K.exp(K.constant(1.0))])
    assert "exp" in f.explain() and os.path.exists(f.source_path)


def test_explain_and_environment_variable(tmp_path):
    x = K.placeholder((None, 4), name="x")
    f = K.function([x], [K.softmax(K.dot(x, K.variable(np.ones((4, 2))))) * 2], name="net")
    text = f.explain()
    assert "-- graph after passes --" in text and "dot(%0, %1)" in text
    assert "-- kernel plan --" in text and "[gemm]" in text and "[softmax]" in text
    assert f.source_path in text and f.source_path.endswith("source.cpp")
    code = ("import numpy as np, kcomp.backend as K\n"
            "x = K.placeholder((None, 2)); K.function([x], [K.exp(x)], name='shown')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, KCOMP_EXPLAIN="1"))
    assert out.returncode == 0, out.stderr
    assert "== kcomp function 'shown' ==" in out.stderr and "kc::exp" not in out.stderr
    assert "[elementwise] exp" in out.stderr


def test_profile_times_each_kernel_and_keeps_the_call_semantics():
    """Function.profile: one row per top-level kernel of the plan (a loop is one), times that
    add up to at most the call's, results and updates as a plain call's at every round."""
    x = K.placeholder((None, 37))
    w = K.variable(np.linspace(-1, 1, 37 * 5).reshape(37, 5).astype(np.float32))
    n = K.variable(0.0)
    h = K.relu(K.dot(x, w))
    _, _, states = K.rnn(lambda i, s: (i + s[0], [i + s[0]]), K.repeat(h, 4), [K.zeros_like(h)])
    f = K.function([x], [K.sum(h, axis=0), states[0] * 2],
                   updates=[K.update_add(n, 1.0)])
    a = np.random.default_rng(0).standard_normal((9, 37)).astype(np.float32)
    p = f.profile([a], rounds=3)
    assert K.get_value(n) == 4  # a warm-up call and three rounds
    labels = [label for label, _ in p.kernels]
    assert len(labels) == f._current.exe.n_kernels >= 3
    assert any("[gemm]" in lbl for lbl in labels) and any("[loop]" in lbl for lbl in labels)
    times = np.array([t for _, t in p.kernels])
    assert (times >= 0).all() and 0 < times.sum() <= p.total
    text = str(p)
    assert all(lbl in text for lbl in labels) and "outside kernels" in text
    want = np.maximum(a @ K.get_value(w), 0)
    got = f([a])
    np.testing.assert_allclose(got[0], want.sum(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[1], 8 * want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="rounds >= 1"):
        f.profile([a], rounds=0)
    with pytest.raises(ValueError, match="float64 array of"):
        f._current.exe.run([a], np.zeros(1))


def test_debug_mode_names_the_first_differing_node(monkeypatch):
    from kcomp.ir import registry
    x = K.placeholder((None, 3))
    y = K.sum(K.exp(x) * 2.0, 1)
    f = K.function([x], [y])
    a = np.ones((2, 3), np.float32)
    monkeypatch.setenv("KCOMP_MODE", "debug")
    np.testing.assert_allclose(f([a])[0], np.full(2, 6 * np.e), rtol=1e-6)  # agrees: no error
    exp = registry.REGISTRY["exp"]
    broken = registry.OpDef("exp", exp.kind, exp.infer,
                            lambda v, at, o: [np.exp(v[0]) + np.float32(1)], exp.exact)
    monkeypatch.setitem(registry.REGISTRY, "exp", broken)
    monkeypatch.setattr(f._current.compiled.optimized.nodes()[1], "op", broken)
    with pytest.raises(AssertionError, match=r"native result of exp \(float32\(None, 3\)\) differs"):
        f([a])


def test_control_dependencies_read_updated_state():
    """Keras's stateful metrics: a result computed under control_dependencies(update) sees the
    update, and a function computing it applies the update even if not listed."""
    total, count = K.variable(0.0), K.variable(0.0)
    x = K.placeholder((None,))
    updates = [K.update_add(total, K.sum(x)), K.update_add(count, K.cast(K.shape(x)[0], "float32"))]
    with K.control_dependencies(updates):
        result = total / count
    outside = total / count
    f = K.function([x], [result, outside])
    np.testing.assert_allclose(f([np.array([1.0, 2.0, 3.0])]), [2.0, np.nan], equal_nan=True)
    np.testing.assert_allclose(f([np.array([4.0])]), [2.5, 2.0])
    assert K.get_value(count) == 4.0
    g = K.function([x], [result], updates=updates)  # listed as well: applied once, not twice
    g([np.array([10.0])])
    assert K.get_value(count) == 5.0 and K.get_value(total) == 20.0


def test_an_update_used_as_a_value_assigns():
    """TensorFlow's assign: evaluating it (K.eval, a function output) assigns and gives the new
    value."""
    v = K.variable(np.ones((2, 2)))
    np.testing.assert_array_equal(K.eval(K.update(v, np.full((2, 2), 2.0))), np.full((2, 2), 2))
    np.testing.assert_array_equal(K.get_value(v), np.full((2, 2), 2))
    np.testing.assert_array_equal(K.eval(K.update_add(v, 1.0)), np.full((2, 2), 3))
    f = K.function([], [K.update_sub(v, 0.5)])
    f([])
    f([])
    np.testing.assert_array_equal(K.get_value(v), np.full((2, 2), 2))


def test_large_outputs_reuse_recent_blocks():
    """Outputs of 1 MiB or more come from a pool of recycled blocks that keeps the most recently
    returned ones: after many functions have filled it with other sizes, a function called
    again gets its own block back instead of fresh pages to fault in."""
    fs = []
    for i in range(12):  # more sizes than the pool keeps
        x = K.placeholder((1024 + 64 * i, 300))
        fs.append((K.function([x], [x * 2.0]), np.ones((1024 + 64 * i, 300), np.float32)))
    big = K.placeholder((1024, 1024))
    g = K.function([big], [K.relu(big)])
    a = np.full((1024, 1024), -1.0, np.float32)
    for f, v in fs:
        f([v])
    out = g([a])[0]
    at = out.ctypes.data
    del out
    blocker = np.ones(1 << 20, np.float32)  # would take the block, had the pool freed it
    out = g([a])[0]
    assert out.ctypes.data == at and np.all(out == 0)
    del blocker


def test_many_launches_run_in_order_across_entry_functions():
    """The generated entry point runs its launches through functions of LAUNCHES_PER_FUNCTION
    each (kcomp/lowering/render.py): a function of three times as many kernels (its glue
    unoptimised: LARGE_GLUE) computes the chain in order, profiles every kernel and reports a
    failure from its last part."""
    from kcomp.lowering.render import LAUNCHES_PER_FUNCTION as per
    x, idx = K.placeholder((None, 7)), K.placeholder((3,), dtype="int32")
    h = x
    for _ in range(3 * per):  # a scan and a scaling each: separate kernels
        h = K.cumsum(h, axis=1) * 0.25
    f = K.function([x, idx], [K.gather(h, idx)])
    a = np.random.default_rng(0).standard_normal((5, 7)).astype(np.float32)
    want = a.astype(np.float64)
    for _ in range(3 * per):
        want = np.cumsum(want, 1) * 0.25
    got = f([a, np.array([4, 0, 2], np.int32)])[0]
    np.testing.assert_allclose(got, want[[4, 0, 2]], rtol=1e-4)
    n = f._current.exe.n_kernels
    assert n > 2 * per
    source = f.explain().split("-- generated source --")[1].split()[0]
    text = open(source).read()
    assert f"run_{(n - 1) // per}(" in text
    assert 'optimize("O0")' in text  # over LARGE_GLUE launches: the glue is not optimised
    p = f.profile([a, np.array([1, 1, 1], np.int32)], rounds=1)
    assert len(p.kernels) == n and all(t >= 0 for _, t in p.kernels)
    with pytest.raises(IndexError, match="gather: index out of range: 5"):
        f([a, np.array([0, 5, 2], np.int32)])


def test_kernels_that_differ_only_in_their_buffers_are_compiled_once():
    """render.py (_share): kernels whose code differs only in the buffers they use (the layers
    of a deep model: their loops and reductions) are one function, launched with each one's
    buffer slots; the slots' pattern is part of the code (an update in place reads and writes
    one buffer)."""
    rng = np.random.default_rng(1)
    x = K.placeholder((None, 9))
    ws = [rng.uniform(-1, 1, 9).astype(np.float32) for _ in range(12)]
    vs = [K.variable(w) for w in ws]
    h = x
    for v in vs:
        h = K.tanh(h * v + 0.5) - K.mean(h, axis=1, keepdims=True)  # a loop per layer
    counters = [K.variable(np.full(3, i, np.float32)) for i in range(2)]
    f = K.function([x], [h, vs[0] * 2.0 + 1.0],
                   updates=[K.update(c, c * 2.0 + 1.0) for c in counters])
    source = open(f.explain().split("-- generated source --")[1].split()[0]).read()
    loops = re.findall(r"^static void k\d+\(", source, re.M)
    rows = re.findall(r"^static void k\d+_rows\(", source, re.M)  # (the means)
    assert f._current.exe.n_kernels >= 24 and len(loops) <= 4 and len(rows) <= 2, (loops, rows)
    assert "frame.S = slots" in source
    for batch in (5, 1):
        a = rng.uniform(-1, 1, (batch, 9)).astype(np.float32)
        want = a.astype(np.float64)
        for w in ws:
            want = np.tanh(want * w + 0.5) - want.mean(axis=1, keepdims=True)
        got = f([a])
        np.testing.assert_allclose(got[0], want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got[1], ws[0] * 2.0 + 1.0, rtol=1e-6)
    for i, c in enumerate(counters):  # twice in place: i -> 2i + 1 -> 4i + 3
        np.testing.assert_array_equal(K.get_value(c), np.full(3, 4 * i + 3, np.float32))
