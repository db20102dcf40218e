"""The backend's bookkeeping: configuration, placeholders, variables, constants, values."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import kcomp.backend as K
from kcomp.ir.graph import Tensor


def test_configuration_roundtrip():
    assert K.backend() == "kcomp"
    old = K.floatx(), K.epsilon(), K.image_data_format()
    try:
        K.set_floatx("float64")
        assert K.floatx() == "float64"
        assert K.placeholder((2,)).dtype == "float64"
        assert K.variable([1, 2]).dtype == "float64"
        assert K.cast_to_floatx([1, 2]).dtype == np.float64
        K.set_epsilon(1e-5)
        assert K.epsilon() == 1e-5
        K.set_image_data_format("channels_first")
        assert K.image_data_format() == "channels_first"
        assert K.normalize_data_format(None) == "channels_first"
        assert K.normalize_data_format("Channels_Last") == "channels_last"
        with pytest.raises(ValueError):
            K.set_floatx("int8")
        with pytest.raises(ValueError):
            K.set_image_data_format("nchw")
        with pytest.raises(ValueError):
            K.normalize_data_format("nhwc")
    finally:
        K.set_floatx(old[0])
        K.set_epsilon(old[1])
        K.set_image_data_format(old[2])


def test_keras_json_is_read_like_keras(tmp_path):
    home = tmp_path / "keras"
    home.mkdir()
    (home / "keras.json").write_text(json.dumps({"floatx": "float16", "epsilon": 0.01,
                                                 "image_data_format": "channels_first",
                                                 "backend": "kcomp.backend"}))
    code = "import kcomp.backend as K; print(K.floatx(), K.epsilon(), K.image_data_format())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, KERAS_HOME=str(home)))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["float16", "0.01", "channels_first"]
    assert sorted(os.listdir(home)) == ["keras.json"]  # kcomp never writes Keras's files


def test_uids_scopes_learning_phase():
    K.reset_uids()
    assert [K.get_uid("dense"), K.get_uid("dense"), K.get_uid("conv")] == [1, 2, 1]
    K.reset_uids()
    assert K.get_uid("dense") == 1
    with K.name_scope("block"):
        with K.name_scope("inner"):
            v = K.variable(1.0, name="w")
    assert v.name == "block/inner/w"
    lp = K.learning_phase()
    assert isinstance(lp, Tensor) and lp.dtype == "uint8" and lp.ndim == 0
    x = K.placeholder((2,))
    f = K.function([x, lp], [x * K.cast(lp, "float32")])
    np.testing.assert_array_equal(f([np.ones(2), 1])[0], [1, 1])
    g = K.function([x], [x * K.cast(lp, "float32")])  # not fed: the default, 0 (test)
    np.testing.assert_array_equal(g([np.ones(2)])[0], [0, 0])
    K.set_learning_phase(1)
    assert K.learning_phase() == 1
    with pytest.raises(ValueError):
        K.set_learning_phase(2)
    K.clear_session()
    assert isinstance(K.learning_phase(), Tensor)
    K.manual_variable_initialization(True)
    K.manual_variable_initialization(False)


def test_placeholders_and_predicates():
    x = K.placeholder(ndim=3, dtype="int32", name="ids")
    assert K.int_shape(x) == (None, None, None) and x.dtype == "int32"
    assert x._keras_shape == (None, None, None) and x._uses_learning_phase is False
    assert K.is_placeholder(x) and K.is_tensor(x) and not K.is_variable(x)
    s = K.placeholder((None, 4), sparse=True)
    assert K.is_sparse(s) and not K.is_sparse(x)
    with pytest.raises(ValueError):
        K.placeholder()
    v = K.variable(np.arange(6).reshape(2, 3), dtype="float64", name="v")
    assert K.is_variable(v) and not K.is_placeholder(v) and v.name == "v"
    assert K.is_keras_tensor(v) is False
    v._keras_history = ("layer", 0, 0)  # Keras annotates tensors freely
    assert K.is_keras_tensor(v)
    with pytest.raises(ValueError):
        K.is_keras_tensor(np.zeros(2))
    c = K.constant(2.5, shape=(2, 2))
    np.testing.assert_array_equal(K.eval(c), np.full((2, 2), 2.5, np.float32))
    np.testing.assert_array_equal(K.eval(K.constant([1, 2, 3, 4], shape=(2, 2), dtype="int64")),
                                  [[1, 2], [3, 4]])


def test_values():
    v = K.variable(np.array([[1, 2], [3, 4]]))
    assert v.dtype == "float32"
    got = K.get_value(v)
    got[0, 0] = 99  # a copy
    np.testing.assert_array_equal(K.get_value(v), [[1, 2], [3, 4]])
    K.set_value(v, [[5, 6], [7, 8]])
    np.testing.assert_array_equal(K.eval(v), [[5, 6], [7, 8]])
    with pytest.raises(ValueError, match="shape"):
        K.set_value(v, np.zeros(3))
    w = K.variable(0.0)
    K.batch_set_value([(v, np.ones((2, 2))), (w, 3)])
    a, b = K.batch_get_value([v, w])
    np.testing.assert_array_equal(a, np.ones((2, 2)))
    assert b == 3.0
    assert K.eval(K.sum(v * 2)) == 8.0
    assert K.get_value(K.variable(K.constant([1.0, 2.0]) * 3)).tolist() == [3.0, 6.0]


def test_construction():
    z, o, e = K.zeros((2, 3)), K.ones((2, 3), dtype="int32"), K.eye((2, 3))
    np.testing.assert_array_equal(K.eval(z), np.zeros((2, 3)))
    assert o.dtype == "int32" and K.eval(o).sum() == 6
    np.testing.assert_array_equal(K.eval(e), np.eye(2, 3))
    np.testing.assert_array_equal(K.eval(K.eye(3)), np.eye(3))
    x = K.placeholder((None, 3))
    f = K.function([x], [K.zeros_like(x), K.ones_like(x, dtype="int64"), K.identity(x),
                         K.cast(x, "int32")])
    a = np.array([[1.5, -2.5, 3.0]], np.float32)
    zl, ol, ident, cast = f([a])
    assert zl.shape == (1, 3) and not zl.any()
    assert ol.dtype == np.int64 and ol.sum() == 3
    np.testing.assert_array_equal(ident, a)
    np.testing.assert_array_equal(cast, [[1, -2, 3]])
    # like TensorFlow, zeros_like / ones_like keep x's dtype unless told otherwise
    for dt in ("float64", "int32", "bool"):
        t = K.placeholder((2,), dtype=dt)
        assert K.zeros_like(t).dtype == dt and K.ones_like(t).dtype == dt
    assert K.identity(x) is not x  # Keras annotates its result; it must be a new tensor
    assert K.count_params(K.zeros((4, 5))) == 20


def test_tensor_protocol():
    x = K.placeholder((2, 3))
    with pytest.raises(TypeError):
        bool(x)
    with pytest.raises(TypeError):
        np.asarray(x)
    assert len(x) == 2 and len(list(x)) == 2
    assert (np.float32(2) * x).node.op.name == "mul"  # numpy defers to the tensor
    assert x == x and x != K.placeholder((2, 3))  # identity, so tensors work in sets and dicts
    assert {x: 1}[x] == 1


def test_pending_names_raise_clearly():
    from kcomp.backend.api import NAMES
    for name in NAMES:
        assert hasattr(K, name), name
    for name in K.PENDING:
        fn = getattr(K, name)
        assert fn.__kcomp_pending__
        with pytest.raises(NotImplementedError, match=f"K.{name} is not implemented"):
            fn()


def test_sparse_placeholders_take_scipy_matrices():
    scipy_sparse = pytest.importorskip("scipy.sparse")
    x = K.placeholder((None, 4), sparse=True)
    w = K.variable(np.arange(8, dtype=np.float32).reshape(4, 2))
    f = K.function([x], [K.dot(K.to_dense(x), w), K.to_dense(x)])
    m = scipy_sparse.csr_matrix(np.array([[0, 1, 0, 2], [3, 0, 0, 0], [0, 0, 0, 0]], np.float32))
    prod, dense = f([m])
    np.testing.assert_array_equal(dense, m.toarray())
    np.testing.assert_array_equal(prod, m.toarray() @ K.get_value(w))
    v = K.variable(scipy_sparse.eye(3, format="coo"))
    np.testing.assert_array_equal(K.get_value(v), np.eye(3))
    d = K.placeholder((2,))
    assert K.to_dense(d) is d


PRINT_SCRIPT = """
import numpy as np, kcomp.backend as K
x = K.placeholder((None, 2))
y = K.print_tensor(x * 2, message='doubled: */"\\n%s')
f = K.function([x], [y + 1])
print(f([np.array([[1.0, 2.0]])])[0].tolist())
"""


def test_print_tensor_prints_when_the_function_runs():
    out = subprocess.run([sys.executable, "-c", PRINT_SCRIPT], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[[3.0, 5.0]]"
    assert 'doubled: */"\n%s [[2. 4.]]' in out.stderr


def test_keras_details():
    """Small things Keras's own tests rely on."""
    x = K.placeholder((None, 2))
    assert K.dtype(K.dropout(x, 0.5)) == "float32"  # no float64 from Python scalars
    from kcomp.ir import build
    assert build.select(K.greater(x, 0), 1.0, 0.0).dtype == "float32"  # where(c, 1.0, 0.0)
    assert K.get_variable_shape(K.variable(np.zeros((3, 4)))) == (3, 4)
    y = K.repeat_elements(K.placeholder((2, None, 4)), 3, axis=1)
    assert y._keras_shape == K.int_shape(y) == (2, None, 4)
    v = K.variable(np.arange(6.0).reshape(3, 2))
    i = K.placeholder((), dtype="int32")
    f = K.function([i], [v[i], v[i, 1]])
    np.testing.assert_array_equal(f([1])[0], [2, 3])
    row, item = f([-1])  # negative indices count from the end
    np.testing.assert_array_equal(row, [4, 5])
    assert item == 5
    with pytest.raises(IndexError, match="out of range"):
        f([3])
    scipy_sparse = pytest.importorskip("scipy.sparse")
    a = K.variable(scipy_sparse.eye(2, format="csr"))
    assert K.is_sparse(K.concatenate([a, a])) and not K.is_sparse(K.concatenate([a, v], axis=0))
