// The fused tanh/sigmoid chain's elementwise kernel as kcomp generated it before the vector path
// (4-byte loads, 4 a thread a grid stride apart), against 16-byte loads and other grids, on 2^28
// floats; CUDA events, median of 20 after 3 warm-ups, two rounds. bench/results/gpu.md has an
// H200's figures. On a machine with a GPU, from the repository root:
//   nvcc -std=c++17 -O3 -arch=sm_90 -I csrc/include -o /tmp/ew bench/gpu_elementwise_access.cu
//   /tmp/ew
// "max err" compares each variant with the first one of its chain in that round.
#include "kcomp/rt.h"
#include <cuda_runtime.h>
#include <cstdio>
#include <vector>
#include <algorithm>
#define CK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { printf("CUDA %s at %d\n", cudaGetErrorString(e), __LINE__); return 1; } } while (0)

template <int CH> __device__ __forceinline__ float chain(float x0) {
  if (CH == 0) return kc::tanh(x0 * 1.5f + 0.5f) * kc::sigmoid(x0) + 0.5f * x0;
  return fmaxf(x0 * 1.5f + 0.5f, 0.0f) * x0 - 0.25f;
}

// VEC floats a load, UNROLL loads a thread per iteration; grid-stride.
template <int CH, int VEC, int UNROLL>
__global__ void __launch_bounds__(256) k(const float *__restrict__ r, float *__restrict__ w, int64_t total) {
  const int64_t n = total / VEC;
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  int64_t lin = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  for (; lin + (UNROLL - 1) * step < n; lin += UNROLL * step) {
    if constexpr (VEC == 4) {
      float4 v[UNROLL];
#pragma unroll
      for (int u = 0; u < UNROLL; ++u) v[u] = reinterpret_cast<const float4 *>(r)[lin + u * step];
#pragma unroll
      for (int u = 0; u < UNROLL; ++u) {
        float4 o; o.x = chain<CH>(v[u].x); o.y = chain<CH>(v[u].y); o.z = chain<CH>(v[u].z); o.w = chain<CH>(v[u].w);
        reinterpret_cast<float4 *>(w)[lin + u * step] = o;
      }
    } else {
#pragma unroll
      for (int u = 0; u < UNROLL; ++u) w[lin + u * step] = chain<CH>(r[lin + u * step]);
    }
  }
  for (; lin < n; lin += step) {
    if constexpr (VEC == 4) {
      float4 v = reinterpret_cast<const float4 *>(r)[lin], o;
      o.x = chain<CH>(v.x); o.y = chain<CH>(v.y); o.z = chain<CH>(v.z); o.w = chain<CH>(v.w);
      reinterpret_cast<float4 *>(w)[lin] = o;
    } else {
      w[lin] = chain<CH>(r[lin]);
    }
  }
}

template <int CH, int VEC, int UNROLL>
static float run(const float *r, float *w, int64_t n, unsigned blocks, cudaEvent_t a, cudaEvent_t b) {
  std::vector<float> t;
  for (int i = 0; i < 23; ++i) {
    cudaEventRecord(a);
    k<CH, VEC, UNROLL><<<blocks, 256>>>(r, w, n);
    cudaEventRecord(b);
    cudaEventSynchronize(b);
    float ms; cudaEventElapsedTime(&ms, a, b);
    if (i >= 3) t.push_back(ms);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

int main() {
  const int64_t n = int64_t(1) << 28;
  float *x, *y; CK(cudaMalloc(&x, n * 4)); CK(cudaMalloc(&y, n * 4));
  std::vector<float> h(n);
  for (int64_t i = 0; i < n; ++i) h[i] = float((i * 2654435761u) % 100000) / 25000.0f - 2.0f;
  CK(cudaMemcpy(x, h.data(), n * 4, cudaMemcpyHostToDevice));
  cudaEvent_t a, b; cudaEventCreate(&a); cudaEventCreate(&b);
  std::vector<float> t;
  for (int i = 0; i < 13; ++i) {
    cudaEventRecord(a); cudaMemcpyAsync(y, x, n * 4, cudaMemcpyDeviceToDevice); cudaEventRecord(b);
    cudaEventSynchronize(b); float ms; cudaEventElapsedTime(&ms, a, b); if (i >= 3) t.push_back(ms);
  }
  std::sort(t.begin(), t.end());
  const float copy = t[t.size() / 2];
  printf("copy %.3f ms = %.0f GB/s\n", copy, 8.0 * n / copy / 1e6);
  int sms = 0; cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  std::vector<float> ref(n), got(n);
  auto check = [&](const char *name, float ms) {
    cudaMemcpy(got.data(), y, n * 4, cudaMemcpyDeviceToHost);
    double err = 0; for (int64_t i = 0; i < n; i += 4093) err = std::max(err, (double)fabsf(got[i] - ref[i]));
    printf("%-44s %.3f ms  %5.1f%% of copy  (max err vs first %.1e)\n", name, ms, 100.0 * copy / ms, err);
    cudaMemset(y, 0xff, n * 4);
  };
  for (int rep = 0; rep < 2; ++rep) {
#define V(CH, VEC, UN, BL, NAME) { if (VEC == 1 && UN == 4 && BL == (unsigned)(n / 1024)) cudaMemset(y, 0, n * 4); float ms = run<CH, VEC, UN>(x, y, n, BL, a, b); if (VEC == 1 && UN == 4 && BL == (unsigned)(n / 1024)) cudaMemcpy(ref.data(), y, n * 4, cudaMemcpyDeviceToHost); check(NAME, ms); }
    V(0, 1, 4, (unsigned)(n / 1024), "tanh chain: as generated (4 B x4, n/1024 blocks)")
    V(0, 4, 1, (unsigned)(n / 1024), "tanh chain: 16 B x1, n/1024 blocks")
    V(0, 4, 2, (unsigned)(n / 2048), "tanh chain: 16 B x2, n/2048 blocks")
    V(0, 4, 4, (unsigned)(n / 4096), "tanh chain: 16 B x4, n/4096 blocks")
    V(0, 1, 4, (unsigned)(sms * 8), "tanh chain: 4 B x4, 8 blocks an SM (stride)")
    V(0, 4, 2, (unsigned)(sms * 8), "tanh chain: 16 B x2, 8 blocks an SM (stride)")
    V(0, 1, 8, (unsigned)(n / 2048), "tanh chain: 4 B x8, n/2048 blocks")
    V(1, 1, 4, (unsigned)(n / 1024), "max chain: as generated")
    V(1, 4, 2, (unsigned)(n / 2048), "max chain: 16 B x2, n/2048 blocks")
  }
  CK(cudaGetLastError());
  return 0;
}
