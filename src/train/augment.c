/*
 * augment.c — the paper's augmentation: small in-plane rotations and
 * translations of a standardised slice.
 */
#include <math.h>

#include "ctphase/train.h"

void ctp_augment_affine(const float *src, float *dst, int h, int w,
                        float deg, float tx, float ty, float fill) {
  float a = deg * (float)M_PI / 180.0f, c = cosf(a), s = sinf(a);
  float cy = (h - 1) * 0.5f, cx = (w - 1) * 0.5f;
  /* Inverse mapping: for each output pixel, where it comes from. */
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      float dx = x - cx - tx, dy = y - cy - ty;
      float sx = c * dx + s * dy + cx, sy = -s * dx + c * dy + cy;
      int x0 = (int)floorf(sx), y0 = (int)floorf(sy);
      float fx = sx - x0, fy = sy - y0, v = 0.0f;
      for (int j = 0; j < 2; j++)
        for (int i = 0; i < 2; i++) {
          int xx = x0 + i, yy = y0 + j;
          float wgt = (i ? fx : 1 - fx) * (j ? fy : 1 - fy);
          v += wgt * ((xx < 0 || yy < 0 || xx >= w || yy >= h)
                          ? fill
                          : src[(size_t)yy * w + xx]);
        }
      dst[(size_t)y * w + x] = v;
    }
}
