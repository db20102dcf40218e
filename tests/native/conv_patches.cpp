// Host check of csrc/cuda/conv_patches.cuh (tests/test_conv_patches.py): fills the implicit GEMM's
// A tiles exactly as sgemm_simt's threads do, for x[i] = i + 1, and writes A (m x k float32, 0 in
// the padding) to stdout. Exits 2 if a tile element is written other than once, 3 if one past
// m or k is not 0.
//   conv_patches TILE b d h w c od oh ow kd kh kw sd sh sw pd ph pw dd dh dw
// TILE: 0 for 128x16 (the 128-row kernels' A tiles), 1 for 64x8.
#include <stdio.h>
#include <stdlib.h>

#include <vector>

#include "conv_patches.cuh"

constexpr int THREADS = 256;  // gemm.cu's SIMT_THREADS

template <int BR, int BK>
static int fill_all(const kcconv::ConvGeom &g, int M, int K, std::vector<float> &A) {
  constexpr int LD = BR + 4;
  std::vector<float> tile(BK * LD);
  std::vector<int> writes(BK * LD);
  for (int m0 = 0; m0 < M; m0 += BR)
    for (int k0 = 0; k0 < K; k0 += BK) {
      std::fill(writes.begin(), writes.end(), 0);
      for (int tid = 0; tid < THREADS; ++tid) {
        const kcconv::ConvRows<BR, BK, THREADS> rows(g, m0, M, tid);
        rows.fill(tile.data(), g, k0, K, tid, [&](float *d, int64_t o) {
          *d = o >= 0 ? static_cast<float>(o + 1) : 0.f;
          ++writes[d - tile.data()];
        });
      }
      for (int kk = 0; kk < BK; ++kk)
        for (int r = 0; r < LD; ++r) {
          if (writes[kk * LD + r] != (r < BR ? 1 : 0)) return 2;
          if (r >= BR) continue;
          if (m0 + r < M && k0 + kk < K)
            A[static_cast<size_t>(m0 + r) * K + k0 + kk] = tile[kk * LD + r];
          else if (tile[kk * LD + r] != 0.f)  // past m or k: zeros (x may hold inf or NaN)
            return 3;
        }
    }
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 22) return 1;
  int v[21];
  for (int i = 1; i < 22; ++i) v[i - 1] = atoi(argv[i]);
  kcconv::ConvGeom g{v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[10], v[11], v[12], v[13],
                     v[14], v[15], v[16], v[17], v[18], v[19], v[20], v[5] % 4 == 0};
  const int M = v[1] * v[6] * v[7] * v[8], K = v[9] * v[10] * v[11] * v[5];
  std::vector<float> A(static_cast<size_t>(M) * K, -1.f);
  const int status = v[0] == 0 ? fill_all<128, 16>(g, M, K, A) : fill_all<64, 8>(g, M, K, A);
  if (status) return status;
  fwrite(A.data(), sizeof(float), A.size(), stdout);
  return 0;
}
