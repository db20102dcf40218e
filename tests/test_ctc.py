"""CTC: ctc_label_dense_to_sparse, ctc_batch_cost and ctc_decode against the reference
interpreter, against independent computations written here (every alignment enumerated for the
loss and for beam search without pruning, a probability-space forward algorithm for longer
sequences, a plain beam search of TensorFlow's rules, numpy argmax for best-path decoding), and
against the literal values of Keras 2.3.1's own tests. Each function compiles once and runs at
several batch sizes (odd, 1, 0) through its unknown batch dimension."""
import itertools
import math

import numpy as np
import pytest

import kcomp.backend as K
from util import assert_numpy, assert_same, keras_numpy_backend, run

EPS = 1e-7
NEG_INF = -math.inf


# ---- independent computations (float64) ---------------------------------------------------------

def step_logs(y):
    """The log-probabilities TensorFlow's loss and beam search see: log_softmax(log(y + eps)),
    the log taken in y's dtype as Keras does."""
    z = np.log(y + y.dtype.type(EPS)).astype(np.float64)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def collapse(path, blank):
    """A path's labeling: repeats merged, then blanks dropped."""
    return tuple(c for i, c in enumerate(path) if c != blank and (i == 0 or c != path[i - 1]))


def labelings(logp):
    """Every labeling of a (steps, C) log-probability matrix with its probability, summed over
    all C ** steps alignments."""
    steps, C = logp.shape
    paths = np.array(list(itertools.product(range(C), repeat=steps)), np.int64)
    paths = paths.reshape(C ** steps, steps)
    weights = np.exp(logp[np.arange(steps), paths].sum(1))
    out = {}
    for path, w in zip(paths, weights):
        key = collapse(tuple(path), C - 1)
        out[key] = out.get(key, 0.0) + w
    return out


def forward_loss(logp, label):
    """-log p(label) by the forward algorithm in probability space, rescaled every step."""
    C = logp.shape[1]
    ext = [C - 1]
    for c in label:
        ext += [c, C - 1]
    p = np.exp(logp)
    alpha = np.zeros(len(ext))
    alpha[:2] = p[0, ext[:2]]
    log_scale = 0.0
    for t in range(1, len(p)):
        new = alpha.copy()
        new[1:] += alpha[:-1]
        for u in range(3, len(ext), 2):
            if ext[u] != ext[u - 2]:
                new[u] += alpha[u - 2]
        alpha = new * p[t, ext]
        s = alpha.sum()
        if s == 0:
            return math.inf
        alpha /= s
        log_scale += math.log(s)
    total = alpha[-1] + (alpha[-2] if len(ext) > 1 else 0.0)
    return -(math.log(total) + log_scale) if total > 0 else math.inf


def lse(a, b):
    if a == NEG_INF or b == NEG_INF:
        return max(a, b)
    return max(a, b) + math.log1p(math.exp(-abs(a - b)))


def plain_beam_search(logp, width):
    """TensorFlow's beam search, written plainly over prefix tuples: every beam first extends
    itself; then, best beam first, each beam that could enter a full beam grows every label, a
    better newcomer displacing the worst beam (ties: the older ranks first). Returns
    [(prefix, log p)], best first."""
    blank = logp.shape[1] - 1
    beams = {(): (0.0, NEG_INF)}  # prefix -> (log p ending in a blank, ending in its last label)
    births = itertools.count()
    born = {(): next(births)}

    def total(k):
        return lse(*beams[k])

    def worst():
        return min(beams, key=lambda k: (total(k), -born[k]))

    def enters(p):
        return p > NEG_INF and (len(beams) < width or p > total(worst()))

    for row in logp:
        old = {k: (pb, pl, lse(pb, pl)) for k, (pb, pl) in beams.items()}
        ranked = sorted(old, key=lambda k: (-old[k][2], born[k]))
        for k in ranked:
            pb, pl, pt = old[k]
            if k:
                parent = old.get(k[:-1])
                if parent is not None:
                    same = len(k) > 1 and k[-2] == k[-1]
                    pl = lse(pl, parent[0] if same else parent[2])
                pl += row[k[-1]]
            beams[k] = (pt + row[blank], pl)
        for k in ranked:
            pb, _, pt = old[k]
            if not enters(pt):
                continue
            for c in range(blank):
                child = k + (c,)
                if child in beams:
                    continue
                p = row[c] + (pb if k and k[-1] == c else pt)
                if enters(p):
                    if len(beams) == width:
                        del beams[worst()]
                    beams[child] = (NEG_INF, p)
                    born[child] = next(births)
    return sorted(((k, total(k)) for k in beams), key=lambda kv: (-kv[1], born[kv[0]]))


def padded(seqs, width=None):
    """Decoded paths as TensorFlow returns them: as wide as the longest, padded with -1."""
    width = max((len(x) for x in seqs), default=0)
    out = np.full((len(seqs), width), -1, np.int64)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return out


def merged(seq):
    return tuple(c for i, c in enumerate(seq) if i == 0 or c != seq[i - 1])


def probabilities(rng, shape, dtype):
    y = rng.uniform(0.05, 1.0, shape)
    return (y / y.sum(-1, keepdims=True)).astype(dtype)


# ---- Keras 2.3.1's own test cases ---------------------------------------------------------------

KERAS_LOSS_Y = np.array([
    [[0.633766, 0.221185, 0.0917319, 0.0129757, 0.0142857, 0.0260553],
     [0.111121, 0.588392, 0.278779, 0.0055756, 0.00569609, 0.010436],
     [0.0357786, 0.633813, 0.321418, 0.00249248, 0.00272882, 0.0037688],
     [0.0663296, 0.643849, 0.280111, 0.00283995, 0.0035545, 0.00331533],
     [0.458235, 0.396634, 0.123377, 0.00648837, 0.00903441, 0.00623107]],
    [[0.30176, 0.28562, 0.0831517, 0.0862751, 0.0816851, 0.161508],
     [0.24082, 0.397533, 0.0557226, 0.0546814, 0.0557528, 0.19549],
     [0.230246, 0.450868, 0.0389607, 0.038309, 0.0391602, 0.202456],
     [0.280884, 0.429522, 0.0326593, 0.0339046, 0.0326856, 0.190345],
     [0.423286, 0.315517, 0.0338439, 0.0393744, 0.0339315, 0.154046]]], np.float32)

KERAS_GREEDY_Y = np.array([
    [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.4, 0.6], [0.0, 0.0, 0.4, 0.6], [0.0, 0.9, 0.1, 0.0],
     [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]],
    [[0.1, 0.9, 0.0, 0.0], [0.0, 0.9, 0.1, 0.0], [0.0, 0.0, 0.1, 0.9], [0.0, 0.9, 0.1, 0.1],
     [0.9, 0.1, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]], np.float32)

_BEAM_P = np.array([
    [0.30999, 0.309938, 0.0679938, 0.0673362, 0.0708352, 0.173908],
    [0.215136, 0.439699, 0.0370931, 0.0393967, 0.0381581, 0.230517],
    [0.199959, 0.489485, 0.0233221, 0.0251417, 0.0233289, 0.238763],
    [0.279611, 0.452966, 0.0204795, 0.0209126, 0.0194803, 0.20655],
    [0.51286, 0.288951, 0.0243026, 0.0220788, 0.0219297, 0.129878]], np.float32)
KERAS_BEAM_Y = np.exp(np.concatenate([_BEAM_P + 2.0, np.zeros((2, 6), np.float32)]))[None]

KERAS_NO_MERGE_Y = np.array([[[0, 0, 1], [1, 0, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1],
                              [0, 1, 0]]], np.float32)


def test_keras_cases():
    """The literal values and decodings of Keras 2.3.1's backend tests (test_ctc,
    test_ctc_decode_greedy, test_ctc_decode_beam_search(_no_merge)); decoded tensors are
    as wide as the longest decoded path (TensorFlow's width), the rest being -1."""
    labels = K.placeholder((None, 5), dtype="int32")
    y = K.placeholder((None, 5, 6))
    input_len, label_len = K.placeholder((None, 1), dtype="int32"), K.placeholder((None, 1))
    y_greedy, len_greedy = K.placeholder((None, 6, 4)), K.placeholder((None,), dtype="int32")
    y_beam, len_beam = K.placeholder((None, 7, 6)), K.placeholder((None,), dtype="int32")
    y_nm, len_nm = K.placeholder((None, None, 3)), K.placeholder((None,), dtype="int64")
    greedy, greedy_lp = K.ctc_decode(y_greedy, len_greedy)
    beams, beam_lp = K.ctc_decode(y_beam, len_beam, greedy=False, beam_width=2, top_paths=2)
    assert len(greedy) == 1 and len(beams) == 2
    (merged_path,), merged_lp = K.ctc_decode(y_nm, len_nm, greedy=False, beam_width=1,
                                             merge_repeated=True)
    (unmerged_path,), _ = K.ctc_decode(y_nm, len_nm, greedy=False, beam_width=1)
    outs = [K.ctc_batch_cost(labels, y, input_len, label_len), greedy[0], greedy_lp, *beams,
            beam_lp, merged_path, unmerged_path, merged_lp]
    feeds = [(labels, np.array([[0, 1, 2, 1, 0], [0, 1, 1, 0, -1]], np.int32)),
             (y, KERAS_LOSS_Y), (input_len, np.array([[5], [5]], np.int32)),
             (label_len, np.array([[5], [4]], np.float32)),
             (y_greedy, KERAS_GREEDY_Y), (len_greedy, np.array([4, 5], np.int32)),
             (y_beam, KERAS_BEAM_Y), (len_beam, np.array([5], np.int32)),
             (y_nm, KERAS_NO_MERGE_Y), (len_nm, np.array([7]))]
    got, want, f = run(feeds, outs)
    for i, (g, w) in enumerate(zip(got, want)):
        assert_same(g, w, f"output {i}")
    loss, dec, dec_lp, beam0, beam1, beam_lp_v, merged_v, unmerged_v, _ = got
    assert loss.shape == (2, 1) and loss.dtype == np.float32
    np.testing.assert_allclose(loss[:, 0], [3.34211, 5.42262], atol=1e-5)

    knp = keras_numpy_backend()
    want_dec, want_lp = knp.ctc_decode(KERAS_GREEDY_Y, np.array([4, 5]), greedy=True)
    np.testing.assert_array_equal(dec, want_dec)
    np.testing.assert_allclose(dec_lp, want_lp, rtol=1e-5)

    np.testing.assert_array_equal(beam0, [[1, 0]])
    np.testing.assert_array_equal(beam1, [[1]])
    np.testing.assert_allclose(beam_lp_v, [[-5.811451, -6.63339]], rtol=1e-6)
    np.testing.assert_array_equal(merged_v, [[0, 1]])
    np.testing.assert_array_equal(unmerged_v, [[0, 0, 1, 1]])

    # batch 1 (Keras's second loss case), with nothing to decode: an empty path of log-prob 0
    one = [a[:1] for _, a in feeds]
    one[-1] = np.array([0])
    got1 = f(one)
    np.testing.assert_allclose(got1[0][:, 0], [3.34211], atol=1e-5)
    assert got1[-3].shape == (1, 0)  # nothing decoded: no columns
    np.testing.assert_array_equal(got1[-1], [[0]])


# ---- ctc_label_dense_to_sparse ------------------------------------------------------------------

def test_dense_to_sparse():
    labels = K.placeholder((None, 4), dtype="int32")
    flabels = K.placeholder((None, 4), dtype="float32")
    lengths = K.placeholder((None,), dtype="int32")
    sp = K.ctc_label_dense_to_sparse(labels, lengths)
    fsp = K.ctc_label_dense_to_sparse(flabels, lengths)
    rng = np.random.default_rng(3)
    for lens in ([2, 0, 7, -1, 4], [3], []):
        lens = np.array(lens, np.int32)
        a = rng.integers(0, 9, (len(lens), 4)).astype(np.int32)
        got, want, _ = run([(labels, a), (flabels, a.astype(np.float32)), (lengths, lens)],
                           list(sp) + list(fsp))
        for g, w in zip(got, want):
            assert_same(g, w, f"lengths {lens}")
        mask = np.arange(4) < np.clip(lens, 0, 4)[:, None]
        n = int(mask.sum())
        for (indices, values, shape, count), dt in ((got[:4], np.int32), (got[4:], np.float32)):
            assert count.shape == () and count == n
            assert indices.shape == (4 * len(lens), 2) and values.dtype == dt
            np.testing.assert_array_equal(indices[:n], np.argwhere(mask))
            np.testing.assert_array_equal(values[:n], a[mask])
            assert np.all(indices[n:] == -1) and np.all(values[n:] == 0)
            np.testing.assert_array_equal(shape, [len(lens), 4])


# ---- ctc_batch_cost -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batch_cost(dtype):
    C = 4  # three labels and the blank
    label_dtype = "float32" if dtype == "float32" else "int32"  # Keras models often use floatx
    y_true = K.placeholder((None, 3), dtype=label_dtype)
    y_pred = K.placeholder((None, None, C), dtype=dtype)
    input_len = K.placeholder((None, 1), dtype="int32")
    label_len = K.placeholder((None, 1), dtype="int64")
    loss = K.ctc_batch_cost(y_true, y_pred, input_len, label_len)
    assert loss.shape == (None, 1) and loss.dtype == dtype
    rng = np.random.default_rng(5)

    def check(labels, lens, steps, y, oracle, what):
        feeds = [(y_true, np.array(labels, label_dtype)), (y_pred, y),
                 (input_len, np.array(steps, np.int32)[:, None]),
                 (label_len, np.array(lens, np.int64)[:, None])]
        got, want, _ = run(feeds, [loss])
        assert_same(got[0], want[0], what)
        tol = 1e-5 if dtype == "float32" else 1e-12
        assert_numpy(got[0], oracle, dtype, what, rtol=tol, atol=tol)
        return got[0]

    # (label row, label_length, input_length): repeats, lengths 0 and 1, shorter inputs, a
    # label that repeats need more steps than it has (impossible: infinite loss), end labels
    # (>= C - 1) after the label, a label_length beyond the row, and nothing at all
    cases = [([0, 1, 2], 3, 5), ([1, 1, 0], 2, 5), ([2, 0, 0], 0, 4), ([2, 0, 0], 1, 1),
             ([0, 0, 0], 3, 5), ([1, 1, 1], 3, 4), ([1, 3, 5], 3, 3), ([2, 1, 0], 9, 4),
             ([0, 0, 0], 0, 0)]
    labels, lens, steps = (list(v) for v in zip(*cases))
    y = probabilities(rng, (len(cases), 5, C), dtype)
    logs = step_logs(y)
    expect = []
    for b, (row, n, s) in enumerate(cases):
        label = tuple(c for c in row[:min(n, 3)] if c < C - 1)
        p = labelings(logs[b, :s]).get(label, 0.0)
        expect.append(-math.log(p) if p > 0 else math.inf)
    got = check(labels, lens, steps, y, np.array(expect)[:, None], "small cases")
    assert np.isinf(got[5, 0]) and got[8, 0] == 0

    # batch 1, and longer sequences against the probability-space forward algorithm
    check(labels[:1], lens[:1], steps[:1], y[:1], np.array(expect[:1])[:, None], "batch 1")
    B, T = 7, 30
    y = probabilities(rng, (B, T, C), dtype)
    labels = rng.integers(0, C - 1, (B, 3))
    lens = rng.integers(0, 4, B)
    steps = rng.integers(7, T + 1, B)  # room for any 3 labels
    logs = step_logs(y)
    expect = [forward_loss(logs[b, :steps[b]], labels[b, :lens[b]]) for b in range(B)]
    check(labels, lens, steps, y, np.array(expect)[:, None], "long sequences")
    check(np.zeros((0, 3)), np.zeros(0), np.zeros(0), np.zeros((0, 2, C), dtype),
          np.zeros((0, 1)), "empty batch")


# ---- ctc_decode ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_decode(dtype):
    # small: beam search that never prunes (40 >= the 31 prefixes of 4 steps over 2 labels)
    # equals the exact labeling probabilities; large: pruned beams and best paths
    small = K.placeholder((None, None, 3), dtype=dtype)
    large = K.placeholder((None, 12, 5), dtype=dtype)
    small_len, large_len = (K.placeholder((None,), dtype="int32") for _ in range(2))
    exact, exact_lp = K.ctc_decode(small, small_len, greedy=False, beam_width=40, top_paths=3,
                                   merge_repeated=True)
    pruned, pruned_lp = K.ctc_decode(large, large_len, greedy=False, beam_width=3, top_paths=2)
    best, best_lp = K.ctc_decode(large, large_len)
    outs = [*exact, exact_lp, *pruned, pruned_lp, best[0], best_lp]
    rng = np.random.default_rng(11)
    tol = 1e-5 if dtype == "float32" else 1e-12

    for B in (5, 1):
        ys = probabilities(rng, (B, 4, 3), dtype)
        ns = rng.integers(1, 5, B).astype(np.int32)
        ns[0] = 4
        yl = probabilities(rng, (B, 12, 5), dtype)
        nl = rng.integers(1, 13, B).astype(np.int32)  # top_paths=2 needs a step
        nl[0] = 12
        got, want, _ = run([(small, ys), (small_len, ns), (large, yl), (large_len, nl)], outs)
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, f"output {i}, batch {B}")
        e0, e1, e2, elp, p0, p1, plp, g0, glp = got

        top = [sorted(labelings(step_logs(ys)[b, :ns[b]]).items(), key=lambda kv: -kv[1])[:3]
               for b in range(B)]
        for k, dec in enumerate((e0, e1, e2)):
            assert_numpy(dec, padded([merged(t[k][0]) for t in top], 4), "int64", "exact")
        assert_numpy(elp, np.log([[p for _, p in t] for t in top]), dtype, "exact log p",
                     rtol=tol, atol=tol)

        logs = step_logs(yl)
        plain = [plain_beam_search(logs[b, :nl[b]], 3)[:2] for b in range(B)]
        assert_numpy(p0, padded([p[0][0] for p in plain], 12), "int64", "pruned path 0")
        assert_numpy(p1, padded([p[1][0] for p in plain], 12), "int64", "pruned path 1")
        assert_numpy(plp, [[p[0][1], p[1][1]] for p in plain], dtype, "pruned log p",
                     rtol=tol, atol=tol)

        z = np.log(yl + yl.dtype.type(EPS)).astype(np.float64)
        paths = [np.argmax(z[b, :nl[b]], -1) for b in range(B)]
        assert_numpy(g0, padded([collapse(tuple(p), 4) for p in paths], 12), "int64", "greedy")
        assert_numpy(glp, [[-z[b, np.arange(nl[b]), paths[b]].sum()] for b in range(B)], dtype,
                     "greedy log p", rtol=tol, atol=tol)


# ---- errors -------------------------------------------------------------------------------------

def test_build_errors():
    y = K.placeholder((None, 5, 4))
    n = K.placeholder((None,), dtype="int32")
    for width, top in ((2, 3), (2, 0)):
        with pytest.raises(ValueError, match="1 <= top_paths <= beam_width"):
            K.ctc_decode(y, n, greedy=False, beam_width=width, top_paths=top)
    with pytest.raises(ValueError, match="ctc_greedy_decode: operand ranks"):
        K.ctc_decode(K.placeholder((None, 5)), n)
    with pytest.raises(ValueError, match="ctc_loss: batch sizes differ"):
        K.ctc_batch_cost(K.placeholder((2, 3)), K.placeholder((3, 5, 4)), K.placeholder((3, 1)),
                         K.placeholder((3, 1)))
    with pytest.raises(ValueError, match=r"lengths need shape \(batch,\) or \(batch, 1\)"):
        K.ctc_batch_cost(K.placeholder((3, 3)), y, K.placeholder((3, 2)), K.placeholder((3, 1)))
    with pytest.raises(ValueError, match="at least one class"):
        K.ctc_decode(K.placeholder((None, 5, 0)), n)


def test_data_errors():
    labels = K.placeholder((None, 3), dtype="int32")
    y = K.placeholder((None, 4, 4))
    input_len, label_len = (K.placeholder((None,), dtype="int32") for _ in range(2))
    loss = K.function([labels, y, input_len, label_len],
                      [K.ctc_batch_cost(labels, y, input_len, label_len)])
    greedy = K.function([y, input_len], K.ctc_decode(y, input_len)[0])
    beam = K.function([y, input_len], K.ctc_decode(y, input_len, greedy=False, beam_width=4,
                                                   top_paths=2)[0])
    y_ok = probabilities(np.random.default_rng(2), (2, 4, 4), "float32")

    def i32(v):
        return np.array(v, np.int32)

    loss([i32([[0, 1, 2], [1, 3, 3]]), y_ok, i32([4, 3]), i32([3, 3])])
    cases = [
        (([[0, 1, 2], [0, 1, 2]], [4, 5], [3, 3]), r"must lie in \[0, time steps\]: 5 vs 4"),
        (([[0, 1, 2], [0, 1, 2]], [4, -1], [3, 3]), r"must lie in \[0, time steps\]: -1 vs 4"),
        (([[0, -2, 2], [0, 1, 2]], [4, 4], [3, 3]), "must not be negative .*: -2 vs 1"),
        (([[0, 3, 1], [0, 1, 2]], [4, 4], [3, 3]), "follows an end label .*: 1 vs 2"),
        (([[0, 1, 2], [0, 1, 2]], [4, 2], [3, 3]), "more labels than time steps .*: 3 vs 2"),
    ]
    for (lab, steps, lens), message in cases:
        with pytest.raises(ValueError, match="ctc_loss: .*" + message):
            loss([i32(lab), y_ok, i32(steps), i32(lens)])
    with pytest.raises(ValueError, match="ctc_loss: batch sizes differ: 2 vs 3"):
        loss([i32(np.zeros((3, 3))), y_ok, i32([4, 4]), i32([1, 1])])

    # decoding: a negative length decodes nothing, one beyond the time steps is an error, and
    # no step leaves one beam (the empty prefix) for two paths
    assert greedy([y_ok, i32([-1, 0])])[0].shape == (2, 0)
    with pytest.raises(ValueError, match="ctc_greedy_decode: .* exceed the time steps: 5 vs 4"):
        greedy([y_ok, i32([4, 5])])
    with pytest.raises(ValueError, match="ctc_beam_decode: .* exceed the time steps: 5 vs 4"):
        beam([y_ok, i32([5, 4])])
    with pytest.raises(ValueError, match="ctc_beam_decode: fewer beams than top_paths: 1 vs 2"):
        beam([y_ok, i32([4, 0])])
