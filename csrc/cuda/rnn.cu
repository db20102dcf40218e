// kc_cuda_rnn: a Keras recurrent layer's time loop on the GPU, float32 (contract in cuda_api.h):
// LSTM, GRU (reset gate after or before the recurrent product) and SimpleRNN.
//
// A step is one recurrent product z = h_{t-1} W_rec (two for a GRU whose reset gate applies
// before it), each followed by the cell's gate math over z and x = xproj[t]:
//   LSTM       (i|f|c|o)  c = rec(f) c + rec(i) act(c~); h = rec(o) act(c)
//   GRU        (z|r|h)    u = rec(x_z + z_z + b_z); r = rec(x_r + z_r + b_r);
//                         h = u h + (1 - u) act(x_h + r (z_h + b_h))      (b: b_rec, or 0)
//   GRU, reset before:    (z|r) as above gives u and r; then z' = (r h) W_rec2 and
//                         h = u h + (1 - u) act(x_h + z')
//   SimpleRNN             h = act(x + z)
//
// A product's columns are handled in groups of 4: one unit's 4 gates (LSTM; GRU, whose 4th
// column reads as zero), two units' 2 gates (the reset-before GRU's first product) or 4 units of
// one gate (SimpleRNN, that GRU's second product), so that every column group is one 4-wide
// tile column whatever the cell.
//
// Fast path, one persistent cooperative kernel for all the steps. Block j owns the units
// [j U, j U + U) and keeps their columns of W_rec (and W_rec2) in shared memory for the whole
// loop, and an LSTM's cell state c in shared memory too. Each step a block stages h_{t-1}
// (batch x units, read through L2) into shared memory in chunks of rows, computes z for its
// units, applies the gate math and writes its slice of h_t; then the grid synchronizes
// (cooperative_groups grid sync) before the next step, and between a step's two products. U is
// the smallest count (a multiple of the units in a column group) that keeps the grid within one
// block per SM. h_t goes to h_seq[t] when h_seq is given (h_{t-1} is read back from h_seq[t-1]);
// otherwise the steps alternate between h_out and a scratch buffer, arranged so that the last
// step lands in h_out.
//
// Fallback, when the weight slices do not fit on chip across a co-resident grid or the device
// cannot launch cooperatively: one kernel launch per product and step; a block computes a tile
// of 16 column groups x up to 64 batch rows, streaming W and the product's left operand through
// shared memory in chunks of 64 k, with the gate math in its epilogue; an LSTM's c lives in c_out.
//
// Scratch (stream-ordered cudaMallocAsync / cudaFreeAsync): the second h buffer when h_seq is
// NULL and there are 2+ steps; r h_{t-1} and the update gate for the reset-before GRU.
//
// Inner product, both paths: a thread accumulates a 4 rows x 4 columns tile of one column group
// over a slice of k (float4 shared-memory loads of 4 k of h and of W, 64 FFMAs), KS threads share
// a tile and their partial sums are reduced by a shuffle reduce-scatter (15 shuffles for 16
// lanes) into a shared-memory z tile, which the epilogue threads read one (row, unit) cell each.
#include <cooperative_groups.h>
#include <stdint.h>

#include <algorithm>
#include <utility>

#include "common.cuh"

namespace cg = cooperative_groups;

namespace {

constexpr int kThreads = 256;
constexpr unsigned kFull = 0xffffffffu;
constexpr int kRedFloats = (kThreads / 32) * 16;  // cross-warp partial sums (KS > 32)
constexpr int kMaxProducts = 2;

// fallback tile: 16 column groups x (4..64) rows, k in chunks of 64
constexpr int kFbGroups = 16;
constexpr int kFbK = 64;
constexpr int kFbKQ = kFbK / 4;
constexpr int kFbRowsMax = 64;
constexpr int kFbSH = kFbK + 4;
constexpr int kFbGroupStrideMax = 16 * kFbKQ + 28;

// The recurrent products of a step of `cell` (a compile-time constant in the kernels, which are
// instantiated per cell) and the shape of product q: W's column of slot s of column group j is
// gate (s >> upg_log2) of unit j (1 << upg_log2) + (s & (upg - 1)), for gates < ngates; its gate
// math reads the gates [xg, xg + nx) of xproj.
struct Shape {
  int upg_log2, ngates, xg, nx;
};

__host__ __device__ constexpr int n_products(int cell) {
  return cell == KC_RNN_GRU_RESET_BEFORE ? 2 : 1;
}

__host__ __device__ constexpr Shape product_shape(int cell, int q) {
  return cell == KC_RNN_LSTM  ? Shape{0, 4, 0, 4}
         : cell == KC_RNN_GRU ? Shape{0, 3, 0, 3}
         : cell == KC_RNN_GRU_RESET_BEFORE ? (q == 0 ? Shape{1, 2, 0, 2} : Shape{2, 1, 2, 1})
                                           : Shape{2, 1, 0, 1};
}

// One recurrent product: W (units x ldw, row-major) and, in the persistent kernel, KS, floats
// per column group and the offset of this block's W slice in shared memory.
struct Product {
  const float *w;
  int64_t ldw;
  int ks_log2, us, w_off;
};

struct RnnParams {
  const float *xproj, *b_rec, *h0, *c0;
  float *h_seq, *h_out, *c_out;
  float *alt;       // the second h buffer when h_seq is NULL (scratch)
  float *rh, *gate; // reset-before GRU: r h_{t-1} and the update gate (scratch), else NULL
  long long steps;
  int batch, units, xw;  // xw: floats per row of xproj
  int act, rec;
  int vec;  // float4 loads of h rows: units % 4 == 0 and every h buffer 16-byte aligned
  Product prod[kMaxProducts];
  // persistent layout (floats): U units per block, nq = ceil(units / 4) k groups, bc rows per
  // chunk, sh per row of h, zg column groups of z per row group, w_floats of W slices
  int U, nq, bc, sh, zg, w_floats;
};

struct StepArgs {
  long long t;
  int product;
  const float *src;  // h_{t-1}
  const float *lhs;  // the product's left operand: h_{t-1}, or r h_{t-1}
  float *dst;        // h_t
  const float *c_in; // LSTM's c_{t-1}: c0, then c_out (updated in place)
  float *h_also;     // h_out at the last step when h_seq is given, else NULL
  int bt;            // rows per block: 4, 8, 16, 32 or 64
  int ks_log2;       // KS = 64 / bt
  int us;            // floats per column group of the W chunk
  int n_ut;          // column tiles
};

// floats per column group of a W slice laid out [i = k % 4][q = k / 4][slot], nq groups of 4 k:
// padded so that KS < 8 lanes of neighbouring groups fall in different banks
__host__ __device__ inline int unit_stride(int nq, int ks) {
  return 4 * (4 * nq + ((ks - 4 * nq) & 7));
}

// W's column for slot s of column group j of the units [n0, n0 + uj), or -1 (reads as zero)
__device__ __forceinline__ int64_t group_column(Shape sh, int units, int n0, int uj, int j,
                                                int s) {
  const int u = (j << sh.upg_log2) + (s & ((1 << sh.upg_log2) - 1)), g = s >> sh.upg_log2;
  return u < uj && g < sh.ngates ? (int64_t)g * units + n0 + u : -1;
}

// gemm.cu's apply_act for float, written as tests, not a switch: its jump table's indirect
// branches sat in the gate math's latency chain (the GEMM keeps its switch, with whose register
// allocation its tiles were tuned)
__device__ __forceinline__ float activate(float x, int act) {
  if (act == KC_ACT_TANH) return tanhf(x);
  if (act == KC_ACT_SIGMOID) return 1.f / (1.f + expf(-x));
  if (act == KC_ACT_HARD_SIGMOID) return fminf(fmaxf(0.2f * x + 0.5f, 0.f), 1.f);
  if (act == KC_ACT_RELU) return x > 0.f ? x : (x == x ? 0.f : x);  // NaN stays NaN
  return x;
}

// x[i] = the projection of gate xg + i of one (row, unit) cell, x pointing at gate xg
__device__ __forceinline__ void load_x(float (&x)[4], const float *__restrict__ p, int units,
                                       int nx) {
#pragma unroll
  for (int i = 0; i < 4; ++i) x[i] = i < nx ? __ldg(p + (int64_t)i * units) : 0.f;
}

// The gate math of the (row, unit n) cell at o = row units + n after product `product`: gate g
// of z at zt[g zs], x as load_x gives it, src h_{t-1}, c an LSTM's cell state. Returns whether
// it produced h; the reset-before GRU's first product stores r h_{t-1} and the update gate.
template <int CELL>
__device__ __forceinline__ bool cell_math(const RnnParams &p, int product, const float *zt,
                                          int zs, const float (&x)[4], int64_t o, int n,
                                          const float *src, float &c, float &h) {
  switch (CELL) {
    case KC_RNN_LSTM: {
      const float i = activate(x[0] + zt[0], p.rec), f = activate(x[1] + zt[zs], p.rec);
      const float g = activate(x[2] + zt[2 * zs], p.act), og = activate(x[3] + zt[3 * zs], p.rec);
      c = f * c + i * g;
      h = og * activate(c, p.act);
      return true;
    }
    case KC_RNN_GRU: {
      float bz = 0.f, br = 0.f, bh = 0.f;
      if (p.b_rec) {
        bz = __ldg(p.b_rec + n);
        br = __ldg(p.b_rec + p.units + n);
        bh = __ldg(p.b_rec + 2 * (int64_t)p.units + n);
      }
      const float u = activate(x[0] + zt[0] + bz, p.rec), r = activate(x[1] + zt[zs] + br, p.rec);
      const float hh = activate(x[2] + r * (zt[2 * zs] + bh), p.act);
      h = u * __ldcg(src + o) + (1.f - u) * hh;
      return true;
    }
    case KC_RNN_GRU_RESET_BEFORE:
      if (product == 0) {
        p.gate[o] = activate(x[0] + zt[0], p.rec);
        p.rh[o] = activate(x[1] + zt[zs], p.rec) * __ldcg(src + o);
        return false;
      } else {
        const float u = __ldcg(p.gate + o);
        h = u * __ldcg(src + o) + (1.f - u) * activate(x[0] + zt[0], p.act);
        return true;
      }
    default:  // KC_RNN_SIMPLE
      h = activate(x[0] + zt[0], p.act);
      return true;
  }
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
// This block's columns of product pr's W, laid out [group][k % 4][k / 4][slot], zero past the
// edges.
__device__ __forceinline__ void load_w_slice(float *__restrict__ w_s, const Product &pr, Shape sh,
                                             int units, int n0, int uj, int nq) {
  const int gj = (uj + (1 << sh.upg_log2) - 1) >> sh.upg_log2;
  for (int e = threadIdx.x; e < gj * 16 * nq; e += kThreads) {
    const int j = e % gj, rest = e / gj, s = rest & 3, k = rest >> 2;
    const int64_t col = group_column(sh, units, n0, uj, j, s);
    float v = 0.f;
    if (col >= 0 && k < units) v = __ldg(pr.w + k * pr.ldw + col);
    w_s[j * pr.us + 4 * ((k & 3) * nq + (k >> 2)) + s] = v;
  }
}

template <int CELL>
__global__ void __launch_bounds__(kThreads, 1) rnn_persistent_kernel(const RnnParams p) {
  constexpr int NPROD = n_products(CELL);
  constexpr bool lstm = CELL == KC_RNN_LSTM;
  extern __shared__ float4 smem_v4[];
  const int U = p.U, NQ = p.nq, N = p.units, B = p.batch;
  float *const w_s = reinterpret_cast<float *>(smem_v4);  // the products' W slices
  float *const h_s = w_s + p.w_floats;                     // bc x sh
  float *const z_s = h_s + p.bc * p.sh;                    // (bc / 4) zg tiles x 16
  float *const red_s = z_s + p.bc * p.zg * 4;              // kRedFloats
  float *const c_s = red_s + kRedFloats;                   // LSTM: batch x U
  const int tid = threadIdx.x;
  const int n0 = blockIdx.x * U;
  const int uj = min(U, N - n0);  // units of this block

#pragma unroll
  for (int q = 0; q < NPROD; ++q)
    load_w_slice(w_s + p.prod[q].w_off, p.prod[q], product_shape(CELL, q), N, n0, uj, NQ);
  if (lstm)
    for (int e = tid; e < B * U; e += kThreads) {
      const int b = e / U, ul = e - b * U;
      c_s[e] = ul < uj ? __ldg(p.c0 + (int64_t)b * N + n0 + ul) : 0.f;
    }

  cg::grid_group grid = cg::this_grid();
  const int64_t BN = (int64_t)B * N;

  for (long long t = 0; t < p.steps; ++t) {
    const float *src;
    float *dst;
    if (p.h_seq) {
      src = t == 0 ? p.h0 : p.h_seq + (t - 1) * BN;
      dst = p.h_seq + t * BN;
    } else {  // step t writes h_out when steps - 1 - t is even, alt when odd
      src = t == 0 ? p.h0 : (((p.steps - t) & 1) ? p.alt : p.h_out);
      dst = ((p.steps - 1 - t) & 1) ? p.alt : p.h_out;
    }
    const bool last = t + 1 == p.steps;
    const float *const xp = p.xproj + t * B * (int64_t)p.xw + n0;

#pragma unroll
    for (int q = 0; q < NPROD; ++q) {
      if (q > 0) grid.sync();  // r h_{t-1} complete in every block
      const Product &pr = p.prod[q];
      constexpr Shape shapes[2] = {product_shape(CELL, 0), product_shape(CELL, 1)};
      const Shape sh = shapes[q];
      const float *const lhs = q == 0 ? src : p.rh;
      const int upg = 1 << sh.upg_log2, gj = (uj + upg - 1) >> sh.upg_log2;
      const int KS = 1 << pr.ks_log2;
      const int ks = tid & (KS - 1), slot = tid >> pr.ks_log2, nslots = kThreads >> pr.ks_log2;
      const float *const xq = xp + (int64_t)sh.xg * N;

      for (int b0 = 0; b0 < B; b0 += p.bc) {
        const int rows = min(p.bc, B - b0), rows4 = (rows + 3) & ~3;
        const int cells = rows * uj;
        float x[4] = {0.f, 0.f, 0.f, 0.f};  // this thread's first cell's projection
        if (tid < cells) {
          const int bl = tid / uj, ul = tid - bl * uj;
          load_x(x, xq + (int64_t)(b0 + bl) * p.xw + ul, N, sh.nx);
        }
        __syncthreads();  // h_s and z_s free (and, the first time, w_s and c_s written)
        stage_rows(h_s, p.sh, lhs, N, b0, rows, rows4, 0, NQ, p.vec);
        __syncthreads();

        const int tiles = (rows4 >> 2) * gj;  // tile = row group * gj + column group
        for (int base = 0; base < tiles; base += nslots) {
          const int tile = base + slot;
          float acc[16];
#pragma unroll
          for (int j = 0; j < 16; ++j) acc[j] = 0.f;
          if (tile < tiles) {
            const int rg = tile / gj, j = tile - rg * gj;
            tile_dot(acc, h_s + 4 * rg * p.sh, p.sh, w_s + pr.w_off + j * pr.us, NQ, ks, KS);
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
          if (e != tid) load_x(x, xq + (int64_t)b * p.xw + ul, N, sh.nx);
          const float *zt = z_s + ((bl >> 2) * gj + (ul >> sh.upg_log2)) * 16 + (bl & 3) * 4 +
                            (ul & (upg - 1));
          const int64_t o = (int64_t)b * N + n0 + ul;
          float c = lstm ? c_s[b * U + ul] : 0.f, h;
          if (cell_math<CELL>(p, q, zt, upg, x, o, n0 + ul, src, c, h)) {
            if (lstm) c_s[b * U + ul] = c;
            dst[o] = h;
            if (last && p.h_seq) p.h_out[o] = h;
          }
        }
      }
    }
    if (!last) grid.sync();
  }
  if (!lstm) return;
  __syncthreads();
  for (int e = tid; e < B * uj; e += kThreads) {
    const int b = e / uj, ul = e - b * uj;
    p.c_out[(int64_t)b * N + n0 + ul] = c_s[b * U + ul];
  }
}

// ---------------------------------------------------------------- per-step fallback
template <int CELL>
__global__ void __launch_bounds__(kThreads) rnn_step_kernel(const RnnParams p, const StepArgs s) {
  __shared__ __align__(16) float w_s[kFbGroups * kFbGroupStrideMax];  // later the z tiles
  __shared__ __align__(16) float h_s[kFbRowsMax * kFbSH];
  float *const z_s = w_s;
  const Product &pr = p.prod[s.product];
  const Shape sh = product_shape(CELL, s.product);
  const int N = p.units, B = p.batch, tid = threadIdx.x, upg = 1 << sh.upg_log2;
  const int ut = blockIdx.x % s.n_ut, bt = blockIdx.x / s.n_ut;
  const int n0 = ut * kFbGroups * upg, uj = min(kFbGroups * upg, N - n0);
  const int b0 = bt * s.bt, rows = min(s.bt, B - b0), rows4 = (rows + 3) & ~3;
  const int KS = 1 << s.ks_log2;
  const int ks = tid & (KS - 1), slot = tid >> s.ks_log2;  // slot < (bt / 4) * 16: one tile each
  const int rg = slot / kFbGroups, j = slot % kFbGroups;

  float acc[16];
#pragma unroll
  for (int i = 0; i < 16; ++i) acc[i] = 0.f;
  for (int k0 = 0; k0 < N; k0 += kFbK) {
    __syncthreads();
    for (int e = tid; e < kFbGroups * 4 * kFbK; e += kThreads) {
      const int g = e % kFbGroups, sl = (e / kFbGroups) & 3, kk = e / (4 * kFbGroups), k = k0 + kk;
      const int64_t col = group_column(sh, N, n0, uj, g, sl);
      float v = 0.f;
      if (col >= 0 && k < N) v = __ldg(pr.w + k * pr.ldw + col);
      w_s[g * s.us + 4 * ((kk & 3) * kFbKQ + (kk >> 2)) + sl] = v;
    }
    stage_rows(h_s, kFbSH, s.lhs, N, b0, rows, rows4, k0, kFbKQ, p.vec);
    __syncthreads();
    if (4 * rg < rows4) tile_dot(acc, h_s + 4 * rg * kFbSH, kFbSH, w_s + j * s.us, kFbKQ, ks, KS);
  }
  reduce_tile(acc, ks, KS);
  __syncthreads();  // w_s becomes z_s
  store_tile(z_s + slot * 16, acc, ks, KS);
  __syncthreads();

  const float *const xq = p.xproj + s.t * B * (int64_t)p.xw + (int64_t)sh.xg * N + n0;
  for (int e = tid; e < rows * uj; e += kThreads) {
    const int bl = e / uj, u = e - bl * uj, b = b0 + bl;
    float x[4];
    load_x(x, xq + (int64_t)b * p.xw + u, N, sh.nx);
    const float *zt = z_s + ((bl >> 2) * kFbGroups + (u >> sh.upg_log2)) * 16 + (bl & 3) * 4 +
                      (u & (upg - 1));
    const int64_t o = (int64_t)b * N + n0 + u;
    float c = CELL == KC_RNN_LSTM ? s.c_in[o] : 0.f, h;
    if (cell_math<CELL>(p, s.product, zt, upg, x, o, n0 + u, s.src, c, h)) {
      if (CELL == KC_RNN_LSTM) p.c_out[o] = c;
      s.dst[o] = h;
      if (s.h_also) s.h_also[o] = h;
    }
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

// The persistent layout for this problem (p's U, nq, bc, sh, zg, w_floats and its products'
// ks_log2, us, w_off), or false when it does not fit in one block's shared memory (optin_bytes)
// with the grid within `sms` blocks.
bool persistent_config(int cell, int sms, int64_t optin_bytes, RnnParams *p, int *blocks,
                       size_t *smem) {
  if (sms < 1) return false;
  const int B = p->batch, N = p->units, nprod = n_products(cell);
  int upg = 1;
  for (int q = 0; q < nprod; ++q) upg = std::max(upg, 1 << product_shape(cell, q).upg_log2);
  const int U = (int)(kcc::ceil_div(kcc::ceil_div(N, sms), upg) * upg);
  const int NQ = (int)kcc::ceil_div(N, 4);
  const int64_t sh = 4 * (int64_t)NQ + 4;
  const int64_t c_floats = cell == KC_RNN_LSTM ? ((int64_t)B * U + 3) & ~(int64_t)3 : 0;
  int64_t w_max = 0, zg = 0;  // W slices at the largest group stride; column groups of z
  for (int q = 0; q < nprod; ++q) {
    const int64_t groups = kcc::ceil_div(U, 1 << product_shape(cell, q).upg_log2);
    w_max += groups * (16 * (int64_t)NQ + 28);
    zg = std::max(zg, groups);
  }
  const int64_t avail = optin_bytes / 4 - w_max - kRedFloats - c_floats;
  if (avail <= 0) return false;
  const int64_t max_rows = (avail / (sh + 4 * zg)) & ~(int64_t)3;
  if (max_rows < 4) return false;
  const int64_t nchunks = kcc::ceil_div(B, max_rows);
  const int bc = (int)((kcc::ceil_div(B, nchunks) + 3) & ~(int64_t)3);
  int ks_cap = 1;
  while (ks_cap < NQ) ks_cap *= 2;
  int64_t w_floats = 0;
  for (int q = 0; q < nprod; ++q) {
    Product &pr = p->prod[q];
    const int64_t groups = kcc::ceil_div(U, 1 << product_shape(cell, q).upg_log2);
    const int64_t tiles = (int64_t)(bc / 4) * groups;
    const int KS = std::min(tiles >= kThreads ? 1 : pow2_floor(kThreads / tiles), ks_cap);
    pr.ks_log2 = log2_exact(KS);
    pr.us = unit_stride(NQ, KS);
    pr.w_off = (int)w_floats;
    w_floats += groups * pr.us;
  }
  p->U = U;
  p->nq = NQ;
  p->bc = bc;
  p->sh = (int)sh;
  p->zg = (int)zg;
  p->w_floats = (int)w_floats;
  *blocks = (int)kcc::ceil_div(N, U);
  const int64_t floats = w_floats + (int64_t)bc * sh + (int64_t)bc * zg * 4 + kRedFloats + c_floats;
  if (floats * 4 > optin_bytes) return false;
  *smem = (size_t)(floats * 4);
  return true;
}

using PersistentKernel = void (*)(RnnParams);
using StepKernel = void (*)(RnnParams, StepArgs);

template <int CELL>
constexpr std::pair<PersistentKernel, StepKernel> kernels_of() {
  return {rnn_persistent_kernel<CELL>, rnn_step_kernel<CELL>};
}

std::pair<PersistentKernel, StepKernel> kernels(int cell) {
  switch (cell) {
    case KC_RNN_LSTM: return kernels_of<KC_RNN_LSTM>();
    case KC_RNN_GRU: return kernels_of<KC_RNN_GRU>();
    case KC_RNN_GRU_RESET_BEFORE: return kernels_of<KC_RNN_GRU_RESET_BEFORE>();
    default: return kernels_of<KC_RNN_SIMPLE>();
  }
}

// 1: launched; 0: not possible here (use the fallback); < 0: -status of an error
int launch_persistent(int cell, RnnParams p, cudaStream_t st) {
  const PersistentKernel kernel = kernels(cell).first;
  int dev = 0, sms = 0, coop = 0, optin = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, dev);
  if (e == cudaSuccess)
    e = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
  if (e != cudaSuccess) return -kcc::cuda_error("kc_cuda_rnn: device query", e);
  if (!coop) return 0;
  int blocks = 0;
  size_t smem = 0;
  if (!persistent_config(cell, sms, optin, &p, &blocks, &smem)) return 0;
  if (optin > 48 * 1024) {  // always the same value, so concurrent callers cannot race
    e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, optin);
    if (e != cudaSuccess) return -kcc::cuda_error("kc_cuda_rnn: cudaFuncSetAttribute", e);
  }
  int per_sm = 0;
  e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, smem);
  if (e != cudaSuccess) return -kcc::cuda_error("kc_cuda_rnn: occupancy query", e);
  if ((int64_t)per_sm * sms < blocks) return 0;
  void *kargs[] = {&p};
  e = cudaLaunchCooperativeKernel((const void *)kernel, dim3(blocks), dim3(kThreads), kargs, smem,
                                  st);
  if (e == cudaErrorCooperativeLaunchTooLarge) {
    cudaGetLastError();
    return 0;
  }
  if (e != cudaSuccess) return -kcc::cuda_error("rnn_persistent_kernel", e);
  return 1;
}

int32_t launch_fallback(int cell, const RnnParams &p, cudaStream_t st) {
  const StepKernel kernel = kernels(cell).second;
  const int64_t B = p.batch, N = p.units, BN = B * N;
  int bt = 4;
  while (bt < kFbRowsMax && bt < B) bt *= 2;
  const int64_t n_bt = kcc::ceil_div(B, bt);
  int32_t status = KC_OK;
  for (long long t = 0; t < p.steps && status == KC_OK; ++t) {
    StepArgs s;
    s.t = t;
    s.bt = bt;
    s.ks_log2 = log2_exact(kThreads / ((bt / 4) * kFbGroups));
    s.us = unit_stride(kFbKQ, 1 << s.ks_log2);
    const bool last = t + 1 == p.steps;
    if (p.h_seq) {
      s.src = t == 0 ? p.h0 : p.h_seq + (t - 1) * BN;
      s.dst = p.h_seq + t * BN;
      s.h_also = last ? p.h_out : nullptr;
    } else {  // as the persistent kernel
      s.src = t == 0 ? p.h0 : (((p.steps - t) & 1) ? p.alt : p.h_out);
      s.dst = ((p.steps - 1 - t) & 1) ? p.alt : p.h_out;
      s.h_also = nullptr;
    }
    s.c_in = t == 0 ? p.c0 : p.c_out;
    for (int q = 0; q < n_products(cell) && status == KC_OK; ++q) {
      s.product = q;
      s.lhs = q == 0 ? s.src : p.rh;
      const int64_t n_ut = kcc::ceil_div(N, (int64_t)kFbGroups << product_shape(cell, q).upg_log2);
      if (n_ut * n_bt > 0x7fffffff)
        return kcc::set_error(KC_EINVAL, "kc_cuda_rnn: batch x units too large for the grid");
      s.n_ut = (int)n_ut;
      kernel<<<(unsigned)(n_ut * n_bt), kThreads, 0, st>>>(p, s);
      status = kcc::check_launch("rnn_step_kernel");
    }
  }
  return status;
}

// columns of xproj per unit: the gates the products' gate math reads
int x_gates(int cell) {
  int n = 0;
  for (int q = 0; q < n_products(cell); ++q) n += product_shape(cell, q).nx;
  return n;
}

bool valid_act(int32_t act) { return act >= KC_ACT_NONE && act <= KC_ACT_HARD_SIGMOID; }

}  // namespace

extern "C" KC_EXPORT int32_t kc_cuda_rnn(const kc_cuda_rnn_args *args, void *stream) {
  using kcc::set_error;
  if (!args) return set_error(KC_EINVAL, "kc_cuda_rnn: args is NULL");
  const kc_cuda_rnn_args a = *args;
  if (a.cell < KC_RNN_LSTM || a.cell > KC_RNN_SIMPLE)
    return set_error(KC_EINVAL, "kc_cuda_rnn: cell must be a kc_rnn_cell");
  if (!valid_act(a.act) || !valid_act(a.recurrent_act))
    return set_error(KC_EINVAL, "kc_cuda_rnn: act and recurrent_act must be kc_act values");
  if (a.steps < 0 || a.batch < 0 || a.units < 0)
    return set_error(KC_EINVAL, "kc_cuda_rnn: steps, batch and units must be >= 0");
  const bool lstm = a.cell == KC_RNN_LSTM, two = a.cell == KC_RNN_GRU_RESET_BEFORE;
  if (a.w_rec2 && !two)
    return set_error(KC_EINVAL, "kc_cuda_rnn: w_rec2 is for KC_RNN_GRU_RESET_BEFORE only");
  if (a.b_rec && a.cell != KC_RNN_GRU)
    return set_error(KC_EINVAL, "kc_cuda_rnn: b_rec is for KC_RNN_GRU only");
  if (!lstm && (a.c0 || a.c_out))
    return set_error(KC_EINVAL, "kc_cuda_rnn: c0 and c_out are for KC_RNN_LSTM only");
  if (a.batch == 0 || a.units == 0) return KC_OK;  // nothing to compute or write
  if (a.units > (int64_t)1 << 28 || a.batch > 0x7fffffff)
    return set_error(KC_EINVAL, "kc_cuda_rnn: batch or units too large");
  if (!a.h0 || !a.h_out || (lstm && (!a.c0 || !a.c_out)))
    return set_error(KC_EINVAL, "kc_cuda_rnn: h0 and h_out (an LSTM's c0 and c_out too) must "
                                "not be NULL");
  if (a.steps > 0 && (!a.xproj || !a.w_rec || (two && !a.w_rec2)))
    return set_error(KC_EINVAL, "kc_cuda_rnn: xproj and w_rec (w_rec2 too for "
                                "KC_RNN_GRU_RESET_BEFORE) must not be NULL");
  const int xg = x_gates(a.cell), wg = product_shape(a.cell, 0).ngates;  // W_rec's gates
  const int64_t bn = a.batch * a.units;  // <= 2^59
  if (a.steps > INT64_MAX / 16 / bn)
    return set_error(KC_EINVAL, "kc_cuda_rnn: steps x batch x units too large");
  const int64_t state = bn * 4, seq = a.steps * bn * 4;
  struct Span {
    const void *p;
    int64_t bytes;
  };
  const Span outs[] = {{a.h_out, state}, {a.c_out, state}, {a.h_seq, seq}};
  const Span ins[] = {{a.xproj, seq * xg},
                      {a.w_rec, a.units * a.units * 4 * wg},
                      {a.w_rec2, two ? a.units * a.units * 4 : 0},
                      {a.b_rec, a.units * 12},
                      {a.h0, state},
                      {a.c0, state}};
  for (int i = 0; i < 3; ++i) {
    for (int j = i + 1; j < 3; ++j)
      if (overlaps(outs[i].p, outs[i].bytes, outs[j].p, outs[j].bytes))
        return set_error(KC_EINVAL, "kc_cuda_rnn: h_out, c_out and h_seq must not overlap");
    for (const Span &in : ins)
      if (overlaps(outs[i].p, outs[i].bytes, in.p, in.bytes))
        return set_error(KC_EINVAL, "kc_cuda_rnn: h_out, c_out and h_seq must not overlap the "
                                    "inputs");
  }
  const cudaStream_t st = kcc::as_stream(stream);
  if (a.steps == 0) {
    cudaError_t e = cudaMemcpyAsync(a.h_out, a.h0, (size_t)state, cudaMemcpyDeviceToDevice, st);
    if (e == cudaSuccess && lstm)
      e = cudaMemcpyAsync(a.c_out, a.c0, (size_t)state, cudaMemcpyDeviceToDevice, st);
    return e == cudaSuccess ? KC_OK : kcc::cuda_error("kc_cuda_rnn: copy of the initial state", e);
  }

  RnnParams p = {};
  p.xproj = a.xproj;
  p.b_rec = a.b_rec;
  p.h0 = a.h0;
  p.c0 = a.c0;
  p.h_seq = a.h_seq;
  p.h_out = a.h_out;
  p.c_out = a.c_out;
  p.steps = a.steps;
  p.batch = (int)a.batch;
  p.units = (int)a.units;
  p.xw = xg * p.units;
  p.act = a.act;
  p.rec = a.recurrent_act;
  // the products: W and its row length
  const int N = p.units;
  p.prod[0] = {a.w_rec, wg * (int64_t)N};
  p.prod[1] = {a.w_rec2, N};

  // scratch: the second h buffer; r h_{t-1} and the update gate
  const int64_t n_alt = !a.h_seq && a.steps >= 2 ? bn : 0, n_two = two ? 2 * bn : 0;
  float *scratch = nullptr;
  if (n_alt + n_two > 0) {
    const cudaError_t e = cudaMallocAsync(&scratch, (size_t)(n_alt + n_two) * sizeof(float), st);
    if (e != cudaSuccess) {
      cudaGetLastError();
      return kcc::cuda_error("kc_cuda_rnn: scratch buffer", e);
    }
  }
  p.alt = n_alt ? scratch : nullptr;
  p.rh = two ? scratch + n_alt : nullptr;
  p.gate = two ? scratch + n_alt + bn : nullptr;
  p.vec = a.units % 4 == 0 && aligned16(a.h0) && aligned16(a.h_out) &&
          (!a.h_seq || aligned16(a.h_seq)) && (!p.rh || aligned16(p.rh));

  const int r = launch_persistent(a.cell, p, st);
  int32_t status = r < 0 ? -r : r > 0 ? KC_OK : launch_fallback(a.cell, p, st);
  if (scratch) {
    const cudaError_t e = cudaFreeAsync(scratch, st);
    if (e != cudaSuccess && status == KC_OK) status = kcc::cuda_error("kc_cuda_rnn: free", e);
  }
  return status;
}
