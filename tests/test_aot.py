"""Ahead-of-time artifacts: round trips, loading without a compiler, integrity and ABI checks,
interrupted builds, the CLI and a real C++ consumer built with CMake."""
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import kcomp.aot as aot
import kcomp.backend as K
from kcomp.aot import tensorfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def mlp():
    rng = np.random.default_rng(70)
    x = K.placeholder((None, 20), name="features")
    w1, b1 = K.variable(rng.standard_normal((20, 32)) * 0.2), K.variable(rng.standard_normal(32) * 0.1)
    w2, b2 = K.variable(rng.standard_normal((32, 5)) * 0.2), K.variable(rng.standard_normal(5) * 0.1)
    y = K.softmax(K.dot(K.relu(K.dot(x, w1) + b1), w2) + b2)
    return K.function([x], [y, K.argmax(y)], name="predict")


def lstm():
    rng = np.random.default_rng(71)
    units = 8
    x = K.placeholder((None, 6, 3))
    W, U = K.variable(rng.standard_normal((3, 4 * units)) * 0.3), K.variable(rng.standard_normal((units, 4 * units)) * 0.3)
    b = K.variable(np.zeros(4 * units))

    def step(inp, states):
        h, c = states
        z = K.dot(inp, W) + K.dot(h, U) + b
        i, f, g, o = (z[:, k * units:(k + 1) * units] for k in range(4))
        c = K.sigmoid(f) * c + K.sigmoid(i) * K.tanh(g)
        h = K.sigmoid(o) * K.tanh(c)
        return h, [h, c]

    zeros = K.zeros_like(K.sum(x, axis=(1, 2)))[:, None] * K.zeros((1, units))
    last, seq, _ = K.rnn(step, x, [zeros, zeros])
    return K.function([x], [last, seq], name="encode")


def stateful_counter():
    n = K.variable(0.0, name="calls")
    x = K.placeholder((2,))
    return K.function([x], [x + n], updates=[K.update_add(n, 1.0)], name="count")


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    out = tmp_path_factory.mktemp("artifacts")
    fns = {"predict": mlp(), "encode": lstm(), "count": stateful_counter()}
    aot.build(fns, str(out / "models"), name="models", quiet=True)
    aot.build({"predict": fns["predict"]}, str(out / "embedded"), name="emb",
              weights="embedded", quiet=True)
    return out, fns


def test_round_trips_match_the_jit(artifacts):
    out, fns = artifacts
    art = aot.load(str(out / "models"))
    emb = aot.load(str(out / "embedded"))
    rng = np.random.default_rng(72)
    for batch in (1, 7):
        x = rng.standard_normal((batch, 20)).astype(np.float32)
        s = rng.standard_normal((batch, 6, 3)).astype(np.float32)
        for got, want in zip(art.functions["predict"]([x]), fns["predict"]([x])):
            np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(emb([x])[0], fns["predict"]([x])[0])
        for got, want in zip(art.functions["encode"]([s]), fns["encode"]([s])):
            np.testing.assert_array_equal(got, want)
    count = art.functions["count"]
    np.testing.assert_array_equal(count([np.zeros(2)])[0], [0, 0])
    np.testing.assert_array_equal(count([np.zeros(2)])[0], [1, 1])  # its own variable, updated
    m = art.manifest
    assert m["isa"]["level"] == "x86-64-v3" and "-march=x86-64-v3" in m["flags"]
    assert [f["name"] for f in m["functions"]] == ["predict", "encode", "count"]
    # exactly these files, each with its sha256 (no build leftovers such as .ninja_log)
    on_disk = {os.path.relpath(os.path.join(r, n), out / "models")
               for r, _, names in os.walk(out / "models") for n in names}
    assert set(m["files"]) == on_disk - {"manifest.json"} == {
        "include/kcomp/abi.h", "include/models.h", "lib/cmake/models/modelsConfig.cmake",
        "lib/libkcomp_kernels.so", "lib/libmodels.so", "src/build.ninja", "src/f0.cpp",
        "src/f1.cpp", "src/f2.cpp", "src/isa.cpp", "src/model.cpp", "weights.bin"}
    assert m["functions"][0]["inputs"] == [{"name": "features", "dtype": "float32",
                                            "shape": [None, 20]}]
    with pytest.raises(ValueError, match="input 'features'"):
        art.functions["predict"]([np.zeros((2, 3), np.float32)])


def test_artifacts_hold_the_source_the_jit_compiles(artifacts):
    """Same passes, same templates: each function's generated source (before its key, which
    covers the toolchain, is filled in) is byte for byte the JIT's."""
    import hashlib
    from kcomp.lowering.render import KEY_SLOT
    out, fns = artifacts
    m = aot.load(str(out / "models")).manifest
    for spec in m["functions"]:
        fn = fns[spec["name"]]
        with open(fn.source_path) as f:
            jit = f.read().replace(fn.compile_info["key"], KEY_SLOT)
        assert hashlib.sha256(jit.encode()).hexdigest() == spec["source_sha256"]
        with open(out / "models" / "src" / f"f{m['functions'].index(spec)}.cpp") as f:
            assert f.read().replace(spec["key"], KEY_SLOT) == jit


def test_single_outputs_rebuilds_in_place_and_debug_mode(tmp_path, monkeypatch):
    x = K.placeholder((None, 3), name="x")
    one = K.function([x], K.sum(x * 2.0, axis=-1), name="double")  # one tensor, not a list
    path = str(tmp_path / "art")
    aot.build(one, path, name="art", quiet=True)
    a = aot.load(path)
    v = np.arange(6, dtype=np.float32).reshape(2, 3)
    got = a([v])
    assert isinstance(got, np.ndarray)  # returned alone, as the JIT function returns it
    np.testing.assert_array_equal(got, one([v]))
    # rebuilt in place and loaded again by this process: the new code runs, not the library
    # the dynamic loader still holds for that path
    y = K.placeholder((None, 3), name="x")
    other = K.function([y], [K.max(y * -3.0, axis=-1), y + 1.0], name="triple")
    aot.build(other, path, name="art", quiet=True, force=True)
    b = aot.load(path)
    for got, want in zip(b([v]), other([v])):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(a([v]), one([v]))  # the first load still runs its own code
    assert list(b.functions) == ["triple"] and os.listdir(tmp_path) == ["art"]
    monkeypatch.setenv("KCOMP_MODE", "debug")
    with pytest.warns(UserWarning, match="KCOMP_MODE=debug does not apply to artifacts"):
        c = aot.load(path)
    np.testing.assert_array_equal(c([v])[1], v + 1.0)


LOAD_SCRIPT = textwrap.dedent("""
    import sys, time, numpy as np, kcomp.aot as aot
    t = time.perf_counter()
    art = aot.load(sys.argv[1])
    seconds = time.perf_counter() - t
    y = art([np.ones((2, 20), np.float32)])[0]
    print(seconds, y.shape)
""")


def test_loads_without_a_compiler(artifacts, tmp_path):
    out, _ = artifacts
    bare = tmp_path / "bin"  # a PATH with no compiler, cmake or ninja on it
    bare.mkdir()
    env = dict(os.environ, PATH=str(bare), KCOMP_CXX="/nonexistent/c++",
               KCOMP_CACHE_DIR=str(tmp_path / "empty-cache"))
    p = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, str(out / "models")],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    seconds, shape = p.stdout.split(maxsplit=1)
    assert shape.strip() == "(2, 5)"
    assert not os.path.exists(tmp_path / "empty-cache" / "toolchains")  # nothing was probed


def _copy(src, dst):
    shutil.copytree(src, dst, symlinks=True)
    return str(dst)


def test_corruption_and_abi_mismatch_are_refused(artifacts, tmp_path):
    out, _ = artifacts
    w = _copy(out / "models", tmp_path / "weights")
    with open(os.path.join(w, "weights.bin"), "r+b") as f:
        f.seek(100)
        f.write(b"\xff")
    with pytest.raises(aot.ArtifactError, match="weights.bin is corrupted or was replaced"):
        aot.load(w)
    lib = _copy(out / "models", tmp_path / "lib")
    with open(os.path.join(lib, "lib", "libmodels.so"), "ab") as f:
        f.write(b"\0")
    with pytest.raises(aot.ArtifactError, match="libmodels.so is corrupted"):
        aot.load(lib)
    abi = _copy(out / "models", tmp_path / "abi")
    m = json.load(open(os.path.join(abi, "manifest.json")))
    m["abi_version"] = 999
    json.dump(m, open(os.path.join(abi, "manifest.json"), "w"))
    with pytest.raises(aot.ArtifactError, match=r"for ABI 999; this kcomp speaks ABI \d+"):
        aot.load(abi)
    cpu = _copy(out / "models", tmp_path / "cpu")
    m = json.load(open(os.path.join(cpu, "manifest.json")))
    m["isa"]["features"].append("avx9000")
    json.dump(m, open(os.path.join(cpu, "manifest.json"), "w"))
    with pytest.raises(aot.ArtifactError, match="this CPU lacks avx9000"):
        aot.load(cpu)
    with pytest.raises(aot.ArtifactError, match="no manifest.json"):
        aot.load(str(tmp_path))


def test_failed_and_interrupted_builds_leave_no_artifact(tmp_path, monkeypatch):
    from kcomp import compiler
    x = K.placeholder((3,))
    fn = K.function([x], [x * 4.25])
    real = compiler.render
    monkeypatch.setattr(compiler, "render",
                        lambda *a, **k: real(*a, **k) + "\n#error injected\n")
    with pytest.raises(aot.BuildError, match="injected"):
        aot.build(fn, str(tmp_path / "broken"), quiet=True)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []  # neither the artifact nor its build directory
    # a build killed halfway: a slow compiler, SIGKILL while it compiles
    wrapper = tmp_path / "slow-c++"
    wrapper.write_text('#!/bin/sh\ncase "$*" in *f0.cpp*) sleep 60;; esac\nexec c++ "$@"\n')
    wrapper.chmod(0o755)
    script = ("import kcomp.backend as K, kcomp.aot as aot\n"
              "x = K.placeholder((3,)); aot.build(K.function([x], [x * 5.5]), %r, quiet=True)"
              % str(tmp_path / "killed"))
    p = subprocess.Popen([sys.executable, "-c", script], env=dict(os.environ, KCOMP_CXX=str(wrapper)))
    deadline = time.time() + 120
    while not any(n.startswith(".killed.building-") and
                  os.path.exists(tmp_path / n / "src" / "build.ninja") for n in os.listdir(tmp_path)):
        assert time.time() < deadline and p.poll() is None
        time.sleep(0.05)
    time.sleep(0.5)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not os.path.exists(tmp_path / "killed")
    leftovers = [n for n in os.listdir(tmp_path) if n.startswith(".killed.")]
    assert leftovers and not os.path.exists(tmp_path / leftovers[0] / "manifest.json")


def test_cli_build_progress_and_quiet(tmp_path):
    (tmp_path / "spec.py").write_text(textwrap.dedent("""
        import numpy as np, kcomp.backend as K
        def make():
            fns = {}
            for i in range(3):
                x = K.placeholder((None, 4))
                fns[f"f{i}"] = K.function([x], [K.tanh(x * float(i + 1))])
            return fns
    """))
    run = lambda *a: subprocess.run([sys.executable, "-m", "kcomp", "build", *a],  # noqa: E731
                                    capture_output=True, text=True, cwd=tmp_path)
    p = run("spec:make", "-o", "art", "--name", "three", "-j", "2")
    assert p.returncode == 0, p.stderr
    assert "compiling function 3 of 3: f2" in p.stderr and "linking libthree.so" in p.stderr
    assert "built art (f0, f1, f2) for x86-64-v3" in p.stdout
    p = run("spec:make", "-o", "art", "--name", "three")
    assert p.returncode == 1 and "exists" in p.stderr
    p = run("spec:make", "-o", "art", "--name", "three", "--force", "--quiet")
    assert p.returncode == 0 and p.stderr == "" and p.stdout == ""
    p = run("spec:make", "-o", "art2", "--name", "Bad-Name")
    assert p.returncode == 1 and "lowercase C identifier" in p.stderr


def test_cpp_consumer_builds_with_cmake_and_matches_python(artifacts, tmp_path):
    out, fns = artifacts
    import cmake
    cmake_bin = os.path.join(cmake.CMAKE_BIN_DIR, "cmake")
    build = tmp_path / "consumer"
    cfg = subprocess.run([cmake_bin, "-S", os.path.join(ROOT, "examples", "cpp_consumer"),
                          "-B", str(build), "-DKCOMP_ARTIFACT=models",
                          f"-Dmodels_DIR={out / 'models' / 'lib' / 'cmake' / 'models'}"],
                         capture_output=True, text=True)
    assert cfg.returncode == 0, cfg.stdout + cfg.stderr
    b = subprocess.run([cmake_bin, "--build", str(build)], capture_output=True, text=True)
    assert b.returncode == 0, b.stdout + b.stderr
    exe = str(build / "consumer")
    x = np.random.default_rng(73).standard_normal((7, 20)).astype(np.float32)
    tensorfile.save(str(tmp_path / "in.kct"), [x])
    r = subprocess.run([exe, str(tmp_path / "in.kct"), str(tmp_path / "out.kct"), "predict"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    probs, labels = tensorfile.load(str(tmp_path / "out.kct"))
    want = fns["predict"]([x])
    np.testing.assert_array_equal(probs, want[0])
    np.testing.assert_array_equal(labels, want[1])
    # the C API checks the weights it loads
    broken = tmp_path / "weights.bin"
    shutil.copy(out / "models" / "weights.bin", broken)
    with open(broken, "r+b") as f:
        f.seek(64)
        f.write(b"\x01\x02")
    r = subprocess.run([exe, str(tmp_path / "in.kct"), str(tmp_path / "o2.kct"), "predict", "1",
                        str(broken)], capture_output=True, text=True)
    assert r.returncode == 1 and "the weights do not match this artifact" in r.stderr
