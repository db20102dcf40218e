"""The differential fuzzer's random graphs (tests/graph_fuzz.py) for CUDA: the sample of
tests/test_graph_fuzz.py generated as CUDA and compiled by nvcc for sm_90 as one function (any
machine with nvcc), and on a GPU the first 20 (KCOMP_FUZZ_CUDA_SEEDS) each run and checked like
on the CPU. Longer runs on a GPU:
`python tests/graph_fuzz.py --device cuda --seeds 0-999`."""
import os

import pytest

import graph_fuzz
from kcomp.compiler import generate, prepare_function
from kcomp.ir.graph import Graph
from test_cuda_compile import needs_nvcc
from test_graph_fuzz import SEEDS


@needs_nvcc
def test_random_graphs_compile_for_cuda(tmp_path):
    from kcomp.cuda import jit
    inputs, outputs, updates = [], [], []
    for seed in SEEDS:
        g = graph_fuzz.Fuzzer(seed).build()
        inputs += [p.t for p in g.placeholders]
        outputs += [v.t for v in g.outputs]
        updates += [(g.update[0].t, g.update[1].t)] if g.update else []
    gen = generate(prepare_function(Graph(tuple(inputs), tuple(outputs), tuple(updates))),
                   "fuzz", target="cuda")
    (tmp_path / "build").mkdir()
    jit.build(jit.toolchain("90"), gen.source.replace("@@KCOMP_KEY@@", "0" * 64),
              str(tmp_path / "build"), str(tmp_path / "failed"))
    assert (tmp_path / "build" / "lib.so").stat().st_size > 0


# (each graph is an nvcc build, about 10 s: bench/gpu_check.sh has 8 minutes for everything)
GPU_SEEDS = range(int(os.environ.get("KCOMP_FUZZ_CUDA_SEEDS", "20")))


@pytest.mark.cuda
@pytest.mark.parametrize("seed", GPU_SEEDS)
def test_random_graph_cuda(gpu, seed):
    graph_fuzz.check(seed, device="cuda")
