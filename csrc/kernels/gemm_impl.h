// Blocked, packed GEMM (the BLIS loop structure) written once with GCC vector extensions and
// compiled once per instruction set: isa_<name>.cpp defines KC_GEMM_NS (the namespace),
// KC_VBYTES (the vector register width in bytes) and KC_MR (rows of the register tile), then
// includes this. The micro-kernel keeps an MR x (2 vectors) tile of C in registers; A and B are
// packed into contiguous panels so that its loads are sequential (B's panels are read in place
// when few rows of C use them). Shapes that panels serve badly have their own paths below:
// few rows of C (in place, or split along k), dot products, few columns of C.
#include <algorithm>
#include <cstdlib>
#include <cstring>

#include <immintrin.h>

#include "kernels.h"
#include "kcomp/transpose.h"

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

// A fused epilogue (kc_api.gemm_ex): applied to each block of C once it is final.
struct Epi {
  kc_epilogue_fn fn = nullptr;
  void *ctx = nullptr;
  void operator()(int64_t item, int64_t i0, int64_t i1, int64_t j0, int64_t j1) const {
    if (fn && i0 < i1 && j0 < j1) fn(ctx, item, i0, i1, j0, j1);
  }
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

// C[0:mr, 0:nr] (+)= A B over kc: A an MR-row panel (AROWS: row-major, else depth-major), B's
// rows of NR values ldb apart (NR in a packed panel). ROWS <= MR rows are computed (mr <= ROWS):
// a last tile of one row does not cost MR.
template <class T, bool AROWS, int ROWS>
inline __attribute__((always_inline)) void micro(int64_t kc, const T *__restrict A,
                                                 const T *__restrict B, int64_t ldb,
                                                 T *__restrict C, int64_t ldc, int mr, int nr,
                                                 bool accumulate) {
  typedef Cfg<T> K;
  typedef T vec __attribute__((vector_size(K::V * sizeof(T))));
  vec c[ROWS][K::NRV];
#pragma GCC unroll 16
  for (int i = 0; i < ROWS; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < K::NRV; ++j) c[i][j] = vec{};
  for (int64_t p = 0; p < kc; ++p) {
    vec b[K::NRV];
#pragma GCC unroll 4
    for (int j = 0; j < K::NRV; ++j) std::memcpy(&b[j], B + p * ldb + j * K::V, sizeof(vec));
#pragma GCC unroll 16
    for (int i = 0; i < ROWS; ++i) {
      const T a = AROWS ? A[i * kc + p] : A[p * K::MR + i];
#pragma GCC unroll 4
      for (int j = 0; j < K::NRV; ++j) c[i][j] += b[j] * a;
    }
  }
  if (mr == ROWS && nr == K::NR) {
#pragma GCC unroll 16
    for (int i = 0; i < ROWS; ++i)
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
  alignas(64) T tile[ROWS * K::NR];
  for (int i = 0; i < ROWS; ++i)
    for (int j = 0; j < K::NRV; ++j) std::memcpy(tile + i * K::NR + j * K::V, &c[i][j], sizeof(vec));
  for (int i = 0; i < mr; ++i)
    for (int j = 0; j < nr; ++j) C[i * ldc + j] = accumulate ? C[i * ldc + j] + tile[i * K::NR + j] : tile[i * K::NR + j];
}

// micro with as few rows as the tile needs (MR, else 4 when MR is larger, or 1) for a packed
// panel, which stays in L1. A panel read in place has its rows a row of B apart, all in the
// same few L1 sets, so it comes from L2 for every tile: with fewer rows than MR the FMAs no
// longer hide that ((9,1024)x(1024,1024): 101 -> 165 us), so it takes MR rows always.
template <class T, bool AROWS>
inline __attribute__((always_inline)) void micro_rows(int64_t kc, const T *A, const T *B,
                                                      int64_t ldb, T *C, int64_t ldc, int mr,
                                                      int nr, bool accumulate) {
  constexpr int MR = Cfg<T>::MR, MID = MR > 4 ? 4 : MR;
  if (ldb != Cfg<T>::NR || mr > MID)
    micro<T, AROWS, MR>(kc, A, B, ldb, C, ldc, mr, nr, accumulate);
  else if (mr == 1)
    micro<T, AROWS, 1>(kc, A, B, ldb, C, ldc, mr, nr, accumulate);
  else
    micro<T, AROWS, MID>(kc, A, B, ldb, C, ldc, mr, nr, accumulate);
}

// Packs rows [i0, i0+mc) x depth [p0, p0+kc) of op(A) into MR-row panels, zero-padded. A
// panel is depth-major (MR values of one depth together) when A is transposed, so that both
// read contiguous runs of A; else row-major (each row's kc values together), which packs with
// vector copies where the depth-major layout takes one scalar move per element (the
// micro-kernel broadcasts single values either way; AROWS names the layout).
template <class T>
void pack_a(const T *a, int64_t lda, bool trans, int64_t i0, int64_t mc, int64_t p0, int64_t kc,
            T *out) {
  constexpr int MR = Cfg<T>::MR;
  for (int64_t r = 0; r < mc; r += MR) {
    const int rows = static_cast<int>(mc - r < MR ? mc - r : MR);
    T *panel = out + r * kc;
    if (!trans) {
      for (int i = 0; i < rows; ++i)
        std::memcpy(panel + i * kc, a + (i0 + r + i) * lda + p0, kc * sizeof(T));
      for (int i = rows; i < MR; ++i) std::memset(panel + i * kc, 0, kc * sizeof(T));
      continue;
    }
    for (int64_t p = 0; p < kc; ++p) {
      T *dst = panel + p * MR;
      for (int i = 0; i < rows; ++i) dst[i] = a[(p0 + p) * lda + i0 + r + i];
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
    if (trans)  // B^T's rows are the panel's columns
      kc::transpose_block(b + (j0 + s) * ldb + p0, ldb, out + s * kc, NR, cols, kc);
    for (int64_t p = 0; p < kc; ++p) {
      T *dst = out + s * kc + p * NR;
      if (!trans) {
        // a constant size for whole panels: vector moves, not a rep movs per row
        if (cols == NR)
          std::memcpy(dst, b + (p0 + p) * ldb + j0 + s, NR * sizeof(T));
        else
          std::memcpy(dst, b + (p0 + p) * ldb + j0 + s, cols * sizeof(T));
      }
      for (int j = cols; j < NR; ++j) dst[j] = T(0);
    }
  }
}

// C[m0:m1, n0:n1] of one batch item, on the calling thread. packed: op(B) already packed for
// all of k and n (gemm_pack's layout: NR-column panels of full depth), else B is packed here,
// except that with at most INPLACE_ROWS rows of C the micro-kernel reads whole panels of a
// row-major B where they are: a panel then serves too few rows to repay its copy (measured,
// (m,1024)x(1024,1024) float32 on two threads: m=9 170 -> 101 us, 16 144-171 -> 105, 32
// 216 -> 175; 48 and 64 equal).
constexpr int64_t INPLACE_ROWS = 32;
template <class T>
bool gemm_block(const kc_gemm_args &g, const T *a, const T *b, const T *packed, T *c, int64_t m0,
                int64_t m1, int64_t n0, int64_t n1, const Epi &epi, int64_t item) {
  typedef Cfg<T> K;
  const int64_t k = g.k;
  T *ap = static_cast<T *>(tl_a.get(sizeof(T) * K::MC * K::KC));
  T *bp = packed ? nullptr : static_cast<T *>(tl_b.get(sizeof(T) * K::KC * (K::NC + K::NR)));
  if (!ap || (!packed && !bp)) return false;
  const bool inplace = !packed && !g.trans_b && m1 - m0 <= INPLACE_ROWS;
  for (int64_t jc = n0; jc < n1; jc += K::NC) {
    const int64_t nc = n1 - jc < K::NC ? n1 - jc : K::NC;
    // depth panels of equal depth (784: 196 x 4, not 256 x 3 + 16, whose last panel's tiles
    // pay for loading and storing C over 16 steps)
    const int64_t panels = (k + K::KC - 1) / K::KC, depth = (k + panels - 1) / panels;
    for (int64_t pc = 0; pc < k; pc += depth) {
      const int64_t kc = k - pc < depth ? k - pc : depth;
      const int64_t full = inplace ? nc / K::NR * K::NR : 0;  // panels read in place
      if (!packed) pack_b(b, g.ldb, g.trans_b, pc, kc, jc + full, nc - full, bp);
      for (int64_t ic = m0; ic < m1; ic += K::MC) {
        const int64_t mc = m1 - ic < K::MC ? m1 - ic : K::MC;
        pack_a(a, g.lda, g.trans_a, ic, mc, pc, kc, ap);
        for (int64_t jr = 0; jr < nc; jr += K::NR) {
          const int nr = static_cast<int>(nc - jr < K::NR ? nc - jr : K::NR);
          // the panel of columns jc + jr at depth pc (jc + jr is a multiple of NR)
          const T *panel = packed ? packed + (jc + jr) * k + pc * K::NR
                           : jr < full ? b + pc * g.ldb + jc + jr : bp + (jr - full) * kc;
          const int64_t ldp = jr < full ? g.ldb : K::NR;
          for (int64_t ir = 0; ir < mc; ir += K::MR) {
            const int mr = static_cast<int>(mc - ir < K::MR ? mc - ir : K::MR);
            // the next tile of C (below this one, else the top of the next column panel) is
            // fetched while this one computes: its rows are a row stride apart, so they miss
            // every cache once C outgrows L3, and no hardware prefetcher follows them
            const int64_t ni = ir + K::MR < mc ? ir + K::MR : 0, nj = ni ? jr : jr + K::NR;
            if (nj < nc) {
              const T *next = c + (ic + ni) * g.ldc + jc + nj;
              for (int64_t r = 0; r < K::MR && ni + r < mc; ++r)
                for (int q = 0; q < K::NR; q += 64 / static_cast<int>(sizeof(T)))
                  __builtin_prefetch(next + r * g.ldc + q, 1, 3);
            }
            if (g.trans_a)
              micro_rows<T, false>(kc, ap + ir * kc, panel, ldp, c + (ic + ir) * g.ldc + jc + jr,
                                   g.ldc, mr, nr, pc > 0);
            else
              micro_rows<T, true>(kc, ap + ir * kc, panel, ldp, c + (ic + ir) * g.ldc + jc + jr,
                                  g.ldc, mr, nr, pc > 0);
          }
        }
        // the (mc x nc) block is final after the last panel of k: its epilogue reads it from
        // L2 and its other operands as long rows that the prefetchers follow
        if (pc + kc == k) epi(item, ic, ic + mc, jc, jc + nc);
      }
    }
  }
  return true;
}

// ---- products without packing ----------------------------------------------------------------
// Packing B pays off when each packed panel is reused by many rows of A. With few rows (a
// matrix-vector product, an RNN step at batch 1, an MLP at batch 1) or when every output is an
// independent dot product (batch_dot of vectors), reading the operands in place is faster.
// Strides are in elements: A(i, p) = a[i * ai + p * ap], B(p, j) = b[p * bp + j * bj].

// C(i, j) for i < m, j in [j0, j1): m <= SK rows of C, B's rows contiguous (bj == 1). Each
// column block of NB vectors keeps m x NB accumulators in registers while p runs over k.
constexpr int SK = 4;

// C(i, jv + q) for i < M, q < VW: one vector of VW columns
template <class T, int M, int VW>
inline void skinny_vec(int64_t k, const T *a, int64_t ai, int64_t ap, const T *b, int64_t bp,
                       T *c, int64_t ci, int64_t jv) {
  typedef T vec __attribute__((vector_size(VW * sizeof(T))));
  vec acc[M];
  for (int i = 0; i < M; ++i) acc[i] = vec{};
  for (int64_t p = 0; p < k; ++p) {
    vec bv;
    std::memcpy(&bv, b + p * bp + jv, sizeof(vec));
    for (int i = 0; i < M; ++i) acc[i] += bv * a[i * ai + p * ap];
  }
  for (int i = 0; i < M; ++i) std::memcpy(c + i * ci + jv, &acc[i], sizeof(vec));
}

// The n < V elements at p as a vector (its other lanes zero), and a vector's first n lanes
// stored at p: masked loads and stores, which touch no memory past the n elements (AVX-512 and
// AVX2; SSE has none, and the generic build takes the scalar tail below).
#if defined(__AVX512F__) || defined(__AVX2__)
#define KC_MASKED_TAIL 1
template <class vec, class T>
inline vec load_first(const T *p, int n) {
#if defined(__AVX512F__)
  if constexpr (sizeof(T) == 4) return (vec)_mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1), p);
  else return (vec)_mm512_maskz_loadu_pd((__mmask8)((1u << n) - 1), p);
#else
  if constexpr (sizeof(T) == 4)
    return (vec)_mm256_maskload_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(n),
                                                         _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
  else
    return (vec)_mm256_maskload_pd(p, _mm256_cmpgt_epi64(_mm256_set1_epi64x(n),
                                                         _mm256_setr_epi64x(0, 1, 2, 3)));
#endif
}
template <class vec, class T>
inline void store_first(T *p, vec v, int n) {
#if defined(__AVX512F__)
  if constexpr (sizeof(T) == 4) _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1), (__m512)v);
  else _mm512_mask_storeu_pd(p, (__mmask8)((1u << n) - 1), (__m512d)v);
#else
  if constexpr (sizeof(T) == 4)
    _mm256_maskstore_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(n),
                                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)), (__m256)v);
  else
    _mm256_maskstore_pd(p, _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3)),
                        (__m256d)v);
#endif
}

// C(i, j + q) for i < M, q < n < V: skinny_vec's loop on masked vectors
template <class T, int M>
void skinny_masked(int64_t k, const T *a, int64_t ai, int64_t ap, const T *b, int64_t bp, T *c,
                   int64_t ci, int64_t j, int n) {
  typedef T vec __attribute__((vector_size(Cfg<T>::V * sizeof(T))));
  vec acc[M];
  for (int i = 0; i < M; ++i) acc[i] = vec{};
  for (int64_t p = 0; p < k; ++p) {
    const vec bv = load_first<vec>(b + p * bp + j, n);
    for (int i = 0; i < M; ++i) acc[i] += bv * a[i * ai + p * ap];
  }
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i) store_first(c + i * ci + j, acc[i], n);  // unrolled, else GCC
}                                                    // kept acc in memory, stored every step
#endif

// The columns [j, j1) left of the range [j0, j1), fewer than VW: one vector of VW ending at j1
// when the range is that wide (the columns it shares with the previous vector get the same
// values, computed alike), else one masked vector; without masks, vectors of half the width,
// down to 16 bytes, then scalars. (A scalar tail cost batch_dot (1000,20,30)x(1000,30,20)
// 651 us, 140 us this way; (256,512)x(512,10) float32, two threads, 8 + 2 scalar columns 22.6
// -> 12.7 us masked.)
template <class T, int M, int VW>
void skinny_tail(int64_t k, const T *a, int64_t ai, int64_t ap, const T *b, int64_t bp, T *c,
                 int64_t ci, int64_t j0, int64_t j, int64_t j1) {
  if (j >= j1) return;
  if (j1 - j0 >= VW) {
    skinny_vec<T, M, VW>(k, a, ai, ap, b, bp, c, ci, j1 - VW);
    return;
  }
#ifdef KC_MASKED_TAIL
  if constexpr (VW == Cfg<T>::V) {
    skinny_masked<T, M>(k, a, ai, ap, b, bp, c, ci, j, (int)(j1 - j));
    return;
  }
#endif
  constexpr int H = VW / 2;
  if constexpr (H * sizeof(T) >= 16) {
    for (; j + H <= j1; j += H) skinny_vec<T, M, H>(k, a, ai, ap, b, bp, c, ci, j);
    skinny_tail<T, M, H>(k, a, ai, ap, b, bp, c, ci, j0, j, j1);
  } else {
    for (int i = 0; i < M; ++i)  // scalar, in the data type
      for (int64_t jj = j; jj < j1; ++jj) c[i * ci + jj] = T(0);
    for (int64_t p = 0; p < k; ++p)
      for (int i = 0; i < M; ++i) {
        const T av = a[i * ai + p * ap];
        for (int64_t jj = j; jj < j1; ++jj) c[i * ci + jj] += av * b[p * bp + jj];
      }
  }
}

// The columns [j, j1) left of a range at least a vector wide, in one pass of NV vectors: at j,
// j + V, ..., the last ending at j1 (its columns shared with the vector before get the same
// values, computed alike). M x NV accumulator chains: one vector at a time gave M, too few to
// hide the FMA latency ((12544,64)x(64,24) float32, two threads: 159 -> 112 us; (2000,100)x(100,
// 60) 86 -> 52 us).
template <class T, int M, int NV>
void skinny_last(int64_t k, const T *a, int64_t ai, int64_t ap, const T *b, int64_t bp, T *c,
                 int64_t ci, int64_t j, int64_t j1) {
  typedef Cfg<T> K;
  typedef T vec __attribute__((vector_size(K::V * sizeof(T))));
  int64_t at[NV];
  for (int q = 0; q < NV; ++q) at[q] = q == NV - 1 ? j1 - K::V : j + q * K::V;
  vec acc[M][NV];
  for (int i = 0; i < M; ++i)
    for (int q = 0; q < NV; ++q) acc[i][q] = vec{};
  for (int64_t p = 0; p < k; ++p) {
    vec bv[NV];
    for (int q = 0; q < NV; ++q) std::memcpy(&bv[q], b + p * bp + at[q], sizeof(vec));
    for (int i = 0; i < M; ++i) {
      const T av = a[i * ai + p * ap];
      for (int q = 0; q < NV; ++q) acc[i][q] += bv[q] * av;
    }
  }
  for (int i = 0; i < M; ++i)
    for (int q = 0; q < NV; ++q) std::memcpy(c + i * ci + at[q], &acc[i][q], sizeof(vec));
}

template <class T, int M>
void skinny_rows(int64_t k, const T *a, int64_t ai, int64_t ap, const T *b, int64_t bp, T *c,
                 int64_t ci, int64_t j0, int64_t j1) {
  typedef Cfg<T> K;
  typedef T vec __attribute__((vector_size(K::V * sizeof(T))));
  // vectors per column block: enough independent accumulator chains to hide the FMA latency
  constexpr int NB = M == 1 ? 8 : 4;
  constexpr int64_t W = NB * K::V;
  int64_t j = j0;
  for (; j + W <= j1; j += W) {
    vec acc[M][NB];
    for (int i = 0; i < M; ++i)
      for (int q = 0; q < NB; ++q) acc[i][q] = vec{};
    for (int64_t p = 0; p < k; ++p) {
      const T *brow = b + p * bp + j;
      vec bv[NB];
      for (int q = 0; q < NB; ++q) std::memcpy(&bv[q], brow + q * K::V, sizeof(vec));
      for (int i = 0; i < M; ++i) {
        const T av = a[i * ai + p * ap];
        for (int q = 0; q < NB; ++q) acc[i][q] += bv[q] * av;
      }
    }
    for (int i = 0; i < M; ++i)
      for (int q = 0; q < NB; ++q) std::memcpy(c + i * ci + j + q * K::V, &acc[i][q], sizeof(vec));
  }
  const int64_t nv = (j1 - j + K::V - 1) / K::V;  // vectors left, the last one maybe partial
  if (j1 - j0 >= K::V && nv <= 4) {
    switch (nv) {
      case 0: break;
      case 1: skinny_last<T, M, 1>(k, a, ai, ap, b, bp, c, ci, j, j1); break;
      case 2: skinny_last<T, M, 2>(k, a, ai, ap, b, bp, c, ci, j, j1); break;
      case 3: skinny_last<T, M, 3>(k, a, ai, ap, b, bp, c, ci, j, j1); break;
      default: skinny_last<T, M, 4>(k, a, ai, ap, b, bp, c, ci, j, j1); break;
    }
    return;
  }
  for (; j + K::V <= j1; j += K::V) skinny_vec<T, M, K::V>(k, a, ai, ap, b, bp, c, ci, j);
  skinny_tail<T, M, K::V>(k, a, ai, ap, b, bp, c, ci, j0, j, j1);
}

template <class T>
void skinny(int64_t m, int64_t k, const T *a, int64_t ai, int64_t ap, const T *b, int64_t bp,
            T *c, int64_t ci, int64_t j0, int64_t j1) {
  int64_t i = 0;
  if (j1 - j0 <= 2 * Cfg<T>::V)  // at most 2 vectors of columns: 8 rows make the chains
    for (; i + 2 * SK <= m; i += 2 * SK)
      skinny_rows<T, 2 * SK>(k, a + i * ai, ai, ap, b, bp, c + i * ci, ci, j0, j1);
  for (; i < m; i += SK) {
    const T *ar = a + i * ai;
    T *cr = c + i * ci;
    switch (m - i < SK ? m - i : SK) {
      case 1: skinny_rows<T, 1>(k, ar, ai, ap, b, bp, cr, ci, j0, j1); break;
      case 2: skinny_rows<T, 2>(k, ar, ai, ap, b, bp, cr, ci, j0, j1); break;
      case 3: skinny_rows<T, 3>(k, ar, ai, ap, b, bp, cr, ci, j0, j1); break;
      default: skinny_rows<T, 4>(k, ar, ai, ap, b, bp, cr, ci, j0, j1); break;
    }
  }
}

// The same products from B packed once (gemm_pack, for a product repeated with the same B: an
// RNN's recurrent weights at batch <= SK): blocks of SW vectors of columns, each block stored
// depth-major, so every block is one contiguous stream. Row-major B read in place is k rows a
// row stride apart per block, which the prefetchers follow poorly: at batch 1 the packed loop
// streams its half of a 256 x 1024 float32 matrix from L2 about twice as fast (measured 2.5 vs
// 5.5 us per core).
constexpr int SW = 4;

template <class T>
constexpr int64_t skinny_block() { return SW * Cfg<T>::V; }

template <class T>
int64_t skinny_item(const kc_gemm_args &g) {
  constexpr int64_t W = skinny_block<T>();
  return (g.n + W - 1) / W * W * g.k;
}

// Packs the blocks of columns [j0, j1) (j0 a multiple of the block width) of row-major B into
// out, the whole item's pack.
template <class T>
void pack_skinny(const T *b, int64_t ldb, int64_t k, int64_t n, int64_t j0, int64_t j1, T *out) {
  constexpr int64_t W = skinny_block<T>();
  for (int64_t j = j0; j < j1; j += W) {
    const int64_t cols = n - j < W ? n - j : W;
    T *blk = out + j * k;
    for (int64_t p = 0; p < k; ++p) {
      T *dst = blk + p * W;
      if (cols == W) {  // a constant size: vector moves
        std::memcpy(dst, b + p * ldb + j, W * sizeof(T));
      } else {
        std::memcpy(dst, b + p * ldb + j, cols * sizeof(T));
        for (int64_t q = cols; q < W; ++q) dst[q] = T(0);
      }
    }
  }
}

// C(i, j) for i < M, j in [j0, j1) (j0 a multiple of the block width) from pack_skinny's blocks.
template <class T, int M>
void skinny_packed_rows(int64_t k, const T *a, int64_t ai, int64_t ap, const T *packed, T *c,
                        int64_t ci, int64_t n, int64_t j0, int64_t j1) {
  typedef Cfg<T> K;
  typedef T vec __attribute__((vector_size(K::V * sizeof(T))));
  constexpr int64_t W = skinny_block<T>();
  for (int64_t j = j0; j < j1; j += W) {
    const T *blk = packed + j * k;
    vec acc[M][SW];
#pragma GCC unroll 4
    for (int i = 0; i < M; ++i)
#pragma GCC unroll 4
      for (int q = 0; q < SW; ++q) acc[i][q] = vec{};
    for (int64_t p = 0; p < k; ++p) {
      vec bv[SW];
#pragma GCC unroll 4
      for (int q = 0; q < SW; ++q) bv[q] = *reinterpret_cast<const vec *>(blk + p * W + q * K::V);
#pragma GCC unroll 4
      for (int i = 0; i < M; ++i) {
        const T av = a[i * ai + p * ap];
#pragma GCC unroll 4
        for (int q = 0; q < SW; ++q) acc[i][q] += bv[q] * av;
      }
    }
    const int64_t cols = n - j < W ? n - j : W;
    for (int i = 0; i < M; ++i) {
      if (cols == W) {
        for (int q = 0; q < SW; ++q)
          std::memcpy(c + i * ci + j + q * K::V, &acc[i][q], sizeof(vec));
      } else {  // the last block of a ragged n
        alignas(64) T row[W];
        std::memcpy(row, acc[i], sizeof(row));
        std::memcpy(c + i * ci + j, row, cols * sizeof(T));
      }
    }
  }
}

template <class T>
void skinny_packed(int64_t m, int64_t k, const T *a, int64_t ai, int64_t ap, const T *packed,
                   T *c, int64_t ci, int64_t n, int64_t j0, int64_t j1) {
  switch (m) {
    case 1: skinny_packed_rows<T, 1>(k, a, ai, ap, packed, c, ci, n, j0, j1); break;
    case 2: skinny_packed_rows<T, 2>(k, a, ai, ap, packed, c, ci, n, j0, j1); break;
    case 3: skinny_packed_rows<T, 3>(k, a, ai, ap, packed, c, ci, n, j0, j1); break;
    default: skinny_packed_rows<T, 4>(k, a, ai, ap, packed, c, ci, n, j0, j1); break;
  }
}

// Dot product of two contiguous vectors: 4 vector accumulators, merged pairwise.
template <class T>
inline T dot(const T *x, const T *y, int64_t k) {
  typedef Cfg<T> K;
  typedef T vec __attribute__((vector_size(K::V * sizeof(T))));
  vec acc[4] = {vec{}, vec{}, vec{}, vec{}};
  int64_t p = 0;
  for (; p + 4 * K::V <= k; p += 4 * K::V)
    for (int q = 0; q < 4; ++q) {
      vec xv, yv;
      std::memcpy(&xv, x + p + q * K::V, sizeof(vec));
      std::memcpy(&yv, y + p + q * K::V, sizeof(vec));
      acc[q] += xv * yv;
    }
  for (; p + K::V <= k; p += K::V) {
    vec xv, yv;
    std::memcpy(&xv, x + p, sizeof(vec));
    std::memcpy(&yv, y + p, sizeof(vec));
    acc[0] += xv * yv;
  }
  vec v = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  T r = T(0);
  for (int l = 0; l < K::V; ++l) r += v[l];
  for (; p < k; ++p) r += x[p] * y[p];
  return r;
}

// Element strides of op(A) and op(B): A(i, p) = a[i * a_i + p * a_p], B(p, j) = b[p * b_p +
// j * b_j].
struct Strides {
  int64_t a_i, a_p, b_p, b_j;
};
inline Strides strides(const kc_gemm_args &g) {
  return {g.trans_a ? 1 : g.lda, g.trans_a ? g.lda : 1, g.trans_b ? 1 : g.ldb,
          g.trans_b ? g.ldb : 1};
}

// How one batch item is computed without packing; none: use the packed path.
enum class Plain { none, rows, cols_t, dots_i, dots_j, packed_rows };

template <class T>
Plain plain_kind(const kc_gemm_args &g) {
  const Strides st = strides(g);
  const int64_t sa_i = st.a_i, sa_p = st.a_p, sb_p = st.b_p, sb_j = st.b_j;
  const bool contiguous_k = sa_p == 1 && sb_p == 1;
  const bool few_cols = g.n < Cfg<T>::V;  // too few columns to fill a vector
  if (contiguous_k && (few_cols || (g.m <= SK && sb_j != 1)) && (g.m <= SK || g.n <= SK))
    return g.m >= g.n ? Plain::dots_i : Plain::dots_j;  // every output a dot product
  // C = A B with B read by rows in place: few rows of C; or B small enough to stay in L1
  // while every group of rows streams past it (batches of small matrices), when it has at
  // least 16 bytes of columns (skinny_tail's narrowest vector) or masked vectors serve any
  // width (a Dense(2) or (3) head, or a 1x1 convolution to 2 or 3 channels, went to the packed
  // path's 32-column tiles: (32768,64)x(64,2) float32 525 us, numpy 172; now 155)
#ifdef KC_MASKED_TAIL
  constexpr bool any_width = true;
#else
  constexpr bool any_width = false;
#endif
  const bool small_b = g.k * g.n * (int64_t)sizeof(T) <= 32 * 1024 &&
                       (g.n * sizeof(T) >= 16 || any_width);
  if ((g.m <= SK || small_b) && (sb_j == 1 || g.n == 1)) return Plain::rows;
  if (g.n == 1 && sa_i == 1 && g.ldc == 1) return Plain::cols_t;  // C^T = b^T A^T
  return Plain::none;
}

// Whether tasks split an item's C by columns (else by rows): the few rows of rows, dots_j and
// packed_rows. rows over many rows (B small enough for L1: a 1x1 convolution to 32 channels)
// splits its rows: its columns may fill no more than one block of 4 vectors (measured, 12544
// rows of 64 to 32 columns: one thread before).
inline bool splits_cols(const kc_gemm_args &g, Plain kind) {
  return (kind == Plain::rows && g.m <= SK) || kind == Plain::dots_j ||
         kind == Plain::packed_rows;
}

// Outputs [r0, r1) of the split axis (splits_cols) of one batch item's C (b: for packed_rows,
// that item's pack_skinny blocks).
template <class T>
void plain_block(const kc_gemm_args &g, Plain kind, const T *a, const T *b, T *c, int64_t r0,
                 int64_t r1) {
  const Strides st = strides(g);
  const int64_t sa_i = st.a_i, sa_p = st.a_p, sb_p = st.b_p, sb_j = st.b_j;
  switch (kind) {
    case Plain::rows: {
      const bool cols = splits_cols(g, kind);
      const int64_t i0 = cols ? 0 : r0, i1 = cols ? g.m : r1;
      const int64_t j0 = cols ? r0 : 0, j1 = cols ? r1 : g.n;
      if (g.k == 0) {
        for (int64_t i = i0; i < i1; ++i)
          for (int64_t j = j0; j < j1; ++j) c[i * g.ldc + j] = T(0);
      } else {
        skinny<T>(i1 - i0, g.k, a + i0 * sa_i, sa_i, sa_p, b, sb_p, c + i0 * g.ldc, g.ldc, j0,
                  j1);
      }
      break;
    }
    case Plain::cols_t:  // C^T (1 x m) = B^T (1 x k) A^T (k x m): A's columns are contiguous
      if (g.k == 0) {
        for (int64_t i = r0; i < r1; ++i) c[i] = T(0);
      } else {
        skinny<T>(1, g.k, b, 0, sb_p, a, sa_p, c, 0, r0, r1);
      }
      break;
    case Plain::dots_i:
      for (int64_t i = r0; i < r1; ++i)
        for (int64_t j = 0; j < g.n; ++j) c[i * g.ldc + j] = dot<T>(a + i * sa_i, b + j * sb_j, g.k);
      break;
    case Plain::dots_j:
      for (int64_t i = 0; i < g.m; ++i)
        for (int64_t j = r0; j < r1; ++j) c[i * g.ldc + j] = dot<T>(a + i * sa_i, b + j * sb_j, g.k);
      break;
    case Plain::packed_rows:
      skinny_packed<T>(g.m, g.k, a, sa_i, sa_p, b, c, g.ldc, g.n, r0, r1);
      break;
    default: break;
  }
}

template <class T>
struct PlainTask {
  const kc_gemm_args *g;
  Plain kind;
  int64_t extent, width, parts;  // the split axis, outputs of it per task, tasks per item
  const T *packed;               // pack_skinny's blocks for packed_rows
  int64_t packed_item;           // elements per batch item of packed (0: one B for all)
  Epi epi;
};

// How gemm_plain splits a product into tasks (batch items x parts of the split axis) and how
// many tasks a thread takes at least (parallel_for's grain).
struct PlainSplit {
  int64_t extent, width, parts, tasks, grain;
};

template <class T>
PlainSplit plain_split(const kc_gemm_args &g, Plain kind) {
  PlainSplit sp;
  const bool by_cols = splits_cols(g, kind);
  sp.extent = by_cols ? g.n : g.m;
  const double flops = 2.0 * g.m * g.n * g.k * g.batch;
  const int64_t threads = flops < 1.0e5 ? 1 : num_threads();
  // split the outputs of an item only when the batch alone does not give every thread work;
  // column splits fall on whole vector blocks
  sp.parts = g.batch >= threads ? 1 : (threads + g.batch - 1) / g.batch;
  // (whole blocks of skinny_rows: 4 vectors of columns, SK rows)
  const int64_t unit = kind == Plain::rows      ? (by_cols ? 4 * Cfg<T>::V : SK)
                       : kind == Plain::cols_t      ? 4 * Cfg<T>::V
                       : kind == Plain::packed_rows ? skinny_block<T>()
                                                    : 1;
  sp.width = (sp.extent + sp.parts - 1) / sp.parts;
  sp.width = (sp.width + unit - 1) / unit * unit;
  sp.parts = (sp.extent + sp.width - 1) / sp.width;
  sp.tasks = g.batch * sp.parts;
  const double per_task = flops / (double)sp.tasks + 1.0;
  sp.grain = threads == 1 ? sp.tasks : (int64_t)(1.0e5 / per_task) + 1;
  return sp;
}

template <class T>
void run_plain(void *ctx, int64_t begin, int64_t end) {
  const PlainTask<T> &t = *static_cast<PlainTask<T> *>(ctx);
  const kc_gemm_args &g = *t.g;
  for (int64_t task = begin; task < end; ++task) {
    const int64_t bi = task / t.parts, part = task % t.parts;
    const int64_t r0 = part * t.width, r1 = r0 + t.width < t.extent ? r0 + t.width : t.extent;
    if (r0 >= r1) continue;
    const T *b = t.packed ? t.packed + bi * t.packed_item
                          : static_cast<const T *>(g.b) + bi * g.stride_b;
    plain_block<T>(g, t.kind, static_cast<const T *>(g.a) + bi * g.stride_a, b,
                   static_cast<T *>(g.c) + bi * g.stride_c, r0, r1);
    if (splits_cols(g, t.kind))
      t.epi(bi, 0, g.m, r0, r1);
    else
      t.epi(bi, r0, r1, 0, g.n);
  }
}

// ---- a few rows of C from a large B: split along k -------------------------------------------
// C (m x n) = A B for m <= KROWS, B row-major and too large for the threads' L2: column blocks
// over all of k read B as short runs a row apart, which the prefetchers follow poorly, and
// packed panels cost a copy of B per call. Here a task takes a part of k (whole rows of B: one
// contiguous stream) and a chunk of columns, and adds 4 rows of B at a time into the m partial
// rows of the chunk, which stay in L1; the parts' rows are then added in order. The number of
// parts follows from k alone (a power of two), so results do not depend on the thread count.
// Measured on two threads, B from L3, float32: (1,1024)x(1024,1024) 26-29 vs 33-36 us (column
// blocks), (5,1024)x(1024,1024) 45 vs 111 us and (8,1024)x(1024,1024) 55-62 vs 135 us (packed).
constexpr int64_t KROWS = 8, KPART = 256, KPARTS_MAX = 8;
constexpr int64_t KCHUNK = 4096;  // partial-row elements of a task: m rows of KCHUNK / m
constexpr int64_t KPARTIAL_BYTES = (int64_t)4 << 20;

template <class T>
bool use_ksplit(const kc_gemm_args &g) {
  return g.m <= KROWS && strides(g).b_j == 1 && g.k >= 2 * KPART && g.n >= Cfg<T>::V &&
         g.k * g.n * (int64_t)sizeof(T) >= (int64_t)1 << 20;
}

// out(i, j) += sum over r < R of A(i, r) B(r, j) for i < m, j in [j0, j1); A(i, r) =
// a[i * ai + r * ap], B's rows bp apart, out's rows ld apart
template <class T, int R>
void add_rows(int64_t m, const T *a, int64_t ai, int64_t ap, const T *b, int64_t bp, T *out,
              int64_t ld, int64_t j0, int64_t j1) {
  typedef Cfg<T> K;
  typedef T vec __attribute__((vector_size(K::V * sizeof(T))));
  T av[KROWS][R];
  for (int64_t i = 0; i < m; ++i)
    for (int r = 0; r < R; ++r) av[i][r] = a[i * ai + r * ap];
  int64_t j = j0;
  for (; j + K::V <= j1; j += K::V) {
    vec x[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) std::memcpy(&x[r], b + r * bp + j, sizeof(vec));
    for (int64_t i = 0; i < m; ++i) {
      vec acc;
      std::memcpy(&acc, out + i * ld + j, sizeof(vec));
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) acc += x[r] * av[i][r];
      std::memcpy(out + i * ld + j, &acc, sizeof(vec));
    }
  }
  for (; j < j1; ++j)
    for (int64_t i = 0; i < m; ++i)
      for (int r = 0; r < R; ++r) out[i * ld + j] += b[r * bp + j] * av[i][r];
}

template <class T>
struct KSplitTask {
  const kc_gemm_args *g;
  int64_t parts, chunk, chunks;  // parts of k; columns per chunk, chunks of n
  T *partial;  // per item, parts 1.. : (parts - 1) blocks of m rows of n (part 0 writes C)
  Epi epi;
};

template <class T>
void run_ksplit(void *ctx, int64_t begin, int64_t end) {
  const KSplitTask<T> &t = *static_cast<KSplitTask<T> *>(ctx);
  const kc_gemm_args &g = *t.g;
  const Strides st = strides(g);
  const int64_t sa_i = st.a_i, sa_p = st.a_p;
  for (int64_t task = begin; task < end; ++task) {
    const int64_t bi = task / (t.parts * t.chunks), part = task / t.chunks % t.parts;
    const int64_t j0 = task % t.chunks * t.chunk, j1 = j0 + t.chunk < g.n ? j0 + t.chunk : g.n;
    T *out = part == 0 ? static_cast<T *>(g.c) + bi * g.stride_c
                       : t.partial + ((bi * (t.parts - 1) + part - 1) * g.m) * g.n;
    const int64_t ld = part == 0 ? g.ldc : g.n;
    for (int64_t i = 0; i < g.m; ++i)
      for (int64_t j = j0; j < j1; ++j) out[i * ld + j] = T(0);
    const T *a = static_cast<const T *>(g.a) + bi * g.stride_a;
    const T *b = static_cast<const T *>(g.b) + bi * g.stride_b;
    const int64_t p1 = g.k * (part + 1) / t.parts;
    int64_t p = g.k * part / t.parts;
    for (; p + 4 <= p1; p += 4)
      add_rows<T, 4>(g.m, a + p * sa_p, sa_i, sa_p, b + p * g.ldb, g.ldb, out, ld, j0, j1);
    for (; p < p1; ++p)
      add_rows<T, 1>(g.m, a + p * sa_p, sa_i, sa_p, b + p * g.ldb, g.ldb, out, ld, j0, j1);
  }
}

template <class T>
void run_ksplit_merge(void *ctx, int64_t begin, int64_t end) {
  const KSplitTask<T> &t = *static_cast<KSplitTask<T> *>(ctx);
  const kc_gemm_args &g = *t.g;
  for (int64_t task = begin; task < end; ++task) {
    const int64_t bi = task / t.chunks, j0 = task % t.chunks * t.chunk;
    const int64_t j1 = j0 + t.chunk < g.n ? j0 + t.chunk : g.n;
    T *c = static_cast<T *>(g.c) + bi * g.stride_c;
    for (int64_t part = 1; part < t.parts; ++part) {
      const T *rows = t.partial + ((bi * (t.parts - 1) + part - 1) * g.m) * g.n;
      for (int64_t i = 0; i < g.m; ++i)
        for (int64_t j = j0; j < j1; ++j) c[i * g.ldc + j] += rows[i * g.n + j];
    }
    t.epi(bi, 0, g.m, j0, j1);
  }
}

thread_local Scratch tl_k;

// false when the partial rows cannot be allocated (the caller takes another path)
template <class T>
bool gemm_ksplit(const kc_gemm_args &g, const Epi &epi) {
  // a power of two (as many for each of an even number of threads); none with many items, and
  // fewer when the partial rows (kept by the calling thread for its next calls) would pass
  // KPARTIAL_BYTES: C then has many columns, whose chunks give the threads their work
  int64_t parts = g.batch >= KPARTS_MAX ? 1 : KPARTS_MAX;
  while (parts > 1 && (parts * KPART > g.k ||
                       (parts - 1) * g.batch * g.m * g.n * (int64_t)sizeof(T) > KPARTIAL_BYTES))
    parts /= 2;
  T *partial = nullptr;
  if (parts > 1) {
    partial = static_cast<T *>(tl_k.get(sizeof(T) * g.batch * (parts - 1) * g.m * g.n));
    if (!partial) return false;
  }
  const int64_t chunk = (KCHUNK / g.m + Cfg<T>::V - 1) / Cfg<T>::V * Cfg<T>::V;
  KSplitTask<T> t{&g, parts, chunk, (g.n + chunk - 1) / chunk, partial, epi};
  const int64_t grain = (int64_t)(1.0e5 / (2.0 * g.m * g.k / parts * chunk)) + 1;
  parallel_for(g.batch * parts * t.chunks, grain, run_ksplit<T>, &t);
  parallel_for(g.batch * t.chunks, grain, run_ksplit_merge<T>, &t);
  return true;
}

template <class T>
void run_plain_kind(const kc_gemm_args &g, Plain kind, const T *packed, const Epi &epi) {
  const PlainSplit sp = plain_split<T>(g, kind);
  PlainTask<T> t{&g, kind, sp.extent, sp.width, sp.parts, packed,
                 packed && g.stride_b != 0 ? skinny_item<T>(g) : 0, epi};
  parallel_for(sp.tasks, sp.grain, run_plain<T>, &t);
}

// ---- fewer than 16 bytes of columns of C, B row-major ----------------------------------------
// Packed panels would be mostly zero padding and the rows path scalar: each output is a dot
// product of a row of A with a column of B, the columns first copied into contiguous rows (B^T,
// n x k: small). Alternating builds, float32: (1000,300)x(300,3) 61-71 -> 21-22 us. From 16
// bytes of columns the rows path's vectors win ((12544,64)x(64,8) 229 -> 64 us, (5000,64)x(64,
// 10) 114 -> 50 us, (256,512)x(512,10) 23 -> 20 us). B^T larger than L1 measured slower than
// the panels ((64,2048)x(2048,15) 37 -> 86 us), hence NARROW_BYTES.
constexpr int64_t NARROW_BYTES = 32 * 1024;  // B^T at most: it stays in L1
thread_local Scratch tl_n;

template <class T>
bool use_narrow(const kc_gemm_args &g) {
  const Strides st = strides(g);
  return g.n > 1 && g.n * (int64_t)sizeof(T) < 16 && g.m > SK && g.k > 0 && st.a_p == 1 &&
         st.b_j == 1 && (g.batch == 1 || g.stride_b == 0) &&
         g.n * g.k * (int64_t)sizeof(T) <= NARROW_BYTES;
}

// false when B^T cannot be allocated (the caller takes another path)
template <class T>
bool gemm_narrow(const kc_gemm_args &g, const Epi &epi) {
  T *bt = static_cast<T *>(tl_n.get(sizeof(T) * g.n * g.k));
  if (!bt) return false;
  kc::transpose_block(static_cast<const T *>(g.b), g.ldb, bt, g.k, g.k, g.n);
  kc_gemm_args gt = g;
  gt.b = bt;
  gt.trans_b = 1;
  gt.ldb = g.k;
  gt.stride_b = 0;
  run_plain_kind<T>(gt, Plain::dots_i, nullptr, epi);
  return true;
}

// Runs the paths without panels; false when the shape wants panels. packed: pack_skinny's
// blocks (gemm_pack packs a shape for one or the other).
template <class T>
bool gemm_plain(const kc_gemm_args &g, const T *packed, const Epi &epi) {
  if (!packed && use_ksplit<T>(g) && gemm_ksplit<T>(g, epi)) return true;
  if (!packed && use_narrow<T>(g) && gemm_narrow<T>(g, epi)) return true;
  Plain kind = plain_kind<T>(g);
  if (kind == Plain::none) return false;
  run_plain_kind<T>(g, packed ? Plain::packed_rows : kind, packed, epi);
  return true;
}

template <class T>
struct Task {
  const kc_gemm_args *g;
  int64_t tm, tn;  // tiles per matrix along M and N
  bool ok;
  const T *packed;      // gemm_pack's panels of op(B), or null
  int64_t packed_item;  // elements per batch item of packed (0: one B for all)
  Epi epi;
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
      t.epi(bi, m0, m1, n0, n1);
      continue;
    }
    const T *pk = t.packed ? t.packed + bi * t.packed_item : nullptr;
    if (!gemm_block<T>(g, a, b, pk, c, m0, m1, n0, n1, t.epi, bi)) t.ok = false;
  }
}

// Elements of gemm_pack's layout per batch item of B: NR-column panels of full depth k.
template <class T>
int64_t packed_item(const kc_gemm_args &g) {
  constexpr int64_t NR = Cfg<T>::NR;
  return (g.n + NR - 1) / NR * NR * g.k;
}

// What gemm_pack makes of B for a product of this shape: the panels of the packed path, or for
// a few rows of C (at least a vector of columns, B row-major) pack_skinny's blocks; none for
// the rest.
enum class Packing { none, panels, skinny };

template <class T>
Packing packing(const kc_gemm_args &g) {
  if (g.m <= 0 || g.n <= 0 || g.k <= 0 || g.batch <= 0) return Packing::none;
  const Plain kind = plain_kind<T>(g);
  if (kind == Plain::none) return Packing::panels;
  if (kind == Plain::rows && g.m <= SK && g.n >= Cfg<T>::V && !g.trans_b) return Packing::skinny;
  return Packing::none;
}

// One B's panels (gemm_pack's layout) packed by several threads, each a run of NR-column panels.
template <class T>
struct PanelPackTask {
  const kc_gemm_args *g;
  int64_t per_task;  // panels per task
  T *out;
};

template <class T>
void run_panel_pack(void *ctx, int64_t begin, int64_t end) {
  const PanelPackTask<T> &t = *static_cast<PanelPackTask<T> *>(ctx);
  const kc_gemm_args &g = *t.g;
  constexpr int64_t NR = Cfg<T>::NR;
  for (int64_t task = begin; task < end; ++task) {
    const int64_t j0 = task * t.per_task * NR, j1 = std::min(j0 + t.per_task * NR, g.n);
    if (j0 < j1)
      pack_b(static_cast<const T *>(g.b), g.ldb, g.trans_b, 0, g.k, j0, j1 - j0, t.out + j0 * g.k);
  }
}

// The calling thread's buffer for B packed once for all threads (below), kept across calls (at
// most SHARED_B_MAX_BYTES a calling thread).
thread_local Scratch tl_shared_b;
constexpr int64_t SHARED_B_MAX_BYTES = (int64_t)16 << 20;

// When the threads split one product's rows, each would pack all of B for its own rows: B is
// packed once instead, by all of them, before the product (1024^2 x 1024^2 on two threads,
// where each packed 4 MB: 4.46 -> 4.42 ms, alternating builds).
template <class T>
const T *pack_b_shared(const kc_gemm_args &g, int64_t threads) {
  const int64_t bytes = (int64_t)sizeof(T) * packed_item<T>(g);
  if (g.batch != 1 || bytes > SHARED_B_MAX_BYTES || g.m / threads <= INPLACE_ROWS) return nullptr;
  T *out = static_cast<T *>(tl_shared_b.get(static_cast<size_t>(bytes)));
  if (!out) return nullptr;
  constexpr int64_t NR = Cfg<T>::NR;
  const int64_t panels = (g.n + NR - 1) / NR, per = (panels + 4 * threads - 1) / (4 * threads);
  PanelPackTask<T> t{&g, per, out};
  parallel_for((panels + per - 1) / per, 1, run_panel_pack<T>, &t);
  return out;
}

template <class T>
int32_t gemm_t(const kc_gemm_args &g, const T *packed, const Epi &epi) {
  const double flops = 2.0 * g.m * g.n * g.k * g.batch;
  if (g.m == 0 || g.n == 0 || g.batch == 0) return KC_OK;
  if (gemm_plain<T>(g, packed, epi)) return KC_OK;
  Task<T> t{&g, 1, 1, true, packed, g.stride_b == 0 ? 0 : packed_item<T>(g), epi};
  const int64_t threads = flops < 2.0e5 ? 1 : num_threads();
  if (g.batch < threads) {
    // Split each matrix along its larger side until every thread has a tile.
    const int64_t want = (threads + g.batch - 1) / g.batch;
    if (g.m >= g.n) t.tm = want; else t.tn = want;
    if (t.tm > 1 && !packed && g.k > 0) t.packed = pack_b_shared<T>(g, threads);
  }
  parallel_for(g.batch * t.tm * t.tn, 1, run_tasks<T>, &t);
  return t.ok ? KC_OK : KC_ENOMEM;
}

template <class T>
int64_t packed_size_t(const kc_gemm_args &g) {
  const Packing how = packing<T>(g);
  if (how == Packing::none) return 0;
  const int64_t per = how == Packing::panels ? packed_item<T>(g) : skinny_item<T>(g);
  return (int64_t)sizeof(T) * per * (g.stride_b == 0 ? 1 : g.batch);
}

template <class T>
struct SkinnyPackTask {
  const kc_gemm_args *g;
  PlainSplit sp;
  T *out;
};

template <class T>
void run_skinny_pack(void *ctx, int64_t begin, int64_t end) {
  const SkinnyPackTask<T> &t = *static_cast<SkinnyPackTask<T> *>(ctx);
  const kc_gemm_args &g = *t.g;
  for (int64_t task = begin; task < end; ++task) {
    const int64_t bi = task / t.sp.parts, j0 = task % t.sp.parts * t.sp.width;
    const int64_t j1 = j0 + t.sp.width < g.n ? j0 + t.sp.width : g.n;
    pack_skinny(static_cast<const T *>(g.b) + bi * g.stride_b, g.ldb, g.k, g.n, j0, j1,
                t.out + bi * skinny_item<T>(g));
  }
}

template <class T>
int32_t pack_t(const kc_gemm_args &g, T *out) {
  const Packing how = packing<T>(g);
  if (how == Packing::panels) {
    const int64_t items = g.stride_b == 0 ? 1 : g.batch, per = packed_item<T>(g);
    for (int64_t bi = 0; bi < items; ++bi)
      pack_b(static_cast<const T *>(g.b) + bi * g.stride_b, g.ldb, g.trans_b, 0, g.k, 0, g.n,
             out + bi * per);
  } else if (how == Packing::skinny) {
    // split as the products will be, so that each thread packs the blocks it later reads and
    // finds them in its own cache (one B for all items: packed once, as item 0)
    kc_gemm_args one = g;
    if (g.stride_b == 0) one.batch = 1;
    SkinnyPackTask<T> t{&one, plain_split<T>(one, Plain::packed_rows), out};
    parallel_for(t.sp.tasks, t.sp.grain, run_skinny_pack<T>, &t);
  }
  return KC_OK;
}

}  // namespace

int32_t gemm(const kc_gemm_args *g) { return gemm_ex(g, nullptr, nullptr, nullptr); }

int64_t gemm_packed_size(const kc_gemm_args *g) {
  if (g->dtype == KC_FLOAT32) return packed_size_t<float>(*g);
  if (g->dtype == KC_FLOAT64) return packed_size_t<double>(*g);
  return 0;
}

int32_t gemm_packing(const kc_gemm_args *g) {
  if (g->dtype == KC_FLOAT32) return static_cast<int32_t>(packing<float>(*g));
  if (g->dtype == KC_FLOAT64) return static_cast<int32_t>(packing<double>(*g));
  return 0;
}

int32_t gemm_pack(const kc_gemm_args *g, void *packed) {
  if (g->dtype == KC_FLOAT32) return pack_t<float>(*g, static_cast<float *>(packed));
  if (g->dtype == KC_FLOAT64) return pack_t<double>(*g, static_cast<double *>(packed));
  return KC_EINVAL;
}

int32_t gemm_ex(const kc_gemm_args *g, const void *packed, kc_epilogue_fn fn, void *ctx) {
  Epi epi;
  epi.fn = fn;
  epi.ctx = ctx;
  if (packed && gemm_packed_size(g) == 0) packed = nullptr;
  if (g->dtype == KC_FLOAT32) return gemm_t<float>(*g, static_cast<const float *>(packed), epi);
  if (g->dtype == KC_FLOAT64) return gemm_t<double>(*g, static_cast<const double *>(packed), epi);
  return KC_EINVAL;
}

}  // namespace KC_GEMM_NS
}  // namespace kcomp
