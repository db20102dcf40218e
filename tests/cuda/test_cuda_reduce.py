"""kc_cuda_reduce and kc_cuda_softmax (csrc/cuda/reduce.cu) against numpy float64 references.

Runs only where a CUDA GPU and the toolkit are present (kcomp.cuda.runtime.available()). Every
output is poisoned (NaN / -1 bytes) before each call so that unwritten elements show.
"""
import ctypes
import functools

import numpy as np
import pytest

pytestmark = pytest.mark.cuda

try:
    from kcomp.cuda import runtime as cr
except Exception:  # the runtime module or the toolkit is missing
    cr = None
if cr is None or not cr.available():
    pytest.skip("no CUDA GPU", allow_module_level=True)

KC_INT64, KC_FLOAT32, KC_FLOAT64 = 5, 11, 12
SUM, MEAN, PROD, MAX, MIN, VAR, STD, LOGSUMEXP, ARGMAX, ARGMIN = range(10)
KINDS = {"sum": SUM, "mean": MEAN, "prod": PROD, "max": MAX, "min": MIN, "var": VAR,
         "std": STD, "logsumexp": LOGSUMEXP, "argmax": ARGMAX, "argmin": ARGMIN}
ARG = (ARGMAX, ARGMIN)

# (outer, n, inner): rows (inner == 1) and columns, sizes 1, odd, primes, tails, long rows, and
# few outputs with long reductions (cluster split on sm_90)
SHAPES = [
    (1, 1, 1), (1, 7, 1), (5, 1, 1), (1000, 3, 1), (3, 4097, 1), (17, 1000, 1), (2, 33, 1),
    (129, 130, 1), (4, 40000, 1), (1, 1000003, 1),
    (5, 7, 33), (2, 1025, 129), (7, 3, 2), (1, 100, 3), (3, 1, 1000), (2, 5000, 8),
    (1, 2, 100003), (3, 31, 64), (64, 16, 300), (3, 40, 1000), (1, 4096, 4096),
]


def _lib():
    return cr.library()


def _struct(cls, **kw):
    """cls(**kw), device addresses given as ints (or None) whatever the field's pointer type."""
    s = cls()
    types = dict(cls._fields_)
    for name, value in kw.items():
        t = types[name]
        is_ptr = t is ctypes.c_void_p or issubclass(t, ctypes._Pointer)
        if is_ptr and value is not None and t is not ctypes.c_void_p:
            value = ctypes.cast(ctypes.c_void_p(value), t)
        setattr(s, name, value)
    return s


def _reduce(kind, outer, n, inner, x_ptr, y_ptr, dtype=KC_FLOAT32):
    args = _struct(cr.ReduceArgs, kind=kind, dtype=dtype, outer=outer, n=n, inner=inner,
                   x=x_ptr, y=y_ptr)
    return _lib().kc_cuda_reduce(ctypes.byref(args), None)


def _softmax(outer, n, inner, x_ptr, y_ptr, log):
    args = _struct(cr.SoftmaxArgs, outer=outer, n=n, inner=inner, x=x_ptr, y=y_ptr, log=log)
    return _lib().kc_cuda_softmax(ctypes.byref(args), None)


def _rel(out, ref):
    out = np.asarray(out, np.float64)
    ref = np.asarray(ref, np.float64)
    assert out.shape == ref.shape
    assert np.array_equal(np.isnan(out), np.isnan(ref)), "NaN pattern differs (unwritten output?)"
    m = ~np.isnan(ref)
    if not m.any():
        return 0.0
    num = np.linalg.norm((out - ref)[m])
    den = np.linalg.norm(ref[m])
    return num / den if den > 0 else num


def _reference(kind, x3):
    """numpy float64 reduction over axis 1 of x3 (outer, n, inner)."""
    a = x3.astype(np.float64)
    if kind == SUM:
        return a.sum(axis=1)
    if kind == MEAN:
        return a.mean(axis=1)
    if kind == PROD:
        return a.prod(axis=1)
    if kind == MAX:
        return a.max(axis=1)
    if kind == MIN:
        return a.min(axis=1)
    if kind == VAR:
        return a.var(axis=1)
    if kind == STD:
        return a.std(axis=1)
    if kind == LOGSUMEXP:
        m = np.max(a, axis=1, keepdims=True)
        with np.errstate(invalid="ignore", over="ignore"):
            return (m + np.log(np.exp(a - m).sum(axis=1, keepdims=True)))[:, 0, :]
    if kind == ARGMAX:
        return np.argmax(a, axis=1)
    if kind == ARGMIN:
        return np.argmin(a, axis=1)
    raise ValueError(kind)


TOL = {SUM: 1e-5, MEAN: 1e-5, PROD: 1e-4, VAR: 1e-5, STD: 1e-5, LOGSUMEXP: 1e-5}


def _input(kind, shape, rng):
    outer, n, inner = shape
    size = outer * n * inner
    if kind == PROD:  # products stay in range
        return rng.uniform(0.9, 1.1, size).astype(np.float32)
    if kind in ARG or kind in (MAX, MIN):  # many ties: the first index must win
        return rng.integers(-20, 20, size).astype(np.float32) if n > 50 else \
            rng.standard_normal(size).astype(np.float32)
    # offset mean: checks that VAR/STD do not cancel
    return (rng.standard_normal(size) * 2.0 + 3.0).astype(np.float32)


def _run_reduce(kind, shape, x, offset=0):
    """Reduces the flat float32 x (laid out as shape) starting `offset` floats into its buffer."""
    outer, n, inner = shape
    buf = np.concatenate([np.full(offset, 7.0, np.float32), x]) if offset else x
    dx = cr.DeviceArray.from_numpy(buf)
    odt = np.int64 if kind in ARG else np.float32
    dy = cr.DeviceArray.empty((outer, inner), odt)
    cr.poison(dy)
    cr.check(_reduce(kind, outer, n, inner, dx.ptr + 4 * offset, dy.ptr), "kc_cuda_reduce")
    return dy.numpy()


def _check_reduce(kind, shape, x, out):
    ref = _reference(kind, x.reshape(shape))
    if kind in ARG:
        np.testing.assert_array_equal(out, ref)
    elif kind in (MAX, MIN):
        np.testing.assert_array_equal(out.astype(np.float64), ref)
    else:
        assert _rel(out, ref) < TOL[kind], (kind, shape, _rel(out, ref))


@functools.lru_cache(maxsize=8)
def _cached_input(kind_class, shape, seed):
    return _input(kind_class, shape, np.random.default_rng(seed))


def _kind_class(kind):  # kinds that share an input draw
    return PROD if kind == PROD else (ARGMAX if kind in ARG + (MAX, MIN) else SUM)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", list(KINDS))
def test_reduce(name, shape):
    kind = KINDS[name]
    if kind == PROD and shape[1] > 5000:
        pytest.skip("product of many values over/underflows")
    x = _cached_input(_kind_class(kind), shape, hash(shape) % 1000)
    _check_reduce(kind, shape, x, _run_reduce(kind, shape, x))


UNALIGNED = [(3, 4097, 1), (1, 1000, 1), (6, 5, 1), (2, 1002, 1), (5, 7, 33), (2, 64, 16),
             (1, 3000, 2)]


@pytest.mark.parametrize("shape", UNALIGNED, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", ["sum", "max", "var", "logsumexp", "argmax", "argmin"])
def test_reduce_unaligned(name, shape):
    """x starts 4, 8 or 12 bytes past a 16-byte boundary: scalar head/tail and scalar columns."""
    kind = KINDS[name]
    x = _cached_input(_kind_class(kind), shape, 7)
    for offset in (1, 2, 3):
        _check_reduce(kind, shape, x, _run_reduce(kind, shape, x, offset))


@pytest.mark.parametrize("shape", [(4, 1000, 1), (3, 50000, 1), (1, 300000, 1), (3, 70, 37),
                                   (1, 5000, 40), (6, 5, 1)],
                         ids=lambda s: "x".join(map(str, s)))
def test_nan(shape):
    """MAX/MIN/SUM/LOGSUMEXP propagate NaN; ARGMAX/ARGMIN return the first NaN, like numpy."""
    outer, n, inner = shape
    rng = np.random.default_rng(3)
    x = rng.integers(-5, 5, outer * n * inner).astype(np.float32).reshape(shape)
    # NaNs in every other output line, two per line where n > 1 (the first must win)
    for o in range(outer):
        for j in range(0, inner, 2):
            for i in rng.choice(n, size=min(2, n), replace=False):
                x[o, i, j] = np.nan
    x = x.reshape(-1)
    for kind in (MAX, MIN, SUM, LOGSUMEXP, ARGMAX, ARGMIN):
        _check_reduce(kind, shape, x, _run_reduce(kind, shape, x))


@pytest.mark.parametrize("layout", ["rows", "columns"])
def test_infinities(layout):
    """-inf lines: LOGSUMEXP -inf, MAX -inf, ARGMAX the first index; +inf: LOGSUMEXP +inf."""
    x = np.full((3, 101), -np.inf, np.float32)
    x[1, 50] = np.inf
    x[2, 7] = 1.0
    # rows: (3, 101, 1); columns: the same lines as (1, 101, 3)
    shape, flat = ((3, 101, 1), x.reshape(-1)) if layout == "rows" else \
        ((1, 101, 3), np.ascontiguousarray(x.T).reshape(-1))

    def run(kind):
        return _run_reduce(kind, shape, flat).reshape(-1)

    np.testing.assert_array_equal(run(LOGSUMEXP), [-np.inf, np.inf, 1.0])
    np.testing.assert_array_equal(run(ARGMAX), [0, 50, 7])
    np.testing.assert_array_equal(run(MAX), [-np.inf, np.inf, 1.0])
    np.testing.assert_array_equal(run(ARGMIN), [0, 0, 0])
    np.testing.assert_array_equal(run(MIN), [-np.inf, -np.inf, -np.inf])
    # all +inf: ARGMIN takes the first index too
    ones = np.full(shape[0] * shape[1] * shape[2], np.inf, np.float32)
    np.testing.assert_array_equal(_run_reduce(ARGMIN, shape, ones).reshape(-1), [0, 0, 0])


@pytest.mark.parametrize("shape", [(3, 0, 1), (2, 0, 5)])
def test_empty_axis(shape):
    """n == 0: SUM 0, PROD 1, MEAN NaN (VAR/STD NaN, LOGSUMEXP -inf); MAX/MIN/ARG* refused."""
    outer, _, inner = shape
    expect = {SUM: 0.0, PROD: 1.0, MEAN: np.nan, VAR: np.nan, STD: np.nan,
              LOGSUMEXP: -np.inf}
    for kind, value in expect.items():
        dy = cr.DeviceArray.empty((outer, inner), np.float32)
        cr.poison(dy)
        cr.check(_reduce(kind, outer, 0, inner, None, dy.ptr), "kc_cuda_reduce")
        np.testing.assert_array_equal(dy.numpy(), np.full((outer, inner), value, np.float32))
    for kind in (MAX, MIN, ARGMAX, ARGMIN):
        dy = cr.DeviceArray.empty((outer, inner), np.int64 if kind in ARG else np.float32)
        with pytest.raises(ValueError):
            cr.check(_reduce(kind, outer, 0, inner, None, dy.ptr), "kc_cuda_reduce")


def test_empty_output():
    """outer or inner 0: nothing to do, even with NULL pointers."""
    cr.check(_reduce(SUM, 0, 5, 3, None, None), "kc_cuda_reduce")
    cr.check(_reduce(ARGMAX, 4, 5, 0, None, None), "kc_cuda_reduce")
    cr.check(_softmax(0, 5, 1, None, None, 0), "kc_cuda_softmax")
    cr.check(_softmax(3, 0, 1, None, None, 1), "kc_cuda_softmax")


def test_bad_args():
    dx = cr.DeviceArray.from_numpy(np.ones(64, np.float32))
    dy = cr.DeviceArray.empty((64,), np.int64)
    bad = [
        dict(kind=SUM, dtype=KC_FLOAT64, outer=1, n=4, inner=1, x=dx.ptr, y=dy.ptr),
        dict(kind=10, dtype=KC_FLOAT32, outer=1, n=4, inner=1, x=dx.ptr, y=dy.ptr),
        dict(kind=-1, dtype=KC_FLOAT32, outer=1, n=4, inner=1, x=dx.ptr, y=dy.ptr),
        dict(kind=SUM, dtype=KC_FLOAT32, outer=-1, n=4, inner=1, x=dx.ptr, y=dy.ptr),
        dict(kind=SUM, dtype=KC_FLOAT32, outer=1, n=-4, inner=1, x=dx.ptr, y=dy.ptr),
        dict(kind=SUM, dtype=KC_FLOAT32, outer=1, n=4, inner=-1, x=dx.ptr, y=dy.ptr),
        dict(kind=SUM, dtype=KC_FLOAT32, outer=1, n=4, inner=1, x=None, y=dy.ptr),
        dict(kind=SUM, dtype=KC_FLOAT32, outer=1, n=4, inner=1, x=dx.ptr, y=None),
        dict(kind=SUM, dtype=KC_FLOAT32, outer=1, n=4, inner=1, x=dx.ptr + 2, y=dy.ptr),
        dict(kind=ARGMAX, dtype=KC_FLOAT32, outer=1, n=4, inner=1, x=dx.ptr, y=dy.ptr + 4),
        dict(kind=SUM, dtype=KC_FLOAT32, outer=1 << 40, n=1 << 40, inner=1, x=dx.ptr,
             y=dy.ptr),
    ]
    for kw in bad:
        args = _struct(cr.ReduceArgs, **kw)
        with pytest.raises(ValueError):
            cr.check(_lib().kc_cuda_reduce(ctypes.byref(args), None), "kc_cuda_reduce")
    with pytest.raises(ValueError):
        cr.check(_lib().kc_cuda_reduce(None, None), "kc_cuda_reduce")
    for kw in [dict(outer=1, n=4, inner=1, x=None, y=dy.ptr, log=0),
               dict(outer=1, n=4, inner=1, x=dx.ptr, y=None, log=0),
               dict(outer=1, n=-4, inner=1, x=dx.ptr, y=dy.ptr, log=0),
               dict(outer=1, n=4, inner=1, x=dx.ptr + 1, y=dy.ptr, log=0)]:
        args = _struct(cr.SoftmaxArgs, **kw)
        with pytest.raises(ValueError):
            cr.check(_lib().kc_cuda_softmax(ctypes.byref(args), None), "kc_cuda_softmax")
    with pytest.raises(ValueError):
        cr.check(_lib().kc_cuda_softmax(None, None), "kc_cuda_softmax")


def _softmax_ref(x3, log):
    a = x3.astype(np.float64)
    m = a.max(axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):
        e = np.exp(a - m)
        s = e.sum(axis=1, keepdims=True)
        return (a - m - np.log(s)) if log else e / s


SOFTMAX_SHAPES = [(1, 1, 1), (7, 3, 1), (1000, 10, 1), (333, 8, 1), (50, 64, 1), (5, 129, 1),
                  (3, 4097, 1),
                  (2, 16384, 1), (3, 16387, 1), (2, 40000, 1), (1, 300007, 1), (5, 7, 33),
                  (2, 1025, 129), (4, 3, 2), (1, 2000, 64), (3, 1, 100),
                  # columns held on chip by a cluster (sm_90): 4 to 16 blocks, partial stripes;
                  # then too many rows for it (streamed)
                  (2, 2048, 20), (3, 2049, 36), (1, 5000, 64), (1, 8192, 100), (2, 16384, 4),
                  (1, 40000, 8)]


@pytest.mark.parametrize("log", [0, 1], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("shape", SOFTMAX_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_softmax(shape, log):
    outer, n, inner = shape
    rng = np.random.default_rng(11)
    x = (rng.standard_normal(outer * n * inner) * 3.0).astype(np.float32)
    ref = _softmax_ref(x.reshape(shape), log)
    for xoff, yoff in ((0, 0), (1, 1), (0, 3), (2, 0)):  # aligned, same phase, mixed phases
        buf = np.concatenate([np.zeros(xoff, np.float32), x])
        dx = cr.DeviceArray.from_numpy(buf)
        dy = cr.DeviceArray.empty((yoff + x.size,), np.float32)
        cr.poison(dy)
        cr.check(_softmax(outer, n, inner, dx.ptr + 4 * xoff, dy.ptr + 4 * yoff, log),
                 "kc_cuda_softmax")
        out = dy.numpy()[yoff:].reshape(shape)
        assert _rel(out, ref) < 1e-5, (shape, log, xoff, yoff, _rel(out, ref))
        if shape[0] * shape[1] * shape[2] > 1e5:
            break


@pytest.mark.parametrize("shape", [(3, 100, 1), (2, 20000, 1), (2, 50, 6), (2, 3000, 8)],
                         ids=lambda s: "x".join(map(str, s)))
def test_softmax_nan(shape):
    """A NaN makes its whole softmax line NaN; other lines are untouched."""
    outer, n, inner = shape
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape).astype(np.float32)
    x[0, n // 2, 0] = np.nan
    for log in (0, 1):
        ref = _softmax_ref(x, log)
        dx = cr.DeviceArray.from_numpy(x.reshape(-1))
        dy = cr.DeviceArray.empty((x.size,), np.float32)
        cr.poison(dy)
        cr.check(_softmax(outer, n, inner, dx.ptr, dy.ptr, log), "kc_cuda_softmax")
        out = dy.numpy().reshape(shape)
        assert np.isnan(out[0, :, 0]).all()
        assert _rel(out, ref) < 1e-5


@pytest.mark.parametrize("shape", [(9, 100, 1), (3, 20000, 1), (1, 300007, 1), (4, 300, 33),
                                   (2, 2000, 64), (2, 4096, 16)],
                         ids=lambda s: "x".join(map(str, s)))
def test_softmax_in_place(shape):
    """y == x: every element is read before it is written."""
    outer, n, inner = shape
    rng = np.random.default_rng(9)
    x = rng.standard_normal(outer * n * inner).astype(np.float32)
    for log in (0, 1):
        d = cr.DeviceArray.from_numpy(x)
        cr.check(_softmax(outer, n, inner, d.ptr, d.ptr, log), "kc_cuda_softmax")
        ref = _softmax_ref(x.reshape(shape), log)
        assert _rel(d.numpy().reshape(shape), ref) < 1e-5


@pytest.mark.parametrize("clusters", ["1", "0"])
def test_softmax_columns_each_kernel(clusters, monkeypatch):
    """Column softmax with stripes held on chip by a cluster (sm_90), and with clusters turned
    off (the streamed kernel): the same softmax, NaN lines included."""
    monkeypatch.setenv("KCOMP_CUDA_REDUCE_CLUSTER", clusters)
    rng = np.random.default_rng(12)
    for shape in [(2, 2048, 20), (3, 2049, 36), (1, 5000, 64), (1, 20000, 8)]:
        outer, n, inner = shape
        x = (rng.standard_normal(shape) * 3.0).astype(np.float32)
        x[-1, n // 3, -1] = np.nan
        for log in (0, 1):
            dx = cr.DeviceArray.from_numpy(x.reshape(-1))
            dy = cr.DeviceArray.empty((x.size,), np.float32)
            cr.poison(dy)
            cr.check(_softmax(outer, n, inner, dx.ptr, dy.ptr, log), "kc_cuda_softmax")
            out = dy.numpy().reshape(shape)
            assert np.isnan(out[-1, :, -1]).all()
            ok = np.ones(shape, bool)
            ok[-1, :, -1] = False
            ref = _softmax_ref(x, log)
            assert _rel(out[ok], ref[ok]) < 1e-5, (shape, log, clusters)
