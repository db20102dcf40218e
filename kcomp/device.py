"""Which device compiled functions run on: 'cpu' (default) or 'cuda'.

Chosen, first match wins, by `kcomp.set_device(...)`, the environment variable KCOMP_DEVICE, or the
"kcomp_device" field of keras.json ($KERAS_HOME/keras.json, else ~/.keras/keras.json). The device
is read when a function is compiled: a function keeps the device it was compiled for. Asking for
'cuda' where there is no GPU raises CudaUnavailableError when the first function compiles; the
CPU never needs CUDA.
"""
from __future__ import annotations

import functools
import json
import os

DEVICES = ("cpu", "cuda")
_chosen: str | None = None


def _check(name, where: str) -> str:
    name = str(name).strip().lower()
    if name.startswith("cuda:"):  # one GPU: cuda:0 is the only one kcomp uses
        if name != "cuda:0":
            raise ValueError(f"{where}: kcomp uses one GPU, cuda:0; got {name!r}")
        name = "cuda"
    if name not in DEVICES:
        raise ValueError(f"{where}: unknown device {name!r}; expected one of {DEVICES}")
    return name


def set_device(name: str | None) -> None:
    """Compile the functions created from now on for `name` ('cpu' or 'cuda'); None goes back
    to the environment's choice."""
    global _chosen
    _chosen = None if name is None else _check(name, "kcomp.set_device")


def _keras_json_device():
    from .backend.config import keras_dir
    path = os.path.join(os.path.expanduser(keras_dir()), "keras.json")
    try:
        st = os.stat(path)
    except OSError:
        return None
    return _read_device(path, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=8)
def _read_device(path: str, mtime_ns: int, size: int):
    """keras.json's "kcomp_device", read again only when the file changes (every compile asks)."""
    try:
        with open(path) as f:
            cfg = json.load(f)
    except (OSError, ValueError):
        return None
    return cfg.get("kcomp_device") if isinstance(cfg, dict) else None


def get_device() -> str:
    if _chosen is not None:
        return _chosen
    env = os.environ.get("KCOMP_DEVICE", "").strip()
    if env:
        return _check(env, "KCOMP_DEVICE")
    cfg = _keras_json_device()
    return _check(cfg, "keras.json kcomp_device") if cfg else "cpu"
