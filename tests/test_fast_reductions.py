"""The vectorised float32 reduction paths (reduce.h "float32 fast paths"): rows, columns and
middle axes at sizes around the lane width (64), the float32 block (16 lanes deep) and the
column block (16 rows), with NaN, infinities and all -inf rows, at every -march level the
generated code may be built for (KCOMP_MARCH: SSE2 without FMA, AVX2 with FMA, native)."""
import numpy as np
import pytest

import kcomp.backend as K
from util import assert_numpy, assert_same, run

# (shape, axis): rows of 1..8257 elements (short rows in fewer lanes below 256, tails, one and
# several blocks), columns below and above the column block with a ragged tile, columns in 2
# or 4 bands of rows (one with two column tiles), a middle axis with and without bands, narrow
# columns four rows a step with 0-3 rows left over, whole rows of fewer than 64 columns read
# as one run (chunks of 16 / gcd(I, 16) rows, and rows left over), and many short rows of 16 to
# 128 elements, 16 rows at a time with rows left over (kc::red::rows16_f32; 144 does not fit)
CASES = [((37, 64), -1), ((16, 16), -1), ((33, 128), -1), ((20, 48), -1), ((17, 144), -1),
         ((3, 1), -1), ((4, 3), -1), ((3, 31), -1), ((3, 32), -1), ((3, 33), -1), ((3, 63), -1),
         ((3, 64), -1), ((3, 65), -1), ((3, 200), -1), ((2, 255), -1), ((2, 256), -1),
         ((2, 1023), -1), ((7, 3, 1), 1), ((3, 1003, 5), 1), ((3, 1000, 33), 1),
         ((2, 999, 40), 1), ((700, 63), 0),
         ((2, 1025), -1), ((4, 3000), -1), ((2, 8257), -1), ((5, 300), 0), ((40, 300), 0),
         ((1, 7), 0), ((1100, 70), 0), ((600, 4100), 0), ((3, 37, 70), 1), ((2, 17, 5), 1),
         ((3, 520, 70), 1)]

OPS = {"sum": (K.sum, np.sum), "mean": (K.mean, np.mean), "max": (K.max, np.max),
       "min": (K.min, np.min), "var": (K.var, np.var), "std": (K.std, np.std),
       "logsumexp": (K.logsumexp, None)}


def _lse(a, axis):
    m = a.max(axis=axis, keepdims=True)
    return np.squeeze(np.log(np.exp(a - m).sum(axis=axis, keepdims=True)) + m, axis)


def _softmax(a, axis):
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.mark.parametrize("march", ["native", "x86-64-v3", "x86-64"])
def test_float32_reductions_every_path(march, monkeypatch):
    import platform
    if march != "native" and platform.machine() != "x86_64":
        pytest.skip("x86-64 -march levels")
    monkeypatch.setenv("KCOMP_MARCH", march)
    rng = np.random.default_rng(40)
    pairs, outs, checks = [], [], []
    for shape, axis in CASES:
        x = K.placeholder(shape)
        # an offset mean: variance must not cancel
        a = (rng.standard_normal(shape) * 2 + (100 if shape[-1] > 64 else 0)).astype(np.float32)
        pairs.append((x, a))
        d = a.astype(np.float64)
        for name, (fn, ref) in OPS.items():
            outs.append(fn(x, axis=axis))
            want = _lse(d, axis) if name == "logsumexp" else ref(d, axis=axis)
            # a float32 sum's error scales with the sum of magnitudes, not with the result
            # (which cancels toward 0 where the data has no offset)
            scale = ref(np.abs(d), axis=axis) if name in ("sum", "mean") else 0
            checks.append((f"{name} {shape} axis={axis}", want, scale))
        outs.append(K.softmax(x, axis=axis))
        checks.append((f"softmax {shape} axis={axis}", _softmax(d, axis), 0))
    got, want, _ = run(pairs, outs)
    for g, w, (what, expected, scale) in zip(got, want, checks):
        assert_same(g, w, what)
        tol = 2e-6 * np.abs(expected) + np.maximum(1e-6, 3e-8 * scale)
        err = np.abs(g.astype(np.float64) - expected)
        assert g.dtype == np.float32 and np.all(err <= tol), f"{what}: {np.max(err - tol)} over"


@pytest.mark.parametrize("march", ["native", "x86-64"])
def test_float32_reductions_special_values(march, monkeypatch):
    """NaN, +inf and -inf in rows and columns, in the first and in a later block: results as the
    reference formulas define them (NaN wins max/min; logsumexp all -inf is -inf, +inf is +inf;
    softmax of -inf entries is exactly 0)."""
    monkeypatch.setenv("KCOMP_MARCH", march)
    rng = np.random.default_rng(41)
    n = 9000  # float32 blocks of 1024; logsumexp's blocks of 4096: two and a ragged one
    a = rng.standard_normal((7, n)).astype(np.float32)
    a[0, 5000] = np.nan              # NaN in a later block
    a[1, 3] = np.inf                 # +inf in the first block
    a[2, :] = -np.inf                # all -inf
    a[3, :4500] = -np.inf            # first blocks all -inf, then finite values
    a[4, ::7] = -np.inf              # masked entries: softmax gives exact zeros
    a[5, 8500] = 80.0                # the max grows in the last block: rescaled sums
    a[6, 10], a[6, 6000] = np.inf, -np.inf  # inf - inf: a NaN sum, yet no NaN for max/min
    x = K.placeholder((None, n))
    xt = K.placeholder((n, None))    # the same data as columns
    outs = [K.max(x, 1), K.min(x, 1), K.sum(x, 1), K.logsumexp(x, 1), K.softmax(x, -1),
            K.var(x, 1), K.max(xt, 0), K.min(xt, 0), K.logsumexp(xt, 0), K.var(xt, 0),
            K.mean(xt, 0)]
    with np.errstate(invalid="ignore", over="ignore"):
        got, want, _ = run([(x, a), (xt, np.ascontiguousarray(a.T))], outs)
        d = a.astype(np.float64)
        for g, w in zip(got, want):
            assert_same(g, w)
        np.testing.assert_array_equal(got[0], np.max(a, 1))
        np.testing.assert_array_equal(got[1], np.min(a, 1))
        np.testing.assert_array_equal(got[6], np.max(a, 1))
        np.testing.assert_array_equal(got[7], np.min(a, 1))
        for lse in (got[3], got[8]):
            assert np.isnan(lse[0]) and lse[1] == np.inf and lse[2] == -np.inf
            np.testing.assert_allclose(lse[3:6], _lse(d[3:6], 1), rtol=2e-6)
        sm = got[4]
        assert np.all(sm[4, ::7] == 0)
        np.testing.assert_allclose(sm[3:6], _softmax(d[3:6], -1), rtol=2e-6, atol=1e-7)
        assert np.isnan(sm[0]).all() and np.isnan(sm[2]).all()
        for var in (got[5], got[9]):
            np.testing.assert_allclose(var[3:6], np.var(d[3:6], 1), rtol=2e-6)


@pytest.mark.parametrize("march", ["native", "x86-64"])
def test_float32_short_rows_and_narrow_columns_special_values(march, monkeypatch):
    """NaN and infinities in short rows (lanes of 32 below 256 elements, scalar below 32;
    softmax and logsumexp exponentials before their sum; softmax's rows held in registers and
    its masked column vectors) and in narrow column tiles (four rows a
    step with NaN flags beside the values): a NaN in each of the four rows of a step and in the
    rows left over."""
    monkeypatch.setenv("KCOMP_MARCH", march)
    rng = np.random.default_rng(43)
    pairs, outs, checks = [], [], []
    for n in (5, 40, 100):
        a = rng.standard_normal((7, n)).astype(np.float32)
        for r in range(5):
            a[r, (n - 1) * r // 4] = np.nan      # first ... last element
        a[5, n // 2], a[5, n - 1] = np.inf, -np.inf  # no NaN, but inf - inf in a sum
        a[6, n // 3] = -np.inf
        x = K.placeholder((7, n))
        xt = K.placeholder((n, 7))
        pairs += [(x, a), (xt, np.ascontiguousarray(a.T))]
        for fn, ref in ((K.max, np.max), (K.min, np.min), (K.sum, np.sum)):
            outs += [fn(x, axis=1), fn(xt, axis=0)]
            checks += [ref(a.astype(np.float64), 1)] * 2
        outs += [K.logsumexp(x, axis=1), K.softmax(x, axis=-1), K.softmax(xt, axis=0)]
        checks += [None, None, "T"]
    with np.errstate(invalid="ignore", over="ignore"):
        got, want, _ = run(pairs, outs)
    for g, w, e in zip(got, want, checks):
        assert_same(g, w)
        if isinstance(e, np.ndarray):
            assert_numpy(g, e, np.float32, rtol=2e-6, atol=1e-6)
        else:  # softmax and logsumexp of the rows ("T": softmax of the columns)
            g = g.T if e == "T" else g
            assert np.isnan(g[:5]).all() and np.isfinite(g[6]).all()


@pytest.mark.parametrize("march", ["native", "x86-64"])
def test_float32_many_short_rows_special_values(march, monkeypatch):
    """16 rows at a time (kc::red::rows16_f32): a NaN in each lane position of a vector and in
    each row of a group wins max and min and spoils the sum, infinities, an all -inf row."""
    monkeypatch.setenv("KCOMP_MARCH", march)
    rng = np.random.default_rng(44)
    for n in (16, 64, 128):
        a = rng.standard_normal((35, n)).astype(np.float32)
        for r in range(0, 35, 3):
            a[r, (r * 7) % n] = np.nan
        a[1, n - 1], a[2, 0] = np.inf, -np.inf
        a[4] = -np.inf
        x = K.placeholder((None, n))
        got, want, _ = run([(x, a)], [K.max(x, 1), K.min(x, 1), K.sum(x, 1), K.mean(x, 1)])
        d = a.astype(np.float64)
        with np.errstate(invalid="ignore"):
            refs = (np.max(d, 1), np.min(d, 1), np.sum(d, 1), np.mean(d, 1))
        for g, w, e in zip(got, want, refs):
            assert_same(g, w)
            assert_numpy(g, e, np.float32, rtol=2e-6, atol=1e-5)


@pytest.mark.parametrize("march", ["native", "x86-64"])
def test_float32_wide_column_tiles_special_values(march, monkeypatch):
    """Column tiles wider than 256 (four rows a step in vectors, the columns past whole vectors
    one at a time, rows left over from the steps) and bands of rows: a NaN in each of the four
    rows of a step, in a tail column and in a left-over row wins max and min and spoils the sum;
    infinities; a column all -inf."""
    monkeypatch.setenv("KCOMP_MARCH", march)
    rng = np.random.default_rng(45)
    for rows, cols in ((39, 301), (1031, 300)):
        a = rng.standard_normal((rows, cols)).astype(np.float32)
        for k, c in enumerate((5, 40, 77, 299)):
            a[8 + k, c] = np.nan
        a[rows - 1, 150] = np.nan
        a[3, 10], a[6, 290] = np.inf, -np.inf
        a[:, 120] = -np.inf
        x = K.placeholder((None, cols))
        got, want, _ = run([(x, a)], [K.max(x, 0), K.min(x, 0), K.sum(x, 0)])
        d = a.astype(np.float64)
        with np.errstate(invalid="ignore"):
            refs = (np.max(d, 0), np.min(d, 0), np.sum(d, 0))
        for g, w, e in zip(got, want, refs):
            assert_same(g, w)
            assert_numpy(g, e, np.float32, rtol=2e-6, atol=1e-4)


def test_float32_softmax_and_logsumexp_same_bits_at_avx2_and_native(monkeypatch):
    """Short rows (kc::red::exp_row_f32) and column tiles (softmax_cols_f32) compute the same
    at every ISA with FMA: an ahead-of-time build for x86-64-v3 reproduces the JIT's results
    bit for bit."""
    import platform
    if platform.machine() != "x86_64":
        pytest.skip("x86-64 -march levels")
    rng = np.random.default_rng(46)
    arrays = [rng.standard_normal(s).astype(np.float32) * 4 for s in ((50, 37), (9, 128), (7, 16),
                                                                       (40, 3), (37, 50))]
    got = {}
    for march in ("native", "x86-64-v3"):
        monkeypatch.setenv("KCOMP_MARCH", march)
        outs = []
        for a in arrays:
            x = K.placeholder(a.shape)
            f = K.function([x], [K.softmax(x, axis=-1), K.logsumexp(x, axis=-1),
                                 K.softmax(x, axis=0)])
            outs += f([a])
        got[march] = outs
    for g, w in zip(got["x86-64-v3"], got["native"]):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("march", ["native", "x86-64"])
def test_float32_argmax_argmin_rows(march, monkeypatch):
    """Rows in vector lanes (one vector from 16 elements, four from 128; kc::red::argext_f32):
    lengths around both, ties everywhere (the first index wins across lanes and vectors), the
    extreme in the first vector and in the tail, -0.0 against 0.0, infinities, and a NaN (the
    first one wins) in a lane, in the tail or twice."""
    monkeypatch.setenv("KCOMP_MARCH", march)
    rng = np.random.default_rng(42)
    pairs, outs, checks = [], [], []
    for n in (1, 15, 16, 17, 37, 127, 128, 129, 300, 1000):
        a = rng.integers(0, 4, (9, n)).astype(np.float32)   # ties
        a[1] = rng.standard_normal(n)
        a[2, 0], a[3, -1] = 9, -9                           # first vector, tail
        a[4] = 0.0
        a[4, n // 2:] = -0.0                                # -0.0 == 0.0: index 0
        a[5, n // 3], a[5, -1] = np.inf, -np.inf
        a[6, n // 2] = np.nan
        a[7, -1] = np.nan
        a[8, n // 3], a[8, -1] = np.nan, np.nan
        x = K.placeholder((None, n))
        pairs.append((x, a))
        outs += [K.argmax(x, 1), K.argmin(x, 1)]
        checks += [(f"argmax n={n}", np.argmax(a, 1)), (f"argmin n={n}", np.argmin(a, 1))]
    got, want, _ = run(pairs, outs)
    for g, w, (what, e) in zip(got, want, checks):
        assert_same(g, w, what)
        np.testing.assert_array_equal(g, e, err_msg=what)


def test_float32_argmax_argmin_of_few_long_rows():
    """Fewer than 8 rows of 16384 elements or more are split into blocks (at most 64): each
    block's first extreme, merged in order. Ties across blocks keep the first index, a NaN in a
    later block beats every number, the first NaN of several blocks wins."""
    rng = np.random.default_rng(43)
    n = 16384 * 5 + 7  # five blocks
    a = rng.integers(0, 1000, (7, n)).astype(np.float32)
    a[1] = 1.0                                   # all tied: index 0
    a[2, [100, 16384 * 2 + 3, n - 1]] = 5000.0   # tied maxima in blocks 0, 2, 4
    a[2, [200, 16384 * 3]] = -5000.0             # tied minima in blocks 0, 3
    a[3, 16384 * 4 + 9] = np.nan                 # a NaN in the last block
    a[4, [16384 + 5, 16384 * 3 + 1]] = np.nan    # NaNs in blocks 1 and 3
    a[5] = -np.inf
    a[5, n - 1] = np.inf
    a[6] = np.linspace(-1, 1, n)                 # extremes at both ends
    x = K.placeholder((None, n))
    got, want, _ = run([(x, a)], [K.argmax(x, 1), K.argmin(x, 1)])
    for g, w, e, what in zip(got, want, (np.argmax(a, 1), np.argmin(a, 1)), ("max", "min")):
        assert_same(g, w, what)
        np.testing.assert_array_equal(g, e, err_msg=what)
    # one row of 4M
    b = rng.standard_normal(1 << 22).astype(np.float32)
    y = K.placeholder((1 << 22,))
    f = K.function([y], [K.argmax(y, 0), K.argmin(y, 0)])
    assert [int(v) for v in f([b])] == [np.argmax(b), np.argmin(b)]


def test_float32_sums_split_across_threads_are_deterministic():
    """A few long rows are split into blocks, many short rows reduced 16 at a time; the result
    must not depend on the thread count (blocks merge in a fixed order; a row left over from a
    task's groups of 16 takes the same additions)."""
    import os
    import subprocess
    import sys
    script = (
        "import numpy as np, kcomp.backend as K\n"
        "a = np.random.default_rng(3).standard_normal((2, 300001)).astype(np.float32)\n"
        "x = K.placeholder((None, 300001))\n"
        "f = K.function([x], [K.sum(x, 1), K.var(x, 1), K.max(x, 1)])\n"
        "print(*[v.tobytes().hex() for v in f([a])])\n"
        # many short rows: groups of 16 and the rows a task has left over add alike
        "b = np.random.default_rng(4).standard_normal((1001, 64)).astype(np.float32) * 100\n"
        "y = K.placeholder((None, 64))\n"
        "g = K.function([y], [K.sum(y, 1), K.mean(y, 1)])\n"
        "print(*[v.tobytes().hex() for v in g([b])])\n")
    outs = []
    for threads in ("1", "2", "3"):
        env = dict(os.environ, KCOMP_NUM_THREADS=threads)
        p = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                           text=True)
        assert p.returncode == 0, p.stderr
        outs.append(p.stdout)
    assert outs[0] == outs[1] == outs[2]
