// Shared by the CUDA kernel library's translation units: error reporting, launch checks and
// async copies into shared memory.
#pragma once

#include <cuda_runtime.h>
#include <stdint.h>

#include "kcomp/cuda_api.h"

namespace kcc {

// Records this thread's error message (read back through kc_cuda_last_error) and returns status.
int32_t set_error(int32_t status, const char *msg);
// As set_error, with a CUDA error's name appended ("<what>: <cudaGetErrorString(err)>").
int32_t cuda_error(const char *what, cudaError_t err);

inline cudaStream_t as_stream(void *s) { return static_cast<cudaStream_t>(s); }

// After a launch: a launch error becomes KC_EINTERNAL with the kernel's name.
inline int32_t check_launch(const char *what) {
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? KC_OK : cuda_error(what, e);
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Async copies into shared memory (sm_80+), for the kernels' pipelines.
__device__ __forceinline__ uint32_t smem_u32(const void *p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
// 16-byte async copy; bytes past src_bytes (0..16) are zero-filled and not read.
__device__ __forceinline__ void cp_async16(void *dst, const void *src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src),
               "r"(src_bytes)
               : "memory");
}
__device__ __forceinline__ void cp_async16(void *dst, const void *src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_u32(dst)), "l"(src)
               : "memory");
}

}  // namespace kcc
