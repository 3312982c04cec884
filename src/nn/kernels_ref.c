/*
 * kernels_ref.c — the plain loop kernels.
 *
 * These are the definitions: each fast kernel is tested against them on
 * random shapes. They favour being obviously right over being fast, but are
 * parallel over the batch and rows so that tests on 512x512 finish.
 */
#include "kernels.h"

#include <stdlib.h>
#include <string.h>

#include "ctphase/error.h"

void conv3x3_forward_ref(float *out, const float *inp, const float *w,
                         const float *b, int N, int H, int W, int C, int K,
                         int relu, int threads) {
  #pragma omp parallel for collapse(2) schedule(static) num_threads(threads)
  for (int n = 0; n < N; n++) {
    for (int y = 0; y < H; y++) {
      for (int x = 0; x < W; x++) {
        float *o = out + (((size_t)n * H + y) * W + x) * K;
        for (int k = 0; k < K; k++) o[k] = b ? b[k] : 0.0f;
        for (int ky = 0; ky < 3; ky++) {
          int iy = y + ky - 1;
          if (iy < 0 || iy >= H) continue;
          for (int kx = 0; kx < 3; kx++) {
            int ix = x + kx - 1;
            if (ix < 0 || ix >= W) continue;
            const float *ip = inp + (((size_t)n * H + iy) * W + ix) * C;
            const float *wp = w + (size_t)(ky * 3 + kx) * C * K;
            for (int c = 0; c < C; c++) {
              float v = ip[c];
              for (int k = 0; k < K; k++) o[k] += v * wp[c * K + k];
            }
          }
        }
        if (relu)
          for (int k = 0; k < K; k++) o[k] = o[k] > 0.0f ? o[k] : 0.0f;
      }
    }
  }
}

/* Each thread owns a range of taps and channels of dw, so no two threads
 * write the same element and the summation order over (n,y,x) is fixed. */
void conv3x3_backward_weight_ref(float *dw, float *db, const float *dout,
                                 const float *inp, int N, int H, int W, int C,
                                 int K, int threads) {
  #pragma omp parallel for collapse(2) schedule(static) num_threads(threads)
  for (int t = 0; t < 9; t++) {
    for (int c = 0; c < C; c++) {
      int ky = t / 3, kx = t % 3;
      float *d = dw + ((size_t)t * C + c) * K;
      for (int n = 0; n < N; n++)
        for (int y = 0; y < H; y++) {
          int iy = y + ky - 1;
          if (iy < 0 || iy >= H) continue;
          for (int x = 0; x < W; x++) {
            int ix = x + kx - 1;
            if (ix < 0 || ix >= W) continue;
            float v = inp[(((size_t)n * H + iy) * W + ix) * C + c];
            const float *g = dout + (((size_t)n * H + y) * W + x) * K;
            for (int k = 0; k < K; k++) d[k] += v * g[k];
          }
        }
    }
  }
  for (int n = 0; n < N; n++)
    for (size_t p = 0; p < (size_t)H * W; p++) {
      const float *g = dout + ((size_t)n * H * W + p) * K;
      for (int k = 0; k < K; k++) db[k] += g[k];
    }
}

/* One output of the convolution: pixel (y, x), channel k of image n. */
static float conv_at(const float *inp, const float *w, const float *b, int H,
                     int W, int C, int K, int relu, int n, int y, int x,
                     int k) {
  float s = b ? b[k] : 0.0f;
  for (int ky = 0; ky < 3; ky++) {
    int iy = y + ky - 1;
    if (iy < 0 || iy >= H) continue;
    for (int kx = 0; kx < 3; kx++) {
      int ix = x + kx - 1;
      if (ix < 0 || ix >= W) continue;
      const float *ip = inp + (((size_t)n * H + iy) * W + ix) * C;
      const float *wp = w + (size_t)(ky * 3 + kx) * C * K + k;
      for (int c = 0; c < C; c++) s += ip[c] * wp[(size_t)c * K];
    }
  }
  return relu && !(s > 0.0f) ? 0.0f : s;
}

/* The definition: the convolution, then the pool. With act, literally;
 * without, each pooled output is the first maximum of its four convolution
 * outputs in row-major order, computed one channel at a time (the same sums
 * in the same order as conv3x3_forward_ref). */
void conv3x3_pool_forward_ref(float *out, float *act, const float *inp,
                              const float *w, const float *b, int N, int H,
                              int W, int C, int K, int relu, int threads) {
  if (act) {
    conv3x3_forward_ref(act, inp, w, b, N, H, W, C, K, relu, threads);
    maxpool2_forward(out, act, N, H, W, K, threads);
    return;
  }
  int Ho = H / 2, Wo = W / 2;
  #pragma omp parallel for collapse(2) schedule(static) num_threads(threads)
  for (int n = 0; n < N; n++)
    for (int y = 0; y < Ho; y++)
      for (int x = 0; x < Wo; x++)
        for (int k = 0; k < K; k++) {
          float m = conv_at(inp, w, b, H, W, C, K, relu, n, 2 * y, 2 * x, k);
          for (int i = 1; i < 4; i++) {
            float v = conv_at(inp, w, b, H, W, C, K, relu, n, 2 * y + i / 2,
                              2 * x + i % 2, k);
            if (v > m) m = v;
          }
          out[(((size_t)n * Ho + y) * Wo + x) * K + k] = m;
        }
}

/* The definition: the two convolutions and the pool one after another,
 * through act_a or a temporary. */
int conv3x3_block_forward_ref(float *out, float *act_a, float *act_b,
                              const float *inp, const float *wa,
                              const float *ba, const float *wb,
                              const float *bb, int N, int H, int W, int C,
                              int K1, int K2, int threads) {
  float *a = act_a;
  if (!a) {
    a = malloc((size_t)N * H * W * K1 * sizeof(float) + 1);
    if (!a)
      return ctp_seterr(CTP_ENOMEM, "conv3x3_block_forward: no memory for "
                        "a %dx%dx%dx%d activation", N, H, W, K1);
  }
  conv3x3_forward_ref(a, inp, wa, ba, N, H, W, C, K1, 1, threads);
  conv3x3_pool_forward_ref(out, act_b, a, wb, bb, N, H, W, K1, K2, 1, threads);
  if (!act_a) free(a);
  return 0;
}

/* The definition: route (maxpool2_backward into a zeroed buffer), mask,
 * then the convolution with the backward weights, one after another. */
int conv3x3_backward_input_ref(float *dinp, float *dact, const float *dout,
                               const float *act, const float *wt, int N,
                               int H, int W, int C, int K, int pooled,
                               int guided, float *scratch, int threads) {
  (void)scratch;
  size_t count = (size_t)N * H * W * K;
  float *g = NULL, *d = malloc(count * sizeof(float) + 1);
  if (pooled) g = calloc(count + 1, sizeof(float));
  if (!d || (pooled && !g)) {
    free(d);
    free(g);
    return ctp_seterr(CTP_ENOMEM, "conv3x3_backward_input: no memory for a "
                      "%dx%dx%dx%d gradient", N, H, W, K);
  }
  if (pooled) {
    maxpool2_backward(g, dout, act, N, H, W, K, threads);
    if (dact) memcpy(dact, g, count * sizeof(float));
  }
  const float *gp = pooled ? g : dout;
  for (size_t i = 0; i < count; i++)
    d[i] = act[i] > 0.0f && (!guided || gp[i] > 0.0f) ? gp[i] : 0.0f;
  conv3x3_forward_ref(dinp, d, wt, NULL, N, H, W, K, C, 0, threads);
  free(d);
  free(g);
  return 0;
}

size_t conv3x3_backward_input_scratch_ref(int W, int C, int K, int threads) {
  (void)W, (void)C, (void)K, (void)threads;
  return 0;
}

/* The definition: layer b into a temporary (or dact_a), then layer a. */
int conv3x3_block_backward_input_ref(
    float *dinp, float *dact_a, float *dact_b, const float *dpool,
    const float *act_a, const float *act_b, const float *wta, const float *wtb,
    int N, int H, int W, int C, int K1, int K2, int guided, float *scratch,
    int threads) {
  (void)scratch;
  float *da = dact_a ? dact_a : malloc((size_t)N * H * W * K1 * sizeof(float) + 1);
  if (!da)
    return ctp_seterr(CTP_ENOMEM, "conv3x3_block_backward_input: no memory "
                      "for a %dx%dx%dx%d gradient", N, H, W, K1);
  int r = conv3x3_backward_input_ref(da, dact_b, dpool, act_b, wtb, N, H, W,
                                     K1, K2, 1, guided, NULL, threads);
  if (!r)
    r = conv3x3_backward_input_ref(dinp, NULL, da, act_a, wta, N, H, W, C, K1,
                                   0, guided, NULL, threads);
  if (!dact_a) free(da);
  return r;
}

size_t conv3x3_block_backward_input_scratch_ref(int W, int C, int K1, int K2,
                                                int threads) {
  (void)W, (void)C, (void)K1, (void)K2, (void)threads;
  return 0;
}

void conv3x3_pack_forward(float *dst, const float *oihw, int C, int K) {
  for (int k = 0; k < K; k++)
    for (int c = 0; c < C; c++)
      for (int t = 0; t < 9; t++)
        dst[((size_t)t * C + c) * K + k] = oihw[((size_t)k * C + c) * 9 + t];
}

void conv3x3_pack_backward(float *dst, const float *oihw, int C, int K) {
  for (int k = 0; k < K; k++)
    for (int c = 0; c < C; c++)
      for (int t = 0; t < 9; t++)
        dst[((size_t)(8 - t) * K + k) * C + c] =
            oihw[((size_t)k * C + c) * 9 + t];
}

void conv3x3_unpack_add(float *oihw, const float *packed, int C, int K) {
  for (int k = 0; k < K; k++)
    for (int c = 0; c < C; c++)
      for (int t = 0; t < 9; t++)
        oihw[((size_t)k * C + c) * 9 + t] += packed[((size_t)t * C + c) * K + k];
}

void maxpool2_forward(float *out, const float *inp, int N, int H, int W, int C,
                      int threads) {
  int Ho = H / 2, Wo = W / 2;
  #pragma omp parallel for collapse(2) schedule(static) num_threads(threads)
  for (int n = 0; n < N; n++)
    for (int y = 0; y < Ho; y++)
      for (int x = 0; x < Wo; x++) {
        const float *a = inp + (((size_t)n * H + 2 * y) * W + 2 * x) * C;
        const float *b = a + C, *c2 = a + (size_t)W * C, *d = c2 + C;
        float *o = out + (((size_t)n * Ho + y) * Wo + x) * C;
        for (int c = 0; c < C; c++) {
          float m = a[c];
          if (b[c] > m) m = b[c];
          if (c2[c] > m) m = c2[c];
          if (d[c] > m) m = d[c];
          o[c] = m;
        }
      }
}

void maxpool2_backward(float *dinp, const float *dout, const float *inp, int N,
                       int H, int W, int C, int threads) {
  int Ho = H / 2, Wo = W / 2;
  #pragma omp parallel for collapse(2) schedule(static) num_threads(threads)
  for (int n = 0; n < N; n++)
    for (int y = 0; y < Ho; y++)
      for (int x = 0; x < Wo; x++) {
        size_t base = (((size_t)n * H + 2 * y) * W + 2 * x) * C;
        size_t off[4] = {0, (size_t)C, (size_t)W * C, (size_t)W * C + C};
        const float *g = dout + (((size_t)n * Ho + y) * Wo + x) * C;
        for (int c = 0; c < C; c++) {
          int best = 0;
          float m = inp[base + c];
          for (int i = 1; i < 4; i++)
            if (inp[base + off[i] + c] > m) { m = inp[base + off[i] + c]; best = i; }
          for (int i = 0; i < 4; i++) dinp[base + off[i] + c] = i == best ? g[c] : 0.0f;
        }
      }
}

void relu_backward_inplace(float *d, const float *act, size_t n, int threads) {
  #pragma omp parallel for schedule(static) num_threads(threads)
  for (size_t i = 0; i < n; i++)
    if (!(act[i] > 0.0f)) d[i] = 0.0f;
}
