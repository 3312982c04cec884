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

/* The reference: flood fills, pixel by pixel. Obviously right, slow
 * (about 8 ms for 512x512); ctp_body_mask() must agree with it. */
size_t ctp__body_mask_ref(const float *hu, int rows, int cols,
                          float threshold_hu, unsigned char *mask,
                          int *scratch) {
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

/* --- the fast body mask: connected runs ---------------------------------
 *
 * The image is cut into horizontal runs (of pixels above the threshold, and
 * later of pixels outside the body), and runs of neighbouring rows that
 * touch are joined in a union-find forest. A component is a tree; its size
 * is the sum of its runs' lengths. 8-connectivity joins runs that overlap
 * or touch diagonally; 4-connectivity only runs that overlap.
 */
typedef struct {
  int x0, x1;   /* [x0, x1) */
  int parent;
  int size;     /* pixels in the tree, valid at roots */
} run;

static int run_find(run *r, int i) {
  while (r[i].parent != i) {
    r[i].parent = r[r[i].parent].parent;
    i = r[i].parent;
  }
  return i;
}

static void run_union(run *r, int a, int b) {
  a = run_find(r, a);
  b = run_find(r, b);
  if (a == b) return;
  if (a > b) { int t = a; a = b; b = t; }
  r[b].parent = a;
  r[a].size += r[b].size;
}

/* Collects the runs of pixels where mask == want, row by row; row_start
 * gets rows + 1 entries. Returns the number of runs. */
static int runs_collect(const unsigned char *mask, int rows, int cols,
                        unsigned char want, run *r, int *row_start) {
  int n = 0;
  for (int y = 0; y < rows; y++) {
    row_start[y] = n;
    const unsigned char *m = mask + (size_t)y * cols;
    for (int x = 0; x < cols;) {
      if (m[x] != want) { x++; continue; }
      int x0 = x;
      while (x < cols && m[x] == want) x++;
      r[n].x0 = x0;
      r[n].x1 = x;
      r[n].parent = n;
      r[n].size = x - x0;
      n++;
    }
  }
  row_start[rows] = n;
  return n;
}

/* Joins touching runs of consecutive rows; diag adds the diagonal touch. */
static void runs_join(run *r, const int *row_start, int rows, int diag) {
  for (int y = 1; y < rows; y++) {
    int a = row_start[y - 1], ae = row_start[y];
    int b = row_start[y], be = row_start[y + 1];
    while (a < ae && b < be) {
      if (r[a].x0 < r[b].x1 + diag && r[b].x0 < r[a].x1 + diag) run_union(r, a, b);
      if (r[a].x1 < r[b].x1) a++;
      else b++;
    }
  }
}

size_t ctp_body_mask(const float *hu, int rows, int cols, float threshold_hu,
                     unsigned char *mask, int *scratch) {
  size_t n = (size_t)rows * cols;
  int *row_start = scratch;
  run *r = (run *)(scratch + rows + 1);
  for (size_t i = 0; i < n; i++) mask[i] = hu[i] > threshold_hu;
  /* The largest 8-connected component above the threshold. */
  int nr = runs_collect(mask, rows, cols, 1, r, row_start);
  runs_join(r, row_start, rows, 1);
  int best = -1;
  for (int i = 0; i < nr; i++)
    if (r[i].parent == i && (best < 0 || r[i].size > r[best].size)) best = i;
  memset(mask, 0, n);
  if (best < 0) return 0;
  for (int y = 0; y < rows; y++)
    for (int i = row_start[y]; i < row_start[y + 1]; i++)
      if (run_find(r, i) == best)
        memset(mask + (size_t)y * cols + r[i].x0, 1, (size_t)(r[i].x1 - r[i].x0));
  /* Holes: the 4-connected components of non-body pixels that touch no
   * border are inside the body. */
  nr = runs_collect(mask, rows, cols, 0, r, row_start);
  runs_join(r, row_start, rows, 0);
  for (int i = 0; i < nr; i++) r[i].size = 0; /* reused: touches a border */
  for (int y = 0; y < rows; y++)
    for (int i = row_start[y]; i < row_start[y + 1]; i++)
      if (y == 0 || y == rows - 1 || r[i].x0 == 0 || r[i].x1 == cols)
        r[run_find(r, i)].size = 1;
  size_t count = 0;
  for (int y = 0; y < rows; y++)
    for (int i = row_start[y]; i < row_start[y + 1]; i++)
      if (!r[run_find(r, i)].size)
        memset(mask + (size_t)y * cols + r[i].x0, 1, (size_t)(r[i].x1 - r[i].x0));
  for (size_t i = 0; i < n; i++) count += mask[i];
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

/* The runs (4 ints each, at most (cols + 1) / 2 per row) and the row
 * index; at least rows * cols, the reference's flood queue. */
size_t ctp_body_mask_scratch(int rows, int cols) {
  size_t runs = (size_t)rows * ((cols + 1) / 2) * 4 + (size_t)rows + 1;
  size_t n = (size_t)rows * cols;
  return runs > n ? runs : n;
}

size_t ctp_preprocess_work_bytes(int rows, int cols, int size) {
  size_t side = (size_t)(rows > cols ? rows : cols);
  size_t n = (size_t)rows * cols;
  size_t bytes = n + ctp_body_mask_scratch(rows, cols) * sizeof(int) + 64;
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
  float *sq = (float *)(scratch + ctp_body_mask_scratch(rows, cols));
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
