/*
 * conv_avx2.c — 3x3 convolution kernels for AVX2 + FMA (8 floats a vector).
 *
 * The same scheme as conv_avx512.c (read that essay first), scaled to the
 * 16 ymm registers of AVX2; the drivers around the row functions are in
 * conv_driver.h.
 *
 * Forward, K a multiple of 8. Output channels are the lanes. The block
 * kernel keeps P output pixels x 8*KV output channels in registers; for
 * each kernel row ky and input channel c it loads the weights of the three
 * taps (3*KV registers) and walks the P+2 padded input pixels of the row,
 * each input scalar broadcast once and used by up to three taps.
 *
 *     KV = 2 (chunks of 16 channels): P = 4, 8 accumulators + 6 weights + 1
 *     KV = 1 (K = 8, 24, ...):        P = 8, 8 accumulators + 3 weights + 1
 *
 * K = 32 or 64 is done as 2 or 4 chunks of 16 channels, one after the
 * other along the row, so the weights of one chunk stay in L1. C is a
 * compile-time constant for 1, 3, 16, 32 and 64.
 *
 * Forward, K not a multiple of 8 (16 -> 1 or 3): input channels are the
 * lanes; 8 pixels at a time, one accumulator each, and a tree sum.
 *
 * Backward weight, K a multiple of 8: chunks of 8 output channels, blocks
 * of CB = 4 input channels; 3*CB gradient vectors of the taps (ky, 0..2) in
 * registers, a window of three dout pixels sliding along the row (dout rows
 * copied with a zero pixel at each end), each input scalar broadcast once
 * for three FMAs. Threads split the rows and sum into private dw/db, added
 * to the caller's in thread order.
 */
#include "kernels.h"

#include "conv_driver.h"

#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define AVX2 __attribute__((target("avx2,fma")))
#define INLINE static inline __attribute__((always_inline))

#define FWD_P(KV) ((KV) == 1 ? 8 : 4)
#define FWD_PMAX 8 /* also the pixel block of the small-K path */

/* ---------------------------------------------------------------------- */
/* Forward, K a multiple of 8                                             */
/* ---------------------------------------------------------------------- */

/* P output pixels from x0, output channels k0..k0+8*KV-1; the arguments are
 * those of fwd_block in conv_avx512.c. */
INLINE AVX2 void fwd_block(float *o, size_t ostride, const float *r0,
                           const float *r1, const float *r2, const float *w,
                           const float *b, int C, int K, int relu,
                           const int KV, const int P, const int CC) {
  const int Cn = CC ? CC : C;
  __m256 acc[FWD_PMAX][2]; /* P*KV <= 8; registers once unrolled */
#pragma GCC unroll 2
  for (int v = 0; v < KV; v++) {
    __m256 bv = b ? _mm256_loadu_ps(b + 8 * v) : _mm256_setzero_ps();
#pragma GCC unroll 8
    for (int p = 0; p < P; p++) acc[p][v] = bv;
  }
  const float *rows[3] = {r0, r1, r2};
#pragma GCC unroll 3
  for (int ky = 0; ky < 3; ky++) {
    const float *r = rows[ky];
    const float *wk = w + (size_t)ky * 3 * Cn * K;
    for (int c = 0; c < Cn; c++) {
      __m256 w0[2], w1[2], w2[2];
#pragma GCC unroll 2
      for (int v = 0; v < KV; v++) {
        w0[v] = _mm256_loadu_ps(wk + (size_t)c * K + 8 * v);
        w1[v] = _mm256_loadu_ps(wk + (size_t)(Cn + c) * K + 8 * v);
        w2[v] = _mm256_loadu_ps(wk + (size_t)(2 * Cn + c) * K + 8 * v);
      }
#pragma GCC unroll 16
      for (int j = 0; j < P + 2; j++) {
        __m256 x = _mm256_broadcast_ss(r + (size_t)j * Cn + c);
#pragma GCC unroll 2
        for (int v = 0; v < KV; v++) {
          if (j < P) acc[j][v] = _mm256_fmadd_ps(x, w0[v], acc[j][v]);
          if (j >= 1 && j <= P)
            acc[j - 1][v] = _mm256_fmadd_ps(x, w1[v], acc[j - 1][v]);
          if (j >= 2) acc[j - 2][v] = _mm256_fmadd_ps(x, w2[v], acc[j - 2][v]);
        }
      }
    }
  }
  const __m256 zero = _mm256_setzero_ps();
#pragma GCC unroll 8
  for (int p = 0; p < P; p++)
#pragma GCC unroll 2
    for (int v = 0; v < KV; v++) {
      __m256 a = relu ? _mm256_max_ps(acc[p][v], zero) : acc[p][v];
      _mm256_storeu_ps(o + (size_t)p * ostride + 8 * v, a);
    }
}

/* Prefetches part `i` of `n` of the pf_bytes at pf into L2 (see
 * conv_avx512.c). */
INLINE void prefetch_part(const char *pf, size_t pf_bytes, size_t i, size_t n) {
  if (!pf) return;
  size_t lo = (pf_bytes * i / n) & ~(size_t)63, hi = pf_bytes * (i + 1) / n;
  for (size_t o = lo; o < hi; o += 64) _mm_prefetch(pf + o, _MM_HINT_T1);
}

/* One output row (W pixels, all K channels) from three padded input rows;
 * prefetches pf_bytes at pf (or nothing when pf is NULL) on the way. */
INLINE AVX2 void fwd_row(float *orow, const float *r0, const float *r1,
                         const float *r2, const float *w, const float *b,
                         int W, int C, int K, int relu, const char *pf,
                         size_t pf_bytes, const int KV, const int P,
                         const int CC) {
  const int Cn = CC ? CC : C;
  const size_t nblk = (size_t)((W + P - 1) / P) * (size_t)(K / (8 * KV));
  size_t blk = 0;
  for (int k0 = 0; k0 < K; k0 += 8 * KV) {
    const float *bk = b ? b + k0 : NULL;
    int x0 = 0;
    for (; x0 + P <= W; x0 += P) {
      size_t i = (size_t)x0 * Cn;
      prefetch_part(pf, pf_bytes, blk++, nblk);
      fwd_block(orow + (size_t)x0 * K + k0, (size_t)K, r0 + i, r1 + i, r2 + i,
                w + k0, bk, C, K, relu, KV, P, CC);
    }
    if (x0 < W) {
      float tmp[FWD_PMAX * 8] __attribute__((aligned(32)));
      prefetch_part(pf, pf_bytes, blk++, nblk);
      size_t i = (size_t)x0 * Cn;
      fwd_block(tmp, (size_t)KV * 8, r0 + i, r1 + i, r2 + i, w + k0, bk, C, K,
                relu, KV, P, CC);
      for (int x = x0; x < W; x++)
        memcpy(orow + (size_t)x * K + k0, tmp + (size_t)(x - x0) * KV * 8,
               (size_t)KV * 8 * sizeof(float));
    }
  }
}

#define FWD_ROW_INSTANCE(KV, CC)                                              \
  AVX2 static void fwd_row_##KV##_##CC(                                       \
      float *orow, const float *r0, const float *r1, const float *r2,         \
      const float *w, const float *b, int W, int C, int K, int relu,          \
      const char *pf, size_t pf_bytes) {                                      \
    fwd_row(orow, r0, r1, r2, w, b, W, C, K, relu, pf, pf_bytes, KV,          \
            FWD_P(KV), CC);                                                   \
  }
#define FWD_ROW_INSTANCES(KV)                                                 \
  FWD_ROW_INSTANCE(KV, 0)                                                     \
  FWD_ROW_INSTANCE(KV, 1)                                                     \
  FWD_ROW_INSTANCE(KV, 3)                                                     \
  FWD_ROW_INSTANCE(KV, 16)                                                    \
  FWD_ROW_INSTANCE(KV, 32)                                                    \
  FWD_ROW_INSTANCE(KV, 64)
FWD_ROW_INSTANCES(1)
FWD_ROW_INSTANCES(2)

#define FWD_ROW_TABLE(KV)                                                     \
  {fwd_row_##KV##_0, fwd_row_##KV##_1, fwd_row_##KV##_3, fwd_row_##KV##_16,   \
   fwd_row_##KV##_32, fwd_row_##KV##_64}
static const conv_row_fn fwd_rows[2][6] = {FWD_ROW_TABLE(1), FWD_ROW_TABLE(2)};

static conv_row_fn fwd_row_pick(int C, int K) {
  int i = K % 16 == 0 ? 1 : 0;
  int j = C == 1 ? 1 : C == 3 ? 2 : C == 16 ? 3 : C == 32 ? 4 : C == 64 ? 5 : 0;
  return fwd_rows[i][j];
}

/* ---------------------------------------------------------------------- */
/* Forward, K not a multiple of 8: vectors over C, a horizontal sum each  */
/* ---------------------------------------------------------------------- */

/* Sums each of 8 vectors: lane p of the result is the sum of the lanes of
 * v[p] (a tree of 7 adds, then a permutation back to pixel order). */
INLINE AVX2 __m256 hsum8x8(const __m256 v[8]) {
  __m256 u[4], y[2];
  /* Each u[i]: 128-bit halves hold partial sums of v[i] and v[i+4]. */
#pragma GCC unroll 16
  for (int i = 0; i < 4; i++)
    u[i] = _mm256_add_ps(_mm256_permute2f128_ps(v[i], v[i + 4], 0x20),
                         _mm256_permute2f128_ps(v[i], v[i + 4], 0x31));
#pragma GCC unroll 16
  for (int i = 0; i < 2; i++)
    y[i] = _mm256_add_ps(_mm256_shuffle_ps(u[i], u[i + 2], 0x44),
                         _mm256_shuffle_ps(u[i], u[i + 2], 0xEE));
  __m256 s = _mm256_add_ps(_mm256_shuffle_ps(y[0], y[1], 0x88),
                           _mm256_shuffle_ps(y[0], y[1], 0xDD));
  /* s holds pixels 0 2 1 3 4 6 5 7. */
  return _mm256_permutevar8x32_ps(s, _mm256_setr_epi32(0, 2, 1, 3, 4, 6, 5, 7));
}

/* One output row when K is not a multiple of 8: input channels are the
 * lanes; 8 pixels at a time, one accumulator each, one tree sum per output
 * channel (see fwd_row_small_k in conv_avx512.c).
 * wt: weights transposed to (K,3,3,Cp), Cp = C rounded up to 8, zero
 * filled; the last, partial vector of C is read with a masked load. */
AVX2 static void fwd_row_small_k(float *orow, const float *r0, const float *r1,
                                 const float *r2, const float *wt,
                                 const float *b, int W, int C, int K,
                                 int relu, const char *pf, size_t pf_bytes) {
  const int CV = (C + 7) / 8, Cp = CV * 8, rem = C - (CV - 1) * 8;
  int32_t m[8];
#pragma GCC unroll 16
  for (int i = 0; i < 8; i++) m[i] = i < rem ? -1 : 0;
  const __m256i tail = _mm256_loadu_si256((const __m256i *)m);
  const __m256i full = _mm256_set1_epi32(-1);
  const float *rows[3] = {r0, r1, r2};
  for (int x0 = 0; x0 < W; x0 += 8) {
    const int np = W - x0 < 8 ? W - x0 : 8;
    prefetch_part(pf, pf_bytes, (size_t)x0 / 8, (size_t)(W + 7) / 8);
    for (int k = 0; k < K; k++) {
      __m256 acc[8];
#pragma GCC unroll 16
      for (int p = 0; p < 8; p++) acc[p] = _mm256_setzero_ps();
      for (int t = 0; t < 9; t++) {
        const float *ip = rows[t / 3] + (size_t)(x0 + t % 3) * C;
        const float *wp = wt + ((size_t)k * 9 + t) * Cp;
        for (int cv = 0; cv < CV; cv++) {
          __m256 wv = _mm256_load_ps(wp + 8 * cv);
          __m256i mk = cv == CV - 1 ? tail : full;
#pragma GCC unroll 8
          for (int p = 0; p < 8; p++)
            acc[p] = _mm256_fmadd_ps(
                _mm256_maskload_ps(ip + (size_t)p * C + 8 * cv, mk), wv,
                acc[p]);
        }
      }
      __m256 s = hsum8x8(acc);
      if (b) s = _mm256_add_ps(s, _mm256_set1_ps(b[k]));
      if (relu) s = _mm256_max_ps(s, _mm256_setzero_ps());
      float o[8] __attribute__((aligned(32)));
      _mm256_store_ps(o, s);
      for (int p = 0; p < np; p++) orow[(size_t)(x0 + p) * K + k] = o[p];
    }
  }
}

/* o (W/2, K) = max over 2x2 of the rows a and b (W, K). */
AVX2 static void pool_row(float *o, const float *a, const float *b, int W,
                          int K) {
  for (int x = 0; x < W / 2; x++) {
    const float *a0 = a + (size_t)2 * x * K, *b0 = b + (size_t)2 * x * K;
    float *ox = o + (size_t)x * K;
    int k = 0;
    for (; k + 8 <= K; k += 8) {
      __m256 m = _mm256_max_ps(_mm256_loadu_ps(a0 + k),
                               _mm256_loadu_ps(a0 + K + k));
      m = _mm256_max_ps(m, _mm256_loadu_ps(b0 + k));
      m = _mm256_max_ps(m, _mm256_loadu_ps(b0 + K + k));
      _mm256_storeu_ps(ox + k, m);
    }
    for (; k < K; k++) {
      float m = a0[k];
      if (a0[K + k] > m) m = a0[K + k];
      if (b0[k] > m) m = b0[k];
      if (b0[K + k] > m) m = b0[K + k];
      ox[k] = m;
    }
  }
}

/* ---------------------------------------------------------------------- */
/* Input gradient: the ReLU and max-pool rows                             */
/* ---------------------------------------------------------------------- */

/* dst = a > 0 && (!guided || g > 0) ? g : 0 over n floats. */
AVX2 static void relu_grad(float *dst, const float *g, const float *a,
                           size_t n, int guided) {
  const __m256 zero = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 gv = _mm256_loadu_ps(g + i);
    __m256 m = _mm256_cmp_ps(_mm256_loadu_ps(a + i), zero, _CMP_GT_OQ);
    if (guided) m = _mm256_and_ps(m, _mm256_cmp_ps(gv, zero, _CMP_GT_OQ));
    _mm256_storeu_ps(dst + i, _mm256_and_ps(m, gv));
  }
  for (; i < n; i++)
    dst[i] = a[i] > 0.0f && (!guided || g[i] > 0.0f) ? g[i] : 0.0f;
}

/* One row of the gradient through a 2x2 max-pool and a ReLU (see
 * conv_pool_grad_fn and pool_grad in conv_avx512.c). */
AVX2 static void pool_grad(float *dst, float *gst, const float *dp,
                           const float *a0, const float *a1, int self, int W,
                           int K, int guided) {
  const __m256 zero = _mm256_setzero_ps();
  const float *as = self ? a1 : a0;
  for (int px = 0; px < W / 2; px++) {
    const size_t o0 = (size_t)2 * px * K, o1 = o0 + K;
    const float *d0 = dp + (size_t)px * K;
    int k = 0;
    for (; k + 8 <= K; k += 8) {
      __m256 v00 = _mm256_loadu_ps(a0 + o0 + k);
      __m256 v01 = _mm256_loadu_ps(a0 + o1 + k);
      __m256 v10 = _mm256_loadu_ps(a1 + o0 + k);
      __m256 v11 = _mm256_loadu_ps(a1 + o1 + k);
      __m256 d = _mm256_loadu_ps(d0 + k);
      __m256 s1 = _mm256_cmp_ps(v01, v00, _CMP_GT_OQ);
      __m256 m = _mm256_blendv_ps(v00, v01, s1);
      __m256 s2 = _mm256_cmp_ps(v10, m, _CMP_GT_OQ);
      m = _mm256_blendv_ps(m, v10, s2);
      __m256 s3 = _mm256_cmp_ps(v11, m, _CMP_GT_OQ);
      __m256 w0, w1;
      if (self) {
        w0 = _mm256_andnot_ps(s3, s2);
        w1 = s3;
      } else {
        __m256 any = _mm256_or_ps(s1, _mm256_or_ps(s2, s3));
        w0 = _mm256_andnot_ps(any, _mm256_castsi256_ps(_mm256_set1_epi32(-1)));
        w1 = _mm256_andnot_ps(_mm256_or_ps(s2, s3), s1);
      }
      if (gst) {
        _mm256_storeu_ps(gst + o0 + k, _mm256_and_ps(w0, d));
        _mm256_storeu_ps(gst + o1 + k, _mm256_and_ps(w1, d));
      }
      if (guided) {
        __m256 pos = _mm256_cmp_ps(d, zero, _CMP_GT_OQ);
        w0 = _mm256_and_ps(w0, pos);
        w1 = _mm256_and_ps(w1, pos);
      }
      w0 = _mm256_and_ps(
          w0, _mm256_cmp_ps(_mm256_loadu_ps(as + o0 + k), zero, _CMP_GT_OQ));
      w1 = _mm256_and_ps(
          w1, _mm256_cmp_ps(_mm256_loadu_ps(as + o1 + k), zero, _CMP_GT_OQ));
      _mm256_storeu_ps(dst + o0 + k, _mm256_and_ps(w0, d));
      _mm256_storeu_ps(dst + o1 + k, _mm256_and_ps(w1, d));
    }
    for (; k < K; k++) { /* the same rule, one channel at a time */
      const float v[4] = {a0[o0 + k], a0[o1 + k], a1[o0 + k], a1[o1 + k]};
      int best = 0;
      for (int i = 1; i < 4; i++)
        if (v[i] > v[best]) best = i;
      for (int i = 0; i < 2; i++) {
        float g = best == 2 * self + i ? d0[k] : 0.0f;
        size_t o = (i ? o1 : o0) + k;
        if (gst) gst[o] = g;
        dst[o] = as[o] > 0.0f && (!guided || g > 0.0f) ? g : 0.0f;
      }
    }
  }
  if (W % 2) { /* the last pixel is in no window */
    memset(dst + (size_t)(W - 1) * K, 0, (size_t)K * sizeof(float));
    if (gst) memset(gst + (size_t)(W - 1) * K, 0, (size_t)K * sizeof(float));
  }
}

static const conv_isa isa = {8,        FWD_PMAX,  fwd_row_pick, fwd_row_small_k,
                             pool_row, relu_grad, pool_grad};

void conv3x3_forward_avx2(float *out, const float *inp, const float *w,
                          const float *b, int N, int H, int W, int C, int K,
                          int relu, int threads) {
  if (N <= 0 || H <= 0 || W <= 0 || K <= 0) return;
  if (threads < 1) threads = 1;
  if (conv_driver_forward(&isa, out, inp, w, b, N, H, W, C, K, relu, threads))
    conv3x3_forward_ref(out, inp, w, b, N, H, W, C, K, relu, threads);
}

void conv3x3_pool_forward_avx2(float *out, float *act, const float *inp,
                               const float *w, const float *b, int N, int H,
                               int W, int C, int K, int relu, int threads) {
  if (N <= 0 || H <= 0 || W <= 0 || K <= 0) return;
  if (threads < 1) threads = 1;
  if (conv_driver_pool_forward(&isa, out, act, inp, w, b, N, H, W, C, K, relu,
                               threads))
    conv3x3_pool_forward_ref(out, act, inp, w, b, N, H, W, C, K, relu, threads);
}

int conv3x3_block_forward_avx2(float *out, float *act_a, float *act_b,
                               const float *inp, const float *wa,
                               const float *ba, const float *wb,
                               const float *bb, int N, int H, int W, int C,
                               int K1, int K2, int threads) {
  if (N <= 0 || H <= 0 || W <= 0 || K1 <= 0 || K2 <= 0) return 0;
  if (threads < 1) threads = 1;
  if (conv_driver_block_forward(&isa, out, act_a, act_b, inp, wa, ba, wb, bb,
                                N, H, W, C, K1, K2, threads) == 0)
    return 0;
  return conv3x3_block_forward_ref(out, act_a, act_b, inp, wa, ba, wb, bb, N,
                                   H, W, C, K1, K2, threads);
}

int conv3x3_backward_input_avx2(float *dinp, float *dact, const float *dout,
                                const float *act, const float *wt, int N,
                                int H, int W, int C, int K, int pooled,
                                int guided, float *scratch, int threads) {
  if (N <= 0 || H <= 0 || W <= 0 || C <= 0 || K <= 0) return 0;
  if (threads < 1) threads = 1;
  if (conv_driver_backward_input(&isa, dinp, dact, dout, act, wt, N, H, W, C,
                                 K, pooled, guided, scratch, threads) == 0)
    return 0;
  return conv3x3_backward_input_ref(dinp, dact, dout, act, wt, N, H, W, C, K,
                                    pooled, guided, NULL, threads);
}

size_t conv3x3_backward_input_scratch_avx2(int W, int C, int K, int threads) {
  return conv_driver_backward_input_scratch(&isa, W, C, K,
                                            threads < 1 ? 1 : threads);
}

int conv3x3_block_backward_input_avx2(
    float *dinp, float *dact_a, float *dact_b, const float *dpool,
    const float *act_a, const float *act_b, const float *wta, const float *wtb,
    int N, int H, int W, int C, int K1, int K2, int guided, float *scratch,
    int threads) {
  if (N <= 0 || H <= 0 || W <= 0 || C <= 0 || K1 <= 0 || K2 <= 0) return 0;
  if (threads < 1) threads = 1;
  if (conv_driver_block_backward_input(&isa, dinp, dact_a, dact_b, dpool,
                                       act_a, act_b, wta, wtb, N, H, W, C, K1,
                                       K2, guided, scratch, threads) == 0)
    return 0;
  return conv3x3_block_backward_input_ref(dinp, dact_a, dact_b, dpool, act_a,
                                          act_b, wta, wtb, N, H, W, C, K1, K2,
                                          guided, NULL, threads);
}

size_t conv3x3_block_backward_input_scratch_avx2(int W, int C, int K1, int K2,
                                              int threads) {
  return conv_driver_block_backward_input_scratch(&isa, W, C, K1, K2,
                                                  threads < 1 ? 1 : threads);
}

/* ---------------------------------------------------------------------- */
/* Backward weight                                                        */
/* ---------------------------------------------------------------------- */

/* One (output row, kernel row) contribution to the taps (ky, 0..2) of CB
 * input channels and 8 output channels; arguments as bw_block in
 * conv_avx512.c. */
INLINE AVX2 void bw_block(float *dwp, const float *ip, const float *dj, int W,
                          int C, int K, const int CB) {
  __m256 acc[3][4];
  const size_t ts = (size_t)C * K;
#pragma GCC unroll 3
  for (int kx = 0; kx < 3; kx++)
#pragma GCC unroll 4
    for (int cb = 0; cb < CB; cb++)
      acc[kx][cb] = _mm256_loadu_ps(dwp + kx * ts + (size_t)cb * K);
  __m256 d0 = _mm256_loadu_ps(dj), d1 = _mm256_loadu_ps(dj + K);
  for (int q = 0; q < W; q++) {
    __m256 d2 = _mm256_loadu_ps(dj + (size_t)(q + 2) * K);
    const float *iq = ip + (size_t)q * C;
#pragma GCC unroll 4
    for (int cb = 0; cb < CB; cb++) {
      __m256 x = _mm256_broadcast_ss(iq + cb);
      acc[0][cb] = _mm256_fmadd_ps(x, d2, acc[0][cb]);
      acc[1][cb] = _mm256_fmadd_ps(x, d1, acc[1][cb]);
      acc[2][cb] = _mm256_fmadd_ps(x, d0, acc[2][cb]);
    }
    d0 = d1;
    d1 = d2;
  }
#pragma GCC unroll 3
  for (int kx = 0; kx < 3; kx++)
#pragma GCC unroll 4
    for (int cb = 0; cb < CB; cb++)
      _mm256_storeu_ps(dwp + kx * ts + (size_t)cb * K, acc[kx][cb]);
}

/* One output row; arguments as bw_row in conv_avx512.c. */
AVX2 static void bw_row(float *pdw, float *pdb, const float *const in[3],
                        const float *dj, int W, int C, int K) {
  for (int k0 = 0; k0 < K; k0 += 8) {
    __m256 s = _mm256_loadu_ps(pdb + k0);
    for (int x = 0; x < W; x++)
      s = _mm256_add_ps(s, _mm256_loadu_ps(dj + (size_t)(x + 1) * K + k0));
    _mm256_storeu_ps(pdb + k0, s);
  }
  for (int ky = 0; ky < 3; ky++) {
    if (!in[ky]) continue;
    float *dwk = pdw + (size_t)ky * 3 * C * K;
    for (int k0 = 0; k0 < K; k0 += 8) {
      int c0 = 0;
      for (; c0 + 4 <= C; c0 += 4)
        bw_block(dwk + (size_t)c0 * K + k0, in[ky] + c0, dj + k0, W, C, K, 4);
      if (c0 + 2 <= C) {
        bw_block(dwk + (size_t)c0 * K + k0, in[ky] + c0, dj + k0, W, C, K, 2);
        c0 += 2;
      }
      if (c0 < C)
        bw_block(dwk + (size_t)c0 * K + k0, in[ky] + c0, dj + k0, W, C, K, 1);
    }
  }
}

void conv3x3_backward_weight_avx2(float *dw, float *db, const float *dout,
                                  const float *inp, int N, int H, int W, int C,
                                  int K, int threads) {
  if (N <= 0 || H <= 0 || W <= 0 || C <= 0 || K <= 0) return;
  if (threads < 1) threads = 1;
  if (K % 8 != 0) {
    conv3x3_backward_weight_ref(dw, db, dout, inp, N, H, W, C, K, threads);
    return;
  }
  const size_t ndw = (size_t)9 * C * K, ndb = (size_t)K;
  const size_t nrow = ((size_t)(W + 2) * K + 15) & ~(size_t)15;
  const size_t per = ((ndw + ndb + 15) & ~(size_t)15) + nrow;
  float *mem = aligned_alloc(64, (size_t)threads * per * sizeof(float));
  if (!mem) {
    conv3x3_backward_weight_ref(dw, db, dout, inp, N, H, W, C, K, threads);
    return;
  }
  memset(mem, 0, (size_t)threads * per * sizeof(float));
  const long rows = (long)N * H;
  #pragma omp parallel num_threads(threads)
  {
    int t = omp_get_thread_num(), T = omp_get_num_threads();
    float *pdw = mem + (size_t)t * per, *pdb = pdw + ndw;
    float *dj = mem + (size_t)t * per + (per - nrow);
    for (long r = rows * t / T; r < rows * (t + 1) / T; r++) {
      int n = (int)(r / H), y = (int)(r % H);
      memcpy(dj + K, dout + (size_t)r * W * K, (size_t)W * K * sizeof(float));
      const float *in[3];
      for (int ky = 0; ky < 3; ky++) {
        int iy = y + ky - 1;
        in[ky] = iy < 0 || iy >= H ? NULL
                                   : inp + ((size_t)n * H + iy) * W * C;
      }
      bw_row(pdw, pdb, in, dj, W, C, K);
    }
  }
  for (int t = 0; t < threads; t++) {
    const float *pdw = mem + (size_t)t * per, *pdb = pdw + ndw;
    for (size_t i = 0; i < ndw; i++) dw[i] += pdw[i];
    for (size_t i = 0; i < ndb; i++) db[i] += pdb[i];
  }
  free(mem);
}
