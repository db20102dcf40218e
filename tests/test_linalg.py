"""dot and batch_dot (every axes form) against the reference and numpy, for every dtype, with
the tuned GEMM's paths: tiny, skinny, tails, large multi-threaded, and each instruction set."""
import os
import subprocess
import sys

import numpy as np
import pytest

import kcomp.backend as K
from util import assert_same, rand, run

DOT_CASES = [((2, 3), (3, 4)), ((1, 1), (1, 1)), ((None, 7), (7, 1)), ((1, 13), (13, 9)),
             ((3, 5, 4), (4, 6)), ((2, 3, 4), (5, 4, 6)), ((4,), (4, 3)), ((4,), (2, 4, 3)),
             ((3, 4), (4,)), ((5,), (5,)), ((None, 2, 3), (3,)), ((37, 129), (129, 65))]


def _wide(a):
    return a.astype(np.float64 if a.dtype.kind == "f" else np.int64)


def assert_product(got, want, exact, bound, dtype, what):
    """A matrix product: integers exactly; floats within the classic error bound of a sum of
    k products, |error| <= k * eps * sum|a||b| (bound = that sum, computed by the caller)."""
    assert got.dtype == np.dtype(dtype) and got.shape == exact.shape, what
    if dtype[0] == "i":
        np.testing.assert_array_equal(got, exact.astype(dtype), err_msg=what)
        return
    eps = np.finfo(dtype).eps
    for ref in (want.astype(np.float64), exact):
        err = np.abs(got.astype(np.float64) - ref)
        assert np.all(err <= 2 * eps * bound + np.finfo(dtype).tiny), \
            f"{what}: error {err.max()} exceeds {2 * eps} * bound"


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "int32", "int64", "int8"])
def test_dot(dtype):
    rng = np.random.default_rng(30)
    pairs, outs, expect = [], [], []
    for sx, sy in DOT_CASES:
        x, y = K.placeholder(sx, dtype=dtype), K.placeholder(sy, dtype=dtype)
        a = rand(rng, tuple(3 if d is None else d for d in sx), dtype, -3, 3)
        b = rand(rng, sy, dtype, -3, 3)
        pairs += [(x, a), (y, b)]
        outs.append(K.dot(x, y))
        expect.append((f"dot {sx} {sy}", a, b))
    got, want, _ = run(pairs, outs)
    for g, w, (what, a, b) in zip(got, want, expect):
        k = a.shape[-1]
        bound = k * np.dot(np.abs(_wide(a)), np.abs(_wide(b))).astype(np.float64)
        assert_product(g, w, np.dot(_wide(a), _wide(b)), bound, dtype, what)


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32"])
def test_dot_reads_transposed_operands(dtype):
    """A transpose read only by matrix products is folded into them (the GEMM reads its source
    with swapped strides, no copy kernel): of either operand or both, under a fused epilogue
    after a 3-D left operand; a transpose that is also an output is stored and read as is."""
    rng = np.random.default_rng(31)
    x, x3 = K.placeholder((None, 70), dtype=dtype), K.placeholder((None, 4, 70), dtype=dtype)
    w, u = K.placeholder((45, 70), dtype=dtype), K.placeholder((70, 20), dtype=dtype)
    z = K.placeholder((70, 33), dtype=dtype)
    a, a3 = rand(rng, (9, 70), dtype), rand(rng, (3, 4, 70), dtype)
    c, e, h = rand(rng, (45, 70), dtype), rand(rng, (70, 20), dtype), rand(rng, (70, 33), dtype)
    bias = rand(rng, (45,), dtype)
    wt = K.transpose(w)
    A, A3, C, E, H = (np.abs(_wide(v)) for v in (a, a3, c, e, h))
    cases = [(K.dot(x, wt), _wide(a) @ _wide(c).T, A @ C.T),
             (K.dot(x3, wt) + K.constant(bias, dtype=dtype),
              _wide(a3) @ _wide(c).T + bias, A3 @ C.T + np.abs(bias)),
             (K.dot(K.transpose(u), z), _wide(e).T @ _wide(h), E.T @ H),
             (K.dot(K.transpose(u), K.transpose(w)), _wide(e).T @ _wide(c).T, E.T @ C.T)]
    inputs = [(x, a), (x3, a3), (w, c), (u, e), (z, h)]
    got, want, f = run(inputs, [t for t, _, _ in cases])
    for (t, exact, bound), g, wnt in zip(cases, got, want):
        assert_product(g, wnt, exact, 70 * bound, dtype, t.name)
    plan = f.explain().split("kernels:")[1].split("arena")[0]
    # (integer GEMMs take no fused epilogue)
    assert "[transpose]" not in plan and (dtype == "int32" or "elementwise" not in plan), plan
    got, want, f = run(inputs, [K.dot(x, wt), wt])
    assert_same(got[0], want[0])
    assert_same(got[1], want[1])
    np.testing.assert_array_equal(got[1], c.T)


BATCH_DOT = [((None, 4), (None, 4), None), ((None, 4), (None, 4), 1), ((None, 3, 4), (None, 4, 5), None),
             ((None, 3, 4), (None, 5, 4), (2, 2)), ((None, 4, 3), (None, 4, 5), (1, 1)),
             ((None, 4, 3), (None, 5, 4), (1, 2)), ((None, 4), (None, 3, 4), (1, 2)),
             ((None, 3, 4), (None, 4), (2, 1)), ((None, 2, 4, 3), (None, 4, 5), (2, 1)),
             ((None, 3, 4), (None, 6, 4, 2), (2, 2)), ((None, 20), (None, 30, 20), (1, 2)),
             ((None, 33, 17), (None, 17, 65), None), ((None, 9, 30), (None, 30, 20), None),
             ((None, 7, 40), (None, 40, 5), None), ((None, 6, 11), (None, 11, 13), None)]


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "int32"])
def test_batch_dot(dtype):
    rng = np.random.default_rng(31)
    pairs, outs, expect = [], [], []
    for sx, sy, axes in BATCH_DOT:
        x, y = K.placeholder(sx, dtype=dtype), K.placeholder(sy, dtype=dtype)
        a = rand(rng, (6,) + sx[1:], dtype, -3, 3)
        b = rand(rng, (6,) + sy[1:], dtype, -3, 3)
        pairs += [(x, a), (y, b)]
        outs.append(K.batch_dot(x, y, axes))
        expect.append((f"batch_dot {sx} {sy} {axes}", a, b, axes))
    got, want, _ = run(pairs, outs)
    for g, w, (what, a, b, axes) in zip(got, want, expect):
        k = a.shape[axes if isinstance(axes, int) else axes[0] if axes else a.ndim - 1]
        bound = k * _keras_batch_dot(np.abs(_wide(a)), np.abs(_wide(b)), axes).astype(np.float64)
        assert_product(g, w, _keras_batch_dot(_wide(a), _wide(b), axes), bound, dtype, what)


def _keras_batch_dot(x, y, axes):
    """Keras 2.3.1's documented result, by loops: per batch item, np.tensordot over the axes."""
    if axes is None:
        axes = (x.ndim - 1, y.ndim - 1 if y.ndim == 2 else y.ndim - 2)
    elif isinstance(axes, int):
        axes = (axes, axes)
    out = np.stack([np.tensordot(xi, yi, (axes[0] - 1, axes[1] - 1)) for xi, yi in zip(x, y)])
    return out.reshape(len(x), 1) if out.ndim == 1 else out


def test_batch_dot_keras_doc_example():
    x = K.ones((32, 20, 1))
    y = K.ones((32, 30, 20))
    assert K.int_shape(K.batch_dot(x, y, axes=(1, 2))) == (32, 1, 30)
    a = K.variable([[1, 2], [3, 4]])
    b = K.variable([[5, 6], [7, 8]])
    np.testing.assert_array_equal(K.eval(K.batch_dot(a, b, axes=1)), [[17], [53]])


def test_large_gemm_multithreaded_and_accurate():
    rng = np.random.default_rng(32)
    x, y = K.placeholder((None, 513)), K.placeholder((513, 301))
    z = K.placeholder((None, 64, 96), dtype="float64")
    a, b = rand(rng, (257, 513), "float32"), rand(rng, (513, 301), "float32")
    c = rand(rng, (9, 64, 96), "float64")
    got, want, _ = run([(x, a), (y, b), (z, c)], [K.dot(x, y), K.batch_dot(z, z, (2, 2)),
                                                  K.dot(K.transpose(y), K.transpose(x))])
    bound = 513 * (np.abs(_wide(a)) @ np.abs(_wide(b)))
    assert_product(got[0], want[0], _wide(a) @ _wide(b), bound, "float32", "dot")
    assert_product(got[1], want[1], np.einsum("bik,bjk->bij", c, c),
                   96 * np.einsum("bik,bjk->bij", np.abs(c), np.abs(c)), "float64", "batch_dot")
    assert_product(got[2], want[2], (_wide(a) @ _wide(b)).T, bound.T, "float32", "dot of transposes")


def test_empty_products():
    x, y, z = K.placeholder((None, 3)), K.placeholder((3, 4)), K.placeholder((2, None))
    w = K.placeholder((None, 3), dtype="int32")
    f = K.function([x, y, z, w], [K.dot(x, y), K.dot(z, K.transpose(z)),
                                  K.dot(w, K.cast(y, "int32"))])
    a, b, c, d = np.ones((0, 3)), np.ones((3, 4)), np.ones((2, 0)), np.ones((0, 3), np.int32)
    r1, r2, r3 = f([a, b, c, d])
    assert r1.shape == (0, 4) and r3.shape == (0, 4)
    np.testing.assert_array_equal(r2, np.zeros((2, 2)))  # an empty sum is 0


def test_rank_limit():
    with pytest.raises(ValueError, match="rank 9 exceeds kcomp's limit of 8"):
        K.placeholder((1,) * 9)
    with pytest.raises(ValueError, match=r"reshape: rank 9 exceeds"):
        K.reshape(K.placeholder((2,)), (1,) * 8 + (2,))


def test_dot_errors_name_op_and_shapes():
    with pytest.raises(ValueError, match=r"dot: contracted dimensions 3 and 4 differ .*\(2, 3\), \(4, 5\)"):
        K.dot(K.placeholder((2, 3)), K.placeholder((4, 5)))
    with pytest.raises(ValueError, match="batch_dot: cannot contract over the batch axis 0"):
        K.batch_dot(K.placeholder((None, 3)), K.placeholder((None, 3)), axes=(0, 1))
    with pytest.raises(ValueError, match=r"batch_dot: x.shape\[1\] != y.shape\[1\]"):
        K.batch_dot(K.placeholder((None, 3)), K.placeholder((None, 4)))
    with pytest.raises(ValueError, match="batch_dot: operands must have rank >= 2"):
        K.batch_dot(K.placeholder((3,)), K.placeholder((3,)))
    x, y = K.placeholder((None, None)), K.placeholder((None, 3))
    f = K.function([x, y], [K.dot(x, y)])
    with pytest.raises(ValueError, match="dot: contracted dimensions differ"):
        f([np.ones((2, 4)), np.ones((5, 3))])


GEMM_SCRIPT = r"""
import numpy as np, kcomp._runtime as rt, kcomp.backend as K
rng = np.random.default_rng(0)
x, y = K.placeholder((None, 67)), K.placeholder((67, 45))
z = K.placeholder((None, 33), dtype="float64")
f = K.function([x, y, z], [K.dot(x, y), K.dot(z, K.transpose(z))])
a, b, c = rng.standard_normal((131, 67), np.float32), rng.standard_normal((67, 45), np.float32), rng.standard_normal((70, 33))
r, s = f([a, b, c])
assert np.abs(r - a.astype(np.float64) @ b).max() < 1e-4, "float32"
assert np.abs(s - c @ c.T).max() < 1e-12, "float64"
print(rt.kernels_isa(), rt.num_threads())
"""


@pytest.mark.parametrize("isa,threads", [("generic", "1"), ("avx2", "2"), ("", "3")])
def test_gemm_paths_per_isa_and_thread_count(isa, threads):
    """Every instruction-set path of the kernel library (KCOMP_ISA forces a lower one) and
    thread counts, in fresh processes."""
    env = dict(os.environ, KCOMP_ISA=isa, KCOMP_NUM_THREADS=threads)
    out = subprocess.run([sys.executable, "-c", GEMM_SCRIPT], env=env, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    got_isa, got_threads = out.stdout.split()
    if isa:
        from kcomp import _runtime
        native = _runtime.kernels_isa()
        order = ["generic", "avx2", "avx512"]
        assert got_isa == isa if order.index(native) >= order.index(isa) else got_isa == native
    assert got_threads == threads


UNPACKED_SCRIPT = r"""
import numpy as np, kcomp.backend as K
rng = np.random.default_rng(1)
cases = []   # (x shape, y shape, axes or None for dot)
for m in (1, 2, 3, 4, 5):
    for n in (1, 7, 16, 63, 65, 130, 1000):
        cases.append(((m, 300), (300, n), None))            # dot: rows path, split columns
for k in (1, 17, 64, 300):
    cases += [((3, 2, k), (3, k, 70), None),                 # dot over y's batch: A B
              ((4, 45, k), (4, k, 70), None),                # many rows, B small: in place
              ((3, k, 2), (3, k, 70), (1, 1)),               # A^T B
              ((3, 2, k), (3, 70, k), (2, 2)),               # A B^T: dot products
              ((3, k, 70), (3, 2, k), (1, 2)),               # A^T B^T, m = 70 > 4
              ((600, k), (600, k), 1),                       # batch of vector dot products
              ((3, k, 90), (3, k), (1, 1)),                  # A^T b: C^T = b^T A
              ((3, 90, k), (3, k), (2, 1))]                  # A b: dot products per row
cases += [((1000, 77), (77,), None), ((2, 3, 4), (2, 4, 1), None), ((5, 0), (0, 40), None)]
# up to 8 rows of C from a B of 1 MiB or more: parts of k (2, 4, 8; ragged groups of 4 rows)
# over chunks of columns (ragged vector tails, several chunks), strided rows of A^T, batched
# items (8 or more: no parts); 9 rows take the packed path
cases += [((1, 512), (512, 517), None), ((1, 1031), (1031, 300), None),
          ((1, 2050), (2050, 4100), None), ((3, 700, 1), (3, 700, 400), (1, 1)),
          ((2, 1, 600), (2, 600, 450), (2, 1)), ((2, 1031), (1031, 2100), None),
          ((5, 1030), (1030, 333), None), ((2, 600, 8), (2, 600, 450), (1, 1)),
          ((8, 2, 512), (8, 512, 520), (2, 1)), ((9, 600), (600, 450), None)]
# up to 32 rows of C read B's whole panels in place (the ragged last panel packed), over
# several depth panels and column blocks
cases += [((9, 300), (300, 45), None), ((17, 600), (600, 2100), None),
          ((32, 257), (257, 100), None), ((3, 20, 300), (3, 300, 70), (2, 1)),
          ((33, 64), (64, 40), None)]
# packed panels with a last register tile of 1 or a few rows (a narrower micro-kernel), over
# two depth panels
cases += [((41, 300), (300, 40), None), ((36, 300), (300, 70), None)]
# fewer than 16 bytes of columns from a B^T of at most 32 KiB: dot products (2 or 3 float32
# columns; not for batched items with their own B)
cases += [((40, 1000), (1000, 3), None), ((6, 300), (300, 2), None),
          ((3, 9, 70), (3, 70, 3), (2, 1))]
# many rows from a B that stays in L1, split by rows between the threads: groups of 8 rows
# over at most 2 vectors of columns, the last vector ending at the range's end (8, 24, 40 and
# 50 columns: 1 to 4 vectors in one pass)
cases += [((40, 1000), (1000, 8), None), ((300, 64), (64, 24), None),
          ((133, 100), (100, 40), None), ((1001, 20), (20, 50), None)]
# batches of small matrices, B read in place: ragged column tails as a last vector ending at
# the range's end, or narrower vectors (half, quarter), then scalars
cases += [((50, 20, 30), (50, 30, 20), (2, 1)), ((40, 7, 64), (40, 64, 8), (2, 1)),
          ((30, 9, 33), (30, 33, 12), (2, 1)), ((30, 5, 17), (30, 17, 5), (2, 1)),
          ((20, 6, 10), (20, 10, 31), (2, 1)), ((20, 6, 10), (20, 10, 6), (2, 1))]
# B^T packed in 16x16 tiles (whole and ragged, full and ragged panels, two depth panels)
cases += [((2, 40, 600), (2, 70, 600), (2, 2)), ((3, 100, 33), (3, 47, 33), (2, 2))]
cases = [c + ("float32",) for c in cases]
# float64: columns fewer than a vector (masked loads and stores where the ISA has them)
cases += [((30, 5, 17), (30, 17, 5), (2, 1), "float64"), ((7, 40), (40, 3), None, "float64"),
          ((300, 64), (64, 6), None, "float64")]
outs, feeds, refs = [], [], []
for sx, sy, axes, dtype in cases:
    a = rng.standard_normal(sx).astype(dtype)
    b = rng.standard_normal(sy).astype(dtype)
    x, y = K.placeholder(sx, dtype=dtype), K.placeholder(sy, dtype=dtype)
    feeds += [(x, a), (y, b)]
    if axes is None:
        outs.append(K.dot(x, y))
        refs.append((np.dot(a.astype(np.float64), b.astype(np.float64)),
                     np.dot(np.abs(a).astype(np.float64), np.abs(b).astype(np.float64))))
    else:
        outs.append(K.batch_dot(x, y, axes=axes))
        ax = (axes, axes) if isinstance(axes, int) else axes
        d = lambda u, v: np.stack([np.tensordot(p, q, axes=(ax[0] - 1, ax[1] - 1))
                                   for p, q in zip(u, v)])
        r = d(a.astype(np.float64), b.astype(np.float64))
        s = d(np.abs(a).astype(np.float64), np.abs(b).astype(np.float64))
        if r.ndim == 1:
            r, s = r[:, None], s[:, None]
        refs.append((r, s))
f = K.function([p for p, _ in feeds], outs)
got = f([v for _, v in feeds])
for g, (r, s), c in zip(got, refs, cases):
    assert g.shape == r.shape, (c, g.shape, r.shape)
    ax0 = None if c[2] is None else (c[2] if isinstance(c[2], int) else c[2][0])
    k = max(1, c[0][-1] if ax0 is None else c[0][ax0])  # the contracted length
    eps = np.finfo(c[3]).eps
    assert g.dtype == c[3] and np.all(np.abs(g - r) <= 2 * k * eps * s + 1e-30), (c, abs(g - r).max())
print("ok")
"""


@pytest.mark.parametrize("isa,threads", [("generic", "2"), ("avx2", "1"), ("", "2")])
def test_gemm_unpacked_paths(isa, threads):
    """The paths that skip packing (few rows of C, dot products, A^T b, a few rows of C split
    along k, B's panels read in place, fewer columns than a vector) at every instruction set,
    with ragged column tails and split columns, against float64 within the error bound of a
    sum of k products."""
    env = dict(os.environ, KCOMP_ISA=isa, KCOMP_NUM_THREADS=threads)
    out = subprocess.run([sys.executable, "-c", UNPACKED_SCRIPT], env=env, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr[-3000:]
