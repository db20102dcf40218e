"""Keras 2.3.1's own test suites against kcomp, through tests/keras2/keras_suite.py: every test
that is not excluded (excluded.txt: TensorFlow-, Theano- or CNTK-specific) must pass.

All three suites (backend_test.py, the layer tests, test_sequential_model.py) run by default
(about eight minutes on two cores); KCOMP_KERAS_SUITES=backend (a comma-separated list) narrows
them. The driver can also run them by hand (README: "Keras 2.3.1 test suites"). It downloads Keras's source
distribution with pip on first use (cached outside the repository); without PyPI and without a
cached copy these tests are skipped, and `-m "not network"` deselects them."""
import json
import os
import subprocess
import sys

import pytest

import keras_suite

HERE = os.path.dirname(os.path.abspath(__file__))


def _suites():
    """The suites KCOMP_KERAS_SUITES names (a comma-separated list, or "all", the default); the
    backend suite always runs."""
    wanted = os.environ.get("KCOMP_KERAS_SUITES", "all").replace(" ", "").split(",")
    if "all" in wanted:
        wanted = list(keras_suite.SUITES)
    return [pytest.param(s, marks=() if s in wanted or s == "backend" else pytest.mark.skip(
        reason=f"set KCOMP_KERAS_SUITES={s} (or all) to run Keras's {s} suite"))
        for s in keras_suite.SUITES]


@pytest.mark.network
@pytest.mark.parametrize("suite", _suites())
def test_keras_suite_passes(suite, tmp_path):
    report = tmp_path / f"{suite}.json"
    out = subprocess.run(
        [sys.executable, os.path.join(HERE, "keras_suite.py"), "--suite", suite,
         "--report", str(report)],
        capture_output=True, text=True, cwd=str(tmp_path), timeout=3000)
    if out.returncode == keras_suite.EXIT_UNAVAILABLE:
        pytest.skip("Keras 2.3.1's source distribution is unavailable (offline?): "
                    + out.stderr.strip()[-300:])
    assert report.exists(), out.stdout[-3000:] + out.stderr[-3000:]
    result = json.loads(report.read_text())["suites"][0]
    counts = result["counts"]
    failed = {n: t for n, t in result["tests"].items() if t["outcome"] == "failed"}
    assert result["pytest_status"] in (0, 1), out.stdout[-3000:] + out.stderr[-3000:]
    assert counts["passed"] > 0, counts
    if failed:
        pytest.fail(f"{len(failed)} of Keras's {suite} tests fail on kcomp "
                    f"({counts['passed']} pass, {counts['excluded']} excluded):\n" + "\n".join(
                        f"  {n}\n      {t['message']} [{t.get('where', '')}]"
                        for n, t in sorted(failed.items())), pytrace=False)
    assert not result["stale_exclusions"], \
        f"excluded.txt names tests that do not exist: {result['stale_exclusions']}"


# ---- the driver's own logic, offline -------------------------------------------------------

def test_exclusion_list_is_well_formed():
    excluded = keras_suite.read_excluded()
    assert excluded
    for nodeid, reason in excluded.items():
        assert nodeid.startswith("tests/keras/") and "::" in nodeid, nodeid
        assert any(word in reason for word in ("TensorFlow", "Theano", "CNTK")), (nodeid, reason)


def test_bad_exclusion_lines_are_refused(tmp_path):
    path = tmp_path / "excluded.txt"
    path.write_text("tests/keras/a_test.py::test_x\n")
    with pytest.raises(ValueError, match="reason"):
        keras_suite.read_excluded(str(path))
    path.write_text("tests/keras/a_test.py::test_x TensorFlow\n"
                    "tests/keras/a_test.py::test_x again\n")
    with pytest.raises(ValueError, match="twice"):
        keras_suite.read_excluded(str(path))


def test_results_are_classified_and_summarized(tmp_path):
    lines = [
        {"nodeid": "t.py::ok", "when": "start", "outcome": "started"},
        {"nodeid": "t.py::ok", "when": "setup", "outcome": "passed", "duration": 0.1},
        {"nodeid": "t.py::ok", "when": "call", "outcome": "passed", "duration": 1.0},
        {"nodeid": "t.py::ok", "when": "teardown", "outcome": "passed", "duration": 0.0},
        {"nodeid": "t.py::bad", "when": "call", "outcome": "failed",
         "message": "NotImplementedError: K.gather is not implemented by kcomp yet",
         "where": "kcomp/backend/pending.py:15"},
        {"nodeid": "t.py::tf", "when": "collect", "outcome": "excluded", "message": "TF only"},
        {"nodeid": "t.py::tf", "when": "setup", "outcome": "excluded", "message": "TF only"},
        {"nodeid": "t.py::crash", "when": "start", "outcome": "started"},
    ]
    (tmp_path / "results-gw0.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines)
                                                + '{"cut short')
    got = keras_suite.collect(str(tmp_path), ["t.py"])
    outcome = {n: t["outcome"] for n, t in got["tests"].items()}
    assert outcome == {"t.py::ok": "passed", "t.py::bad": "failed",
                       "t.py::tf": "excluded",
                       "t.py::crash": "failed"}
    assert got["counts"] == {"passed": 1, "failed": 2, "excluded": 1, "skipped": 0}
    got.update(suite="demo", seconds=1.5, pytest_status=1, log="", stale_exclusions=[])
    text = keras_suite.summary([got], "header")
    assert "K.gather (1)" in text and "did not finish" in text
