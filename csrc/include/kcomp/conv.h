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

}  // namespace conv
}  // namespace kc

#endif /* KCOMP_CONV_H */
