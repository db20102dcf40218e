"""RNN loops on the tuned kernels, on every instruction set of the kernel library, in fresh
processes: an LSTM step as one fused kernel (kc_api.lstm: ragged unit blocks, every tail of the
register tile's rows, bias or none, sigmoid or hard_sigmoid, sequences out); other steps as the
generic loop, recurrent weights packed once before it (as panels above 4 rows of batch, as
column blocks for the few-row path at batch 1 to 4), gate slices read in place by the fused
gate loop."""
import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import numpy as np, kcomp.backend as K
rng = np.random.default_rng(5)
i, T = 11, 6
sig = lambda v: 1 / (1 + np.exp(-v))
hard = lambda v: np.clip(0.2 * v + 0.5, 0, 1)
relu = lambda v: np.maximum(v, 0)

def make_step(u, kernel, rec, bias, act, cand, with_bias):
    def step(x_t, states):
        h, c = states
        z = K.dot(x_t, kernel) + K.dot(h, rec)
        if with_bias:
            z = z + bias
        ig, fg = act(z[:, :u]), act(z[:, u:2 * u])
        g, o = cand(z[:, 2 * u:3 * u]), act(z[:, 3 * u:])
        c = fg * c + ig * g
        h = o * K.tanh(c)
        return h, [h, c]
    return step

# (step activations, numpy twins, bias, fused): a candidate other than tanh is no Keras LSTM
variants = [((K.sigmoid, K.tanh), (sig, np.tanh), True, True),
            ((K.hard_sigmoid, K.tanh), (hard, np.tanh), False, True),
            ((K.sigmoid, K.relu), (sig, relu), True, False)]
# 37 units: ragged against every register tile and unit block; 5: fewer than one block of
# units, so the threads split the batch
for u, cases, batches in ((37, variants, (1, 2, 3, 4, 5, 9, 40)), (5, variants[:1], (9, 40))):
    W = rng.standard_normal((i, 4 * u)).astype(np.float32) * 0.3
    R = rng.standard_normal((u, 4 * u)).astype(np.float32) * 0.3
    b = rng.standard_normal(4 * u).astype(np.float32) * 0.1
    kernel, rec, bias = K.variable(W), K.variable(R), K.variable(b)
    for (act, cand), (nact, ncand), with_bias, fused in cases:
        for batch in batches:
            x = K.placeholder((None, T, i))
            h0 = K.placeholder((None, u))
            step = make_step(u, kernel, rec, bias, act, cand, with_bias)
            last, seq, _ = K.rnn(step, x, [h0, h0 * 0.5])
            f = K.function([x, h0], [last, seq])
            a = rng.standard_normal((batch, T, i)).astype(np.float32)
            s0 = rng.standard_normal((batch, u)).astype(np.float32)
            got_last, got_seq = f([a, s0])
            h, c = s0.astype(np.float64), s0.astype(np.float64) * 0.5
            outs = []
            for t in range(T):
                z = a[:, t] @ W.astype(np.float64) + h @ R.astype(np.float64)
                z += b if with_bias else 0
                c = nact(z[:, u:2 * u]) * c + nact(z[:, :u]) * ncand(z[:, 2 * u:3 * u])
                h = nact(z[:, 3 * u:]) * np.tanh(c)
                outs.append(h)
            np.testing.assert_allclose(got_last, h, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(got_seq, np.stack(outs, 1), rtol=1e-4, atol=1e-5)
            plan, path = f.explain().split("-- generated source --")
            source = open(path.strip()).read()
            assert ("c->api->lstm(" in source) == fused, (fused, batch)
            if not fused:
                assert "gemm_pack(" in source  # recurrent weights packed once
                body = [ln for ln in plan.splitlines() if ln.startswith("      k")]  # loop
                assert body and not any("] slice ->" in ln for ln in body), body  # no copies

# float64: units that make one ragged column block (wide enough for the few-row packing) or
# several
for units in (11, 70):
    R64 = rng.standard_normal((units, units)) * 0.3
    rec64 = K.variable(R64, dtype="float64")

    def step64(x_t, states):
        h = K.tanh(x_t + K.dot(states[0], rec64))
        return h, [h]
    for batch in (1, 4, 6):
        x = K.placeholder((None, T, units), dtype="float64")
        last, _, _ = K.rnn(step64, x, [K.zeros((batch, units), dtype="float64")])
        f = K.function([x], [last])
        assert "gemm_pack(" in open(f.source_path).read()
        a = rng.standard_normal((batch, T, units))
        h = np.zeros((batch, units))
        for t in range(T):
            h = np.tanh(a[:, t] + h @ R64)
        np.testing.assert_allclose(f([a])[0], h, rtol=1e-11, atol=1e-12)
print("ok")
"""


@pytest.mark.parametrize("isa,threads", [("generic", "1"), ("avx2", "2"), ("", "2")])
def test_lstm_loop_on_every_isa(isa, threads):
    env = dict(os.environ, KCOMP_ISA=isa, KCOMP_NUM_THREADS=threads)
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "ok"
