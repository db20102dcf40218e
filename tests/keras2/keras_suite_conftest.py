"""The conftest that tests/keras2/keras_suite.py copies to the root of an extracted Keras 2.3.1
test tree (it is not a test module of kcomp's own suite).

It makes Keras's tests run against kcomp:

- KERAS_BACKEND=kcomp.backend before Keras is imported;
- kcomp.backend stands where the tests expect the TensorFlow backend module
  (`from keras.backend import tensorflow_backend as KTF` in backend_test.py gets kcomp), so
  backend_test.py's comparisons `[KTF, KNP]` compare kcomp with Keras's numpy backend;
- Keras's own `skipif` marks are dropped: their conditions name a backend
  (`K.backend() != 'tensorflow'`, `== 'cntk'`, ...), never kcomp, so the exclusion list
  (tests/keras2/excluded.txt) alone decides what does not run, with a reason each;
- after each test, K.clear_session(), as Keras's tests/conftest.py does for TensorFlow (it
  leaves other backends alone): a test that sets the learning phase does not leak it;
- numpy names that numpy 2.0 removed and that Keras's test files (not Keras itself) use are
  restored here, only where missing: np.alltrue (backend_test.py's CTC tests). What Keras the
  library needs is kcomp's business (kcomp/backend/compat.py), not this file's;
- every outcome goes, one JSON line per test phase, to a results file the driver reads back
  (one file per pytest-xdist worker).

The driver passes its settings in the environment: KCOMP_KERAS_SUITE_CONFIG names a JSON file
{"excluded": {nodeid: reason}, "results": directory}.
"""
import json
import os
import sys
import traceback

os.environ["KERAS_BACKEND"] = "kcomp.backend"

import keras  # noqa: E402  (loads kcomp as Keras's backend)
import numpy as np  # noqa: E402
import keras.backend  # noqa: E402
import kcomp.backend as _kcomp  # noqa: E402
import pytest  # noqa: E402

if keras.backend.backend() != "kcomp.backend":
    raise RuntimeError(f"Keras loaded the backend {keras.backend.backend()!r}, not kcomp.backend")

# numpy 2.0 removed np.alltrue; backend_test.py's CTC tests call it
if not hasattr(np, "alltrue"):
    np.alltrue = np.all

# Keras's numpy reference of in_top_k ranks with np.argsort, whose order for ties is not stable
# on AVX-512 machines under numpy 2; with a stable sort it implements TensorFlow's rule on the
# test's data (ties of the target at its lowest index count as in the top k).
def _stable_in_top_k(predictions, targets, k):
    top_k = np.argsort(-predictions, kind="stable")[:, :k]
    return np.any(targets.reshape(-1, 1) == top_k, axis=-1)


from keras.backend import numpy_backend as _KNP  # noqa: E402

_KNP.in_top_k = _stable_in_top_k

# kcomp where the tests look for the TensorFlow backend module
sys.modules["keras.backend.tensorflow_backend"] = _kcomp
keras.backend.tensorflow_backend = _kcomp

with open(os.environ["KCOMP_KERAS_SUITE_CONFIG"]) as _f:
    _CONFIG = json.load(_f)
_EXCLUDED = _CONFIG["excluded"]
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
_RESULTS = os.path.join(_CONFIG["results"], f"results-{_WORKER}.jsonl")



def _record(**entry):
    with open(_RESULTS, "a") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()


def _exclusion(nodeid):
    if nodeid in _EXCLUDED:
        return _EXCLUDED[nodeid]
    base = nodeid.split("[", 1)[0]  # an entry without parameters covers every parametrization
    return _EXCLUDED.get(base)


def _drop_skipif(node):
    node.own_markers[:] = [m for m in node.own_markers if m.name != "skipif"]


@pytest.hookimpl(trylast=True)  # after -k/-m deselection
def pytest_collection_modifyitems(config, items):
    parents = set()
    for item in items:
        _drop_skipif(item)
        parent = item.parent
        while parent is not None and id(parent) not in parents:
            parents.add(id(parent))
            if hasattr(parent, "own_markers"):
                _drop_skipif(parent)
            parent = parent.parent
        reason = _exclusion(item.nodeid)
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=f"excluded: {reason}"))
            _record(nodeid=item.nodeid, when="collect", outcome="excluded", message=reason)


@pytest.fixture(autouse=True)
def _kcomp_clear_session_after_test():
    yield
    _kcomp.clear_session()  # keras.backend re-exports clear_session for TensorFlow and CNTK only


def _first_line(excinfo):
    """The error's first line; numpy's assert_allclose starts its message with a newline, so
    an empty first line takes the next one (and the count of mismatched elements)."""
    lines = [line.strip() for line in excinfo.exconly().splitlines() if line.strip()]
    if not lines:
        return excinfo.typename
    first = lines[0]
    if not first.split(":", 1)[-1].strip() and len(lines) > 1:
        first = f"{first.rstrip()} {lines[1]}"
        first += "".join(f"; {line}" for line in lines[2:]
                         if line.startswith("Mismatched elements"))
    return first


_KCOMP_DIR = os.path.dirname(os.path.dirname(os.path.abspath(_kcomp.__file__))) + os.sep


def _where(excinfo):
    """Where the error was raised: the innermost frame in kcomp, else the innermost frame of
    the test tree (Keras's test helpers and tests), else the innermost frame."""
    frames = traceback.extract_tb(excinfo.tb)
    if not frames:
        return ""
    here = os.getcwd() + os.sep
    pick = next((f for f in reversed(frames) if f.filename.startswith(_KCOMP_DIR)), None)
    if pick is None:
        pick = next((f for f in reversed(frames) if f.filename.startswith(here)), frames[-1])
    path = pick.filename
    if path.startswith(_KCOMP_DIR):
        path = "kcomp" + os.sep + path[len(_KCOMP_DIR):]
    elif path.startswith(here):
        path = path[len(here):]
    elif "site-packages" + os.sep in path:
        path = path.split("site-packages" + os.sep, 1)[1]
    return f"{path}:{pick.lineno}"


def pytest_runtest_logstart(nodeid, location):
    _record(nodeid=nodeid, when="start", outcome="started")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    entry = {"nodeid": item.nodeid, "when": call.when, "duration": round(call.duration, 3)}
    if call.excinfo is not None and rep.failed:
        exc = call.excinfo.value
        entry.update(outcome="failed", message=_first_line(call.excinfo),
                     where=_where(call.excinfo), exc_type=type(exc).__name__)
    elif rep.skipped:
        reason = ""
        if isinstance(rep.longrepr, tuple) and len(rep.longrepr) == 3:
            reason = rep.longrepr[2]
        if reason.startswith("Skipped: "):
            reason = reason[len("Skipped: "):]
        kind = "excluded" if reason.startswith("excluded: ") else "skipped"
        entry.update(outcome=kind, message=reason)
    else:
        entry.update(outcome=rep.outcome)
    _record(**entry)


def pytest_collectreport(report):
    if report.failed:
        text = str(report.longrepr).strip().splitlines()
        _record(nodeid=report.nodeid, when="collect", outcome="error",
                message=(text[-1] if text else "collection error"))
