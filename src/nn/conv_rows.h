/*
 * conv_rows.h — zero-padded input rows for the SIMD 3x3 convolutions
 * (internal to conv_avx2.c and conv_avx512.c).
 *
 * The fast forward kernels never test for the image border inside their
 * inner loops. Instead each thread keeps a ring of three copies of input
 * rows, each padded with one zero pixel on the left and `slack` zero pixels
 * on the right, plus one row of zeros that stands for the rows above the
 * top and below the bottom of the image. Output row y then reads three row
 * pointers (y-1, y, y+1) and, for output pixel x and tap kx, padded pixel
 * j = x + kx, which always exists.
 *
 * A padded row holds Wp = W + 1 + slack pixels of C floats: pixel j is input
 * pixel x = j - 1. The slack lets a pixel block run past the right edge
 * (its extra outputs are computed from zeros and thrown away). Only
 * pixels 1..W of a slot are ever written, so the padding stays zero.
 *
 * Input row (n, iy) lives in slot (n*H + iy) % 3, so the three rows an
 * output row needs are always in distinct slots, and walking down the image
 * copies one new row per output row. This is plain C: no SIMD here.
 */
#ifndef CTPHASE_NN_CONV_ROWS_H
#define CTPHASE_NN_CONV_ROWS_H

#include <stddef.h>
#include <string.h>

typedef struct {
  float *slot[3];     /* (Wp, C) each; pixel j is input x = j - 1 */
  const float *zero;  /* (Wp, C) zeros */
  long tag[3];        /* global input row n*H + iy held by a slot, or -1 */
} conv_rows;

/* Floats of one padded row, rounded up to a 64-byte multiple. */
static inline size_t conv_rows_stride(int W, int C, int slack) {
  size_t f = (size_t)(W + 1 + slack) * (size_t)C;
  return (f + 15) & ~(size_t)15;
}

/* Floats a ring needs (three slots and the zero row). */
static inline size_t conv_rows_floats(int W, int C, int slack) {
  return 4 * conv_rows_stride(W, C, slack);
}

/* Sets up a ring in mem (conv_rows_floats() floats, zeroed here). */
static inline void conv_rows_init(conv_rows *r, float *mem, int W, int C,
                                  int slack) {
  size_t s = conv_rows_stride(W, C, slack);
  memset(mem, 0, 4 * s * sizeof(float));
  for (int i = 0; i < 3; i++) {
    r->slot[i] = mem + (size_t)i * s;
    r->tag[i] = -1;
  }
  r->zero = mem + 3 * s;
}

/* The padded copy of input row iy of image n (the zero row outside the
 * image), copying it into its slot unless it is there already. */
static inline const float *conv_rows_get(conv_rows *r, const float *inp,
                                         int n, int iy, int H, int W, int C) {
  if (iy < 0 || iy >= H) return r->zero;
  long tag = (long)n * H + iy;
  int s = (int)(tag % 3);
  if (r->tag[s] != tag) {
    memcpy(r->slot[s] + C, inp + (size_t)tag * W * C,
           (size_t)W * C * sizeof(float));
    r->tag[s] = tag;
  }
  return r->slot[s];
}

#endif
