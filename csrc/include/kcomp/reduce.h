/* kcomp generated-code support: reduction semantics (init / step / merge / result).
 *
 * The generated reduction loops (kcomp/templates/cpu/reduce.j2) are written once over these
 * reducers. Accumulators are wider than the data: double for float16/float32 (and float64),
 * int64/uint64 for integers. Results match the numpy references in kcomp/ir/ops/reduce.py.
 */
#ifndef KCOMP_REDUCE_H
#define KCOMP_REDUCE_H

#include "rt.h"

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

/* arg-reductions: the first index of the extreme value; a NaN wins and the first NaN stays. */
template <class T> KC_INLINE bool better_max(T x, T best) {
  return !isnan_any(best) && (x > best || isnan_any(x));
}
template <class T> KC_INLINE bool better_min(T x, T best) {
  return !isnan_any(best) && (x < best || isnan_any(x));
}

} /* namespace red */
} /* namespace kc */

#endif /* KCOMP_REDUCE_H */
