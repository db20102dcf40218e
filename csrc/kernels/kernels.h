// Internal interface of the kernel library (libkcomp_kernels): what api.cpp puts in the kc_api table.
#ifndef KCOMP_KERNELS_H
#define KCOMP_KERNELS_H

#include "kcomp/abi.h"

namespace kcomp {

int32_t num_threads();
void parallel_for(int64_t n, int64_t grain, kc_task_fn fn, void *ctx);

// GEMM, one implementation per instruction set; gemm() dispatches on the CPU found at run time.
enum class Isa { generic = 0, avx2 = 1, avx512 = 2 };
Isa active_isa();
const char *isa_name(Isa isa);
int32_t gemm(const kc_gemm_args *args);

namespace generic { int32_t gemm(const kc_gemm_args *args); }
namespace avx2 { int32_t gemm(const kc_gemm_args *args); }
namespace avx512 { int32_t gemm(const kc_gemm_args *args); }

}  // namespace kcomp

#endif
