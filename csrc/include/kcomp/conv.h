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
#define KC_CONV_FMA_INLINE inline __attribute__((always_inline))
#define KC_CONV_CONTRACT _Pragma("clang fp contract(fast)")
#else
#define KC_CONV_FMA __attribute__((noinline, optimize("fp-contract=fast")))
#define KC_CONV_FMA_INLINE inline __attribute__((always_inline, optimize("fp-contract=fast")))
#define KC_CONV_CONTRACT
#endif

/* a vector of T that may lie anywhere a T may */
template <class T> struct Vec {
  typedef T type __attribute__((vector_size(KC_CONV_VBYTES), aligned(sizeof(T))));
};

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
  typedef typename Vec<T>::type vec;
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

/* ---- few output channels, stride 1 along rows, channels_last (conv_rows.j2) --------------
 *
 * With fewer output channels than a vector holds, the direct kernel's lanes idle (one output
 * channel: 1 of 16). Here a vector holds V consecutive output pixels of one row instead: the
 * input rows that the row's windows read are first transposed to channel-major rows with zero
 * padding on both sides, where for each tap and channel the V pixels' inputs are V consecutive
 * elements; each is multiplied by that tap's weight for each output channel. */
template <class T, int64_t O, int64_t KW, int64_t C, int64_t DLW>
KC_CONV_FMA void rows_tile(const T *const *KC_RESTRICT xt, const int64_t *KC_RESTRICT tap,
                           int64_t nrows, int64_t wp, const T *KC_RESTRICT w, int64_t ow0,
                           T *KC_RESTRICT out) {
  KC_CONV_CONTRACT
  constexpr int V = KC_CONV_VBYTES / (int)sizeof(T);
  typedef typename Vec<T>::type vec;
  // A = 4 / O chains per output channel (at least 4 in all), so that the FMAs' latency hides
  constexpr int A = O >= 4 ? 1 : 4 / (int)O;
  vec acc[O][A];
#pragma GCC unroll 4
  for (int o = 0; o < O; ++o)
#pragma GCC unroll 4
    for (int a = 0; a < A; ++a) acc[o][a] = vec{};
  for (int64_t q = 0; q < nrows; ++q)
    for (int64_t kw = 0; kw < KW; ++kw) {
      const T *KC_RESTRICT xr = xt[q] + ow0 + kw * DLW;
      const T *KC_RESTRICT wr = w + (tap[q] + kw) * C * O;
      int64_t c = 0;
      for (; c + A <= C; c += A)
#pragma GCC unroll 4
        for (int a = 0; a < A; ++a) {
          const vec xv = *(const vec *)(xr + (c + a) * wp);
#pragma GCC unroll 4
          for (int o = 0; o < O; ++o) acc[o][a] += xv * wr[(c + a) * O + o];
        }
      for (; c < C; ++c) {
        const vec xv = *(const vec *)(xr + c * wp);
#pragma GCC unroll 4
        for (int o = 0; o < O; ++o) acc[o][0] += xv * wr[c * O + o];
      }
    }
#pragma GCC unroll 4
  for (int o = 0; o < O; ++o) {
    vec t = acc[o][0];
#pragma GCC unroll 4
    for (int a = 1; a < A; ++a) t += acc[o][a];
    *(vec *)(out + o * V) = t;
  }
}

/* ---- depthwise convolution, channels_last, channel multiplier 1 (conv_window.j2) ------------
 *
 * One output row: y[ow C + c] = sum over the kernel rows inside the input (R of them: row
 * pointers xr, their KW taps' weights wr, C apart) and the taps kw inside of
 * x[(ow SW - PW + kw DLW) C + c] w[kw C + c], in that order, fused multiply-adds (the sliding-
 * window loop's arithmetic). A vector of channels keeps its R x KW weights in registers while
 * it runs along the row, 8 pixels at a time where their windows lie inside the row; pixels
 * near the edges, and channels short of a vector, go one at a time. The sliding-window loop
 * kept its accumulators in memory and reloaded the weights for every pixel: (8,56,56,64) 3x3
 * 'same', two threads, 234 -> 168 us (PyTorch 160; bench/sweep.py). conv_window.j2 takes it
 * for up to 8 kernel rows. */
/* U output pixels from ow, the vector of channels at c (weights w): over all R kernel rows
 * (ALL, unrolled, the weights in registers) or over the first `rows` (a row near the top or
 * bottom edge: a loop, the weights read from w in L1) */
template <class T, int KW, int SW, int DLW, int R, bool ALL, int U>
KC_CONV_FMA_INLINE void depthwise_pixels(const T *const *xr,
                                         const typename Vec<T>::type (&w)[R][KW], int rows,
                                         int64_t ow, int64_t PW, int64_t C, int64_t c,
                                         T *KC_RESTRICT y) {
  KC_CONV_CONTRACT
  typedef typename Vec<T>::type vec;
  vec acc[U] = {};
  if constexpr (ALL) {
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
      for (int kw = 0; kw < KW; ++kw)
#pragma GCC unroll 8
        for (int u = 0; u < U; ++u)
          acc[u] += *(const vec *)(xr[r] + ((ow + u) * SW - PW + kw * DLW) * C + c) * w[r][kw];
  } else {  // (one pointer a tap, the pixels' offsets from it shared by the taps)
    const int64_t step = SW * C;
    for (int r = 0; r < rows; ++r) {
      const T *x = xr[r] + (ow * SW - PW) * C + c;
#pragma GCC unroll 8
      for (int kw = 0; kw < KW; ++kw, x += DLW * C) {
        const vec wv = w[r][kw];
#pragma GCC unroll 8
        for (int u = 0; u < U; ++u) acc[u] += *(const vec *)(x + u * step) * wv;
      }
    }
  }
#pragma GCC unroll 8
  for (int u = 0; u < U; ++u) *(vec *)(y + (ow + u) * C + c) = acc[u];
}

/* One output row from the first `rows` kernel rows (R of them when ALL): depthwise_row's. */
template <class T, int KW, int SW, int DLW, int R, bool ALL>
KC_CONV_FMA void depthwise_rows(const T *const *xr, const T *const *wr, int rows, int64_t W,
                                int64_t PW, int64_t C, int64_t OW, T *KC_RESTRICT y) {
  KC_CONV_CONTRACT
  constexpr int V = KC_CONV_VBYTES / (int)sizeof(T);
  typedef typename Vec<T>::type vec;
  const int nr = ALL ? R : rows;
  int64_t lo, hi;  // pixels whose whole window lies inside the row
  inside(0, OW, SW, -PW, W - (KW - 1) * DLW, &lo, &hi);
  hi = hi > lo ? hi : lo;
  // s: how many elements the input lies past a vector boundary (numpy's large arrays: 16
  // bytes). With whole vectors of channels and stride 1, every vector starts s channels early
  // so that its loads are aligned (one that straddles two cache lines costs two): the first
  // holds the last s channels of the pixel before (their weights rotated in), so these
  // vectors run over the pixels [lo + 1, hi), and lo and hi - 1 go through the edge path.
  const uintptr_t at = (uintptr_t)xr[0];
  const int64_t s =
      SW == 1 && C % V == 0 && at % sizeof(T) == 0 ? (int64_t)(at / sizeof(T) % V) : 0;
  const int64_t first = s ? lo + 1 : lo, stop = s ? hi - 1 : hi;  // whole pixels: [first, stop)
  // Vectors of channels from c = -s, V - s, ...; without a shift, the last one ends at C. A
  // vector or block of pixels that overlaps the one before computes and stores its values
  // again, the same.
  const int64_t last = C >= V ? C - V : 0, CV = C >= V ? C : 0;
  for (int64_t c0 = 0; c0 < CV; c0 += V) {
    const int64_t c = s ? c0 - s : c0 < last ? c0 : last;
    vec w[R][KW];
#pragma GCC unroll 8
    for (int r = 0; r < nr; ++r)
#pragma GCC unroll 8
      for (int kw = 0; kw < KW; ++kw) {
        if (c >= 0) {
          w[r][kw] = *(const vec *)(wr[r] + kw * C + c);
        } else {  // channel c + j, or for j < -c that of the pixel before
#pragma GCC unroll 1
          for (int j = 0; j < V; ++j) w[r][kw][j] = wr[r][kw * C + c + j + (c + j < 0 ? C : 0)];
        }
      }
    // blocks of 8 pixels (independent sums in flight), the last one ending at hi; fewer
    // pixels one at a time
    if (hi - first >= 8) {
      for (int64_t o = first; o < hi; o += 8)
        depthwise_pixels<T, KW, SW, DLW, R, ALL, 8>(xr, w, nr, o + 8 <= hi ? o : hi - 8, PW, C,
                                                    c, y);
    } else {
      for (int64_t ow = first; ow < hi; ++ow)
        depthwise_pixels<T, KW, SW, DLW, R, ALL, 1>(xr, w, nr, ow, PW, C, c, y);
    }
  }
  // the edge path: pixels outside [first, stop), and channels short of a vector everywhere
  for (int64_t ow = 0; ow < OW; ++ow) {
    const bool inner = ow >= first && ow < stop;
    if (inner && CV == C) continue;
    const int64_t iw0 = ow * SW - PW;
    if (!inner)
      for (int64_t c0 = 0; c0 < CV; c0 += V) {
        const int64_t c = c0 < last ? c0 : last;
        vec acc = {};
        for (int r = 0; r < nr; ++r)
          for (int kw = 0; kw < KW; ++kw)
            if (iw0 + kw * DLW >= 0 && iw0 + kw * DLW < W)
              acc += *(const vec *)(xr[r] + (iw0 + kw * DLW) * C + c) *
                     *(const vec *)(wr[r] + kw * C + c);
        *(vec *)(y + ow * C + c) = acc;
      }
    for (int64_t c = CV; c < C; ++c) {
      T acc = 0;
      for (int r = 0; r < nr; ++r)
        for (int kw = 0; kw < KW; ++kw)
          if (iw0 + kw * DLW >= 0 && iw0 + kw * DLW < W)
            acc += xr[r][(iw0 + kw * DLW) * C + c] * wr[r][kw * C + c];
      y[ow * C + c] = acc;
    }
  }
}

/* One output row from the `rows` (0..RMAX) kernel rows inside. A row with all RMAX has its own
 * unrolled instantiation; the few near the top and bottom edges share one with a loop over
 * their rows: instantiating each count unrolled made a 7x7 convolution's kernel take a second
 * to compile, for rows that are 2 of every 56 (NASNetMobile: 23 such kernels, 25 s). */
template <class T, int KW, int SW, int DLW, int RMAX>
KC_INLINE void depthwise_row(const T *const *xr, const T *const *wr, int rows, int64_t W,
                             int64_t PW, int64_t C, int64_t OW, T *y) {
  if (rows == RMAX) {
    depthwise_rows<T, KW, SW, DLW, RMAX, true>(xr, wr, rows, W, PW, C, OW, y);
  } else if (rows > 0) {
    depthwise_rows<T, KW, SW, DLW, RMAX, false>(xr, wr, rows, W, PW, C, OW, y);
  } else {  // no row inside: zeros
    for (int64_t i = 0; i < OW * C; ++i) y[i] = T(0);
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
  typedef typename Vec<T>::type vec;
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
