/* kcomp generated-code support: connectionist temporal classification (CTC) with TensorFlow's
 * semantics; the blank is the last class.
 *
 * Each function handles one batch item (the kernels in kcomp/templates/cpu/ctc_*.j2 run items in
 * parallel; those in kcomp/templates/cuda/ctc_*.j2 run one item per GPU thread) and is the native
 * twin of a reference in kcomp/ir/ops/ctc.py: same operations in the same order, in double. Bad
 * lengths and labels come back as a Status, which the kernel reports (the call raises
 * ValueError).
 */
#ifndef KCOMP_CTC_H
#define KCOMP_CTC_H

#include "rt.h"

/* Under nvcc the per-item functions below are host and device functions (a CUDA kernel runs one
 * item per thread); for the CPU this is empty. */
#ifdef __CUDACC__
#define KC_CTC_FN __host__ __device__
#else
#define KC_CTC_FN
#endif

namespace kc {
namespace ctc {

/* A data error: a message (a string literal, null for success) and the two numbers it names. */
struct Status {
  const char *msg;
  int64_t a, b;
};
KC_INLINE Status ok() { return Status{nullptr, 0, 0}; }
KC_INLINE Status error(const char *msg, int64_t a, int64_t b) { return Status{msg, a, b}; }

static constexpr double NEG_INF = -__builtin_inf(); /* log(0) */

/* TensorFlow's LogSumExp of two log-probabilities. */
KC_INLINE double log_sum_exp(double a, double b) {
  if (a == NEG_INF) return b;
  if (b == NEG_INF) return a;
  return a > b ? a + __builtin_log1p(__builtin_exp(b - a))
               : b + __builtin_log1p(__builtin_exp(a - b));
}

/* out = log_softmax(x[0:C]), summed in order. */
template <class S> KC_INLINE void log_softmax(const S *x, int64_t C, double *out) {
  double m = (double)x[0];
  for (int64_t c = 0; c < C; ++c)
    if ((double)x[c] > m) m = (double)x[c];
  double s = 0;
  for (int64_t c = 0; c < C; ++c) s += __builtin_exp((double)x[c] - m);
  const double log_s = __builtin_log(s);
  for (int64_t c = 0; c < C; ++c) out[c] = ((double)x[c] - m) - log_s;
}

/* ---- loss ---------------------------------------------------------------------------------- */

/* The label proper of an item after TensorFlow's checks: *k entries of labels (an entry >= C - 1
 * ends the label; only such entries may follow it). */
KC_INLINE Status check_label(const int32_t *labels, int64_t L, int64_t label_length, int64_t C,
                             int64_t steps, int64_t T, int64_t *k) {
  if (C < 1) return error("ctc_loss: there must be at least one class (the blank)", C, 1);
  if (steps < 0 || steps > T)
    return error("ctc_loss: logit_length must lie in [0, time steps]", steps, T);
  const int64_t n = label_length < 0 ? 0 : label_length > L ? L : label_length;
  *k = 0;
  while (*k < n && labels[*k] < C - 1) ++*k;
  for (int64_t j = *k; j < n; ++j)
    if (labels[j] < C - 1)
      return error("ctc_loss: a label follows an end label (>= classes - 1; label vs position)",
                   labels[j], j);
  for (int64_t j = 0; j < *k; ++j)
    if (labels[j] < 0)
      return error("ctc_loss: labels must not be negative (label vs position)", labels[j], j);
  if (n > steps)
    return error("ctc_loss: more labels than time steps (labels vs logit_length)", n, steps);
  return ok();
}

/* l'[u]: a blank at even u, labels[u / 2] at odd u. */
KC_INLINE int64_t ext_label(const int32_t *labels, int64_t u, int64_t blank) {
  return (u & 1) ? labels[u >> 1] : blank;
}

/* Whether a path may go from l'[u - 2] straight to l'[u] (between two different labels). */
KC_INLINE bool can_skip(const int32_t *labels, int64_t u) {
  return (u & 1) && u > 1 && labels[u >> 1] != labels[(u >> 1) - 1];
}

/* One step of the forward algorithm: next[u] from alpha (the previous step's), lp the step's
 * log-probabilities; t == 0 starts the paths. */
KC_INLINE void alpha_step(const double *alpha, const double *lp, const int32_t *labels,
                          int64_t U, int64_t blank, bool first, double *next) {
  for (int64_t u = 0; u < U; ++u) {
    const int64_t label = ext_label(labels, u, blank);
    if (first) {  // a path starts with a blank or the first label
      next[u] = u < 2 ? lp[label] + 0.0 : NEG_INF;
      continue;
    }
    double acc = alpha[u];
    if (u > 0) acc = log_sum_exp(acc, alpha[u - 1]);
    if (can_skip(labels, u)) acc = log_sum_exp(acc, alpha[u - 2]);
    next[u] = lp[label] + acc;
  }
}

KC_INLINE double log_p(const double *alpha, int64_t U) {
  return U == 1 ? alpha[0] : log_sum_exp(alpha[U - 1], alpha[U - 2]);
}

/* Doubles of work memory loss() needs for C classes and label rows of L entries. */
KC_INLINE int64_t loss_work(int64_t C, int64_t L) { return C + 2 * (2 * L + 1); }

/* -log p(labels | log_softmax(x)) of one item by the forward algorithm: x holds T rows of C
 * logits, the first `steps` of them used; labels is the item's row of L entries, of which
 * label_length (clamped to [0, L]) count. */
template <class S>
KC_CTC_FN Status loss(const S *x, int64_t T, int64_t C, const int32_t *labels, int64_t L,
                      int64_t label_length, int64_t steps, double *work, double *out) {
  int64_t k;
  const Status st = check_label(labels, L, label_length, C, steps, T, &k);
  if (st.msg) return st;
  if (steps == 0) {
    *out = 0;
    return ok();
  }
  const int64_t U = 2 * k + 1, blank = C - 1;
  double *lp = work, *alpha = work + C, *next = alpha + U;
  for (int64_t t = 0; t < steps; ++t) {
    log_softmax(x + t * C, C, lp);
    alpha_step(alpha, lp, labels, U, blank, t == 0, next);
    double *swap = alpha;
    alpha = next;
    next = swap;
  }
  *out = -log_p(alpha, U);
  return ok();
}

/* Doubles of work memory loss_grad() needs for T steps, C classes and label rows of L. */
KC_INLINE int64_t loss_grad_work(int64_t T, int64_t C, int64_t L) {
  return T * C + 2 * T * (2 * L + 1) + C;
}

/* scale * d loss / d x of one item, into out (T rows of C): softmax(x[t]) minus each class's
 * posterior at t, from the forward (alpha) and backward (beta) variables; rows past `steps`
 * are 0, and an item no path can produce gets softmax(x) (TensorFlow's choice). */
template <class S>
KC_CTC_FN Status loss_grad(const S *x, int64_t T, int64_t C, const int32_t *labels, int64_t L,
                           int64_t label_length, int64_t steps, double scale, double *work,
                           S *out) {
  int64_t k;
  const Status st = check_label(labels, L, label_length, C, steps, T, &k);
  if (st.msg) return st;
  for (int64_t i = 0; i < T * C; ++i) out[i] = (S)0;
  if (steps == 0) return ok();
  const int64_t U = 2 * k + 1, blank = C - 1;
  double *lp = work, *alpha = lp + T * C, *beta = alpha + T * U, *occupied = beta + T * U;
  for (int64_t t = 0; t < steps; ++t) {
    log_softmax(x + t * C, C, lp + t * C);
    alpha_step(t ? alpha + (t - 1) * U : alpha, lp + t * C, labels, U, blank, t == 0,
               alpha + t * U);
  }
  double *last = beta + (steps - 1) * U;
  for (int64_t u = 0; u < U; ++u)  // a path ends with the last label or the final blank
    last[u] = u >= U - 2 ? lp[(steps - 1) * C + ext_label(labels, u, blank)] + 0.0 : NEG_INF;
  for (int64_t t = steps - 2; t >= 0; --t) {
    const double *after = beta + (t + 1) * U;
    for (int64_t u = 0; u < U; ++u) {
      double acc = after[u];
      if (u + 1 < U) acc = log_sum_exp(acc, after[u + 1]);
      if (u + 2 < U && can_skip(labels, u + 2)) acc = log_sum_exp(acc, after[u + 2]);
      beta[t * U + u] = lp[t * C + ext_label(labels, u, blank)] + acc;
    }
  }
  const double lp_all = log_p(alpha + (steps - 1) * U, U);
  for (int64_t t = 0; t < steps; ++t) {
    for (int64_t c = 0; c < C; ++c) occupied[c] = NEG_INF;
    for (int64_t u = 0; u < U; ++u) {
      double &o = occupied[ext_label(labels, u, blank)];
      o = log_sum_exp(o, alpha[t * U + u] + beta[t * U + u]);
    }
    for (int64_t c = 0; c < C; ++c) {
      const double l = lp[t * C + c];
      const double post = lp_all == NEG_INF ? 0.0 : __builtin_exp(occupied[c] - l - lp_all);
      out[t * C + c] = (S)(scale * (__builtin_exp(l) - post));
    }
  }
  return ok();
}

/* ---- greedy decoding --------------------------------------------------------------------- */

/* Best path of one item: the first largest logit of each of the first `steps` rows, repeats
 * merged and blanks dropped, into out[0:T] padded with -1; neg_sum = -(sum of those logits). */
template <class S>
KC_CTC_FN Status greedy(const S *x, int64_t T, int64_t C, int64_t steps, int64_t *out,
                        double *neg_sum) {
  if (C < 1) return error("ctc_greedy_decode: there must be at least one class (the blank)", C, 1);
  if (steps > T)
    return error("ctc_greedy_decode: sequence_length must not exceed the time steps", steps, T);
  int64_t n = 0, prev = -1;
  double total = 0;
  for (int64_t t = 0; t < steps; ++t) {
    const S *row = x + t * C;
    int64_t best = 0;
    for (int64_t c = 1; c < C; ++c)
      if (row[c] > row[best]) best = c;
    total += -(double)row[best];
    if (best != C - 1 && best != prev) out[n++] = best;
    prev = best;
  }
  for (; n < T; ++n) out[n] = -1;
  *neg_sum = total;
  return ok();
}

/* ---- beam search ------------------------------------------------------------------------- */

/* TensorFlow's CTCBeamSearchDecoder (default scorer, no label selection) over log_softmax of
 * each step's logits. The beam holds at most W label prefixes ("beams"). Each step first extends
 * every beam (its last label or a blank again), then, taking beams best first, grows each
 * candidate beam by every label: a new prefix enters when the beam is not full or it beats the
 * worst beam, which it displaces. TensorFlow leaves the order of equal totals unspecified; here
 * the older beam ranks first.
 *
 * Label sequences live in a history tree (node: parent node, last label) that gains at most W
 * nodes per step. A beam finds its parent (the beam of its prefix without the last label) by a
 * hash of the sequence, checked against the tree. */
struct Beam {
  double ob, ot;              // previous step: log p(ends in a blank), log p(any ending)
  double nb, nl, nt;          // this step: the same and log p(ends in its last label)
  uint64_t hash, phash;       // of the sequence and of the parent's sequence
  int64_t stamp;              // creation order
  int32_t node, len, label;   // the sequence (-1: empty), its length, its last label (-1: none)
  int32_t parent;             // index of the parent beam, -1 when it is not in the beam
  int32_t first_child, next_sibling;
  int32_t alive;              // 0 once displaced
};

/* A prefix grown this step: beam `from` followed by `label`. */
struct Grown {
  double nl;
  int64_t stamp;
  int32_t from, label;
};

KC_INLINE uint64_t mix(uint64_t h, int32_t label) {
  uint64_t z = h ^ ((uint64_t)(uint32_t)label + 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

KC_INLINE int64_t table_size(int64_t W) {
  int64_t p = 2;
  while (p < 2 * W) p *= 2;
  return p;
}

/* Bytes of work memory one item's beam search needs (a multiple of 64). */
KC_INLINE int64_t beam_work_bytes(int64_t T, int64_t C, int64_t W) {
  const int64_t bytes = 2 * W * (int64_t)sizeof(Beam) + W * (int64_t)sizeof(Grown) + C * 8 +
                        4 * (W + table_size(W) + C + 2 * T * W);
  return (bytes + 63) & ~(int64_t)63;
}

class BeamSearch {
 public:
  KC_CTC_FN BeamSearch(void *work, int64_t T, int64_t C, int64_t W) : C_(C), W_(W) {
    cur_ = (Beam *)work;
    next_ = cur_ + W;
    grown_ = (Grown *)(next_ + W);
    lp_ = (double *)(grown_ + W);
    heap_ = (int32_t *)(lp_ + C);
    table_ = heap_ + W;
    child_of_ = table_ + table_size(W);
    node_parent_ = child_of_ + C;
    node_label_ = node_parent_ + T * W;
    mask_ = table_size(W) - 1;
    for (int64_t c = 0; c < C; ++c) child_of_[c] = -1;
    Beam &root = cur_[0];
    root.nb = 0;
    root.nl = NEG_INF;
    root.nt = 0;
    root.hash = root.phash = 0;
    root.stamp = 0;
    root.node = -1;
    root.len = 0;
    root.label = -1;
    root.parent = root.first_child = root.next_sibling = -1;
    root.alive = 1;
    n_ = 1;
  }

  template <class S> KC_CTC_FN void step(const S *x) {
    log_softmax(x, C_, lp_);
    const int32_t blank = (int32_t)(C_ - 1);
    for (int32_t i = 0; i < n_; ++i) {
      Beam &e = cur_[i];
      e.ob = e.nb;
      e.ot = e.nt;
    }
    // extend every beam, best first (a parent extended earlier shows its new total)
    for (int32_t i = 0; i < n_; ++i) {
      Beam &e = cur_[i];
      if (e.len > 0) {
        if (e.parent >= 0 && cur_[e.parent].nt != NEG_INF) {
          const Beam &p = cur_[e.parent];
          e.nl = log_sum_exp(e.nl, e.label == p.label ? p.ob : p.ot);
        }
        e.nl += lp_[e.label];
      }
      e.nb = e.ot + lp_[blank];
      e.nt = log_sum_exp(e.nb, e.nl);
    }
    // grow, best beam first; a displaced beam still grows (its old probabilities stand)
    n_heap_ = n_;
    n_grown_ = 0;
    for (int32_t i = 0; i < n_; ++i) heap_[i] = i;
    for (int32_t i = n_ / 2 - 1; i >= 0; --i) sift_down(i);
    for (int32_t i = 0; i < n_; ++i) {
      const Beam &e = cur_[i];
      if (!candidate(e.ot)) continue;
      for (int32_t c = e.first_child; c >= 0; c = cur_[c].next_sibling)
        child_of_[cur_[c].label] = c;
      for (int32_t label = 0; label < blank; ++label) {
        const int32_t have = child_of_[label];
        if (have >= 0 && cur_[have].alive) continue;
        const double nl = lp_[label] + (label == e.label ? e.ob : e.ot);
        if (candidate(nl)) grow(i, label, nl);
      }
      for (int32_t c = e.first_child; c >= 0; c = cur_[c].next_sibling)
        child_of_[cur_[c].label] = -1;
    }
    // the survivors, best first, are the next step's beams
    const int32_t m = n_heap_;
    for (int32_t i = m - 1; i >= 0; --i) {
      const int32_t r = heap_[0];
      heap_[0] = heap_[--n_heap_];
      sift_down(0);
      settle(r, next_[i]);
    }
    Beam *swap = cur_;
    cur_ = next_;
    next_ = swap;
    n_ = m;
    link_parents();
  }

  /* The `top` best beams: labels into paths[p][at : at + T] padded with -1 (runs of a label
   * merged if `merge`), log-probabilities into log_probs[0 : top]. */
  template <class O>
  KC_CTC_FN Status write(int64_t T, int64_t top, bool merge, int64_t *const *paths, int64_t at,
                         O *log_probs) const {
    if (top > n_) return error("ctc_beam_decode: fewer beams than top_paths", n_, top);
    for (int64_t p = 0; p < top; ++p) {
      int64_t *out = paths[p] + at;
      int64_t count = 0;
      int32_t later = -1;
      for (int32_t a = cur_[p].node; a >= 0; later = node_label_[a], a = node_parent_[a])
        if (!merge || node_label_[a] != later) ++count;
      int64_t k = count;
      later = -1;
      for (int32_t a = cur_[p].node; a >= 0; later = node_label_[a], a = node_parent_[a])
        if (!merge || node_label_[a] != later) out[--k] = node_label_[a];
      for (int64_t j = count; j < T; ++j) out[j] = -1;
      log_probs[p] = (O)cur_[p].nt;
    }
    return ok();
  }

 private:
  KC_CTC_FN double total(int32_t r) const { return r >= 0 ? cur_[r].nt : grown_[~r].nl; }
  KC_CTC_FN int64_t stamp(int32_t r) const { return r >= 0 ? cur_[r].stamp : grown_[~r].stamp; }

  /* The heap keeps the worst beam on top: lowest total, then youngest. */
  KC_CTC_FN bool worse(int32_t a, int32_t b) const {
    const double ta = total(a), tb = total(b);
    return ta < tb || (ta == tb && stamp(a) > stamp(b));
  }
  KC_CTC_FN void sift_down(int32_t i) {
    for (;;) {
      int32_t c = 2 * i + 1;
      if (c >= n_heap_) return;
      if (c + 1 < n_heap_ && worse(heap_[c + 1], heap_[c])) ++c;
      if (!worse(heap_[c], heap_[i])) return;
      const int32_t t = heap_[c];
      heap_[c] = heap_[i];
      heap_[i] = t;
      i = c;
    }
  }
  KC_CTC_FN void sift_up(int32_t i) {
    while (i > 0) {
      const int32_t p = (i - 1) / 2;
      if (!worse(heap_[i], heap_[p])) return;
      const int32_t t = heap_[p];
      heap_[p] = heap_[i];
      heap_[i] = t;
      i = p;
    }
  }

  KC_CTC_FN bool candidate(double t) const {
    return t > NEG_INF && (n_heap_ < W_ || t > total(heap_[0]));
  }

  /* Add the prefix cur_[from] + label, displacing the worst beam when the beam is full. A
   * displaced grown prefix gives up its slot, so at most W slots are ever in use. */
  KC_CTC_FN void grow(int32_t from, int32_t label, double nl) {
    int32_t slot;
    if (n_heap_ == W_) {
      const int32_t r = heap_[0];
      if (r >= 0) {
        cur_[r].alive = 0;
        slot = n_grown_++;
      } else {
        slot = ~r;
      }
      heap_[0] = ~slot;
      grown_[slot] = Grown{nl, stamp_++, from, label};
      sift_down(0);
    } else {
      slot = n_grown_++;
      grown_[slot] = Grown{nl, stamp_++, from, label};
      heap_[n_heap_++] = ~slot;
      sift_up(n_heap_ - 1);
    }
  }

  /* The beam referenced by r, as a beam of the next step (a grown prefix gets its tree node). */
  KC_CTC_FN void settle(int32_t r, Beam &out) {
    if (r >= 0) {
      out = cur_[r];
      return;
    }
    const Grown &g = grown_[~r];
    const Beam &p = cur_[g.from];
    node_parent_[n_nodes_] = p.node;
    node_label_[n_nodes_] = g.label;
    out.node = n_nodes_++;
    out.len = p.len + 1;
    out.label = g.label;
    out.hash = mix(p.hash, g.label);
    out.phash = p.hash;
    out.stamp = g.stamp;
    out.nb = NEG_INF;
    out.nl = out.nt = g.nl;
    out.alive = 1;
  }

  /* whether two nodes of sequences of equal length hold the same sequence */
  KC_CTC_FN bool same_sequence(int32_t a, int32_t b) const {
    for (; a != b; a = node_parent_[a], b = node_parent_[b])
      if (node_label_[a] != node_label_[b]) return false;
    return true;
  }

  KC_CTC_FN void link_parents() {
    for (int64_t s = 0; s <= mask_; ++s) table_[s] = -1;
    for (int32_t i = 0; i < n_; ++i) {
      uint64_t s = cur_[i].hash & mask_;
      while (table_[s] >= 0) s = (s + 1) & mask_;
      table_[s] = i;
      cur_[i].parent = cur_[i].first_child = -1;
    }
    for (int32_t i = n_ - 1; i >= 0; --i) {
      Beam &e = cur_[i];
      if (e.len == 0) continue;
      for (uint64_t s = e.phash & mask_; table_[s] >= 0; s = (s + 1) & mask_) {
        const int32_t j = table_[s];
        const Beam &p = cur_[j];
        if (p.hash == e.phash && p.len == e.len - 1 &&
            same_sequence(node_parent_[e.node], p.node)) {
          e.parent = j;
          e.next_sibling = p.first_child;
          cur_[j].first_child = i;
          break;
        }
      }
    }
  }

  int64_t C_, W_;
  Beam *cur_, *next_;
  Grown *grown_;
  double *lp_;
  int32_t *heap_, *table_, *child_of_, *node_parent_, *node_label_;
  int64_t mask_;
  int32_t n_ = 0, n_heap_ = 0, n_grown_ = 0, n_nodes_ = 0;
  int64_t stamp_ = 1;
};

/* Beam search over one item's first `steps` rows of x (T rows of C logits), writing its `top`
 * best paths (see BeamSearch::write). work: beam_work_bytes(T, C, W) bytes. */
template <class S, class O>
KC_CTC_FN Status beam_search(const S *x, int64_t T, int64_t C, int64_t steps, int64_t W,
                             int64_t top, bool merge, void *work, int64_t *const *paths,
                             int64_t at, O *log_probs) {
  if (C < 1) return error("ctc_beam_decode: there must be at least one class (the blank)", C, 1);
  if (steps > T)
    return error("ctc_beam_decode: sequence_length must not exceed the time steps", steps, T);
  BeamSearch search(work, T, C, W);
  for (int64_t t = 0; t < steps; ++t) search.step(x + t * C);
  return search.write(T, top, merge, paths, at, log_probs);
}

} /* namespace ctc */
} /* namespace kc */

#endif /* KCOMP_CTC_H */
