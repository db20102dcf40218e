// Blocked, packed GEMM (the BLIS loop structure) written once with GCC vector extensions and
// compiled once per instruction set: gemm_<isa>.cpp defines KC_GEMM_NS (the namespace), KC_VBYTES
// (the vector register width in bytes) and KC_MR (rows of the register tile), then includes this.
// The micro-kernel keeps an MR x (2 vectors) tile of C in registers; A and B are packed into
// contiguous panels so that its loads are sequential and aligned.
#include <cstdlib>
#include <cstring>

#include "kernels.h"

namespace kcomp {
namespace KC_GEMM_NS {
namespace {

template <class T>
struct Cfg {
  static constexpr int V = KC_VBYTES / sizeof(T);  // elements per vector register
  static constexpr int NRV = 2;                     // vectors per tile row
  static constexpr int NR = V * NRV;
  static constexpr int MR = KC_MR;
  static constexpr int64_t KC = 256;  // depth of a packed panel: an NR x KC panel of B stays in L1
  static constexpr int64_t MC = 120;  // rows of A packed at once: MC x KC stays in L2
  static constexpr int64_t NC = 2048; // columns of B packed at once: KC x NC stays in L3
};

// Per-thread packing buffers, grown on demand and reused across calls.
struct Scratch {
  void *ptr = nullptr;
  size_t size = 0;
  ~Scratch() { std::free(ptr); }
  void *get(size_t bytes) {
    if (bytes > size) {
      std::free(ptr);
      size = (bytes + 4095) & ~size_t(4095);
      ptr = std::aligned_alloc(64, size);
      if (!ptr) size = 0;
    }
    return ptr;
  }
};
thread_local Scratch tl_a, tl_b;

template <class T>
inline __attribute__((always_inline)) void micro(int64_t kc, const T *__restrict A,
                                                 const T *__restrict B, T *__restrict C,
                                                 int64_t ldc, int mr, int nr, bool accumulate) {
  typedef Cfg<T> K;
  typedef T vec __attribute__((vector_size(K::V * sizeof(T))));
  vec c[K::MR][K::NRV];
#pragma GCC unroll 16
  for (int i = 0; i < K::MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < K::NRV; ++j) c[i][j] = vec{};
  for (int64_t p = 0; p < kc; ++p) {
    vec b[K::NRV];
#pragma GCC unroll 4
    for (int j = 0; j < K::NRV; ++j) b[j] = *reinterpret_cast<const vec *>(B + p * K::NR + j * K::V);
#pragma GCC unroll 16
    for (int i = 0; i < K::MR; ++i) {
      const T a = A[p * K::MR + i];
#pragma GCC unroll 4
      for (int j = 0; j < K::NRV; ++j) c[i][j] += b[j] * a;
    }
  }
  if (mr == K::MR && nr == K::NR) {
#pragma GCC unroll 16
    for (int i = 0; i < K::MR; ++i)
#pragma GCC unroll 4
      for (int j = 0; j < K::NRV; ++j) {
        T *dst = C + i * ldc + j * K::V;
        vec v = c[i][j];
        if (accumulate) {
          vec old;
          std::memcpy(&old, dst, sizeof(vec));
          v += old;
        }
        std::memcpy(dst, &v, sizeof(vec));
      }
    return;
  }
  alignas(64) T tile[K::MR * K::NR];
  for (int i = 0; i < K::MR; ++i)
    for (int j = 0; j < K::NRV; ++j) std::memcpy(tile + i * K::NR + j * K::V, &c[i][j], sizeof(vec));
  for (int i = 0; i < mr; ++i)
    for (int j = 0; j < nr; ++j) C[i * ldc + j] = accumulate ? C[i * ldc + j] + tile[i * K::NR + j] : tile[i * K::NR + j];
}

// Packs rows [i0, i0+mc) x depth [p0, p0+kc) of op(A) into MR-row panels, zero-padded.
template <class T>
void pack_a(const T *a, int64_t lda, bool trans, int64_t i0, int64_t mc, int64_t p0, int64_t kc,
            T *out) {
  constexpr int MR = Cfg<T>::MR;
  for (int64_t r = 0; r < mc; r += MR) {
    const int rows = static_cast<int>(mc - r < MR ? mc - r : MR);
    for (int64_t p = 0; p < kc; ++p) {
      T *dst = out + (r * kc) + p * MR;
      for (int i = 0; i < rows; ++i) {
        const int64_t row = i0 + r + i, col = p0 + p;
        dst[i] = trans ? a[col * lda + row] : a[row * lda + col];
      }
      for (int i = rows; i < MR; ++i) dst[i] = T(0);
    }
  }
}

// Packs depth [p0, p0+kc) x columns [j0, j0+nc) of op(B) into NR-column panels, zero-padded.
template <class T>
void pack_b(const T *b, int64_t ldb, bool trans, int64_t p0, int64_t kc, int64_t j0, int64_t nc,
            T *out) {
  constexpr int NR = Cfg<T>::NR;
  for (int64_t s = 0; s < nc; s += NR) {
    const int cols = static_cast<int>(nc - s < NR ? nc - s : NR);
    for (int64_t p = 0; p < kc; ++p) {
      T *dst = out + s * kc + p * NR;
      if (!trans) {
        std::memcpy(dst, b + (p0 + p) * ldb + j0 + s, cols * sizeof(T));
      } else {
        for (int j = 0; j < cols; ++j) dst[j] = b[(j0 + s + j) * ldb + p0 + p];
      }
      for (int j = cols; j < NR; ++j) dst[j] = T(0);
    }
  }
}

// C[m0:m1, n0:n1] of one batch item, on the calling thread.
template <class T>
bool gemm_block(const kc_gemm_args &g, const T *a, const T *b, T *c, int64_t m0, int64_t m1,
                int64_t n0, int64_t n1) {
  typedef Cfg<T> K;
  const int64_t k = g.k;
  T *ap = static_cast<T *>(tl_a.get(sizeof(T) * K::MC * K::KC));
  T *bp = static_cast<T *>(tl_b.get(sizeof(T) * K::KC * (K::NC + K::NR)));
  if (!ap || !bp) return false;
  for (int64_t jc = n0; jc < n1; jc += K::NC) {
    const int64_t nc = n1 - jc < K::NC ? n1 - jc : K::NC;
    for (int64_t pc = 0; pc < k; pc += K::KC) {
      const int64_t kc = k - pc < K::KC ? k - pc : K::KC;
      pack_b(b, g.ldb, g.trans_b, pc, kc, jc, nc, bp);
      for (int64_t ic = m0; ic < m1; ic += K::MC) {
        const int64_t mc = m1 - ic < K::MC ? m1 - ic : K::MC;
        pack_a(a, g.lda, g.trans_a, ic, mc, pc, kc, ap);
        for (int64_t jr = 0; jr < nc; jr += K::NR) {
          const int nr = static_cast<int>(nc - jr < K::NR ? nc - jr : K::NR);
          for (int64_t ir = 0; ir < mc; ir += K::MR) {
            const int mr = static_cast<int>(mc - ir < K::MR ? mc - ir : K::MR);
            micro<T>(kc, ap + ir * kc, bp + jr * kc, c + (ic + ir) * g.ldc + jc + jr, g.ldc, mr, nr,
                     pc > 0);
          }
        }
      }
    }
  }
  return true;
}

// Small products: packing would cost more than it saves.
template <class T>
void gemm_small(const kc_gemm_args &g, const T *a, const T *b, T *c) {
  for (int64_t i = 0; i < g.m; ++i) {
    T *row = c + i * g.ldc;
    for (int64_t j = 0; j < g.n; ++j) row[j] = T(0);
    for (int64_t p = 0; p < g.k; ++p) {
      const T av = g.trans_a ? a[p * g.lda + i] : a[i * g.lda + p];
      if (!g.trans_b) {
        const T *brow = b + p * g.ldb;
        for (int64_t j = 0; j < g.n; ++j) row[j] += av * brow[j];
      } else {
        for (int64_t j = 0; j < g.n; ++j) row[j] += av * b[j * g.ldb + p];
      }
    }
  }
}

template <class T>
struct Task {
  const kc_gemm_args *g;
  int64_t tm, tn;  // tiles per matrix along M and N
  bool ok;
};

template <class T>
void run_tasks(void *ctx, int64_t begin, int64_t end) {
  Task<T> &t = *static_cast<Task<T> *>(ctx);
  const kc_gemm_args &g = *t.g;
  for (int64_t task = begin; task < end; ++task) {
    const int64_t per = t.tm * t.tn, bi = task / per, rest = task % per;
    const int64_t ti = rest / t.tn, tj = rest % t.tn;
    const T *a = static_cast<const T *>(g.a) + bi * g.stride_a;
    const T *b = static_cast<const T *>(g.b) + bi * g.stride_b;
    T *c = static_cast<T *>(g.c) + bi * g.stride_c;
    // Tile edges fall on register-tile boundaries so no two tasks share a micro-tile.
    constexpr int64_t MR = Cfg<T>::MR, NR = Cfg<T>::NR;
    const int64_t mt = (g.m + MR - 1) / MR, nt = (g.n + NR - 1) / NR;
    int64_t m0 = mt * ti / t.tm * MR, m1 = mt * (ti + 1) / t.tm * MR;
    int64_t n0 = nt * tj / t.tn * NR, n1 = nt * (tj + 1) / t.tn * NR;
    if (m1 > g.m) m1 = g.m;
    if (n1 > g.n) n1 = g.n;
    if (m0 >= m1 || n0 >= n1) continue;
    if (g.k == 0) {
      for (int64_t i = m0; i < m1; ++i)
        for (int64_t j = n0; j < n1; ++j) c[i * g.ldc + j] = T(0);
      continue;
    }
    if (!gemm_block<T>(g, a, b, c, m0, m1, n0, n1)) t.ok = false;
  }
}

template <class T>
int32_t gemm_t(const kc_gemm_args &g) {
  const double flops = 2.0 * g.m * g.n * g.k * g.batch;
  if (g.m * g.n * g.k <= 16 * 16 * 16 && g.k > 0) {
    for (int64_t bi = 0; bi < g.batch; ++bi)
      gemm_small<T>(g, static_cast<const T *>(g.a) + bi * g.stride_a,
                    static_cast<const T *>(g.b) + bi * g.stride_b,
                    static_cast<T *>(g.c) + bi * g.stride_c);
    return KC_OK;
  }
  Task<T> t{&g, 1, 1, true};
  const int64_t threads = flops < 2.0e5 ? 1 : num_threads();
  if (g.batch < threads) {
    // Split each matrix along its larger side until every thread has a tile.
    const int64_t want = (threads + g.batch - 1) / g.batch;
    if (g.m >= g.n) t.tm = want; else t.tn = want;
  }
  parallel_for(g.batch * t.tm * t.tn, 1, run_tasks<T>, &t);
  return t.ok ? KC_OK : KC_ENOMEM;
}

}  // namespace

int32_t gemm(const kc_gemm_args *g) {
  if (g->dtype == KC_FLOAT32) return gemm_t<float>(*g);
  if (g->dtype == KC_FLOAT64) return gemm_t<double>(*g);
  return KC_EINVAL;
}

}  // namespace KC_GEMM_NS
}  // namespace kcomp
