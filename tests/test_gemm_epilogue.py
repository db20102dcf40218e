"""Elementwise work on a dot's result runs as the GEMM's fused epilogue (one kernel for
K.relu(K.dot(x, W) + b)) on every path of the kernel library: unpacked (few rows, k = 0),
packed panels, several threads, each instruction set; in place or into scratch; operands
whose leading axes do not collapse (the epilogue splits its row index); and the cases that must
not fuse (the product is also needed elsewhere, integer products) still compute the same
values."""
import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import numpy as np, kcomp.backend as K
rng = np.random.default_rng(8)
cases = []
for dtype in ("float32", "float64"):
    for m, k, n in ((1, 30, 70), (3, 17, 5), (9, 40, 33), (130, 70, 45), (5, 0, 7),
                    (1, 1100, 300), (7, 1100, 300),  # B >= 1 MiB: split along k
                    (20, 300, 77),  # B's panels in place
                    (40, 200, 3),  # fewer than 16 bytes of columns: dot products with B^T
                    (300, 64, 24)):  # many rows, B in L1: row blocks split between threads
        x = K.placeholder((None, k), dtype=dtype)
        W = rng.standard_normal((k, n)).astype(dtype)
        b = rng.standard_normal(n).astype(dtype)
        r = rng.standard_normal((m, n)).astype(dtype)
        a = rng.standard_normal((m, k)).astype(dtype)
        res = K.placeholder((None, n), dtype=dtype)
        y = K.dot(x, K.constant(W, dtype=dtype))
        outs = [K.relu(y + K.constant(b, dtype=dtype)),
                K.sigmoid(K.dot(x, K.constant(W * 1.5, dtype=dtype)) * 2.0 + res)]
        z = K.dot(x, K.constant(W * 0.5, dtype=dtype)) + K.constant(b, dtype=dtype)
        outs += [K.tanh(z), z * 3.0]                          # two values stored: C in scratch
        d, wd = a.astype(np.float64), W.astype(np.float64)
        refs = [np.maximum(d @ wd + b, 0), 1 / (1 + np.exp(-(d @ (wd * 1.5) * 2 + r))),
                np.tanh(d @ (wd * 0.5) + b), (d @ (wd * 0.5) + b) * 3]
        cases.append(([(x, a), (res, r)], outs, refs, dtype, k))
# not fusable: the product is an output too; an integer product. A bias over the middle axis
# of a 3-D product fuses (its leading axes do not collapse: the row index is split)
x3 = K.placeholder((2, 3, 6))
a3 = rng.standard_normal((2, 3, 6)).astype(np.float32)
W3 = rng.standard_normal((6, 40)).astype(np.float32)
mid = rng.standard_normal((3, 1)).astype(np.float32)
p3 = K.dot(x3, K.constant(W3))
outs3 = [p3, K.relu(p3) + 1.0, K.dot(x3, K.constant(W3 * 2)) + K.constant(mid),
         K.exp(K.dot(x3, K.constant(W3)) * 0.1) + K.constant(W3[0])]
e3 = a3.astype(np.float64) @ W3
refs3 = [e3, np.maximum(e3, 0) + 1, e3 * 2 + mid, np.exp(e3 * 0.1) + W3[0]]
cases.append(([(x3, a3)], outs3, refs3, "float32", 6))
xi = K.placeholder((4, 5), dtype="int32")
ai = rng.integers(-5, 5, (4, 5)).astype(np.int32)
Wi = rng.integers(-5, 5, (5, 6)).astype(np.int32)
cases.append(([(xi, ai)], [K.dot(xi, K.constant(Wi, dtype="int32")) + 1],
              [ai.astype(np.int64) @ Wi + 1], "int32", 5))
fused = 0
for feeds, outs, refs, dtype, k in cases:
    f = K.function([p for p, _ in feeds], outs)
    got = f([v for _, v in feeds])
    plan = f.explain().split("-- kernel plan --")[1]
    fused += plan.count("[gemm] dot+")
    tol = (1e-5 if dtype == "float32" else 1e-12) * max(k, 1)
    for g, e in zip(got, refs):
        assert g.dtype == np.dtype(dtype), (g.dtype, dtype)
        np.testing.assert_allclose(g.astype(np.float64), e, rtol=tol, atol=tol)
assert fused >= 28, fused  # 3 per product with k > 0, the bias over the middle axis
print("ok")
"""


@pytest.mark.parametrize("isa,threads", [("generic", "1"), ("avx2", "2"), ("", "2")])
def test_gemm_epilogues(isa, threads):
    env = dict(os.environ, KCOMP_ISA=isa, KCOMP_NUM_THREADS=threads)
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "ok"
