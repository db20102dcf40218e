"""Elementwise ops: compiled results against the reference interpreter and against plain numpy,
for every dtype each op accepts, over awkward shapes (size 1, odd, broadcast, unknown batch,
large)."""
import numpy as np
import pytest

import kcomp.backend as K
from util import FLOATS, INTS, SIGNED, assert_numpy, assert_same, concrete, rand, run


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


# name -> (builder, numpy expectation in float64, input range)
UNARY = {
    "square": (K.square, np.square, (-3, 3)),
    "abs": (K.abs, np.abs, (-3, 3)),
    "sqrt": (K.sqrt, lambda x: np.sqrt(np.maximum(x, 0)), (-1, 9)),
    "exp": (K.exp, np.exp, (-5, 5)),
    "log": (K.log, np.log, (0.05, 20)),
    "round": (K.round, np.round, (-4, 4)),
    "sign": (K.sign, np.sign, (-2, 2)),
    "sin": (K.sin, np.sin, (-4, 4)),
    "cos": (K.cos, np.cos, (-4, 4)),
    "tanh": (K.tanh, np.tanh, (-4, 4)),
    "sigmoid": (K.sigmoid, _sigmoid, (-8, 8)),
    "hard_sigmoid": (K.hard_sigmoid, lambda x: np.clip(0.2 * x + 0.5, 0, 1), (-4, 4)),
    "softplus": (K.softplus, lambda x: np.logaddexp(0, x), (-10, 10)),
    "softsign": (K.softsign, lambda x: x / (1 + np.abs(x)), (-4, 4)),
    "relu": (K.relu, lambda x: np.maximum(x, 0), (-2, 2)),
    "leaky_relu6": (lambda x: K.relu(x, alpha=0.1, max_value=6.0),
                    lambda x: np.minimum(np.maximum(x, 0), 6) - 0.1 * np.maximum(-x, 0), (-9, 9)),
    "relu_threshold": (lambda x: K.relu(x, alpha=0.3, max_value=2.5, threshold=0.5),
                       lambda x: np.minimum(np.where(x > 0.5, x, 0), 2.5)
                       - 0.3 * np.maximum(0.5 - x, 0), (-3, 3)),
    "elu": (K.elu, lambda x: np.where(x > 0, x, np.expm1(x)), (-3, 3)),
    "elu_alpha": (lambda x: K.elu(x, 0.7), lambda x: np.where(x > 0, x, 0.7 * np.expm1(x)),
                  (-3, 3)),
    "neg": (lambda x: -x, np.negative, (-3, 3)),
}

SHAPES = [(1,), (7,), (3, 1, 5), (None, 33), (129, 257)]


@pytest.mark.parametrize("dtype", FLOATS)
def test_unary_float(dtype):
    rng = np.random.default_rng(1)
    pairs, outputs, expect = [], [], []
    for name, (fn, ref, (lo, hi)) in UNARY.items():
        for shape in SHAPES:
            x = K.placeholder(shape, dtype=dtype)
            a = rand(rng, concrete(shape, 17), dtype, lo, hi)
            pairs.append((x, a))
            outputs.append(fn(x))
            expect.append((name, shape, ref, a))
    got, want, f = run(pairs, outputs)
    for g, w, (name, shape, ref, a) in zip(got, want, expect):
        what = f"{name}{shape} {dtype}"
        assert_same(g, w, what)
        assert_numpy(g, ref(a.astype(np.float64)), dtype, what)
    # the same compiled function serves another batch size, including 1
    arrays = [rand(rng, concrete(p.shape, 1), dtype, *UNARY[n][2]) if None in p.shape else a
              for (p, a), (n, *_) in zip(pairs, expect)]
    for g, (name, shape, ref, _), a in zip(f(arrays), expect, arrays):
        assert_numpy(g, ref(a.astype(np.float64)), dtype, f"{name}{shape} batch 1")


@pytest.mark.parametrize("dtype", INTS)
def test_unary_int(dtype):
    rng = np.random.default_rng(2)
    signed = dtype in SIGNED
    x = K.placeholder((None, 9), dtype=dtype)
    a = rand(rng, (13, 9), dtype, -50 if signed else 0, 50)
    a[0, :3] = np.iinfo(dtype).max, np.iinfo(dtype).min, 0  # wrap-around at the limits
    outs = [K.abs(x), K.square(x), K.sign(x), K.round(x), x * 3, x + 7]
    got, want, _ = run([(x, a)], outs)
    with np.errstate(all="ignore"):
        expected = [np.abs(a), np.square(a), np.sign(a), a, a * np.array(3, dtype),
                    a + np.array(7, dtype)]
    for g, w, e in zip(got, want, expected):
        assert_same(g, w)
        assert_numpy(g, e, dtype)


@pytest.mark.parametrize("dtype", FLOATS + INTS + ("bool",))
def test_binary_broadcasting(dtype):
    rng = np.random.default_rng(3)
    kind = np.dtype(dtype).kind
    cases = [((None, 1, 4), (3, 1)), ((5,), ()), ((2, 3), (2, 3)), ((1,), (6,)), ((64, 257), (257,)),
             ((4, 1, 3), (1, 5, 1))]
    pairs, outputs, expect = [], [], []
    for sa, sb in cases:
        x, y = K.placeholder(sa, dtype=dtype), K.placeholder(sb, dtype=dtype)
        a = rand(rng, concrete(sa, 3), dtype, -9, 9)
        b = rand(rng, concrete(sb, 3), dtype, -9, 9)
        if kind == "f":
            b = np.where(np.abs(b) < 0.5, np.array(0.75, dtype), b)
        pairs += [(x, a), (y, b)]
        if kind == "b":
            ops = {"and": (x & y, np.logical_and), "or": (x | y, np.logical_or),
                   "max": (K.maximum(x, y), np.maximum), "min": (K.minimum(x, y), np.minimum),
                   "eq": (K.equal(x, y), np.equal), "ne": (K.not_equal(x, y), np.not_equal),
                   "add": (x + y, np.add), "mul": (x * y, np.multiply)}
        else:
            ops = {"add": (x + y, np.add), "sub": (x - y, np.subtract),
                   "mul": (x * y, np.multiply), "div": (x / y, np.true_divide),
                   "floordiv": (x // y, np.floor_divide), "mod": (x % y, np.mod),
                   "max": (K.maximum(x, y), np.maximum), "min": (K.minimum(x, y), np.minimum),
                   "eq": (K.equal(x, y), np.equal), "ne": (K.not_equal(x, y), np.not_equal),
                   "gt": (K.greater(x, y), np.greater), "ge": (K.greater_equal(x, y), np.greater_equal),
                   "lt": (K.less(x, y), np.less), "le": (K.less_equal(x, y), np.less_equal)}
        for name, (t, ref) in ops.items():
            outputs.append(t)
            expect.append((f"{name} {sa} {sb}", ref, a, b))
    got, want, _ = run(pairs, outputs)
    for g, w, (what, ref, a, b) in zip(got, want, expect):
        assert_same(g, w, what)
        with np.errstate(all="ignore"):
            e = ref(a, b)
        if kind in "iu" and "floordiv" in what or "mod" in what and kind in "iu":
            e = np.where(np.broadcast_to(b, e.shape) == 0, 0, e)
        assert_numpy(g, e, e.dtype, what)


@pytest.mark.parametrize("dtype", INTS)
def test_integer_division_semantics(dtype):
    """Python floor division and modulo; division by zero gives 0 (as numpy does), never a
    crash; MIN // -1 wraps."""
    info = np.iinfo(dtype)
    vals = [info.min, -7, -1, 0, 1, 7, info.max] if dtype in SIGNED else [0, 1, 7, 200 % info.max, info.max]
    a = np.array([v for v in vals for _ in vals], dtype)
    b = np.array([v for _ in vals for v in vals], dtype)
    x, y = K.placeholder((None,), dtype=dtype), K.placeholder((None,), dtype=dtype)
    got, want, _ = run([(x, a), (y, b)], [x // y, x % y])
    with np.errstate(all="ignore"):
        fd = np.where(b == 0, 0, np.floor_divide(a, np.where(b == 0, 1, b)))
        md = np.where(b == 0, 0, np.mod(a, np.where(b == 0, 1, b)))
    assert_same(got[0], want[0])
    assert_same(got[1], want[1])
    assert_numpy(got[0], fd, dtype)
    assert_numpy(got[1], md, dtype)


@pytest.mark.parametrize("dtype", FLOATS)
def test_float_division_semantics(dtype):
    """numpy's divmod for floats, including signs, zero divisors and 1 // 0.1 == 9."""
    vals = [-7.5, -1.0, -0.0, 0.0, 0.1, 1.0, 3.0, np.inf, np.nan]
    a = np.array([v for v in vals for _ in vals], dtype)
    b = np.array([v for _ in vals for v in vals], dtype)
    x, y = K.placeholder((None,), dtype=dtype), K.placeholder((None,), dtype=dtype)
    got, want, _ = run([(x, a), (y, b)], [x // y, x % y, x / y])
    with np.errstate(all="ignore"):
        expected = [np.floor_divide(a, b), np.mod(a, b), np.true_divide(a, b)]
    for g, w, e in zip(got, want, expected):
        assert_same(g, w)
        np.testing.assert_array_equal(g, e)  # bit-for-bit numpy (NaN == NaN here)


@pytest.mark.parametrize("dtype", ("int8", "int32", "int64", "uint8", "float32", "float64"))
def test_pow(dtype):
    rng = np.random.default_rng(4)
    x, y = K.placeholder((None, 5), dtype=dtype), K.placeholder((5,), dtype=dtype)
    if np.dtype(dtype).kind == "f":
        a, b = rand(rng, (6, 5), dtype, 0.1, 3), rand(rng, (5,), dtype, -3, 3)
        expected = np.power(a.astype(np.float64), b.astype(np.float64))
    else:
        a = rand(rng, (6, 5), dtype, -4 if dtype[0] == "i" else 0, 9)
        b = np.array([0, 1, 2, 3, 9], dtype)
        with np.errstate(all="ignore"):
            expected = np.power(a, b)
    got, want, _ = run([(x, a), (y, b)], [K.pow(x, y)])
    assert_same(got[0], want[0])
    assert_numpy(got[0], expected, dtype)


def test_int_pow_negative_exponent():
    """numpy refuses negative integer exponents; kcomp gives trunc(1 / a**-e) instead."""
    a = np.array([1, -1, -1, 2, -3, 0], np.int32)
    e = np.array([-3, -3, -2, -1, -2, 2], np.int32)
    x, y = K.placeholder((None,), dtype="int32"), K.placeholder((None,), dtype="int32")
    got, want, _ = run([(x, a), (y, e)], [K.pow(x, y)])
    np.testing.assert_array_equal(got[0], [1, -1, 1, 0, 0, 0])
    assert_same(got[0], want[0])


def test_python_scalars_and_promotion():
    """Python scalars are weak (numpy 2 rules); integer / integer is float64; mixed tensors
    promote like numpy."""
    rng = np.random.default_rng(5)
    x = K.placeholder((None, 3), dtype="float32")
    i = K.placeholder((3,), dtype="int32")
    h = K.placeholder((3,), dtype="float16")
    a, b, c = rand(rng, (4, 3), "float32"), np.array([1, -2, 5], np.int32), \
        np.array([0.5, 1.5, -2], np.float16)
    outs = [2 * x, x - 1, 1 - x, x / 4, 10 / (x * x + 1), x ** 2, 2 ** x, i / 2, i / i, i * 2.5,
            x + i, h + x, h * 2, i + h, -x, abs(x)]
    got, want, _ = run([(x, a), (i, b), (h, c)], outs)
    expected = [2 * a, a - 1, 1 - a, a / 4, 10 / (a * a + 1), a ** 2, 2 ** a, b / 2, b / b,
                b * 2.5, a + b, c + a, c * 2, b + c, -a, abs(a)]
    for g, w, e in zip(got, want, expected):
        assert_same(g, w)
        assert_numpy(g, e, e.dtype)


def test_clip():
    rng = np.random.default_rng(6)
    x = K.placeholder((None, 4))
    n = K.placeholder((None, 4), dtype="int32")
    a, b = rand(rng, (5, 4), "float32"), rand(rng, (5, 4), "int32", -9, 9)
    outs = [K.clip(x, -0.5, 0.7), K.clip(x, 1.0, -1.0), K.clip(x, None, 0.2), K.clip(x, -0.1, None),
            K.clip(n, -3, 4), K.clip(n, None, None)]
    got, want, _ = run([(x, a), (n, b)], outs)
    expected = [np.clip(a, -0.5, 0.7), np.full_like(a, 1.0), np.minimum(a, 0.2), np.maximum(a, -0.1),
                np.clip(b, -3, 4), b]
    for g, w, e in zip(got, want, expected):
        assert_same(g, w)
        assert_numpy(g, e, e.dtype)


def test_switch_keras_semantics():
    """A lower-rank condition selects along the leading axes; a Python condition picks a branch;
    callables are called."""
    rng = np.random.default_rng(7)
    c = K.placeholder((None,), dtype="bool")
    c2 = K.placeholder((None, 3))
    x, y = K.placeholder((None, 3, 2)), K.placeholder((None, 3, 2))
    cv, c2v = np.array([True, False, True, False]), rand(rng, (4, 3), "float32")
    a, b = rand(rng, (4, 3, 2), "float32"), rand(rng, (4, 3, 2), "float32")
    outs = [K.switch(c, x, y), K.switch(c2 > 0, x, lambda: y * 2), K.switch(True, x, y),
            K.switch(K.greater(x, 0), x, 0.0)]
    got, want, _ = run([(c, cv), (c2, c2v), (x, a), (y, b)], outs)
    expected = [np.where(cv[:, None, None], a, b), np.where((c2v > 0)[:, :, None], a, b * 2), a,
                np.where(a > 0, a, 0)]
    for g, w, e in zip(got, want, expected):
        assert_same(g, w)
        assert_numpy(g, e, "float32")
    with pytest.raises(ValueError, match="Rank of `condition`"):
        K.switch(K.placeholder((2, 2, 2, 2), dtype="bool"), x, y)


CAST_TYPES = ("bool", "int8", "uint8", "int16", "int32", "int64", "uint32", "float16", "float32",
              "float64")


@pytest.mark.parametrize("src", CAST_TYPES)
def test_cast_all_pairs(src):
    """numpy astype semantics: truncation towards zero, wrap-around, x != 0 for bool, one
    rounding straight to float16."""
    vals = {"b": [0, 1, 1, 0], "i": [-100, -3, 0, 1, 7, 100], "u": [0, 1, 7, 100, 250],
            "f": [-100.75, -2.5, -0.5, 0.0, 0.3, 1.5, 2.5, 99.9, 1e-4]}
    a = np.array(vals[np.dtype(src).kind], dtype=src)
    x = K.placeholder((None,), dtype=src)
    targets = [t for t in CAST_TYPES if not (np.dtype(t).kind == "u" and np.dtype(src).kind in "if")]
    got, want, _ = run([(x, a)], [K.cast(x, t) for t in targets])
    for g, w, t in zip(got, want, targets):
        assert_same(g, w, f"{src}->{t}")
        np.testing.assert_array_equal(g, a.astype(t), err_msg=f"{src}->{t}")


def test_simplification_keeps_signed_zeros():
    a = np.array([-0.0, 0.0, 1.0], np.float32)
    x = K.placeholder((3,))
    got, want, f = run([(x, a)], [x + 0.0, x - 0.0, x * 1.0, x + (-0.0)])
    for g, e in zip(got, [a + 0.0, a - 0.0, a * 1.0, a + (-0.0)]):
        np.testing.assert_array_equal(np.signbit(g), np.signbit(e))
    plan = f.explain().split("kernels:")[1]
    assert "add" in plan  # x + 0.0 is computed; x - 0.0, x * 1.0 and x + (-0.0) are just x


def test_simplification_of_repeated_constants():
    """x * ones_like(y) is x; a sum of zeros_like(x) (Keras's initial RNN state) and its
    reshapes and tiles are a broadcast 0, with no kernel that sums; a sum of ones stays."""
    x = K.placeholder((None, 5, 3))
    a = np.random.default_rng(0).standard_normal((4, 5, 3)).astype(np.float32)
    zeros = K.sum(K.zeros_like(x), axis=(1, 2))
    init = K.tile(K.expand_dims(zeros), (1, 7))
    outs = [x * K.ones_like(x), init, K.sum(x * 2.0, axis=1), K.sum(K.ones_like(x), 1),
            K.reshape(K.zeros_like(x), (-1, 5))]
    got, want, f = run([(x, a)], outs)
    for g, w in zip(got, want):
        assert_same(g, w)
    np.testing.assert_array_equal(got[0], a)
    np.testing.assert_array_equal(got[1], np.zeros((4, 7), np.float32))
    np.testing.assert_allclose(got[2], (a * 2).sum(1), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(got[3], np.full((4, 3), 5, np.float32))
    np.testing.assert_array_equal(got[4], np.zeros((12, 5), np.float32))
    plan = f.explain().split("kernels:")[1].split("arena slots")[0]
    assert plan.count("mul") == 1 and plan.count("sum") == 2 and "tile" not in plan, plan  # x * 2


def test_nan_propagation():
    a = np.array([np.nan, 1.0, -1.0, np.nan], np.float32)
    b = np.array([0.0, np.nan, 2.0, np.nan], np.float32)
    x, y = K.placeholder((4,)), K.placeholder((4,))
    got, want, _ = run([(x, a), (y, b)], [K.maximum(x, y), K.minimum(x, y), K.relu(x),
                                          K.clip(x, 0, 1), K.sqrt(x)])
    expected = [np.maximum(a, b), np.minimum(a, b), np.array([np.nan, 1, 0, np.nan]),
                np.array([np.nan, 1, 0, np.nan]), np.array([np.nan, 1, 0, np.nan])]
    for g, w, e in zip(got, want, expected):
        assert_same(g, w)
        np.testing.assert_array_equal(g, e.astype(np.float32))


def test_fusion_five_op_chain_is_one_loop_nest():
    x = K.placeholder((None, 64))
    y = K.placeholder((64,))
    z = K.tanh(K.exp(x * 2.0 + y) - 1.0)  # mul, add, exp, sub, tanh
    got, want, f = run([(x, np.ones((3, 64), np.float32)), (y, np.zeros(64, np.float32))], [z])
    assert_same(got[0], want[0])
    src = open(f.source_path).read()
    assert src.count("for (int64_t i0") == 1, src
    assert "kernels:\n  k0 [elementwise] mul+add+exp+sub+tanh" in f.explain()
    assert "k1" not in f.explain().split("kernels:")[1].split("arena")[0]


def test_fusion_stores_shared_values_once():
    """A value used by two outputs is computed once inside one kernel and both are stored."""
    x = K.placeholder((None, 8))
    e = K.exp(x)
    got, want, f = run([(x, np.ones((2, 8), np.float32))], [e + 1, e * 2])
    for g, w in zip(got, want):
        assert_same(g, w)
    src = open(f.source_path).read()
    assert src.count("kc::exp(") == 1 and src.count("for (int64_t i0") == 1


def test_broadcast_operand_is_not_recomputed_per_element():
    """A producer smaller than the group's shape stays its own kernel (computed once)."""
    x = K.placeholder((None, 8))
    b = K.placeholder((8,))
    got, want, f = run([(x, np.ones((3, 8), np.float32)), (b, np.arange(8, dtype=np.float32))],
                       [x + K.exp(b)])
    assert_same(got[0], want[0])
    plan = f.explain().split("kernels:")[1]
    assert "k0 [elementwise] exp" in plan and "k1 [elementwise] add" in plan
