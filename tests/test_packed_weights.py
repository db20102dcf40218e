"""Packed weights kept across calls (kc_api.pack_cached): a matrix product whose B is a variable
that the function never writes reads B's packed panels from the kernel library's cache. Every
way a variable's memory changes must reach the product: set_value, a function that updates the
variable, new variables (possibly at freed addresses), other threads; and the cache's limit
(KCOMP_PACK_CACHE_MB) must only cost speed."""
import gc
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import kcomp.backend as K

# 1 and 3 rows: packed column blocks (pack_skinny); 40 and 100: packed panels
BATCHES = (1, 3, 40, 100)


def _dense(x, w, b):
    return np.maximum(x.astype(np.float64) @ w + b, 0)


def _check(got, want):
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)


def test_set_value_reaches_cached_panels():
    rng = np.random.default_rng(70)
    w0 = rng.standard_normal((300, 200)).astype(np.float32)
    b0 = rng.standard_normal(200).astype(np.float32)
    W, b = K.variable(w0), K.variable(b0)
    x = K.placeholder((None, 300))
    f = K.function([x], [K.relu(K.dot(x, W) + b)])
    assert "CachedPack panels" in open(f.source_path).read()
    w = w0
    for _ in range(3):
        for m in BATCHES:
            a = rng.standard_normal((m, 300)).astype(np.float32)
            _check(f([a])[0], _dense(a, w, b0))
        w = rng.standard_normal((300, 200)).astype(np.float32)
        K.set_value(W, w)


def test_functions_that_update_a_weight():
    """A training function writes W in place: its own product reads W fresh (not cached), and a
    prediction function's cached panels of W go stale when it returns."""
    rng = np.random.default_rng(71)
    w = rng.standard_normal((64, 48)).astype(np.float32)
    W = K.variable(w)
    x, y = K.placeholder((None, 64)), K.placeholder((None, 48))
    predict = K.function([x], [K.dot(x, W)])
    train = K.function([x, y], [K.dot(x, W)], updates=[K.update_add(W, K.dot(K.transpose(x), y))])
    assert "CachedPack" in open(predict.source_path).read()
    assert "CachedPack" not in open(train.source_path).read()
    w = w.astype(np.float64)
    for _ in range(4):
        a = rng.standard_normal((50, 64)).astype(np.float32)
        d = rng.standard_normal((50, 48)).astype(np.float32) * 0.1
        np.testing.assert_allclose(predict([a])[0], a @ w, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(train([a, d])[0], a @ w, rtol=1e-4, atol=1e-4)
        w = w + a.T.astype(np.float64) @ d
        np.testing.assert_allclose(predict([a[:2]])[0], a[:2] @ w, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(predict([a])[0], a @ w, rtol=1e-4, atol=1e-4)


def test_a_function_writing_another_variable_keeps_the_panels():
    """A prediction function that advances a counter (as Keras's predict advances its random
    generator) writes only the counter's memory: W's panels stay cached, and set_value still
    reaches them."""
    rng = np.random.default_rng(76)
    w = rng.standard_normal((200, 120)).astype(np.float32)
    W, n = K.variable(w), K.variable(0.0)
    x = K.placeholder((None, 200))
    f = K.function([x], [K.dot(x, W)], updates=[K.update_add(n, 1.0)])
    src = open(f.source_path).read()
    assert "CachedPack panels" in src and "weights_written(c->variables" in src
    for _ in range(3):
        for m in (1, 50):
            a = rng.standard_normal((m, 200)).astype(np.float32)
            _check(f([a])[0], a.astype(np.float64) @ w)
        w = rng.standard_normal((200, 120)).astype(np.float32)
        K.set_value(W, w)
    assert K.get_value(n) == 6


def test_loop_weights_from_the_cache():
    """A recurrent step's weight, packed once per call before the loop, comes from the cache."""
    rng = np.random.default_rng(72)
    u0 = rng.standard_normal((40, 40)).astype(np.float32) * 0.2
    U = K.variable(u0)
    seq = K.placeholder((None, 7, 40))
    h0 = K.placeholder((None, 40))

    def step(x_t, states):
        h = K.tanh(x_t + K.dot(states[0], U))
        return h, [h]
    last, _, _ = K.rnn(step, seq, [h0])
    f = K.function([seq, h0], [last])
    assert "_cached(c->api" in open(f.source_path).read()

    def reference(s, h, u):
        for t in range(s.shape[1]):
            h = np.tanh(s[:, t] + h @ u)
        return h
    for u in (u0, u0 * -0.5, u0 * 2):
        K.set_value(U, u)
        for m in (1, 33):
            s = rng.standard_normal((m, 7, 40)).astype(np.float32)
            h = rng.standard_normal((m, 40)).astype(np.float32)
            _check(f([s, h])[0], reference(s.astype(np.float64), h, u))


def test_convolution_kernels_from_the_cache():
    """A direct convolution's packed kernel (pack_cached_with, a layout of generated code's own)
    follows set_value, at 1 and 3 images and an odd channel count."""
    rng = np.random.default_rng(77)
    w = rng.standard_normal((3, 3, 8, 21)).astype(np.float32)
    W = K.variable(w)
    x = K.placeholder((None, 9, 9, 8))
    f = K.function([x], [K.conv2d(x, W, padding="valid")])
    assert "_fill, f);" in open(f.source_path).read()

    def reference(a, w):
        win = np.lib.stride_tricks.sliding_window_view(a.astype(np.float64), (3, 3), axis=(1, 2))
        return np.einsum("nhwcij,ijco->nhwo", win, w)
    for _ in range(3):
        for n in (1, 3):
            a = rng.standard_normal((n, 9, 9, 8)).astype(np.float32)
            _check(f([a])[0], reference(a, w))
        w = rng.standard_normal((3, 3, 8, 21)).astype(np.float32)
        K.set_value(W, w)


def test_new_variables_where_freed_ones_were():
    """Variables made and dropped in turn (numpy may hand out the same memory again): every new
    function computes with its own weights, never panels cached for an earlier variable."""
    rng = np.random.default_rng(73)
    x = K.placeholder((None, 128))
    for i in range(6):
        w = rng.standard_normal((128, 96)).astype(np.float32)
        W = K.variable(w)
        f = K.function([x], [K.dot(x, W)])
        a = rng.standard_normal((40, 128)).astype(np.float32)
        _check(f([a])[0], a.astype(np.float64) @ w)
        del f, W
        gc.collect()


def test_threads_share_the_cached_panels():
    rng = np.random.default_rng(74)
    w = rng.standard_normal((256, 160)).astype(np.float32)
    b = rng.standard_normal(160).astype(np.float32)
    x = K.placeholder((None, 256))
    f = K.function([x], [K.relu(K.dot(x, K.variable(w)) + K.variable(b))])
    inputs = [rng.standard_normal((m, 256)).astype(np.float32) for m in (1, 40, 64, 100) * 2]
    wants = [_dense(a, w, b) for a in inputs]
    errors = []

    def work(k):
        try:
            for r in range(30):
                i = (k + r) % len(inputs)
                _check(f([inputs[i]])[0], wants[i])
        except AssertionError as e:  # pragma: no cover (reported below)
            errors.append(e)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


CAP_SCRIPT = r"""
import numpy as np, kcomp.backend as K
rng = np.random.default_rng(75)
x = K.placeholder((None, 384))
ws = [(rng.standard_normal((384, 384)) / 20).astype(np.float32) for _ in range(3)]  # 576 KiB
Ws = [K.variable(w) for w in ws]
f = K.function([x], [K.dot(K.dot(K.dot(x, Ws[0]), Ws[1]), Ws[2])])
for step in range(3):
    for m in (2, 50):
        a = rng.standard_normal((m, 384)).astype(np.float32)
        want = a.astype(np.float64) @ ws[0] @ ws[1] @ ws[2]
        np.testing.assert_allclose(f([a])[0], want, rtol=1e-4, atol=1e-4)
    ws[1] = ws[1] * -1
    K.set_value(Ws[1], ws[1])
print("ok")
"""


@pytest.mark.parametrize("cap", ["0", "1", "bad"])
def test_cache_limit_changes_only_speed(cap):
    """No cache (0), room for one of three weights (1 MiB: entries evicted and repacked),
    and a value that is not a number (the default) give the same results."""
    env = dict(os.environ, KCOMP_PACK_CACHE_MB=cap)
    out = subprocess.run([sys.executable, "-c", CAP_SCRIPT], env=env, capture_output=True,
                         text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]
