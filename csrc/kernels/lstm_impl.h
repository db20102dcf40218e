// A Keras LSTM layer's whole time loop in one call (kc_api.lstm), compiled once per instruction
// set after gemm_impl.h (same KC_GEMM_NS, vector width and Cfg).
//
// The recurrent weights are packed once per call into blocks of UB units (one vector) holding
// the four gates' columns of those units side by side, depth-major: [p][gate][UB]. A step is one
// parallel_for over the blocks; each thread keeps the same blocks at every step (the pool offers
// chunk c to thread c), so its part of the weights stays in its own L2. For a register tile of
// LM rows of h and one block, the product h W_rec lands in registers as the four gates'
// pre-activations of UB units, and the gate math (input projection, bias, activations, c and h)
// runs right there: no z matrix is written or read back, and a step has one fork and join where
// the generic loop has a GEMM, its epilogue and a gate pass.
#include "kcomp/rt.h"

namespace kcomp {
namespace KC_GEMM_NS {
namespace {

constexpr int UB = Cfg<float>::V;          // units per block: one vector of each gate
constexpr int LM = KC_VBYTES == 64 ? 4 : 2;  // rows per register tile: LM x 4 accumulators

struct LstmRun {
  const kc_lstm_args *a;
  const float *bias;  // a->bias or zeros
  float *packed;      // the blocks, U x 4 x UB floats each
  const float *hp;    // h of the previous step (batch, units)
  float *hn;          // h of this step: h_seq[t], or one of two buffers without h_seq
  int64_t t, blocks, parts, rows;  // step; tasks are blocks x parts of `rows` rows of the batch
};

void lstm_pack(void *ctx, int64_t lo, int64_t hi) {
  const LstmRun &r = *static_cast<const LstmRun *>(ctx);
  const int64_t U = r.a->units;
  for (int64_t task = lo; task < hi; ++task) {
    if (task % r.parts) continue;  // one task per block packs it
    const int64_t blk = task / r.parts, u0 = blk * UB, nu = U - u0 < UB ? U - u0 : UB;
    float *dst = r.packed + blk * U * 4 * UB;
    for (int64_t p = 0; p < U; ++p)
      for (int g = 0; g < 4; ++g) {
        const float *src = r.a->w_rec + p * 4 * U + g * U + u0;
        float *d = dst + (p * 4 + g) * UB;
        if (nu == UB) {
          std::memcpy(d, src, sizeof(float) * UB);  // a constant size: one vector move
        } else {
          for (int64_t j = 0; j < nu; ++j) d[j] = src[j];
          for (int64_t j = nu; j < UB; ++j) d[j] = 0.0f;
        }
      }
  }
}

// All blocks into `out` (cached_pack's fill), on the pool's threads.
int32_t lstm_pack_all(void *ctx, void *out) {
  LstmRun r = *static_cast<const LstmRun *>(ctx);
  r.packed = static_cast<float *>(out);
  r.parts = 1;
  parallel_for(r.blocks, 1, lstm_pack, &r);
  return KC_OK;
}

inline float lstm_rec(float x, bool hard) { return hard ? kc::hard_sigmoid(x) : kc::sigmoid(x); }

// The gate math of one row's n units, gate g's products at z[g * zs]; (n == zs == UB: constant
// trip counts, one vector per gate); branch-free, so that the loop vectorises (with
// -fno-trapping-math, as generated code).
template <bool HARD>
inline __attribute__((always_inline)) void lstm_gates(const float *__restrict z, int64_t zs,
                                                      const float *__restrict xp,
                                                      const float *__restrict b, int64_t U,
                                                      float *__restrict c, float *__restrict h,
                                                      int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const float zi = z[j] + xp[j] + b[j];
    const float zf = z[zs + j] + xp[U + j] + b[U + j];
    const float zc = z[2 * zs + j] + xp[2 * U + j] + b[2 * U + j];
    const float zo = z[3 * zs + j] + xp[3 * U + j] + b[3 * U + j];
    const float cn = lstm_rec(zf, HARD) * c[j] + lstm_rec(zi, HARD) * kc::tanh(zc);
    c[j] = cn;
    h[j] = lstm_rec(zo, HARD) * kc::tanh(cn);
  }
}

template <int M>
void lstm_tile(const LstmRun &r, int64_t blk, int64_t i0) {
  typedef Cfg<float> K;
  typedef float vec __attribute__((vector_size(K::V * sizeof(float))));
  const kc_lstm_args &a = *r.a;
  const int64_t U = a.units, B = a.batch, u0 = blk * UB;
  const float *w = r.packed + blk * U * 4 * UB;
  vec acc[M][4];
#pragma GCC unroll 8
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 4
    for (int g = 0; g < 4; ++g) acc[i][g] = vec{};
  for (int64_t p = 0; p < U; ++p) {
    vec wv[4];
#pragma GCC unroll 4
    for (int g = 0; g < 4; ++g) wv[g] = *reinterpret_cast<const vec *>(w + (p * 4 + g) * UB);
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i) {
      const float hv = r.hp[(i0 + i) * U + p];
#pragma GCC unroll 4
      for (int g = 0; g < 4; ++g) acc[i][g] += wv[g] * hv;
    }
  }
  const int64_t nu = U - u0 < UB ? U - u0 : UB;
  for (int i = 0; i < M; ++i) {
    alignas(64) float z[4 * UB];
    std::memcpy(z, acc[i], sizeof(z));
    const int64_t row = i0 + i;
    const float *xp = a.xproj + (r.t * B + row) * 4 * U + u0;
    float *c = a.c_out + row * U + u0, *h = r.hn + row * U + u0;
    const float *b = r.bias + u0;
    if (a.hard_sigmoid) {
      if (nu == UB) lstm_gates<true>(z, UB, xp, b, U, c, h, UB);
      else lstm_gates<true>(z, UB, xp, b, U, c, h, nu);
    } else {
      if (nu == UB) lstm_gates<false>(z, UB, xp, b, U, c, h, UB);
      else lstm_gates<false>(z, UB, xp, b, U, c, h, nu);
    }
  }
}

// The last n < LM rows of a part: one tile of n rows.
template <int M>
void lstm_rest(const LstmRun &r, int64_t blk, int64_t i0, int64_t n) {
  if (n == M) lstm_tile<M>(r, blk, i0);
  else if constexpr (M > 1) lstm_rest<M - 1>(r, blk, i0, n);
}

void lstm_step(void *ctx, int64_t lo, int64_t hi) {
  const LstmRun &r = *static_cast<const LstmRun *>(ctx);
  for (int64_t task = lo; task < hi; ++task) {
    const int64_t blk = task / r.parts, part = task % r.parts;
    const int64_t i1 = (part + 1) * r.rows < r.a->batch ? (part + 1) * r.rows : r.a->batch;
    int64_t i0 = part * r.rows;
    for (; i0 + LM <= i1; i0 += LM) lstm_tile<LM>(r, blk, i0);
    if (i1 > i0) lstm_rest<LM - 1>(r, blk, i0, i1 - i0);
  }
}

// Where step t writes h: h_seq[t], else the one of the two state buffers that step t - 1 did not
// write (h0 holds the initial state, which step 0 reads).
inline float *lstm_h_out(const kc_lstm_args *a, int64_t t, float *h0, float *h1) {
  return a->h_seq ? a->h_seq + t * a->batch * a->units : (t % 2 ? h0 : h1);
}

// With AVX2 (16 registers) a tile of all four gates of a block of units holds too few
// accumulators; above the few-row path a step is the GEMM (its 6 x 2 vector register tile,
// panels packed once) into z, then the gate math by rows (batch 32, 100 steps, 256 units, the
// generated code built for x86-64-v3: 13.6 ms against 14.7 for the fused tile and 14.0 for the
// generic loop; the portable build keeps the fused tile, which measured fastest there).
struct LstmRows {
  const kc_lstm_args *a;
  const float *bias, *z;
  float *hn;
  int64_t t;
};

void lstm_rows(void *ctx, int64_t lo, int64_t hi) {
  const LstmRows &r = *static_cast<const LstmRows *>(ctx);
  const int64_t U = r.a->units, B = r.a->batch;
  for (int64_t row = lo; row < hi; ++row) {
    const float *z = r.z + row * 4 * U, *xp = r.a->xproj + (r.t * B + row) * 4 * U;
    float *c = r.a->c_out + row * U, *h = r.hn + row * U;
    if (r.a->hard_sigmoid)
      lstm_gates<true>(z, U, xp, r.bias, U, c, h, U);
    else
      lstm_gates<false>(z, U, xp, r.bias, U, c, h, U);
  }
}

int32_t lstm_two_pass(const kc_lstm_args *a, const float *bias, float *h0, float *h1) {
  const int64_t T = a->steps, B = a->batch, U = a->units;
  kc_gemm_args g = {KC_FLOAT32, 0, 0, B, 4 * U, U, 1, nullptr, U, 0, a->w_rec, 4 * U, 0,
                    nullptr, 4 * U, 0};
  void *handle = nullptr;
  const float *cached = a->cache_w_rec ? (const float *)pack_cached(&g, &handle) : nullptr;
  const int64_t pbytes = cached ? 0 : packed_size_t<float>(g);
  const int64_t zbytes = sizeof(float) * 4 * B * U;
  char *mem = static_cast<char *>(std::aligned_alloc(64, (pbytes + zbytes + 127) / 64 * 64));
  if (!mem) {
    if (handle) pack_release(handle);
    return KC_ENOMEM;
  }
  float *own = pbytes ? reinterpret_cast<float *>(mem) : nullptr;
  float *z = reinterpret_cast<float *>(mem + (pbytes + 63) / 64 * 64);
  if (own) pack_t<float>(g, own);
  const float *packed = cached ? cached : own;
  g.c = z;
  LstmRows r{a, bias, z, nullptr, 0};
  const int64_t grain = 1 + (int64_t)(2.0e4 / (40.0 * U));  // gate math: ~40 flops a unit
  int32_t st = KC_OK;
  for (int64_t t = 0; t < T && st == KC_OK; ++t) {
    g.a = t ? r.hn : h0;
    r.t = t;
    r.hn = lstm_h_out(a, t, h0, h1);
    st = gemm_t<float>(g, packed, Epi{});
    if (st == KC_OK) parallel_for(B, grain, lstm_rows, &r);
  }
  if (handle) pack_release(handle);
  std::free(mem);
  return st;
}

// The fused tile (lstm_step), one parallel_for per step.
int32_t lstm_fused(const kc_lstm_args *a, const float *bias, float *h0, float *h1) {
  const int64_t T = a->steps, B = a->batch, U = a->units;
  LstmRun r{};
  r.a = a;
  r.bias = bias;
  r.blocks = (U + UB - 1) / UB;
  // split the batch too when there are fewer blocks than threads
  const int64_t threads = num_threads();
  r.parts = r.blocks >= threads ? 1 : (threads + r.blocks - 1) / r.blocks;
  r.rows = ((B + r.parts - 1) / r.parts + LM - 1) / LM * LM;
  r.parts = (B + r.rows - 1) / r.rows;
  const int64_t wbytes = sizeof(float) * r.blocks * U * 4 * UB;
  // a thread's share of one step, in flops: enough to be worth a thread of its own
  const int64_t tasks = r.blocks * r.parts;
  const double per_task = 8.0 * UB * U * r.rows + 1.0;
  const int64_t grain = (int64_t)(1.0e5 / per_task) + 1;
  // the recurrent weights packed once per variable value (pack_cache.cpp): at batch 1 packing
  // them was a sixteenth of a 100-step call; else packed here, with the same split as the steps
  // (each block packed where it is used)
  void *handle = nullptr;
  float *own = nullptr;
  if (a->cache_w_rec) {
    const PackKey key{a->w_rec, {2, KC_VBYTES, U, UB}};
    r.packed = (float *)cached_pack(key, sizeof(float) * U * 4 * U, wbytes, lstm_pack_all, &r,
                                    &handle);
  }
  if (!r.packed) {
    own = static_cast<float *>(std::aligned_alloc(64, (wbytes + 63) / 64 * 64));
    if (!own) return KC_ENOMEM;
    r.packed = own;
    parallel_for(tasks, grain, lstm_pack, &r);
  }
  for (int64_t t = 0; t < T; ++t) {
    r.t = t;
    r.hp = t ? r.hn : h0;
    r.hn = lstm_h_out(a, t, h0, h1);
    parallel_for(tasks, grain, lstm_step, &r);
  }
  if (handle) pack_release(handle);
  std::free(own);
  return KC_OK;
}

}  // namespace

int32_t lstm(const kc_lstm_args *a) {
  const int64_t T = a->steps, B = a->batch, U = a->units;
  if (T < 0 || B < 0 || U < 1 || !a->xproj || !a->w_rec || !a->h0 || !a->c0 || !a->h_out ||
      !a->c_out)
    return KC_EINVAL;
  const size_t state = sizeof(float) * B * U;
  if (a->c_out != a->c0) std::memmove(a->c_out, a->c0, state);
  if (T == 0 || B == 0) {
    if (a->h_out != a->h0) std::memmove(a->h_out, a->h0, state);
    return KC_OK;
  }
  // the two state buffers (h0 holding the initial state) and zeros for a missing bias
  const size_t sb = (state + 63) / 64 * 64, zb = sizeof(float) * 4 * U;
  char *mem = static_cast<char *>(std::aligned_alloc(64, (2 * sb + zb + 63) / 64 * 64));
  if (!mem) return KC_ENOMEM;
  float *h0 = reinterpret_cast<float *>(mem), *h1 = reinterpret_cast<float *>(mem + sb);
  float *zeros = reinterpret_cast<float *>(mem + 2 * sb);
  std::memset(zeros, 0, zb);
  std::memcpy(h0, a->h0, state);
  const float *bias = a->bias ? a->bias : zeros;
  const int32_t st = KC_VBYTES == 32 && B > SK ? lstm_two_pass(a, bias, h0, h1)
                                               : lstm_fused(a, bias, h0, h1);
  if (st == KC_OK) std::memcpy(a->h_out, lstm_h_out(a, T - 1, h0, h1), state);
  std::free(mem);
  return st;
}

}  // namespace KC_GEMM_NS
}  // namespace kcomp
