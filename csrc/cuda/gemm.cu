// kc_cuda_gemm: strided batched C[b] = act(alpha * op(A[b]) op(B[b]) + bias) on NVIDIA GPUs
// (sm_80 and later), for float32 (exact FFMA or TF32 tensor cores), float16/bfloat16 (tensor
// cores, float32 accumulation) and float64.
//
// Kernels (one launch per call, chosen on the host):
//  * gemm_tiny:  every op(A[b]) and op(B[b]) of a group of batch items fits in shared memory
//                (m, n <= 32): one block loads a group whole and each thread computes outputs.
//                Used for all dtypes (batches of tiny matrices: 70000 x 2x3x4, 4096 x 16x16x16).
//                Such batches are bound by latency: groups are sized for ~4 blocks an SM, and
//                items stored back to back are copied as one run of 16-byte cp.async chunks,
//                all in flight at once (4096 x 16x16x16 on an H100: 28 -> 18 us).
//  * sgemm_simt: float32 exact. 128x256x32 block tiles with 8x16 a thread, or 128x128x16 with
//                8x8 (or 64x64x8 with 4x4 when big tiles would not fill the GPU; launch_simt),
//                256 threads, a 3- or 4-stage cp.async pipeline; both operands sit k-major in
//                shared memory ([k][m], [k][n]) so that a thread reads its fragments as float4s.
//                An operand whose k index is contiguous in memory is transposed on the way in by
//                4-byte copies.
//  * gemm_tc:    tensor cores through mma.sync: m16n8k8 tf32 (float32 in and out; 4 warps of
//                64x64, 4 stages) or m16n8k16 f16/bf16 (16-bit out; 8 warps of 64x32, 3 stages),
//                float32 accumulation, 128x128 block tile, cp.async pipeline. Shared memory keeps
//                each operand in its global orientation (a template parameter per operand), so
//                that copies are 16 bytes; 16-bit fragments come from ldmatrix (.trans for the
//                m/n-contiguous case), tf32 fragments from conflict-free 32-bit loads.
//  * dgemm_simple: float64, 64x64x16 tiles, 256 threads with a 4x4 tile each.
// The tiled kernels stage C through shared memory for their epilogue (alpha, bias, activation,
// conversion), so that it is written with coalesced 16-byte (8-byte for 16-bit) stores.
// Every kernel walks its (batch item, tile) work items with a grid-stride loop, so any batch
// count works with a 1-D grid. Tails are handled by zero-filled loads (cp.async with a short
// source size) and bounds-checked stores; 16-byte copies are used only when the base pointer,
// the leading dimension and the batch stride keep every chunk aligned (else element copies).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include <atomic>
#include <string>

#include "common.cuh"
#include "conv_patches.cuh"

namespace {

// ---------------------------------------------------------------------------------------------
// parameters and small device helpers

using kcconv::ConvGeom;

struct GemmParams {
  const void *a, *b, *bias;
  void *c;
  int m, n, k;
  int act;
  int64_t batch;
  int64_t lda, ldb, ldc, sa, sb, sc;
  float alpha;
  int a_kc;   // op(A)(i, p) is a[i * lda + p] (A not transposed): k contiguous
  int b_kc;   // op(B)(p, j) is b[j * ldb + p] (B transposed): k contiguous
  int vec_a;  // 16-byte chunks of A along its contiguous axis are aligned
  int vec_b;
  int vec_c;  // C's rows start on the store width of the kernel (4 floats, or 2 elements)
  ConvGeom cv;
};

using kcc::cp_async16;
using kcc::smem_u32;

__device__ __forceinline__ void cp_async4(void *dst, const void *src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(smem_u32(dst)), "l"(src)
               : "memory");
}
// 4-byte async copy; src_bytes 0 zero-fills.
__device__ __forceinline__ void cp_async4(void *dst, const void *src, int src_bytes) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_u32(dst)), "l"(src),
               "r"(src_bytes)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ float apply_act(float v, int act) {
  switch (act) {
    case KC_ACT_RELU: return v > 0.f ? v : (v == v ? 0.f : v);
    case KC_ACT_SIGMOID: return 1.f / (1.f + expf(-v));
    case KC_ACT_TANH: return tanhf(v);
    case KC_ACT_HARD_SIGMOID: return fminf(fmaxf(0.2f * v + 0.5f, 0.f), 1.f);
    default: return v;
  }
}
__device__ __forceinline__ double apply_act(double v, int act) {
  switch (act) {
    case KC_ACT_RELU: return v > 0.0 ? v : (v == v ? 0.0 : v);
    case KC_ACT_SIGMOID: return 1.0 / (1.0 + exp(-v));
    case KC_ACT_TANH: return tanh(v);
    case KC_ACT_HARD_SIGMOID: return fmin(fmax(0.2 * v + 0.5, 0.0), 1.0);
    default: return v;
  }
}

// element type <-> accumulator type
template <typename T> struct AccOf { using type = float; };
template <> struct AccOf<double> { using type = double; };

__device__ __forceinline__ float to_acc(float x) { return x; }
__device__ __forceinline__ double to_acc(double x) { return x; }
__device__ __forceinline__ float to_acc(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T from_acc(float x);
template <> __device__ __forceinline__ float from_acc<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_acc<__half>(float x) {
  return __float2half_rn(x);
}
template <> __device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}
__device__ __forceinline__ double from_acc_d(double x) { return x; }

// The epilogue of one value: act(alpha * acc + bias[col]).
template <typename T, typename Acc>
__device__ __forceinline__ Acc epi(const GemmParams &p, Acc acc, int col) {
  Acc v = static_cast<Acc>(p.alpha) * acc;
  if (p.bias) v += to_acc(static_cast<const T *>(p.bias)[col]);
  return apply_act(v, p.act);
}

// (batch item, tile row, tile column) of work item w
struct Work {
  int64_t b;
  int tm, tn;
};
__device__ __forceinline__ Work work_item(int64_t w, int tiles_n, int64_t tiles) {
  Work r;
  r.b = w / tiles;
  const int t = static_cast<int>(w - r.b * tiles);
  r.tm = t / tiles_n;
  r.tn = t - r.tm * tiles_n;
  return r;
}

// Stores rows [row0, row0 + ROWS) x cols [col0, col0 + COLS) of C from the float tile cs
// (row stride LD, in shared memory) through the epilogue, 4 consecutive columns per thread and
// step: coalesced, with one copy of the epilogue's code (the activation switch) per kernel.
template <typename T> struct alignas(4 * sizeof(T)) Quad { T v[4]; };

template <typename T, int ROWS, int COLS, int LD, int NTHR>
__device__ __forceinline__ void store_tile(const GemmParams &p, const float *cs, T *C, int row0,
                                           int col0) {
  constexpr int G = COLS / 4;
  const bool plain = p.alpha == 1.f && !p.bias && p.act == KC_ACT_NONE;
#pragma unroll 1
  for (int idx = threadIdx.x; idx < ROWS * G; idx += NTHR) {
    const int r = idx / G, c = (idx % G) * 4;
    const int row = row0 + r, col = col0 + c;
    if (row >= p.m || col >= p.n) continue;
    const float4 a = *reinterpret_cast<const float4 *>(cs + r * LD + c);
    float v0 = a.x, v1 = a.y, v2 = a.z, v3 = a.w;
    if (!plain) {
      const int last = p.n - 1;
      v0 = epi<T, float>(p, v0, col);
      v1 = epi<T, float>(p, v1, min(col + 1, last));
      v2 = epi<T, float>(p, v2, min(col + 2, last));
      v3 = epi<T, float>(p, v3, min(col + 3, last));
    }
    T *dst = C + static_cast<int64_t>(row) * p.ldc + col;
    if (p.vec_c && col + 3 < p.n) {
      if constexpr (sizeof(T) == 4) {
        *reinterpret_cast<float4 *>(dst) = make_float4(v0, v1, v2, v3);
      } else {
        Quad<T> o;
        o.v[0] = from_acc<T>(v0); o.v[1] = from_acc<T>(v1);
        o.v[2] = from_acc<T>(v2); o.v[3] = from_acc<T>(v3);
        *reinterpret_cast<Quad<T> *>(dst) = o;
      }
    } else {
      const int cnt = min(4, p.n - col);
      dst[0] = from_acc<T>(v0);
      if (cnt > 1) dst[1] = from_acc<T>(v1);
      if (cnt > 2) dst[2] = from_acc<T>(v2);
      if (cnt > 3) dst[3] = from_acc<T>(v3);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// gemm_tiny: whole batch items in shared memory

constexpr int TINY_THREADS = 256;
constexpr int TINY_SMEM_BYTES = 32768;

// Starts 16-byte async copies of `bytes` bytes from g to shared s when both are 16-byte aligned
// and bytes is a multiple of 16; returns whether it did.
__device__ __forceinline__ bool tiny_run(void *s, const void *g, int64_t bytes) {
  if (((reinterpret_cast<uintptr_t>(s) | reinterpret_cast<uintptr_t>(g) | bytes) & 15) != 0)
    return false;
  for (int64_t o = threadIdx.x * 16; o < bytes; o += TINY_THREADS * 16)
    cp_async16(static_cast<char *>(s) + o, static_cast<const char *>(g) + o);
  return true;
}

template <typename T>
__global__ void __launch_bounds__(TINY_THREADS) gemm_tiny(GemmParams p, int group) {
  using Acc = typename AccOf<T>::type;
  __shared__ __align__(16) unsigned char raw[TINY_SMEM_BYTES];
  T *const as = reinterpret_cast<T *>(raw);
  const int m = p.m, n = p.n, k = p.k;
  const int mk = m * k, kn = k * n, mn = m * n;
  T *const bs = as + static_cast<int64_t>(group) * mk;
  const T *A = static_cast<const T *>(p.a);
  const T *B = static_cast<const T *>(p.b);
  T *C = static_cast<T *>(p.c);
  const int64_t groups = (p.batch + group - 1) / group;
  const bool bs16 = (static_cast<int64_t>(group) * mk * sizeof(T)) % 16 == 0;
  for (int64_t gi = blockIdx.x; gi < groups; gi += gridDim.x) {
    const int64_t b0 = gi * group;
    const int cnt = static_cast<int>(min(static_cast<int64_t>(group), p.batch - b0));
    // items stored as they sit in shared memory, back to back: one run of bytes, copied in
    // 16-byte chunks all in flight at once (batches of tiny matrices are bound by latency)
    const bool a_run = p.a_kc && p.lda == k && (p.sa == mk || cnt == 1) &&
                       tiny_run(as, A + b0 * p.sa, static_cast<int64_t>(cnt) * mk * sizeof(T));
    const bool b_run = !p.b_kc && p.ldb == n && (p.sb == kn || cnt == 1) && bs16 &&
                       tiny_run(bs, B + b0 * p.sb, static_cast<int64_t>(cnt) * kn * sizeof(T));
    cp_async_commit();
    // else op(A) of each item as [m][k], read in storage order
    for (int e = threadIdx.x; e < (a_run ? 0 : cnt * mk); e += TINY_THREADS) {
      const int g = e / mk, r = e - g * mk;
      int i, q;
      int64_t off;
      if (p.a_kc) {
        i = r / k; q = r - i * k; off = static_cast<int64_t>(i) * p.lda + q;
      } else {
        q = r / m; i = r - q * m; off = static_cast<int64_t>(q) * p.lda + i;
      }
      as[g * mk + i * k + q] = A[(b0 + g) * p.sa + off];
    }
    // op(B) of each item as [k][n]
    for (int e = threadIdx.x; e < (b_run ? 0 : cnt * kn); e += TINY_THREADS) {
      const int g = e / kn, r = e - g * kn;
      int q, j;
      int64_t off;
      if (p.b_kc) {
        j = r / k; q = r - j * k; off = static_cast<int64_t>(j) * p.ldb + q;
      } else {
        q = r / n; j = r - q * n; off = static_cast<int64_t>(q) * p.ldb + j;
      }
      bs[g * kn + q * n + j] = B[(b0 + g) * p.sb + off];
    }
    cp_async_wait<0>();
    __syncthreads();
    for (int e = threadIdx.x; e < cnt * mn; e += TINY_THREADS) {
      const int g = e / mn, r = e - g * mn;
      const int i = r / n, j = r - i * n;
      const T *ar = as + g * mk + i * k;
      const T *bc = bs + g * kn + j;
      Acc acc = 0;
      for (int q = 0; q < k; ++q) acc = fma(to_acc(ar[q]), to_acc(bc[q * n]), acc);
      const Acc v = epi<T, Acc>(p, acc, j);
      T *dst = C + (b0 + g) * p.sc + static_cast<int64_t>(i) * p.ldc + j;
      if constexpr (sizeof(T) == 8) *dst = from_acc_d(v);
      else *dst = from_acc<T>(v);
    }
    __syncthreads();
  }
}

// ---------------------------------------------------------------------------------------------
// sgemm_simt: float32 exact

constexpr int SIMT_THREADS = 256;

// Loads the BK x BR tile (k0.., r0..) of an operand into sm[BK][BR + 4] (k-major), in quads of
// 4 consecutive elements of a stored row.
// kc: element (r, p) is g[r * ld + p] (quads along k, transposed by 4-byte copies);
// else g[p * ld + r] (quads along r: one 16-byte copy when vec).
template <int BR, int BK>
__device__ __forceinline__ void simt_load(float *sm, const float *g, int64_t ld, bool kc, bool vec,
                                          int r0, int R, int k0, int K, int tid) {
  constexpr int LD = BR + 4;
  constexpr int QUADS = BR * BK / 4;
  constexpr int PER = (QUADS + SIMT_THREADS - 1) / SIMT_THREADS;
  static_assert(QUADS % SIMT_THREADS == 0 || QUADS < SIMT_THREADS, "quads per thread");
  const bool full = r0 + BR <= R && k0 + BK <= K;  // interior tile: no bounds, no zero fill
#pragma unroll
  for (int e = 0; e < PER; ++e) {
    const int idx = tid + e * SIMT_THREADS;
    if (QUADS < SIMT_THREADS && idx >= QUADS) return;
    if (kc) {
      constexpr int QPR = BK / 4;  // quads per stored row
      const int r = idx / QPR, q = (idx % QPR) * 4;
      const int gr = r0 + r, gk = k0 + q;
      float *d = sm + q * LD + r;
      if (full) {
        const float *src = g + static_cast<int64_t>(gr) * ld + gk;
#pragma unroll
        for (int j = 0; j < 4; ++j) cp_async4(d + j * LD, src + j);
      } else {
        const bool row_ok = gr < R;
        const float *src = row_ok ? g + static_cast<int64_t>(gr) * ld + gk : g;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const bool ok = row_ok && gk + j < K;
          cp_async4(d + j * LD, ok ? src + j : g, ok ? 4 : 0);
        }
      }
    } else {
      constexpr int CPR = BR / 4;  // quads per k row
      const int q = idx / CPR, rc = (idx % CPR) * 4;
      const int gk = k0 + q, gr = r0 + rc;
      float *d = sm + q * LD + rc;
      if (full && vec) {
        cp_async16(d, g + static_cast<int64_t>(gk) * ld + gr);
        continue;
      }
      const bool k_ok = gk < K;
      const float *src = k_ok ? g + static_cast<int64_t>(gk) * ld + gr : g;
      if (vec) {
        const int valid = k_ok ? max(0, min(4, R - gr)) : 0;
        cp_async16(d, valid > 0 ? src : g, valid * 4);
      } else {
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const bool ok = k_ok && gr + j < R;
          cp_async4(d + j, ok ? src + j : g, ok ? 4 : 0);
        }
      }
    }
  }
}

template <int BM, int BN, int BK, int STAGES>
__host__ __device__ constexpr int simt_smem_bytes() {
  return STAGES * BK * ((BM + 4) + (BN + 4)) * static_cast<int>(sizeof(float));
}

// BM x BN block tile, TM x TN per thread as (TM/4) x (TN/4) float4 groups spaced BM/(TM/4) apart.
// LAYOUT: -1 reads a_kc / b_kc from p at run time; else bit 0 is a_kc and bit 1 b_kc (fixed
// layouts let the compiler drop the other load paths and their registers).
// CONV: A is a convolution's patches (ConvRows; LAYOUT 1, batch 1).
template <int BM, int BN, int TM, int TN, int SIMT_BK, int SIMT_STAGES, int MINB, int LAYOUT,
          bool CONV = false>
__global__ void __launch_bounds__(SIMT_THREADS, MINB) sgemm_simt(GemmParams p) {
  static_assert((BM / TM) * (BN / TN) == SIMT_THREADS, "thread count");
  static_assert(TM % 4 == 0 && TN % 4 == 0, "float4 groups");
  constexpr int LDA = BM + 4, LDB = BN + 4;
  constexpr int GM = TM / 4, GN = TN / 4;        // float4 groups per thread
  constexpr int SM_ = BM / GM, SN_ = BN / GN;    // spacing of the groups
  constexpr int TX = BN / TN;                    // threads along n
  constexpr int A_ELEMS = SIMT_BK * LDA, B_ELEMS = SIMT_BK * LDB;
  constexpr int PIPE = SIMT_STAGES * (A_ELEMS + B_ELEMS);
  constexpr int EPI_ROWS = BM / GM;  // C rows staged at a time: one float4 group of each thread
  static_assert(EPI_ROWS * LDB <= PIPE, "epilogue tile fits in the pipeline's buffers");
  static_assert(PIPE * 4 == simt_smem_bytes<BM, BN, SIMT_BK, SIMT_STAGES>(), "smem size");
  extern __shared__ __align__(16) float smem[];
  float *const As0 = smem;
  float *const Bs0 = smem + SIMT_STAGES * A_ELEMS;

  static_assert(TX == 16 && SIMT_THREADS / TX == 16, "16 x 16 threads");
  const int tid = threadIdx.x;
  // a warp covers 4 (ty) x 8 (tx) threads: its fragment reads touch 4 A and 8 B float4s
  const int lane = tid % 32, warp = tid / 32;
  const int tx = (warp % 2) * 8 + lane % 8, ty = (warp / 2) * 4 + lane / 8;
  const int M = p.m, N = p.n, K = p.k;
  const int tiles_m = (M + BM - 1) / BM, tiles_n = (N + BN - 1) / BN;
  const int64_t tiles = static_cast<int64_t>(tiles_m) * tiles_n;
  const int64_t total = tiles * p.batch;
  const int nk = (K + SIMT_BK - 1) / SIMT_BK;
  const bool a_kc = LAYOUT < 0 ? p.a_kc != 0 : (LAYOUT & 1) != 0;
  const bool b_kc = LAYOUT < 0 ? p.b_kc != 0 : (LAYOUT & 2) != 0;
  const bool vec_a = p.vec_a, vec_b = p.vec_b;

  for (int64_t w = blockIdx.x; w < total; w += gridDim.x) {
    const Work wk = work_item(w, tiles_n, tiles);
    const int m0 = wk.tm * BM, n0 = wk.tn * BN;
    const float *A = static_cast<const float *>(p.a) + wk.b * p.sa;
    const float *B = static_cast<const float *>(p.b) + wk.b * p.sb;
    const kcconv::ConvRows<BM, SIMT_BK, SIMT_THREADS> rows(p.cv, m0, CONV ? M : 0, tid);
    auto load_a = [&](float *dst, int k0) {
      if constexpr (CONV)
        rows.fill(dst, p.cv, k0, K, tid, [A](float *d, int64_t o) {
          cp_async4(d, o >= 0 ? A + o : A, o >= 0 ? 4 : 0);
        });
      else
        simt_load<BM, SIMT_BK>(dst, A, p.lda, a_kc, vec_a, m0, M, k0, K, tid);
    };

    float acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

#pragma unroll
    for (int s = 0; s < SIMT_STAGES - 1; ++s) {
      if (s < nk) {
        load_a(As0 + s * A_ELEMS, s * SIMT_BK);
        simt_load<BN, SIMT_BK>(Bs0 + s * B_ELEMS, B, p.ldb, b_kc, vec_b, n0, N, s * SIMT_BK, K, tid);
      }
      cp_async_commit();
    }

    for (int kt = 0; kt < nk; ++kt) {
      cp_async_wait<SIMT_STAGES - 2>();
      __syncthreads();
      {
        const int nxt = kt + SIMT_STAGES - 1;
        if (nxt < nk) {
          const int s = nxt % SIMT_STAGES;
          load_a(As0 + s * A_ELEMS, nxt * SIMT_BK);
          simt_load<BN, SIMT_BK>(Bs0 + s * B_ELEMS, B, p.ldb, b_kc, vec_b, n0, N, nxt * SIMT_BK, K, tid);
        }
        cp_async_commit();
      }
      const float *as = As0 + (kt % SIMT_STAGES) * A_ELEMS;
      const float *bs = Bs0 + (kt % SIMT_STAGES) * B_ELEMS;
#pragma unroll
      for (int q = 0; q < SIMT_BK; ++q) {
        float a[TM], b[TN];
#pragma unroll
        for (int h = 0; h < GM; ++h) {
          const float4 v = *reinterpret_cast<const float4 *>(as + q * LDA + h * SM_ + ty * 4);
          a[h * 4 + 0] = v.x; a[h * 4 + 1] = v.y; a[h * 4 + 2] = v.z; a[h * 4 + 3] = v.w;
        }
#pragma unroll
        for (int h = 0; h < GN; ++h) {
          const float4 v = *reinterpret_cast<const float4 *>(bs + q * LDB + h * SN_ + tx * 4);
          b[h * 4 + 0] = v.x; b[h * 4 + 1] = v.y; b[h * 4 + 2] = v.z; b[h * 4 + 3] = v.w;
        }
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
          for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
      }
    }

    // epilogue: GM passes of EPI_ROWS rows (row group h of every thread) through shared memory
    float *C = static_cast<float *>(p.c) + wk.b * p.sc;
    cp_async_wait<0>();
#pragma unroll
    for (int h = 0; h < GM; ++h) {
      __syncthreads();  // the pipeline's (or the previous pass's) readers are done
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int hn = 0; hn < GN; ++hn)
          *reinterpret_cast<float4 *>(smem + (ty * 4 + i) * LDB + hn * SN_ + tx * 4) =
              make_float4(acc[h * 4 + i][hn * 4 + 0], acc[h * 4 + i][hn * 4 + 1],
                          acc[h * 4 + i][hn * 4 + 2], acc[h * 4 + i][hn * 4 + 3]);
      __syncthreads();
      store_tile<float, EPI_ROWS, BN, LDB, SIMT_THREADS>(p, smem, C, m0 + h * SM_, n0);
    }
    // the next work item's prologue overwrites the staged tile
    __syncthreads();
  }
}

// ---------------------------------------------------------------------------------------------
// gemm_tc: tensor cores (mma.sync), tf32 for float, m16n8k16 for half / bfloat16

constexpr int TC_BM = 128, TC_BN = 128;
constexpr int TC_LDC = TC_BN + 8;  // staged C rows: float2 stores without bank conflicts

// Per element type (measured on an H100 at (32,512,512)^2, among 64x32 / 64x64 warp tiles and 3 /
// 4 stages): warps as 2 (m) x 128 / WN (n), each 64 x WN.
template <typename T> struct TcCfg {
  static constexpr int BK = 32;     // k per stage
  static constexpr int KSTEP = 16;  // k per mma
  static constexpr int PAD_KC = 8;  // elements of padding per row, k-contiguous layout
  static constexpr int PAD_MC = 8;  // m/n-contiguous layout
  static constexpr int WN = 32;     // warp tile width: 8 warps
  static constexpr int STAGES = 3;
  static constexpr int THREADS = 32 * 2 * (TC_BN / WN);
};
template <> struct TcCfg<float> {
  static constexpr int BK = 16;
  static constexpr int KSTEP = 8;
  static constexpr int PAD_KC = 4;
  static constexpr int PAD_MC = 8;
  static constexpr int WN = 64;     // 4 warps
  static constexpr int STAGES = 4;
  static constexpr int THREADS = 32 * 2 * (TC_BN / WN);
};

// Shared-memory footprint of one operand's stage, in elements.
template <typename T, bool KC, int BR>
struct TcTile {
  static constexpr int BK = TcCfg<T>::BK;
  static constexpr int LD = KC ? BK + TcCfg<T>::PAD_KC : BR + TcCfg<T>::PAD_MC;
  static constexpr int ELEMS = KC ? BR * LD : BK * LD;
  __device__ static __forceinline__ int idx(int r, int q) { return KC ? r * LD + q : q * LD + r; }
};

template <typename T, bool A_KC, bool B_KC>
constexpr int tc_smem_bytes() {
  constexpr int pipe = TcCfg<T>::STAGES * (TcTile<T, A_KC, TC_BM>::ELEMS + TcTile<T, B_KC, TC_BN>::ELEMS) *
                       static_cast<int>(sizeof(T));
  constexpr int epi = TC_BM * TC_LDC * static_cast<int>(sizeof(float));
  return pipe > epi ? pipe : epi;
}

// Loads the BR x BK tile (r0.., k0..) of an operand into its stage, in 16-byte chunks.
template <typename T, bool KC, int BR>
__device__ __forceinline__ void tc_load(T *sm, const T *g, int64_t ld, bool vec, int r0, int R,
                                        int k0, int K, int tid) {
  using Tile = TcTile<T, KC, BR>;
  constexpr int BK = TcCfg<T>::BK;
  constexpr int CH = 16 / sizeof(T);                  // elements per chunk
  constexpr int CPR = KC ? BK / CH : BR / CH;         // chunks per stored row
  constexpr int CHUNKS = BR * BK / CH;
  constexpr int TC_THREADS = TcCfg<T>::THREADS;
  static_assert(CHUNKS % TC_THREADS == 0, "chunks per thread");
  const bool full = r0 + BR <= R && k0 + BK <= K;  // interior tile: no bounds, no zero fill
#pragma unroll
  for (int e = 0; e < CHUNKS / TC_THREADS; ++e) {
    const int idx = tid + e * TC_THREADS;
    const int sr = idx / CPR, sc = (idx % CPR) * CH;  // stored row, first element
    int r, q;
    if (KC) { r = sr; q = sc; } else { q = sr; r = sc; }
    const int gr = r0 + r, gk = k0 + q;
    T *d = sm + Tile::idx(r, q);
    // contiguous axis: k when KC (limit K), r otherwise (limit R)
    const int64_t base = KC ? static_cast<int64_t>(gr) * ld + gk : static_cast<int64_t>(gk) * ld + gr;
    if (full && vec) {
      cp_async16(d, g + base);
      continue;
    }
    const bool line_ok = KC ? gr < R : gk < K;
    const int avail = KC ? K - gk : R - gr;
    if (vec) {
      const int valid = line_ok ? max(0, min(CH, avail)) : 0;
      cp_async16(d, valid > 0 ? g + base : g, valid * static_cast<int>(sizeof(T)));
    } else if constexpr (sizeof(T) == 4) {
#pragma unroll
      for (int j = 0; j < CH; ++j) {
        const bool ok = line_ok && j < avail;
        cp_async4(d + j, ok ? g + base + j : g, ok ? 4 : 0);
      }
    } else {
      // 2-byte elements: plain loads (visible after the pipeline's barrier)
      const uint16_t *gs = reinterpret_cast<const uint16_t *>(g);
      uint16_t *ds = reinterpret_cast<uint16_t *>(d);
#pragma unroll
      for (int j = 0; j < CH; ++j) ds[j] = (line_ok && j < avail) ? gs[base + j] : uint16_t(0);
    }
  }
}

__device__ __forceinline__ uint32_t f2tf32(float x) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
  return r;
}

__device__ __forceinline__ void mma_tf32(float *c, const uint32_t *a, const uint32_t *b) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

template <typename T> __device__ __forceinline__ void mma_16(float *c, const uint32_t *a, const uint32_t *b);
template <> __device__ __forceinline__ void mma_16<__half>(float *c, const uint32_t *a, const uint32_t *b) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
template <> __device__ __forceinline__ void mma_16<__nv_bfloat16>(float *c, const uint32_t *a, const uint32_t *b) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

template <bool TRANS>
__device__ __forceinline__ void ldmatrix_x4(uint32_t *r, const void *p) {
  if (TRANS)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
}

// 2 x WARPS_N warps, each 64 x WN: 4 m16 tiles x WN / 8 n8 tiles.
template <typename T, bool A_KC, bool B_KC>
__global__ void __launch_bounds__(TcCfg<T>::THREADS, 2) gemm_tc(GemmParams p) {
  constexpr int BK = TcCfg<T>::BK, KSTEP = TcCfg<T>::KSTEP;
  constexpr int TC_STAGES = TcCfg<T>::STAGES, TC_THREADS = TcCfg<T>::THREADS, TC_WN = TcCfg<T>::WN;
  using TA = TcTile<T, A_KC, TC_BM>;
  using TB = TcTile<T, B_KC, TC_BN>;
  constexpr int WM = 64, WN = TC_WN, MT = WM / 16, NT = WN / 8, WARPS_N = TC_BN / WN;
  extern __shared__ __align__(16) unsigned char tc_smem[];
  T *const As = reinterpret_cast<T *>(tc_smem);
  T *const Bs = As + TC_STAGES * TA::ELEMS;

  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int wm = warp / WARPS_N, wn = warp % WARPS_N;
  const int g = lane / 4, t = lane % 4;
  const int M = p.m, N = p.n, K = p.k;
  const int tiles_m = (M + TC_BM - 1) / TC_BM, tiles_n = (N + TC_BN - 1) / TC_BN;
  const int64_t tiles = static_cast<int64_t>(tiles_m) * tiles_n;
  const int64_t total = tiles * p.batch;
  const int nk = (K + BK - 1) / BK;
  const bool vec_a = p.vec_a, vec_b = p.vec_b;

  for (int64_t w = blockIdx.x; w < total; w += gridDim.x) {
    const Work wk = work_item(w, tiles_n, tiles);
    const int m0 = wk.tm * TC_BM, n0 = wk.tn * TC_BN;
    const T *A = static_cast<const T *>(p.a) + wk.b * p.sa;
    const T *B = static_cast<const T *>(p.b) + wk.b * p.sb;

    float acc[MT][NT][4];
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
      for (int j = 0; j < NT; ++j)
#pragma unroll
        for (int v = 0; v < 4; ++v) acc[i][j][v] = 0.f;

#pragma unroll
    for (int s = 0; s < TC_STAGES - 1; ++s) {
      if (s < nk) {
        tc_load<T, A_KC, TC_BM>(As + s * TA::ELEMS, A, p.lda, vec_a, m0, M, s * BK, K, tid);
        tc_load<T, B_KC, TC_BN>(Bs + s * TB::ELEMS, B, p.ldb, vec_b, n0, N, s * BK, K, tid);
      }
      cp_async_commit();
    }

    for (int kt = 0; kt < nk; ++kt) {
      cp_async_wait<TC_STAGES - 2>();
      __syncthreads();
      {
        const int nxt = kt + TC_STAGES - 1;
        if (nxt < nk) {
          const int s = nxt % TC_STAGES;
          tc_load<T, A_KC, TC_BM>(As + s * TA::ELEMS, A, p.lda, vec_a, m0, M, nxt * BK, K, tid);
          tc_load<T, B_KC, TC_BN>(Bs + s * TB::ELEMS, B, p.ldb, vec_b, n0, N, nxt * BK, K, tid);
        }
        cp_async_commit();
      }
      const T *as = As + (kt % TC_STAGES) * TA::ELEMS;
      const T *bs = Bs + (kt % TC_STAGES) * TB::ELEMS;
#pragma unroll
      for (int ks = 0; ks < BK; ks += KSTEP) {
        uint32_t af[MT][4], bf[NT][2];
        if constexpr (sizeof(T) == 4) {
          // tf32: a0 (g, t), a1 (g+8, t), a2 (g, t+4), a3 (g+8, t+4); b0 (t, g), b1 (t+4, g)
          const float *af32 = reinterpret_cast<const float *>(as);
          const float *bf32 = reinterpret_cast<const float *>(bs);
#pragma unroll
          for (int i = 0; i < MT; ++i) {
            const int r = wm * WM + i * 16 + g;
            af[i][0] = f2tf32(af32[TA::idx(r, ks + t)]);
            af[i][1] = f2tf32(af32[TA::idx(r + 8, ks + t)]);
            af[i][2] = f2tf32(af32[TA::idx(r, ks + t + 4)]);
            af[i][3] = f2tf32(af32[TA::idx(r + 8, ks + t + 4)]);
          }
#pragma unroll
          for (int j = 0; j < NT; ++j) {
            const int c = wn * WN + j * 8 + g;
            bf[j][0] = f2tf32(bf32[TB::idx(c, ks + t)]);
            bf[j][1] = f2tf32(bf32[TB::idx(c, ks + t + 4)]);
          }
#pragma unroll
          for (int i = 0; i < MT; ++i)
#pragma unroll
            for (int j = 0; j < NT; ++j) mma_tf32(acc[i][j], af[i], bf[j]);
        } else {
          const int q = lane / 8, r8 = lane % 8;
#pragma unroll
          for (int i = 0; i < MT; ++i) {
            const int mb = wm * WM + i * 16;
            // matrices: (m 0-7, k 0-7), (m 8-15, k 0-7), (m 0-7, k 8-15), (m 8-15, k 8-15)
            const int r = A_KC ? mb + r8 + (q % 2) * 8 : mb + (q % 2) * 8;
            const int kk = A_KC ? ks + (q / 2) * 8 : ks + r8 + (q / 2) * 8;
            ldmatrix_x4<!A_KC>(af[i], as + TA::idx(r, kk));
          }
#pragma unroll
          for (int j = 0; j < NT; j += 2) {
            const int nb = wn * WN + j * 8;
            // matrices: (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15)
            const int c = B_KC ? nb + r8 + (q / 2) * 8 : nb + (q / 2) * 8;
            const int kk = B_KC ? ks + (q % 2) * 8 : ks + r8 + (q % 2) * 8;
            uint32_t x[4];
            ldmatrix_x4<!B_KC>(x, bs + TB::idx(c, kk));
            bf[j][0] = x[0]; bf[j][1] = x[1]; bf[j + 1][0] = x[2]; bf[j + 1][1] = x[3];
          }
#pragma unroll
          for (int i = 0; i < MT; ++i)
#pragma unroll
            for (int j = 0; j < NT; ++j) mma_16<T>(acc[i][j], af[i], bf[j]);
        }
      }
    }

    // epilogue through shared memory (the pipeline's buffers): c0, c1 at (g, 2t..2t+1), c2, c3 at
    // (g + 8, 2t..2t+1) of each 16 x 8 tile
    cp_async_wait<0>();
    __syncthreads();
    float *const cs = reinterpret_cast<float *>(tc_smem);
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
      for (int hr = 0; hr < 2; ++hr)
#pragma unroll
        for (int j = 0; j < NT; ++j)
          *reinterpret_cast<float2 *>(cs + (wm * WM + i * 16 + g + hr * 8) * TC_LDC + wn * WN +
                                      j * 8 + 2 * t) =
              make_float2(acc[i][j][hr * 2], acc[i][j][hr * 2 + 1]);
    __syncthreads();
    store_tile<T, TC_BM, TC_BN, TC_LDC, TC_THREADS>(p, cs, static_cast<T *>(p.c) + wk.b * p.sc,
                                                   m0, n0);
    __syncthreads();  // the next work item's prologue overwrites the staged tile
  }
}

// ---------------------------------------------------------------------------------------------
// dgemm_simple: float64, 64x64x16 tiles, plain loads, a 4x4 tile per thread

constexpr int D_BM = 64, D_BN = 64, D_BK = 16;

__global__ void __launch_bounds__(256) dgemm_simple(GemmParams p) {
  __shared__ double As[D_BK][D_BM + 1];
  __shared__ double Bs[D_BK][D_BN + 1];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int M = p.m, N = p.n, K = p.k;
  const int tiles_m = (M + D_BM - 1) / D_BM, tiles_n = (N + D_BN - 1) / D_BN;
  const int64_t tiles = static_cast<int64_t>(tiles_m) * tiles_n;
  const int64_t total = tiles * p.batch;
  for (int64_t w = blockIdx.x; w < total; w += gridDim.x) {
    const Work wk = work_item(w, tiles_n, tiles);
    const int m0 = wk.tm * D_BM, n0 = wk.tn * D_BN;
    const double *A = static_cast<const double *>(p.a) + wk.b * p.sa;
    const double *B = static_cast<const double *>(p.b) + wk.b * p.sb;
    double acc[4][4] = {};
    for (int k0 = 0; k0 < K; k0 += D_BK) {
      for (int e = tid; e < D_BM * D_BK; e += 256) {
        int r, q;
        if (p.a_kc) { r = e / D_BK; q = e % D_BK; } else { q = e / D_BM; r = e % D_BM; }
        const int gr = m0 + r, gk = k0 + q;
        double v = 0.0;
        if (gr < M && gk < K)
          v = p.a_kc ? A[static_cast<int64_t>(gr) * p.lda + gk] : A[static_cast<int64_t>(gk) * p.lda + gr];
        As[q][r] = v;
      }
      for (int e = tid; e < D_BN * D_BK; e += 256) {
        int c, q;
        if (p.b_kc) { c = e / D_BK; q = e % D_BK; } else { q = e / D_BN; c = e % D_BN; }
        const int gc = n0 + c, gk = k0 + q;
        double v = 0.0;
        if (gc < N && gk < K)
          v = p.b_kc ? B[static_cast<int64_t>(gc) * p.ldb + gk] : B[static_cast<int64_t>(gk) * p.ldb + gc];
        Bs[q][c] = v;
      }
      __syncthreads();
#pragma unroll
      for (int q = 0; q < D_BK; ++q) {
        double a[4], b[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) a[i] = As[q][ty + 16 * i];
#pragma unroll
        for (int j = 0; j < 4; ++j) b[j] = Bs[q][tx + 16 * j];
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int j = 0; j < 4; ++j) acc[i][j] = fma(a[i], b[j], acc[i][j]);
      }
      __syncthreads();
    }
    double *C = static_cast<double *>(p.c) + wk.b * p.sc;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int row = m0 + ty + 16 * i;
      if (row >= M) continue;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int col = n0 + tx + 16 * j;
        if (col < N) C[static_cast<int64_t>(row) * p.ldc + col] = epi<double, double>(p, acc[i][j], col);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// host side

constexpr int64_t MAX_GRID = 0x7fffffffLL;

// An attribute of the current device, cached per device (`fallback` when the query fails).
template <cudaDeviceAttr ATTR>
int device_attr(int fallback) {
  static std::atomic<int> cached[64];
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) dev = 0;
  if (dev >= 0 && dev < 64) {
    const int c = cached[dev].load(std::memory_order_relaxed);
    if (c > 0) return c;
  }
  int v = 0;
  if (cudaDeviceGetAttribute(&v, ATTR, dev) != cudaSuccess || v <= 0) v = fallback;
  if (dev >= 0 && dev < 64) cached[dev].store(v, std::memory_order_relaxed);
  return v;
}

int sm_count() { return device_attr<cudaDevAttrMultiProcessorCount>(108); }

// The most shared memory a block may opt in to.
int smem_optin() { return device_attr<cudaDevAttrMaxSharedMemoryPerBlockOptin>(48 * 1024); }

// Raises a kernel's dynamic shared-memory limit once per device.
template <auto Kern>
int32_t allow_smem(int bytes, const char *what) {
  static std::atomic<uint64_t> done{0};
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) dev = 0;
  const uint64_t bit = (dev >= 0 && dev < 64) ? (1ull << dev) : 0;
  if (bit && (done.load(std::memory_order_relaxed) & bit)) return KC_OK;
  const cudaError_t e =
      cudaFuncSetAttribute(Kern, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  if (e != cudaSuccess) return kcc::cuda_error(what, e);
  done.fetch_or(bit, std::memory_order_relaxed);
  return KC_OK;
}

unsigned grid_for(int64_t work) {
  return static_cast<unsigned>(work < MAX_GRID ? (work < 1 ? 1 : work) : MAX_GRID);
}

bool aligned(const void *ptr, int64_t ld, int64_t stride, int64_t batch, int elems, int bytes) {
  // every row start (ptr + b * stride + r * ld) is a multiple of `bytes` (elems elements)
  if (reinterpret_cast<uintptr_t>(ptr) % bytes != 0) return false;
  if (ld % elems != 0) return false;
  if (batch > 1 && stride % elems != 0) return false;
  return true;
}

template <typename T>
int32_t launch_tiny(const GemmParams &p, cudaStream_t st) {
  const int64_t per = (static_cast<int64_t>(p.m) * p.k + static_cast<int64_t>(p.k) * p.n);
  const int64_t cap = TINY_SMEM_BYTES / static_cast<int64_t>(sizeof(T));
  // at least a thread per output; more items a block while there are ~4 blocks an SM, so that
  // each block has many loads in flight
  int64_t group = TINY_THREADS / (static_cast<int64_t>(p.m) * p.n);
  const int64_t spread = kcc::ceil_div(p.batch, 4LL * sm_count());
  if (group < spread) group = spread;
  if (group < 1) group = 1;
  if (per > 0 && group > cap / per) group = cap / per;
  if (group < 1) group = 1;
  if (group > p.batch) group = p.batch;
  const int64_t groups = (p.batch + group - 1) / group;
  gemm_tiny<T><<<grid_for(groups), TINY_THREADS, 0, st>>>(p, static_cast<int>(group));
  return kcc::check_launch("gemm_tiny");
}

template <typename T, bool AK, bool BK>
int32_t launch_tc_one(const GemmParams &p, cudaStream_t st) {
  constexpr int bytes = tc_smem_bytes<T, AK, BK>();
  const int32_t s = allow_smem<gemm_tc<T, AK, BK>>(bytes, "gemm_tc: cudaFuncSetAttribute");
  if (s != KC_OK) return s;
  const int64_t tiles = kcc::ceil_div(p.m, TC_BM) * kcc::ceil_div(p.n, TC_BN);
  gemm_tc<T, AK, BK><<<grid_for(tiles * p.batch), TcCfg<T>::THREADS, bytes, st>>>(p);
  return kcc::check_launch("gemm_tc");
}

template <typename T>
int32_t launch_tc(GemmParams p, cudaStream_t st) {
  constexpr int elems = 16 / static_cast<int>(sizeof(T));
  p.vec_a = aligned(p.a, p.lda, p.sa, p.batch, elems, 16);
  p.vec_b = aligned(p.b, p.ldb, p.sb, p.batch, elems, 16);
  p.vec_c = aligned(p.c, p.ldc, p.sc, p.batch, 4, 4 * static_cast<int>(sizeof(T)));
  if (p.a_kc) {
    return p.b_kc ? launch_tc_one<T, true, true>(p, st) : launch_tc_one<T, true, false>(p, st);
  }
  return p.b_kc ? launch_tc_one<T, false, true>(p, st) : launch_tc_one<T, false, false>(p, st);
}

// The 128x128 kernel's k depth, stages and blocks per SM (measured on an H100 at (32,512,512)^2
// among BK 8 / 16, 3 / 4 stages, 1 / 2 blocks per SM and 128x64 tiles). BK 32 with 3 stages was
// 3% faster on an H100 but needs 101 KB of shared memory, more than sm_86/89 give a block; this
// one (68 KB) is also the fallback where the 128x256 kernel's 150 KB do not fit.
constexpr int SIMT_BIG_BK = 16, SIMT_BIG_STAGES = 4, SIMT_BIG_MINB = 2;

template <int BM, int BN, int TM, int TN, int BK, int STAGES, int MINB, int LAYOUT,
          bool CONV = false>
int32_t launch_simt_one(const GemmParams &p, cudaStream_t st) {
  constexpr int bytes = simt_smem_bytes<BM, BN, BK, STAGES>();
  const int32_t s = allow_smem<sgemm_simt<BM, BN, TM, TN, BK, STAGES, MINB, LAYOUT, CONV>>(
      bytes, "sgemm_simt: cudaFuncSetAttribute");
  if (s != KC_OK) return s;
  const int64_t tiles = kcc::ceil_div(p.m, BM) * kcc::ceil_div(p.n, BN) * p.batch;
  sgemm_simt<BM, BN, TM, TN, BK, STAGES, MINB, LAYOUT, CONV>
      <<<grid_for(tiles), SIMT_THREADS, bytes, st>>>(p);
  return kcc::check_launch("sgemm_simt");
}

template <int BM, int BN, int TM, int TN, int BK, int STAGES, int MINB>
int32_t launch_simt_layout(const GemmParams &p, cudaStream_t st) {
  switch (p.a_kc | (p.b_kc << 1)) {
    case 0: return launch_simt_one<BM, BN, TM, TN, BK, STAGES, MINB, 0>(p, st);
    case 1: return launch_simt_one<BM, BN, TM, TN, BK, STAGES, MINB, 1>(p, st);
    case 2: return launch_simt_one<BM, BN, TM, TN, BK, STAGES, MINB, 2>(p, st);
    default: return launch_simt_one<BM, BN, TM, TN, BK, STAGES, MINB, 3>(p, st);
  }
}

// The register tile, by how well its blocks fill the GPU:
//  * 128x256 (8x16 a thread, 255 registers, one block an SM) where its tiles fill every SM at
//    least once and, 256 wide, pad n no more than 128-wide tiles would (within 10%). On an H100
//    against 128x128 (then with k steps of 32; three alternated runs): (32,512,512)^2 0.238 ->
//    0.220 ms, (8,1024,1024)^2 0.466 -> 0.425, (2,2048,2048)^2 0.905 -> 0.819 (0.85-0.90x
//    torch.bmm). 256x128, and 128x128 with one block an SM, were no faster than 128x128 with two.
//  * 128x128 (8x8, two blocks an SM) where its tiles fill every SM at least once;
//  * 64x64 (4x4) otherwise.
// sgemm_simt's 16-byte paths: which operands' rows start on 16 bytes.
void set_vec4(GemmParams &p) {
  p.vec_a = aligned(p.a, p.lda, p.sa, p.batch, 4, 16);
  p.vec_b = aligned(p.b, p.ldb, p.sb, p.batch, 4, 16);
  p.vec_c = aligned(p.c, p.ldc, p.sc, p.batch, 4, 16);
}

int32_t launch_simt(GemmParams p, cudaStream_t st) {
  set_vec4(p);
  const int64_t sms = sm_count();
  const int64_t rows = kcc::ceil_div(p.m, 128) * p.batch;  // tile rows of 128, all batch items
  const int64_t n128 = kcc::ceil_div(p.n, 128), n256 = kcc::ceil_div(p.n, 256);
  if (p.m > 64 && rows * n256 >= sms && n256 * 256 * 10 <= n128 * 128 * 11 &&
      simt_smem_bytes<128, 256, 32, 3>() <= smem_optin())
    return launch_simt_layout<128, 256, 8, 16, 32, 3, 1>(p, st);
  if (p.m > 64 && p.n > 64 && rows * n128 >= sms)
    return launch_simt_layout<128, 128, 8, 8, SIMT_BIG_BK, SIMT_BIG_STAGES, SIMT_BIG_MINB>(p, st);
  return launch_simt_one<64, 64, 4, 4, 8, 4, 2, -1>(p, st);
}

int32_t launch_f64(const GemmParams &p, cudaStream_t st) {
  const int64_t tiles = kcc::ceil_div(p.m, D_BM) * kcc::ceil_div(p.n, D_BN) * p.batch;
  dgemm_simple<<<grid_for(tiles), 256, 0, st>>>(p);
  return kcc::check_launch("dgemm_simple");
}

int elem_size(int32_t dtype) {
  switch (dtype) {
    case KC_FLOAT32: return 4;
    case KC_FLOAT64: return 8;
    case KC_FLOAT16: return 2;
    case KC_BFLOAT16: return 2;
    default: return 0;
  }
}

// Checks a product's arguments (who names the caller in messages) and fills p; empty: nothing
// to compute.
int32_t gemm_params(const kc_cuda_gemm_args *args, const char *who, GemmParams &p, bool &empty) {
  auto fail = [who](const char *msg) {
    return kcc::set_error(KC_EINVAL, (std::string(who) + ": " + msg).c_str());
  };
  const kc_gemm_args &g = args->g;
  const int esize = elem_size(g.dtype);
  if (esize == 0)
    return fail("dtype must be float32, float64, float16 or bfloat16");
  if (g.m < 0 || g.n < 0 || g.k < 0 || g.batch < 0)
    return fail("m, n, k and batch must be >= 0");
  if (g.m >= (1LL << 30) || g.n >= (1LL << 30) || g.k >= (1LL << 30))
    return fail("m, n and k must be < 2^30");
  if (args->precision != KC_PREC_EXACT && args->precision != KC_PREC_TF32)
    return fail("precision must be KC_PREC_EXACT or KC_PREC_TF32");
  if (args->precision == KC_PREC_TF32 && g.dtype != KC_FLOAT32)
    return fail("KC_PREC_TF32 applies to float32 only");
  if (args->act < KC_ACT_NONE || args->act > KC_ACT_HARD_SIGMOID)
    return fail("act is not a kc_act value");
  if (g.lda < 0 || g.ldb < 0 || g.ldc < 0)
    return fail("leading dimensions must be >= 0");
  if (g.stride_a < 0 || g.stride_b < 0 || g.stride_c < 0)
    return fail("batch strides must be >= 0");
  const int64_t a_row = g.trans_a ? g.m : g.k;  // elements per stored row of A
  const int64_t a_rows = g.trans_a ? g.k : g.m;
  const int64_t b_row = g.trans_b ? g.k : g.n;
  const int64_t b_rows = g.trans_b ? g.n : g.k;
  if (a_rows > 0 && a_row > 0 && g.lda < a_row)
    return fail("lda is smaller than a row of A (k, or m when trans_a)");
  if (b_rows > 0 && b_row > 0 && g.ldb < b_row)
    return fail("ldb is smaller than a row of B (n, or k when trans_b)");
  if (g.m > 0 && g.n > 0 && g.ldc < g.n)
    return fail("ldc is smaller than n");
  empty = g.m == 0 || g.n == 0 || g.batch == 0;
  if (empty) return KC_OK;
  if (!g.c) return fail("c is NULL");
  if (g.k > 0 && (!g.a || !g.b))
    return fail("a or b is NULL while k > 0");

  p = GemmParams{};
  p.a = g.a;
  p.b = g.b;
  p.c = g.c;
  p.bias = args->bias;
  p.m = static_cast<int>(g.m);
  p.n = static_cast<int>(g.n);
  p.k = static_cast<int>(g.k);
  p.act = args->act;
  p.batch = g.batch;
  p.lda = g.lda;
  p.ldb = g.ldb;
  p.ldc = g.ldc;
  p.sa = g.stride_a;
  p.sb = g.stride_b;
  p.sc = g.stride_c;
  p.alpha = args->alpha;
  p.a_kc = g.trans_a ? 0 : 1;
  p.b_kc = g.trans_b ? 1 : 0;
  return KC_OK;
}

}  // namespace

extern "C" KC_EXPORT int32_t kc_cuda_gemm(const kc_cuda_gemm_args *args, void *stream) {
  if (!args) return kcc::set_error(KC_EINVAL, "kc_cuda_gemm: args is NULL");
  GemmParams p;
  bool empty = false;
  const int32_t status = gemm_params(args, "kc_cuda_gemm", p, empty);
  if (status != KC_OK || empty) return status;
  const kc_gemm_args &g = args->g;
  const int esize = elem_size(g.dtype);
  const cudaStream_t st = kcc::as_stream(stream);

  // batches of tiny matrices: whole items in shared memory
  const int64_t per_item = (g.m * g.k + g.k * g.n) * esize;
  if (g.m <= 32 && g.n <= 32 && per_item <= TINY_SMEM_BYTES) {
    switch (g.dtype) {
      case KC_FLOAT32: return launch_tiny<float>(p, st);
      case KC_FLOAT64: return launch_tiny<double>(p, st);
      case KC_FLOAT16: return launch_tiny<__half>(p, st);
      default: return launch_tiny<__nv_bfloat16>(p, st);
    }
  }
  switch (g.dtype) {
    case KC_FLOAT32:
      return args->precision == KC_PREC_TF32 ? launch_tc<float>(p, st) : launch_simt(p, st);
    case KC_FLOAT64: return launch_f64(p, st);
    case KC_FLOAT16: return launch_tc<__half>(p, st);
    default: return launch_tc<__nv_bfloat16>(p, st);
  }
}

// The implicit-GEMM convolution: sgemm_simt with the patches as A, in 128x128 tiles where they
// fill every SM, 128x64 where up to 64 output channels do, else 64x64. float32 only; a TF32
// request runs exact.
extern "C" KC_EXPORT int32_t kc_cuda_conv(const kc_cuda_conv_args *args, void *stream) {
  if (!args) return kcc::set_error(KC_EINVAL, "kc_cuda_conv: args is NULL");
  const kc_gemm_args &g = args->gemm.g;
  if (g.dtype != KC_FLOAT32)
    return kcc::set_error(KC_EINVAL, "kc_cuda_conv: dtype must be float32");
  if (g.trans_a || g.trans_b || g.batch != 1)
    return kcc::set_error(KC_EINVAL, "kc_cuda_conv: the gemm view has no transposes and batch 1");
  const int64_t ext[] = {args->d, args->h, args->w, args->c, args->od, args->oh, args->ow,
                         args->kd, args->kh, args->kw};
  for (int64_t v : ext)
    if (v < 0 || v >= (1LL << 30))
      return kcc::set_error(KC_EINVAL,
                            "kc_cuda_conv: extents, channels and taps must be in [0, 2^30)");
  const int64_t geo[] = {args->sd, args->sh, args->sw, args->dd, args->dh, args->dw};
  for (int64_t v : geo)
    if (v < 1 || v >= (1LL << 20))
      return kcc::set_error(KC_EINVAL, "kc_cuda_conv: strides and dilations must be in [1, 2^20)");
  const int64_t pads[] = {args->pd, args->ph, args->pw};
  for (int64_t v : pads)
    if (v < 0 || v >= (1LL << 20))
      return kcc::set_error(KC_EINVAL, "kc_cuda_conv: padding must be in [0, 2^20)");
  const int64_t reach[][3] = {{args->od, args->sd, (args->kd - 1) * args->dd},
                              {args->oh, args->sh, (args->kh - 1) * args->dh},
                              {args->ow, args->sw, (args->kw - 1) * args->dw}};
  for (const auto &r : reach)  // patch coordinates stay in int
    if ((r[0] - 1) * r[1] + r[2] >= (1LL << 30))
      return kcc::set_error(KC_EINVAL, "kc_cuda_conv: the patches reach past 2^30 along an axis");
  const int64_t pixels = args->od * args->oh * args->ow;
  if (g.k != args->kd * args->kh * args->kw * args->c ||
      (pixels == 0 ? g.m != 0 : g.m % pixels != 0))
    return kcc::set_error(
        KC_EINVAL, "kc_cuda_conv: the gemm view must have k = kd*kh*kw*c and m = batch*od*oh*ow");
  GemmParams p;
  bool empty = false;  // no output (then no division by an extent below); k == 0: zeros
  const int32_t status = gemm_params(&args->gemm, "kc_cuda_conv", p, empty);
  if (status != KC_OK || empty) return status;
  ConvGeom &cv = p.cv;
  cv.d = (int)args->d, cv.h = (int)args->h, cv.w = (int)args->w, cv.c = (int)args->c;
  cv.od = (int)args->od, cv.oh = (int)args->oh, cv.ow = (int)args->ow;
  cv.kh = (int)args->kh, cv.kw = (int)args->kw;
  cv.sd = (int)args->sd, cv.sh = (int)args->sh, cv.sw = (int)args->sw;
  cv.pd = (int)args->pd, cv.ph = (int)args->ph, cv.pw = (int)args->pw;
  cv.dd = (int)args->dd, cv.dh = (int)args->dh, cv.dw = (int)args->dw;
  cv.vec = args->c % 4 == 0;
  set_vec4(p);  // (vec_a unused: the patches are read by ConvRows)
  const cudaStream_t st = kcc::as_stream(stream);
  const int64_t rows = kcc::ceil_div(p.m, 128), sms = sm_count();
  if (p.n > 64 && rows * kcc::ceil_div(p.n, 128) >= sms)
    return launch_simt_one<128, 128, 8, 8, SIMT_BIG_BK, SIMT_BIG_STAGES, SIMT_BIG_MINB, 1, true>(
        p, st);
  if (p.n > 32 && rows * kcc::ceil_div(p.n, 64) >= sms)
    return launch_simt_one<128, 64, 8, 4, 16, 4, 2, 1, true>(p, st);
  return launch_simt_one<64, 64, 4, 4, 8, 4, 2, 1, true>(p, st);
}
