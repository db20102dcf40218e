/* kcomp generated-code support: float32 exp, log, tanh, pow, sin and cos that compilers vectorize.
 *
 * libm's expf and friends are calls the vectorizer cannot inline, so a loop calling them runs one
 * element at a time. These are branch-free (selects, not jumps), use only arithmetic, rint and
 * bit casts (and, for sin and cos of huge arguments, a table), and so vectorize to AVX-512 /
 * AVX2 / SSE. Accuracy against double-precision libm (tests/test_vmath.py sweeps each domain):
 * exp within 1 ulp, log and tanh within 2, softplus's log1p_01 3, pow 1 (0.53 measured), sin and
 * cos 2 (1.6 measured, huge arguments included); NaN, infinities, zeros, subnormal results and
 * overflow behave like libm.
 */
#ifndef KCOMP_VMATH_H
#define KCOMP_VMATH_H

#include <stdint.h>

/* The host-and-device helpers below (tanh's polynomial) are shared with generated CUDA. */
#ifdef __CUDACC__
#define KC_VM_HD static __host__ __device__ __forceinline__
#else
#define KC_VM_HD static inline __attribute__((always_inline))
#endif

namespace kc {
namespace vm {

/* x's bits as a To (same size) */
template <class To, class From> static inline __attribute__((always_inline)) To bit_cast(From x) {
  static_assert(sizeof(To) == sizeof(From), "same size");
  To t;
  __builtin_memcpy(&t, &x, sizeof t);
  return t;
}
static inline __attribute__((always_inline)) uint32_t bits(float x) {
  return bit_cast<uint32_t>(x);
}
static inline __attribute__((always_inline)) float from_bits(uint32_t u) {
  return bit_cast<float>(u);
}

/* p * 2^n for integer-valued n in [-150, 128], in two steps so that results near the overflow
 * and subnormal limits come out right. */
static inline __attribute__((always_inline)) float scale(float p, float n) {
  const int32_t ni = (int32_t)n, a = ni >> 1, b = ni - a;
  return (p * from_bits((uint32_t)(a + 127) << 23)) * from_bits((uint32_t)(b + 127) << 23);
}

/* e^x: x = n ln2 + r with |r| <= ln2/2, e^r by a degree-6 minimax polynomial. */
static inline __attribute__((always_inline)) float exp(float x) {
  const float xc = x > 88.8f ? 88.8f : (x < -104.0f ? -104.0f : x);
  const float n = __builtin_rintf(xc * 1.44269504088896341f);
  const float r = (xc - n * 0.693145751953125f) - n * 1.42860682030941723212e-6f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = (p * r) * r + r + 1.0f;
  const float y = scale(p, n);
  return x != x ? x : (x > 88.8f ? __builtin_inff() : (x < -104.0f ? 0.0f : y));
}

/* a * b + c, fused where the target has FMA (one rounding), else two roundings: without FMA
 * hardware __builtin_fmaf would be a libm call that blocks vectorisation. */
static inline __attribute__((always_inline)) float fma_(float a, float b, float c) {
#if defined(__FMA__) || defined(__aarch64__)
  return __builtin_fmaf(a, b, c);
#else
  return a * b + c;
#endif
}

/* e^x for x <= 0 (-inf included; no NaN): the shifted exponentials of softmax and logsumexp,
 * x - max. The reduction and polynomial of exp() with fused multiply-adds, n rounded by the
 * 1.5 * 2^23 trick (n comes out of the float's bits), 2^n put straight into the exponent field,
 * and no special cases but one: below -86 (where 2^n would leave the normal range) the result
 * is 0, so values under e^-86 = 4.5e-38 flush to zero. Otherwise within 1 ulp, like exp; about
 * half of exp's instructions. */
static inline __attribute__((always_inline)) float exp_neg(float x) {
  const float t = fma_(x, 1.44269504088896341f, 12582912.0f); /* 1.5 * 2^23 + n */
  const float n = t - 12582912.0f;
  const float r = fma_(n, -1.42860682030941723212e-6f, fma_(n, -0.693145751953125f, x));
  float p = 1.9875691500e-4f;
  p = fma_(p, r, 1.3981999507e-3f);
  p = fma_(p, r, 8.3334519073e-3f);
  p = fma_(p, r, 4.1665795894e-2f);
  p = fma_(p, r, 1.6666665459e-1f);
  p = fma_(p, r, 5.0000001201e-1f);
  p = fma_(p * r, r, r) + 1.0f;
  const float y = from_bits(bits(p) + ((bits(t) - 0x4b400000u) << 23));
  return x > -86.0f ? y : 0.0f;
}

/* ln of the positive normal float with bits u, times 2^e_adj: u = m 2^e with m in
 * [sqrt(1/2), sqrt(2)), ln m by the odd series in s = (m-1)/(m+1). */
static inline __attribute__((always_inline)) float log_bits(uint32_t u, int32_t e_adj) {
  const int32_t big = (u & 0x007fffffu) > 0x003504f3u; /* mantissa above sqrt(2) */
  /* m in [sqrt(1/2), sqrt(2)): the exponent field of 1 or, above sqrt(2), of 1/2 */
  const float m = from_bits((u & 0x007fffffu) | (uint32_t)(0x3f800000 - (big << 23)));
  const float ef = (float)((int32_t)((u >> 23) & 0xff) - 127 + big + e_adj);
  const float s = (m - 1.0f) / (m + 1.0f), z = s * s;
  float p = 0.1453744143f; /* 2 * (1/3 + z/5 + z^2/7 + ...) fitted on the interval */
  p = p * z + 0.1811892986f;
  p = p * z + 0.2222222089f;
  p = p * z + 0.2857142925f;
  p = p * z + 0.4000000059f;
  p = p * z + 0.6666666865f;
  const float lnm = s * 2.0f + s * z * p;
  return ef * 0.693145751953125f + (lnm + ef * 1.42860682030941723212e-6f);
}

/* ln x (within 2 ulp); subnormals scaled by 2^23 first. */
static inline __attribute__((always_inline)) float log(float x) {
  const int32_t sub = x < 1.17549435e-38f;
  const float y = log_bits(bits(x * (sub ? 8388608.0f : 1.0f)), -23 * sub);
  /* special cases as plain selects, one after another (nested ?: and && keep GCC from
   * vectorizing): NaN and +inf give themselves, 0 gives -inf, negatives NaN */
  float r = (x > 0.0f) ? y : x;
  r = (x == __builtin_inff()) ? x : r;
  r = (x == 0.0f) ? -__builtin_inff() : r;
  return (x < 0.0f) ? __builtin_nanf("") : r;
}

/* ln(1 + e) for e in [0, 1] (softplus's log1p(e^-|x|)), within 3 ulp and without Kahan's
 * division: ln u of u = 1 + e, plus u's rounding error c = e - (u - 1) (exact) over u, taken as
 * c (1 - d + d^2) with d = u - 1: that is exact where c matters (u near 1) and at most 0.7 ulp
 * off at u = 2. */
static inline __attribute__((always_inline)) float log1p_01(float e) {
  const float u = 1.0f + e, d = u - 1.0f, c = e - d;
  return log_bits(bits(u), 0) + c * (1.0f - d + d * d);
}

/* tanh x: an odd polynomial near 0, (1 - e) / (1 + e) with e = e^{-2|x|} beyond (no
 * cancellation there: e <= 0.29), the sign put back; NaN gives NaN. */
/* tanh x for |x| < 0.625 by its odd polynomial (tanh(-0) = -0); also generated CUDA's */
KC_VM_HD float tanh_near0(float x) {
  const float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z + -5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z + -3.33332819422e-1f;
  return __builtin_copysignf(x + x * z * p, x);
}
static inline __attribute__((always_inline)) float tanh(float x) {
  const float a = __builtin_fabsf(x);
  const float small = tanh_near0(x);
  const float e = exp_neg(-2.0f * a);
  const float large = __builtin_copysignf((1.0f - e) / (1.0f + e), x);
  const float r = a < 0.625f ? small : large;
  return x != x ? x : r;
}

/* a b + c, in one rounding where the ISA fuses it (pow's double Horner steps: a loop of pow over
 * 1M floats, one thread, AVX-512: 1960 -> 1600 us) */
static inline __attribute__((always_inline)) double fma_or(double a, double b, double c) {
#ifdef __FMA__
  return __builtin_fma(a, b, c);
#else
  return a * b + c;
#endif
}
/* x^y for float32, as C's powf (numpy's float32 power). |x|^y = 2^(y log2|x|) in double:
 * log2 by the odd series in s = (m-1)/(m+1) for |x| = m 2^e, m in [sqrt(1/2), sqrt(2)), and 2^f
 * by its Taylor series (t = y log2|x| within about 1e-10 relative), then one rounding to float
 * (subnormal and overflowing results included): within 1 ulp. C99's special cases are selects
 * after it. */
static inline __attribute__((always_inline)) float pow(float x, float y) {
  const uint64_t b = bit_cast<uint64_t>(__builtin_fabs((double)x));
  const uint64_t mant = b & 0x000fffffffffffffull;
  const int64_t big = mant > 0x6a09e667f3bcdull; /* mantissa above sqrt(2) */
  const double m = bit_cast<double>(mant | (0x3ff0000000000000ull - ((uint64_t)big << 52)));
  const double e = (double)((int64_t)(b >> 52) - 1023 + big);
  const double s = (m - 1.0) / (m + 1.0), z = s * s;
  double p = 1.0 / 11; /* ln m = 2 s (1 + z/3 + ... + z^5/11), within 6e-11 */
  p = fma_or(p, z, 1.0 / 9);
  p = fma_or(p, z, 1.0 / 7);
  p = fma_or(p, z, 1.0 / 5);
  p = fma_or(p, z, 1.0 / 3);
  p = fma_or(p, z, 1.0);
  double t = (double)y * (e + (2.0 * s * p) * 1.4426950408889634);
  t = t > 300.0 ? 300.0 : t; /* (2^300 is inf and 2^-300 is 0 as floats) */
  t = t < -300.0 ? -300.0 : t;
  t = t == t ? t : 0.0; /* NaN: fixed by the selects below */
  const double n = __builtin_rint(t), f = (t - n) * 0.6931471805599453;
  double q = 1.0 / 362880; /* e^f, |f| <= ln2 / 2: Taylor to f^9, within 8e-12 */
  q = fma_or(q, f, 1.0 / 40320);
  q = fma_or(q, f, 1.0 / 5040);
  q = fma_or(q, f, 1.0 / 720);
  q = fma_or(q, f, 1.0 / 120);
  q = fma_or(q, f, 1.0 / 24);
  q = fma_or(q, f, 1.0 / 6);
  q = fma_or(q, f, 0.5);
  q = fma_or(q, f, 1.0);
  q = fma_or(q, f, 1.0);
  const float mag = (float)(q * bit_cast<double>((uint64_t)((int64_t)n + 1023) << 52));
  /* y an integer (infinities count as even ones), and odd */
  const float half = y * 0.5f;
  const int32_t y_int = __builtin_rintf(y) == y;
  const int32_t y_odd = y_int & (__builtin_rintf(half) != half);
  const float inf = __builtin_inff(), nan = __builtin_nanf("");
  const float ax = __builtin_fabsf(x);
  const float at0 = y < 0.0f ? inf : 0.0f, atinf = y < 0.0f ? 0.0f : inf; /* 0^y, inf^y */
  float r = x == 0.0f ? at0 : mag;
  r = ax == inf ? atinf : r;
  r = y_odd ? __builtin_copysignf(r, x) : r;
  r = (x < 0.0f && ax != inf && !y_int) ? nan : r;
  r = (x == -1.0f && __builtin_fabsf(y) == inf) ? 1.0f : r;
  r = (x != x || y != y) ? nan : r;
  return (y == 0.0f || x == 1.0f) ? 1.0f : r;
}

/* Payne-Hanek reduction for float32 sin and cos of |x| >= 2^24: x = M 2^k (M the 24-bit integer
 * mantissa) and x (2/pi) mod 4 = M W(k) mod 4, W(k) = (2^k 2/pi) mod 4, kept as three doubles of
 * 29, 28 and 28 bits so that their products by M are exact. Built at compile time from 224 bits
 * of 2/pi. */
struct TwoOverPi {
  double w1[105], w2[105], w3[105];
  constexpr TwoOverPi() : w1(), w2(), w3() {
    const uint32_t b[7] = {0xa2f9836eu, 0x4e441529u, 0xfc2757d1u, 0xf534ddc0u,
                           0xdb629599u, 0x3c439041u, 0xfe5163abu};
    for (int k = 0; k < 105; ++k) {
      uint64_t c[3] = {0, 0, 0};
      for (int j = 0; j < 85; ++j) { /* bit i = k - 1 + j of 2/pi has weight 2^(1 - j) in W(k) */
        const int i = k - 1 + j;
        const uint64_t bit = i >= 1 ? (b[(i - 1) / 32] >> (31 - (i - 1) % 32)) & 1u : 0u;
        const int part = j < 29 ? 0 : (j < 57 ? 1 : 2);
        c[part] = c[part] * 2 + bit;
      }
      w1[k] = (double)c[0] / 134217728.0;                  /* 2^27 */
      w2[k] = (double)c[1] / 36028797018963968.0;          /* 2^55 */
      w3[k] = (double)c[2] / 9671406556917033397649408.0;  /* 2^83 */
    }
  }
};
static constexpr TwoOverPi two_over_pi{};

/* sin x (cosine 0) or cos x (cosine 1), float32, over the whole range: x = n pi/2 + r with
 * |r| <= pi/4 in double (below 2^24 by three 29-bit parts of pi/2, whose products by n are
 * exact; above by the table), then cephes' polynomials in float on r rounded: within 2 ulp.
 * Branch-free, so loops vectorize (the table reads are gathers). */
static inline __attribute__((always_inline)) float sincos_poly(float x, float rf, int32_t q,
                                                               int cosine) {
  const float z = rf * rf;
  float sp = -1.9515295891e-4f;
  sp = sp * z + 8.3321608736e-3f;
  sp = sp * z + -1.6666654611e-1f;
  const float sv = rf + rf * z * sp;
  float cp = 2.443315711809948e-5f;
  cp = cp * z + -1.388731625493765e-3f;
  cp = cp * z + 4.166664568298827e-2f;
  const float cv = (1.0f - 0.5f * z) + z * z * cp;
  float y = ((q + cosine) & 1) ? cv : sv;
  y = ((q + cosine) & 2) ? -y : y;
  return (cosine == 0 && x == 0.0f) ? x : y; /* sin(-0) = -0 */
}
/* n = rint(x 2/pi) and r = x - n pi/2, |x| < 2^24 (pi/2 in 29-bit parts, 3e-28 left) */
static inline __attribute__((always_inline)) double reduce_small(double xd, double &r) {
  const double nd = __builtin_rint(xd * 0.63661977236758134);
  r = xd - nd * 0x1.921fb54p+0;
  r = r - nd * 0x1.10b4612p-30;
  r = r - nd * -0x1.676733bp-60;
  return nd;
}
static inline __attribute__((always_inline)) float sincos(float x, int cosine) {
  const float ax = __builtin_fabsf(x);
  const int32_t finite = ax <= 3.40282347e38f;
  double r;
  const double nd = reduce_small(finite ? (double)x : 0.0, r);
  /* |x| >= 2^24: x (2/pi) mod 4 = n_b + f_b from the table, for |x| */
  const uint32_t bx = bits(ax);
  const int32_t big = finite & (ax >= 16777216.0f);
  const int32_t k = big ? (int32_t)(bx >> 23) - 150 : 0;
  const double mant = (double)((bx & 0x007fffffu) | 0x00800000u);
  const double p1 = mant * two_over_pi.w1[k], p2 = mant * two_over_pi.w2[k];
  const double p3 = mant * two_over_pi.w3[k];
  const double p1m = p1 - 4.0 * __builtin_floor(p1 * 0.25);
  const double nb = __builtin_rint(p1m + p2);
  const double rb = (((p1m - nb) + p2) + p3) * 1.5707963267948966;
  const double n = big ? (x < 0.0f ? -nb : nb) : nd;
  const float rf = (float)(big ? (x < 0.0f ? -rb : rb) : r);
  const float y = sincos_poly(x, rf, (int32_t)n, cosine);
  return finite ? y : __builtin_nanf("");
}
/* sincos without the table: the same result wherever |x| < 2^24 (or x is not finite), and
 * `huge` set where not (then the caller recomputes by sincos). The table's gathers cost 3.4x
 * the time of the rest: a loop of sin over 1M floats, one thread, AVX-512, 1490 -> 430 us. */
static inline __attribute__((always_inline)) float sincos_fast(float x, int cosine, int &huge) {
  const float ax = __builtin_fabsf(x);
  const int32_t small = ax < 16777216.0f;
  huge |= (ax >= 16777216.0f) & (ax <= 3.40282347e38f);
  double r;
  const double nd = reduce_small(small ? (double)x : 0.0, r);
  const float y = sincos_poly(x, (float)r, (int32_t)nd, cosine);
  return small ? y : __builtin_nanf("");
}
static inline __attribute__((always_inline)) float sin(float x) { return sincos(x, 0); }
static inline __attribute__((always_inline)) float cos(float x) { return sincos(x, 1); }

}  // namespace vm
}  // namespace kc

#endif /* KCOMP_VMATH_H */
