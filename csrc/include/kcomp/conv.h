/* kcomp generated-code support: index arithmetic of sliding windows (convolution, pooling).
 *
 * Included by the conv*.j2 templates. Header-free like rt.h. A window position o of stride s
 * and offset off reads input element o * s + off; these helpers find the positions whose
 * element lies inside an input of n elements, so that kernels loop without per-element tests.
 */
#ifndef KCOMP_CONV_H
#define KCOMP_CONV_H

#include "rt.h"

namespace kc {
namespace conv {

/* floor(a / b) and ceil(a / b) for b > 0 and a of either sign */
KC_INLINE int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((b - 1 - a) / b); }
KC_INLINE int64_t ceil_div(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -(-a / b); }

/* most thread slots of a direct convolution's work (each with its own run of items) */
enum { SLOTS = 64 };

KC_INLINE int64_t min(int64_t a, int64_t b) { return a < b ? a : b; }
KC_INLINE int64_t max(int64_t a, int64_t b) { return a > b ? a : b; }

/* Positions o in [a, b) with 0 <= o * s + off < n: the range [*lo, *hi) (empty: *lo == *hi). */
KC_INLINE void inside(int64_t a, int64_t b, int64_t s, int64_t off, int64_t n, int64_t *lo,
                      int64_t *hi) {
  const int64_t l = max(a, ceil_div(-off, s)), h = min(b, ceil_div(n - off, s));
  *lo = l < b ? l : b;
  *hi = h > *lo ? h : *lo;
}

/* How many of the k elements start, start + 1, ... lie in [0, n) (pooling counts). */
KC_INLINE int64_t span(int64_t start, int64_t k, int64_t n) {
  const int64_t c = min(start + k, n) - max(start, 0);
  return c > 0 ? c : 0;
}

/* The first o >= lo with (o + off) divisible by s (transposed convolution: the output
 * positions a tap reaches). */
KC_INLINE int64_t first_multiple(int64_t lo, int64_t off, int64_t s) {
  const int64_t r = (lo + off) % s;
  return r == 0 ? lo : lo + (r > 0 ? s - r : -r);
}

/* max propagating NaN like numpy's maximum; this form compiles to max + blend, without the
 * branches kc::maximum gets in strided loops */
KC_INLINE float max_nan(float acc, float v) {
  const float m = v > acc ? v : acc;
  return v != v ? v : m;
}
KC_INLINE double max_nan(double acc, double v) {
  const double m = v > acc ? v : acc;
  return v != v ? v : m;
}

/* acc + a * b with one rounding: generated code is built with -ffp-contract=off, and the GEMM
 * that computes ordinary convolutions fuses too */
KC_INLINE float madd(float acc, float a, float b) { return __builtin_fmaf(a, b, acc); }
KC_INLINE double madd(double acc, double a, double b) { return __builtin_fma(a, b, acc); }

template <class T> KC_INLINE void zero(T *KC_RESTRICT dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = T(0);
}

template <class T> KC_INLINE void copy(T *KC_RESTRICT dst, const T *KC_RESTRICT src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
}

/* ---- direct convolution over channels_last data (conv_direct.j2) -----------------------------
 *
 * An implicit GEMM: a register tile of MR consecutive output pixels of one output row times NR
 * output channels accumulates, for each kernel row that lies inside the input, the products of
 * the input elements (broadcast, read in place: pixel i's window starts SW * C elements after
 * pixel i - 1's) with a panel of the kernel packed once per call. There is no im2col matrix:
 * windows that cross the padding are copied into a small zero-padded buffer of the same layout.
 * The vector width and the register budget follow the instruction set of the build.
 */
#if defined(__AVX512F__)
#define KC_CONV_VBYTES 64
#define KC_CONV_ACC 24 /* accumulator registers of 32 */
#define KC_CONV_NRV 4  /* at most this many vectors of output channels per panel */
#elif defined(__AVX__)
#define KC_CONV_VBYTES 32
#define KC_CONV_ACC 12
#define KC_CONV_NRV 2
#else
#define KC_CONV_VBYTES 16
#define KC_CONV_ACC 12
#define KC_CONV_NRV 2
#endif

/* The tile's products must fuse into FMAs although generated code is built with
 * -ffp-contract=off (the GEMM that computes the other convolutions fuses too). */
#if defined(__clang__)
#define KC_CONV_FMA __attribute__((noinline))
#define KC_CONV_CONTRACT _Pragma("clang fp contract(fast)")
#else
#define KC_CONV_FMA __attribute__((noinline, optimize("fp-contract=fast")))
#define KC_CONV_CONTRACT
#endif

/* A run of the reduction: depth n from input offset a (pixel 0's) and packed kernel row b. */
struct Seg {
  int64_t a, b, n;
};

template <class T, int64_t O> struct Direct {
  static constexpr int V = KC_CONV_VBYTES / (int)sizeof(T);
  static constexpr int NV = (int)((O + V - 1) / V);  // vectors across the output channels
  static constexpr int PANELS = (NV + KC_CONV_NRV - 1) / KC_CONV_NRV;
  static constexpr int NRV = (NV + PANELS - 1) / PANELS;  // vectors per panel, evenly
  static constexpr int NR = NRV * V;
  static constexpr int MR = KC_CONV_ACC / NRV < 12 ? KC_CONV_ACC / NRV : 12;  // pixels per tile
};

/* y[i * O + j] (i < MR pixels, j < nr channels) = sum over the runs of a[i * LDA + k] times the
 * panel's row k. */
template <class T, int NRV, int MR, int64_t LDA, int64_t O>
KC_CONV_FMA void direct_tile(const T *KC_RESTRICT a, const T *KC_RESTRICT panel,
                             const Seg *KC_RESTRICT seg, int64_t nseg, T *KC_RESTRICT y, int nr) {
  KC_CONV_CONTRACT
  constexpr int V = KC_CONV_VBYTES / (int)sizeof(T), NR = NRV * V;
  typedef T vec __attribute__((vector_size(KC_CONV_VBYTES), aligned(sizeof(T))));
  vec acc[MR][NRV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NRV; ++j) acc[i][j] = vec{};
  for (int64_t s = 0; s < nseg; ++s) {
    const T *KC_RESTRICT as = a + seg[s].a;
    const T *KC_RESTRICT bs = panel + seg[s].b * NR;
    const int64_t n = seg[s].n;
    for (int64_t k = 0; k < n; ++k) {
      vec b[NRV];
#pragma GCC unroll 4
      for (int j = 0; j < NRV; ++j) b[j] = *(const vec *)(bs + k * NR + j * V);
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
        const T av = as[i * LDA + k];
#pragma GCC unroll 4
        for (int j = 0; j < NRV; ++j) acc[i][j] += av * b[j];
      }
    }
  }
  if (nr == NR) {
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int j = 0; j < NRV; ++j) *(vec *)(y + i * O + j * V) = acc[i][j];
    return;
  }
  for (int i = 0; i < MR; ++i) {
    T row[NR];
    for (int j = 0; j < NRV; ++j) *(vec *)(row + j * V) = acc[i][j];
    for (int j = 0; j < nr; ++j) y[i * O + j] = row[j];
  }
}

/* direct_tile for mr (1..MR) pixels */
template <class T, int NRV, int MR, int64_t LDA, int64_t O>
KC_INLINE void direct_tiles(int mr, const T *a, const T *panel, const Seg *seg, int64_t nseg, T *y,
                            int nr) {
  if (mr == MR) {
    direct_tile<T, NRV, MR, LDA, O>(a, panel, seg, nseg, y, nr);
  } else if constexpr (MR > 1) {
    direct_tiles<T, NRV, MR - 1, LDA, O>(mr, a, panel, seg, nseg, y, nr);
  }
}

/* The (K x O) kernel as panels of NR channels, rows [k0, k1) of each: panel p row k holds
 * w[k, p * NR + j], zeros past O. */
template <class T, int64_t O>
KC_INLINE void direct_pack(const T *KC_RESTRICT w, T *KC_RESTRICT wp, int64_t K, int64_t k0,
                           int64_t k1) {
  typedef Direct<T, O> D;
  for (int p = 0; p < D::PANELS; ++p)
    for (int64_t k = k0; k < k1; ++k)
      for (int j = 0; j < D::NR; ++j) {
        const int64_t o = (int64_t)p * D::NR + j;
        wp[((int64_t)p * K + k) * D::NR + j] = o < O ? w[k * O + o] : T(0);
      }
}

/* The kernel gradient's tile (conv_filter_direct.j2): part[i * O + j] += sum over the runs of
 * the pixels p of a run of a[p * LDA + i] (the input element of kernel row i) times g[p * O + j],
 * for i < MR kernel rows and j < nr output channels of a panel. */
struct Run {
  int64_t a, g, n;  // input offset, gradient offset (of the run's first pixel), pixels
};

template <class T, int NRV, int MR, int64_t LDA, int64_t O>
KC_CONV_FMA void filter_tile(const T *KC_RESTRICT a, const T *KC_RESTRICT g,
                             const Run *KC_RESTRICT run, int64_t nrun, T *KC_RESTRICT part,
                             int nr) {
  KC_CONV_CONTRACT
  constexpr int V = KC_CONV_VBYTES / (int)sizeof(T), NR = NRV * V;
  typedef T vec __attribute__((vector_size(KC_CONV_VBYTES), aligned(sizeof(T))));
  vec acc[MR][NRV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NRV; ++j) acc[i][j] = vec{};
  for (int64_t r = 0; r < nrun; ++r) {
    const T *KC_RESTRICT ar = a + run[r].a;
    const T *KC_RESTRICT gr = g + run[r].g;
    const int64_t n = run[r].n;
    for (int64_t p = 0; p < n; ++p) {
      vec b[NRV];
#pragma GCC unroll 4
      for (int j = 0; j < NRV; ++j) b[j] = *(const vec *)(gr + p * O + j * V);
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
        const T av = ar[p * LDA + i];
#pragma GCC unroll 4
        for (int j = 0; j < NRV; ++j) acc[i][j] += av * b[j];
      }
    }
  }
  for (int i = 0; i < MR; ++i) {
    if (nr == NR) {
#pragma GCC unroll 4
      for (int j = 0; j < NRV; ++j) *(vec *)(part + i * O + j * V) += acc[i][j];
    } else {
      T row[NR];
      for (int j = 0; j < NRV; ++j) *(vec *)(row + j * V) = acc[i][j];
      for (int j = 0; j < nr; ++j) part[i * O + j] += row[j];
    }
  }
}

/* filter_tile for mr (1..MR) kernel rows */
template <class T, int NRV, int MR, int64_t LDA, int64_t O>
KC_INLINE void filter_tiles(int mr, const T *a, const T *g, const Run *run, int64_t nrun, T *part,
                            int nr) {
  if (mr == MR) {
    filter_tile<T, NRV, MR, LDA, O>(a, g, run, nrun, part, nr);
  } else if constexpr (MR > 1) {
    filter_tiles<T, NRV, MR - 1, LDA, O>(mr, a, g, run, nrun, part, nr);
  }
}

}  // namespace conv
}  // namespace kc

#endif /* KCOMP_CONV_H */
