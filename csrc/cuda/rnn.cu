// kc_cuda_lstm: a Keras LSTM layer's time loop on the GPU, float32 (contract in cuda_api.h).
//
// Per step: z = xproj[t] + h_{t-1} W_rec (batch, 4 units; gate blocks i | f | c | o), then
// i, f, o = rec(z_i, z_f, z_o); c = f c + i tanh(z_c); h = o tanh(c).
//
// Fast path, one persistent cooperative kernel for all the steps. Block j owns the units
// [j U, j U + U) and keeps their 4 U columns of W_rec in shared memory for the whole loop, and
// their cell state c in shared memory too. Each step a block stages h_{t-1} (batch x units, read
// through L2) into shared memory in chunks of rows, computes z for its units, applies the gate
// math and writes its slice of h_t; then the grid synchronizes (cooperative_groups grid sync)
// before the next step. U is the smallest count that keeps the grid within one block per SM.
// h_t goes to h_seq[t] when h_seq is given (h_{t-1} is read back from h_seq[t-1]); otherwise the
// steps alternate between h_out and c_out as the two h buffers, arranged so that the last step
// lands in h_out, and c is written to c_out after a final grid sync. No scratch memory.
//
// Fallback, when the weight slices do not fit on chip across a co-resident grid or the device
// cannot launch cooperatively: one kernel launch per step; a block computes a tile of 16 units
// x up to 64 batch rows, streaming W_rec and h_{t-1} through shared memory in chunks of 64 k,
// with the gate math in its epilogue; c lives in c_out. Without h_seq and with 2+ steps it needs
// one scratch buffer of batch x units floats (stream-ordered cudaMallocAsync / cudaFreeAsync).
//
// Inner product, both paths: a thread accumulates a 4 rows x 4 gates tile of one unit over a
// slice of k (float4 shared-memory loads of 4 k of h and of W_rec, 64 FFMAs), KS threads share a
// tile and their partial sums are reduced by a shuffle reduce-scatter (15 shuffles for 16 lanes)
// into a shared-memory z tile, which the epilogue threads read one (row, unit) cell each.
#include <cooperative_groups.h>
#include <stdint.h>

#include "common.cuh"

namespace cg = cooperative_groups;

namespace {

constexpr int kThreads = 256;
constexpr unsigned kFull = 0xffffffffu;
constexpr int kRedFloats = (kThreads / 32) * 16;  // cross-warp partial sums (KS > 32)

// fallback tile: 16 units x (4..64) rows, k in chunks of 64
constexpr int kFbUnits = 16;
constexpr int kFbK = 64;
constexpr int kFbKQ = kFbK / 4;
constexpr int kFbRowsMax = 64;
constexpr int kFbSH = kFbK + 4;
constexpr int kFbUnitStrideMax = 16 * kFbKQ + 28;

struct LstmParams {
  const float *xproj, *w, *h0, *c0;
  float *h_seq, *h_out, *c_out;
  long long steps;
  int batch, units;
  int hard;  // recurrent activation: hard_sigmoid (1) or sigmoid (0)
  int vec;   // float4 loads of h rows: units % 4 == 0 and every h buffer 16-byte aligned
  // persistent layout (floats): U units per block, nq = ceil(units / 4) k groups, bc rows per
  // chunk, KS = 1 << ks_log2 threads per tile, us floats per unit of W_rec, sh per row of h
  int U, nq, bc, ks_log2, us, sh;
};

struct StepArgs {
  long long t;
  const float *src;  // h_{t-1}
  float *dst;        // h_t
  const float *c_in; // c_{t-1}: c0, then c_out (updated in place)
  float *h_also;     // h_out at the last step when h_seq is given, else NULL
  int bt;            // rows per block: 4, 8, 16, 32 or 64
  int ks_log2;       // KS = 64 / bt
  int us;            // floats per unit of the W_rec chunk
  int n_ut;          // unit tiles
};

// floats per unit of a W_rec slice laid out [i = k % 4][q = k / 4][gate], nq groups of 4 k:
// padded so that KS < 8 lanes of neighbouring units fall in different banks
__host__ __device__ inline int unit_stride(int nq, int ks) {
  return 4 * (4 * nq + ((ks - 4 * nq) & 7));
}

__device__ __forceinline__ float rec_gate(float x, int hard) {
  return hard ? fminf(fmaxf(0.2f * x + 0.5f, 0.f), 1.f) : 1.f / (1.f + expf(-x));
}

__device__ __forceinline__ float lstm_cell(float zi, float zf, float zc, float zo, float &c,
                                           int hard) {
  const float i = rec_gate(zi, hard), f = rec_gate(zf, hard), o = rec_gate(zo, hard);
  c = f * c + i * tanhf(zc);
  return o * tanhf(c);
}

// Rows [b0, b0 + rows4) x columns [k0, k0 + 4 nq) of the row-major h (n floats per row) into
// dst (sh floats per row); rows >= rows and columns >= n read as 0. Loads bypass L1 (__ldcg):
// in the persistent kernel other blocks wrote them during this launch.
__device__ __forceinline__ void stage_rows(float *__restrict__ dst, int sh,
                                           const float *__restrict__ src, int n, int b0, int rows,
                                           int rows4, int k0, int nq, int vec) {
  // element e = r nq + q, e = threadIdx.x + j kThreads: (r, q) advanced without divisions
  const int dr = kThreads / nq, dq = kThreads - dr * nq;  // dq < nq
  int r = (int)threadIdx.x / nq, q = (int)threadIdx.x - r * nq;
  while (r < rows4) {
    float4 v[8];
    int rr[8], qq[8];
#pragma unroll
    for (int u = 0; u < 8; ++u) {
      rr[u] = r;
      qq[u] = q;
      v[u] = make_float4(0.f, 0.f, 0.f, 0.f);
      const int k = k0 + 4 * q;
      if (r < rows && k < n) {
        const float *p = src + (int64_t)(b0 + r) * n + k;
        if (vec) {
          v[u] = __ldcg(reinterpret_cast<const float4 *>(p));
        } else {
          v[u].x = __ldcg(p);
          if (k + 1 < n) v[u].y = __ldcg(p + 1);
          if (k + 2 < n) v[u].z = __ldcg(p + 2);
          if (k + 3 < n) v[u].w = __ldcg(p + 3);
        }
      }
      r += dr;
      q += dq;
      if (q >= nq) {
        q -= nq;
        ++r;
      }
    }
#pragma unroll
    for (int u = 0; u < 8; ++u)
      if (rr[u] < rows4) *reinterpret_cast<float4 *>(dst + rr[u] * sh + 4 * qq[u]) = v[u];
  }
}

// acc[r * 4 + g] += sum over k groups q = q0, q0 + qstep, ... < nq of h[r][4q + i] w[4q + i][g]:
// hs is the tile's first row (4 rows sh floats apart), ws the unit's W_rec slice.
__device__ __forceinline__ void tile_dot(float (&acc)[16], const float *__restrict__ hs, int sh,
                                         const float *__restrict__ ws, int nq, int q0,
                                         int qstep) {
#pragma unroll 2
  for (int q = q0; q < nq; q += qstep) {
    float4 h[4], w[4];
#pragma unroll
    for (int r = 0; r < 4; ++r) h[r] = *reinterpret_cast<const float4 *>(hs + r * sh + 4 * q);
#pragma unroll
    for (int i = 0; i < 4; ++i) w[i] = *reinterpret_cast<const float4 *>(ws + 4 * (i * nq + q));
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const float hr[4] = {h[r].x, h[r].y, h[r].z, h[r].w};
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        acc[r * 4 + 0] = fmaf(hr[i], w[i].x, acc[r * 4 + 0]);
        acc[r * 4 + 1] = fmaf(hr[i], w[i].y, acc[r * 4 + 1]);
        acc[r * 4 + 2] = fmaf(hr[i], w[i].z, acc[r * 4 + 2]);
        acc[r * 4 + 3] = fmaf(hr[i], w[i].w, acc[r * 4 + 3]);
      }
    }
  }
}

// Reduce-scatter of the 16 partial sums over the min(KS, 32) lanes that share a tile (an aligned
// group of the warp; every lane of the warp must call this, KS warp-uniform). Afterwards lane ks
// holds complete sums in v[0 .. live) (live = 16 / min(KS, 16)), v[p] being the tile's element
// tile_elem(ks, p).
__device__ __forceinline__ void reduce_tile(float (&v)[16], int ks, int KS) {
  if (KS > 1) {
    const bool up = ks & 1;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const float send = up ? v[j] : v[j + 8], keep = up ? v[j + 8] : v[j];
      v[j] = keep + __shfl_xor_sync(kFull, send, 1);
    }
  }
  if (KS > 2) {
    const bool up = ks & 2;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float send = up ? v[j] : v[j + 4], keep = up ? v[j + 4] : v[j];
      v[j] = keep + __shfl_xor_sync(kFull, send, 2);
    }
  }
  if (KS > 4) {
    const bool up = ks & 4;
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const float send = up ? v[j] : v[j + 2], keep = up ? v[j + 2] : v[j];
      v[j] = keep + __shfl_xor_sync(kFull, send, 4);
    }
  }
  if (KS > 8) {
    const bool up = ks & 8;
    const float send = up ? v[0] : v[1], keep = up ? v[1] : v[0];
    v[0] = keep + __shfl_xor_sync(kFull, send, 8);
  }
  if (KS > 16) v[0] += __shfl_xor_sync(kFull, v[0], 16);
}

__device__ __forceinline__ int tile_elem(int ks, int p) {
  return p + 8 * (ks & 1) + 4 * ((ks >> 1) & 1) + 2 * ((ks >> 2) & 1) + ((ks >> 3) & 1);
}

// Stores a reduced tile (see reduce_tile) at z[0..16), KS <= 32.
__device__ __forceinline__ void store_tile(float *z, const float (&v)[16], int ks, int KS) {
  if (ks >= 16) return;  // KS == 32: lanes 16..31 hold copies
  const int live = KS >= 16 ? 1 : 16 / KS;
#pragma unroll
  for (int p = 0; p < 16; ++p)
    if (p < live) z[tile_elem(ks, p)] = v[p];
}

// ---------------------------------------------------------------- persistent path
__global__ void __launch_bounds__(kThreads, 1) lstm_persistent_kernel(const LstmParams p) {
  extern __shared__ float4 smem_v4[];
  const int U = p.U, NQ = p.nq, N = p.units, B = p.batch;
  float *const w_s = reinterpret_cast<float *>(smem_v4);  // U x us
  float *const h_s = w_s + U * p.us;                       // bc x sh
  float *const z_s = h_s + p.bc * p.sh;                    // (bc / 4) U tiles x 16
  float *const red_s = z_s + p.bc * U * 4;                 // kRedFloats
  float *const c_s = red_s + kRedFloats;                   // batch x U
  const int tid = threadIdx.x;
  const int n0 = blockIdx.x * U;
  const int uj = min(U, N - n0);  // units of this block
  const int64_t N4 = 4 * (int64_t)N;

  // this block's columns of W_rec, laid out [unit][k % 4][k / 4][gate], zero past the edges
  for (int e = tid; e < U * 16 * NQ; e += kThreads) {
    const int ul = e % U, rest = e / U, g = rest & 3, k = rest >> 2;
    float v = 0.f;
    if (ul < uj && k < N) v = __ldg(p.w + k * N4 + (int64_t)g * N + n0 + ul);
    w_s[ul * p.us + 4 * ((k & 3) * NQ + (k >> 2)) + g] = v;
  }
  for (int e = tid; e < B * U; e += kThreads) {
    const int b = e / U, ul = e - b * U;
    c_s[e] = ul < uj ? __ldg(p.c0 + (int64_t)b * N + n0 + ul) : 0.f;
  }

  cg::grid_group grid = cg::this_grid();
  const int KS = 1 << p.ks_log2;
  const int ks = tid & (KS - 1), slot = tid >> p.ks_log2, nslots = kThreads >> p.ks_log2;
  const int64_t BN = (int64_t)B * N;

  for (long long t = 0; t < p.steps; ++t) {
    const float *src;
    float *dst;
    if (p.h_seq) {
      src = t == 0 ? p.h0 : p.h_seq + (t - 1) * BN;
      dst = p.h_seq + t * BN;
    } else {  // step t writes h_out when steps - 1 - t is even, c_out when odd
      src = t == 0 ? p.h0 : (((p.steps - t) & 1) ? p.c_out : p.h_out);
      dst = ((p.steps - 1 - t) & 1) ? p.c_out : p.h_out;
    }
    const bool last = t + 1 == p.steps;
    const float *const xp = p.xproj + t * B * N4 + n0;

    for (int b0 = 0; b0 < B; b0 += p.bc) {
      const int rows = min(p.bc, B - b0), rows4 = (rows + 3) & ~3;
      const int cells = rows * uj;
      float x0 = 0.f, x1 = 0.f, x2 = 0.f, x3 = 0.f;  // this thread's first cell's projection
      if (tid < cells) {
        const int bl = tid / uj, ul = tid - bl * uj;
        const float *x = xp + (b0 + bl) * N4 + ul;
        x0 = __ldg(x);
        x1 = __ldg(x + N);
        x2 = __ldg(x + 2 * (int64_t)N);
        x3 = __ldg(x + 3 * (int64_t)N);
      }
      __syncthreads();  // h_s and z_s free (and, the first time, w_s and c_s written)
      stage_rows(h_s, p.sh, src, N, b0, rows, rows4, 0, NQ, p.vec);
      __syncthreads();

      const int tiles = (rows4 >> 2) * uj;  // tile = row group * uj + unit
      for (int base = 0; base < tiles; base += nslots) {
        const int tile = base + slot;
        float acc[16];
#pragma unroll
        for (int j = 0; j < 16; ++j) acc[j] = 0.f;
        if (tile < tiles) {
          const int rg = tile / uj, ul = tile - rg * uj;
          tile_dot(acc, h_s + 4 * rg * p.sh, p.sh, w_s + ul * p.us, NQ, ks, KS);
        }
        reduce_tile(acc, ks, KS);
        if (KS <= 32) {
          if (tile < tiles) store_tile(z_s + tile * 16, acc, ks, KS);
        } else {  // a tile spans KS / 32 warps (then tiles <= nslots: one pass)
          const int lane = tid & 31, warp = tid >> 5, wpt = KS >> 5;
          if (lane < 16) red_s[warp * 16 + tile_elem(lane, 0)] = acc[0];
          __syncthreads();
          if (tid < 16 * min(tiles - base, nslots)) {
            const int tl = tid >> 4, o = tid & 15;
            float s = 0.f;
            for (int w = 0; w < wpt; ++w) s += red_s[(tl * wpt + w) * 16 + o];
            z_s[(base + tl) * 16 + o] = s;
          }
          __syncthreads();
        }
      }
      __syncthreads();

      // gate math, one (row, unit) cell per thread
      for (int e = tid; e < cells; e += kThreads) {
        const int bl = e / uj, ul = e - bl * uj, b = b0 + bl;
        if (e != tid) {
          const float *x = xp + b * N4 + ul;
          x0 = __ldg(x);
          x1 = __ldg(x + N);
          x2 = __ldg(x + 2 * (int64_t)N);
          x3 = __ldg(x + 3 * (int64_t)N);
        }
        const float *z = z_s + ((bl >> 2) * uj + ul) * 16 + (bl & 3) * 4;
        float c = c_s[b * U + ul];
        const float h = lstm_cell(z[0] + x0, z[1] + x1, z[2] + x2, z[3] + x3, c, p.hard);
        c_s[b * U + ul] = c;
        const int64_t o = (int64_t)b * N + n0 + ul;
        dst[o] = h;
        if (last && p.h_seq) p.h_out[o] = h;
      }
    }
    if (!last) grid.sync();
  }
  // without h_seq, c_out may hold h_{steps-2}, which other blocks read in the last step
  if (!p.h_seq && p.steps >= 2)
    grid.sync();
  else
    __syncthreads();
  for (int e = tid; e < B * uj; e += kThreads) {
    const int b = e / uj, ul = e - b * uj;
    p.c_out[(int64_t)b * N + n0 + ul] = c_s[b * U + ul];
  }
}

// ---------------------------------------------------------------- per-step fallback
__global__ void __launch_bounds__(kThreads) lstm_step_kernel(const LstmParams p, const StepArgs s) {
  __shared__ __align__(16) float w_s[kFbUnits * kFbUnitStrideMax];  // later the z tiles
  __shared__ __align__(16) float h_s[kFbRowsMax * kFbSH];
  float *const z_s = w_s;
  const int N = p.units, B = p.batch, tid = threadIdx.x;
  const int64_t N4 = 4 * (int64_t)N;
  const int ut = blockIdx.x % s.n_ut, bt = blockIdx.x / s.n_ut;
  const int n0 = ut * kFbUnits, uj = min(kFbUnits, N - n0);
  const int b0 = bt * s.bt, rows = min(s.bt, B - b0), rows4 = (rows + 3) & ~3;
  const int KS = 1 << s.ks_log2;
  const int ks = tid & (KS - 1), slot = tid >> s.ks_log2;  // slot < (bt / 4) * 16: one tile each
  const int rg = slot / kFbUnits, ul = slot % kFbUnits;

  float acc[16];
#pragma unroll
  for (int j = 0; j < 16; ++j) acc[j] = 0.f;
  for (int k0 = 0; k0 < N; k0 += kFbK) {
    __syncthreads();
    for (int e = tid; e < kFbUnits * 4 * kFbK; e += kThreads) {
      const int u = e % kFbUnits, g = (e / kFbUnits) & 3, kk = e / (4 * kFbUnits), k = k0 + kk;
      float v = 0.f;
      if (u < uj && k < N) v = __ldg(p.w + k * N4 + (int64_t)g * N + n0 + u);
      w_s[u * s.us + 4 * ((kk & 3) * kFbKQ + (kk >> 2)) + g] = v;
    }
    stage_rows(h_s, kFbSH, s.src, N, b0, rows, rows4, k0, kFbKQ, p.vec);
    __syncthreads();
    if (4 * rg < rows4) tile_dot(acc, h_s + 4 * rg * kFbSH, kFbSH, w_s + ul * s.us, kFbKQ, ks, KS);
  }
  reduce_tile(acc, ks, KS);
  __syncthreads();  // w_s becomes z_s
  store_tile(z_s + slot * 16, acc, ks, KS);
  __syncthreads();

  const float *const xp = p.xproj + s.t * B * N4 + n0;
  for (int e = tid; e < rows * uj; e += kThreads) {
    const int bl = e / uj, u = e - bl * uj, b = b0 + bl;
    const float *x = xp + b * N4 + u;
    const float *z = z_s + ((bl >> 2) * kFbUnits + u) * 16 + (bl & 3) * 4;
    const int64_t o = (int64_t)b * N + n0 + u;
    float c = s.c_in[o];
    const float h = lstm_cell(z[0] + __ldg(x), z[1] + __ldg(x + N), z[2] + __ldg(x + 2 * (int64_t)N),
                              z[3] + __ldg(x + 3 * (int64_t)N), c, p.hard);
    p.c_out[o] = c;
    s.dst[o] = h;
    if (s.h_also) s.h_also[o] = h;
  }
}

// ---------------------------------------------------------------- host side
bool overlaps(const void *a, int64_t abytes, const void *b, int64_t bbytes) {
  if (!a || !b || abytes <= 0 || bbytes <= 0) return false;
  const uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
  return x < y + (uintptr_t)bbytes && y < x + (uintptr_t)abytes;
}

bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

int pow2_floor(int64_t v) {
  int r = 1;
  while ((int64_t)r * 2 <= v) r *= 2;
  return r;
}

int log2_exact(int v) {
  int l = 0;
  while ((1 << l) < v) ++l;
  return l;
}

// The persistent layout for this problem, or false when it does not fit in one block's shared
// memory (optin_bytes) with the grid within `sms` blocks.
bool persistent_config(int B, int N, int sms, int64_t optin_bytes, LstmParams *p, int *blocks,
                       size_t *smem) {
  if (sms < 1) return false;
  const int U = (int)kcc::ceil_div(N, sms);
  const int NQ = (int)kcc::ceil_div(N, 4);
  const int64_t sh = 4 * (int64_t)NQ + 4;
  const int64_t c_floats = ((int64_t)B * U + 3) & ~(int64_t)3;
  const int64_t fixed = (int64_t)U * (16 * (int64_t)NQ + 28) + kRedFloats + c_floats;
  const int64_t avail = optin_bytes / 4 - fixed;
  if (avail <= 0) return false;
  const int64_t max_rows = (avail / (sh + 4 * (int64_t)U)) & ~(int64_t)3;
  if (max_rows < 4) return false;
  const int64_t nchunks = kcc::ceil_div(B, max_rows);
  const int bc = (int)((kcc::ceil_div(B, nchunks) + 3) & ~(int64_t)3);
  const int64_t tiles = (int64_t)(bc / 4) * U;
  int KS = tiles >= kThreads ? 1 : pow2_floor(kThreads / tiles);
  int ks_cap = 1;
  while (ks_cap < NQ) ks_cap *= 2;
  if (KS > ks_cap) KS = ks_cap;
  p->U = U;
  p->nq = NQ;
  p->bc = bc;
  p->ks_log2 = log2_exact(KS);
  p->us = unit_stride(NQ, KS);
  p->sh = (int)sh;
  *blocks = (int)kcc::ceil_div(N, U);
  const int64_t floats = (int64_t)U * p->us + (int64_t)bc * sh + (int64_t)bc * U * 4 +
                         kRedFloats + c_floats;
  if (floats * 4 > optin_bytes) return false;
  *smem = (size_t)(floats * 4);
  return true;
}

// 1: launched; 0: not possible here (use the fallback); < 0: -status of an error
int launch_persistent(LstmParams p, cudaStream_t st) {
  int dev = 0, sms = 0, coop = 0, optin = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, dev);
  if (e == cudaSuccess)
    e = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
  if (e != cudaSuccess) return -kcc::cuda_error("kc_cuda_lstm: device query", e);
  if (!coop) return 0;
  int blocks = 0;
  size_t smem = 0;
  if (!persistent_config(p.batch, p.units, sms, optin, &p, &blocks, &smem)) return 0;
  if (optin > 48 * 1024) {  // always the same value, so concurrent callers cannot race
    e = cudaFuncSetAttribute(lstm_persistent_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             optin);
    if (e != cudaSuccess) return -kcc::cuda_error("kc_cuda_lstm: cudaFuncSetAttribute", e);
  }
  int per_sm = 0;
  e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, lstm_persistent_kernel, kThreads,
                                                    smem);
  if (e != cudaSuccess) return -kcc::cuda_error("kc_cuda_lstm: occupancy query", e);
  if ((int64_t)per_sm * sms < blocks) return 0;
  void *kargs[] = {&p};
  e = cudaLaunchCooperativeKernel((const void *)lstm_persistent_kernel, dim3(blocks),
                                  dim3(kThreads), kargs, smem, st);
  if (e == cudaErrorCooperativeLaunchTooLarge) {
    cudaGetLastError();
    return 0;
  }
  if (e != cudaSuccess) return -kcc::cuda_error("lstm_persistent_kernel", e);
  return 1;
}

int32_t launch_fallback(const LstmParams &p, cudaStream_t st) {
  const int64_t B = p.batch, N = p.units, BN = B * N;
  StepArgs s;
  int bt = 4;
  while (bt < kFbRowsMax && bt < B) bt *= 2;
  s.bt = bt;
  s.ks_log2 = log2_exact(kThreads / ((bt / 4) * kFbUnits));
  s.us = unit_stride(kFbKQ, 1 << s.ks_log2);
  const int64_t n_ut = kcc::ceil_div(N, kFbUnits), n_bt = kcc::ceil_div(B, bt);
  if (n_ut * n_bt > 0x7fffffff)
    return kcc::set_error(KC_EINVAL, "kc_cuda_lstm: batch x units too large for the grid");
  s.n_ut = (int)n_ut;
  float *scratch = nullptr;
  if (!p.h_seq && p.steps >= 2) {
    const cudaError_t e = cudaMallocAsync(&scratch, (size_t)BN * sizeof(float), st);
    if (e != cudaSuccess) {
      cudaGetLastError();
      return kcc::cuda_error("kc_cuda_lstm: scratch buffer", e);
    }
  }
  int32_t status = KC_OK;
  for (long long t = 0; t < p.steps && status == KC_OK; ++t) {
    s.t = t;
    const bool last = t + 1 == p.steps;
    if (p.h_seq) {
      s.src = t == 0 ? p.h0 : p.h_seq + (t - 1) * BN;
      s.dst = p.h_seq + t * BN;
      s.h_also = last ? p.h_out : nullptr;
    } else {  // as the persistent kernel, with scratch in place of c_out
      s.src = t == 0 ? p.h0 : (((p.steps - t) & 1) ? scratch : p.h_out);
      s.dst = ((p.steps - 1 - t) & 1) ? scratch : p.h_out;
      s.h_also = nullptr;
    }
    s.c_in = t == 0 ? p.c0 : p.c_out;
    lstm_step_kernel<<<(unsigned)(n_ut * n_bt), kThreads, 0, st>>>(p, s);
    status = kcc::check_launch("lstm_step_kernel");
  }
  if (scratch) {
    const cudaError_t e = cudaFreeAsync(scratch, st);
    if (e != cudaSuccess && status == KC_OK) status = kcc::cuda_error("kc_cuda_lstm: free", e);
  }
  return status;
}

}  // namespace

extern "C" KC_EXPORT int32_t kc_cuda_lstm(const kc_cuda_lstm_args *args, void *stream) {
  using kcc::set_error;
  if (!args) return set_error(KC_EINVAL, "kc_cuda_lstm: args is NULL");
  const kc_cuda_lstm_args a = *args;
  if (a.steps < 0 || a.batch < 0 || a.units < 0)
    return set_error(KC_EINVAL, "kc_cuda_lstm: steps, batch and units must be >= 0");
  if (a.recurrent_act != KC_ACT_SIGMOID && a.recurrent_act != KC_ACT_HARD_SIGMOID)
    return set_error(KC_EINVAL,
                     "kc_cuda_lstm: recurrent_act must be KC_ACT_SIGMOID or KC_ACT_HARD_SIGMOID");
  if (a.batch == 0 || a.units == 0) return KC_OK;  // nothing to compute or write
  if (a.units > (int64_t)1 << 28 || a.batch > 0x7fffffff)
    return set_error(KC_EINVAL, "kc_cuda_lstm: batch or units too large");
  if (!a.h0 || !a.c0 || !a.h_out || !a.c_out)
    return set_error(KC_EINVAL, "kc_cuda_lstm: h0, c0, h_out and c_out must not be NULL");
  if (a.steps > 0 && (!a.xproj || !a.w_rec))
    return set_error(KC_EINVAL, "kc_cuda_lstm: xproj and w_rec must not be NULL");
  const int64_t bn = a.batch * a.units;  // <= 2^59
  if (a.steps > INT64_MAX / 16 / bn)
    return set_error(KC_EINVAL, "kc_cuda_lstm: steps x batch x units too large");
  const int64_t state = bn * 4, seq = a.steps * bn * 4;
  const int64_t xbytes = seq * 4, wbytes = a.units * a.units * 16;
  const float *h_seq = a.h_seq;
  if (overlaps(a.h_out, state, a.c_out, state) || overlaps(a.h_out, state, a.h0, state) ||
      overlaps(a.h_out, state, a.c0, state) || overlaps(a.h_out, state, h_seq, seq) ||
      overlaps(a.h_out, state, a.xproj, xbytes) || overlaps(a.h_out, state, a.w_rec, wbytes) ||
      overlaps(a.c_out, state, a.h0, state) || overlaps(a.c_out, state, a.c0, state) ||
      overlaps(a.c_out, state, h_seq, seq) || overlaps(a.c_out, state, a.xproj, xbytes) ||
      overlaps(a.c_out, state, a.w_rec, wbytes) || overlaps(h_seq, seq, a.h0, state) ||
      overlaps(h_seq, seq, a.c0, state) || overlaps(h_seq, seq, a.xproj, xbytes) ||
      overlaps(h_seq, seq, a.w_rec, wbytes))
    return set_error(KC_EINVAL, "kc_cuda_lstm: h_out, c_out and h_seq must not overlap each "
                                "other or the inputs");
  const cudaStream_t st = kcc::as_stream(stream);
  if (a.steps == 0) {
    cudaError_t e = cudaMemcpyAsync(a.h_out, a.h0, (size_t)state, cudaMemcpyDeviceToDevice, st);
    if (e == cudaSuccess)
      e = cudaMemcpyAsync(a.c_out, a.c0, (size_t)state, cudaMemcpyDeviceToDevice, st);
    return e == cudaSuccess ? KC_OK : kcc::cuda_error("kc_cuda_lstm: copy of h0, c0", e);
  }

  LstmParams p = {};
  p.xproj = a.xproj;
  p.w = a.w_rec;
  p.h0 = a.h0;
  p.c0 = a.c0;
  p.h_seq = a.h_seq;
  p.h_out = a.h_out;
  p.c_out = a.c_out;
  p.steps = a.steps;
  p.batch = (int)a.batch;
  p.units = (int)a.units;
  p.hard = a.recurrent_act == KC_ACT_HARD_SIGMOID;
  p.vec = a.units % 4 == 0 && aligned16(a.h0) && aligned16(a.h_out) && aligned16(a.c_out) &&
          (!a.h_seq || aligned16(a.h_seq));

  const int r = launch_persistent(p, st);
  if (r < 0) return -r;
  if (r > 0) return KC_OK;
  return launch_fallback(p, st);
}
