"""A fixed sample of the differential fuzzer's random graphs (tests/graph_fuzz.py): each compiled
by kcomp and checked against numpy in float64, float64 graphs' gradients against central
differences. Longer runs: `python tests/graph_fuzz.py --seeds 0-1999`."""
import os

import pytest

import graph_fuzz

SEEDS = range(int(os.environ.get("KCOMP_FUZZ_SEEDS", "60")))


@pytest.mark.parametrize("seed", SEEDS)
def test_random_graph(seed):
    graph_fuzz.check(seed)


def test_the_check_fails_on_a_wrong_result(monkeypatch):
    """The comparison catches an output that is off by more than the error it allows."""
    real = graph_fuzz.K.function

    def off_by_a_little(inputs, outputs, **kw):
        f = real(inputs, outputs, **kw)
        return lambda feeds: [o * (1 + 1e-3) + 1e-3 for o in f(feeds)]
    monkeypatch.setattr(graph_fuzz.K, "function", off_by_a_little)
    with pytest.raises(AssertionError, match="graph 0"):
        graph_fuzz.check(0)


def test_the_check_catches_stale_packed_weights(monkeypatch):
    """Writing a variable's memory without telling the packed-weight cache (what set_value
    does) leaves products using the old panels: the second call's check sees it."""
    def stale(x, value):
        x._value[...] = value
    monkeypatch.setattr(graph_fuzz.K, "set_value", stale)
    for seed in SEEDS:  # (the graphs are test_random_graph's: mostly compiled already)
        try:
            graph_fuzz.check(seed)
        except AssertionError as e:
            assert "new variable values" in str(e)
            return
    pytest.fail("no graph of the sample noticed the stale weights")
