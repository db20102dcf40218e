/* kcomp generated-code and kernel support: blocked matrix transposition.
 *
 * A copy whose destination runs along a strided axis of its source (K.transpose,
 * permute_dimensions, a transposed GEMM operand being packed) read element by element walks the
 * source a row apart at every step: with a power-of-two row length every read lands in the same
 * few L1 sets, and a 2048x2048 float32 transpose took 11 ms. Here the copy goes in 16x16 tiles
 * (whole cache lines read and written), each as four 8x8 in-register transposes when the ISA
 * has AVX.
 */
#ifndef KCOMP_TRANSPOSE_H
#define KCOMP_TRANSPOSE_H

#include <cstdint>
#include <cstring>
#if defined(__AVX__)
#include <immintrin.h>
#endif

namespace kc {

// dst[j * ldd + i] = src[i * lds + j] for i < rows, j < cols, scalar (edges, other types).
template <class T>
inline void transpose_scalar(const T *src, int64_t lds, T *dst, int64_t ldd, int64_t rows,
                             int64_t cols) {
  for (int64_t j = 0; j < cols; ++j)
    for (int64_t i = 0; i < rows; ++i) dst[j * ldd + i] = src[i * lds + j];
}

#if defined(__AVX__)
// One 8x8 tile of 32-bit values through registers (unpack, shuffle, swap 128-bit halves).
inline void transpose8x8_32(const float *src, int64_t lds, float *dst, int64_t ldd) {
  __m256 r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * lds);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    _mm256_storeu_ps(dst + i * ldd, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
    _mm256_storeu_ps(dst + (i + 4) * ldd, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
  }
}
#endif

// dst[j * ldd + i] = src[i * lds + j] for i < rows, j < cols: a rows x cols matrix with row
// stride lds into its transpose with row stride ldd.
template <class T>
inline void transpose_block(const T *src, int64_t lds, T *dst, int64_t ldd, int64_t rows,
                            int64_t cols) {
  constexpr int64_t TILE = 16;
  // a band of TILE source columns at a time, down all rows, so that the band's TILE
  // destination rows are written as sequential streams. Measured on one thread (float32,
  // rows x cols): 2048x2048 1.5 ms, 1024x1000 0.29 ms, 100000x64 1.6 ms this way; 2.8, 0.67
  // and 3.0 ms with tiles of 16 rows by 64 columns (wider source reads, 64 destination
  // streams), which won only where the source was in L3 (1000x1024: 98 vs 133 us).
  for (int64_t j0 = 0; j0 < cols; j0 += TILE) {
    const int64_t nj = cols - j0 < TILE ? cols - j0 : TILE;
    for (int64_t i0 = 0; i0 < rows; i0 += TILE) {
      const int64_t ni = rows - i0 < TILE ? rows - i0 : TILE;
      const T *s = src + i0 * lds + j0;
      T *d = dst + j0 * ldd + i0;
#if defined(__AVX__)
      if (sizeof(T) == 4 && ni == TILE && nj == TILE) {
        // any 32-bit type moves as float bits
        const float *fs = reinterpret_cast<const float *>(s);
        float *fd = reinterpret_cast<float *>(d);
        for (int a = 0; a < TILE; a += 8)
          for (int b = 0; b < TILE; b += 8)
            transpose8x8_32(fs + a * lds + b, lds, fd + b * ldd + a, ldd);
        continue;
      }
#endif
      transpose_scalar(s, lds, d, ldd, ni, nj);
    }
  }
}

}  // namespace kc

#endif
