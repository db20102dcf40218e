/* kcomp generated-code support: helpers of the array kernels (kcomp/lowering/rules/array.py).
 *
 * Each is the native twin of a numpy reference in kcomp/ir/ops/array.py or nn_extra.py.
 */
#ifndef KCOMP_ARRAY_H
#define KCOMP_ARRAY_H

#include "rt.h"

namespace kc {

/* ---- resize_images: TensorFlow's legacy scaler (align_corners=False, half_pixel_centers=False):
 * output item i reads input position i * scale, scale = in / out computed in float32. ------- */

KC_INLINE float resize_pos(int64_t i, int64_t in, int64_t out) {
  const float scale = (float)in / (float)out;
  return (float)i * scale;
}

/* resize_nearest_neighbor: the input item output item i copies. */
KC_INLINE int64_t resize_nearest(int64_t i, int64_t in, int64_t out) {
  const int64_t s = (int64_t)__builtin_floorf(resize_pos(i, in, out));
  return s < in - 1 ? s : in - 1;
}

/* resize_bilinear: the two input items output item i blends, and the weight of the second. */
struct Lerp {
  int64_t lo, hi;
  float t;
};

KC_INLINE Lerp resize_linear(int64_t i, int64_t in, int64_t out) {
  const float v = resize_pos(i, in, out);
  const float vf = __builtin_floorf(v);
  const int64_t lo = (int64_t)vf, hi = (int64_t)__builtin_ceilf(v);
  Lerp r;
  r.lo = lo > 0 ? lo : 0;
  r.hi = hi < in - 1 ? hi : in - 1;
  r.t = v - vf;
  return r;
}

/* ---- in_top_k: TensorFlow's rule (fewer than k classes score strictly higher than the target;
 * a target out of range or a non-finite score in the row gives false). ------------------------ */

template <class T> KC_INLINE bool finite_score(T) { return true; }
KC_INLINE bool finite_score(float x) { return isfinite_(x); }
KC_INLINE bool finite_score(double x) { return isfinite_(x); }

/* C: the compute type scores are compared in; S: their storage type. */
template <class C, class S>
KC_INLINE bool in_top_k(const S *KC_RESTRICT row, int64_t n, int64_t target, int64_t k) {
  if (target < 0 || target >= n) return false;
  const C score = (C)row[target];
  int64_t higher = 0;
  for (int64_t i = 0; i < n; ++i) {
    const C v = (C)row[i];
    if (!finite_score(v)) return false;
    higher += v > score;
  }
  return higher < k;
}

} /* namespace kc */

#endif /* KCOMP_ARRAY_H */
