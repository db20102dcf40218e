"""CUDA ahead-of-time artifacts (kcomp.aot.build(..., device="cuda"), `kcomp build --device
cuda`): on any machine with nvcc, the artifact builds for a given architecture, holds the very
CUDA source the JIT compiles, links against the kernel library it ships, and a C++ consumer
builds against it with CMake; without a GPU, create() fails with a clear message while the
metadata functions work. On a GPU (tests marked cuda), the consumer and run_device() give what
the CPU gives, and bad arguments are errors."""
import ctypes
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import kcomp.aot as aot
from kcomp.aot import tensorfile
from kcomp.compiler import generate, prepare_function

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from test_aot import ROOT, lstm, mlp, stateful_counter  # noqa: E402
from test_cuda_compile import needs_nvcc  # noqa: E402

pytestmark = needs_nvcc
ARCH = "90"


def _arch():
    from kcomp.cuda import runtime
    return runtime.device_arch() if runtime.available() else ARCH


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    out = tmp_path_factory.mktemp("cuda_artifacts") / "models"
    fns = {"predict": mlp(), "encode": lstm(), "count": stateful_counter()}
    manifest = aot.build(fns, str(out), name="models", device="cuda", cuda_arch=_arch(),
                         quiet=True)
    return out, fns, manifest


def _lib(path):
    lib = ctypes.CDLL(str(path / "lib" / "libmodels.so"))
    lib.models_create.restype = ctypes.c_void_p
    lib.models_create.argtypes = [ctypes.c_char_p]
    lib.models_error.restype = ctypes.c_char_p
    lib.models_error.argtypes = [ctypes.c_void_p]
    lib.models_function_name.restype = ctypes.c_char_p
    lib.models_destroy.argtypes = [ctypes.c_void_p]
    for fn in ("models_output_shapes", "models_run", "models_run_device"):
        getattr(lib, fn).argtypes = [ctypes.c_void_p, ctypes.c_int32, ctypes.c_void_p,
                                     ctypes.c_void_p]
    return lib


def test_artifact_holds_the_cuda_source_the_jit_compiles(artifact):
    out, fns, manifest = artifact
    assert manifest["device"] == "cuda" and manifest["cuda"]["arch"] == _arch()
    assert manifest["cuda"]["abi_version"] == 4 and manifest["isa"]["features"] == []
    files = json.load(open(out / "manifest.json"))["files"]
    assert {"lib/libmodels.so", "lib/libkcomp_cuda.so", "include/models.h", "src/model.cu",
            "weights.bin"} <= set(files)
    for i, spec in enumerate(manifest["functions"]):
        gen = generate(prepare_function(fns[spec["name"]].graph), spec["name"], target="cuda")
        assert hashlib.sha256(gen.source.encode()).hexdigest() == spec["source_sha256"]
        text = open(out / "src" / f"f{i}.cu").read()
        assert spec["key"] in text and "kc_cuda_get_module" in text
    # the encoder's LSTM loop is one kc_cuda_rnn call there too
    assert "c->api->rnn(" in open(out / "src" / "f1.cu").read()
    dyn = subprocess.run(["readelf", "-d", str(out / "lib" / "libmodels.so")],
                         capture_output=True, text=True).stdout
    assert "[libkcomp_cuda.so]" in dyn and "[$ORIGIN]" in dyn
    header = open(out / "include" / "models.h").read()
    assert "models_run_device" in header and f"sm_{_arch()}" in header


def test_kcomp_aot_load_needs_a_gpu(artifact):
    from kcomp.cuda import runtime
    if runtime.available():
        pytest.skip("a GPU is present (test_aot_load_on_the_gpu)")
    with pytest.raises(aot.ArtifactError, match="cannot create the CUDA artifact 'models': "
                                                "no usable CUDA GPU"):
        aot.load(str(artifact[0]))


def test_metadata_without_a_gpu_and_a_clear_create_error(artifact):
    from kcomp.cuda import runtime
    lib = _lib(artifact[0])
    assert lib.models_function_count() == 3
    assert [lib.models_function_name(i) for i in range(3)] == [b"predict", b"encode", b"count"]
    name, dtype, rank = ctypes.c_char_p(), ctypes.c_int32(), ctypes.c_int32()
    dims = (ctypes.c_int64 * 8)()
    assert lib.models_input_info(0, 0, ctypes.byref(name), ctypes.byref(dtype),
                                 ctypes.byref(rank), dims) == 0
    assert (name.value, dtype.value, rank.value, dims[0], dims[1]) == (b"features", 11, 2, -1, 20)
    if runtime.available():
        pytest.skip("a GPU is present: create() succeeds (test_consumer_on_the_gpu)")
    assert lib.models_create(None) is None
    assert lib.models_error(None).startswith(b"no usable CUDA GPU")


def test_host_inputs_convert_within_their_kind():
    """What the CUDA JIT functions and CUDA artifacts accept as numpy inputs (host_input)."""
    from kcomp.cuda.executable import host_input
    f32 = np.dtype(np.float32)
    strided = np.arange(6, dtype=np.int64).reshape(2, 3)[:, ::2]
    assert host_input(strided, f32, "x").flags.c_contiguous
    assert host_input(2.5, f32, "x").shape == () and host_input([1, 2], f32, "x").dtype == f32
    for bad, dt in ((np.zeros(3, np.float32), np.int32), (np.array(["a"]), np.float32),
                    (1.5, np.int32), (np.zeros(2, np.complex64), np.float32)):
        with pytest.raises(ValueError, match="does not convert"):
            host_input(bad, np.dtype(dt), "x")


def test_bad_build_arguments(tmp_path):
    f = mlp()
    for kw, match in ((dict(device="tpu"), "device"), (dict(device="cuda", cuda_arch="sm90"),
                                                       "compute capability"),
                      (dict(device="cuda", cuda_arch="90", isa="x86-64-v4"), "CPU artifacts"),
                      (dict(cuda_arch="90"), "device='cuda'")):
        with pytest.raises(ValueError, match=match):
            aot.build(f, str(tmp_path / "x"), name="x", quiet=True, **kw)
    assert not os.path.exists(tmp_path / "x")


def _consumer(artifact, tmp_path):
    import cmake
    out = artifact[0]
    cmake_bin = os.path.join(cmake.CMAKE_BIN_DIR, "cmake")
    build = tmp_path / "consumer"
    for cmd in ([cmake_bin, "-S", os.path.join(ROOT, "examples", "cpp_consumer"), "-B",
                 str(build), "-DKCOMP_ARTIFACT=models",
                 f"-Dmodels_DIR={out / 'lib' / 'cmake' / 'models'}"],
                [cmake_bin, "--build", str(build)]):
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
    return str(build / "consumer")


def test_cpp_consumer_builds_against_it(artifact, tmp_path):
    assert os.access(_consumer(artifact, tmp_path), os.X_OK)


def test_cli_builds_for_an_architecture(tmp_path, monkeypatch):
    src = tmp_path / "mods.py"
    src.write_text("import kcomp.backend as K\nx = K.placeholder((None, 3))\n"
                   "f = K.function([x], [K.tanh(x) * 2.0], name='f')\n")
    monkeypatch.chdir(tmp_path)
    r = subprocess.run([sys.executable, "-m", "kcomp", "build", "mods:f", "-o", "art",
                        "--device", "cuda", "--cuda-arch", _arch(), "--quiet", "--name", "tiny"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    m = json.load(open(tmp_path / "art" / "manifest.json"))
    assert m["device"] == "cuda" and m["cuda"]["arch"] == _arch()


# ---- on a GPU --------------------------------------------------------------------------------

@pytest.mark.cuda
def test_consumer_on_the_gpu(gpu, artifact, tmp_path):
    """The C++ consumer runs the artifact's functions on the GPU (run(): host tensors) and gives
    the CPU's results; broken weights are refused."""
    out, fns, _ = artifact
    exe = _consumer(artifact, tmp_path)
    rng = np.random.default_rng(5)
    cases = {"predict": [rng.standard_normal((7, 20)).astype(np.float32)],
             "encode": [rng.standard_normal((5, 6, 3)).astype(np.float32)],
             "count": [np.array([1.5, -2.0], np.float32)]}
    for name, xs in cases.items():
        tensorfile.save(str(tmp_path / "in.kct"), xs)
        r = subprocess.run([exe, str(tmp_path / "in.kct"), str(tmp_path / "out.kct"), name],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        got = tensorfile.load(str(tmp_path / "out.kct"))
        want = fns[name](xs)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5, err_msg=name)
    broken = tmp_path / "weights.bin"
    data = bytearray(open(out / "weights.bin", "rb").read())
    data[64] ^= 1
    broken.write_bytes(bytes(data))
    r = subprocess.run([exe, str(tmp_path / "in.kct"), str(tmp_path / "o2.kct"), "predict", "1",
                        str(broken)], capture_output=True, text=True)
    assert r.returncode == 1 and "the weights do not match this artifact" in r.stderr


@pytest.mark.cuda
def test_aot_load_on_the_gpu(gpu, artifact):
    """kcomp.aot.load runs a CUDA artifact through its C API: numpy in, numpy out, as the
    functions it was built from (the counter's variable lives on the GPU and counts calls)."""
    out, fns, _ = artifact
    art = aot.load(str(out))
    x = np.random.default_rng(8).standard_normal((3, 20)).astype(np.float32)
    for got, want in zip(art.functions["predict"]([x]), fns["predict"]([x])):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    s = np.random.default_rng(9).standard_normal((4, 6, 3)).astype(np.float32)
    for got, want in zip(art.functions["encode"]([s]), fns["encode"]([s])):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    c = np.array([1.0, 2.0], np.float32)
    assert [art.functions["count"]([c])[0].tolist() for _ in range(3)] == \
        [[1.0, 2.0], [2.0, 3.0], [3.0, 4.0]]
    with pytest.raises(ValueError, match="wrong shape"):
        art.functions["predict"]([np.zeros((3, 21), np.float32)])


def _tensor(a, ptr):
    from kcomp.cuda import runtime as rt
    t = rt.Tensor()
    t.data = ptr
    t.dtype = {np.dtype(np.float32): 11, np.dtype(np.int64): 5}[np.dtype(a.dtype)]
    t.rank = a.ndim
    for d, (n, s) in enumerate(zip(a.shape, a.strides)):
        t.shape[d], t.strides[d] = n, s // a.itemsize
    return t


@pytest.mark.cuda
def test_run_device_and_bad_arguments_on_the_gpu(gpu, artifact):
    """run_device() on device buffers gives what run() gives on host buffers; a wrong input
    shape or output buffer is an error with a message, not a crash."""
    from kcomp.cuda import runtime as rt
    out, fns, _ = artifact
    lib = _lib(out)
    m = lib.models_create(None)
    assert m, lib.models_error(None)
    try:
        x = np.random.default_rng(6).standard_normal((9, 20)).astype(np.float32)
        want = fns["predict"]([x])
        xd = rt.DeviceArray.from_numpy(x)
        probs = rt.DeviceArray.empty((9, 5), np.float32)
        labels = rt.DeviceArray.empty((9,), np.int64)
        ins = (rt.Tensor * 1)(_tensor(x, xd.ptr))
        outs = (rt.Tensor * 2)(_tensor(want[0], probs.ptr), _tensor(want[1], labels.ptr))
        assert lib.models_run_device(m, 0, ins, outs) == 0, lib.models_error(None)
        np.testing.assert_allclose(probs.numpy(), want[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(labels.numpy(), want[1])
        # host buffers through run()
        hp, hl = np.zeros((9, 5), np.float32), np.zeros(9, np.int64)
        ins = (rt.Tensor * 1)(_tensor(x, x.ctypes.data))
        outs = (rt.Tensor * 2)(_tensor(hp, hp.ctypes.data), _tensor(hl, hl.ctypes.data))
        assert lib.models_run(m, 0, ins, outs) == 0, lib.models_error(None)
        np.testing.assert_allclose(hp, want[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(hl, want[1])
        # a wrong input shape, a wrong output buffer, a bad function index
        bad = np.zeros((9, 21), np.float32)
        assert lib.models_run(m, 0, (rt.Tensor * 1)(_tensor(bad, bad.ctypes.data)), outs) == 1
        assert b"wrong shape" in lib.models_error(None)
        small = np.zeros((9, 4), np.float32)
        outs = (rt.Tensor * 2)(_tensor(small, small.ctypes.data), _tensor(hl, hl.ctypes.data))
        assert lib.models_run(m, 0, ins, outs) == 1
        assert b"output 0" in lib.models_error(None)
        assert lib.models_run(m, 7, ins, outs) == 1
    finally:
        lib.models_destroy(m)


def test_keras_model_artifact(tmp_path):
    """A Keras model (Conv1D, GRU, Dense) builds as a CUDA artifact whose GRU loop is one
    kc_cuda_rnn call; on a GPU, the consumer's predictions are Keras's on the CPU."""
    os.environ.setdefault("KERAS_BACKEND", "kcomp.backend")
    pytest.importorskip("keras")
    from keras.layers import GRU, Conv1D, Dense
    from keras.models import Sequential
    from kcomp.cuda import runtime
    model = Sequential([Conv1D(8, 3, activation="relu", input_shape=(12, 5)),
                        GRU(6, reset_after=True), Dense(3, activation="softmax")])
    out = tmp_path / "kmodel"
    aot.build(model, str(out), name="models", device="cuda", cuda_arch=_arch(), quiet=True,
              input_shapes=[(None, 12, 5)])
    assert "c->api->rnn(" in open(out / "src" / "f0.cu").read()
    if not runtime.available():
        return
    exe = _consumer((out,), tmp_path)
    x = np.random.default_rng(7).standard_normal((4, 12, 5)).astype(np.float32)
    tensorfile.save(str(tmp_path / "in.kct"), [x])
    r = subprocess.run([exe, str(tmp_path / "in.kct"), str(tmp_path / "out.kct"), "predict"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    (got,) = tensorfile.load(str(tmp_path / "out.kct"))
    np.testing.assert_allclose(got, model.predict(x), rtol=1e-4, atol=1e-5)
