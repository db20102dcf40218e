"""tests/keras2: real Keras 2.3.1 on kcomp.

KERAS_BACKEND must name kcomp before Keras is first imported, and Keras reads (and on first use
writes) $KERAS_HOME/keras.json when it is imported: both are set here, at import time, before
pytest imports the test modules of this directory. KERAS_HOME is a private, empty directory, so
a user's keras.json (channels_first, float64, ...) cannot change what the tests see.

Without Keras installed (pip install '.[test]' installs it), this directory is skipped.
"""
import atexit
import importlib.util
import os
import shutil
import tempfile

import pytest

HAVE_KERAS = importlib.util.find_spec("keras") is not None

if HAVE_KERAS:
    os.environ["KERAS_BACKEND"] = "kcomp.backend"
    _keras_home = tempfile.mkdtemp(prefix="kcomp-keras-home-")
    os.environ["KERAS_HOME"] = _keras_home
    atexit.register(shutil.rmtree, _keras_home, True)
else:
    collect_ignore_glob = ["test_*.py"]


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "network: needs PyPI (or a cached download); skipped when neither is there")


@pytest.fixture(autouse=True)
def _keras_session():
    """Each test starts from Keras's defaults: uids, learning phase and floatx are reset."""
    if not HAVE_KERAS:
        yield
        return
    import kcomp.backend
    from keras import backend as K
    floatx = K.floatx()
    yield
    K.set_floatx(floatx)
    kcomp.backend.clear_session()
