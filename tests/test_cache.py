"""The compile cache across processes: reuse without compiling, recovery from corruption,
concurrent first builds, failed and interrupted builds, permissions, hostile names."""
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import kcomp.backend as K
from kcomp.jit.cache import Cache, CacheError, default_cache
from kcomp.jit.ninja_build import CompileError

# Builds a function made unique by `tag` and prints what K.function did.
CHILD = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    import kcomp.backend as K
    tag = float(sys.argv[1])
    if len(sys.argv) > 2:  # wait for the start signal, so that processes race
        while not __import__("os").path.exists(sys.argv[2]):
            time.sleep(0.001)
    x = K.placeholder((None, 5))
    f = K.function([x], [K.tanh(x * tag) + K.sum(x, 1, keepdims=True)])
    a = np.arange(10, dtype=np.float32).reshape(2, 5)
    out = f([a])[0]
    expect = np.tanh(a * np.float32(tag)) + a.sum(1, keepdims=True)
    assert np.allclose(out, expect, rtol=1e-6), (out, expect)
    print(json.dumps(f.compile_info))
""")


def child(tag, *extra, env=None, **kw):
    return subprocess.run([sys.executable, "-c", CHILD, str(tag), *extra], capture_output=True,
                          text=True, env=dict(os.environ, **(env or {})), **kw)


def info_of(p):
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_second_process_does_not_compile(fresh_cache):
    first = info_of(child(1.25))
    second = info_of(child(1.25))
    assert not first["cache_hit"] and second["cache_hit"]
    assert first["key"] == second["key"]  # the key is stable across processes
    assert "build" in first["timings"] and second["timings"]["build"] < 0.05
    entries = Cache(fresh_cache).entries()
    assert [e.key for e in entries] == [first["key"]]


@pytest.mark.parametrize("damage", ["truncate", "garble-meta", "wrong-key", "flip-byte"])
def test_corrupted_entry_is_rebuilt(fresh_cache, damage):
    key = info_of(child(2.5))["key"]
    cache = Cache(fresh_cache)
    entry = cache.lookup(key)
    if damage == "truncate":
        with open(entry.lib, "r+b") as f:
            f.truncate(100)
    elif damage == "garble-meta":
        with open(os.path.join(entry.path, "meta.json"), "w") as f:
            f.write("{not json")
    elif damage == "wrong-key":
        meta = dict(entry.meta, key="0" * 64)
        with open(os.path.join(entry.path, "meta.json"), "w") as f:
            json.dump(meta, f)
    else:
        with open(entry.lib, "r+b") as f:
            f.seek(os.path.getsize(entry.lib) // 2)
            b = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([b[0] ^ 0xFF]))
    again = info_of(child(2.5))
    assert not again["cache_hit"] and again["key"] == key  # rebuilt, same key
    quarantined = os.listdir(os.path.join(fresh_cache, "v1", "quarantine"))
    assert len(quarantined) == 1 and quarantined[0].startswith(key)
    assert info_of(child(2.5))["cache_hit"]  # and the rebuilt entry is good


def test_concurrent_first_builds_build_once(fresh_cache, tmp_path):
    info_of(child(0.5))  # probe the toolchain first: the race is about the function
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, "3.75", str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(6)]
    time.sleep(1.0)  # let them all import and wait at the start line
    go.touch()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert sum(not r["cache_hit"] for r in results) == 1
    assert len({r["key"] for r in results}) == 1
    assert os.listdir(os.path.join(fresh_cache, "v1", "tmp")) == []


def test_failed_build_leaves_nothing_and_names_the_source(fresh_cache, monkeypatch):
    from kcomp import compiler
    real = compiler.render
    monkeypatch.setattr(compiler, "render",
                        lambda *a, **k: real(*a, **k) + "\n#error injected failure\n")
    x = K.placeholder((3,))
    with pytest.raises(CompileError) as e:
        K.function([x], [x * 7.5])
    msg = str(e.value)
    assert "injected failure" in msg and e.value.source in msg
    assert os.path.exists(e.value.source) and "#error injected failure" in open(e.value.source).read()
    cache = Cache(fresh_cache)
    assert cache.entries() == []
    assert os.listdir(os.path.join(fresh_cache, "v1", "tmp")) == []


def test_interrupted_build_leaves_nothing(fresh_cache, tmp_path):
    """A builder killed mid-compile leaves no entry and no held lock; the next process builds."""
    wrapper = tmp_path / "slow-c++"
    wrapper.write_text('#!/bin/sh\ncase "$*" in *source.cpp*) [ -n "$KC_TEST_SLOW" ] && '
                       'sleep 60;; esac\nexec c++ "$@"\n')
    wrapper.chmod(0o755)
    env = {"KCOMP_CXX": str(wrapper)}
    info_of(child(0.5, env=env))  # probe this toolchain
    p = subprocess.Popen([sys.executable, "-c", CHILD, "4.5"], env=dict(os.environ, KC_TEST_SLOW="1", **env),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    tmp = os.path.join(fresh_cache, "v1", "tmp")
    deadline = time.time() + 60
    while not (os.path.isdir(tmp) and any(os.path.exists(os.path.join(tmp, d, "source.cpp"))
                                           for d in os.listdir(tmp))):
        assert time.time() < deadline and p.poll() is None, "the build never started"
        time.sleep(0.02)
    time.sleep(0.3)
    p.send_signal(signal.SIGKILL)
    p.wait()
    entries_before = Cache(fresh_cache).entries()
    after = info_of(child(4.5, env=env))  # same key: must not wait for the dead builder
    assert not after["cache_hit"]
    assert len(entries_before) == 1  # only the probe child's function; nothing half-built
    assert os.listdir(tmp) == []     # the dead builder's directory was cleaned up


def test_cache_directory_must_be_private(tmp_path, monkeypatch):
    root = tmp_path / "shared"
    root.mkdir()
    root.chmod(0o777)
    with pytest.raises(CacheError, match="writable by other users"):
        Cache(str(root))
    fresh = tmp_path / "new"
    Cache(str(fresh))
    assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o700
    monkeypatch.setenv("KCOMP_CACHE_DIR", str(root))
    x = K.placeholder((2,))
    with pytest.raises(CacheError):
        K.function([x], [x * 123.0])


def test_cache_location_defaults(monkeypatch, tmp_path):
    from kcomp import config
    monkeypatch.delenv("KCOMP_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert config.cache_dir() == str(tmp_path / "xdg" / "kcomp")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert config.cache_dir() == str(tmp_path / "home" / ".cache" / "kcomp")


HOSTILE = ['a"b', "*/ int main() { return 1; } /*", "line\nbreak", "int", "return", "ñame",
           "back\\slash", "%s%n", "x" * 500, "", "??=", "@@KCOMP_KEY@@"]


def test_hostile_names_compile_and_run():
    inputs = [K.placeholder((None, 2), name=n) for n in HOSTILE]
    vs = [K.variable(np.full(2, i, np.float32), name=n) for i, n in enumerate(HOSTILE)]
    outs = [K.identity(x * v, name=n) for x, v, n in zip(inputs, vs, HOSTILE)]
    f = K.function(inputs, outs, name="*/\n#error x")
    arrays = [np.full((3, 2), i + 1, np.float32) for i in range(len(HOSTILE))]
    for i, got in enumerate(f(arrays)):
        np.testing.assert_array_equal(got, np.full((3, 2), (i + 1) * i))
    src = open(f.source_path).read()
    for n in HOSTILE + ["*/\n#error x"]:
        if len(n) > 3 and not n.isidentifier():  # words like "return" occur in any source
            assert n not in src, f"user text {n!r} reached the generated source"
    with pytest.raises(ValueError, match=r"input '\*/ int main\(\) \{ return 1; \} /\*'"):
        f(arrays[:1] + [np.zeros((3, 3), np.float32)] + arrays[2:])


def test_size_and_clear(fresh_cache):
    info_of(child(5.5))
    cache = default_cache()
    assert len(cache.entries()) == 1 and cache.size_bytes() > 0
    assert cache.clear() == 1
    assert cache.entries() == []
