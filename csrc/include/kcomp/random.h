/* kcomp generated-code support: counter-based random numbers (Philox4x32-10).
 *
 * Element i of a random tensor is a pure function of (seed, call number, i): any thread can
 * generate any element, results do not depend on the thread count, and a seed reproduces a
 * stream exactly. The numpy twin is kcomp/ir/ops/random.py; the two produce the same bits.
 */
#ifndef KCOMP_RANDOM_H
#define KCOMP_RANDOM_H

#include "rt.h"

namespace kc {
namespace rng {

struct Bits {
  uint32_t w[4];
};

/* Philox4x32 with 10 rounds (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3"). */
KC_INLINE Bits philox(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
  for (int r = 0; r < 10; ++r) {
    const uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
    const uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
    c0 = n0;
    c1 = (uint32_t)p1;
    c2 = n2;
    c3 = (uint32_t)p0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  Bits b = {{c0, c1, c2, c3}};
  return b;
}

/* The 128 random bits of element i, attempt `stream`, of call `call` of a node seeded `seed`. */
KC_INLINE Bits draw(uint64_t seed, uint64_t call, int64_t i, uint32_t stream) {
  return philox((uint32_t)i, (uint32_t)((uint64_t)i >> 32), (uint32_t)call, stream ^ (uint32_t)(call >> 32),
                (uint32_t)seed, (uint32_t)(seed >> 32));
}

/* Uniform in [0, 1) with 53 bits, and in (0, 1] (for logarithms). */
KC_INLINE double unit(uint32_t a, uint32_t b) {
  return (double)(((uint64_t)a << 21) ^ (b >> 11)) * 0x1p-53;
}
KC_INLINE double unit_open0(uint32_t a, uint32_t b) {
  return (double)((((uint64_t)a << 21) ^ (b >> 11)) + 1) * 0x1p-53;
}

/* Uniform in [0, 1): 24 bits for float data (so that it stays below 1 in float), 53 for double. */
KC_INLINE float uniform(uint64_t seed, uint64_t call, int64_t i, float) {
  return (float)(draw(seed, call, i, 0).w[0] >> 8) * 0x1p-24f;
}
KC_INLINE double uniform(uint64_t seed, uint64_t call, int64_t i, double) {
  const Bits b = draw(seed, call, i, 0);
  return unit(b.w[0], b.w[1]);
}

/* A standard normal by Box-Muller from one draw. */
KC_INLINE double normal_from(const Bits &b) {
  const double r = __builtin_sqrt(-2.0 * __builtin_log(unit_open0(b.w[0], b.w[1])));
  return r * __builtin_cos(6.283185307179586 * unit(b.w[2], b.w[3]));
}
KC_INLINE double normal(uint64_t seed, uint64_t call, int64_t i) { return normal_from(draw(seed, call, i, 0)); }

/* A standard normal truncated to [-2, 2]: draws beyond are re-drawn (TensorFlow's rule). */
KC_INLINE double truncated_normal(uint64_t seed, uint64_t call, int64_t i) {
  for (uint32_t s = 0; s < 64; ++s) {
    const double z = normal_from(draw(seed, call, i, s));
    if (z >= -2.0 && z <= 2.0) return z;
  }
  return 0.0; /* 64 rejections in a row: probability below 1e-85 */
}

} /* namespace rng */
} /* namespace kc */

#endif /* KCOMP_RANDOM_H */
