"""float32 tanh, sigmoid and exp (vmath.h) through compiled elementwise loops: within a few ulp
of float64 over a dense sweep of their domains, special values as numpy, at each -march level
(with and without FMA)."""
import numpy as np
import pytest

import kcomp.backend as K
from util import assert_same, run


def _ulps(got, want):
    want32 = want.astype(np.float32)
    spacing = np.spacing(np.abs(want32)).astype(np.float64)
    err = np.abs(got.astype(np.float64) - want)
    tiny = np.abs(want) < 4.5e-38  # below e^-86 results may flush to zero
    return np.where(tiny, 0.0, err / spacing)


@pytest.mark.parametrize("march", ["native", "x86-64"])
def test_tanh_sigmoid_exp_accuracy(march, monkeypatch):
    monkeypatch.setenv("KCOMP_MARCH", march)
    sweep = np.concatenate([np.linspace(-100, 100, 200001), np.linspace(-1, 1, 20001),
                            np.geomspace(1e-30, 1e3, 5001), -np.geomspace(1e-30, 1e3, 5001)])
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 88.7, -87.0, -86.5, -104.5, 9.0,
                        0.625, -0.625, 1e-45])
    a = np.concatenate([sweep, special]).astype(np.float32)
    x = K.placeholder((a.size,))
    got, want, _ = run([(x, a)], [K.tanh(x), K.sigmoid(x), K.exp(x)])
    d = a.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        refs = [np.tanh(d), 1 / (1 + np.exp(-d)), np.exp(d)]
    for g, w, r, name, limit in zip(got, want, refs, ("tanh", "sigmoid", "exp"), (2, 3, 1)):
        assert_same(g, w, name)
        with np.errstate(over="ignore"):
            r32 = r.astype(np.float32)
        finite = np.isfinite(r32)
        u = _ulps(g[finite], r[finite])
        assert u.max() <= limit, f"{name}: {u.max()} ulp at {a[finite][u.argmax()]}"
        np.testing.assert_array_equal(g[~finite], r32[~finite], name)
    assert np.isnan(got[0][-9]) and np.isnan(got[1][-9])
    neg0 = sweep.size + 1
    assert got[0][neg0] == 0 and np.signbit(got[0][neg0])  # tanh(-0) = -0


@pytest.mark.parametrize("march", ["native", "x86-64"])
def test_expm1_accuracy_through_elu(march, monkeypatch):
    """elu's expm1 (a Taylor polynomial below 0.5 in magnitude, exp(x) - 1 beyond): within 2
    ulp of float64 over a dense sweep of the negative axis, -0 kept, -inf to -1."""
    monkeypatch.setenv("KCOMP_MARCH", march)
    a = np.concatenate([-np.geomspace(1e-30, 100, 50001), np.linspace(-1, 0, 100001),
                        [-0.0, -np.inf, np.nan, -0.5, -0.49999997]]).astype(np.float32)
    x = K.placeholder((a.size,))
    got, want, _ = run([(x, a)], [K.elu(x)])
    assert_same(got[0], want[0], "elu")
    ref = np.expm1(a.astype(np.float64))
    finite = np.isfinite(ref)
    u = _ulps(got[0][finite], ref[finite])
    assert u.max() <= 2, f"expm1: {u.max()} ulp at {a[finite][u.argmax()]}"
    assert got[0][-5] == 0 and np.signbit(got[0][-5]) and got[0][-4] == -1
    assert np.isnan(got[0][-3])


@pytest.mark.parametrize("march", ["native", "x86-64"])
def test_softplus_accuracy(march, monkeypatch):
    """softplus = max(x, 0) + ln(1 + e^-|x|), the log by vm::log1p_01 (no division but the
    log's): within 3 ulp of float64 over a dense sweep; results under 4.5e-38 may flush to 0."""
    monkeypatch.setenv("KCOMP_MARCH", march)
    a = np.concatenate([np.linspace(-120, 120, 240001), np.linspace(-2, 2, 40001),
                        np.geomspace(1e-30, 1e3, 5001), -np.geomspace(1e-30, 1e3, 5001),
                        [0.0, -0.0, np.inf, -np.inf, np.nan, 86.5, -86.5, 1e-45]])
    a = a.astype(np.float32)
    x = K.placeholder((a.size,))
    got, want, _ = run([(x, a)], [K.softplus(x)])
    assert_same(got[0], want[0], "softplus")
    d = a.astype(np.float64)
    with np.errstate(over="ignore"):
        ref = np.maximum(d, 0) + np.log1p(np.exp(-np.abs(d)))
    finite = np.isfinite(ref)
    u = _ulps(got[0][finite], ref[finite])
    assert u.max() <= 3, f"softplus: {u.max()} ulp at {a[finite][u.argmax()]}"
    assert got[0][-6] == np.inf and got[0][-5] == 0 and np.isnan(got[0][-4])


@pytest.mark.parametrize("march", ["native", "x86-64"])
def test_pow_accuracy_and_special_cases(march, monkeypatch):
    """float32 pow (vm::pow: 2^(y log2|x|) in double, then C99's special cases as selects):
    within 1 ulp of float64 over random bases and exponents, subnormal and overflowing results
    included, and exactly numpy's (C's powf's) value on a grid of special bases and exponents,
    the signs of zeros and infinities included."""
    monkeypatch.setenv("KCOMP_MARCH", march)
    rng = np.random.default_rng(3)
    n = 1 << 18
    xs = np.concatenate([rng.uniform(0, 10, n), np.geomspace(1e-45, 3e38, n),
                         -rng.integers(1, 20, n).astype(np.float64), rng.uniform(0.5, 2, n)])
    ys = np.concatenate([rng.uniform(-40, 40, n), rng.uniform(-3, 3, n),
                         rng.integers(-30, 30, n).astype(np.float64), rng.uniform(-120, 120, n)])
    special = np.array([0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, np.inf, -np.inf, np.nan,
                        1e-45, -1e-45, 3e38, -3e38, 3.0, -3.0])
    sx, sy = np.meshgrid(special, np.concatenate([special, [2.5, -2.5, 1e30, -1e30, 16777216.0]]))
    a = np.concatenate([xs, sx.ravel()]).astype(np.float32)
    b = np.concatenate([ys, sy.ravel()]).astype(np.float32)
    x, y = K.placeholder((a.size,)), K.placeholder((a.size,))
    got = K.function([x, y], [K.pow(x, y)])([a, b])[0]
    with np.errstate(all="ignore"):
        ref = np.power(a.astype(np.float64), b.astype(np.float64))
        ref32 = ref.astype(np.float32)
        want = np.power(a, b)
    # within 1 ulp where the result is finite and not 0 or 1 (numpy's own float32 power is not
    # always correctly rounded: 3 ** 0.5); exactly numpy's value elsewhere, signs of zeros and
    # infinities included
    ok = np.isfinite(ref32) & (ref != 0) & (ref != 1)
    u = _ulps(got[ok], ref[ok])
    assert u.max() <= 1, f"pow: {u.max()} ulp at {a[ok][u.argmax()]} ** {b[ok][u.argmax()]}"
    np.testing.assert_array_equal(got[~ok], want[~ok])
    num = ~ok & ~np.isnan(want)
    np.testing.assert_array_equal(np.signbit(got[num]), np.signbit(want[num]))


@pytest.mark.parametrize("march", ["native", "x86-64"])
def test_sin_cos_accuracy(march, monkeypatch):
    """float32 sin and cos (vm::sincos: reduction by pi/2 in double, Cody-Waite below 2^24 and
    Payne-Hanek by a table above, then float polynomials): within 2 ulp of float64 over the
    whole float range, huge arguments included; NaN for infinities, sin(-0) = -0."""
    monkeypatch.setenv("KCOMP_MARCH", march)
    rng = np.random.default_rng(4)
    ramp = np.geomspace(1e-30, 3.4e38, 1 << 18)
    a = np.concatenate([np.linspace(-100, 100, 400001), rng.uniform(-1e5, 1e5, 1 << 18),
                        ramp, -ramp, rng.uniform(-2 ** 25, 2 ** 25, 1 << 18),
                        rng.integers(1, 2 ** 24, 1 << 16) * 2.0 ** rng.integers(0, 104, 1 << 16),
                        [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 16777216.0]])
    a = a.astype(np.float32)
    x = K.placeholder((a.size,))
    got = K.function([x], [K.sin(x), K.cos(x)])([a])
    d = a.astype(np.float64)
    with np.errstate(invalid="ignore"):
        refs = np.sin(d), np.cos(d)
    for name, g, ref in (("sin", got[0], refs[0]), ("cos", got[1], refs[1])):
        fin = np.isfinite(d)
        u = _ulps(g[fin], ref[fin])
        assert u.max() <= 2, f"{name}: {u.max()} ulp at {a[fin][u.argmax()]}"
        assert np.isnan(g[~fin]).all(), name
    s, c = got[0][-8:], got[1][-8:]
    assert s[0] == 0 and not np.signbit(s[0]) and s[1] == 0 and np.signbit(s[1])
    assert c[0] == 1 and c[1] == 1 and s[5] == a[-3] and s[6] == a[-2]


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_sin_cos_of_huge_values_computed_in_the_loop(dtype):
    """Elementwise loops run sin and cos without the huge-argument reduction and rerun a range
    exactly where an argument is 2^24 or more (elementwise.j2): here arguments that a product
    computes in the loop, a few of them huge, in a few rows of an odd shape."""
    rng = np.random.default_rng(5)
    a = rng.uniform(-3, 3, (37, 1001)).astype(dtype)
    b = rng.uniform(-3, 3, (37, 1001)).astype(dtype)
    big = 6e4 if dtype == "float16" else 3e30
    a[5, 7], a[30, 1000], b[30, 1000] = big, -big, big  # sin(+-inf) for float16: NaN
    x, y = K.placeholder((37, 1001), dtype=dtype), K.placeholder((37, 1001), dtype=dtype)
    got, want, _ = run([(x, a), (y, b)], [K.sin(x * y) + K.cos(x), K.cos(y * 0.5)])
    for g, w in zip(got, want):
        assert_same(g, w)
    prod = (a * b).astype(np.float64)
    with np.errstate(invalid="ignore"):
        ref = np.sin(prod) + np.cos(a.astype(np.float64))
    tol = 2e-3 if dtype == "float16" else 1e-6
    np.testing.assert_allclose(got[0], ref, rtol=tol, atol=tol, equal_nan=True)


def test_sin_update_in_place_runs_once():
    """An update written over the variable it reads (lower._claim_update_targets) must not be
    rerun for its huge arguments: the second run would read the first one's results."""
    v0 = np.concatenate([np.full(3000, 1e30), np.linspace(-5, 5, 3000)]).astype(np.float32)
    v = K.variable(v0)
    step = K.function([], [], updates=[(v, K.sin(v) + 1.0)])
    step([])
    want = (np.sin(v0.astype(np.float64)) + 1).astype(np.float32)
    np.testing.assert_allclose(K.get_value(v), want, rtol=1e-6, atol=1e-6)
    assert "_nest<1>" not in open(step.source_path).read()
