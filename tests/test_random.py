"""Random ops: bit-exact against the numpy Philox reference, fresh samples per call, seeds that
reproduce across processes, the distributions' statistics, dropout."""
import subprocess
import sys

import numpy as np
import pytest

import kcomp.backend as K
from kcomp.ir.ops.random import sample
from kcomp.ir.dtypes import as_dtype


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_bits_match_the_reference_and_every_call_draws_afresh(dtype):
    x = K.placeholder((None, 7))
    cases = [("uniform", (-2.0, 3.0), 11), ("normal", (1.0, 2.0), 12),
             ("truncated_normal", (0.5, 0.1), 13), ("binomial", (0.3,), 14)]
    outs = [K.random_uniform((33, 5), -2.0, 3.0, dtype, seed=11),
            K.random_normal((1001,), 1.0, 2.0, dtype, seed=12),
            K.truncated_normal((4, 257), 0.5, 0.1, dtype, seed=13),
            K.random_binomial(K.shape(x), 0.3, dtype, seed=14)]
    f = K.function([x], outs)
    a = np.zeros((6, 7), np.float32)
    first, second = f([a]), f([a])
    for call, got in ((0, first), (1, second)):
        for (dist, params, seed), g in zip(cases, got):
            want = sample(dist, params, seed, call, g.shape, as_dtype(dtype))
            assert g.dtype == np.dtype(dtype)
            np.testing.assert_allclose(g, want, rtol=1e-6 if dtype != "float16" else 1e-3,
                                       atol=1e-7, err_msg=f"{dist} call {call}")
    for g1, g2 in zip(first, second):
        assert not np.array_equal(g1, g2)


def test_statistics():
    f = K.function([], [K.random_uniform((200000,), -1.0, 3.0, seed=1),
                        K.random_normal((200000,), 2.0, 0.5, seed=2),
                        K.truncated_normal((200000,), 0.0, 1.0, seed=3),
                        K.random_binomial((200000,), 0.25, seed=4),
                        K.random_uniform((200000,), dtype="float64", seed=5)])
    u, n, t, b, d = f([])
    assert u.min() >= -1.0 and u.max() < 3.0 and abs(u.mean() - 1.0) < 0.02
    assert abs(u.var() - 16 / 12) < 0.02
    assert abs(n.mean() - 2.0) < 0.01 and abs(n.std() - 0.5) < 0.01
    assert np.abs(t).max() <= 2.0 and abs(t.std() - 0.8796) < 0.01  # std of N(0,1) cut at 2
    assert set(np.unique(b)) == {0.0, 1.0} and abs(b.mean() - 0.25) < 0.01
    assert d.dtype == np.float64 and 0 <= d.min() and d.max() < 1
    assert len(np.unique(d)) == d.size  # 53-bit draws: no collisions at this size


SCRIPT = ("import numpy as np, kcomp.backend as K\n"
          "np.random.seed(123)\n"
          "f = K.function([], [K.random_normal((5,), seed=7), K.random_uniform((3,))])\n"
          "print(np.concatenate([f([])[0], f([])[1]]).tolist())\n")


def test_seeds_reproduce_across_processes():
    runs = [subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True)
            for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr
    assert runs[0].stdout == runs[1].stdout and runs[0].stdout.strip()


def test_variables_are_sampled_once():
    v = K.random_uniform_variable((3, 4), -1, 1, seed=3)
    w = K.random_normal_variable((2,), 5.0, 0.1, dtype="float64", name="w", seed=4)
    assert v.dtype == "float32" and w.dtype == "float64" and w.name == "w"
    np.testing.assert_array_equal(K.get_value(v), K.eval(v))
    assert -1 <= K.get_value(v).min() and K.get_value(v).max() < 1
    np.testing.assert_array_equal(K.get_value(v), sample("uniform", (-1.0, 1.0), 3, 0, (3, 4),
                                                         as_dtype("float32")))


def test_seeds_and_parameters_are_data_not_code():
    """Initializers of different seeds, bounds and shapes share one compiled kernel, and a
    function differing only in those is the same library (a model's initial values are built
    once, then found in the cache by every later process)."""
    def draws(seed, lo, hi, shapes):
        f = K.function([], [K.random_uniform(s, lo, hi, seed=seed + i) for i, s in
                            enumerate(shapes)])
        for i, (s, got) in enumerate(zip(shapes, f([]))):
            np.testing.assert_array_equal(got, sample("uniform", (lo, hi), seed + i, 0, s,
                                                      as_dtype("float32")))
        return f
    f = draws(1, -1.0, 2.0, [(3, 4), (7,), (2, 5, 3)])
    g = draws(99, -0.25, 0.5, [(3, 4), (7,), (2, 5, 3)])
    assert f.compile_info["key"] == g.compile_info["key"]
    with open(f.source_path) as src:
        assert src.read().count("kc::rng::uniform(") == 1  # one definition for three shapes


def test_dropout():
    x = K.placeholder((None, 50, 40))
    f = K.function([x], [K.dropout(x, 0.3, seed=9), K.dropout(x, 0.5, noise_shape=(None, 1, 40), seed=8),
                         K.dropout(x, 0.0)])
    a = np.random.default_rng(0).uniform(1, 2, (7, 50, 40)).astype(np.float32)
    d, shared, same = f([a])
    kept = d != 0
    np.testing.assert_allclose(d[kept], a[kept] / 0.7, rtol=1e-6)
    assert abs(kept.mean() - 0.7) < 0.02
    mask = shared != 0
    assert (mask == mask[:, :1, :]).all()  # the noise shape broadcasts along axis 1
    np.testing.assert_allclose(shared[mask], a[mask] * 2, rtol=1e-6)
    np.testing.assert_array_equal(same, a)
    with pytest.raises(ValueError, match="level"):
        K.dropout(x, 1.0)
