/* kcomp generated-code support: scalar semantics of every elementwise op, and small helpers.
 *
 * Included by every generated translation unit, so it must stay tiny and header-free (no libc or
 * STL headers: math goes through compiler builtins that resolve to libm). Each scalar function
 * here is the native twin of an op's numpy reference in kcomp/ir/ops; the two must agree.
 * Integer arithmetic relies on -fwrapv (numpy wraps on overflow) and never divides by zero.
 * The same header serves generated CUDA (nvcc, __CUDACC__): every helper is then a host and
 * device function, float32 exp/log are CUDA's own, tanh and sigmoid divide by the hardware's
 * approximate reciprocal where that stays within a few ulp, and float16 is __half.
 */
#ifndef KCOMP_RT_H
#define KCOMP_RT_H

#include "abi.h"
#include "vmath.h"
#include <time.h>
#ifdef __CUDACC__
#include <cuda_fp16.h>
#define KC_INLINE static __host__ __device__ __forceinline__
#else
#define KC_INLINE static inline __attribute__((always_inline))
#endif

#define KC_RESTRICT __restrict__

namespace kc {

#ifdef __CUDACC__
typedef __half f16;
#else
typedef _Float16 f16;
#endif

/* ---- profiling (kc_call.profile) ----------------------------------------------------------- */
#ifndef __CUDACC__
static inline double seconds() {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
/* adds the time since *last to *slot; *last = now */
static inline void lap(double *slot, double *last) {
  const double now = seconds();
  *slot += now - *last;
  *last = now;
}
#endif

/* ---- errors ------------------------------------------------------------------------------ */

template <class Call>
KC_INLINE int32_t fail(Call *c, int32_t status, const char *msg) {
  int i = 0;
  for (; msg[i] && i < KC_ERROR_CAP - 1; ++i) c->error[i] = msg[i];
  c->error[i] = 0;
  return status;
}

template <class Call>
KC_INLINE int32_t fail2(Call *c, int32_t status, const char *a, const char *b) {
  int n = 0;
  for (int i = 0; a[i] && n < KC_ERROR_CAP - 1; ++i) c->error[n++] = a[i];
  for (int i = 0; b[i] && n < KC_ERROR_CAP - 1; ++i) c->error[n++] = b[i];
  c->error[n] = 0;
  return status;
}

/* Writes "<msg>: <a> vs <b>" (two integers: extents, or an index and its bound) into the error
 * buffer. */
template <class Call>
KC_INLINE int32_t fail_dims(Call *c, const char *msg, int64_t a, int64_t b) {
  char *out = c->error;
  int n = 0;
  for (; msg[n] && n < KC_ERROR_CAP - 48; ++n) out[n] = msg[n];
  int64_t vals[2] = {a, b};
  for (int v = 0; v < 2; ++v) {
    const char *sep = v == 0 ? ": " : " vs ";
    for (int i = 0; sep[i]; ++i) out[n++] = sep[i];
    int64_t x = vals[v];
    if (x < 0) { out[n++] = '-'; x = -x; }
    char digits[24];
    int d = 0;
    do { digits[d++] = (char)('0' + x % 10); x /= 10; } while (x);
    while (d) out[n++] = digits[--d];
  }
  out[n] = 0;
  return KC_EINVAL;
}

/* ---- run-time dimensions ----------------------------------------------------------------- */

/* numpy broadcasting of two run-time extents; -1 when incompatible. */
KC_INLINE int64_t bcast(int64_t a, int64_t b) { return a == b ? a : a == 1 ? b : b == 1 ? a : -1; }

/* Python slice semantics: start and length of x[start:stop:step] over an axis of n items.
 * has_start/has_stop say whether the bound was given. */
KC_INLINE int64_t slice_start(int64_t n, int64_t start, int has_start, int64_t step) {
  if (!has_start) return step > 0 ? 0 : n - 1;
  if (start < 0) start += n;
  if (step > 0) return start < 0 ? 0 : start > n ? n : start;
  return start < 0 ? -1 : start >= n ? n - 1 : start;
}
KC_INLINE int64_t slice_len(int64_t n, int64_t start, int has_start, int64_t stop, int has_stop,
                            int64_t step) {
  int64_t lo = slice_start(n, start, has_start, step);
  int64_t hi;
  if (!has_stop) {
    hi = step > 0 ? n : -1;
  } else {
    if (stop < 0) stop += n;
    if (step > 0) hi = stop < 0 ? 0 : stop > n ? n : stop;
    else hi = stop < -1 ? -1 : stop >= n ? n - 1 : stop;
  }
  if (step > 0) return hi > lo ? (hi - lo + step - 1) / step : 0;
  return lo > hi ? (lo - hi - step - 1) / (-step) : 0;
}

/* ---- float helpers ------------------------------------------------------------------------ */

KC_INLINE float r16(float x) { return (float)(f16)x; } /* round to float16, as numpy does per op */
KC_INLINE bool isnan_(float x) { return x != x; }
KC_INLINE bool isnan_(double x) { return x != x; }

/* exp, log, tanh, pow, sin and cos: float32 through kcomp's vectorizable versions (vmath.h:
 * loops over them run 8-16 elements at a time), float64 through libm. expm1 derives from them:
 * near zero by its Taylor polynomial (within 1.7 ulp of float64; Kahan's correction, a log and
 * a division more, cost 3.3x the time and 3.4 ulp). softplus's ln(1 + e^-|x|) is
 * vm::log1p_01. On the GPU: CUDA's own, but tanh and sigmoid (below). */
#ifdef __CUDACC__
KC_INLINE float exp(float x) { return __builtin_expf(x); }
KC_INLINE float log(float x) { return __builtin_logf(x); }
/* On the GPU: vm::tanh's odd polynomial near 0, (1 - e) / (1 + e) with e = e^{-2|x|} beyond, the
 * quotient by the hardware's approximate reciprocal (__fdividef: 1 + e is in [1, 1.3]), within
 * 7 ulp. CUDA's tanhf and an IEEE division cost twice the instructions, and a chain of such ops
 * is bound by them. (Intrinsics, not inline PTX: nvcc does not move loads across inline asm, so
 * a loop could not issue its loads early.) */
KC_INLINE float tanh(float x) {
#ifdef __CUDA_ARCH__
  const float a = fabsf(x);
  const float small = vm::tanh_near0(x);
  const float e = exp2f(-2.88539008178f * a); /* e^{-2a} */
  const float large = copysignf(__fdividef(1.0f - e, 1.0f + e), x);
  return a < 0.625f ? small : large; /* NaN: e and large are NaN */
#else
  return __builtin_tanhf(x);
#endif
}
KC_INLINE float expm1(float x) { return __builtin_expm1f(x); }
KC_INLINE float exp_nonpos(float x) { return __builtin_expf(x); }
KC_INLINE float log1p_01(float e) { return __builtin_log1pf(e); }
KC_INLINE float pow(float x, float y) { return __builtin_powf(x, y); }
KC_INLINE float sin(float x) { return __builtin_sinf(x); }
KC_INLINE float cos(float x) { return __builtin_cosf(x); }
/* 1 / d for d in [1, 2] (sigmoid's denominator): on the GPU the hardware's approximate
 * reciprocal, within 2 ulp there, instead of IEEE division's range fix-ups */
KC_INLINE float recip_1_2(float d) {
#ifdef __CUDA_ARCH__
  return __fdividef(1.0f, d);
#else
  return 1.0f / d;
#endif
}
#else
KC_INLINE float recip_1_2(float d) { return 1.0f / d; }
KC_INLINE float log1p_01(float e) { return vm::log1p_01(e); }
KC_INLINE float pow(float x, float y) { return vm::pow(x, y); }
KC_INLINE float sin(float x) { return vm::sin(x); }
KC_INLINE float cos(float x) { return vm::cos(x); }
/* sin and cos in elementwise loops (elementwise.j2): FAST = 1 leaves out the reduction of
 * arguments of 2^24 or more (vm::sincos_fast) and sets `huge` when it meets one; the loop then
 * runs again with FAST = 0. float64 through libm either way. */
template <int FAST> KC_INLINE float sin_loop(float x, int &huge) {
  if constexpr (FAST) return vm::sincos_fast(x, 0, huge);
  return vm::sin(x);
}
template <int FAST> KC_INLINE float cos_loop(float x, int &huge) {
  if constexpr (FAST) return vm::sincos_fast(x, 1, huge);
  return vm::cos(x);
}
template <int FAST> KC_INLINE double sin_loop(double x, int &) { return __builtin_sin(x); }
template <int FAST> KC_INLINE double cos_loop(double x, int &) { return __builtin_cos(x); }
KC_INLINE float exp(float x) { return vm::exp(x); }
KC_INLINE float log(float x) { return vm::log(x); }
KC_INLINE float tanh(float x) { return vm::tanh(x); }
KC_INLINE float expm1(float x) {
  float p = 2.48015873e-5f;  // x + x^2 (1/2! + x/3! + ... + x^6/8!), |x| < 0.5
  p = p * x + 1.98412698e-4f;
  p = p * x + 1.38888889e-3f;
  p = p * x + 8.33333333e-3f;
  p = p * x + 4.16666667e-2f;
  p = p * x + 1.66666667e-1f;
  p = p * x + 0.5f;
  const float near0 = x == 0.0f ? x : x + x * x * p;  // (keeps -0)
  return __builtin_fabsf(x) < 0.5f ? near0 : vm::exp(x) - 1.0f;
}
/* e^x for x <= 0 or NaN (the exponentials of sigmoid and softplus, of -|x|): float32 through
 * the shorter exp_neg (results under e^-86 = 4.5e-38 flush to 0); NaN is passed on by the
 * callers' selects */
KC_INLINE float exp_nonpos(float x) { return vm::exp_neg(x); }
#endif
KC_INLINE double exp_nonpos(double x) { return __builtin_exp(x); }
KC_INLINE double recip_1_2(double d) { return 1.0 / d; }
KC_INLINE double log1p_01(double e) { return __builtin_log1p(e); }
KC_INLINE double pow(double x, double y) { return __builtin_pow(x, y); }
KC_INLINE double sin(double x) { return __builtin_sin(x); }
KC_INLINE double cos(double x) { return __builtin_cos(x); }
KC_INLINE double exp(double x) { return __builtin_exp(x); }
KC_INLINE double log(double x) { return __builtin_log(x); }
KC_INLINE double tanh(double x) { return __builtin_tanh(x); }
KC_INLINE double expm1(double x) { return __builtin_expm1(x); }

#define KC_FLOAT_FNS(T, S)                                                                        \
  KC_INLINE T sqrt(T x) { return __builtin_sqrt##S(x); }                                          \
  KC_INLINE T rint(T x) { return __builtin_rint##S(x); }                                          \
  KC_INLINE T floor(T x) { return __builtin_floor##S(x); }                                        \
  KC_INLINE T fabs(T x) { return __builtin_fabs##S(x); }                                          \
  KC_INLINE T fmod(T x, T y) { return __builtin_fmod##S(x, y); }                                  \
  KC_INLINE T copysign(T x, T y) { return __builtin_copysign##S(x, y); }                          \
  KC_INLINE T inf(T) { return __builtin_inf##S(); }                                               \
  KC_INLINE bool isfinite_(T x) { return __builtin_isfinite(x); }                                 \
  KC_INLINE T abs(T x) { return __builtin_fabs##S(x); }                                           \
  KC_INLINE T sign(T x) { return x > 0 ? (T)1 : x < 0 ? (T)-1 : x == 0 ? (T)0 : x; }              \
  KC_INLINE T maximum(T a, T b) { return (a >= b || isnan_(a)) ? a : b; }                         \
  KC_INLINE T minimum(T a, T b) { return (a <= b || isnan_(a)) ? a : b; }                         \
  KC_INLINE T square(T x) { return x * x; }                                                       \
  KC_INLINE T div(T a, T b) { return a / b; }                                                     \
  /* one exp of -|x| and one division, then a select: branch-free, so loops vectorise */      \
  KC_INLINE T sigmoid(T x) {                                                                      \
    const T e = exp_nonpos(-fabs(x));                                                             \
    const T r = recip_1_2((T)1 + e);                                                              \
    const T y = x >= 0 ? r : e * r;                                                               \
    return x != x ? x : y;                                                                        \
  }                                                                                               \
  KC_INLINE T hard_sigmoid(T x) {                                                                 \
    T y = (T)0.2 * x + (T)0.5;                                                                    \
    return y < 0 ? (T)0 : y > 1 ? (T)1 : y;                                                       \
  }                                                                                               \
  KC_INLINE T softplus(T x) { return maximum(x, (T)0) + log1p_01(exp_nonpos(-fabs(x))); }         \
  KC_INLINE T softsign(T x) { return x / ((T)1 + fabs(x)); }                                      \
  KC_INLINE T elu(T x, T alpha) { return x > 0 ? x : alpha * expm1(x); }                          \
  /* Keras 2.3.1 relu(x, alpha, max_value, threshold), step by step */                            \
  KC_INLINE T relu(T x, T alpha, T maxv, T thr, bool has_max) {                                   \
    T y = thr != 0 ? x * (T)(x > thr) : maximum(x, (T)0);                                         \
    if (has_max) y = minimum(maximum(y, (T)0), maxv);                                             \
    if (alpha != 0) y = y - alpha * maximum(-x + thr, (T)0);                                      \
    return y;                                                                                     \
  }                                                                                               \
  /* numpy's divmod: floor division and modulo that agree with Python for floats */               \
  KC_INLINE T floordiv(T a, T b) {                                                                \
    if (b == 0) return a / b;                                                                     \
    T mod = fmod(a, b);                                                                           \
    T d = (a - mod) / b;                                                                          \
    if (mod != 0 && ((b < 0) != (mod < 0))) d -= (T)1;                                            \
    if (d == 0) return copysign((T)0, a / b);                                                     \
    T f = floor(d);                                                                               \
    if (d - f > (T)0.5) f += (T)1;                                                                \
    return f;                                                                                     \
  }                                                                                               \
  KC_INLINE T mod(T a, T b) {                                                                     \
    if (b == 0) return fmod(a, b);                                                                \
    T m = fmod(a, b);                                                                             \
    if (m != 0) {                                                                                 \
      if ((b < 0) != (m < 0)) m += b;                                                             \
    } else {                                                                                      \
      m = copysign((T)0, b);                                                                      \
    }                                                                                             \
    return m;                                                                                     \
  }

KC_FLOAT_FNS(float, f)
KC_FLOAT_FNS(double, )
#undef KC_FLOAT_FNS

/* ---- integer helpers (S signed, U its unsigned twin) -------------------------------------- */

#define KC_INT_FNS(S, U, SIGNED)                                                                  \
  KC_INLINE S abs(S x) { return SIGNED && x < 0 ? (S)((U)0 - (U)x) : x; }                         \
  KC_INLINE S sign(S x) { return x > 0 ? (S)1 : (SIGNED && x < 0) ? (S)-1 : (S)0; }              \
  KC_INLINE S maximum(S a, S b) { return a >= b ? a : b; }                                        \
  KC_INLINE S minimum(S a, S b) { return a <= b ? a : b; }                                        \
  KC_INLINE S square(S x) { return (S)((U)x * (U)x); }                                            \
  KC_INLINE S rint(S x) { return x; }                                                             \
  KC_INLINE S floordiv(S a, S b) {                                                                \
    if (b == 0) return 0;                                                                         \
    if (SIGNED && b == (S)-1) return (S)((U)0 - (U)a);                                            \
    S q = (S)(a / b);                                                                             \
    if (SIGNED && (a % b != 0) && ((a < 0) != (b < 0))) q = (S)(q - 1);                           \
    return q;                                                                                     \
  }                                                                                               \
  KC_INLINE S mod(S a, S b) {                                                                     \
    if (b == 0 || (SIGNED && b == (S)-1)) return 0;                                               \
    S r = (S)(a % b);                                                                             \
    if (SIGNED && r != 0 && ((r < 0) != (b < 0))) r = (S)(r + b);                                 \
    return r;                                                                                     \
  }                                                                                               \
  /* integer power; a negative exponent gives the truncated value of 1 / a**-e */                 \
  KC_INLINE S pow(S a, S e) {                                                                     \
    if (SIGNED && e < 0) return a == 1 ? (S)1 : a == (S)-1 ? ((e & 1) ? (S)-1 : (S)1) : (S)0;     \
    U r = 1, b = (U)a;                                                                            \
    U n = (U)e;                                                                                   \
    while (n) {                                                                                   \
      if (n & 1) r *= b;                                                                          \
      b *= b;                                                                                     \
      n >>= 1;                                                                                    \
    }                                                                                             \
    return (S)r;                                                                                  \
  }

KC_INT_FNS(int8_t, uint8_t, 1)
KC_INT_FNS(int16_t, uint16_t, 1)
KC_INT_FNS(int32_t, uint32_t, 1)
KC_INT_FNS(int64_t, uint64_t, 1)
KC_INT_FNS(uint8_t, uint8_t, 0)
KC_INT_FNS(uint16_t, uint16_t, 0)
KC_INT_FNS(uint32_t, uint32_t, 0)
KC_INT_FNS(uint64_t, uint64_t, 0)
#undef KC_INT_FNS

KC_INLINE bool maximum(bool a, bool b) { return a || b; }
KC_INLINE bool minimum(bool a, bool b) { return a && b; }

} /* namespace kc */

#endif /* KCOMP_RT_H */
