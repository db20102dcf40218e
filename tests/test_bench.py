"""kcomp bench: the suite's definitions, the harness (check, then time) and its reports, run on
tiny shapes with numpy as the only peer (what CI has), in a few seconds."""
import json

import numpy as np
import pytest

from kcomp import cli
from kcomp.bench import command, machine, report, runner
from kcomp.bench.peers import parse_peers
from kcomp.bench.workloads import GROUPS, WORKLOADS, Case, SpecError, select

# one tiny case per workload (conv2d may be unavailable in kcomp: it is reported, not failed)
TINY = {"dot": "8x16,16x4", "batch_dot": "3x4x8,3x8x5", "sum": "4x6x5@1", "max": "6x7@0",
        "mean": "6x7@-1", "var": "9x5@0", "logsumexp": "5x9@-1", "softmax": "4x9@-1",
        "chain": "5x7", "lstm": "2x3x4x5", "gru": "2x3x4x5", "conv2d": "1x5x5x2,3x3x3",
        "mlp": "3x6-5-4-3"}
FAST = dict(rounds=2, sample_s=0.001, quick=True, peak_gflops=50.0, bandwidth=10.0,
            warm_s=0.0, settle_s=0.0)


def tiny_cases(names):
    return [Case(WORKLOADS[n], TINY[n]) for n in names]


@pytest.fixture(scope="module")
def run_all():
    """Every workload once at a tiny shape, numpy the only peer."""
    cases = tiny_cases(TINY) + [Case(WORKLOADS["batch_dot"], "6x5,6x5")]
    return command.bench(cases, ["numpy"], command="test", **FAST)


def test_every_workload_has_tiny_case_and_defaults():
    assert set(TINY) == set(WORKLOADS)
    assert {"batch_dot", "dot", "reductions", "fused", "rnn", "conv", "mlp"} == set(GROUPS)
    for w in WORKLOADS.values():
        assert w.defaults and w.title and w.shape_help
        for spec in w.defaults:
            case = Case(w, spec)
            # the canonical spec reads back to the same case
            assert Case(w, case.spec).params == case.params
            assert case.flops > 0 and case.bytes > 0


def test_suite_shapes():
    specs = {(c.name, c.spec) for c in select()}
    assert ("dot", "4096x4096,4096x4096") in specs
    assert ("batch_dot", "4096x256,4096x256") in specs
    assert ("sum", "64x1024x256@1") in specs
    assert ("softmax", "4096x4096@-1") in specs
    assert ("lstm", "1x100x128x256") in specs and ("gru", "32x100x128x256") in specs
    assert ("conv2d", "32x32x32x64,3x3x64") in specs
    assert ("mlp", "256x784-512-512-10") in specs
    assert [c.name for c in select(groups=["reductions"])][:3] == ["sum", "sum", "sum"]


def test_counts():
    dot = Case(WORKLOADS["dot"], "512x256,256x128")
    assert dot.flops == 2 * 512 * 256 * 128
    assert dot.bytes == 4 * (512 * 256 + 256 * 128 + 512 * 128)
    bd = Case(WORKLOADS["batch_dot"], "4096x256,4096x256")
    assert bd.params["vector"] and bd.flops == 2 * 4096 * 256
    s = Case(WORKLOADS["sum"], "64x1024x256@1")
    assert s.bytes == 4 * (64 * 1024 * 256 + 64 * 256)
    conv = Case(WORKLOADS["conv2d"], "32x32x32x64,3x3x64")
    assert conv.flops == 2 * 32 * 32 * 32 * 9 * 64 * 64
    assert machine.roofline(100.0, 10.0, flops=2, nbytes=1) == 20.0
    assert machine.roofline(100.0, 10.0, flops=100, nbytes=1) == 100.0


def test_selection_errors():
    with pytest.raises(SpecError, match="unknown workload"):
        select(["nope"])
    with pytest.raises(SpecError, match="unknown group"):
        select(groups=["nope"])
    with pytest.raises(SpecError, match="exactly one --workload"):
        select(["dot", "sum"], shapes=["4x4,4x4"])
    with pytest.raises(SpecError, match="matching K"):
        select(["dot"], shapes=["4x5,4x4"])
    with pytest.raises(SpecError, match="axis"):
        select(["sum"], shapes=["4x4@2"])
    with pytest.raises(SpecError):
        select(["lstm"], shapes=["4x4x4"])
    assert parse_peers("np,torch-compile,tf") == ["numpy", "torch.compile", "tensorflow"]
    assert parse_peers("none") == []
    with pytest.raises(ValueError, match="unknown peer"):
        parse_peers("numpy,kcomp")


def test_results_checked_and_timed(run_all):
    results = run_all["results"]
    assert len(results) == len(TINY) + 1
    for r in results:
        k, n = r["impls"]["kcomp"], r["impls"]["numpy"]
        assert n["status"] == "ok", (r["workload"], n)
        if r["workload"] == "conv2d" and k["status"] == "unavailable":
            continue  # kcomp without K.conv2d: reported as unavailable, numpy still timed
        assert k["status"] == "ok", (r["workload"], k)
        assert k["error"] <= r["tolerance"]
        assert len(k["samples_s"]) == FAST["rounds"] and k["median_s"] > 0
        assert k["gflops"] == pytest.approx(r["flops"] / k["median_s"] / 1e9)
        assert r["best_peer"] == "numpy"
        assert r["kcomp_vs_best"] == pytest.approx(n["median_s"] / k["median_s"])
        roof = min(50.0, 10.0 * r["flops"] / r["bytes"])
        assert r["roofline_gflops"] == pytest.approx(roof)
        assert r["kcomp_roofline_fraction"] == pytest.approx(k["gflops"] / roof)


def test_wrong_peer_is_not_timed(monkeypatch):
    dot = WORKLOADS["dot"]
    # wrong in float32 only: the float64 reference (numpy's builder in float64) stays right
    monkeypatch.setattr(dot, "numpy", lambda p, w: (
        lambda x, y: x @ y + (1e-2 if x.dtype == np.float32 else 0.0)))
    r = runner.run_case(Case(dot, "6x5,5x4"), ["kcomp", "numpy"], rounds=2, sample_s=0.001,
                        peak_gflops=50.0, bandwidth_gbs=10.0, warm_s=0.0, settle_s=0.0)
    assert r["impls"]["kcomp"]["status"] == "ok"
    n = r["impls"]["numpy"]
    assert n["status"] == "wrong" and "median_s" not in n and "relative" in n["message"]
    assert r["best_peer"] is None and r["kcomp_vs_best"] is None


def test_reports(run_all, monkeypatch):
    run_all = dict(run_all, duration_s=1.0)
    back = json.loads(report.to_json(run_all))
    assert back["schema"] == report.SCHEMA and back["command"] == "test"
    assert back["machine"]["peak"] == {"gflops": 50.0, "given": True}
    assert back["impls"]["numpy"]["available"] is True
    assert back["results"][0]["impls"]["kcomp"]["status"] == "ok"

    text = report.terminal(run_all)
    assert "kcomp vs best" in text and "lstm" in text and "numpy" in text
    md = report.markdown(run_all)
    assert md.startswith("# kcomp kernel benchmarks") and "Command: `test`" in md
    assert "| # | workload | case | kcomp | numpy | best peer | kcomp vs best |" in md
    assert sum(1 for line in md.splitlines() if line.startswith("| ")) == len(TINY) + 2

    monkeypatch.setattr(report, "chart_png", lambda run: None)
    page = report.html_page(run_all, None)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<svg" in page and "without matplotlib" in page
    assert page.count("<tr>") == len(TINY) + 2
    assert "(3,4,8)x(3,8,5)" in page and "<script" not in page
    fake_png = b"\x89PNG fake"
    assert "data:image/png;base64," in report.html_page(run_all, fake_png)


def test_cli_bench_writes_outputs(tmp_path, capsys):
    out = tmp_path / "res"
    rc = cli.main(["bench", "--workload", "dot", "--shape", "8x4,4x2", "--shape", "3x3,3x3",
                   "--peers", "numpy", "--rounds", "1", "--sample-time", "0.001",
                   "--warmup", "0", "--settle", "0", "--peak-gflops", "20", "--bandwidth", "5",
                   "--out", str(out), "--name", "k"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "(8,4)x(4,2)" in printed and "(3,3)x(3,3)" in printed
    data = json.loads((out / "k.json").read_text())
    assert [r["spec"] for r in data["results"]] == ["8x4,4x2", "3x3,3x3"]
    assert data["command"].startswith("kcomp bench --workload dot")
    assert data["settings"]["rounds"] == 1 and data["settings"]["peers"] == ["numpy"]
    assert "<table>" in (out / "k.html").read_text()
    assert (out / "k.md").read_text().startswith("# kcomp kernel benchmarks")
    try:
        import matplotlib  # noqa: F401
        assert (out / "k.png").read_bytes()[:4] == b"\x89PNG"
    except ImportError:
        assert not (out / "k.png").exists()


def test_cli_bench_errors(capsys):
    assert cli.main(["bench", "--workload", "dot", "--workload", "sum",
                     "--shape", "4x4,4x4"]) == 1
    assert "exactly one --workload" in capsys.readouterr().err
    assert cli.main(["bench", "--peers", "numpy,cuda"]) == 1
    assert "unknown peer" in capsys.readouterr().err


def test_list(monkeypatch, capsys):
    from kcomp.bench import peers
    monkeypatch.setattr(peers, "IMPLS", {n: peers.IMPLS[n] for n in ("kcomp", "numpy")})
    assert cli.main(["bench", "--list"]) == 0
    out = capsys.readouterr().out
    for name in WORKLOADS:
        assert f": {name}  " in out
    assert np.__version__ in out
