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
