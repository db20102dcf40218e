"""Slices read by one elementwise group are loads inside its loop (no copy kernel): static and
run-time extents, negative steps, broadcast against the group's shape; slices that are outputs,
are sliced again or are read through views stay copies; a slice of a value the group itself
feeds."""
import numpy as np

import kcomp.backend as K
from util import assert_same, kernel_plan, run


def test_slices_fused_into_elementwise_loops():
    rng = np.random.default_rng(7)
    x = K.placeholder((None, 12, 10))
    a = rng.standard_normal((3, 12, 10)).astype(np.float32)
    y = K.placeholder((12,))
    b = rng.standard_normal(12).astype(np.float32)
    s1 = x[:, 2:8, ::3]                       # static offsets and a stride
    s2 = x[:, ::-2, 1:5]                      # negative step
    s3 = x[1, :, -1]                          # indexed axes
    s4 = y[2:8]                               # broadcast against (3, 6, 4)
    outs = [K.sigmoid(s1) * 2.0 + 1.0,
            K.exp(s2[:, :3]) - s2[:, 3:],
            K.tanh(s3) + s3 * s3,
            K.expand_dims(K.expand_dims(s4, 0), -1) * x[:, 3:9, :4],
            s1 + 1.0, s1]                     # s1 also an output: kept as its own kernel
    got, want, f = run([(x, a), (y, b)], outs)
    for g, w in zip(got, want):
        assert_same(g, w)
    np.testing.assert_allclose(got[0], 1 / (1 + np.exp(-a[:, 2:8, ::3])) * 2 + 1, rtol=1e-5)
    np.testing.assert_allclose(got[3], b[2:8][None, :, None] * a[:, 3:9, :4], rtol=1e-6)
    plan = kernel_plan(f)
    copies = [ln for ln in plan.splitlines() if "] slice ->" in ln]
    # kept as copies: s1 (an output), s2 (sliced again), s3 and s4 (read through views);
    # s2's two slices and x[:, 3:9, :4] are loads of their groups
    assert len(copies) == 4, plan
    assert sum(ln.count("slice") for ln in plan.splitlines() if "slice+" in ln) == 3, plan


def test_slice_of_a_value_computed_from_the_group():
    x = K.placeholder((4, 8))
    a = np.arange(32, dtype=np.float32).reshape(4, 8) / 10
    e = K.exp(x)
    y = K.dot(e, K.constant(np.eye(8, dtype=np.float32)))   # depends on the group
    out = e * 2.0 + y[:, ::-1]
    got, want, _ = run([(x, a)], [out])
    assert_same(got[0], want[0])
    np.testing.assert_allclose(got[0], np.exp(a) * 2 + np.exp(a)[:, ::-1], rtol=1e-5)


def test_a_value_output_twice_is_stored_twice_by_its_loop():
    """An output that is also another output (an RNN step's h: state and step output) is one
    more store of the loop that computes it, not a copy kernel."""
    x = K.placeholder((3, 5))
    a = np.arange(15, dtype=np.float32).reshape(3, 5)
    y = K.tanh(x) * 2.0
    got, want, f = run([(x, a)], [y, y, y + 1.0])
    for g, w in zip(got, want):
        assert_same(g, w)
    np.testing.assert_allclose(got[1], np.tanh(a) * 2, rtol=1e-6)
    assert "output copy" not in f.explain()


def test_no_merge_closes_a_cycle_through_a_sibling_group():
    """Found by the fuzzer (tests/graph_fuzz.py): in this gradient graph, sibling fusion could
    make one group of `relu(y) * dz` and `relu(y) * s'` (no path between them), through which a
    path runs from the scalar chain of x to itself (s' -> that group -> sum -> the chain), and
    merging the chain's groups then made a cycle of groups ('fusion produced a cycle between
    groups'). The merge checks follow paths through groups: the chain is one loop."""
    x, y = K.placeholder((), dtype="float64"), K.placeholder((None,), dtype="float64")
    c = np.linspace(0.5, 1.5, 33)
    out = K.softsign(K.clip(x * 1.44 + 1.52, -0.5, 1.0)) * K.relu(y)
    gx, gy = K.gradients(K.sum(out * K.constant(c, dtype="float64")), [x, y])
    f = K.function([x, y], [gx, gy])
    xv, yv = -0.5, np.random.default_rng(0).uniform(-2, 2, 33)
    z = xv * 1.44 + 1.52  # inside the clip
    s, ds = z / (1 + abs(z)), 1.44 / (1 + abs(z)) ** 2
    got_x, got_y = f([xv, yv])
    np.testing.assert_allclose(got_x, np.sum(c * np.maximum(yv, 0)) * ds, rtol=1e-12)
    np.testing.assert_allclose(got_y, c * s * (yv > 0), rtol=1e-12)
    scalar_loops = [ln for ln in kernel_plan(f).splitlines() if "] " in ln and "-> float64()" in ln]
    assert len(scalar_loops) == 1, scalar_loops
