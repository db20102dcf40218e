#!/usr/bin/env python
"""Run Keras 2.3.1's own test suites against kcomp.

    python tests/keras2/keras_suite.py [--suite backend|layers|sequential|all] [--report FILE]
                                       [-n WORKERS] [--keep] [-k EXPR] [--verbose]

Keras's tests are not copied into this repository. At run time the driver

1. fetches Keras 2.3.1's source distribution with pip (`pip download --no-deps --no-binary :all:
   keras==2.3.1`) into a cache directory outside the repository ($KCOMP_KERAS_SDIST_DIR, else
   $XDG_CACHE_HOME/kcomp-keras-suite, else ~/.cache/kcomp-keras-suite) and checks its sha256;
2. extracts the suites' test files (tests/keras/backend/backend_test.py, tests/keras/layers/
   *_test.py, tests/keras/test_sequential_model.py) and Keras's tests/conftest.py into a fresh
   temporary directory; the helpers they import (keras.utils.test_utils, keras.backend.
   numpy_backend) come from the installed keras package;
3. puts keras_suite_conftest.py (next to this file) at the root of that tree as its conftest.py:
   it loads kcomp as Keras's backend, puts kcomp where the tests expect the TensorFlow backend
   module, drops Keras's backend-name `skipif` marks, skips the tests listed in excluded.txt
   (next to this file; genuinely TensorFlow-, Theano- or CNTK-specific tests, one reason each);
4. runs each suite in its own pytest process (installed kcomp, KERAS_BACKEND=kcomp.backend, a
   private KERAS_HOME) and prints, and with --report writes, a summary: passed / failed /
   excluded per suite, and each failing test with the first line of its error.

Exit status: 0 when no test failed, 1 when some did, 3 when the source distribution cannot be
had (no PyPI and nothing cached), 2 for bad usage.
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
EXCLUDED_FILE = os.path.join(HERE, "excluded.txt")
BRIDGE = os.path.join(HERE, "keras_suite_conftest.py")

KERAS_VERSION = "2.3.1"
SDIST = f"Keras-{KERAS_VERSION}.tar.gz"
SDIST_SHA256 = "321d43772006a25a1d58eea17401ef2a34d388b588c9f7646c34796151ebc8cc"
SDIST_ROOT = f"Keras-{KERAS_VERSION}/"

# suite -> test files (paths inside the sdist, below SDIST_ROOT); "*" is expanded from the archive
SUITES = {
    "backend": ["tests/keras/backend/backend_test.py"],
    "layers": ["tests/keras/layers/*_test.py"],
    "sequential": ["tests/keras/test_sequential_model.py"],
}
HELPERS = ["tests/conftest.py"]  # Keras's own conftest (a clear_session fixture)

EXIT_UNAVAILABLE = 3


class SdistUnavailable(RuntimeError):
    """Keras's source distribution is neither cached nor downloadable (offline)."""


# ----------------------------------------------------------------------------------------------
# exclusions

def read_excluded(path: str = EXCLUDED_FILE) -> dict:
    """excluded.txt: one `<pytest node id> <reason>` a line; '#' starts a comment line. A node id
    without `[...]` covers every parametrization of the test."""
    excluded = {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(None, 1)
            if len(parts) != 2 or not parts[1].strip():
                raise ValueError(f"{path}:{number}: expected '<node id> <reason>': {line!r}")
            if parts[0] in excluded:
                raise ValueError(f"{path}:{number}: {parts[0]} is listed twice")
            excluded[parts[0]] = parts[1].strip()
    return excluded


# ----------------------------------------------------------------------------------------------
# the source distribution

def sdist_cache_dir() -> str:
    if os.environ.get("KCOMP_KERAS_SDIST_DIR"):
        return os.environ["KCOMP_KERAS_SDIST_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "kcomp-keras-suite")


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_sdist(cache_dir: str | None = None, log=print) -> str:
    """The path of Keras 2.3.1's sdist, downloaded with pip into cache_dir on first use."""
    cache_dir = cache_dir or sdist_cache_dir()
    path = os.path.join(cache_dir, SDIST)
    if os.path.exists(path) and _sha256(path) == SDIST_SHA256:
        return path
    os.makedirs(cache_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="download-", dir=cache_dir)
    try:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--disable-pip-version-check", "--retries", "2", "--timeout", "30",
               f"keras=={KERAS_VERSION}", "-d", tmp]
        log(f"fetching Keras {KERAS_VERSION}'s source distribution: {' '.join(cmd[1:])}")
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            raise SdistUnavailable("pip download timed out after 600 s") from None
        got = os.path.join(tmp, SDIST)
        if out.returncode != 0 or not os.path.exists(got):
            tail = "\n".join((out.stdout + out.stderr).strip().splitlines()[-5:])
            raise SdistUnavailable(f"pip download failed (exit {out.returncode}):\n{tail}")
        digest = _sha256(got)
        if digest != SDIST_SHA256:
            raise RuntimeError(f"{SDIST}: sha256 {digest}, expected {SDIST_SHA256}")
        os.replace(got, path)
        return path
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def suite_files(tar: tarfile.TarFile, suite: str) -> list:
    names = {m.name[len(SDIST_ROOT):] for m in tar.getmembers()
             if m.isfile() and m.name.startswith(SDIST_ROOT)}
    files = []
    for pattern in SUITES[suite]:
        regex = re.compile("^" + re.escape(pattern).replace(r"\*", "[^/]*") + "$")
        found = sorted(n for n in names if regex.match(n))
        if not found:
            raise RuntimeError(f"{SDIST} has no {pattern}")
        files += found
    return files


def extract(sdist: str, suites: list, dest: str) -> dict:
    """Extract the suites' files and the helpers into dest; returns {suite: [files]}."""
    with tarfile.open(sdist) as tar:
        files = {s: suite_files(tar, s) for s in suites}
        wanted = set(HELPERS).union(*files.values())
        for name in sorted(wanted):
            member = tar.getmember(SDIST_ROOT + name)
            data = tar.extractfile(member).read()
            target = os.path.join(dest, name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as f:
                f.write(data)
    shutil.copyfile(BRIDGE, os.path.join(dest, "conftest.py"))
    with open(os.path.join(dest, "pytest.ini"), "w") as f:
        f.write("[pytest]\n# generated by kcomp's tests/keras2/keras_suite.py\n"
                "addopts = -p no:cacheprovider\n")
    return files


# ----------------------------------------------------------------------------------------------
# running a suite

def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_suite(suite: str, files: list, root: str, excluded: dict, workers: int = 1,
              timeout: float = 3600, extra: list = (), verbose: bool = False) -> dict:
    results = os.path.join(root, "results", suite)
    os.makedirs(results, exist_ok=True)
    config = os.path.join(results, "config.json")
    with open(config, "w") as f:
        json.dump({"excluded": excluded, "results": results}, f)
    keras_home = os.path.join(root, "keras-home")
    os.makedirs(keras_home, exist_ok=True)
    env = dict(os.environ, KERAS_BACKEND="kcomp.backend", KERAS_HOME=keras_home,
               KCOMP_KERAS_SUITE_CONFIG=config, PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_XDIST_WORKER", None)
    cmd = [sys.executable, "-m", "pytest", "-c", os.path.join(root, "pytest.ini"),
           "--rootdir", root, "-q", "-rfE", "-W", "ignore::DeprecationWarning"]
    if workers > 1:
        cmd += ["-n", str(workers)]
    cmd += list(extra) + files
    log_path = os.path.join(root, f"pytest-{suite}.log")
    start = time.monotonic()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    status = None
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=root, env=env, start_new_session=True,
                                stdout=None if verbose else log,
                                stderr=subprocess.STDOUT if not verbose else None)
        try:
            status = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.wait()
            status = "timeout"
        except KeyboardInterrupt:
            _kill_group(proc)
            proc.wait()
            raise
    elapsed = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    outcome = collect(results, files)
    selected_all = not any(a in ("-k", "-m") for a in extra)
    outcome.update(suite=suite, seconds=round(elapsed, 1), cpu_seconds=round(cpu, 1),
                   pytest_status=status, log=log_path,
                   stale_exclusions=sorted(
                       e for e in excluded
                       if selected_all and any(e.startswith(f + "::") for f in files)
                       and not any(n == e or n.startswith(e + "[") for n in outcome["tests"])))
    return outcome


def collect(results: str, files: list) -> dict:
    """Read the per-worker JSON lines back: one outcome per test."""
    phases = collections.defaultdict(list)
    for name in sorted(os.listdir(results)):
        if name.startswith("results-") and name.endswith(".jsonl"):
            with open(os.path.join(results, name)) as f:
                for line in f:
                    line = line.strip()
                    if line:
                        try:
                            entry = json.loads(line)
                        except ValueError:  # a line cut short by a crash
                            continue
                        phases[entry["nodeid"]].append(entry)
    tests = {}
    for nodeid, entries in phases.items():
        kinds = [e["outcome"] for e in entries]
        duration = sum(e.get("duration", 0) for e in entries)
        first = lambda k: next(e for e in entries if e["outcome"] == k)  # noqa: E731
        if "failed" in kinds or "error" in kinds:
            e = first("failed" if "failed" in kinds else "error")
            tests[nodeid] = {"outcome": "failed", "message": e.get("message", ""),
                             "where": e.get("where", ""), "when": e.get("when")}
        elif "excluded" in kinds:
            tests[nodeid] = {"outcome": "excluded", "message": first("excluded")["message"]}
        elif "skipped" in kinds:
            tests[nodeid] = {"outcome": "skipped", "message": first("skipped")["message"]}
        elif any(e["when"] == "call" and e["outcome"] == "passed" for e in entries):
            tests[nodeid] = {"outcome": "passed"}
        else:  # started, never finished: the process crashed or timed out in this test
            tests[nodeid] = {"outcome": "failed", "when": "call", "where": "",
                             "message": "did not finish (the test process crashed or timed out)"}
        tests[nodeid]["seconds"] = round(duration, 2)
    counts = collections.Counter(t["outcome"] for t in tests.values())
    return {"tests": tests, "counts": {k: counts.get(k, 0) for k in
                                      ("passed", "failed", "excluded", "skipped")}}


# ----------------------------------------------------------------------------------------------
# the summary

MISSING = re.compile(r"NotImplementedError: (K\.\w+) is not implemented by kcomp yet")


def summary(outcomes: list, header: str = "") -> str:
    lines = []
    if header:
        lines += [header, ""]
    cols = ("passed", "failed", "excluded", "skipped")
    lines.append(f"{'suite':<11}" + "".join(f"{c:>17}" for c in cols)
                 + f"{'wall s':>9}{'cpu s':>9}")
    total = collections.Counter()
    for o in outcomes:
        total.update(o["counts"])
        lines.append(f"{o['suite']:<11}" + "".join(f"{o['counts'][c]:>17}" for c in cols)
                     + f"{o['seconds']:>9.1f}{o.get('cpu_seconds', 0):>9.1f}")
    if len(outcomes) > 1:
        lines.append(f"{'total':<11}" + "".join(f"{total[c]:>17}" for c in cols)
                     + f"{sum(o['seconds'] for o in outcomes):>9.1f}"
                     + f"{sum(o.get('cpu_seconds', 0) for o in outcomes):>9.1f}")
    lines.append("(wall s: elapsed time; cpu s: user + system time of pytest and the compilers "
                 "it ran)")
    for o in outcomes:
        if o["pytest_status"] == "timeout":
            lines += ["", f"{o['suite']}: pytest was stopped after the time limit"]
        failed = {n: t for n, t in o["tests"].items() if t["outcome"] == "failed"}
        if failed:
            lines += ["", f"Failures ({o['suite']}): {len(failed)}"]
            for n, t in sorted(failed.items()):
                where = f"  [{t['where']}]" if t.get("where") else ""
                phase = f" (in {t['when']})" if t.get("when") not in (None, "call") else ""
                lines.append(f"  {n}{phase}")
                lines.append(f"      {t['message']}{where}")
            missing = collections.Counter()
            for t in failed.values():
                m = MISSING.search(t["message"])
                if m:
                    missing[m.group(1)] += 1
            if missing:
                lines.append(f"  Failing because an op is missing ({sum(missing.values())}): "
                             + ", ".join(f"{k} ({v})" for k, v in sorted(missing.items())))
        skipped = {n: t for n, t in o["tests"].items() if t["outcome"] == "skipped"}
        if skipped:
            lines += ["", f"Skipped by the tests themselves ({o['suite']}): {len(skipped)}"]
            lines += [f"  {n}: {t['message']}" for n, t in sorted(skipped.items())]
        if o["stale_exclusions"]:
            lines += ["", f"Exclusions that match no test ({o['suite']}): "
                      + ", ".join(o["stale_exclusions"])]
        slow = sorted(o["tests"].items(), key=lambda kv: -kv[1]["seconds"])[:5]
        if slow:
            lines += ["", f"Slowest ({o['suite']}): "
                      + ", ".join(f"{n.split('::', 1)[-1]} {t['seconds']:.1f}s" for n, t in slow)]
    return "\n".join(lines) + "\n"


def _versions() -> str:
    from importlib import metadata

    def version(name):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"
    return (f"kcomp {version('kcomp')}, Keras {version('keras')}, numpy {version('numpy')}, "
            f"h5py {version('h5py')}, Python {sys.version.split()[0]}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", choices=[*SUITES, "all"], default="all")
    p.add_argument("--report", help="write the summary to this file too (JSON if it ends in .json)")
    p.add_argument("-n", "--workers", type=int, default=1,
                   help="pytest-xdist workers per suite (default 1)")
    p.add_argument("-k", dest="keyword", help="pytest -k expression (select tests)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per suite (default 3600)")
    p.add_argument("--sdist-dir", help="where the Keras sdist is cached")
    p.add_argument("--keep", action="store_true", help="keep the extracted tree and pytest logs")
    p.add_argument("--verbose", action="store_true", help="show pytest's output as it runs")
    args = p.parse_args(argv)

    suites = list(SUITES) if args.suite == "all" else [args.suite]
    try:
        excluded = read_excluded()
    except (OSError, ValueError) as e:
        print(f"keras_suite: {e}", file=sys.stderr)
        return 2
    try:
        sdist = fetch_sdist(args.sdist_dir)
    except SdistUnavailable as e:
        print(f"keras_suite: Keras {KERAS_VERSION}'s source distribution is unavailable: {e}",
              file=sys.stderr)
        return EXIT_UNAVAILABLE

    root = tempfile.mkdtemp(prefix="keras-suite-")
    try:
        files = extract(sdist, suites, root)
        extra = ["-k", args.keyword] if args.keyword else []
        outcomes = []
        for suite in suites:
            print(f"running Keras {KERAS_VERSION}'s {suite} suite "
                  f"({len(files[suite])} files) on kcomp ...", flush=True)
            outcomes.append(run_suite(suite, files[suite], root, excluded, args.workers,
                                      args.timeout, extra, args.verbose))
        header = (f"Keras {KERAS_VERSION} test suites on kcomp ({_versions()}; "
                  f"{args.workers} pytest worker{'s' if args.workers > 1 else ''})")
        text = summary(outcomes, header)
        print(text, end="")
        if args.report:
            with open(args.report, "w") as f:
                if args.report.endswith(".json"):
                    json.dump({"header": header, "suites": outcomes}, f, indent=1)
                else:
                    f.write(text)
        if args.keep:
            print(f"extracted tree and pytest logs kept in {root}")
        failed = sum(o["counts"]["failed"] for o in outcomes)
        crashed = any(o["pytest_status"] not in (0, 1, 5) for o in outcomes)
        return 1 if failed or crashed else 0
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
