/*
 * sam.c — the saliency activation map (SAM), the paper's own map, and the
 * gaussian blur it needs.
 *
 * The paper prints its equation garbled ("max(L - L, G(K)), G(K) < 0"); its
 * prose says what it means: weight each element of a layer's output by the
 * element's own (smoothed) gradient instead of the channel's mean gradient,
 * and where that gradient is negative, invert the output (max - output), so
 * that low activations that the class wants low count as evidence. Our
 * reading, kept exactly (DESIGN.md §3, docs/explanation-maps.md):
 *
 *   G_k(x,y)  = (g * K_k)(x,y), g the 5x5 gaussian of sigma 0.75 px at the
 *               layer's resolution, taps normalised to sum 1, edges
 *               replicated (the image is extended by repeating its border);
 *   L'_k(x,y) = max_xy(A_k) - A_k(x,y)   where G_k(x,y) < 0,
 *               A_k(x,y)                 otherwise;
 *   SAM(x,y)  = sum_k |G_k(x,y)| * L'_k(x,y).
 *
 * The 2-D gaussian is separable: the outer product of the 1-D taps, which
 * sum to 1, sums to 1 too, so blurring rows then columns is the same
 * filter. Tensors are channels-last (H,W,K) as the engine keeps them.
 */
#include <math.h>

#include "ctphase/explain.h"

#define R (CTP_SAM_TAPS / 2)

void ctp_blur_taps(double taps[CTP_SAM_TAPS]) {
  double s = 0.0;
  for (int i = -R; i <= R; i++) {
    taps[i + R] = exp(-(double)(i * i) / (2.0 * CTP_SAM_SIGMA * CTP_SAM_SIGMA));
    s += taps[i + R];
  }
  for (int i = 0; i < CTP_SAM_TAPS; i++) taps[i] /= s;
}

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* One 1-D pass along x (dx = 1) or y (dx = 0), borders replicated. */
static void blur_pass(float *out, const float *in, const float *t, int H,
                      int W, int K, int along_x) {
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) {
      float *o = out + ((size_t)y * W + x) * K;
      for (int k = 0; k < K; k++) o[k] = 0.0f;
      for (int i = -R; i <= R; i++) {
        int sy = along_x ? y : clampi(y + i, 0, H - 1);
        int sx = along_x ? clampi(x + i, 0, W - 1) : x;
        const float *s = in + ((size_t)sy * W + sx) * K;
        for (int k = 0; k < K; k++) o[k] += t[i + R] * s[k];
      }
    }
}

void ctp_blur_gauss5(float *out, const float *in, float *tmp, int H, int W,
                     int K) {
  double taps[CTP_SAM_TAPS];
  float t[CTP_SAM_TAPS];
  ctp_blur_taps(taps);
  for (int i = 0; i < CTP_SAM_TAPS; i++) t[i] = (float)taps[i];
  blur_pass(tmp, in, t, H, W, K, 1);
  blur_pass(out, tmp, t, H, W, K, 0);
}

void ctp_map_sam(float *out, const float *act, const float *dact, float *g,
                 int H, int W, int K) {
  size_t hw = (size_t)H * W;
  float *blur = g, *tmp = g + hw * K;
  ctp_blur_gauss5(blur, dact, tmp, H, W, K);
  float amax[64];  /* K <= 64 in this network */
  for (int k = 0; k < K; k++) amax[k] = act[k];
  for (size_t p = 1; p < hw; p++)
    for (int k = 0; k < K; k++)
      amax[k] = act[p * K + k] > amax[k] ? act[p * K + k] : amax[k];
  for (size_t p = 0; p < hw; p++) {
    const float *a = act + p * K, *gk = blur + p * K;
    float s = 0.0f;
    for (int k = 0; k < K; k++)
      s += gk[k] < 0.0f ? -gk[k] * (amax[k] - a[k]) : gk[k] * a[k];
    out[p] = s;
  }
}
