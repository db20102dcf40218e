// Compiled once per toolchain to prove the generated-code headers and flags work.
#include "kcomp/reduce.h"

extern "C" KC_EXPORT uint32_t kc_abi_version(void) { return KC_ABI_VERSION; }
extern "C" KC_EXPORT double kcomp_probe(const float *x, int64_t n) {
  kc::red::Sum<float, float>::A acc = 0;
  for (int64_t i = 0; i < n; ++i) acc = kc::red::Sum<float, float>::step(acc, kc::exp(x[i]));
  return acc;
}
