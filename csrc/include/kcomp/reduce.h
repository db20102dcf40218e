/* kcomp generated-code support: reduction semantics (init / step / merge / result).
 *
 * The generated reduction loops (kcomp/templates/cpu/reduce.j2) are written once over these
 * reducers. Accumulators are wider than the data: double for float16 (and float64), int64/uint64
 * for integers. Results match the numpy references in kcomp/ir/ops/reduce.py.
 *
 * float32 data takes the vectorised paths at the end of this file: float32 partial results in
 * independent lanes over short blocks, blocks merged in double (see "float32 fast paths").
 */
#ifndef KCOMP_REDUCE_H
#define KCOMP_REDUCE_H

#include "rt.h"
#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace kc {
namespace red {

template <class T> struct wide { typedef T type; };
template <> struct wide<float> { typedef double type; };
template <> struct wide<int8_t> { typedef int64_t type; };
template <> struct wide<int16_t> { typedef int64_t type; };
template <> struct wide<int32_t> { typedef int64_t type; };
template <> struct wide<uint8_t> { typedef uint64_t type; };
template <> struct wide<uint16_t> { typedef uint64_t type; };
template <> struct wide<uint32_t> { typedef uint64_t type; };

template <class T> struct limits;
#define KC_LIMITS(T, LO, HI)                                                                      \
  template <> struct limits<T> {                                                                  \
    static T lowest() { return LO; }                                                              \
    static T highest() { return HI; }                                                             \
  };
KC_LIMITS(bool, false, true)
KC_LIMITS(int8_t, INT8_MIN, INT8_MAX)
KC_LIMITS(int16_t, INT16_MIN, INT16_MAX)
KC_LIMITS(int32_t, INT32_MIN, INT32_MAX)
KC_LIMITS(int64_t, INT64_MIN, INT64_MAX)
KC_LIMITS(uint8_t, 0, UINT8_MAX)
KC_LIMITS(uint16_t, 0, UINT16_MAX)
KC_LIMITS(uint32_t, 0, UINT32_MAX)
KC_LIMITS(uint64_t, 0, UINT64_MAX)
KC_LIMITS(float, -__builtin_inff(), __builtin_inff())
KC_LIMITS(double, -__builtin_inf(), __builtin_inf())
#undef KC_LIMITS

template <class T> KC_INLINE bool isnan_any(T x) { return x != x; }

/* T: compute type of the data; O: compute type of the result. */
template <class T, class O> struct Sum {
  typedef typename wide<T>::type A;
  static A init() { return 0; }
  static A step(A a, T x) { return a + (A)x; }
  static A merge(A a, A b) { return a + b; }
  static O result(A a, int64_t) { return (O)a; }
};
template <class T, class O> struct Mean : Sum<T, O> {
  typedef typename wide<T>::type A;
  static O result(A a, int64_t n) {
    if ((T)0.5 != 0) return (O)(a / (double)n);   /* floats: 0/0 gives NaN like numpy */
    return n == 0 ? (O)0 : (O)(a / (A)n);          /* integers: C division, as TensorFlow */
  }
};
template <class T, class O> struct Prod {
  typedef typename wide<T>::type A;
  static A init() { return 1; }
  static A step(A a, T x) { return a * (A)x; }
  static A merge(A a, A b) { return a * b; }
  static O result(A a, int64_t) { return (O)a; }
};
template <class T, class O> struct Max {
  typedef T A;
  static A init() { return limits<T>::lowest(); }
  static A step(A a, T x) { return (x > a || isnan_any(x)) ? x : a; }
  static A merge(A a, A b) { return step(a, b); }
  static O result(A a, int64_t) { return (O)a; }
};
template <class T, class O> struct Min {
  typedef T A;
  static A init() { return limits<T>::highest(); }
  static A step(A a, T x) { return (x < a || isnan_any(x)) ? x : a; }
  static A merge(A a, A b) { return step(a, b); }
  static O result(A a, int64_t) { return (O)a; }
};
template <class T, class O> struct Any {
  typedef bool A;
  static A init() { return false; }
  static A step(A a, T x) { return a || x; }
  static A merge(A a, A b) { return a || b; }
  static O result(A a, int64_t) { return a; }
};
template <class T, class O> struct All {
  typedef bool A;
  static A init() { return true; }
  static A step(A a, T x) { return a && x; }
  static A merge(A a, A b) { return a && b; }
  static O result(A a, int64_t) { return a; }
};

/* Variance: a block's (count, mean, M2), merged with Chan et al.'s pairwise formula. */
struct Moments {
  double n, mean, m2;
};
KC_INLINE Moments merge_moments(Moments a, Moments b) {
  if (a.n == 0) return b;
  if (b.n == 0) return a;
  double n = a.n + b.n, delta = b.mean - a.mean;
  Moments r;
  r.n = n;
  r.mean = a.mean + delta * (b.n / n);
  r.m2 = a.m2 + b.m2 + delta * delta * (a.n * b.n / n);
  return r;
}
template <class O> KC_INLINE O variance(Moments m, bool root) {
  double v = m.m2 / m.n;
  return (O)(root ? __builtin_sqrt(v) : v);
}

/* logsumexp, as TensorFlow computes it: shift by the max unless the max is not finite. */
template <class T> KC_INLINE T lse_shift(T m) { return __builtin_isfinite(m) ? m : (T)0; }
template <class O> KC_INLINE O lse_result(double s, double shift) {
  return (O)(__builtin_log(s) + shift);
}

/* R's reduction of x[b:e) in U independent accumulators merged pairwise, in a fixed order.
 * (Here and below the pairwise halvings are unrolled: each then vectorises; as a loop GCC
 * merged lanes one at a time through the stack. Max over rows of 100 floats 31 -> 15 us.) */
template <class R, class T, int U, class S>
KC_INLINE typename R::A fold_lanes(const S *KC_RESTRICT x, int64_t b, int64_t e) {
  typename R::A acc[U];
  for (int u = 0; u < U; ++u) acc[u] = R::init();
  int64_t r = b;
  for (; r + U <= e; r += U)
    for (int u = 0; u < U; ++u) acc[u] = R::step(acc[u], (T)x[r + u]);
  for (; r < e; ++r) acc[0] = R::step(acc[0], (T)x[r]);
  #pragma GCC unroll 8
  for (int w = U / 2; w >= 1; w /= 2)
    for (int u = 0; u < w; ++u) acc[u] = R::merge(acc[u], acc[u + w]);
  return acc[0];
}
/* as many accumulators as the length repays: 32 (four vector registers of chains) for long
 * runs, where 8 left a product waiting on each multiply (prod of 4M float32 269 -> 100 us,
 * all over rows of 1024 bools 158 -> 29 us), 8 for medium ones (16 from 64 on when they are
 * wider than the data, as a float32 product's doubles: prod over rows of 64 143 -> 114 us), one
 * for short rows, whose set-up and merge would cost more than the loop (prod over rows of 3
 * 3 -> 103 us with 32) */
/* (out of line for runs of 2 KiB or more: inlined into a caller's row loop, GCC kept the 32
 * accumulators on the stack, a store and a load in every multiply's chain: prod over rows of
 * 100000 floats, one thread, 281 -> 145-165 us; below 2 KiB the call costs more than it saves:
 * all over 4096 rows of 1024 bools 27 -> 33 us) */
template <class R, class T, class S>
__attribute__((noinline)) typename R::A fold_long(const S *KC_RESTRICT x, int64_t b, int64_t e) {
  return fold_lanes<R, T, 32>(x, b, e);
}
template <class R, class T, class S>
KC_INLINE typename R::A fold(const S *KC_RESTRICT x, int64_t b, int64_t e) {
  return e - b < 16 ? fold_lanes<R, T, 1>(x, b, e)
         : e - b < 256 && (e - b < 64 || sizeof(typename R::A) == sizeof(T))
                                                ? fold_lanes<R, T, 8>(x, b, e)
         : e - b < 256                          ? fold_lanes<R, T, 16>(x, b, e)
         : (e - b) * (int64_t)sizeof(S) < 2048  ? fold_lanes<R, T, 32>(x, b, e)
                                                : fold_long<R, T>(x, b, e);
}

/* arg-reductions: the first index of the extreme value; a NaN wins and the first NaN stays. */
template <class T> KC_INLINE bool better_max(T x, T best) {
  return !isnan_any(best) && (x > best || isnan_any(x));
}
template <class T> KC_INLINE bool better_min(T x, T best) {
  return !isnan_any(best) && (x < best || isnan_any(x));
}

/* ---- float32 fast paths ------------------------------------------------------------------
 *
 * Rows are read as rows of L consecutive floats, columns as tiles of adjacent columns; either
 * way each lane keeps its own partial result in a plain loop over `j < L` that the compiler
 * vectorises at any ISA (-march decides: 4 AVX-512, 8 AVX2 or 16 SSE registers), and lanes and
 * blocks merge in a fixed order, so results do not depend on the thread count.
 *
 * Accuracy: sums accumulate in float32 within a block of at most SUM_BLOCK terms per lane, and
 * blocks add up in double. Each element then goes through at most SUM_BLOCK float32 additions
 * before reaching double, so the error is at most SUM_BLOCK * 2^-24 * sum|x| (about 1e-6 sum|x|)
 * plus double rounding; the tests hold sums, means, variances and logsumexp to 2e-6 relative of
 * float64 (tests/test_reductions.py). Variance: a block's mean and M2 by two passes over the
 * block in float32 (exact formula, the block is in L1), blocks merged with Chan's update in
 * double: one pass over memory, no cancellation. logsumexp and softmax: exp in float32
 * (vmath.h, 1 ulp), online max over blocks (the running sum is rescaled when the max grows),
 * sums as above. A row or column whose max is not finite (NaN, +inf, all -inf) is recomputed by
 * the plain reference formula, which defines those cases.
 */
enum { L = 64, SUM_BLOCK = 16, STREAM_AHEAD = 512 };
/* The one-pass row loops (sum, max/min) ask for the lines STREAM_AHEAD floats (2 KiB) on: the
 * hardware prefetchers stop at every 4 KiB page and ramp up again. Rows of a 4096 x 4096 matrix
 * on two threads, alternating builds: max 1.28 -> 1.03-1.11 ms, sum and mean 3-5% faster;
 * 1 KiB ahead measured slower than no prefetch, 4 KiB no better than 2. */

/* The block loops read a block twice (the second time from L1); while they do, no load goes to
 * memory, so they ask for the next block's lines themselves (one L-float chunk = 4 lines). */
KC_INLINE void prefetch_chunk(const float *x, int64_t i, int64_t n) {
  if (i + L <= n)
    for (int j = 0; j < L; j += 16) __builtin_prefetch(x + i + j);
}
/* the first block of x[0:n) (the generated row loops: the next row, while this one runs) */
KC_INLINE void prefetch_block(const float *x, int64_t n) {
  const int64_t e = n < (int64_t)L * SUM_BLOCK ? n : (int64_t)L * SUM_BLOCK;
  for (int64_t j = 0; j < e; j += 16) __builtin_prefetch(x + j);
}

/* the L lanes of acc added pairwise in double (vectorised halving steps, not a serial chain) */
KC_INLINE double lanes_sum(const float *KC_RESTRICT acc) {
  double t[L / 2];
  for (int j = 0; j < L / 2; ++j) t[j] = (double)acc[j] + (double)acc[j + L / 2];
  #pragma GCC unroll 8
  for (int w = L / 4; w >= 1; w /= 2)
    for (int j = 0; j < w; ++j) t[j] += t[j + w];
  return t[0];
}

/* sum of x[0:n), in double */
KC_INLINE double sum_f32(const float *KC_RESTRICT x, int64_t n) {
  if (n < 4 * L) {  // a short row: fewer lanes (L lanes' set-up and merge cost more)
    constexpr int S = 32;
    float acc[S];
    for (int j = 0; j < S; ++j) acc[j] = 0;
    int64_t i = 0;
    for (; i + S <= n; i += S)
      for (int j = 0; j < S; ++j) acc[j] += x[i + j];
    double s[4] = {0, 0, 0, 0};
    for (int j = 0; j < S; j += 4)
      for (int k = 0; k < 4; ++k) s[k] += (double)acc[j + k];
    for (; i + 4 <= n; i += 4)
      for (int k = 0; k < 4; ++k) s[k] += (double)x[i + k];
    for (; i < n; ++i) s[0] += (double)x[i];
    return (s[0] + s[1]) + (s[2] + s[3]);
  }
  double tot[L];
  for (int j = 0; j < L; ++j) tot[j] = 0;
  int64_t i = 0;
  while (i + L <= n) {
    float acc[L];
    for (int j = 0; j < L; ++j) acc[j] = 0;
    const int64_t end = i + (int64_t)L * SUM_BLOCK < n ? i + (int64_t)L * SUM_BLOCK : n;
    for (; i + L <= end; i += L) {
      for (int j = 0; j < L; j += 16) __builtin_prefetch(x + i + STREAM_AHEAD + j);
      for (int j = 0; j < L; ++j) acc[j] += x[i + j];
    }
    for (int j = 0; j < L; ++j) tot[j] += (double)acc[j];
  }
  double tail = 0;
  for (; i < n; ++i) tail += (double)x[i];
  #pragma GCC unroll 8
  for (int w = L / 2; w >= 1; w /= 2)  // pairwise over lanes
    for (int j = 0; j < w; ++j) tot[j] += tot[j + w];
  return tot[0] + tail;
}

/* max (MIN: min) of x[0:n) in W lanes (AHEAD: asking for the stream STREAM_AHEAD ahead); NaN
 * when any element is NaN, as numpy. The lanes' selects skip NaNs (one vmaxps each); a float
 * sum of the elements beside them turns NaN if any element is NaN (or on inf - inf), and only
 * then is the row scanned for one. NaN flags cost a compare, a masked move and an or per
 * vector: rows of a 1024 x 1024 matrix (in cache) 26 -> 21 us, as fast as sum. */
template <bool MIN, int W, bool AHEAD>
KC_INLINE float extreme_lanes(const float *KC_RESTRICT x, int64_t n) {
  float r = MIN ? __builtin_inff() : -__builtin_inff();
  float sentinel = 0;
  int64_t i = 0;
  if (n >= W) {
    float m[W], s[W];
    for (int j = 0; j < W; ++j) {
      m[j] = r;
      s[j] = 0;
    }
    for (; i + W <= n; i += W) {
      if (AHEAD)
        for (int j = 0; j < W; j += 16) __builtin_prefetch(x + i + STREAM_AHEAD + j);
      for (int j = 0; j < W; ++j) {
        const float v = x[i + j];
        m[j] = (MIN ? v < m[j] : v > m[j]) ? v : m[j];
        s[j] += v;
      }
    }
    #pragma GCC unroll 8
    for (int w = W / 2; w >= 1; w /= 2)
      for (int j = 0; j < w; ++j) {
        m[j] = (MIN ? m[j + w] < m[j] : m[j + w] > m[j]) ? m[j + w] : m[j];
        s[j] += s[j + w];
      }
    r = m[0];
    sentinel = s[0];
  }
  for (; i < n; ++i) {
    r = (MIN ? x[i] < r : x[i] > r) ? x[i] : r;
    sentinel += x[i];
  }
  if (sentinel != sentinel)
    for (i = 0; i < n; ++i)
      if (x[i] != x[i]) return x[i];
  return r;
}
/* a short row in fewer lanes, as in sum_f32 */
template <bool MIN> KC_INLINE float extreme_f32(const float *KC_RESTRICT x, int64_t n) {
  return n < 4 * L ? extreme_lanes<MIN, 32, false>(x, n) : extreme_lanes<MIN, L, true>(x, n);
}

/* Many short rows: sums (FOLD_SUM), maxima or minima of 16 consecutive rows of n floats, n
 * a multiple of 16 up to 128, into out[16]. Each row's elements fold into one vector of 16
 * lanes; then the 16 rows' vectors fold together by a transposing tree of shuffles (4 levels:
 * halves, quarters, pairs, lanes), a quarter of the work of 16 separate horizontal reductions.
 * A sum takes every element through at most n/16 + 4 float additions (within SUM_BLOCK); a NaN
 * wins an extreme, as in extreme_f32. Written with vector types: the shuffles are what matters.
 * A task's rows left over from its groups go through row16_f32, the same arithmetic. */
typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));
#if defined(__clang__)
#define KC_SHUF16(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define KC_SHUF16(a, b, ...) __builtin_shuffle(a, b, (v16i){__VA_ARGS__})
#endif
enum { FOLD_SUM, FOLD_MAX, FOLD_MIN };
/* a and b combined, lane by lane for vectors: for extremes b when it is NaN or beats a (a NaN
 * in a stays, as nothing beats it) */
template <int OP, class V> KC_INLINE V fold_op(V a, V b) {
  if (OP == FOLD_SUM) return a + b;
  const auto take_b = (b != b) | (OP == FOLD_MAX ? (b > a) : (b < a));
  return take_b ? b : a;
}
template <int OP> KC_INLINE void rows16_f32(const float *KC_RESTRICT x, int64_t n, float *out) {
  v16f v[16];
  for (int r = 0; r < 16; ++r) {
    __builtin_memcpy(&v[r], x + r * n, 64);
    for (int64_t i = 16; i < n; i += 16) {
      v16f t;
      __builtin_memcpy(&t, x + r * n + i, 64);
      v[r] = fold_op<OP>(v[r], t);
    }
  }
  for (int i = 0; i < 8; ++i)  /* rows 2i, 2i+1: 8 lanes each */
    v[i] = fold_op<OP>(KC_SHUF16(v[2 * i], v[2 * i + 1], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19,
                                20, 21, 22, 23),
                      KC_SHUF16(v[2 * i], v[2 * i + 1], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26,
                                27, 28, 29, 30, 31));
  for (int i = 0; i < 4; ++i)  /* rows 4i..4i+3: 4 lanes each */
    v[i] = fold_op<OP>(KC_SHUF16(v[2 * i], v[2 * i + 1], 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18,
                                19, 24, 25, 26, 27),
                      KC_SHUF16(v[2 * i], v[2 * i + 1], 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22,
                                23, 28, 29, 30, 31));
  for (int i = 0; i < 2; ++i)  /* rows 8i..8i+7: 2 lanes each */
    v[i] = fold_op<OP>(KC_SHUF16(v[2 * i], v[2 * i + 1], 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20,
                                21, 24, 25, 28, 29),
                      KC_SHUF16(v[2 * i], v[2 * i + 1], 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22,
                                23, 26, 27, 30, 31));
  const v16f r = fold_op<OP>(KC_SHUF16(v[0], v[1], 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24,
                                      26, 28, 30),
                            KC_SHUF16(v[0], v[1], 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25,
                                      27, 29, 31));
  __builtin_memcpy(out, &r, 64);
}
#undef KC_SHUF16
/* One such row by the same additions in the same order (halves, quarters, pairs, lanes), so
 * that a row's result does not depend on whether it was reduced in a group of 16 (the groups a
 * task holds depend on the thread count). */
template <int OP> KC_INLINE float row16_f32(const float *KC_RESTRICT x, int64_t n) {
  v16f v;
  __builtin_memcpy(&v, x, 64);
  for (int64_t i = 16; i < n; i += 16) {
    v16f t;
    __builtin_memcpy(&t, x + i, 64);
    v = fold_op<OP>(v, t);
  }
  float t[16];
  __builtin_memcpy(t, &v, 64);
  #pragma GCC unroll 8
  for (int w = 8; w >= 1; w /= 2)
    for (int j = 0; j < w; ++j) {
      t[j] = fold_op<OP>(t[j], t[j + w]);
    }
  return t[0];
}
KC_INLINE bool rows16_fit(int64_t n) { return n >= 16 && n <= 128 && n % 16 == 0; }

/* The index of a float32 row's first maximum (MIN: minimum): V vectors of 16 lanes (4, or 1
 * for short rows), each lane keeping its extreme and the first index of it (32-bit, the width
 * of a float), updated by selects rather than branches; written with vector types because the
 * compiler keeps arrays of lanes in memory. A NaN anywhere sends the row to the scalar loop,
 * which returns the first NaN as numpy does. (argmax over the last axis, float32, two threads:
 * 4096x4096 4.4 -> 1.7 ms, 65536 rows of 64 3.5 -> 1.3 ms, one row of 4M 3.1 -> 0.4 ms.) */
template <class T, bool MIN> int64_t argext_plain(const T *x, int64_t n) {
  T best = x[0];
  int64_t at = 0;
  for (int64_t r = 1; r < n; ++r)
    if (MIN ? better_min(x[r], best) : better_max(x[r], best)) {
      best = x[r];
      at = r;
    }
  return at;
}
template <bool MIN, int V> int64_t argext_lanes(const float *KC_RESTRICT x, int64_t n) {
  typedef float vf __attribute__((vector_size(64)));
  typedef int32_t vi __attribute__((vector_size(64)));
  constexpr int W = 16;  // lanes per vector
  vf best[V];
  vi at[V], nan = {};
  const vi iota = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  for (int u = 0; u < V; ++u) {
    __builtin_memcpy(&best[u], x + u * W, sizeof(vf));
    at[u] = iota + u * W;
    nan |= best[u] != best[u];
  }
  int64_t i = V * W;
  for (; i + V * W <= n; i += V * W) {
    if (V > 1) __builtin_prefetch(x + i + STREAM_AHEAD);
    for (int u = 0; u < V; ++u) {
      vf v;
      __builtin_memcpy(&v, x + i + u * W, sizeof(vf));
      const vi b = MIN ? v < best[u] : v > best[u];
      best[u] = b ? v : best[u];
      at[u] = b ? iota + (int32_t)(i + u * W) : at[u];
      nan |= v != v;
    }
  }
  int32_t any = 0;
  for (int j = 0; j < W; ++j) any |= nan[j];
  for (int64_t r = i; r < n; ++r) any |= x[r] != x[r];
  if (any) return argext_plain<float, MIN>(x, n);
  // all lanes: equal extremes keep the first index
  float b = best[0][0];
  int64_t a = at[0][0];
  for (int u = 0; u < V; ++u)
    for (int j = 0; j < W; ++j)
      if ((MIN ? best[u][j] < b : best[u][j] > b) || (best[u][j] == b && at[u][j] < a)) {
        b = best[u][j];
        a = at[u][j];
      }
  for (int64_t r = i; r < n; ++r)
    if (MIN ? x[r] < b : x[r] > b) {
      b = x[r];
      a = r;
    }
  return a;
}
template <bool MIN> int64_t argext_f32(const float *KC_RESTRICT x, int64_t n) {
  if (n >= 128 && n <= INT32_MAX) return argext_lanes<MIN, 4>(x, n);
  if (n >= 16 && n <= INT32_MAX) return argext_lanes<MIN, 1>(x, n);
  return argext_plain<float, MIN>(x, n);
}

/* count, mean and M2 of x[0:n). Per block: the mean from deviations from the block's first
 * element (small numbers, so float32 loses little even when |mean| >> std), then M2 around the
 * mean rounded to float, corrected for that rounding; blocks merge with Chan's update. */
KC_INLINE Moments moments_f32(const float *KC_RESTRICT x, int64_t n) {
  Moments tot = {0, 0, 0};
  for (int64_t b = 0; b < n; b += (int64_t)L * SUM_BLOCK) {
    const int64_t e = b + (int64_t)L * SUM_BLOCK < n ? b + (int64_t)L * SUM_BLOCK : n;
    const int64_t full = b + (e - b) / L * L;
    const float sh = x[b];
    float acc[L];
    for (int j = 0; j < L; ++j) acc[j] = 0;
    for (int64_t i = b; i < full; i += L)
      for (int j = 0; j < L; ++j) acc[j] += x[i + j] - sh;
    double s = lanes_sum(acc);
    for (int64_t i = full; i < e; ++i) s += (double)x[i] - (double)sh;
    Moments blk;
    blk.n = (double)(e - b);
    blk.mean = (double)sh + s / blk.n;
    const float mf = (float)blk.mean;
    for (int j = 0; j < L; ++j) acc[j] = 0;
    for (int64_t i = b; i < full; i += L) {
      prefetch_chunk(x, i + (int64_t)L * SUM_BLOCK, n);
      for (int j = 0; j < L; ++j) {
        const float t = x[i + j] - mf;
        acc[j] += t * t;
      }
    }
    double m2 = lanes_sum(acc);
    for (int64_t i = full; i < e; ++i) {
      const double t = (double)x[i] - (double)mf;
      m2 += t * t;
    }
    const double off = blk.mean - (double)mf; /* sum (x - mean)^2 = sum (x - mf)^2 - n off^2 */
    blk.m2 = m2 - blk.n * off * off;
    tot = merge_moments(tot, blk);
  }
  return tot;
}

/* logsumexp of x[0:n) by the reference formula (shift by the max unless it is not finite) */
KC_INLINE double lse_plain_f32(const float *x, int64_t n, int64_t stride) {
  float m = -__builtin_inff();
  for (int64_t r = 0; r < n; ++r) m = Max<float, float>::step(m, x[r * stride]);
  const float shift = lse_shift(m);
  double s = 0;
  for (int64_t r = 0; r < n; ++r) s += (double)vm::exp(x[r * stride] - shift);
  return __builtin_log(s) + (double)shift;
}

/* y[0:n) = exp(x - m) and their sum in double, for a short row or a tail: the exponentials
 * first (they vectorise), then the sum (a serial chain of double additions after each
 * exponential was most of a short row's time: softmax over rows of 37 83 -> 26 us) */
KC_INLINE double exp_sum(const float *KC_RESTRICT x, float *KC_RESTRICT y, int64_t n, float m) {
  for (int64_t i = 0; i < n; ++i) y[i] = vm::exp_neg(x[i] - m);
  return sum_f32(y, n);
}

/* The first `lanes` (1..16) floats at p into dst[0:16), the other lanes `fill`; and src's
 * first `lanes` floats stored at p. AVX-512 and AVX2 mask the lanes; elsewhere a copy does.
 * The paths built on these are written over arrays of 16 lanes, so they compute the same at
 * every ISA: an ahead-of-time build for x86-64-v3 gives the JIT's results bit for bit. */
#if defined(__AVX2__) && !defined(__AVX512F__)
KC_INLINE void lane_masks(int lanes, __m256i *m) {  // lanes j < `lanes` of 16, as two halves
  const __m256i n = _mm256_set1_epi32(lanes);
  m[0] = _mm256_cmpgt_epi32(n, _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  m[1] = _mm256_cmpgt_epi32(n, _mm256_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15));
}
#endif
KC_INLINE void load16(float *KC_RESTRICT dst, const float *p, int lanes, float fill) {
#if defined(__AVX512F__)
  _mm512_storeu_ps(dst, _mm512_mask_loadu_ps(_mm512_set1_ps(fill),
                                             (__mmask16)(0xffffu >> (16 - lanes)), p));
#elif defined(__AVX2__)
  __m256i m[2];
  lane_masks(lanes, m);
  for (int i = 0; i < 2; ++i)
    _mm256_storeu_ps(dst + 8 * i,
                     _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p + 8 * i, m[i]),
                                      _mm256_castsi256_ps(m[i])));
#else
  for (int j = 0; j < 16; ++j) dst[j] = j < lanes ? p[j] : fill;
#endif
}
KC_INLINE void store16(float *p, const float *KC_RESTRICT src, int lanes) {
#if defined(__AVX512F__)
  _mm512_mask_storeu_ps(p, (__mmask16)(0xffffu >> (16 - lanes)), _mm512_loadu_ps(src));
#elif defined(__AVX2__)
  __m256i m[2];
  lane_masks(lanes, m);
  for (int i = 0; i < 2; ++i) _mm256_maskstore_ps(p + 8 * i, m[i], _mm256_loadu_ps(src + 8 * i));
#else
  for (int j = 0; j < lanes; ++j) p[j] = src[j];
#endif
}

/* vm::exp_neg of 16 lanes (a loop the compiler turns into vector code) */
KC_INLINE v16f exp_neg16(v16f v) {
  float e[16];
  __builtin_memcpy(e, &v, sizeof(e));
  for (int j = 0; j < 16; ++j) e[j] = vm::exp_neg(e[j]);
  __builtin_memcpy(&v, e, sizeof(e));
  return v;
}

/* the largest of 16 lanes, none NaN (any order gives it) */
KC_INLINE float max16(float *t) {
#if defined(__AVX512F__)
  return _mm512_reduce_max_ps(_mm512_loadu_ps(t));
#else  // the steps written out vectorise (AVX2: as a loop over the widths 2.5x slower)
  for (int j = 0; j < 8; ++j) t[j] = t[j + 8] > t[j] ? t[j + 8] : t[j];
  for (int j = 0; j < 4; ++j) t[j] = t[j + 4] > t[j] ? t[j + 4] : t[j];
  for (int j = 0; j < 2; ++j) t[j] = t[j + 2] > t[j] ? t[j + 2] : t[j];
  return t[1] > t[0] ? t[1] : t[0];
#endif
}
static constexpr float LOWEST = -3.40282347e38f;  // a missing lane: finite, exponential 0

/* softmax (y) or logsumexp (*lse) of a short row, 16 (NV - 1) < n <= 16 NV, held in NV
 * vectors of 16 lanes: read once, written once; the last vector's missing lanes are not
 * stored. The exponentials' sum: lanes, then halves, quarters, pairs (in float32 for softmax:
 * at most NV + 3 roundings; in double for logsumexp, whose result is often subtracted from
 * values near it). False, with nothing written, when an element is not finite (the callers'
 * general paths: NaN, infinities, -inf entries). Such rows were mostly scalar tails and
 * horizontal steps: over the last axis, two threads, softmax (1000,37) 24 -> 10 us, (8000,16)
 * 109 -> 57 us, (256,256,64) 1165 -> 702 us; logsumexp (5000,3) 60 -> 55 us (with tasks sized
 * for the exponential), (1000,37) 24 -> 15 us, (65536,64) 1573 -> 989 us. */
template <int NV, bool LSE>
KC_INLINE bool exp_row_f32(const float *KC_RESTRICT x, float *KC_RESTRICT y, int64_t n,
                           double *lse) {
  constexpr int K = 16 * NV;
  const int tail = (int)(n - 16 * (NV - 1));
  alignas(64) float e[K], t[16], z[16];
  // missing lanes load as the lowest float (exponential 0); z sums e * 0, NaN unless every
  // element is finite (a select that lets a NaN win, or NaN flags, would not vectorise)
  for (int u = 0; u < NV; ++u) load16(e + 16 * u, x + 16 * u, u + 1 < NV ? 16 : tail, LOWEST);
  v16f tv, zv, v;  // (the selects written as vectors: as a loop over lanes they stay scalar)
  __builtin_memcpy(&tv, e, sizeof(v16f));
  zv = tv * 0.0f;
  for (int u = 1; u < NV; ++u) {
    __builtin_memcpy(&v, e + 16 * u, sizeof(v16f));
    tv = v > tv ? v : tv;
    zv += v * 0.0f;
  }
  __builtin_memcpy(t, &tv, sizeof(v16f));
  __builtin_memcpy(z, &zv, sizeof(v16f));
  int32_t bad = 0;
  for (int j = 0; j < 16; ++j) bad |= z[j] != 0.0f;
  if (bad) return false;
  const float m = max16(t);
  for (int i = 0; i < K; ++i) e[i] = vm::exp_neg(e[i] - m);
  if (LSE) {
    double d[16] = {};
    for (int u = 0; u < NV; ++u)
      for (int j = 0; j < 16; ++j) d[j] += (double)e[16 * u + j];
    #pragma GCC unroll 8
    for (int w = 8; w >= 1; w /= 2)
      for (int j = 0; j < w; ++j) d[j] += d[j + w];
    *lse = __builtin_log(d[0]) + (double)m;
    return true;
  }
  for (int j = 0; j < 16; ++j) t[j] = e[j];
  for (int u = 1; u < NV; ++u)
    for (int j = 0; j < 16; ++j) t[j] += e[16 * u + j];
  #pragma GCC unroll 8
  for (int w = 8; w >= 1; w /= 2)
    for (int j = 0; j < w; ++j) t[j] += t[j + w];
  const float inv = 1.0f / t[0];
  for (int i = 0; i < K; ++i) e[i] *= inv;
  for (int u = 0; u < NV; ++u) store16(y + 16 * u, e + 16 * u, u + 1 < NV ? 16 : tail);
  return true;
}
template <bool LSE>
KC_INLINE bool exp_short_f32(const float *KC_RESTRICT x, float *KC_RESTRICT y, int64_t n,
                             double *lse) {
  switch ((n + 15) / 16) {
  case 1: return exp_row_f32<1, LSE>(x, y, n, lse);
  case 2: return exp_row_f32<2, LSE>(x, y, n, lse);
  case 3: return exp_row_f32<3, LSE>(x, y, n, lse);
  case 4: return exp_row_f32<4, LSE>(x, y, n, lse);
  case 5: return exp_row_f32<5, LSE>(x, y, n, lse);
  case 6: return exp_row_f32<6, LSE>(x, y, n, lse);
  case 7: return exp_row_f32<7, LSE>(x, y, n, lse);
  case 8: return exp_row_f32<8, LSE>(x, y, n, lse);
  default: return false;
  }
}

/* logsumexp of x[0:n): online max over blocks of LSE_BLOCK that stay in L1 (the max of a
 * block, then its exponentials: float32 sums of SUM_BLOCK steps added into double lanes, which
 * are rescaled when the max grows), the next block asked for while this one computes. Blocks
 * of 4096 rather than 1024 elements make the max's lane reduction and the rescale 4 times
 * rarer: rows of a 4096 x 4096 matrix, alternating builds, 1.91-2.22 -> 1.50-1.82 ms on two
 * threads, 3.8-4.1 -> 2.9-3.1 ms on one. */
enum { LSE_BLOCK = 4096 };
KC_INLINE double lse_f32(const float *KC_RESTRICT x, int64_t n) {
  double r;
  if (n > 0 && n <= 128 && exp_short_f32<true>(x, nullptr, n, &r)) return r;
  float buf[L];
  if (n < L) {  // a short row: no lanes
    const float m = extreme_f32<false>(x, n);
    if (!(m < __builtin_inff()) || m == -__builtin_inff()) return lse_plain_f32(x, n, 1);
    return __builtin_log(exp_sum(x, buf, n, m)) + (double)m;
  }
  float m = -__builtin_inff();
  double tot[L], tail = 0;
  for (int j = 0; j < L; ++j) tot[j] = 0;
  for (int64_t b = 0; b < n; b += LSE_BLOCK) {
    const int64_t len = n - b < LSE_BLOCK ? n - b : LSE_BLOCK;
    const float bm = extreme_f32<false>(x + b, len);
    if (!(bm < __builtin_inff())) return lse_plain_f32(x, n, 1); /* NaN or +inf */
    if (bm == -__builtin_inff()) continue;                      /* adds exp(-inf) = 0 */
    if (bm > m) {
      const double f = (double)vm::exp(m - bm);
      for (int j = 0; j < L; ++j) tot[j] *= f;
      tail *= f;
      m = bm;
    }
    const int64_t e = b + len / L * L;
    for (int64_t i = b; i < e;) {
      float acc[L];
      for (int j = 0; j < L; ++j) acc[j] = 0;
      const int64_t end = i + (int64_t)L * SUM_BLOCK < e ? i + (int64_t)L * SUM_BLOCK : e;
      for (; i < end; i += L) {
        /* the next block (or what follows x: the next row of a row loop) arrives meanwhile */
        for (int j = 0; j < L; j += 16) __builtin_prefetch(x + i + LSE_BLOCK + j);
        for (int j = 0; j < L; ++j) acc[j] += vm::exp_neg(x[i + j] - m);
      }
      for (int j = 0; j < L; ++j) tot[j] += (double)acc[j];
    }
    tail += exp_sum(x + e, buf, b + len - e, m);
  }
  if (m == -__builtin_inff()) return lse_plain_f32(x, n, 1); /* all -inf (or empty) */
  #pragma GCC unroll 8
  for (int w = L / 2; w >= 1; w /= 2)  // pairwise over lanes
    for (int j = 0; j < w; ++j) tot[j] += tot[j + w];
  return __builtin_log(tot[0] + tail) + (double)m;
}

/* y = softmax(x) over x[0:n): max, exp and sum (float32 lanes, blocks in double), scale */
KC_INLINE void softmax_f32(const float *KC_RESTRICT x, float *KC_RESTRICT y, int64_t n) {
  if (n > 0 && n <= 128 && exp_short_f32<false>(x, y, n, nullptr)) return;
  const float m = extreme_f32<false>(x, n);
  if (!(m < __builtin_inff() && m > -__builtin_inff())) { /* NaN, +inf, all -inf: as defined */
    double s = 0;
    for (int64_t i = 0; i < n; ++i) {
      y[i] = vm::exp(x[i] - m);
      s += (double)y[i];
    }
    for (int64_t i = 0; i < n; ++i) y[i] = (float)((double)y[i] * (1.0 / s));
    return;
  }
  double s = 0;
  int64_t i = 0;
  while (i + L <= n) {
    float acc[L];
    for (int j = 0; j < L; ++j) acc[j] = 0;
    const int64_t end = i + (int64_t)L * SUM_BLOCK < n ? i + (int64_t)L * SUM_BLOCK : n;
    for (; i + L <= end; i += L)
      for (int j = 0; j < L; ++j) {
        const float e = vm::exp_neg(x[i + j] - m);
        y[i + j] = e;
        acc[j] += e;
      }
    s += lanes_sum(acc);
  }
  s += exp_sum(x + i, y + i, n - i, m);
  const float inv = (float)(1.0 / s);
  for (i = 0; i < n; ++i) y[i] *= inv;
}

/* Columns: x is (N, I) row-major; reduce over N for the w <= TILE columns at x[0:w). A task
 * takes up to COL_TILE adjacent columns (long contiguous runs per row stream well), narrower
 * when that would leave threads idle; partial results of COL_BLOCK rows stay in float32. */
enum { COL_BLOCK = 16, COL_TILE = 1024 };

/* Each row of a tile is a separate run of at most COL_TILE floats, too short for the hardware
 * prefetchers to learn: the loops ask for the row PREFETCH_ROWS ahead themselves. The wide
 * tiles' four-row steps ask a vector's columns at a time as they go: a burst of four whole
 * rows (up to 1024 lines) stalled on the misses outstanding, and over the first axis of
 * 4096 x 4096 on one thread max took 3.2 ms against sum's 2.05 (now 2.2 and 1.75 ms; two
 * threads: max 1.2-1.5 -> 1.0 ms). */
enum { PREFETCH_ROWS = 4 };
KC_INLINE void prefetch_row(const float *x, int64_t r, int64_t N, int64_t I, int64_t w) {
  if (r < N)
    for (int64_t j = 0; j < w; j += 16) __builtin_prefetch(x + r * I + j);
}

/* a four-row step's vector of columns at p (rows I apart), PREFETCH_ROWS rows on: asked for as
 * the loop goes */
KC_INLINE void prefetch_four(const float *p, int64_t I) {
  for (int k = 0; k < 4; ++k) __builtin_prefetch(p + (PREFETCH_ROWS + k) * I);
}

KC_INLINE int64_t col_tile(int64_t O, int64_t I, int64_t threads) {
  const int64_t parts = O >= threads ? 1 : (threads + O - 1) / (O > 0 ? O : 1);
  int64_t tw = ((I + parts - 1) / parts + 15) / 16 * 16;
  return tw < 16 ? 16 : tw > COL_TILE ? COL_TILE : tw;
}

/* softmax over the N rows of the w <= COL_TILE columns at x and y (rows I apart): the columns'
 * maxima, then the exponentials (stored) with float32 sums of COL_BLOCK rows added up in
 * double, then the scale; 16 columns a vector, the last one's missing lanes neither loaded nor
 * stored (load16, store16), so narrow tiles have no scalar tails. The same arithmetic at every
 * ISA (AVX2 builds are 1.15-1.4x slower than the template's loop was: generic 16-lane vectors
 * compile less well there). False, with nothing written, when an element is not finite (the
 * template's reference loop defines those). Over the first axis, two threads, AVX-512:
 * (1000,37) 41 -> 16 us, (100000,37) 4.2 -> 1.7 ms. */
KC_INLINE bool softmax_cols_f32(const float *KC_RESTRICT x, float *KC_RESTRICT y, int64_t N,
                                int64_t I, int64_t w) {
  if (N == 0) return true;
  const int64_t nv = (w + 15) / 16;
  const int tail = (int)(w - 16 * (nv - 1));
  auto load = [&](const float *p, int64_t u) {  // the last vector's missing lanes the lowest
    float b[16];
    load16(b, p + 16 * u, u + 1 < nv ? 16 : tail, LOWEST);
    v16f v;
    __builtin_memcpy(&v, b, sizeof(v));
    return v;
  };
  auto store = [&](float *p, int64_t u, v16f v) {
    float b[16];
    __builtin_memcpy(b, &v, sizeof(v));
    store16(p + 16 * u, b, u + 1 < nv ? 16 : tail);
  };
  // maxima, and sums of e * 0 that are NaN unless every element is finite (see exp_row_f32)
  v16f m[COL_TILE / 16], acc[COL_TILE / 16];
  for (int64_t u = 0; u < nv; ++u) {
    m[u] = load(x, u);
    acc[u] = m[u] * 0.0f;
  }
  for (int64_t r = 1; r < N; ++r)
    for (int64_t u = 0; u < nv; ++u) {
      const v16f v = load(x + r * I, u);
      m[u] = v > m[u] ? v : m[u];
      acc[u] += v * 0.0f;
    }
  for (int64_t u = 0; u < nv; ++u)
    for (int j = 0; j < 16; ++j)
      if (acc[u][j] != 0.0f) return false;
  double s[COL_TILE];
  for (int64_t j = 0; j < 16 * nv; ++j) s[j] = 0;
  for (int64_t r0 = 0; r0 < N; r0 += COL_BLOCK) {
    const int64_t r1 = r0 + COL_BLOCK < N ? r0 + COL_BLOCK : N;
    for (int64_t u = 0; u < nv; ++u) acc[u] = v16f{};
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t u = 0; u < nv; ++u) {
        const v16f v = exp_neg16(load(x + r * I, u) - m[u]);
        store(y + r * I, u, v);
        acc[u] += v;
      }
    for (int64_t u = 0; u < nv; ++u)
      for (int j = 0; j < 16; ++j) s[16 * u + j] += (double)acc[u][j];
  }
  for (int64_t u = 0; u < nv; ++u)
    for (int j = 0; j < 16; ++j) acc[u][j] = (float)(1.0 / s[16 * u + j]);
  for (int64_t r = 0; r < N; ++r)
    for (int64_t u = 0; u < nv; ++u) store(y + r * I, u, load(y + r * I, u) * acc[u]);
  return true;
}

/* sum_cols_part of whole rows of I < 64 columns, I not a multiple of 16: the rows are one
 * contiguous run, read as chunks of P = lcm(I, 16) floats (16 / gcd(I, 16) rows) into P lanes,
 * each lane a fixed column (k mod I); float32 sums of COL_BLOCK chunks, added up in double,
 * folded into the columns at the end. Narrow rows read as rows are mostly loop overhead and
 * remainders: sums over the middle axis, float32, two threads: (64,1000,5) 42 -> 7 us,
 * (64,4000,12) 176 -> 74 us, (100000,37) over axis 0 123 -> 97 us; (64,1000,33) unchanged. */
KC_INLINE void sum_narrow_rows(const float *KC_RESTRICT x, int64_t N, int64_t I,
                               double *KC_RESTRICT tot) {
  int64_t g = 16;
  while (I % g) g /= 2;
  const int64_t P = I / g * 16, R = P / I, chunks = N / R;
  float acc[64 * 16];
  double lane[64 * 16];
  for (int64_t k = 0; k < P; ++k) lane[k] = 0;
  for (int64_t c0 = 0; c0 < chunks; c0 += COL_BLOCK) {
    const int64_t c1 = c0 + COL_BLOCK < chunks ? c0 + COL_BLOCK : chunks;
    for (int64_t k = 0; k < P; ++k) acc[k] = 0;
    for (int64_t c = c0; c < c1; ++c)
      for (int64_t k = 0; k < P; ++k) acc[k] += x[c * P + k];
    for (int64_t k = 0; k < P; ++k) lane[k] += (double)acc[k];
  }
  for (int64_t j = 0; j < I; ++j) tot[j] = 0;
  for (int64_t r = 0; r < R; ++r)  // lane r I + j holds column j
    for (int64_t j = 0; j < I; ++j) tot[j] += lane[r * I + j];
  for (int64_t r = chunks * R; r < N; ++r)  // fewer rows than a chunk left
    for (int64_t j = 0; j < I; ++j) tot[j] += (double)x[r * I + j];
}

/* tot[j] = sum over rows of column j: float32 sums of COL_BLOCK rows, added up in double */
template <int TILE>
KC_INLINE void sum_cols_part(const float *KC_RESTRICT x, int64_t N, int64_t I, int64_t w,
                             double *KC_RESTRICT tot) {
  if (w == I && I < 64 && I % 16) {
    sum_narrow_rows(x, N, I, tot);
    return;
  }
  float acc[TILE];
  for (int64_t j = 0; j < w; ++j) tot[j] = 0;
  for (int64_t r0 = 0; r0 < N; r0 += COL_BLOCK) {
    const int64_t r1 = r0 + COL_BLOCK < N ? r0 + COL_BLOCK : N;
    for (int64_t j = 0; j < w; ++j) acc[j] = 0;
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) {  // four rows a step: narrow tiles are mostly loop overhead
      const float *KC_RESTRICT p = x + r * I;
      const bool ahead = r + 4 + PREFETCH_ROWS <= N;
      int64_t j = 0;
      for (; j + 16 <= w; j += 16) {
        if (ahead) prefetch_four(p + j, I);
        v16f v[4], a;
        for (int k = 0; k < 4; ++k) __builtin_memcpy(&v[k], p + k * I + j, sizeof(v16f));
        __builtin_memcpy(&a, acc + j, sizeof(v16f));
        a += (v[0] + v[1]) + (v[2] + v[3]);
        __builtin_memcpy(acc + j, &a, sizeof(v16f));
      }
      for (; j < w; ++j) acc[j] += (p[j] + p[I + j]) + (p[2 * I + j] + p[3 * I + j]);
    }
    for (; r < r1; ++r) {
      prefetch_row(x, r + PREFETCH_ROWS, N, I, w);
      for (int64_t j = 0; j < w; ++j) acc[j] += x[r * I + j];
    }
    for (int64_t j = 0; j < w; ++j) tot[j] += (double)acc[j];
  }
}

/* out[j] = sum (MEAN: mean) over rows of column j */
template <int TILE, bool MEAN>
KC_INLINE void sum_cols_f32(const float *KC_RESTRICT x, int64_t N, int64_t I, int64_t w,
                            float *KC_RESTRICT out) {
  double tot[TILE];
  sum_cols_part<TILE>(x, N, I, w, tot);
  for (int64_t j = 0; j < w; ++j) out[j] = (float)(MEAN ? tot[j] / (double)N : tot[j]);
}

/* out[j] = max (MIN: min) over rows of column j; NaN when any is NaN. A tile of up to NARROW
 * columns goes four rows a step (as in sum_cols_part), with NaN flags beside the values (a
 * select that lets a NaN win does not vectorise once rows are combined before the running
 * value); wider tiles too, written with vector types so that the NaN-sticky selects (fold_op)
 * combine the four rows first (flags would crowd the rows out of L1: 4096x4096 over axis 0
 * 1.46 -> 1.75 ms). */
template <int TILE, bool MIN>
KC_INLINE void extreme_cols_f32(const float *KC_RESTRICT x, int64_t N, int64_t I, int64_t w,
                                float *KC_RESTRICT out) {
  constexpr int64_t NARROW = 256;
  float m[TILE];
  for (int64_t j = 0; j < w; ++j) m[j] = MIN ? __builtin_inff() : -__builtin_inff();
  if (w > NARROW) {
    constexpr int OP = MIN ? FOLD_MIN : FOLD_MAX;
    const int64_t wv = w / 16 * 16;  // columns in whole vectors
    int64_t r = 0;
    for (; r + 4 <= N; r += 4) {  // four rows a step, combined in vectors where a NaN sticks
      const float *KC_RESTRICT p = x + r * I;
      const bool ahead = r + 4 + PREFETCH_ROWS <= N;
      for (int64_t j = 0; j < wv; j += 16) {
        if (ahead) prefetch_four(p + j, I);
        v16f v[4], mj;
        for (int k = 0; k < 4; ++k) __builtin_memcpy(&v[k], p + k * I + j, sizeof(v16f));
        __builtin_memcpy(&mj, m + j, sizeof(v16f));
        mj = fold_op<OP>(mj, fold_op<OP>(fold_op<OP>(v[0], v[1]), fold_op<OP>(v[2], v[3])));
        __builtin_memcpy(m + j, &mj, sizeof(v16f));
      }
      for (int k = 0; k < 4; ++k)
        for (int64_t j = wv; j < w; ++j) m[j] = fold_op<OP>(m[j], p[k * I + j]);
    }
    for (; r < N; ++r) {
      prefetch_row(x, r + PREFETCH_ROWS, N, I, w);
      for (int64_t j = 0; j < w; ++j) m[j] = fold_op<OP>(m[j], x[r * I + j]);
    }
    for (int64_t j = 0; j < w; ++j) out[j] = m[j];
    return;
  }
  int32_t nan[NARROW] = {};
  int64_t r = 0;
  for (; r + 4 <= N; r += 4) {
    for (int k = 0; k < 4; ++k) prefetch_row(x, r + k + PREFETCH_ROWS, N, I, w);
    const float *KC_RESTRICT p = x + r * I;
    for (int64_t j = 0; j < w; ++j) {
      const float v0 = p[j], v1 = p[I + j], v2 = p[2 * I + j], v3 = p[3 * I + j];
      const float a = (MIN ? v1 < v0 : v1 > v0) ? v1 : v0;
      const float b = (MIN ? v3 < v2 : v3 > v2) ? v3 : v2;
      const float c = (MIN ? b < a : b > a) ? b : a;
      m[j] = (MIN ? c < m[j] : c > m[j]) ? c : m[j];
      nan[j] |= (v0 != v0) | (v1 != v1) | (v2 != v2) | (v3 != v3);
    }
  }
  for (; r < N; ++r) {
    prefetch_row(x, r + PREFETCH_ROWS, N, I, w);
    for (int64_t j = 0; j < w; ++j) {
      const float v = x[r * I + j];
      m[j] = (MIN ? v < m[j] : v > m[j]) ? v : m[j];
      nan[j] |= v != v;
    }
  }
  for (int64_t j = 0; j < w; ++j) out[j] = nan[j] ? __builtin_nanf("") : m[j];
}

/* Few slices over many rows (sum, mean, max, min): the rows split into bands, their number
 * fixed by the shape (so results do not depend on the thread count), and a task reduces a
 * band's rows over up to BAND_TILE columns into partial results that a second pass merges in
 * band order. With up to BAND_TILE columns a thread reads one contiguous run of memory, where
 * tiles of columns over all rows read runs of at most COL_TILE a row apart. kcomp bench, axis 0
 * of 4096 x 4096 against TensorFlow (XLA) in the same run, three runs of each build: sum
 * 1.08-1.27x with bands, 0.99-1.01x without; max 0.81-1.07x, 0.80-0.92x. */
enum { BAND_ROWS = 256, BAND_MAX = 8, BAND_TILE = 4096 };
KC_INLINE int64_t col_bands(int64_t O, int64_t N) {
  const int64_t p = O < 8 ? N / BAND_ROWS : 1;
  return p < 1 ? 1 : p > BAND_MAX ? BAND_MAX : p;
}

/* The column kernels below walk a tile block by block (COL_BLOCK rows) and, within a block,
 * strip by strip (L columns): a strip's running state is loaded into registers once per block
 * (the strip functions are inlined with wl == L a constant), and the block's rows are re-read
 * from L1. A strip's rows are runs of 256 bytes a row apart, which no hardware prefetcher
 * follows: each step asks for the strip STRIPS_AHEAD steps on (in this block, else in a next
 * one), which arrives while the steps between run (a variance over the first axis of a
 * 4096 x 4096 matrix on one thread: 5.3 -> 3.8 ms). */
enum { STRIPS_AHEAD = 8 };
KC_INLINE void prefetch_strip_ahead(const float *x, int64_t r0, int64_t j0, int64_t N, int64_t I,
                                    int64_t w) {
  const int64_t strips = (w + L - 1) / L, ahead = j0 / L + STRIPS_AHEAD;
  const int64_t pr0 = r0 + ahead / strips * COL_BLOCK, pj = ahead % strips * L;
  for (int64_t r = pr0; r < pr0 + COL_BLOCK && r < N; ++r)
    for (int64_t j = pj; j < pj + L && j < w; j += 16) __builtin_prefetch(x + r * I + j);
}

/* column moments, one strip of one block: deviations from the block's first row, then M2
 * around the float mean (corrected), merged into (mean, m2) with Chan's update */
KC_INLINE void moments_strip(const float *KC_RESTRICT x, int64_t r0, int64_t r1, int64_t I,
                             int64_t wl, double *KC_RESTRICT mean, double *KC_RESTRICT m2) {
  float acc[L], mf[L];
  const double na = (double)r0, nb = (double)(r1 - r0), n = (double)r1;
  const float *KC_RESTRICT sh = x + r0 * I;
  for (int64_t j = 0; j < wl; ++j) acc[j] = 0;
  for (int64_t r = r0 + 1; r < r1; ++r)
    for (int64_t j = 0; j < wl; ++j) acc[j] += x[r * I + j] - sh[j];
  for (int64_t j = 0; j < wl; ++j) {
    const double bmean = (double)sh[j] + (double)acc[j] / nb;
    const double delta = bmean - mean[j];
    mf[j] = (float)bmean;
    const double off = bmean - (double)mf[j];
    mean[j] += delta * (nb / n);
    m2[j] += delta * delta * (na * nb / n) - nb * off * off;
    acc[j] = 0;
  }
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t j = 0; j < wl; ++j) {
      const float t = x[r * I + j] - mf[j];
      acc[j] += t * t;
    }
  for (int64_t j = 0; j < wl; ++j) m2[j] += (double)acc[j];
}

template <int TILE>
KC_INLINE void moments_cols_f32(const float *KC_RESTRICT x, int64_t N, int64_t I, int64_t w,
                                bool root, float *KC_RESTRICT out) {
  double mean[TILE], m2[TILE];
  for (int64_t j = 0; j < w; ++j) mean[j] = m2[j] = 0;
  for (int64_t r0 = 0; r0 < N; r0 += COL_BLOCK) {
    const int64_t r1 = r0 + COL_BLOCK < N ? r0 + COL_BLOCK : N;
    for (int64_t j0 = 0; j0 < w; j0 += L) {
      prefetch_strip_ahead(x, r0, j0, N, I, w);
      if (w - j0 >= L)
        moments_strip(x + j0, r0, r1, I, L, mean + j0, m2 + j0);
      else
        moments_strip(x + j0, r0, r1, I, w - j0, mean + j0, m2 + j0);
    }
  }
  for (int64_t j = 0; j < w; ++j) {
    const double v = m2[j] / (double)N;
    out[j] = (float)(root ? __builtin_sqrt(v) : v);
  }
}

/* column logsumexp, one strip of one block: the block's max, the running sums rescaled when
 * the max grows (while everything is -inf the shift is 0), then the block's exponentials */
KC_INLINE void lse_strip(const float *KC_RESTRICT x, int64_t r0, int64_t r1, int64_t I,
                         int64_t wl, float *KC_RESTRICT m, double *KC_RESTRICT s,
                         int32_t *KC_RESTRICT bad) {
  float bm[L], acc[L];
  int32_t bd[L];
  for (int64_t j = 0; j < wl; ++j) {
    bm[j] = m[j];
    bd[j] = 0;
  }
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t j = 0; j < wl; ++j) {
      const float v = x[r * I + j];
      bm[j] = v > bm[j] ? v : bm[j];
      bd[j] |= !(v < __builtin_inff()); /* NaN or +inf: recomputed at the end */
    }
  for (int64_t j = 0; j < wl; ++j) {
    const float f = vm::exp(m[j] - bm[j]);
    s[j] *= (double)(bm[j] == -__builtin_inff() ? 1.0f : f);
    m[j] = bm[j];
    bm[j] = bm[j] == -__builtin_inff() ? 0.0f : bm[j];
    bad[j] |= bd[j];
    acc[j] = 0;
  }
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t j = 0; j < wl; ++j) acc[j] += vm::exp_neg(x[r * I + j] - bm[j]);
  for (int64_t j = 0; j < wl; ++j) s[j] += (double)acc[j];
}

template <int TILE>
KC_INLINE void lse_cols_f32(const float *KC_RESTRICT x, int64_t N, int64_t I, int64_t w,
                            float *KC_RESTRICT out) {
  float m[TILE];
  int32_t bad[TILE];
  double s[TILE];
  for (int64_t j = 0; j < w; ++j) {
    m[j] = -__builtin_inff();
    s[j] = 0;
    bad[j] = 0;
  }
  for (int64_t r0 = 0; r0 < N; r0 += COL_BLOCK) {
    const int64_t r1 = r0 + COL_BLOCK < N ? r0 + COL_BLOCK : N;
    for (int64_t j0 = 0; j0 < w; j0 += L) {
      prefetch_strip_ahead(x, r0, j0, N, I, w);
      if (w - j0 >= L)
        lse_strip(x + j0, r0, r1, I, L, m + j0, s + j0, bad + j0);
      else
        lse_strip(x + j0, r0, r1, I, w - j0, m + j0, s + j0, bad + j0);
    }
  }
  for (int64_t j = 0; j < w; ++j)
    out[j] = (bad[j] || m[j] == -__builtin_inff()) ? (float)lse_plain_f32(x + j, N, I)
                                                   : (float)(__builtin_log(s[j]) + (double)m[j]);
}

} /* namespace red */
} /* namespace kc */

#endif /* KCOMP_REDUCE_H */
