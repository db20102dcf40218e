"""The `kcomp` command line, run as a user would: `python -m kcomp ...` in a subprocess."""
import json
import os
import re
import subprocess
import sys

import pytest

import kcomp
from kcomp import _runtime


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """One cache for the module: the toolchain is probed once and the demo compiles once."""
    return str(tmp_path_factory.mktemp("kcomp-cli-cache"))


def kcomp_cli(*args, cache_dir, env=None, check=True):
    env = {**os.environ, **(env or {}), "KCOMP_CACHE_DIR": cache_dir}
    p = subprocess.run([sys.executable, "-m", "kcomp", *args], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=600)
    if check:
        assert p.returncode == 0, f"kcomp {' '.join(args)} failed:\n{p.stdout}\n{p.stderr}"
    return p


@pytest.fixture(scope="module")
def demo_output(cache_dir):
    return kcomp_cli("demo", "--batch", "16", cache_dir=cache_dir).stdout


def rows(text):
    """{label: value} of the `label  value` lines the CLI prints."""
    out = {}
    for line in text.splitlines():
        label, sep, value = line.partition("  ")
        if sep and label.strip():
            out[label.strip()] = value.strip()
    return out


def test_version(cache_dir):
    assert kcomp_cli("--version", cache_dir=cache_dir).stdout.strip() == \
        f"kcomp {kcomp.__version__}"


def test_info_text(cache_dir):
    text = kcomp_cli("info", cache_dir=cache_dir).stdout
    info = rows(text)
    assert info["kcomp"] == kcomp.__version__
    assert info["kernels"] == f"{_runtime.kernels_isa()} ISA, {_runtime.num_threads()} threads"
    assert info["cache"].startswith(cache_dir + " (")
    assert f"KCOMP_CACHE_DIR={cache_dir}\n" in text
    assert "-O3" in info["cxx flags"]


def test_info_json(cache_dir):
    info = json.loads(kcomp_cli("info", "--json", cache_dir=cache_dir).stdout)
    assert set(info) == {"kcomp", "python", "numpy", "kernels", "toolchain", "tools", "cpu",
                         "cuda", "gpu", "device", "cache", "environment"}
    assert info["device"] == "cpu"
    assert info["kernels"] == {"isa": _runtime.kernels_isa(), "threads": _runtime.num_threads()}
    assert os.access(info["toolchain"]["cxx"], os.X_OK)
    assert os.path.basename(info["tools"]["cmake"]) == "cmake"
    assert info["cache"]["root"] == cache_dir
    assert info["cache"]["size_bytes"] > 0  # the toolchain probe is stored there
    assert info["environment"]["KCOMP_CACHE_DIR"] == cache_dir
    assert set(info["cpu"]) == {"model", "avx2", "avx512f", "fma"}


def test_info_without_cuda_tools(cache_dir, tmp_path):
    # a PATH without nvcc or nvidia-smi (and KCOMP_NVCC naming no program, so that the CUDA
    # toolkit's usual place is not searched); the C++ compiler's path is stored by the probe
    env = {"PATH": str(tmp_path), "KCOMP_SPELLING_MISTAKE": "1",
           "KCOMP_NVCC": str(tmp_path / "nvcc")}
    info = json.loads(kcomp_cli("info", "--json", cache_dir=cache_dir, env=env).stdout)
    assert info["cuda"] == {"nvcc": "not found", "version": "not found"}
    assert info["gpu"] == "no GPU"
    assert info["environment"]["KCOMP_SPELLING_MISTAKE"] == "1"
    text = kcomp_cli("info", cache_dir=cache_dir, env=env).stdout
    assert rows(text)["cuda"] == "not found" and rows(text)["gpu"] == "no GPU"
    assert "KCOMP_SPELLING_MISTAKE=1  (not a kcomp setting)" in text


def test_demo_checks_and_times(demo_output):
    out = rows(demo_output)
    assert demo_output.startswith("kcomp demo: MLP 784-256-10 (relu, softmax), float32, batch 16")
    # the module's cache was empty: the first K.function call compiled
    assert "cache miss, the compiler ran" in out["compile"]
    assert "K.function in a new process: cache hit, no compiler ran" in out["disk load"]
    assert "K.function again in this process" in out["memo hit"]
    errors = [float(e) for e in re.findall(r"(\d\.\de[-+]\d+) vs", out["accuracy"])]
    assert len(errors) == 2 and max(errors) < 1e-4, out["accuracy"]
    assert out["accuracy"].endswith(": ok (< 1e-04)")
    assert re.fullmatch(r"kcomp [\d.]+ [um]?s, numpy [\d.]+ [um]?s \(median of 200\): "
                        r"kcomp [\d.]+x (faster|slower)", out["per call"]), out["per call"]


def test_demo_fresh_removes_its_cache(cache_dir):
    p = kcomp_cli("demo", "--fresh", "--batch", "2", cache_dir=cache_dir)
    out = rows(p.stdout)
    fresh = out["cache"].split()[0]
    assert fresh != cache_dir and out["cache"].endswith("(fresh, removed at exit)")
    assert "cache miss" in out["compile"] and "cache hit" in out["disk load"]
    assert not os.path.exists(fresh)


def test_cache_list_then_clear(cache_dir, demo_output):
    listing = kcomp_cli("cache", "list", cache_dir=cache_dir).stdout.splitlines()
    assert listing[0].split() == ["KEY", "SIZE", "CREATED", "AGE", "COMPILER", "PATH"]
    entries = listing[1:-1]
    assert entries and all(os.path.isdir(line.split()[-1]) for line in entries)
    assert all(line.split()[-1].startswith(cache_dir) for line in entries)
    assert listing[-1].startswith(f"{len(entries)} entr")

    cleared = kcomp_cli("cache", "clear", cache_dir=cache_dir).stdout
    assert re.match(rf"removed {len(entries)} entr(y|ies), freed \d", cleared)
    assert kcomp_cli("cache", "list", cache_dir=cache_dir).stdout.startswith("0 entries, 0 B")


def test_cache_path(cache_dir):
    assert kcomp_cli("cache", "path", cache_dir=cache_dir).stdout.strip() == cache_dir


def test_errors_are_messages_unless_traceback(tmp_path):
    unsafe = tmp_path / "shared"
    unsafe.mkdir()
    unsafe.chmod(0o777)  # the cache refuses a directory other users may write to
    p = kcomp_cli("cache", "list", cache_dir=str(unsafe), check=False)
    assert p.returncode == 1
    assert p.stderr.startswith("kcomp: error: CacheError: kcomp cache directory")
    assert "Traceback" not in p.stderr
    p = kcomp_cli("cache", "list", "--traceback", cache_dir=str(unsafe), check=False)
    assert p.returncode != 0 and "Traceback (most recent call last)" in p.stderr


def test_usage_errors(cache_dir):
    p = kcomp_cli(cache_dir=cache_dir, check=False)
    assert p.returncode == 2 and "usage: kcomp" in p.stderr
    p = kcomp_cli("demo", "--batch", "0", cache_dir=cache_dir, check=False)
    assert p.returncode == 2 and "must be at least 1" in p.stderr


def test_demo_fails_beyond_tolerance(cache_dir, demo_output, monkeypatch, capsys):
    from kcomp import cli
    monkeypatch.setenv("KCOMP_CACHE_DIR", cache_dir)
    monkeypatch.setattr(cli, "TOLERANCE", -1.0)  # every error, even 0, exceeds it
    assert cli.main(["demo", "--batch", "2"]) == 1
    out, err = capsys.readouterr()
    assert rows(out)["accuracy"].endswith(": FAILED")
    assert re.search(r"FAILED: max abs error \S+ exceeds the tolerance", err)


def test_check_backend_lists_every_missing_name(tmp_path):
    mod = tmp_path / "tiny_backend.py"
    mod.write_text("def placeholder(): pass\ndef variable(): pass\ndef function(): pass\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    out = subprocess.run([sys.executable, "-m", "kcomp", "check-backend", "tiny_backend", "--json"],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 1, out.stderr
    report = json.loads(out.stdout)
    from kcomp.backend.api import NAMES
    assert report["count"] == len(NAMES) - 3 and report["surface"] == len(NAMES)
    flat = [n for names in report["missing"].values() for n in names]
    assert "placeholder" not in flat and "conv2d" in flat and "dot" in flat
    out = subprocess.run([sys.executable, "-m", "kcomp", "check-backend", "kcomp.backend"],
                         capture_output=True, text=True)
    import kcomp.backend as K
    assert f"{len(NAMES) - len(K.PENDING)} of {len(NAMES)}" in out.stdout
    assert out.returncode == (1 if K.PENDING else 0)
