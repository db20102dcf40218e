"""kcomp: a compiling Keras 2 backend.

    import kcomp.backend as K
    x = K.placeholder((None, 3))
    f = K.function([x], [K.sum(K.exp(x), axis=1)])
    f([np.ones((2, 3), np.float32)])

The backend API records an IR graph; `function` optimizes it, lowers it to C++ through Jinja
templates, builds it with CMake + Ninja into a cached shared library and calls it natively.
"""
__version__ = "0.1.0"


def function(inputs, outputs, updates=None, name=None, **kwargs):
    from .function import function as _function
    return _function(inputs, outputs, updates, name, **kwargs)


def set_device(name):
    """'cpu' or 'cuda': where functions compiled from now on run (kcomp/device.py)."""
    from .device import set_device as _set
    _set(name)


def get_device() -> str:
    from .device import get_device as _get
    return _get()


def native():
    """kcomp._runtime, the native runtime built at install time."""
    try:
        from . import _runtime
    except ImportError as e:
        raise ImportError(
            "kcomp's native runtime (kcomp._runtime) is missing: this kcomp is an unbuilt source "
            "tree. Install it (pip install ., or pip install --no-build-isolation -e . for "
            "development) and run Python outside the source directory.") from e
    return _runtime
