// Internal interface of the kernel library (libkcomp_kernels): what api.cpp puts in the kc_api table.
#ifndef KCOMP_KERNELS_H
#define KCOMP_KERNELS_H

#include "kcomp/abi.h"

namespace kcomp {

int32_t num_threads();
void parallel_for(int64_t n, int64_t grain, kc_task_fn fn, void *ctx);

// GEMM and LSTM, one implementation per instruction set (isa_<name>.cpp); the entries below
// dispatch on the CPU found at run time.
enum class Isa { generic = 0, avx2 = 1, avx512 = 2 };
Isa active_isa();
const char *isa_name(Isa isa);
int32_t gemm(const kc_gemm_args *args);
int64_t gemm_packed_size(const kc_gemm_args *args);
int32_t gemm_pack(const kc_gemm_args *args, void *packed);
int32_t gemm_ex(const kc_gemm_args *args, const void *packed, kc_epilogue_fn epi, void *ctx);
int32_t lstm(const kc_lstm_args *args);
// Which packed form gemm_pack makes for args (0: none; others differ by layout, not only size).
int32_t gemm_packing(const kc_gemm_args *args);

// Packed weights kept across calls (pack_cache.cpp; kc_api.pack_cached). cached_pack: the
// `bytes` that fill(ctx, out) packs from the src_bytes of weights at `key.src` (key.form: the
// layout and its extents, kernel by kernel), from the cache, or packed into it; null when it
// cannot be had.
struct PackKey {
  const void *src;
  int64_t form[8];
};
const void *cached_pack(const PackKey &key, int64_t src_bytes, int64_t bytes,
                        int32_t (*fill)(void *ctx, void *out), void *ctx, void **handle);
const void *pack_cached(const kc_gemm_args *args, void **handle);
const void *pack_cached_with(const void *src, int64_t src_bytes, const int64_t *form,
                             int64_t bytes, int32_t (*fill)(void *ctx, void *out), void *ctx,
                             void **handle);
void pack_release(void *handle);
void weights_written(const void *data, int64_t bytes);

#define KC_ISA_DECLS                                                    \
  int32_t gemm(const kc_gemm_args *args);                               \
  int64_t gemm_packed_size(const kc_gemm_args *args);                   \
  int32_t gemm_pack(const kc_gemm_args *args, void *packed);            \
  int32_t gemm_ex(const kc_gemm_args *args, const void *packed, kc_epilogue_fn epi, void *ctx); \
  int32_t lstm(const kc_lstm_args *args);                               \
  int32_t gemm_packing(const kc_gemm_args *args);
namespace generic { KC_ISA_DECLS }
namespace avx2 { KC_ISA_DECLS }
namespace avx512 { KC_ISA_DECLS }
#undef KC_ISA_DECLS

}  // namespace kcomp

#endif
