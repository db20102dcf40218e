// The CUDA kernel library's services: errors, device memory, copies, device queries, and the
// kc_cuda_api table that generated CUDA code receives. The kernels are in gemm.cu, reduce.cu
// and rnn.cu.
#include <stdio.h>
#include <string.h>

#include <atomic>

#include "common.cuh"

namespace kcc {

static thread_local char g_error[KC_ERROR_CAP];

int32_t set_error(int32_t status, const char *msg) {
  snprintf(g_error, sizeof g_error, "%s", msg);
  return status;
}

int32_t cuda_error(const char *what, cudaError_t err) {
  snprintf(g_error, sizeof g_error, "%s: %s (%s)", what, cudaGetErrorString(err),
           cudaGetErrorName(err));
  return err == cudaErrorMemoryAllocation ? KC_ENOMEM : KC_EINTERNAL;
}

// Device memory comes from the device's default stream-ordered pool, told to keep what is
// freed (release threshold: no limit), so a function's scratch and output blocks are recycled
// without cudaMalloc's synchronizing cost.
static bool pool_ready() {
  static const bool ok = [] {
    int dev = 0;
    cudaMemPool_t pool;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetDefaultMemPool(&pool, dev) != cudaSuccess)
      return false;
    uint64_t keep = ~0ull;
    return cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep) == cudaSuccess;
  }();
  return ok;
}

}  // namespace kcc

using namespace kcc;

extern "C" {

KC_EXPORT const char *kc_cuda_last_error(void) { return g_error; }

KC_EXPORT void *kc_cuda_malloc(size_t bytes) {
  if (!pool_ready()) {
    set_error(KC_EINTERNAL, "kc_cuda_malloc: no usable CUDA device");
    return nullptr;
  }
  void *p = nullptr;
  const cudaError_t e = cudaMallocAsync(&p, bytes ? bytes : 1, cudaStreamLegacy);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error state
    cuda_error("kc_cuda_malloc", e);
    return nullptr;
  }
  return p;
}

KC_EXPORT void kc_cuda_free(void *ptr) {
  if (ptr) cudaFreeAsync(ptr, cudaStreamLegacy);
}

KC_EXPORT int32_t kc_cuda_memcpy(void *dst, const void *src, size_t bytes, int32_t kind) {
  if (bytes == 0) return KC_OK;
  if (!dst || !src) return set_error(KC_EINVAL, "kc_cuda_memcpy: null pointer");
  const cudaMemcpyKind k = kind == 1 ? cudaMemcpyHostToDevice : kind == 2 ? cudaMemcpyDeviceToHost
                         : kind == 3 ? cudaMemcpyDeviceToDevice : cudaMemcpyDefault;
  if (kind < 1 || kind > 3) return set_error(KC_EINVAL, "kc_cuda_memcpy: kind must be 1, 2 or 3");
  // on the legacy default stream: ordered after every kernel queued there; a copy to the host
  // returns once the data is there
  const cudaError_t e = cudaMemcpy(dst, src, bytes, k);
  return e == cudaSuccess ? KC_OK : cuda_error("kc_cuda_memcpy", e);
}

KC_EXPORT int32_t kc_cuda_memset(void *dst, int32_t value, size_t bytes) {
  if (bytes == 0) return KC_OK;
  const cudaError_t e = cudaMemsetAsync(dst, value, bytes, cudaStreamLegacy);
  return e == cudaSuccess ? KC_OK : cuda_error("kc_cuda_memset", e);
}

KC_EXPORT int32_t kc_cuda_synchronize(void) {
  const cudaError_t e = cudaDeviceSynchronize();
  return e == cudaSuccess ? KC_OK : cuda_error("a CUDA kernel failed", e);
}

KC_EXPORT int32_t kc_cuda_device_count(void) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

KC_EXPORT int32_t kc_cuda_device_info(int32_t *major, int32_t *minor, int32_t *sms,
                                      int64_t *global_bytes, char *name, int32_t name_cap) {
  int dev = 0;
  cudaDeviceProp p;
  cudaError_t e = cudaGetDevice(&dev);
  if (e == cudaSuccess) e = cudaGetDeviceProperties(&p, dev);
  if (e != cudaSuccess) return cuda_error("kc_cuda_device_info", e);
  *major = p.major;
  *minor = p.minor;
  *sms = p.multiProcessorCount;
  *global_bytes = (int64_t)p.totalGlobalMem;
  if (name && name_cap > 0) snprintf(name, (size_t)name_cap, "%s", p.name);
  return KC_OK;
}

static std::atomic<kc_print_fn> g_print{nullptr};

KC_EXPORT void kc_cuda_set_print(kc_print_fn fn) { g_print.store(fn); }

static void print_hook(const char *message, const kc_tensor *tensor) {
  const kc_print_fn fn = g_print.load();
  if (fn) fn(message, tensor);
}

KC_EXPORT const kc_cuda_api *kc_cuda_get_api(void) {
  static const kc_cuda_api api = {KC_CUDA_ABI_VERSION, (uint32_t)sizeof(kc_cuda_api),
                                  kc_cuda_malloc, kc_cuda_free, kc_cuda_gemm, kc_cuda_reduce,
                                  kc_cuda_softmax, kc_cuda_rnn, kc_cuda_last_error, print_hook,
                                  kc_cuda_conv};
  return &api;
}

}  // extern "C"
