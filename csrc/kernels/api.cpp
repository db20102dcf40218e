// The kernel library's public face: the kc_api table handed to generated code, plus CPU dispatch.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "kernels.h"

namespace kcomp {
namespace {

Isa detect_isa() {
  // KCOMP_ISA forces a lower path (tests use it to cover the fallbacks on any machine).
  const char *forced = std::getenv("KCOMP_ISA");
  Isa best = Isa::generic;
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = Isa::avx2;
  if (__builtin_cpu_supports("avx512f")) best = Isa::avx512;
#endif
  if (forced) {
    if (!std::strcmp(forced, "generic")) return Isa::generic;
    if (!std::strcmp(forced, "avx2") && best >= Isa::avx2) return Isa::avx2;
  }
  return best;
}

/* Scratch memory. A compiled function allocates its scratch arena at every call; large blocks
 * come from fresh mmaps whose pages fault in on first touch and are unmapped again on free,
 * which cost an LSTM training step a fifth of its time. Freed blocks therefore stay in a small
 * cache of the freeing thread (a call allocates and frees on its own thread) and the next
 * request that fits reuses one, pages already mapped. Each block carries its capacity in a
 * 64-byte header in front of the pointer handed out. */
constexpr size_t kHeader = 64;
constexpr int kCachedBlocks = 8;
constexpr size_t kCachedBytes = size_t(256) << 20;  // per thread; larger blocks are freed

struct BlockCache {
  void *block[kCachedBlocks] = {};  // header addresses
  size_t total = 0;
  void drop(int i) {
    total -= *static_cast<size_t *>(block[i]);
    std::free(block[i]);
    block[i] = nullptr;
  }
  ~BlockCache() {
    for (int i = 0; i < kCachedBlocks; ++i)
      if (block[i]) drop(i);
  }
};
thread_local BlockCache t_cache;

size_t &capacity(void *header) { return *static_cast<size_t *>(header); }

void *aligned_alloc64(size_t bytes) {
  if (bytes > SIZE_MAX - kHeader - 63) return nullptr;
  const size_t need = (bytes + 63) & ~size_t(63);
  BlockCache &c = t_cache;
  int best = -1;  // the smallest cached block that fits
  for (int i = 0; i < kCachedBlocks; ++i)
    if (c.block[i] && capacity(c.block[i]) >= need &&
        (best < 0 || capacity(c.block[i]) < capacity(c.block[best])))
      best = i;
  if (best >= 0) {
    void *h = c.block[best];
    c.block[best] = nullptr;
    c.total -= capacity(h);
    return static_cast<char *>(h) + kHeader;
  }
  void *h = std::aligned_alloc(64, kHeader + need);
  if (!h) return nullptr;
  capacity(h) = need;
  return static_cast<char *>(h) + kHeader;
}

void free_(void *p) {
  if (!p) return;
  void *h = static_cast<char *>(p) - kHeader;
  BlockCache &c = t_cache;
  const size_t size = capacity(h);
  if (size > kCachedBytes) return std::free(h);
  // room: the largest blocks go while the cache would exceed its bytes, then the smallest
  // one if every slot is taken (this block is more likely to fit the next request)
  for (;;) {
    int big = -1, small = -1, empty = -1;
    for (int i = 0; i < kCachedBlocks; ++i) {
      if (!c.block[i]) { empty = i; continue; }
      if (big < 0 || capacity(c.block[i]) > capacity(c.block[big])) big = i;
      if (small < 0 || capacity(c.block[i]) < capacity(c.block[small])) small = i;
    }
    if (c.total + size > kCachedBytes) {
      c.drop(big);
    } else if (empty >= 0) {
      c.block[empty] = h;
      c.total += size;
      return;
    } else if (capacity(c.block[small]) < size) {
      c.drop(small);
    } else {
      return std::free(h);
    }
  }
}

// Without Python (an ahead-of-time artifact): message, shape and the first values, on stderr.
void print_stderr(const char *message, const kc_tensor *t) {
  int64_t n = 1;
  std::fprintf(stderr, "%s shape=(", message);
  for (int32_t i = 0; i < t->rank; ++i) {
    std::fprintf(stderr, i ? ", %lld" : "%lld", static_cast<long long>(t->shape[i]));
    n *= t->shape[i];
  }
  std::fprintf(stderr, ") [");
  for (int64_t i = 0; i < n && i < 16; ++i) {
    double v = 0;
    switch (t->dtype) {
      case KC_FLOAT32: v = static_cast<const float *>(t->data)[i]; break;
      case KC_FLOAT64: v = static_cast<const double *>(t->data)[i]; break;
      case KC_INT32: v = static_cast<const int32_t *>(t->data)[i]; break;
      case KC_INT64: v = static_cast<double>(static_cast<const int64_t *>(t->data)[i]); break;
      default: std::fprintf(stderr, "%s?", i ? " " : ""); continue;
    }
    std::fprintf(stderr, i ? " %g" : "%g", v);
  }
  std::fprintf(stderr, n > 16 ? " ...]\n" : "]\n");
}

}  // namespace

Isa active_isa() {
  static const Isa isa = detect_isa();
  return isa;
}

const char *isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "generic";
  }
}

// Each entry dispatches to the active instruction set's build (packed layouts differ by ISA).
#if defined(__x86_64__)
#define KC_DISPATCH(call)                       \
  switch (active_isa()) {                       \
    case Isa::avx512: return avx512::call;      \
    case Isa::avx2: return avx2::call;          \
    default: return generic::call;              \
  }
#else
#define KC_DISPATCH(call) return generic::call;
#endif

int32_t gemm(const kc_gemm_args *args) { KC_DISPATCH(gemm(args)) }
int64_t gemm_packed_size(const kc_gemm_args *args) { KC_DISPATCH(gemm_packed_size(args)) }
int32_t gemm_pack(const kc_gemm_args *args, void *packed) { KC_DISPATCH(gemm_pack(args, packed)) }
int32_t gemm_ex(const kc_gemm_args *args, const void *packed, kc_epilogue_fn epi, void *ctx) {
  KC_DISPATCH(gemm_ex(args, packed, epi, ctx))
}
int32_t lstm(const kc_lstm_args *args) { KC_DISPATCH(lstm(args)) }
int32_t gemm_packing(const kc_gemm_args *args) { KC_DISPATCH(gemm_packing(args)) }
#undef KC_DISPATCH

}  // namespace kcomp

extern "C" {

KC_EXPORT const kc_api *kcomp_kernels_api(void) {
  static const kc_api api = {
      KC_ABI_VERSION, sizeof(kc_api), kcomp::num_threads, kcomp::parallel_for,
      kcomp::aligned_alloc64, kcomp::free_, kcomp::gemm, kcomp::print_stderr,
      kcomp::gemm_packed_size, kcomp::gemm_pack, kcomp::gemm_ex, kcomp::lstm,
      kcomp::pack_cached, kcomp::pack_release, kcomp::weights_written, kcomp::pack_cached_with,
  };
  return &api;
}

KC_EXPORT const char *kcomp_kernels_isa(void) { return kcomp::isa_name(kcomp::active_isa()); }

}
