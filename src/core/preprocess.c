/*
 * preprocess.c — one CT slice in HU to the network's standardised input.
 *
 * The rules are stated in include/ctphase/predict.h (and docs/prediction.md):
 * body mask (threshold, largest 8-connected component, holes filled),
 * everything outside set to air, the 512x512 grid by centred padding and
 * bilinear resampling, then (HU - mean) / std.
 *
 * Pure functions of their inputs; the caller provides the work memory, so
 * many threads may preprocess at once.
 */
#include <stdint.h>
#include <string.h>

#include "ctphase/error.h"
#include "ctphase/predict.h"

/* Mask states during the flood fills. */
enum { BG = 0, FG = 1, SEEN = 2, BODY = 3, OUTSIDE = 4 };

/* Flood fill from `start` over pixels equal to `from`, setting them to
 * `to`; 8-connected when diag. Returns the number of pixels filled. */
static size_t flood(unsigned char *mask, int rows, int cols, int start,
                    unsigned char from, unsigned char to, int diag,
                    int *queue) {
  size_t head = 0, tail = 0;
  mask[start] = to;
  queue[tail++] = start;
  while (head < tail) {
    int p = queue[head++], y = p / cols, x = p % cols;
    for (int dy = -1; dy <= 1; dy++)
      for (int dx = -1; dx <= 1; dx++) {
        if ((!dx && !dy) || (!diag && dx && dy)) continue;
        int ny = y + dy, nx = x + dx;
        if (ny < 0 || ny >= rows || nx < 0 || nx >= cols) continue;
        int q = ny * cols + nx;
        if (mask[q] != from) continue;
        mask[q] = to;
        queue[tail++] = q;
      }
  }
  return tail;
}

size_t ctp_body_mask(const float *hu, int rows, int cols, float threshold_hu,
                     unsigned char *mask, int *scratch) {
  size_t n = (size_t)rows * cols, best = 0;
  int best_start = -1;
  for (size_t i = 0; i < n; i++) mask[i] = hu[i] > threshold_hu ? FG : BG;
  /* The largest 8-connected component above the threshold. */
  for (size_t i = 0; i < n; i++)
    if (mask[i] == FG) {
      size_t size = flood(mask, rows, cols, (int)i, FG, SEEN, 1, scratch);
      if (size > best) {
        best = size;
        best_start = (int)i;
      }
    }
  if (best_start < 0) {
    memset(mask, 0, n);
    return 0;
  }
  flood(mask, rows, cols, best_start, SEEN, BODY, 1, scratch);
  /* Holes: whatever is not body and cannot be reached from the border
   * (4-connected through non-body pixels) is inside the body. */
  for (size_t i = 0; i < n; i++)
    if (mask[i] != BODY) mask[i] = BG;
  for (int x = 0; x < cols; x++) {
    if (mask[x] == BG) flood(mask, rows, cols, x, BG, OUTSIDE, 0, scratch);
    int b = (rows - 1) * cols + x;
    if (mask[b] == BG) flood(mask, rows, cols, b, BG, OUTSIDE, 0, scratch);
  }
  for (int y = 0; y < rows; y++) {
    int l = y * cols, r = y * cols + cols - 1;
    if (mask[l] == BG) flood(mask, rows, cols, l, BG, OUTSIDE, 0, scratch);
    if (mask[r] == BG) flood(mask, rows, cols, r, BG, OUTSIDE, 0, scratch);
  }
  size_t count = 0;
  for (size_t i = 0; i < n; i++) {
    mask[i] = mask[i] != OUTSIDE;
    count += mask[i];
  }
  return count;
}

void ctp_resample_bilinear(const float *src, int sh, int sw, float *dst,
                           int dh, int dw) {
  float sy = (float)sh / dh, sx = (float)sw / dw;
  for (int y = 0; y < dh; y++) {
    float fy = (y + 0.5f) * sy - 0.5f;
    if (fy < 0) fy = 0;
    int y0 = (int)fy, y1 = y0 + 1 < sh ? y0 + 1 : sh - 1;
    float wy = fy - y0;
    for (int x = 0; x < dw; x++) {
      float fx = (x + 0.5f) * sx - 0.5f;
      if (fx < 0) fx = 0;
      int x0 = (int)fx, x1 = x0 + 1 < sw ? x0 + 1 : sw - 1;
      float wx = fx - x0;
      float a = src[(size_t)y0 * sw + x0], b = src[(size_t)y0 * sw + x1];
      float c = src[(size_t)y1 * sw + x0], d = src[(size_t)y1 * sw + x1];
      dst[(size_t)y * dw + x] =
          (1 - wy) * ((1 - wx) * a + wx * b) + wy * ((1 - wx) * c + wx * d);
    }
  }
}

size_t ctp_preprocess_work_bytes(int rows, int cols, int size) {
  size_t n = (size_t)rows * cols;
  size_t side = (size_t)(rows > cols ? rows : cols);
  size_t bytes = n + n * sizeof(int) + 64;
  if (rows != size || cols != size) bytes += side * side * sizeof(float);
  return bytes;
}

int ctp_preprocess_slice(const float *hu, int rows, int cols, float hu_mean,
                         float hu_std, int size, float *out, void *work) {
  if (!hu || !out || !work || rows < 1 || cols < 1 || size < 1 || !(hu_std > 0))
    return ctp_seterr(CTP_EINVAL, "ctp_preprocess_slice: bad argument");
  size_t n = (size_t)rows * cols;
  unsigned char *mask = work;
  int *scratch = (int *)((uintptr_t)(mask + n + 15) & ~(uintptr_t)15);
  ctp_body_mask(hu, rows, cols, CTP_BODY_THRESHOLD_HU, mask, scratch);
  float inv = 1.0f / hu_std;
  if (rows == size && cols == size) {
    for (size_t i = 0; i < n; i++) {
      float v = mask[i] ? hu[i] : CTP_AIR_HU;
      v = v < CTP_HU_MIN ? CTP_HU_MIN : v > CTP_HU_MAX ? CTP_HU_MAX : v;
      out[i] = (v - hu_mean) * inv;
    }
    return 0;
  }
  /* Pad to a centred square of air, then resample to size x size. */
  int side = rows > cols ? rows : cols;
  float *sq = (float *)(scratch + n);
  for (size_t i = 0; i < (size_t)side * side; i++) sq[i] = CTP_AIR_HU;
  int oy = (side - rows) / 2, ox = (side - cols) / 2;
  for (int y = 0; y < rows; y++)
    for (int x = 0; x < cols; x++) {
      size_t i = (size_t)y * cols + x;
      float v = mask[i] ? hu[i] : CTP_AIR_HU;
      sq[(size_t)(y + oy) * side + x + ox] =
          v < CTP_HU_MIN ? CTP_HU_MIN : v > CTP_HU_MAX ? CTP_HU_MAX : v;
    }
  ctp_resample_bilinear(sq, side, side, out, size, size);
  for (size_t i = 0; i < (size_t)size * size; i++)
    out[i] = (out[i] - hu_mean) * inv;
  return 0;
}
