"""bench/keras_inference.py runs: its models build and predict on kcomp, and without
TensorFlow (the test environment has none) the peers' columns say n/a."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_keras_inference_bench_runs_without_tensorflow(tmp_path):
    out = tmp_path / "inference.md"
    script = os.path.join(ROOT, "bench", "keras_inference.py")
    env = dict(os.environ, KCOMP_CACHE_DIR=os.environ.get("KCOMP_CACHE_DIR", str(tmp_path)))
    # a Python where tensorflow does not import, whatever this environment holds
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "tensorflow.py").write_text("raise ImportError('blocked by the test')\n")
    env["PYTHONPATH"] = os.pathsep.join([str(blocker), env.get("PYTHONPATH", "")])
    r = subprocess.run([sys.executable, script, "--only", "cnn,mobilenet", "--rounds", "1",
                        "--sample", "0.02", "--out", str(out)], env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "TensorFlow unavailable" in r.stderr
    text = out.read_text()
    for name in ("cnn: mnist_cnn", "mobilenet: depthwise-separable"):
        row = next(line for line in text.splitlines() if line.startswith(f"| {name}"))
        cells = [c.strip() for c in row.split("|")[2:-1]]
        assert cells[0].endswith(" ms") and float(cells[0].split()[0]) > 0, row
        assert cells[1:] == ["n/a", "n/a", "n/a"], row
