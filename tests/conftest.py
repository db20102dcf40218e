"""Test set-up: one kcomp cache for the whole session (shared by pytest-xdist workers, which is
itself a test of concurrent use), and helpers in tests/util.py."""
import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory):
    root = tmp_path_factory.getbasetemp()
    # xdist workers have their own basetemp under a shared parent
    shared = root.parent if root.name.startswith("popen-gw") else root
    # KCOMP_TEST_CACHE_DIR: a cache to share with other runs (bench/gpu_check.sh: the CUDA
    # kernel library is built once for the tests and the benchmarks)
    path = os.environ.get("KCOMP_TEST_CACHE_DIR") or str(shared / "kcomp-cache")
    os.environ["KCOMP_CACHE_DIR"] = path
    os.environ.setdefault("KERAS_HOME", str(shared / "keras-home"))
    # child processes must import the installed kcomp, not the source tree in the checkout
    old = os.getcwd()
    os.chdir(shared)
    yield path
    os.chdir(old)


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """A private, empty cache and an empty in-process memo, for cache behaviour tests."""
    from kcomp import compiler
    path = tmp_path / "cache"
    monkeypatch.setenv("KCOMP_CACHE_DIR", str(path))
    compiler.clear_memo()
    yield str(path)
    compiler.clear_memo()


@pytest.fixture
def builds(monkeypatch):
    """The names of the functions kcomp compiles while the test runs, in order (initial values
    that earlier tests left waiting are computed first: kcomp/deferred.py)."""
    import kcomp.function
    from kcomp import deferred
    names = []
    compile_graph = kcomp.function.compile_graph

    def counting(graph, name, *args, **kwargs):
        names.append(name)
        return compile_graph(graph, name, *args, **kwargs)
    deferred.flush()
    monkeypatch.setattr(kcomp.function, "compile_graph", counting)
    return names
