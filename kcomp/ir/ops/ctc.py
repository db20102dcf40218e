"""Connectionist temporal classification with TensorFlow's semantics (the blank is the last
class): dense labels to a packed sparse list, the CTC loss, and greedy and beam-search decoding.

The ops take logits, batch-major (batch, time, classes); the Keras functions in
kcomp/backend/ctc.py feed them log(y_pred + epsilon) as Keras 2.3.1 does. Per-item lengths are
int32 vectors. Bad lengths and labels are data errors: the kernels report them (ValueError),
and the references below raise the same messages. Kernels: kcomp/templates/cpu/ctc_*.j2 with
helpers in csrc/include/kcomp/ctc.h; each reference here computes as its kernel does.
"""
from __future__ import annotations

import math

import numpy as np

from .. import dtypes as D
from .. import shapes as S
from ..autodiff import defgrad
from ..graph import TensorType
from ..registry import apply1, register, shape_error

NEG_INF = -math.inf

_KINDS = {"f": ("a float", lambda dt: dt.is_float), "n": ("a numeric", lambda dt: not dt.is_bool),
          "i32": ("the int32", lambda dt: dt == D.int32)}


def _check(op, types, ranks, kinds):
    """Ranks and dtype kinds of the operands: 'f' float, 'n' numeric, 'i32' int32."""
    for i, (t, rank, kind) in enumerate(zip(types, ranks, kinds)):
        if t.ndim != rank:
            raise shape_error(op, f"operand ranks must be {ranks}", *types)
        what, ok = _KINDS[kind]
        if not ok(t.dtype):
            raise shape_error(op, f"operand {i} needs {what} dtype, got {t.dtype.name}", *types)


def _batch(op, types):
    """The batch extent every operand shares (checked at run time when unknown)."""
    b = types[0].dims[0]
    for t in types[1:]:
        b = S.same(b, t.dims[0], f"{op}: batch sizes differ")
    return b


def _with_logits(op, types, ranks, kinds):
    """Checks operands led by logits (B, T, C); returns the batch extent."""
    _check(op, types, ranks, kinds)
    if types[0].dims[2] == 0:
        raise shape_error(op, "there must be at least one class (the blank)", *types)
    return _batch(op, types)


def _lse(a: float, b: float) -> float:
    """TensorFlow's LogSumExp of two log-probabilities (the kernels' kc::ctc::log_sum_exp)."""
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    return a + math.log1p(math.exp(b - a)) if a > b else b + math.log1p(math.exp(a - b))


def log_softmax(row) -> list:
    """One step's log-probabilities, summed in order as kc::ctc::log_softmax does."""
    m = float(row[0])
    for v in row:
        m = float(v) if v > m else m
    s = 0.0
    for v in row:
        s += math.exp(float(v) - m)
    log_s = math.log(s)
    return [(float(v) - m) - log_s for v in row]


def _clamp(n, hi) -> int:
    return min(max(int(n), 0), hi)


def _need_classes(op, C) -> None:
    if C < 1:
        raise ValueError(f"{op}: there must be at least one class (the blank): {C} vs 1")


# ---- ctc_dense_to_sparse ---------------------------------------------------------------------
# The entries (b, j), j < label_lengths[b] (clamped to [0, L]), of dense labels (B, L) in
# row-major order, packed first into outputs of the maximal static size B * L:
# indices int64 (B*L, 2) and values (B*L,) (the labels' dtype); count int64 () says how many
# rows are entries. The remaining rows have indices (-1, -1) and value 0.

def _sparse_infer(types, attrs):
    op = "ctc_dense_to_sparse"
    _check(op, types, (2, 1), ("n", "i32"))
    _batch(op, types)
    n = S.mul(*types[0].dims)
    return [TensorType(D.int64, (n, 2)), TensorType(types[0].dtype, (n,)),
            TensorType(D.int64, ())]


def _sparse_ref(values, attrs, out_types):
    labels, lengths = values
    B, L = labels.shape
    indices = np.full((B * L, 2), -1, np.int64)
    vals = np.zeros(B * L, labels.dtype)
    k = 0
    for b in range(B):
        n = _clamp(lengths[b], L)
        indices[k:k + n, 0] = b
        indices[k:k + n, 1] = np.arange(n)
        vals[k:k + n] = labels[b, :n]
        k += n
    return [indices, vals, np.array(k, np.int64)]


register("ctc_dense_to_sparse", "other", _sparse_infer, _sparse_ref, exact=True,
         doc="inputs: labels (B, L), label_lengths int32 (B,). outputs: indices int64 (B*L, 2), "
             "values (B*L,), count int64 (): the first count rows are the entries (b, j), "
             "j < clamp(label_lengths[b], 0, L), row-major; other rows (-1, -1) and 0")


# ---- ctc_loss ----------------------------------------------------------------------------------
# TensorFlow's ctc_loss (v1: ctc_merge_repeated, no preprocessing, no ignoring of long labels)
# on logits; computed in double. A label row holds clamp(label_length, 0, L) entries; as in
# TensorFlow an entry >= C - 1 ends the label and only such entries may follow it, and the
# entry count may not exceed logit_length. An empty label gives -log P(all blanks) where
# TensorFlow v1 raises (v2 computes the same value).

def _loss_infer(types, attrs):
    b = _with_logits("ctc_loss", types, (3, 2, 1, 1), ("f", "i32", "i32", "i32"))
    return [TensorType(types[0].dtype, (b,))]


def _extended_label(op: str, labels: np.ndarray, label_length: int, C: int, steps: int,
                    T: int) -> list:
    """l': a blank before each label entry and at the end, after TensorFlow's checks (the
    kernels' kc::ctc::check_label); raises ValueError with the kernels' messages."""
    _need_classes(op, C)
    if not 0 <= steps <= T:
        raise ValueError(f"{op}: logit_length must lie in [0, time steps]: {steps} vs {T}")
    n = _clamp(label_length, labels.shape[0])
    lab = [int(v) for v in labels[:n]]
    k = next((j for j, v in enumerate(lab) if v >= C - 1), n)  # entries >= C - 1 end the label
    for j in range(k, n):
        if lab[j] < C - 1:
            raise ValueError(f"{op}: a label follows an end label (>= classes - 1; "
                             f"label vs position): {lab[j]} vs {j}")
    for j in range(k):
        if lab[j] < 0:
            raise ValueError(f"{op}: labels must not be negative (label vs position): "
                             f"{lab[j]} vs {j}")
    if n > steps:
        raise ValueError(f"{op}: more labels than time steps (labels vs logit_length): "
                         f"{n} vs {steps}")
    ext = [C - 1]
    for v in lab[:k]:
        ext += [v, C - 1]
    return ext


def _can_skip(ext, u) -> bool:
    """Whether a path may go from l'[u - 2] straight to l'[u]: not to a blank, not between two
    equal labels."""
    return u > 1 and ext[u] != ext[-1] and ext[u] != ext[u - 2]


def _alphas(lp: list, ext: list, steps: int) -> list:
    """The forward variables alpha[t][u] = log p(prefixes of l' up to u in t + 1 steps)."""
    U = len(ext)
    rows = []
    for t in range(steps):
        alpha = [NEG_INF] * U
        for u in range(U):
            if t == 0:  # a path starts with a blank or the first label
                if u < 2:
                    alpha[u] = lp[t][ext[u]] + 0.0
                continue
            prev = rows[-1]
            acc = prev[u]
            if u > 0:
                acc = _lse(acc, prev[u - 1])
            if _can_skip(ext, u):
                acc = _lse(acc, prev[u - 2])
            alpha[u] = lp[t][ext[u]] + acc
        rows.append(alpha)
    return rows


def _log_p(alpha_last: list) -> float:
    return alpha_last[0] if len(alpha_last) == 1 else _lse(alpha_last[-1], alpha_last[-2])


def loss_item(x: np.ndarray, labels: np.ndarray, label_length: int, steps: int) -> float:
    """-log p(labels | x) for one item; x: (T, C) float64 logits. Raises ValueError like the
    kernel does (kc::ctc::loss in csrc/include/kcomp/ctc.h)."""
    T, C = x.shape
    ext = _extended_label("ctc_loss", labels, label_length, C, steps, T)
    if steps == 0:
        return 0.0
    lp = [log_softmax(x[t]) for t in range(steps)]
    return -_log_p(_alphas(lp, ext, steps)[-1])


def loss_grad_item(x: np.ndarray, labels: np.ndarray, label_length: int, steps: int,
                   scale: float) -> np.ndarray:
    """scale * d(-log p(labels | x)) / dx for one item (kc::ctc::loss_grad): softmax(x[t]) minus
    the posterior of each class at t, from the forward and backward variables; rows past
    `steps` get 0, and an item no path can produce gets softmax(x) (TensorFlow's choice)."""
    T, C = x.shape
    ext = _extended_label("ctc_loss", labels, label_length, C, steps, T)
    grad = np.zeros((T, C))
    if steps == 0:
        return grad
    U = len(ext)
    lp = [log_softmax(x[t]) for t in range(steps)]
    alpha = _alphas(lp, ext, steps)
    beta = [[NEG_INF] * U for _ in range(steps)]
    for u in range(max(U - 2, 0), U):  # a path ends with the last label or the final blank
        beta[steps - 1][u] = lp[steps - 1][ext[u]] + 0.0
    for t in range(steps - 2, -1, -1):
        for u in range(U):
            acc = beta[t + 1][u]
            if u + 1 < U:
                acc = _lse(acc, beta[t + 1][u + 1])
            if u + 2 < U and _can_skip(ext, u + 2):
                acc = _lse(acc, beta[t + 1][u + 2])
            beta[t][u] = lp[t][ext[u]] + acc
    log_p = _log_p(alpha[-1])
    for t in range(steps):
        occupied = [NEG_INF] * C  # log sum over u with l'[u] == c of alpha * beta
        for u in range(U):
            occupied[ext[u]] = _lse(occupied[ext[u]], alpha[t][u] + beta[t][u])
        for c in range(C):
            prob = math.exp(lp[t][c])
            post = 0.0 if log_p == NEG_INF else math.exp(occupied[c] - lp[t][c] - log_p)
            grad[t, c] = scale * (prob - post)
    return grad


def _loss_ref(values, attrs, out_types):
    x, labels, label_length, logit_length = values
    out = [loss_item(x[b].astype(np.float64), labels[b], label_length[b], int(logit_length[b]))
           for b in range(x.shape[0])]
    return [np.array(out, np.float64).astype(x.dtype)]


register("ctc_loss", "other", _loss_infer, _loss_ref,
         doc="inputs: logits (B, T, C), labels int32 (B, L), label_length int32 (B,), "
             "logit_length int32 (B,). output (B,): -log p(label | log_softmax(logits)), "
             "blank = C - 1, TensorFlow's ctc_loss semantics")


def _loss_grad_infer(types, attrs):
    _with_logits("ctc_loss_grad", types, (3, 2, 1, 1, 1), ("f", "i32", "i32", "i32", "f"))
    if types[4].dtype != types[0].dtype:
        raise shape_error("ctc_loss_grad", "the scale must have the logits' dtype", *types)
    return [types[0]]


def _loss_grad_ref(values, attrs, out_types):
    x, labels, label_length, logit_length, scale = values
    out = [loss_grad_item(x[b].astype(np.float64), labels[b], label_length[b],
                          int(logit_length[b]), float(scale[b])) for b in range(len(x))]
    return [np.array(out, np.float64).reshape(x.shape).astype(x.dtype)]


register("ctc_loss_grad", "other", _loss_grad_infer, _loss_grad_ref,
         doc="inputs: ctc_loss's, then scale (B,). output (B, T, C): scale[b] times the gradient "
             "of ctc_loss with respect to the logits")

defgrad("ctc_loss")(lambda node, grads: [
    apply1("ctc_loss_grad", list(node.inputs) + [grads[0]]), None, None, None])


# ---- decoders ----------------------------------------------------------------------------------
# Both write each decoded sequence into a row of width T (the longest possible), padded with -1:
# output shapes follow input shapes, where TensorFlow's dense width is the longest decoded
# sequence of the batch. A sequence_length above T is an error; a negative one counts as 0.

def _steps(op, n: int, T: int) -> int:
    if n > T:
        raise ValueError(f"{op}: sequence_length must not exceed the time steps: {n} vs {T}")
    return max(n, 0)


def _greedy_infer(types, attrs):
    b = _with_logits("ctc_greedy_decode", types, (3, 1), ("f", "i32"))
    return [TensorType(D.int64, (b, types[0].dims[1])), TensorType(types[0].dtype, (b, 1))]


def _greedy_ref(values, attrs, out_types):
    x, seq = values
    B, T, C = x.shape
    decoded = np.full((B, T), -1, np.int64)
    neg_sum = np.zeros((B, 1), np.float64)
    for b in range(B):
        _need_classes("ctc_greedy_decode", C)
        prev, n, total = -1, 0, 0.0
        for t in range(_steps("ctc_greedy_decode", int(seq[b]), T)):
            row = x[b, t]
            k = 0
            for c in range(1, C):  # the first maximum; a NaN is never picked after index 0
                if row[c] > row[k]:
                    k = c
            total += -float(row[k])
            if k != C - 1 and k != prev:
                decoded[b, n] = k
                n += 1
            prev = k
        neg_sum[b, 0] = total
    return [decoded, neg_sum.astype(x.dtype)]


register("ctc_greedy_decode", "other", _greedy_infer, _greedy_ref,
         doc="inputs: logits (B, T, C), sequence_length int32 (B,). outputs: decoded int64 "
             "(B, T) (best path, repeats merged, blanks dropped, padded with -1) and the "
             "negative sum of each step's largest logit (B, 1)")


class _Beam:
    """A beam of TensorFlow's CTCBeamSearchDecoder: a label prefix with the log-probabilities
    of ending in a blank (b), in its last label (l), and in all (t); o: at the previous step,
    n: at this step."""
    __slots__ = ("seq", "ob", "ot", "nb", "nl", "nt", "stamp")

    def __init__(self, seq, nb, nl, stamp):
        self.seq, self.nb, self.nl, self.nt, self.stamp = seq, nb, nl, _lse(nb, nl), stamp

    @property
    def label(self):
        return self.seq[-1] if self.seq else -1


def beam_item(x: np.ndarray, steps: int, width: int, top: int):
    """TensorFlow's beam search over x[:steps] (float64 logits, log-softmax per step): the `top`
    best beams, best first. The beam keeps at most `width` prefixes; a new one displaces the
    worst when better. Equal totals: the older beam ranks first (TensorFlow leaves that order
    unspecified)."""
    C = x.shape[1]
    blank = C - 1
    alive = {(): _Beam((), 0.0, NEG_INF, 0)}
    stamp = 1

    def worst():
        return min(alive.values(), key=lambda e: (e.nt, -e.stamp))

    def candidate(total):
        return total > NEG_INF and (len(alive) < width or total > worst().nt)

    for t in range(steps):
        lp = log_softmax(x[t])
        branches = sorted(alive.values(), key=lambda e: (-e.nt, e.stamp))
        for e in branches:
            e.ob, e.ot = e.nb, e.nt
        # extend the beams: stay on the last label or move to it from the parent prefix
        for e in branches:
            if e.seq:
                p = alive.get(e.seq[:-1])
                if p is not None and p.nt != NEG_INF:
                    e.nl = _lse(e.nl, p.ob if e.label == p.label else p.ot)
                e.nl += lp[e.label]
            e.nb = e.ot + lp[blank]
            e.nt = _lse(e.nb, e.nl)
        # grow new prefixes, in the branches' order, each displacing the worst beam when full
        for e in branches:
            if not candidate(e.ot):
                continue
            for c in range(C - 1):
                seq = e.seq + (c,)
                if seq in alive:
                    continue
                nl = lp[c] + (e.ob if c == e.label else e.ot)
                if candidate(nl):
                    if len(alive) == width:
                        del alive[worst().seq]
                    alive[seq] = _Beam(seq, NEG_INF, nl, stamp)
                    stamp += 1
    beams = sorted(alive.values(), key=lambda e: (-e.nt, e.stamp))
    if top > len(beams):
        raise ValueError(f"ctc_beam_decode: fewer beams than top_paths: {len(beams)} vs {top}")
    return [(e.seq, e.nt) for e in beams[:top]]


def _beam_infer(types, attrs):
    op = "ctc_beam_decode"
    b = _with_logits(op, types, (3, 1), ("f", "i32"))
    width, top = attrs["beam_width"], attrs["top_paths"]
    if not 1 <= top <= width:
        raise shape_error(op, f"needs 1 <= top_paths <= beam_width, got top_paths={top}, "
                              f"beam_width={width}", *types)
    return [TensorType(D.int64, (b, types[0].dims[1]))] * top + \
        [TensorType(types[0].dtype, (b, top))]


def _beam_ref(values, attrs, out_types):
    x, seq = values
    B, T, C = x.shape
    top = attrs["top_paths"]
    paths = [np.full((B, T), -1, np.int64) for _ in range(top)]
    log_probs = np.zeros((B, top), np.float64)
    for b in range(B):
        _need_classes("ctc_beam_decode", C)
        steps = _steps("ctc_beam_decode", int(seq[b]), T)
        best = beam_item(x[b].astype(np.float64), steps, attrs["beam_width"], top)
        for p, (labels, total) in enumerate(best):
            if attrs["merge_repeated"]:
                labels = [v for i, v in enumerate(labels) if i == 0 or v != labels[i - 1]]
            paths[p][b, :len(labels)] = labels
            log_probs[b, p] = total
    return paths + [log_probs.astype(x.dtype)]


register("ctc_beam_decode", "other", _beam_infer, _beam_ref,
         doc="inputs: logits (B, T, C), sequence_length int32 (B,). attrs: beam_width, "
             "top_paths, merge_repeated. outputs: top_paths decoded int64 (B, T) padded with "
             "-1, best first, and their log-probabilities (B, top_paths) under "
             "log_softmax(logits), as TensorFlow's ctc_beam_search_decoder")
