"""Shape and layout ops, indexing and slicing, with static and unknown dimensions."""
import numpy as np
import pytest

import kcomp.backend as K
from util import assert_same, rand, run


@pytest.mark.parametrize("dtype", ["float32", "float16", "int64", "uint8", "bool"])
def test_layout_ops(dtype):
    rng = np.random.default_rng(20)
    x = K.placeholder((None, 3, 4), dtype=dtype)
    y = K.placeholder((2, 1, 5), dtype=dtype)
    a, b = rand(rng, (5, 3, 4), dtype, -9, 9), rand(rng, (2, 1, 5), dtype, -9, 9)
    cases = [
        (K.reshape(x, (-1, 4)), a.reshape(-1, 4)),
        (K.reshape(x, (-1,)), a.reshape(-1)),
        (K.reshape(x, (K.shape(x)[0], 2, 6)), a.reshape(5, 2, 6)),
        (K.permute_dimensions(x, (2, 0, 1)), a.transpose(2, 0, 1)),
        (K.permute_dimensions(x, (0, 2, 1)), a.transpose(0, 2, 1)),
        (K.transpose(x), a.T),
        (K.expand_dims(x, 1), a[:, None]),
        (K.expand_dims(x), a[..., None]),
        (K.squeeze(y, 1), b[:, 0]),
        (K.flatten(x), a.reshape(-1)),
        (K.batch_flatten(x), a.reshape(5, -1)),
        (K.tile(x, (2, 1, 3)), np.tile(a, (2, 1, 3))),
        (K.tile(y, 2), np.tile(b, 2)),
        (K.tile(y, (3, 1, 1, 2)), np.tile(b, (3, 1, 1, 2))),
        (K.repeat_elements(x, 3, 1), np.repeat(a, 3, 1)),
        (K.repeat_elements(x, 2, -1), np.repeat(a, 2, -1)),
        (K.repeat_elements(y, 4, 1), np.repeat(b, 4, 1)),
        (K.concatenate([x, x], 1), np.concatenate([a, a], 1)),
        (K.concatenate([x, K.reshape(x, (-1, 3, 4)) * 1 if dtype != "bool" else x], -1),
         np.concatenate([a, a], -1)),
        (K.concatenate([x, x, x], 0), np.concatenate([a, a, a], 0)),
        (K.stack([y, y * 1 if dtype != "bool" else y], 1), np.stack([b, b], 1)),
        (K.stack([x, x], -1), np.stack([a, a], -1)),
    ]
    got, want, _ = run([(x, a), (y, b)], [t for t, _ in cases])
    for (t, e), g, w in zip(cases, got, want):
        assert_same(g, w, t.name)
        np.testing.assert_array_equal(g, e, err_msg=t.name)


def test_large_layout_copies():
    rng = np.random.default_rng(22)
    x = K.placeholder((None, 129, 65))
    a = rand(rng, (33, 129, 65), "float32")
    cases = [(K.permute_dimensions(x, (2, 0, 1)), a.transpose(2, 0, 1)),
             (K.permute_dimensions(x, (0, 2, 1)), a.transpose(0, 2, 1)),
             (K.tile(x, (1, 2, 3)), np.tile(a, (1, 2, 3))),
             (K.tile(x, (3, 1, 2)), np.tile(a, (3, 1, 2))),
             (K.repeat_elements(x, 2, 1), np.repeat(a, 2, 1)),
             (K.repeat_elements(x, 3, 2), np.repeat(a, 3, 2)),
             (K.repeat_elements(x, 2, 0), np.repeat(a, 2, 0)),
             (K.concatenate([x, x[:, ::-1]], 2), np.concatenate([a, a[:, ::-1]], 2)),
             (x[3:30:2, 1::3, :-5], a[3:30:2, 1::3, :-5])]
    got, want, _ = run([(x, a)], [t for t, _ in cases])
    for (t, e), g, w in zip(cases, got, want):
        assert_same(g, w, t.name)
        np.testing.assert_array_equal(g, e, err_msg=t.name)


@pytest.mark.parametrize("dtype", ["float64", "float32", "int32", "float16", "int8", "bool"])
def test_transposing_copies(dtype):
    """Copies whose source is contiguous along another axis than the destination go in 16x16
    tiles (csrc/include/kcomp/transpose.h): whole tiles (in registers for 32-bit types), ragged
    edges, strips of 64 destination rows per task, outer axes around the two transposed ones,
    an unknown batch extent and a broadcast column (a source stride of 0)."""
    rng = np.random.default_rng(23)
    x = K.placeholder((None, 37, 150), dtype=dtype)
    m = K.placeholder((131, 70), dtype=dtype)
    q = K.placeholder((3, 20, 4, 33), dtype=dtype)
    c = K.placeholder((300, 1), dtype=dtype)
    a, b = rand(rng, (5, 37, 150), dtype, -99, 99), rand(rng, (131, 70), dtype, -99, 99)
    e, v = rand(rng, (3, 20, 4, 33), dtype, -99, 99), rand(rng, (300, 1), dtype, -99, 99)
    cases = [(K.transpose(m), b.T), (K.permute_dimensions(x, (0, 2, 1)), a.transpose(0, 2, 1)),
             (K.permute_dimensions(x, (2, 1, 0)), a.transpose(2, 1, 0)),
             (K.permute_dimensions(x, (1, 2, 0)), a.transpose(1, 2, 0)),
             (K.permute_dimensions(q, (0, 3, 2, 1)), e.transpose(0, 3, 2, 1)),
             (K.permute_dimensions(q, (2, 3, 0, 1)), e.transpose(2, 3, 0, 1)),
             (K.repeat(c, 40), np.repeat(v[:, None, :], 40, 1))]
    got, want, _ = run([(x, a), (m, b), (q, e), (c, v)], [t for t, _ in cases])
    for (t, ex), g, w in zip(cases, got, want):
        assert_same(g, w, t.name)
        np.testing.assert_array_equal(g, ex, err_msg=t.name)


def test_indexing_and_slicing():
    rng = np.random.default_rng(21)
    x = K.placeholder((None, 6, 5))
    a = rand(rng, (7, 6, 5), "float32")
    keys = [np.s_[:, 0], np.s_[0], np.s_[-1], np.s_[1:], np.s_[::2], np.s_[::-1], np.s_[-3:-1],
            np.s_[:, ::-2, 1:4], np.s_[..., 2], np.s_[:, None, 3], np.s_[2, -1, ::3],
            np.s_[:, 10:], np.s_[5:1:-2, :, -1], np.s_[None], np.s_[..., None]]
    got, want, f = run([(x, a)], [x[k] for k in keys])
    for k, g, w in zip(keys, got, want):
        assert_same(g, w, str(k))
        np.testing.assert_array_equal(g, a[k], err_msg=str(k))
    # another batch size: some slices become empty, and x[2, ...] is out of range for 2 items
    b = rand(rng, (2, 6, 5), "float32")
    with pytest.raises(ValueError, match="index 2 is out of range for axis 0"):
        f([b])
    kept = [k for k in keys if k != np.s_[2, -1, ::3]]
    for k, g in zip(kept, K.function([x], [x[k] for k in kept])([b])):
        np.testing.assert_array_equal(g, b[k], err_msg=str(k))
    with pytest.raises(IndexError):
        K.placeholder((3, 4))[3]
    with pytest.raises(IndexError):
        x[0, 0, 0, 0]
    with pytest.raises(TypeError):
        x[1.5]


def test_shape_introspection():
    x = K.placeholder((None, 3, 4))
    assert K.int_shape(x) == (None, 3, 4)
    assert K.ndim(x) == 3
    assert K.dtype(x) == "float32"
    v = K.variable(np.zeros((2, 5)))
    assert K.int_shape(v) == (2, 5) and K.count_params(v) == 10
    a = np.zeros((6, 3, 4), np.float32)
    f = K.function([x], [K.shape(x), K.size(x), K.shape(x)[0] * 2])
    s, n, twice = f([a])
    np.testing.assert_array_equal(s, [6, 3, 4])
    assert s.dtype == np.int32 and int(n) == 72 and int(twice) == 12


def test_lists_of_symbolic_scalars_are_stacked():
    x = K.placeholder((None, 4, 3))
    n = K.prod([K.shape(x)[0], K.shape(x)[1]])
    s = K.reshape(x, [K.shape(x)[0] * 4, 3])
    f = K.function([x], [n, s, K.cast(K.stack([K.shape(x)[0], 7]), "int64")])
    a = np.ones((5, 4, 3), np.float32)
    got_n, got_s, got_v = f([a])
    assert int(got_n) == 20 and got_s.shape == (20, 3) and got_v.tolist() == [5, 7]


def test_symbolic_reshape_checks_element_count_at_run_time():
    x = K.placeholder((None, 6))
    y = K.placeholder((None, 4))
    f = K.function([x, y], [K.reshape(x, (K.shape(y)[0], -1))])
    np.testing.assert_array_equal(f([np.ones((4, 6)), np.ones((2, 4))])[0], np.ones((2, 12)))
    with pytest.raises(ValueError, match="reshape"):
        f([np.ones((4, 6)), np.ones((5, 4))])  # 24 elements do not divide into 5 rows


def test_layout_errors_name_op_and_shapes():
    x = K.placeholder((None, 3, 4))
    with pytest.raises(ValueError, match=r"reshape: cannot reshape 12 elements"):
        K.reshape(K.placeholder((3, 4)), (5, 2))
    with pytest.raises(ValueError, match=r"permute_dimensions: pattern \(0, 1\)"):
        K.permute_dimensions(x, (0, 1))
    with pytest.raises(ValueError, match=r"concatenate: dimension 2 differs .*\(None, 3, 4\), "
                                         r"\(None, 3, 5\)"):
        K.concatenate([x, K.placeholder((None, 3, 5))], 1)
    with pytest.raises(ValueError, match=r"squeeze: axis 1 has size 3"):
        K.squeeze(x, 1)
    with pytest.raises(ValueError, match="expand_dims: axis 5 is out of range"):
        K.expand_dims(x, 5)
    with pytest.raises(ValueError, match=r"add: .*\(2, 3\), \(4, 5\)"):
        K.placeholder((2, 3)) + K.placeholder((4, 5))
