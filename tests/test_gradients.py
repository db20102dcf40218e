"""K.gradients: every gradient rule against central finite differences (tests/gradcheck.py),
compiled in float64 and float32; None where no gradient flows; clear errors."""
import numpy as np
import pytest

import kcomp.backend as K
from gradcheck import check_gradients
from util import run


def rnd(*shape, lo=-2.0, hi=2.0, seed=0):
    return np.random.default_rng([seed, *shape]).uniform(lo, hi, shape)


POS = dict(lo=0.5, hi=2.0)  # inputs of log, sqrt, pow

UNARY = [
    ("neg", lambda x: -x, {}), ("abs", K.abs, {}), ("square", K.square, {}),
    ("sqrt", K.sqrt, POS), ("exp", K.exp, {}), ("log", K.log, POS), ("sin", K.sin, {}),
    ("cos", K.cos, {}), ("tanh", K.tanh, {}), ("sigmoid", K.sigmoid, {}),
    ("hard_sigmoid", K.hard_sigmoid, {}), ("softplus", K.softplus, {}),
    ("softsign", K.softsign, {}), ("relu", K.relu, {}),
    ("leaky relu", lambda x: K.relu(x, alpha=0.3), {}),
    ("relu6", lambda x: K.relu(x, max_value=1.5), {}),
    ("thresholded relu", lambda x: K.relu(x, alpha=0.2, max_value=1.5, threshold=0.3), {}),
    ("elu", lambda x: K.elu(x, 0.7), {}), ("identity", K.identity, {}),
    ("cast", lambda x: K.cast(x, "float64") * 1.0, {}),
    ("pow scalar", lambda x: K.pow(x, 3), {}), ("clip", lambda x: K.clip(x, -1.0, 1.0), {}),
    ("softmax", K.softmax, {}), ("log_softmax chain", lambda x: K.log(K.softmax(x)), {}),
]


@pytest.mark.parametrize("name,fn,dom", UNARY, ids=[u[0] for u in UNARY])
def test_unary(name, fn, dom):
    check_gradients(fn, [rnd(3, 4, **dom)])


BINARY = [
    ("add", lambda a, b: a + b), ("sub", lambda a, b: a - b), ("mul", lambda a, b: a * b),
    ("truediv", lambda a, b: a / b), ("maximum", K.maximum), ("minimum", K.minimum),
    ("pow", K.pow), ("mod", lambda a, b: a % b),
]
SHAPES = [((3, 4), (3, 4)), ((3, 4), (4,)), ((3, 1), (1, 4)), ((2, 1, 3), (4, 1)),
          ((1,), (2, 3)), ((), (3, 2))]


@pytest.mark.parametrize("name,fn", BINARY, ids=[b[0] for b in BINARY])
@pytest.mark.parametrize("shapes", SHAPES, ids=[f"{a}-{b}" for a, b in SHAPES])
def test_binary_broadcasting(name, fn, shapes):
    sa, sb = shapes
    a = rnd(*sa, **POS) if name in ("pow", "truediv", "mod") else rnd(*sa)
    b = rnd(*sb, seed=1, **POS) if name in ("pow", "truediv", "mod") else rnd(*sb, seed=1)
    check_gradients(fn, [a, b], dtypes=("float32",) if sa and sb else ())


def test_switch_selects_gradients():
    c = np.array([True, False, True])
    check_gradients(lambda c, a, b: K.switch(c, a, b), [c, rnd(3), rnd(3, seed=2)], none=(0,))


REDUCTIONS = [("sum", K.sum), ("mean", K.mean), ("max", K.max), ("min", K.min),
              ("prod", K.prod), ("var", K.var), ("std", K.std), ("logsumexp", K.logsumexp)]
AXES = [None, 0, -1, [0, 2], 1]


@pytest.mark.parametrize("name,fn", REDUCTIONS, ids=[r[0] for r in REDUCTIONS])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions(name, fn, axis, keepdims):
    x = rnd(2, 3, 4)
    check_gradients(lambda x: fn(x, axis=axis, keepdims=keepdims), [x],
                    dtypes=("float32",) if axis == -1 else ())


def test_prod_with_a_zero_and_max_ties():
    x = rnd(3, 4)
    x[1, 2] = 0.0
    check_gradients(lambda x: K.prod(x, axis=1), [x], dtypes=())
    p = K.placeholder((3, 4), dtype="float64")
    g = K.function([p], K.gradients(K.sum(K.prod(p, axis=1)), [p]))([x])[0]
    np.testing.assert_allclose(g[1], [np.prod(np.delete(x[1], i)) for i in range(4)])
    t = np.array([[1.0, 3.0, 3.0, 2.0]])
    p = K.placeholder((1, 4))
    g = K.function([p], K.gradients(K.max(p), [p]))([t])[0]
    np.testing.assert_array_equal(g, [[0, 0.5, 0.5, 0]])  # shared by ties, as TensorFlow


def test_cumulative():
    check_gradients(lambda x: K.cumsum(x, axis=1), [rnd(3, 4)])
    check_gradients(lambda x: K.cumprod(x, axis=0), [rnd(3, 4, **POS)])


LAYOUT = [
    ("reshape", lambda x: K.reshape(x, (4, 6)) * 1.0),
    ("transpose", lambda x: K.permute_dimensions(x, (2, 0, 1))),
    ("slice", lambda x: x[:, 1:, ::2]),
    ("negative step", lambda x: x[::-1, -2::-2, 1]),
    ("concatenate", lambda x: K.concatenate([x, x[:, :1] * 2.0, K.square(x)], axis=1)),
    ("tile", lambda x: K.tile(x, (2, 1, 3))),
    ("repeat_elements", lambda x: K.repeat_elements(x, 3, axis=1)),
    ("repeat", lambda x: K.repeat(x[0], 2)),
    ("expand/squeeze", lambda x: K.squeeze(K.expand_dims(x, 1), 1)),
    ("flatten", lambda x: K.batch_flatten(x)),
    ("reverse", lambda x: K.reverse(x, [0, 2])),
    ("pad", lambda x: K.spatial_2d_padding(K.expand_dims(x), ((1, 0), (2, 1)))),
    ("stack", lambda x: K.stack([x[0], x[1] * 3.0], axis=1)),
    ("broadcast", lambda x: x[:, :1, :] + K.zeros((5, 2, 3, 4))),
    ("disjoint slices", lambda x: K.concatenate([K.sigmoid(x[..., :1]), K.tanh(x[..., 2:])])),
    ("overlapping slices", lambda x: K.sin(x[:, :2]) * K.cos(x[:, 1:])),
]


@pytest.mark.parametrize("name,fn", LAYOUT, ids=[c[0] for c in LAYOUT])
def test_layout(name, fn):
    check_gradients(fn, [rnd(2, 3, 4)], dtypes=())


def test_symbolic_batch_dimension():
    x = rnd(3, 4)
    check_gradients(lambda x, w: K.sum(K.dot(x, w), axis=0) + K.mean(x[:, 1:]), [x, rnd(4, 2)],
                    shapes=[(None, 4), (4, 2)])


@pytest.mark.parametrize("rows", [(1, 6), (6, 1), (6, 6), (1, 1)])
def test_unknown_extents_broadcast_at_run_time(rows):
    """Two inputs of unknown batch extents, one of which is 1 at run time: whether it was
    broadcast is known only then, and its gradient is summed over the batch then (found by the
    fuzzer, tests/graph_fuzz.py)."""
    a, b = rnd(rows[0], 3), rnd(rows[1], 3)
    check_gradients(lambda a, b: K.tanh(a / (1.0 + b * b)), [a, b],
                    shapes=[(None, 3), (None, 3)])


@pytest.mark.parametrize("rows", [(0, 0), (0, 1), (1, 0)])
def test_unknown_extents_broadcast_in_an_empty_batch(rows):
    """The same with an empty batch: splitting the gradient's empty axis by an empty extent
    (0 / 0) is no error (a CTC loss times a per-item weight, fed no items, raised one)."""
    a_ph, b_ph = K.placeholder((None, 3)), K.placeholder((None, 3))
    loss = K.sum(K.tanh(a_ph / (1.0 + b_ph * b_ph)))
    a, b = rnd(rows[0], 3), rnd(rows[1], 3)
    got, want, _ = run([(a_ph, a), (b_ph, b)], K.gradients(loss, [a_ph, b_ph]))
    for g, w, x in zip(got, want, (a, b)):
        assert g.shape == w.shape == x.shape
        np.testing.assert_array_equal(g, np.zeros_like(x))


DOTS = [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)),
        ((3, 4), (2, 4, 5)), ((2, 3, 4), (3, 4, 2))]


@pytest.mark.parametrize("sx,sy", DOTS, ids=[f"{a}.{b}" for a, b in DOTS])
def test_dot(sx, sy):
    check_gradients(K.dot, [rnd(*sx), rnd(*sy, seed=3)])


BATCH_DOTS = [((4, 3), (4, 3), 1), ((4, 3), (4, 3, 2), (1, 1)), ((2, 3, 4), (2, 4, 5), None),
              ((2, 3, 4), (2, 5, 4), (2, 2)), ((2, 4, 3), (2, 4, 5), (1, 1)),
              ((2, 3, 4, 2), (2, 2, 4), (2, 2))]


@pytest.mark.parametrize("sx,sy,axes", BATCH_DOTS, ids=[f"{a}.{b}@{c}" for a, b, c in BATCH_DOTS])
def test_batch_dot(sx, sy, axes):
    check_gradients(lambda x, y: K.batch_dot(x, y, axes=axes), [rnd(*sx), rnd(*sy, seed=4)])


def test_gather_accumulates_repeated_indices():
    idx = np.array([[0, 3], [3, 3], [1, 0]], np.int32)
    g = check_gradients(lambda w, i: K.gather(w, i), [rnd(5, 2), idx], none=(1,))
    counts = np.bincount(idx.ravel(), minlength=5)
    assert (np.abs(g[0]).sum(axis=1) > 0).tolist() == (counts > 0).tolist()


def test_embedding_style_lookup_with_symbolic_batch():
    idx = np.array([[1, 2, 2], [0, 4, 1]], np.int64)
    check_gradients(lambda w, i: K.tanh(K.gather(w, i)), [rnd(5, 3), idx],
                    shapes=[(5, 3), (None, 3)], none=(1,))


def test_resize_images():
    x = rnd(1, 3, 2, 2)
    for method in ("nearest", "bilinear"):
        # linear, but bilinear computes in float32: a large step, float32 agreement
        check_gradients(lambda x: K.resize_images(x, 2, 3, "channels_last", method), [x],
                        dtypes=(), step=1e-2,
                        tol={"float64": (1e-5, 1e-6), "interpreted": (1e-6, 1e-6)})


def test_losses_and_normalization():
    t = np.eye(4)[[1, 3, 0]]
    p = rnd(3, 4)
    check_gradients(lambda p: K.categorical_crossentropy(K.constant(t), K.softmax(p)), [p])
    check_gradients(lambda p: K.categorical_crossentropy(K.constant(t), p, from_logits=True),
                    [p])
    check_gradients(lambda p: K.binary_crossentropy(K.constant(t), K.sigmoid(p)), [p])
    check_gradients(lambda p: K.binary_crossentropy(K.constant(t), p, from_logits=True), [p])
    labels = np.array([1, 3, 0], np.int64)
    check_gradients(lambda p, y: K.sparse_categorical_crossentropy(y, p, from_logits=True),
                    [p, labels], none=(1,))
    check_gradients(lambda x, g, b: K.normalize_batch_in_training(x, g, b, [0])[0],
                    [rnd(5, 3), rnd(3, **POS), rnd(3)])
    check_gradients(lambda x: K.l2_normalize(x, axis=1), [p])
    check_gradients(lambda x, b: K.bias_add(x, b), [rnd(2, 3, 4), rnd(4)])


def test_loops():
    x, w, u, h0 = rnd(2, 4, 3), rnd(3, 5) * 0.5, rnd(5, 5, seed=5) * 0.5, rnd(2, 5, seed=6)
    b = rnd(5, seed=7)

    def rnn(x, w, u, h0, b=None, **kw):
        def step(xt, states):
            z = K.dot(xt, w) + K.dot(states[0], u)
            h = K.tanh(z if b is None else z + b)
            return h * 2.0, [h]
        _, outs, states = K.rnn(step, x, [h0], **kw)
        return [outs, states[0]]

    # weights (summed over the steps after the loop) and a bias (summed over batch and steps)
    check_gradients(rnn, [x, w, u, h0, b])
    check_gradients(lambda *a: rnn(*a, go_backwards=True), [x, w, u, h0])
    check_gradients(lambda *a: rnn(*a)[1], [x, w, u, h0], dtypes=())
    mask = np.array([[1, 1, 0, 1], [1, 0, 0, 0]], bool)
    check_gradients(lambda x, w, u, h0, m: rnn(x, w, u, h0, mask=m), [x, w, u, h0, mask],
                    none=(4,), dtypes=())
    # a captured value whose gradient accumulates step by step (not a product over the batch)
    def scaled(x, c):
        return K.rnn(lambda xt, s: (s[0] * c + K.sum(xt), [s[0] * c + K.sum(xt)]), x,
                     [K.zeros_like(c) + 1.0])[1]
    check_gradients(scaled, [x, rnd(2, 5, seed=8)], dtypes=())
    v = rnd(4, 3)
    check_gradients(lambda v: K.foldl(lambda acc, e: acc * e + K.sin(e), v), [v])
    check_gradients(lambda v: K.foldr(lambda acc, e: acc * e + K.sin(e), v), [v])
    check_gradients(lambda v, w: K.map_fn(lambda e: K.sum(e * w), v), [v, rnd(3)])


def test_no_gradient_cases():
    x = K.placeholder((3,))
    i = K.placeholder((3,), dtype="int32")
    w = K.variable(np.ones(3, np.float32))
    loss = K.sum(K.stop_gradient(x) * 2.0 + K.round(x) + K.cast(i, "float32"))
    assert K.gradients(loss, [x, w]) == [None, None]
    assert K.gradients(K.sum(K.cast(K.argmax(x), "float32") * x), [x])[0] is not None
    with pytest.raises(TypeError, match="only float tensors"):
        K.gradients(K.sum(i), [i])


def test_gradients_in_a_training_step_update_variables():
    """A compiled SGD step: forward, backward and the update in one function."""
    rng = np.random.default_rng(0)
    xv, yv = rng.normal(size=(8, 3)).astype("float32"), rng.normal(size=(8, 1)).astype("float32")
    w0 = rng.normal(size=(3, 1)).astype("float32")
    x, y = K.placeholder((None, 3)), K.placeholder((None, 1))
    w = K.variable(w0)
    loss = K.mean(K.square(K.dot(x, w) - y))
    (g,) = K.gradients(loss, [w])
    step = K.function([x, y], [loss], updates=[K.update_sub(w, 0.1 * g)])
    wn = w0.astype(np.float64)
    for _ in range(3):
        got = step([xv, yv])[0]
        r = xv @ wn - yv
        np.testing.assert_allclose(got, np.mean(r ** 2), rtol=1e-5)
        wn = wn - 0.1 * (2 * xv.T @ r / len(xv))
    np.testing.assert_allclose(K.get_value(w), wn, rtol=1e-5)


def test_ctc_batch_cost():
    """Through log(y_pred + eps) to the softmax outputs a Keras CTC model trains."""
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(3, 6, 4))
    labels = np.array([[0, 1, 1], [2, 0, 0], [1, 2, 0]], np.int32)
    label_length = np.array([[3], [1], [2]], np.int32)
    input_length = np.array([[6], [4], [5]], np.int32)  # rows past the length get no gradient
    g = check_gradients(lambda x, y, il, ll: K.ctc_batch_cost(y, K.softmax(x), il, ll),
                        [logits, labels, input_length, label_length], none=(1, 2, 3))
    assert not g[0][1, 4:].any() and not g[0][2, 5:].any()
