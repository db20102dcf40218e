// Reductions and softmax over the middle axis of a contiguous float32 (outer, n, inner) array:
// kc_cuda_reduce and kc_cuda_softmax (contract in kcomp/cuda_api.h). No scratch memory, no atomics.
//
// Two layouts.
//  * rows (inner == 1): a group of G threads (G a power of two, 1..1024) reduces one row; groups
//    of fewer than 32 threads share a warp, larger ones a block. Each thread reads 16-byte float4
//    vectors, four in flight at a time, after peeling the 0..3 scalars that bring the row to a
//    16-byte boundary (so unaligned pointers and odd n still take the vector path); partials are
//    merged by warp shuffles, then through shared memory. A few very long rows (fewer rows than
//    twice the SMs) are split over a thread-block cluster of up to 16 blocks on sm_90 (8 where
//    the device refuses non-portable sizes), merged through distributed shared memory.
//  * columns (inner > 1): a block of 128 threads owns a tile of 4*LX consecutive inner lanes of
//    one outer index (each thread four consecutive lanes: a float4 when inner % 4 == 0 and x is
//    16-byte aligned, four scalars otherwise) and RY = 128/LX threads along n; the RY partials are
//    merged by shuffles and shared memory. Short columns get a wide tile and RY down to 1. When
//    there are too few tiles to fill the GPU, n is split over a cluster as for rows (sm_90).
//
// Every kind is one pass over memory: SUM/MEAN keep a compensated float sum (s, c) per thread
// (TwoSum), VAR/STD per-batch two-pass moments merged with Chan's formula, LOGSUMEXP an online
// (max, scaled sum) pair, ARG* (value, first index) with NaN as the extreme. MIN/ARGMIN are
// MAX/ARGMAX of -x. Softmax: rows that fit (n <= 16384) stay in registers (one read, one write);
// columns of up to 8192 rows (sm_90, aligned) stay in a cluster's shared memory (the same);
// longer rows and other columns read twice (online max/sum, then y) and write once.
//
// n == 0: SUM 0, PROD 1, MEAN/VAR/STD NaN, LOGSUMEXP -inf; MAX/MIN/ARG* are refused (KC_EINVAL).
// Softmax may run in place (y == x): each element is read, after every read of the statistics
// pass, by the thread that then writes it. KCOMP_CUDA_REDUCE_CLUSTER=0 disables the clusters.
#include <cooperative_groups.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include <atomic>

#include "common.cuh"

namespace cg = cooperative_groups;

namespace {

constexpr unsigned kFull = 0xffffffffu;
constexpr int kSoftmaxK = 8;          // float4 registers per thread in the cached softmax
constexpr int kSoftmaxCachedMaxN = 16384;  // = 512 threads * 8 float4 * 4
constexpr int kColsThreads = 128;          // threads per block of cols_kernel (at most)

enum Mode { kReduce = 0, kSoftmax = 1, kLogSoftmax = 2 };

// kcc::ceil_div is host-only.
__device__ __forceinline__ int64_t kcc_ceil_div_dev(int64_t a, int64_t b) { return (a + b - 1) / b; }

// How a state becomes an output value.
struct Fin {
  int kind;
  int64_t n;
  float sgn;
};

__device__ __forceinline__ float max_nan(float a, float b) {
  float r;
  asm("max.NaN.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
}

// In-place pairwise combine of w[0..2H): w[0] ends with the total (fully unrolled).
template <int H>
struct Tree {
  template <int B, class F>
  __device__ __forceinline__ static void run(float (&w)[B], F f) {
#pragma unroll
    for (int i = 0; i < H; ++i) w[i] = f(w[i], w[i + H]);
    Tree<H / 2>::run(w, f);
  }
};
template <>
struct Tree<0> {
  template <int B, class F>
  __device__ __forceinline__ static void run(float (&)[B], F) {}
};

template <int B, class F>
__device__ __forceinline__ float tree(const float (&v)[B], F f) {
  static_assert((B & (B - 1)) == 0, "power of two");
  float w[B];
#pragma unroll
  for (int i = 0; i < B; ++i) w[i] = v[i];
  Tree<B / 2>::run(w, f);
  return w[0];
}

struct AddF {
  __device__ __forceinline__ float operator()(float a, float b) const { return a + b; }
};
struct MulF {
  __device__ __forceinline__ float operator()(float a, float b) const { return a * b; }
};
struct MaxNanF {
  __device__ __forceinline__ float operator()(float a, float b) const { return max_nan(a, b); }
};

template <int B>
__device__ __forceinline__ float tree_sum(const float (&v)[B]) {
  return tree(v, AddF());
}

// ---- the operations: state S, init, push (one value), push_batch (B values), merge, shfl, store --

// Compensated sum: value s + c, c accumulating TwoSum rounding errors (kept finite).
struct SumOp {
  struct S {
    float s, c;
  };
  static constexpr bool kSign = false;
  __device__ __forceinline__ static S init() { return {0.f, 0.f}; }
  __device__ __forceinline__ static void add(S &st, float v) {
    const float t = st.s + v;
    const float bp = t - st.s;
    const float err = (st.s - (t - bp)) + (v - bp);
    st.c += isfinite(t) ? err : 0.f;
    st.s = t;
  }
  __device__ __forceinline__ static void push(S &st, float v, int64_t) { add(st, v); }
  template <int B>
  __device__ __forceinline__ static void push_batch(S &st, const float (&v)[B], const int64_t (&)[B]) {
    add(st, tree_sum(v));
  }
  __device__ __forceinline__ static S merge(S a, const S &b) {
    add(a, b.s);
    a.c += b.c;
    return a;
  }
  __device__ __forceinline__ static S shfl(const S &a, int off) {
    return {__shfl_xor_sync(kFull, a.s, off), __shfl_xor_sync(kFull, a.c, off)};
  }
  __device__ __forceinline__ static void store(void *y, int64_t i, const S &st, const Fin &f) {
    float r;
    if (f.kind == KC_RED_MEAN)
      r = (float)(((double)st.s + (double)st.c) / (double)f.n);  // n == 0: NaN
    else
      r = st.s + st.c;
    static_cast<float *>(y)[i] = r;
  }
};

// Plain float sum (symmetric merge: every lane of a butterfly gets the same bits).
struct PlainSumOp {
  struct S {
    float s;
  };
  __device__ __forceinline__ static S init() { return {0.f}; }
  __device__ __forceinline__ static S merge(S a, const S &b) { return {a.s + b.s}; }
  __device__ __forceinline__ static S shfl(const S &a, int off) { return {__shfl_xor_sync(kFull, a.s, off)}; }
};

struct ProdOp {
  struct S {
    float p;
  };
  static constexpr bool kSign = false;
  __device__ __forceinline__ static S init() { return {1.f}; }
  __device__ __forceinline__ static void push(S &st, float v, int64_t) { st.p *= v; }
  template <int B>
  __device__ __forceinline__ static void push_batch(S &st, const float (&v)[B], const int64_t (&)[B]) {
    st.p *= tree(v, MulF());
  }
  __device__ __forceinline__ static S merge(S a, const S &b) { return {a.p * b.p}; }
  __device__ __forceinline__ static S shfl(const S &a, int off) { return {__shfl_xor_sync(kFull, a.p, off)}; }
  __device__ __forceinline__ static void store(void *y, int64_t i, const S &st, const Fin &) {
    static_cast<float *>(y)[i] = st.p;
  }
};

// max of sgn * x with NaN propagation (MIN is -max(-x)).
struct MaxOp {
  struct S {
    float m;
  };
  static constexpr bool kSign = true;
  __device__ __forceinline__ static S init() { return {-INFINITY}; }
  __device__ __forceinline__ static void push(S &st, float v, int64_t) { st.m = max_nan(st.m, v); }
  template <int B>
  __device__ __forceinline__ static void push_batch(S &st, const float (&v)[B], const int64_t (&)[B]) {
    st.m = max_nan(st.m, tree(v, MaxNanF()));
  }
  __device__ __forceinline__ static S merge(S a, const S &b) { return {max_nan(a.m, b.m)}; }
  __device__ __forceinline__ static S shfl(const S &a, int off) { return {__shfl_xor_sync(kFull, a.m, off)}; }
  __device__ __forceinline__ static void store(void *y, int64_t i, const S &st, const Fin &f) {
    static_cast<float *>(y)[i] = f.sgn * st.m;
  }
};

// First index of the largest sgn * x, NaN counting as the largest (the first NaN wins). A thread
// pushes its values in increasing index order, so push keeps the earlier value on ties; merge
// compares with the index as tie-break, so the merge order does not matter. A state still at the
// sentinel (-inf, INT64_MAX) at the end means that every value was -inf: the answer is index 0.
struct ArgOp {
  struct S {
    float v;
    int64_t i;
  };
  static constexpr bool kSign = true;
  __device__ __forceinline__ static S init() { return {-INFINITY, INT64_MAX}; }
  __device__ __forceinline__ static bool better(float xv, int64_t xi, float v, int64_t i) {
    const bool xn = isnan(xv), vn = isnan(v);
    if (vn) return xn && xi < i;
    if (xn) return true;
    return xv > v || (xv == v && xi < i);
  }
  __device__ __forceinline__ static void push(S &st, float v, int64_t i) {
    if (v > st.v || (isnan(v) && !isnan(st.v))) st = {v, i};
  }
  template <int B>
  __device__ __forceinline__ static void push_batch(S &st, const float (&v)[B], const int64_t (&id)[B]) {
#pragma unroll
    for (int k = 0; k < B; ++k) push(st, v[k], id[k]);
  }
  __device__ __forceinline__ static S merge(S a, const S &b) { return better(b.v, b.i, a.v, a.i) ? b : a; }
  __device__ __forceinline__ static S shfl(const S &a, int off) {
    S r;
    r.v = __shfl_xor_sync(kFull, a.v, off);
    r.i = (int64_t)__shfl_xor_sync(kFull, (long long)a.i, off);
    return r;
  }
  __device__ __forceinline__ static void store(void *y, int64_t i, const S &st, const Fin &) {
    static_cast<int64_t *>(y)[i] = st.i == INT64_MAX ? 0 : st.i;
  }
};

// Count, mean and sum of squared deviations; batches by two passes in registers, merged by Chan.
struct WelfordOp {
  struct S {
    float n, mean, m2;
  };
  static constexpr bool kSign = false;
  __device__ __forceinline__ static S init() { return {0.f, 0.f, 0.f}; }
  __device__ __forceinline__ static void push(S &st, float v, int64_t) {
    const float n1 = st.n + 1.f;
    const float d = v - st.mean;
    st.mean += d / n1;
    st.m2 += d * (v - st.mean);
    st.n = n1;
  }
  template <int B>
  __device__ __forceinline__ static void push_batch(S &st, const float (&v)[B], const int64_t (&)[B]) {
    const float mb = tree_sum(v) * (1.f / B);
    float q[B];
#pragma unroll
    for (int i = 0; i < B; ++i) {
      const float d = v[i] - mb;
      q[i] = d * d;
    }
    st = merge(st, S{(float)B, mb, tree_sum(q)});
  }
  __device__ __forceinline__ static S merge(const S &a, const S &b) {
    const float nn = a.n + b.n;
    const float f = nn > 0.f ? b.n / nn : 0.f;
    const float d = b.mean - a.mean;
    return {nn, a.mean + d * f, a.m2 + b.m2 + d * d * a.n * f};
  }
  __device__ __forceinline__ static S shfl(const S &a, int off) {
    return {__shfl_xor_sync(kFull, a.n, off), __shfl_xor_sync(kFull, a.mean, off),
            __shfl_xor_sync(kFull, a.m2, off)};
  }
  __device__ __forceinline__ static void store(void *y, int64_t i, const S &st, const Fin &f) {
    double var = (double)st.m2 / (double)f.n;  // n == 0: NaN
    if (f.kind == KC_RED_STD) var = sqrt(var);
    static_cast<float *>(y)[i] = (float)var;
  }
};

// log(sum(exp(x))) as (m, s): s = sum(exp(x - m)). m is never NaN (fmaxf); a NaN input makes s
// NaN for good. ex(x, M) is 1 when x == M so that infinite maxima do not give inf - inf.
struct LseOp {
  struct S {
    float m, s;
  };
  static constexpr bool kSign = false;
  __device__ __forceinline__ static float ex(float x, float M) { return x == M ? 1.f : expf(x - M); }
  __device__ __forceinline__ static S init() { return {-INFINITY, 0.f}; }
  __device__ __forceinline__ static void push(S &st, float v, int64_t) {
    const float M = fmaxf(st.m, v);
    st.s = st.s * ex(st.m, M) + ex(v, M);
    st.m = M;
  }
  template <int B>
  __device__ __forceinline__ static void push_batch(S &st, const float (&v)[B], const int64_t (&)[B]) {
    float mb = -INFINITY;
#pragma unroll
    for (int i = 0; i < B; ++i) mb = fmaxf(mb, v[i]);
    const float M = fmaxf(st.m, mb);
    float e[B];
    if (isfinite(M)) {  // the usual case: exp(x - M) is exact at x == M and 0 at x == -inf
#pragma unroll
      for (int i = 0; i < B; ++i) e[i] = expf(v[i] - M);
      st.s = st.s * expf(st.m - M) + tree_sum(e);
    } else {
#pragma unroll
      for (int i = 0; i < B; ++i) e[i] = ex(v[i], M);
      st.s = st.s * ex(st.m, M) + tree_sum(e);
    }
    st.m = M;
  }
  __device__ __forceinline__ static S merge(const S &a, const S &b) {
    const float M = fmaxf(a.m, b.m);
    return {M, a.s * ex(a.m, M) + b.s * ex(b.m, M)};
  }
  __device__ __forceinline__ static S shfl(const S &a, int off) {
    return {__shfl_xor_sync(kFull, a.m, off), __shfl_xor_sync(kFull, a.s, off)};
  }
  __device__ __forceinline__ static void store(void *y, int64_t i, const S &st, const Fin &) {
    static_cast<float *>(y)[i] = st.m + logf(st.s);
  }
};

template <class Op>
__device__ __forceinline__ float tr(float v, float sgn) {
  if constexpr (Op::kSign)
    return v * sgn;
  else
    return v;
}

template <class Op>
__device__ __forceinline__ typename Op::S butterfly(typename Op::S st, int width) {
  for (int off = width >> 1; off > 0; off >>= 1) st = Op::merge(st, Op::shfl(st, off));
  return st;
}

// Merges the states of each group of G threads (consecutive, G a power of two); every thread of a
// group returns the group's total. All threads of the block must call it (it may synchronize).
template <class Op>
__device__ __forceinline__ typename Op::S group_reduce(typename Op::S st, int G, typename Op::S *sm) {
  using S = typename Op::S;
  if (G <= 32) return butterfly<Op>(st, G);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  st = butterfly<Op>(st, 32);
  __syncthreads();  // earlier readers of sm are done
  if (lane == 0) sm[warp] = st;
  __syncthreads();
  const int nw = G >> 5;
  const int base = warp & ~(nw - 1);
  S v = lane < nw ? sm[base + lane] : Op::init();
  return butterfly<Op>(v, 32);
}

// Merges one state per block over the cluster (sm_90): every thread of every block of the cluster
// returns the same total. All threads of the cluster must call it.
template <class Op>
__device__ __forceinline__ typename Op::S cluster_reduce(typename Op::S st, int C, typename Op::S *slot) {
  using S = typename Op::S;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  cg::cluster_group cl = cg::this_cluster();
  if (threadIdx.x == 0 && threadIdx.y == 0) *slot = st;
  cl.sync();
  const int lane = (threadIdx.y * blockDim.x + threadIdx.x) & 31;
  S v = Op::init();
  if (lane < C) v = *cl.map_shared_rank(slot, lane);
  v = butterfly<Op>(v, 32);
  cl.sync();  // no block leaves (or reuses slot) while another still reads it
  return v;
#else
  (void)C;
  (void)slot;
  return st;
#endif
}

__device__ __forceinline__ int cluster_rank(int C) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (C > 1) return (int)cg::this_cluster().block_rank();
#endif
  (void)C;
  return 0;
}

// A row's split: `head` scalars up to the first 16-byte boundary, `nv` float4s, then the tail.
__device__ __forceinline__ void row_phase(const float *xr, int64_t n, int64_t &head,
                                          int64_t &nv) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(xr);
  head = (int64_t)(((16u - (unsigned)(a & 15u)) & 15u) >> 2);
  if (head > n) head = n;
  nv = (n - head) >> 2;
}

// ---- rows (inner == 1) ---------------------------------------------------------------------

struct RowsParams {
  const float *x;
  void *y;
  int64_t outer, n;
  int G;     // threads per row
  int C;     // blocks per row (cluster size); 1: none
  int mode;  // Mode
  int yvec;  // softmax: y's rows have x's 16-byte phase
  Fin fin;
};

template <class Op>
__device__ __forceinline__ void accumulate_row(typename Op::S &st, const float *xr, int64_t n,
                                               int64_t head, int64_t nv, int64_t pos, int64_t T,
                                               float sgn) {
  for (int64_t k = pos; k < head; k += T) Op::push(st, tr<Op>(__ldg(xr + k), sgn), k);
  const float4 *x4 = reinterpret_cast<const float4 *>(xr + head);
  int64_t i = pos;
  for (; i + 3 * T < nv; i += 4 * T) {
    float4 a[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) a[u] = __ldg(x4 + i + u * T);
    float v[16];
    int64_t id[16];
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int64_t e = head + (i + u * T) * 4;
      v[4 * u + 0] = tr<Op>(a[u].x, sgn);
      v[4 * u + 1] = tr<Op>(a[u].y, sgn);
      v[4 * u + 2] = tr<Op>(a[u].z, sgn);
      v[4 * u + 3] = tr<Op>(a[u].w, sgn);
#pragma unroll
      for (int c = 0; c < 4; ++c) id[4 * u + c] = e + c;
    }
    Op::template push_batch<16>(st, v, id);
  }
  for (; i < nv; i += T) {
    const float4 a = __ldg(x4 + i);
    const int64_t e = head + i * 4;
    const float v[4] = {tr<Op>(a.x, sgn), tr<Op>(a.y, sgn), tr<Op>(a.z, sgn), tr<Op>(a.w, sgn)};
    const int64_t id[4] = {e, e + 1, e + 2, e + 3};
    Op::template push_batch<4>(st, v, id);
  }
  for (int64_t k = head + nv * 4 + pos; k < n; k += T)
    Op::push(st, tr<Op>(__ldg(xr + k), sgn), k);
}

// y[4j .. 4j+3] = r: one 16-byte store when y is 16-byte aligned (vec), else four.
__device__ __forceinline__ void store4(float *y, int64_t j, float4 r, bool vec) {
  if (vec) {
    reinterpret_cast<float4 *>(y)[j] = r;
  } else {
    y[4 * j + 0] = r.x;
    y[4 * j + 1] = r.y;
    y[4 * j + 2] = r.z;
    y[4 * j + 3] = r.w;
  }
}

__device__ __forceinline__ float softmax_value(float x, float m, float ls, float inv, bool lg) {
  return lg ? (x - m) - ls : expf(x - m) * inv;
}

// Second pass of a streamed softmax row: y = exp(x - m) / s or x - m - log(s).
__device__ __forceinline__ void softmax_row_write(const float *xr, float *yr, int64_t n,
                                                  int64_t head, int64_t nv, int64_t pos,
                                                  int64_t T, float m, float s, bool lg,
                                                  bool yvec) {
  const float ls = logf(s), inv = 1.f / s;
  for (int64_t k = pos; k < head; k += T) yr[k] = softmax_value(__ldg(xr + k), m, ls, inv, lg);
  const float4 *x4 = reinterpret_cast<const float4 *>(xr + head);
  float *yb = yr + head;
  int64_t i = pos;
  for (; i < nv; i += 4 * T) {
    float4 a[4];
#pragma unroll
    for (int u = 0; u < 4; ++u)
      if (i + u * T < nv) a[u] = __ldg(x4 + i + u * T);
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int64_t j = i + u * T;
      if (j < nv) {
        float4 r;
        r.x = softmax_value(a[u].x, m, ls, inv, lg);
        r.y = softmax_value(a[u].y, m, ls, inv, lg);
        r.z = softmax_value(a[u].z, m, ls, inv, lg);
        r.w = softmax_value(a[u].w, m, ls, inv, lg);
        store4(yb, j, r, yvec);
      }
    }
  }
  for (int64_t k = head + nv * 4 + pos; k < n; k += T)
    yr[k] = softmax_value(__ldg(xr + k), m, ls, inv, lg);
}

// SOFTMAX: Op is LseOp, and each group then writes y for its row.
template <class Op, bool SOFTMAX>
__global__ void __launch_bounds__(1024) rows_kernel(const RowsParams p) {
  using S = typename Op::S;
  __shared__ S sm_w[32];
  __shared__ S sm_c;
  const int G = p.G, C = p.C;
  const int lg = threadIdx.x & (G - 1);
  const int grp = threadIdx.x / G;
  const int R = blockDim.x / G;
  const int rank = cluster_rank(C);
  const int64_t T = (int64_t)G * C;
  const int64_t pos = (int64_t)rank * G + lg;
  const int64_t nrb = kcc_ceil_div_dev(p.outer, R);
  const int64_t step = gridDim.x / C;
  for (int64_t rb = blockIdx.x / C; rb < nrb; rb += step) {
    const int64_t row = rb * R + grp;
    const bool active = row < p.outer;
    const float *xr = p.x + (active ? row : 0) * p.n;
    int64_t head = 0, nv = 0;
    S st = Op::init();
    if (active) {
      row_phase(xr, p.n, head, nv);
      accumulate_row<Op>(st, xr, p.n, head, nv, pos, T, p.fin.sgn);
    }
    st = group_reduce<Op>(st, G, sm_w);
    if (C > 1) st = cluster_reduce<Op>(st, C, &sm_c);
    if constexpr (!SOFTMAX) {
      if (active && rank == 0 && lg == 0) Op::store(p.y, row, st, p.fin);
    } else {
      {
        if (active)
          softmax_row_write(xr, static_cast<float *>(p.y) + row * p.n, p.n, head, nv, pos, T,
                            st.m, st.s, p.mode == kLogSoftmax, p.yvec != 0);
      }
    }
  }
}

// Softmax of rows that fit in registers: G >= 4 threads per row (so the <= 3 head and <= 3 tail
// scalars each have their own thread), each holding up to K float4s. One read, one write.
template <int K>
__global__ void __launch_bounds__(512) softmax_rows_cached(const RowsParams p) {
  __shared__ MaxOp::S sm_m[32];
  __shared__ PlainSumOp::S sm_s[32];
  const int G = p.G;
  const int lg = threadIdx.x & (G - 1);
  const int grp = threadIdx.x / G;
  const int R = blockDim.x / G;
  const int64_t nrb = kcc_ceil_div_dev(p.outer, R);
  const bool lgm = p.mode == kLogSoftmax;
  for (int64_t rb = blockIdx.x; rb < nrb; rb += gridDim.x) {
    const int64_t row = rb * R + grp;
    const bool active = row < p.outer;
    const float *xr = p.x + (active ? row : 0) * p.n;
    int64_t head = 0, nv = 0;
    if (active) row_phase(xr, p.n, head, nv);
    const int64_t t0 = head + nv * 4;
    const bool hv = lg < head;                   // false when inactive (head == 0)
    const bool tv = active && t0 + lg < p.n;
    float h = -INFINITY, t = -INFINITY;
    if (hv) h = __ldg(xr + lg);
    if (tv) t = __ldg(xr + t0 + lg);
    const float4 *x4 = reinterpret_cast<const float4 *>(xr + head);
    float4 v[K];
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int64_t j = lg + (int64_t)k * G;
      if (j < nv)
        v[k] = __ldg(x4 + j);
      else
        v[k] = make_float4(-INFINITY, -INFINITY, -INFINITY, -INFINITY);
    }
    float m = max_nan(h, t);
#pragma unroll
    for (int k = 0; k < K; ++k)
      m = max_nan(m, max_nan(max_nan(v[k].x, v[k].y), max_nan(v[k].z, v[k].w)));
    m = group_reduce<MaxOp>(MaxOp::S{m}, G, sm_m).m;
    // exp(x - m), or x - m when log; padding (-inf) gives 0 and is never stored
    float s = 0.f;
    {
      const float eh = expf(h - m), et = expf(t - m);
      s = (hv ? eh : 0.f) + (tv ? et : 0.f);
      h = lgm ? h - m : eh;
      t = lgm ? t - m : et;
    }
#pragma unroll
    for (int k = 0; k < K; ++k) {
      float4 d = make_float4(v[k].x - m, v[k].y - m, v[k].z - m, v[k].w - m);
      float4 e = make_float4(expf(d.x), expf(d.y), expf(d.z), expf(d.w));
      if (lg + (int64_t)k * G < nv) s += (e.x + e.y) + (e.z + e.w);
      v[k] = lgm ? d : e;
    }
    s = group_reduce<PlainSumOp>(PlainSumOp::S{s}, G, sm_s).s;
    if (!active) continue;
    const float ls = logf(s), inv = 1.f / s;
    float *yr = static_cast<float *>(p.y) + row * p.n;
    if (hv) yr[lg] = lgm ? h - ls : h * inv;
    if (tv) yr[t0 + lg] = lgm ? t - ls : t * inv;
    float *yb = yr + head;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int64_t j = lg + (int64_t)k * G;
      if (j < nv) {
        float4 r;
        if (lgm)
          r = make_float4(v[k].x - ls, v[k].y - ls, v[k].z - ls, v[k].w - ls);
        else
          r = make_float4(v[k].x * inv, v[k].y * inv, v[k].z * inv, v[k].w * inv);
        store4(yb, j, r, p.yvec);
      }
    }
  }
}

// ---- columns (inner > 1) -------------------------------------------------------------------

struct ColsParams {
  const float *x;
  void *y;
  int64_t outer, n, inner;
  int64_t tiles;  // tiles of 4 * blockDim.x lanes per outer index
  int C;
  int mode;
  int vec;   // x: inner % 4 == 0 and 16-byte aligned
  int yvec;  // softmax: vec, and y 16-byte aligned
  Fin fin;
};

template <bool VEC>
__device__ __forceinline__ float4 load_lanes(const float *p, int64_t j0, int64_t inner) {
  if (VEC) {
    if (j0 < inner) return __ldg(reinterpret_cast<const float4 *>(p));
    return make_float4(0.f, 0.f, 0.f, 0.f);
  }
  float4 r;
  r.x = j0 + 0 < inner ? __ldg(p + 0) : 0.f;
  r.y = j0 + 1 < inner ? __ldg(p + 1) : 0.f;
  r.z = j0 + 2 < inner ? __ldg(p + 2) : 0.f;
  r.w = j0 + 3 < inner ? __ldg(p + 3) : 0.f;
  return r;
}

__device__ __forceinline__ float comp(const float4 &a, int l) {
  return l == 0 ? a.x : l == 1 ? a.y : l == 2 ? a.z : a.w;
}

template <class Op, bool VEC>
__device__ __forceinline__ void accumulate_cols(typename Op::S (&st)[4], const float *base,
                                                int64_t j0, int64_t inner, int64_t n,
                                                int64_t prow, int64_t TR, float sgn) {
  int64_t k = prow;
  for (; k + 3 * TR < n; k += 4 * TR) {
    float4 a[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) a[u] = load_lanes<VEC>(base + (k + u * TR) * inner, j0, inner);
    const int64_t id[4] = {k, k + TR, k + 2 * TR, k + 3 * TR};
#pragma unroll
    for (int l = 0; l < 4; ++l) {
      const float v[4] = {tr<Op>(comp(a[0], l), sgn), tr<Op>(comp(a[1], l), sgn),
                          tr<Op>(comp(a[2], l), sgn), tr<Op>(comp(a[3], l), sgn)};
      Op::template push_batch<4>(st[l], v, id);
    }
  }
  for (; k < n; k += TR) {
    const float4 a = load_lanes<VEC>(base + k * inner, j0, inner);
#pragma unroll
    for (int l = 0; l < 4; ++l) Op::push(st[l], tr<Op>(comp(a, l), sgn), k);
  }
}

template <bool VEC, bool YVEC>
__device__ __forceinline__ void softmax_cols_write(const float *xb, float *yb, int64_t j0,
                                                   int64_t inner, int64_t n, int64_t prow,
                                                   int64_t TR, const float (&m)[4],
                                                   const float (&ls)[4], const float (&inv)[4],
                                                   bool lgm) {
  for (int64_t k = prow; k < n; k += 4 * TR) {
    float4 a[4];
#pragma unroll
    for (int u = 0; u < 4; ++u)
      if (k + u * TR < n) a[u] = load_lanes<VEC>(xb + (k + u * TR) * inner, j0, inner);
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int64_t r = k + u * TR;
      if (r < n) {
        float4 o;
        o.x = softmax_value(a[u].x, m[0], ls[0], inv[0], lgm);
        o.y = softmax_value(a[u].y, m[1], ls[1], inv[1], lgm);
        o.z = softmax_value(a[u].z, m[2], ls[2], inv[2], lgm);
        o.w = softmax_value(a[u].w, m[3], ls[3], inv[3], lgm);
        float *q = yb + r * inner;
        if (YVEC) {
          if (j0 < inner) *reinterpret_cast<float4 *>(q) = o;
        } else {
          if (j0 + 0 < inner) q[0] = o.x;
          if (j0 + 1 < inner) q[1] = o.y;
          if (j0 + 2 < inner) q[2] = o.z;
          if (j0 + 3 < inner) q[3] = o.w;
        }
      }
    }
  }
}

// Dynamic shared memory of cols_kernel, in states: [RG][LX][4] partials when RG > 1, [LX][4]
// for the cluster exchange when C > 1, [LX][4] for the softmax broadcast.
__host__ __device__ __forceinline__ size_t cols_smem_states(int LX, int RY, int C, bool softmax) {
  const int WR = LX >= 32 ? 1 : 32 / LX;  // rows of threads per warp
  const int RG = RY / WR;                 // warps along a lane column
  return (size_t)((RG > 1 ? RG : 0) + (C > 1 ? 1 : 0) + (softmax ? 1 : 0)) * LX * 4;
}

// SOFTMAX: Op is LseOp, and after the (m, s) of every lane each thread writes y for its rows.
template <class Op, bool SOFTMAX>
__global__ void __launch_bounds__(128) cols_kernel(const ColsParams p) {
  using S = typename Op::S;
  extern __shared__ __align__(16) unsigned char smraw[];
  const int LX = blockDim.x, RY = blockDim.y;
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int WR = LX >= 32 ? 1 : 32 / LX;  // rows of threads per warp
  const int RG = RY / WR;                 // warps along a lane column
  const int C = p.C;
  S *sm = reinterpret_cast<S *>(smraw);                     // [RG][LX][4]
  S *smx = sm + (RG > 1 ? (size_t)RG * LX * 4 : 0);         // [LX][4]: cluster exchange
  S *smb = smx + (C > 1 ? (size_t)LX * 4 : 0);              // [LX][4]: softmax broadcast
  const int rank = cluster_rank(C);
  const int64_t TR = (int64_t)RY * C;
  const int64_t prow = (int64_t)rank * RY + ty;
  const int64_t items = p.outer * p.tiles;
  for (int64_t item = blockIdx.x / C; item < items; item += gridDim.x / C) {
    const int64_t o = item / p.tiles;
    const int64_t j0 = (item - o * p.tiles) * 4 * LX + 4 * tx;
    const int64_t off = o * p.n * p.inner + j0;
    const float *xb = p.x + off;
    S st[4];
#pragma unroll
    for (int l = 0; l < 4; ++l) st[l] = Op::init();
    if (p.vec)
      accumulate_cols<Op, true>(st, xb, j0, p.inner, p.n, prow, TR, p.fin.sgn);
    else
      accumulate_cols<Op, false>(st, xb, j0, p.inner, p.n, prow, TR, p.fin.sgn);
    // rows of threads within a warp
    for (int sh = LX; sh < 32; sh <<= 1) {
#pragma unroll
      for (int l = 0; l < 4; ++l) st[l] = Op::merge(st[l], Op::shfl(st[l], sh));
    }
    // warps along n, through shared memory; thread row 0 ends with the block's total
    if (RG > 1) {
      __syncthreads();
      if (ty % WR == 0) {
#pragma unroll
        for (int l = 0; l < 4; ++l) sm[((size_t)(ty / WR) * LX + tx) * 4 + l] = st[l];
      }
      __syncthreads();
      if (ty == 0) {
        for (int g = 1; g < RG; ++g) {
#pragma unroll
          for (int l = 0; l < 4; ++l) st[l] = Op::merge(st[l], sm[((size_t)g * LX + tx) * 4 + l]);
        }
      }
    }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if (C > 1) {
      cg::cluster_group cl = cg::this_cluster();
      if (ty == 0) {
#pragma unroll
        for (int l = 0; l < 4; ++l) smx[tx * 4 + l] = st[l];
      }
      cl.sync();
      if (ty == 0) {
        S acc[4];
#pragma unroll
        for (int l = 0; l < 4; ++l) acc[l] = Op::init();
        for (int r = 0; r < C; ++r) {
          const S *rem = cl.map_shared_rank(smx, r);
#pragma unroll
          for (int l = 0; l < 4; ++l) acc[l] = Op::merge(acc[l], rem[tx * 4 + l]);
        }
#pragma unroll
        for (int l = 0; l < 4; ++l) st[l] = acc[l];
      }
      cl.sync();
    }
#endif
    if constexpr (!SOFTMAX) {
      if (ty == 0 && rank == 0) {
        const int64_t yo = o * p.inner + j0;
#pragma unroll
        for (int l = 0; l < 4; ++l)
          if (j0 + l < p.inner) Op::store(p.y, yo + l, st[l], p.fin);
      }
    } else {
      {
        __syncthreads();  // earlier readers of smb are done
        if (ty == 0) {
#pragma unroll
          for (int l = 0; l < 4; ++l) smb[tx * 4 + l] = st[l];
        }
        __syncthreads();
        float m[4], ls[4], inv[4];
#pragma unroll
        for (int l = 0; l < 4; ++l) {
          const S b = smb[tx * 4 + l];
          m[l] = b.m;
          ls[l] = logf(b.s);
          inv[l] = 1.f / b.s;
        }
        float *yb = static_cast<float *>(p.y) + off;
        const bool lgm = p.mode == kLogSoftmax;
        if (p.yvec)
          softmax_cols_write<true, true>(xb, yb, j0, p.inner, p.n, prow, TR, m, ls, inv, lgm);
        else if (p.vec)
          softmax_cols_write<true, false>(xb, yb, j0, p.inner, p.n, prow, TR, m, ls, inv, lgm);
        else
          softmax_cols_write<false, false>(xb, yb, j0, p.inner, p.n, prow, TR, m, ls, inv, lgm);
      }
    }
  }
}

// ---- column softmax with the columns held on chip (sm_90) ----------------------------------
// cols_kernel reads x twice (statistics, then y). Here a cluster of C blocks holds a stripe of
// kResW columns for all n rows in shared memory, R = ceil(n / C) rows per block, so x is read once:
// each thread's (max, sum) over its rows from shared memory, merged over the block, then over
// the cluster through distributed shared memory in rank order (every block gets the same bits),
// then y written from shared memory. Needs inner % 4 == 0 and x, y 16-byte aligned.
constexpr int kResW = 32;  // columns a stripe: 128-byte row segments (16 measured slower)
constexpr int kResThreads = 256;

struct ResParams {
  const float *x;
  float *y;
  int64_t n, inner, stripes;  // stripes of kResW columns per outer index
  int R;                      // rows per block
  int lg;                     // log_softmax
};

__host__ __device__ constexpr size_t res_smem(int R) {
  return (size_t)R * kResW * sizeof(float) + (kResThreads / 32 + 2) * kResW * sizeof(LseOp::S);
}

// kResW / 4 threads a row (a float4 each), kResThreads * 4 / kResW rows a step.
__global__ void __launch_bounds__(kResThreads) softmax_cols_resident(const ResParams p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  using S = LseOp::S;
  constexpr int W = kResW, Q = W / 4, STEP = kResThreads / Q;
  extern __shared__ __align__(16) unsigned char smraw[];
  float4 *tile = reinterpret_cast<float4 *>(smraw);                  // [R][Q]
  S *warp_part = reinterpret_cast<S *>(tile + (size_t)p.R * Q);       // [warps][W]
  S *part = warp_part + (kResThreads / 32) * W;                      // [W]: this block's
  S *total = part + W;                                               // [W]: the cluster's
  cg::cluster_group cl = cg::this_cluster();
  const int C = (int)cl.num_blocks(), rank = (int)cl.block_rank();
  const int t = threadIdx.x, q = t % Q, rr = t / Q;
  const int64_t item = blockIdx.x / C;
  const int64_t o = item / p.stripes;
  const int64_t j0 = (item - o * p.stripes) * W + 4 * q;
  const bool live = j0 < p.inner;  // inner % 4 == 0: a quad is all in or all out
  const int64_t r0 = (int64_t)rank * p.R;
  const int rows = (int)(p.n - r0 < p.R ? (p.n - r0 > 0 ? p.n - r0 : 0) : p.R);
  const int64_t off = o * p.n * p.inner + r0 * p.inner + j0;
  if (live)
    for (int r = rr; r < rows; r += STEP)
      kcc::cp_async16(&tile[(size_t)r * Q + q], p.x + off + (int64_t)r * p.inner);
  asm volatile("cp.async.wait_all;" ::: "memory");  // (a thread reads only what it copied)
  // each thread's (max, sum) of its rows, per column: the max first, so one exp per element
  float m[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY}, sum[4] = {0.f, 0.f, 0.f, 0.f};
  for (int r = rr; r < rows; r += STEP) {
    const float4 v = tile[(size_t)r * Q + q];
    m[0] = fmaxf(m[0], v.x), m[1] = fmaxf(m[1], v.y), m[2] = fmaxf(m[2], v.z), m[3] = fmaxf(m[3], v.w);
  }
  for (int r = rr; r < rows; r += STEP) {
    const float4 v = tile[(size_t)r * Q + q];
    sum[0] += LseOp::ex(v.x, m[0]), sum[1] += LseOp::ex(v.y, m[1]);
    sum[2] += LseOp::ex(v.z, m[2]), sum[3] += LseOp::ex(v.w, m[3]);
  }
  S st[4];
#pragma unroll
  for (int l = 0; l < 4; ++l) {
    st[l] = {m[l], sum[l]};
    for (int sh = Q; sh < 32; sh <<= 1) st[l] = LseOp::merge(st[l], LseOp::shfl(st[l], sh));
  }
  const int lane = t & 31, warp = t >> 5;
  if (lane < Q) {
#pragma unroll
    for (int l = 0; l < 4; ++l) warp_part[warp * W + 4 * lane + l] = st[l];
  }
  __syncthreads();
  if (t < W) {
    S b = LseOp::init();
    for (int w = 0; w < kResThreads / 32; ++w) b = LseOp::merge(b, warp_part[w * W + t]);
    part[t] = b;
  }
  cl.sync();  // every block's part is written
  if (t < W) {
    S c = LseOp::init();
    for (int r = 0; r < C; ++r) c = LseOp::merge(c, cl.map_shared_rank(part, r)[t]);
    total[t] = c;
  }
  // this block is done reading the others' shared memory; it waits for them before leaving
  asm volatile("barrier.cluster.arrive.release.aligned;" ::: "memory");
  __syncthreads();
  float mm[4], ls[4], inv[4];
#pragma unroll
  for (int l = 0; l < 4; ++l) {
    const S c = total[4 * q + l];
    mm[l] = c.m;
    ls[l] = logf(c.s);
    inv[l] = 1.f / c.s;
  }
  const bool lg = p.lg;
  if (live)
    for (int r = rr; r < rows; r += STEP) {
      const float4 v = tile[(size_t)r * Q + q];
      float4 y;
      y.x = softmax_value(v.x, mm[0], ls[0], inv[0], lg);
      y.y = softmax_value(v.y, mm[1], ls[1], inv[1], lg);
      y.z = softmax_value(v.z, mm[2], ls[2], inv[2], lg);
      y.w = softmax_value(v.w, mm[3], ls[3], inv[3], lg);
      *reinterpret_cast<float4 *>(p.y + off + (int64_t)r * p.inner) = y;
    }
  asm volatile("barrier.cluster.wait.acquire.aligned;" ::: "memory");
#endif
}

// ---- host side -----------------------------------------------------------------------------

struct DevInfo {
  int sms;
  int major;
};

int32_t device_info(DevInfo &d) {
  static std::atomic<int> cache[64];  // (major << 16) | sms, 0 = unknown
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return kcc::cuda_error("cudaGetDevice", e);
  int packed = (dev >= 0 && dev < 64) ? cache[dev].load(std::memory_order_relaxed) : 0;
  if (packed == 0) {
    int sms = 0, major = 0;
    e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    if (e != cudaSuccess) return kcc::cuda_error("cudaDeviceGetAttribute", e);
    if (sms < 1) sms = 1;
    packed = (major << 16) | (sms & 0xffff);
    if (dev >= 0 && dev < 64) cache[dev].store(packed, std::memory_order_relaxed);
  }
  d.sms = packed & 0xffff;
  d.major = packed >> 16;
  return KC_OK;
}

bool clusters_allowed(const DevInfo &d) {
  if (d.major < 9) return false;
  const char *e = getenv("KCOMP_CUDA_REDUCE_CLUSTER");
  return !(e && e[0] == '0');
}

int64_t next_pow2(int64_t v) {
  int64_t p = 1;
  while (p < v) p <<= 1;
  return p;
}

int64_t pow2_floor(int64_t v) {
  int64_t p = 1;
  while (p * 2 <= v) p <<= 1;
  return p;
}

// Launches kernel<<<grid, block, smem, stream>>>(params) with a cluster of C blocks along x
// (grid must be a multiple of C); C == 1 is a plain launch.
template <class P>
cudaError_t launch(void (*kernel)(P), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                   int C, const P &params) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  if (C > 1) {
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = (unsigned)C;
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
  }
  return cudaLaunchKernelEx(&cfg, kernel, params);
}

// The largest cluster (16 where the device allows non-portable sizes and one fits, else the
// portable 8) for `kernel` with `threads`-thread blocks; cached per kernel in `cache`.
template <class P>
int cluster_limit(void (*kernel)(P), int threads, size_t smem, std::atomic<int> &cache) {
  int v = cache.load(std::memory_order_relaxed);
  if (v) return v;
  v = 8;
  if (cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1) ==
      cudaSuccess) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(16);
    cfg.blockDim = dim3((unsigned)threads);
    cfg.dynamicSmemBytes = smem;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = 16;
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    int count = 0;
    if (cudaOccupancyMaxActiveClusters(&count, kernel, &cfg) == cudaSuccess && count >= 1) v = 16;
  }
  (void)cudaGetLastError();
  cache.store(v, std::memory_order_relaxed);
  return v;
}

// Threads per row for the row kernels: >= ~64 elements each, more threads while the GPU would
// otherwise be short of them (down to ~16 elements each).
int rows_group(int64_t outer, int64_t n, const DevInfo &d) {
  int64_t G = 1;
  while (G < 1024 && G * 64 < n) G <<= 1;
  while (G < 1024 && G * 16 < n && outer * G < (int64_t)d.sms * 2048) G <<= 1;
  return (int)G;
}

template <class Op, bool SOFTMAX>
int32_t launch_rows(const float *x, void *y, int64_t outer, int64_t n, int mode, int yvec,
                    const Fin &fin, const DevInfo &d, cudaStream_t stream, const char *name) {
  RowsParams p;
  p.x = x;
  p.y = y;
  p.outer = outer;
  p.n = n;
  p.G = rows_group(outer, n, d);
  p.C = 1;
  p.mode = mode;
  p.yvec = yvec;
  p.fin = fin;
  const int B = p.G < 256 ? 256 : p.G;
  const int64_t R = B / p.G;
  const int64_t nrb = kcc::ceil_div(outer, R);
  if (p.G == 1024 && outer < 2 * (int64_t)d.sms && clusters_allowed(d)) {
    int64_t c = kcc::ceil_div(2 * (int64_t)d.sms, outer);
    c = c < n / (1024 * 32) ? c : n / (1024 * 32);
    static std::atomic<int> limit_cache{0};
    const int limit = cluster_limit(rows_kernel<Op, SOFTMAX>, 1024, 0, limit_cache);
    if (c > limit) c = limit;
    for (p.C = (int)pow2_floor(c); p.C >= 2; p.C /= 2) {
      const cudaError_t e =
          launch(rows_kernel<Op, SOFTMAX>, dim3((unsigned)(nrb * p.C)), dim3(B), 0, stream, p.C, p);
      if (e == cudaSuccess) return kcc::check_launch(name);
      (void)cudaGetLastError();  // cluster refused: try a smaller one
    }
    p.C = 1;
  }
  const int64_t cap = (int64_t)d.sms * 32;
  const unsigned grid = (unsigned)(nrb < cap ? nrb : cap);
  rows_kernel<Op, SOFTMAX><<<grid, B, 0, stream>>>(p);
  return kcc::check_launch(name);
}

template <class Op, bool SOFTMAX>
int32_t launch_cols(const float *x, void *y, int64_t outer, int64_t n, int64_t inner, int mode,
                    int yvec, const Fin &fin, const DevInfo &d, cudaStream_t stream,
                    const char *name) {
  ColsParams p;
  p.x = x;
  p.y = y;
  p.outer = outer;
  p.n = n;
  p.inner = inner;
  p.C = 1;
  p.mode = mode;
  p.vec = (inner % 4 == 0 && (reinterpret_cast<uintptr_t>(x) & 15u) == 0) ? 1 : 0;
  p.yvec = yvec && p.vec;
  p.fin = fin;
  // LX threads across the lanes (4 lanes each), RY along n; 128 threads (small blocks: the last
  // wave of a grid of few, long-running blocks is short), each with >= ~16 rows
  const int64_t nq2 = next_pow2(kcc::ceil_div(inner, 4));
  int64_t LX = nq2 < 8 ? nq2 : 8;
  int64_t RY = kColsThreads / LX;
  const int64_t ry_n = pow2_floor(n / 16 > 1 ? n / 16 : 1);
  if (RY > ry_n) {  // short columns: fewer threads along n, a wider tile
    RY = ry_n;
    const int64_t want = kColsThreads / RY;
    LX = want < nq2 ? want : nq2;
  }
  if (LX * RY < 32) RY = 32 / LX;
  p.tiles = kcc::ceil_div(inner, 4 * LX);
  const int64_t items = outer * p.tiles;
  const dim3 block((unsigned)LX, (unsigned)RY);
  auto smem = [&](int C) {
    return cols_smem_states((int)LX, (int)RY, C, SOFTMAX) * sizeof(typename Op::S);
  };
  if (items < 2 * (int64_t)d.sms && clusters_allowed(d)) {
    int64_t c = kcc::ceil_div(2 * (int64_t)d.sms, items);
    const int64_t by_n = n / (RY * 16);
    c = c < by_n ? c : by_n;
    static std::atomic<int> limit_cache{0};
    const int limit = cluster_limit(cols_kernel<Op, SOFTMAX>, kColsThreads, smem(16), limit_cache);
    if (c > limit) c = limit;
    for (p.C = (int)pow2_floor(c); p.C >= 2; p.C /= 2) {
      const cudaError_t e = launch(cols_kernel<Op, SOFTMAX>, dim3((unsigned)(items * p.C)),
                                   block, smem(p.C), stream, p.C, p);
      if (e == cudaSuccess) return kcc::check_launch(name);
      (void)cudaGetLastError();  // cluster refused: try a smaller one
    }
    p.C = 1;
  }
  const int64_t cap = (int64_t)d.sms * 32;
  const unsigned grid = (unsigned)(items < cap ? items : cap);
  cols_kernel<Op, SOFTMAX><<<grid, block, smem(1), stream>>>(p);
  return kcc::check_launch(name);
}

// softmax_cols_resident where it applies: sm_90 clusters, aligned float4 quads, n >= 2048, and
// a cluster of up to 16 blocks that holds a stripe's n rows in at most 64 KB a block (three
// blocks an SM). With more rows a block (one or two blocks an SM, each loading, waiting on its
// cluster, then storing) it was slower than the streamed kernel on an H100: (16384, 16384) 1.54
// against 1.19 ms; (1, 4096, 65536) 1.00 against 1.19 ms (bench/gpu_softmax_cols.py). Stripes of
// 16 columns, which fit 16384 rows in 64 KB a block, were slower too: (16384, 16384) 1.51 ms,
// (4, 12000, 4096) 1.09 against 0.87. So were persistent clusters that split a stripe's rows
// so that its second read would hit L2 (2.1 ms and more at (16384, 16384)). Returns false when
// it does not apply or the device refuses the cluster.
bool launch_resident(const float *x, float *y, int64_t outer, int64_t n, int64_t inner, bool lg,
                     const DevInfo &d, cudaStream_t stream, int32_t &status) {
  if (!clusters_allowed(d) || n < 2048 || inner % 4 != 0 ||
      ((reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(y)) & 15u) != 0)
    return false;
  constexpr int64_t kRows = 65536 / (kResW * 4);
  static std::atomic<int> limit_cache{0};
  static const bool smem_ok =
      cudaFuncSetAttribute(softmax_cols_resident, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           (int)res_smem((int)kRows)) == cudaSuccess;
  if (!smem_ok) {
    (void)cudaGetLastError();
    return false;
  }
  const int limit =
      cluster_limit(softmax_cols_resident, kResThreads, res_smem((int)kRows), limit_cache);
  int C = 2;
  while (C < limit && kcc::ceil_div(n, C) > kRows) C *= 2;
  ResParams p;
  p.x = x;
  p.y = y;
  p.n = n;
  p.inner = inner;
  p.stripes = kcc::ceil_div(inner, kResW);
  const int64_t R = kcc::ceil_div(n, C), blocks = outer * p.stripes * C;
  if (R > kRows || blocks > INT32_MAX) return false;
  p.R = (int)R;
  p.lg = lg;
  const cudaError_t e = launch(softmax_cols_resident, dim3((unsigned)blocks), dim3(kResThreads),
                               res_smem(p.R), stream, C, p);
  if (e != cudaSuccess) {  // refused (no room for such a cluster): the streamed kernel
    (void)cudaGetLastError();
    return false;
  }
  status = kcc::check_launch("kc_cuda_softmax softmax_cols_resident");
  return true;
}

template <class Op>
int32_t launch_reduce(const kc_cuda_reduce_args &a, const Fin &fin, const DevInfo &d,
                      cudaStream_t stream) {
  const float *x = static_cast<const float *>(a.x);
  if (a.inner == 1)
    return launch_rows<Op, false>(x, a.y, a.outer, a.n, kReduce, 0, fin, d, stream,
                           "kc_cuda_reduce rows_kernel");
  return launch_cols<Op, false>(x, a.y, a.outer, a.n, a.inner, kReduce, 0, fin, d, stream,
                         "kc_cuda_reduce cols_kernel");
}

// outer * n * inner without overflow (all >= 0).
bool size_ok(int64_t outer, int64_t n, int64_t inner) {
  int64_t t = 0;
  if (__builtin_mul_overflow(outer, n, &t)) return false;
  if (__builtin_mul_overflow(t, inner, &t)) return false;
  return t <= INT64_MAX / 8;
}

}  // namespace

extern "C" KC_EXPORT int32_t kc_cuda_reduce(const kc_cuda_reduce_args *args, void *stream) {
  if (!args) return kcc::set_error(KC_EINVAL, "kc_cuda_reduce: args is NULL");
  const kc_cuda_reduce_args &a = *args;
  if (a.dtype != KC_FLOAT32)
    return kcc::set_error(KC_EINVAL, "kc_cuda_reduce: dtype must be KC_FLOAT32");
  if (a.kind < KC_RED_SUM || a.kind > KC_RED_ARGMIN)
    return kcc::set_error(KC_EINVAL, "kc_cuda_reduce: unknown reduction kind");
  if (a.outer < 0 || a.n < 0 || a.inner < 0)
    return kcc::set_error(KC_EINVAL, "kc_cuda_reduce: negative outer, n or inner");
  if (!size_ok(a.outer, a.n, a.inner))
    return kcc::set_error(KC_EINVAL, "kc_cuda_reduce: outer * n * inner overflows");
  const bool arg = a.kind == KC_RED_ARGMAX || a.kind == KC_RED_ARGMIN;
  if (a.n == 0 && (arg || a.kind == KC_RED_MAX || a.kind == KC_RED_MIN))
    return kcc::set_error(KC_EINVAL,
                          "kc_cuda_reduce: max/min/argmax/argmin of an empty axis (n == 0)");
  const int64_t outputs = a.outer * a.inner;
  if (outputs == 0) return KC_OK;
  if (!a.y) return kcc::set_error(KC_EINVAL, "kc_cuda_reduce: y is NULL");
  if (a.n > 0 && !a.x) return kcc::set_error(KC_EINVAL, "kc_cuda_reduce: x is NULL");
  if ((reinterpret_cast<uintptr_t>(a.x) & 3u) != 0)
    return kcc::set_error(KC_EINVAL, "kc_cuda_reduce: x is not 4-byte aligned");
  if ((reinterpret_cast<uintptr_t>(a.y) & (arg ? 7u : 3u)) != 0)
    return kcc::set_error(KC_EINVAL, "kc_cuda_reduce: y is not aligned to its element size");
  DevInfo d;
  const int32_t st = device_info(d);
  if (st != KC_OK) return st;
  const cudaStream_t s = kcc::as_stream(stream);
  const float sgn = (a.kind == KC_RED_MIN || a.kind == KC_RED_ARGMIN) ? -1.f : 1.f;
  const Fin fin{a.kind, a.n, sgn};
  switch (a.kind) {
    case KC_RED_SUM:
    case KC_RED_MEAN:
      return launch_reduce<SumOp>(a, fin, d, s);
    case KC_RED_PROD:
      return launch_reduce<ProdOp>(a, fin, d, s);
    case KC_RED_MAX:
    case KC_RED_MIN:
      return launch_reduce<MaxOp>(a, fin, d, s);
    case KC_RED_VAR:
    case KC_RED_STD:
      return launch_reduce<WelfordOp>(a, fin, d, s);
    case KC_RED_LOGSUMEXP:
      return launch_reduce<LseOp>(a, fin, d, s);
    default:
      return launch_reduce<ArgOp>(a, fin, d, s);
  }
}

extern "C" KC_EXPORT int32_t kc_cuda_softmax(const kc_cuda_softmax_args *args, void *stream) {
  if (!args) return kcc::set_error(KC_EINVAL, "kc_cuda_softmax: args is NULL");
  const kc_cuda_softmax_args &a = *args;
  if (a.outer < 0 || a.n < 0 || a.inner < 0)
    return kcc::set_error(KC_EINVAL, "kc_cuda_softmax: negative outer, n or inner");
  if (!size_ok(a.outer, a.n, a.inner))
    return kcc::set_error(KC_EINVAL, "kc_cuda_softmax: outer * n * inner overflows");
  if (a.outer * a.n * a.inner == 0) return KC_OK;
  if (!a.x) return kcc::set_error(KC_EINVAL, "kc_cuda_softmax: x is NULL");
  if (!a.y) return kcc::set_error(KC_EINVAL, "kc_cuda_softmax: y is NULL");
  if ((reinterpret_cast<uintptr_t>(a.x) & 3u) != 0 || (reinterpret_cast<uintptr_t>(a.y) & 3u) != 0)
    return kcc::set_error(KC_EINVAL, "kc_cuda_softmax: x or y is not 4-byte aligned");
  DevInfo d;
  const int32_t st = device_info(d);
  if (st != KC_OK) return st;
  const cudaStream_t s = kcc::as_stream(stream);
  const int mode = a.log ? kLogSoftmax : kSoftmax;
  const Fin fin{KC_RED_LOGSUMEXP, a.n, 1.f};
  if (a.inner > 1) {
    int32_t status = KC_OK;
    if (launch_resident(a.x, a.y, a.outer, a.n, a.inner, a.log, d, s, status)) return status;
    const int yvec = (reinterpret_cast<uintptr_t>(a.y) & 15u) == 0;
    return launch_cols<LseOp, true>(a.x, a.y, a.outer, a.n, a.inner, mode, yvec, fin, d, s,
                              "kc_cuda_softmax cols_kernel");
  }
  // rows: y's rows take x's 16-byte phase when the two pointers differ by a multiple of 16
  const int yvec =
      ((reinterpret_cast<uintptr_t>(a.y) - reinterpret_cast<uintptr_t>(a.x)) & 15u) == 0;
  if (a.n <= kSoftmaxCachedMaxN) {
    RowsParams p;
    p.x = a.x;
    p.y = a.y;
    p.outer = a.outer;
    p.n = a.n;
    // every row 16-byte aligned: no head or tail, any G; else G >= 4 (one thread per scalar)
    const bool whole = (reinterpret_cast<uintptr_t>(a.x) & 15u) == 0 && a.n % 4 == 0;
    int64_t G = whole ? 1 : 4;
    while (G * 4 * kSoftmaxK < a.n) G <<= 1;  // G * 32 >= n >= 4 * nv, G <= 512
    p.G = (int)G;
    p.C = 1;
    p.mode = mode;
    p.yvec = yvec;
    p.fin = fin;
    const int B = G < 128 ? 128 : (int)G;
    const int64_t nrb = kcc::ceil_div(a.outer, B / G);
    const int64_t cap = (int64_t)d.sms * 32;
    const unsigned grid = (unsigned)(nrb < cap ? nrb : cap);
    softmax_rows_cached<kSoftmaxK><<<grid, B, 0, s>>>(p);
    return kcc::check_launch("kc_cuda_softmax softmax_rows_cached");
  }
  return launch_rows<LseOp, true>(a.x, a.y, a.outer, a.n, mode, yvec, fin, d, s,
                            "kc_cuda_softmax rows_kernel");
}
