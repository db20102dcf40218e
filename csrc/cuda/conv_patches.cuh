// A convolution's patches as the A operand of an implicit GEMM (gemm.cu, sgemm_simt with CONV):
// A(i, p) is x (channels_last, 1 to 3 spatial dims padded to 3) at output pixel i's patch, at
// tap and channel p = (kd, kh, kw, c); 0 in the padding and past k. Plain C++ apart from the
// qualifiers, so that a host program checks the tiles it fills (tests/test_conv_patches.py).
#pragma once

#include <stdint.h>

#ifdef __CUDACC__
#define KC_HD __host__ __device__ __forceinline__
#else
#define KC_HD inline
#endif

namespace kcconv {

struct ConvGeom {
  int d, h, w, c;  // input extents
  int od, oh, ow;  // output extents
  int kh, kw;      // taps along h and w (along d: k / (kh * kw * c))
  int sd, sh, sw, pd, ph, pw, dd, dh, dw;
  int vec;         // c % 4 == 0: each quad of k is 4 channels of one tap
};

// The BK x BR tile (k-major, row stride BR + 4) of A that thread `tid` of THREADS fills, as
// gemm.cu's simt_load fills a k-contiguous operand: the thread copies quad q of k of PER tile
// rows (output pixels), whose patch origins it finds once per work item (the constructor);
// the quad's taps once per k step (tap).
template <int BR, int BK, int THREADS>
struct ConvRows {
  static constexpr int QUADS = BR * BK / 4, QPR = BK / 4;
  static constexpr int PER = (QUADS + THREADS - 1) / THREADS;
  static_assert(THREADS % QPR == 0, "a thread keeps its quad of k");
  int64_t base[PER];                 // offset of the pixel's batch item in x
  int id0[PER], ih0[PER], iw0[PER];  // patch origin (padding counted); past M: far negative

  KC_HD ConvRows(const ConvGeom &g, int m0, int M, int tid) {
    for (int e = 0; e < PER; ++e) {
      const int m = m0 + (tid + e * THREADS) / QPR;
      base[e] = 0;
      id0[e] = ih0[e] = iw0[e] = -(1 << 30);
      if (m < M) {
        int t = m;
        const int ow = t % g.ow;
        t /= g.ow;
        const int oh = t % g.oh;
        t /= g.oh;
        const int od = t % g.od;
        base[e] = static_cast<int64_t>(t / g.od) * g.d * g.h * g.w * g.c;
        id0[e] = od * g.sd - g.pd;
        ih0[e] = oh * g.sh - g.ph;
        iw0[e] = ow * g.sw - g.pw;
      }
    }
  }

  // element k's channel and tap (offsets of the tap from the patch origin)
  struct Tap {
    int ch, d, h, w;
    bool ok;  // k < K
  };
  KC_HD static Tap tap(const ConvGeom &g, int k, int K) {
    int t = k / g.c;
    const int ch = k - t * g.c;
    const int kw = t % g.kw;
    t /= g.kw;
    return {ch, t / g.kh * g.dd, t % g.kh * g.dh, kw * g.dw, k < K};
  }

  // row e's element at tap a: its offset in x, or -1 in the padding or past K
  KC_HD int64_t at(const ConvGeom &g, int e, const Tap &a) const {
    const int id = id0[e] + a.d, ih = ih0[e] + a.h, iw = iw0[e] + a.w;
    if (!a.ok || (unsigned)id >= (unsigned)g.d || (unsigned)ih >= (unsigned)g.h ||
        (unsigned)iw >= (unsigned)g.w)
      return -1;
    return base[e] + ((static_cast<int64_t>(id) * g.h + ih) * g.w + iw) * g.c + a.ch;
  }

  // copy(dst, offset): one element of x into the tile, offset -1 for a zero
  template <class Copy>
  KC_HD void fill(float *sm, const ConvGeom &g, int k0, int K, int tid, Copy copy) const {
    constexpr int LD = BR + 4;
    const int q = (tid % QPR) * 4;
    if (g.vec) {  // 4 channels of one tap: one tap and one bounds check a row
      const Tap a = tap(g, k0 + q, K);
      for (int e = 0; e < PER; ++e) {
        const int idx = tid + e * THREADS;
        if (QUADS < THREADS && idx >= QUADS) return;
        float *d = sm + q * LD + idx / QPR;
        const int64_t o = at(g, e, a);
        for (int j = 0; j < 4; ++j) copy(d + j * LD, o >= 0 ? o + j : -1);
      }
      return;
    }
    Tap a[4];
    for (int j = 0; j < 4; ++j) a[j] = tap(g, k0 + q + j, K);
    for (int e = 0; e < PER; ++e) {
      const int idx = tid + e * THREADS;
      if (QUADS < THREADS && idx >= QUADS) return;
      float *d = sm + q * LD + idx / QPR;
      for (int j = 0; j < 4; ++j) copy(d + j * LD, at(g, e, a[j]));
    }
  }
};

}  // namespace kcconv
