"""The precompiled header of kcomp's runtime headers (kcomp/jit/pch.py): built once per cache in
the background, used by later builds (GCC reads it: -H marks it '!'), and never a reason for a
build to fail."""
import dataclasses
import os
import subprocess
import time

import numpy as np
import pytest

import kcomp.backend as K
from kcomp.jit import pch
from kcomp.jit.toolchain import toolchain

pytestmark = pytest.mark.skipif(not toolchain().compiler.startswith("GNU"),
                                reason="precompiled headers are built for GCC only")


def _new_function(k: float):
    x = K.placeholder((None, 5))
    f = K.function([x], [K.softmax(K.tanh(x) * k)])
    v = np.linspace(-1, 1, 10, dtype=np.float32).reshape(2, 5)
    e = np.exp(np.tanh(v) * k)
    np.testing.assert_allclose(f([v])[0], e / e.sum(-1, keepdims=True), rtol=1e-5)


def _ready(tc, seconds=120.0) -> str:
    """The precompiled header's directory, once the build the last function started is done."""
    t = time.monotonic()
    while time.monotonic() - t < seconds:
        d = pch.include_dir(tc)
        if d is not None:
            return d
        time.sleep(0.2)
    raise AssertionError("the precompiled header was not built")


def test_built_once_then_used(fresh_cache):
    tc = toolchain()
    _new_function(1.0)  # starts the background build
    d = _ready(tc)
    gch = os.path.join(d, "kcomp", "prelude.h.gch")
    assert not [n for n in os.listdir(os.path.dirname(gch)) if n != "prelude.h.gch"]
    # GCC takes it for the flags generated code is compiled with ('!': a valid PCH)
    src = os.path.join(fresh_cache, "probe.cpp")
    with open(src, "w") as f:
        f.write('#include "kcomp/prelude.h"\nint kc_probe_fn() { return 0; }\n')
    p = subprocess.run([tc.cxx, *tc.flags, f"-I{d}", f"-I{tc.include_dir}", "-H", "-c", src,
                        "-o", os.devnull], capture_output=True, text=True)
    assert p.returncode == 0 and f"! {gch}" in p.stderr.splitlines()[0], p.stderr[:500]
    _new_function(2.0)
    builds = [os.path.join(r, "build.ninja") for r, _, fs in os.walk(fresh_cache)
              if "build.ninja" in fs]
    assert sum(f"-I{d}" in open(b).read() for b in builds) == 1


def test_a_damaged_one_is_dropped(fresh_cache):
    tc = toolchain()
    _new_function(3.0)
    gch = os.path.join(_ready(tc), "kcomp", "prelude.h.gch")
    with open(gch, "r+b") as f:  # truncated: GCC fails reading it
        f.truncate(4096)
    _new_function(4.0)
    assert not os.path.exists(gch)  # dropped; the function was built without it


def test_off(fresh_cache, monkeypatch):
    monkeypatch.setenv("KCOMP_PCH", "0")
    _new_function(5.0)
    assert not os.path.exists(os.path.join(fresh_cache, "pch"))


def test_one_build_at_a_time(fresh_cache):
    tc = toolchain()
    gch = pch._path(tc)
    os.makedirs(os.path.dirname(gch))
    open(gch + ".building", "w").close()  # another process is building it
    pch.prepare(tc)
    assert pch.include_dir(tc) is None and pch.building(fresh_cache)
    time.sleep(1.0)
    assert os.listdir(os.path.dirname(gch)) == ["prelude.h.gch.building"]


def test_old_ones_are_pruned(fresh_cache):
    """Headers of other toolchains or kcomp versions: the newest KEEP are kept."""
    tc = toolchain()
    root = os.path.dirname(pch._dir(tc))
    for i in range(5):
        os.makedirs(os.path.join(root, f"old{i}", "kcomp"))
        os.utime(os.path.join(root, f"old{i}"), (1000 + i, 1000 + i))
    pch.prepare(tc)
    left = sorted(os.listdir(root))
    assert len(left) == pch.KEEP and "old4" in left and "old3" in left, left


def test_a_toolchain_that_cannot_precompile_is_not_asked_again(fresh_cache):
    tc = dataclasses.replace(toolchain(), flags=toolchain().flags + ("-fno-such-flag-kcomp",))
    gch = pch._path(tc)
    pch.prepare(tc)
    t = time.monotonic()
    while not os.path.exists(gch + ".failed") and time.monotonic() - t < 60:
        time.sleep(0.1)
    assert os.path.exists(gch + ".failed") and not os.path.exists(gch)
    pch.prepare(tc)
    assert not os.path.exists(gch + ".building")
