"""Kernel benchmarks: kcomp against numpy, PyTorch (eager and torch.compile), ONNX Runtime,
JAX and TensorFlow, on a suite of named workloads (batch_dot, dot, reductions, a fused chain,
LSTM/GRU, conv2d, an MLP).

    kcomp bench [--workload NAME] [--group NAME] [--shape SPEC] [--peers LIST] [--rounds N]
                [--out DIR] [--quick] [--list]
    python -m kcomp.bench ...   (the same)

Modules: workloads (the suite: shapes, FLOP and byte counts, float64 references, one builder
per framework), peers (kcomp and one adapter per peer), machine (the machine and its measured
peak FP32 rate and memory bandwidth), runner (check, then time in interleaved rounds), report
(terminal table, markdown, JSON, roofline PNG, HTML), command (the options).

Peers are optional: each is used only where it imports; numpy is always there.
"""
from .command import bench, main, write_outputs  # noqa: F401
