"""Unmodified Keras 2.3.1 loads kcomp as its backend (KERAS_BACKEND or keras.json)."""
import json
import os
import subprocess
import sys
import textwrap

import importlib.util

import pytest

# importing keras here would load its default backend; only check that it is installed
pytestmark = pytest.mark.skipif(importlib.util.find_spec("keras") is None,
                                reason="Keras 2.3.1 is not installed (pip install '.[test]')")

SCRIPT = textwrap.dedent("""
    import collections, numpy as np
    import keras
    from keras import backend as K
    import kcomp.backend
    assert K.backend() == "kcomp.backend", K.backend()
    assert K.floatx is keras.backend.common.floatx  # Keras keeps its own configuration...
    x = K.placeholder((None, 3))
    w = K.variable(np.eye(3) * 2)
    f = K.function([x], [K.softmax(K.dot(x, w)), K.sum(x, axis=1)])
    y, s = f([np.array([[1.0, 2.0, 3.0]])])
    e = np.exp([2.0, 4.0, 6.0]); assert np.allclose(y, e / e.sum()), y
    assert s.tolist() == [6.0]
    K.set_floatx("float64")                             # ...and kcomp follows it
    assert kcomp.backend.floatx() == "float64"
    assert K.variable([1]).dtype == "float64" and K.placeholder((2,)).dtype == "float64"
    assert collections.Mapping is collections.abc.Mapping
    pending = [n for n in kcomp.backend.PENDING]
    for name in pending:  # names kcomp lacks still exist, and say so when called
        try:
            getattr(K, name)()
        except NotImplementedError as e:
            assert name in str(e)
    print("OK")
""")


def run_keras(env):
    return subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          env=dict(os.environ, **env), timeout=300)


def test_keras_loads_kcomp_from_the_environment(tmp_path):
    out = run_keras({"KERAS_BACKEND": "kcomp.backend", "KERAS_HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("OK")
    assert "Using kcomp.backend backend." in out.stderr


def test_keras_loads_kcomp_from_keras_json(tmp_path):
    (tmp_path / "keras.json").write_text(json.dumps({
        "floatx": "float32", "epsilon": 1e-07, "backend": "kcomp.backend",
        "image_data_format": "channels_last"}))
    env = {"KERAS_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         env={k: v for k, v in dict(os.environ, **env).items()
                              if k != "KERAS_BACKEND"}, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("OK")


def test_saved_models_load_when_kcomp_was_imported_before_keras(tmp_path):
    """h5py 3's str attributes get their .decode() also when kcomp comes first (a program that
    imports kcomp.backend itself, then Keras)."""
    script = textwrap.dedent(f"""
        import kcomp.backend
        import keras, numpy as np
        m = keras.models.Sequential([keras.layers.Dense(2, input_shape=(3,))])
        m.save({str(tmp_path / 'm.h5')!r})
        m2 = keras.models.load_model({str(tmp_path / 'm.h5')!r})
        x = np.ones((1, 3))
        assert np.allclose(m.predict(x), m2.predict(x))
        print("OK")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=dict(os.environ, KERAS_BACKEND="kcomp.backend",
                                  KERAS_HOME=str(tmp_path)), timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("OK")
