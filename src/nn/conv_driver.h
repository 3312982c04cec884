/*
 * conv_driver.h — the parts of the SIMD 3x3 convolutions that are not SIMD
 * (internal to conv_avx2.c and conv_avx512.c, which each include it once).
 *
 * A SIMD file supplies row functions: one call computes one output row of
 * a convolution (W pixels, all K channels) from three zero-padded input
 * rows. Everything around them lives here, in plain C, shared by the two
 * instruction sets: the padded row rings, the split of the rows over
 * threads, and the drivers of the fused shapes the kernel sets offer
 * (conv; conv + max-pool; conv + conv + max-pool, one block of the network;
 * and backward, the input gradient of one layer or of one block with the
 * ReLU masks and the max-pool routing applied as the rows are loaded).
 *
 * Padded rows. The row functions never test for the image border. Each
 * thread keeps a ring of three copies of input rows, each with one zero
 * pixel on the left and `slack` zero pixels on the right, plus one row of
 * zeros standing for the rows above the top and below the bottom. A padded
 * row holds Wp = W + 1 + slack pixels: pixel j is input pixel x = j - 1, so
 * output pixel x and tap kx read pixel j = x + kx, which always exists;
 * the slack lets a pixel block run past the right edge (those outputs are
 * computed from zeros and thrown away). Only pixels 1..W of a slot are ever
 * written, so the padding stays zero. Row (n, iy) lives in slot
 * (n*H + iy) % 3, so the three rows an output row needs are in distinct
 * slots, and walking down the image fills one new slot per output row.
 *
 * Memory traffic. On the machines this runs on, one 512x512x16 activation
 * (16 MiB) takes about as long to stream from DRAM as a fifth of the
 * arithmetic of the 16->16 convolution that reads it, so the drivers
 *  - prefetch the next input row while a row is computed (the row functions
 *    spread the prefetches over their pixel blocks);
 *  - pool two conv rows while they are in cache (conv + pool), so the
 *    full-size output need not be written, or at least not read back;
 *  - for a whole block, compute the first convolution's rows straight into
 *    the ring the second one reads, so its output never leaves the cache
 *    (unless the caller asks for it).
 *
 * Threads. Rows of the output (or of the pooled output) are split into
 * `threads` contiguous ranges, one per OpenMP thread (static). Every output
 * value is computed by exactly one thread from the same operations in the
 * same order whatever the split, so the results do not depend on the
 * number of threads. In the fused block a thread also computes the rows of
 * the first convolution just outside its range (the halo its second
 * convolution reads); those are computed identically by both neighbours,
 * and only the owner stores them in act_a.
 *
 * Backward to the input. The input gradient of a layer is a convolution
 * with the flipped, transposed weights, run by the same row functions as
 * the forward. What it reads, dpre = the output gradient masked by the
 * ReLU (and, behind a pool, first routed to each window's maximum), is
 * never stored: the ring's rows are computed from the rows of the output
 * gradient and of the activations when the ring needs them (the set's
 * relu_grad and pool_grad), the way the fused block computes the first
 * convolution's rows. The block driver chains two: the rows of layer b's
 * input gradient go, masked by layer a's ReLU, into the ring that layer
 * a's convolution reads. The caller passes the scratch (rings and
 * transposed small-K weights), so the net allocates nothing per call.
 */
#ifndef CTPHASE_NN_CONV_DRIVER_H
#define CTPHASE_NN_CONV_DRIVER_H

#include "kernels.h"

#include <omp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "ctphase/error.h"

/* ---------------------------------------------------------------------- */
/* What an instruction set supplies                                       */
/* ---------------------------------------------------------------------- */

/* One output row: orow (W,K) = act(conv(r0, r1, r2) + b), the r's being the
 * padded input rows y-1, y, y+1. On the way it prefetches the pf_bytes at
 * pf into L2 (nothing when pf is NULL). */
typedef void (*conv_row_fn)(float *orow, const float *r0, const float *r1,
                            const float *r2, const float *w, const float *b,
                            int W, int C, int K, int relu, const char *pf,
                            size_t pf_bytes);

/* o (W/2, K) = 2x2 max of the rows a and b (W, K). */
typedef void (*conv_pool_row_fn)(float *o, const float *a, const float *b,
                                 int W, int K);

/* dst (n floats) = a > 0 && (!guided || g > 0) ? g : 0: the gradient
 * before a ReLU from the one after it and the ReLU's output a. */
typedef void (*conv_relu_grad_fn)(float *dst, const float *g, const float *a,
                                  size_t n, int guided);

/* Row y of the gradient routed back through a 2x2 max-pool and then a
 * ReLU: a0, a1 (W,K) are the rows of the pool windows (2*(y/2) and the one
 * below), `self` = y % 2 says which of them is row y, dp (W/2,K) is the
 * pooled gradient row y/2. g (the routed value: dp at the first maximum of
 * its window in row-major order, else 0) goes to gst (W,K) when gst is not
 * NULL; dst (W,K) gets g masked as conv_relu_grad_fn does. With odd W the
 * last pixel is in no window: 0 in both. */
typedef void (*conv_pool_grad_fn)(float *dst, float *gst, const float *dp,
                                  const float *a0, const float *a1, int self,
                                  int W, int K, int guided);

typedef struct {
  int lanes; /* floats per vector: 8 or 16 */
  int slack; /* padded pixels a row function may read past pixel W */
  /* The row function for C -> K, K a multiple of lanes. */
  conv_row_fn (*pick)(int C, int K);
  /* The row function for K not a multiple of lanes; its weights are
   * transposed to (K,3,3,Cp), Cp = C rounded up to lanes, zero filled. */
  conv_row_fn small_k;
  conv_pool_row_fn pool_row;
  conv_relu_grad_fn relu_grad;
  conv_pool_grad_fn pool_grad;
} conv_isa;

/* ---------------------------------------------------------------------- */
/* Padded row rings                                                       */
/* ---------------------------------------------------------------------- */

typedef struct {
  float *slot[3];     /* (Wp, C) each; pixel j is input x = j - 1 */
  const float *zero;  /* (Wp, C) zeros */
  long tag[3];        /* global row n*H + iy held by a slot, or -1 */
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

/* The slot of global row `tag`; *fresh says whether it must be filled
 * (it held another row), and the slot is marked as holding `tag`. */
static inline float *conv_rows_slot(conv_rows *r, long tag, int *fresh) {
  int s = (int)(tag % 3);
  *fresh = r->tag[s] != tag;
  r->tag[s] = tag;
  return r->slot[s];
}

/* The padded copy of input row iy of image n (the zero row outside the
 * image), copying it into its slot unless it is there already. */
static inline const float *conv_rows_get(conv_rows *r, const float *inp,
                                         int n, int iy, int H, int W, int C) {
  if (iy < 0 || iy >= H) return r->zero;
  long tag = (long)n * H + iy;
  int fresh;
  float *s = conv_rows_slot(r, tag, &fresh);
  if (fresh)
    memcpy(s + C, inp + (size_t)tag * W * C, (size_t)W * C * sizeof(float));
  return s;
}

/* ---------------------------------------------------------------------- */
/* One convolution, row by row                                            */
/* ---------------------------------------------------------------------- */

typedef struct {
  const float *inp; /* (N,H,W,C) */
  const float *w;   /* (3,3,C,K), or (K,3,3,Cp) for the small-K path */
  const float *b;   /* (K) or NULL */
  int N, H, W, C, K, relu;
  conv_row_fn row;
  float *wt;        /* the transposed weights we own, or NULL */
} conv_plan;

/* Floats of the transposed weights a C -> K plan needs (0 when K is a
 * multiple of the lanes), rounded up to a 64-byte multiple. */
static inline size_t conv_plan_wt_floats(const conv_isa *isa, int C, int K) {
  if (K % isa->lanes == 0) return 0;
  const int L = isa->lanes, Cp = (C + L - 1) / L * L;
  return ((size_t)K * 9 * Cp + 15) & ~(size_t)15;
}

/* Sets up a plan; the transposed weights of the small-K path go to wt_mem
 * (conv_plan_wt_floats() floats, 64-byte aligned) or, when it is NULL, to
 * memory the plan allocates. Returns 0, or -1 when memory ran out. */
static int conv_plan_init_in(conv_plan *p, const conv_isa *isa,
                             const float *inp, const float *w, const float *b,
                             int N, int H, int W, int C, int K, int relu,
                             float *wt_mem) {
  *p = (conv_plan){inp, w, b, N, H, W, C, K, relu, NULL, NULL};
  if (K % isa->lanes == 0) {
    p->row = isa->pick(C, K);
    return 0;
  }
  const int L = isa->lanes, Cp = (C + L - 1) / L * L;
  size_t n = conv_plan_wt_floats(isa, C, K);
  float *wt = wt_mem;
  if (!wt && !(wt = p->wt = aligned_alloc(64, n * sizeof(float)))) return -1;
  memset(wt, 0, n * sizeof(float));
  for (int t = 0; t < 9; t++)
    for (int c = 0; c < C; c++)
      for (int k = 0; k < K; k++)
        wt[((size_t)k * 9 + t) * Cp + c] = w[((size_t)t * C + c) * K + k];
  p->w = wt;
  p->row = isa->small_k;
  return 0;
}

static int conv_plan_init(conv_plan *p, const conv_isa *isa, const float *inp,
                          const float *w, const float *b, int N, int H, int W,
                          int C, int K, int relu) {
  return conv_plan_init_in(p, isa, inp, w, b, N, H, W, C, K, relu, NULL);
}

static void conv_plan_free(conv_plan *p) {
  free(p->wt);
  p->wt = NULL;
}

/* Output row r (= n*H + y) into dst, its input read through the ring.
 * When r < last (the thread computes row r+1 next) it prefetches the row
 * that one will copy in, y + 2. */
static void conv_plan_row(const conv_plan *p, conv_rows *ring, float *dst,
                          long r, long last) {
  const int H = p->H, W = p->W, C = p->C;
  const int n = (int)(r / H), y = (int)(r % H);
  const float *r0 = conv_rows_get(ring, p->inp, n, y - 1, H, W, C);
  const float *r1 = conv_rows_get(ring, p->inp, n, y, H, W, C);
  const float *r2 = conv_rows_get(ring, p->inp, n, y + 1, H, W, C);
  const char *pf = r < last && y + 2 < H
                       ? (const char *)(p->inp + (size_t)(r + 2) * W * C)
                       : NULL;
  p->row(dst, r0, r1, r2, p->w, p->b, W, C, p->K, p->relu, pf,
         (size_t)W * C * sizeof(float));
}

/* The range [*lo, *hi) of `count` items that thread t of T takes. */
static inline void conv_split(long count, int t, int T, long *lo, long *hi) {
  *lo = count * t / T;
  *hi = count * (t + 1) / T;
}

/* ---------------------------------------------------------------------- */
/* The drivers                                                            */
/* ---------------------------------------------------------------------- */

/* conv3x3_forward. Returns 0, or -1 when memory ran out (nothing done). */
static int conv_driver_forward(const conv_isa *isa, float *out,
                               const float *inp, const float *w,
                               const float *b, int N, int H, int W, int C,
                               int K, int relu, int threads) {
  conv_plan plan;
  if (conv_plan_init(&plan, isa, inp, w, b, N, H, W, C, K, relu)) return -1;
  const size_t ring = conv_rows_floats(W, C, isa->slack);
  float *mem = aligned_alloc(64, (size_t)threads * ring * sizeof(float));
  if (!mem) {
    conv_plan_free(&plan);
    return -1;
  }
  const long rows = (long)N * H;
  #pragma omp parallel num_threads(threads)
  {
    int t = omp_get_thread_num(), T = omp_get_num_threads();
    conv_rows rt;
    conv_rows_init(&rt, mem + (size_t)t * ring, W, C, isa->slack);
    long r0, r1;
    conv_split(rows, t, T, &r0, &r1);
    for (long r = r0; r < r1; r++)
      conv_plan_row(&plan, &rt, out + (size_t)r * W * K, r, r1 - 1);
  }
  free(mem);
  conv_plan_free(&plan);
  return 0;
}

/* conv3x3_pool_forward: two conv rows at a time, pooled while in cache.
 * The rows go to act when the caller wants them, else to two row buffers
 * of the thread. Returns 0, or -1 when memory ran out (nothing done). */
static int conv_driver_pool_forward(const conv_isa *isa, float *out,
                                    float *act, const float *inp,
                                    const float *w, const float *b, int N,
                                    int H, int W, int C, int K, int relu,
                                    int threads) {
  conv_plan plan;
  if (conv_plan_init(&plan, isa, inp, w, b, N, H, W, C, K, relu)) return -1;
  const size_t ring = conv_rows_floats(W, C, isa->slack);
  const size_t rowf = ((size_t)W * K + 15) & ~(size_t)15;
  const size_t per = ring + (act ? 0 : 2 * rowf);
  float *mem = aligned_alloc(64, (size_t)threads * per * sizeof(float));
  if (!mem) {
    conv_plan_free(&plan);
    return -1;
  }
  const int Ho = H / 2;
  #pragma omp parallel num_threads(threads)
  {
    int t = omp_get_thread_num(), T = omp_get_num_threads();
    float *own = mem + (size_t)t * per;
    conv_rows rt;
    conv_rows_init(&rt, own, W, C, isa->slack);
    long p0, p1;
    conv_split((long)N * Ho, t, T, &p0, &p1);
    for (long pr = p0; pr < p1; pr++) {
      long n = pr / Ho, py = pr % Ho;
      float *dst[2];
      for (int i = 0; i < 2; i++) {
        long r = n * H + 2 * py + i;
        dst[i] = act ? act + (size_t)r * W * K : own + ring + i * rowf;
        conv_plan_row(&plan, &rt, dst[i], r, i == 0 || pr + 1 < p1 ? r + 1 : r);
      }
      isa->pool_row(out + (size_t)pr * (W / 2) * K, dst[0], dst[1], W, K);
    }
    /* Odd H: the last row of each image is in act but in no pool window
     * (H = 1: every row is). */
    if (act && H % 2) {
      #pragma omp for schedule(static)
      for (int n = 0; n < N; n++) {
        long r = (long)n * H + H - 1;
        conv_plan_row(&plan, &rt, act + (size_t)r * W * K, r, r);
      }
    }
  }
  free(mem);
  conv_plan_free(&plan);
  return 0;
}

/* What one thread of the fused block holds. */
typedef struct {
  const conv_plan *pa, *pb;
  conv_rows in;     /* padded rows of inp (C channels) */
  conv_rows a;      /* padded rows of the first conv's output (K1) */
  float *rowbuf;    /* two rows of the second conv's output, if no act_b */
  float *act_a;     /* (N,H,W,K1) or NULL */
  long own_lo, own_hi; /* rows n*H+y of act_a this thread stores */
} conv_block_thread;

/* Row ya of image n of the first convolution, computed into the a ring
 * unless it is there already (the zero row outside the image). */
static const float *conv_block_a_row(conv_block_thread *bt, int n, int ya) {
  const conv_plan *pa = bt->pa;
  const int H = pa->H, W = pa->W, K1 = pa->K;
  if (ya < 0 || ya >= H) return bt->a.zero;
  long tag = (long)n * H + ya;
  int fresh;
  float *s = conv_rows_slot(&bt->a, tag, &fresh);
  if (fresh) {
    conv_plan_row(pa, &bt->in, s + K1, tag, (long)n * H + H - 1);
    if (bt->act_a && tag >= bt->own_lo && tag < bt->own_hi)
      memcpy(bt->act_a + (size_t)tag * W * K1, s + K1,
             (size_t)W * K1 * sizeof(float));
  }
  return s;
}

/* Row y of image n of the second convolution into dst. */
static void conv_block_b_row(conv_block_thread *bt, int n, int y, float *dst) {
  const conv_plan *pb = bt->pb;
  const float *r0 = conv_block_a_row(bt, n, y - 1);
  const float *r1 = conv_block_a_row(bt, n, y);
  const float *r2 = conv_block_a_row(bt, n, y + 1);
  pb->row(dst, r0, r1, r2, pb->w, pb->b, pb->W, pb->C, pb->K, pb->relu, NULL,
          0);
}

/* conv3x3_block_forward. Returns 0, or -1 when memory ran out (nothing
 * done). */
static int conv_driver_block_forward(const conv_isa *isa, float *out,
                                     float *act_a, float *act_b,
                                     const float *inp, const float *wa,
                                     const float *ba, const float *wb,
                                     const float *bb, int N, int H, int W,
                                     int C, int K1, int K2, int threads) {
  conv_plan pa, pb;
  if (conv_plan_init(&pa, isa, inp, wa, ba, N, H, W, C, K1, 1)) return -1;
  if (conv_plan_init(&pb, isa, NULL, wb, bb, N, H, W, K1, K2, 1)) {
    conv_plan_free(&pa);
    return -1;
  }
  const size_t rin = conv_rows_floats(W, C, isa->slack);
  const size_t ra = conv_rows_floats(W, K1, isa->slack);
  const size_t rowf = ((size_t)W * K2 + 15) & ~(size_t)15;
  const size_t per = rin + ra + 2 * rowf;
  float *mem = aligned_alloc(64, (size_t)threads * per * sizeof(float));
  if (!mem) {
    conv_plan_free(&pa);
    conv_plan_free(&pb);
    return -1;
  }
  const int Ho = H / 2;
  #pragma omp parallel num_threads(threads)
  {
    int t = omp_get_thread_num(), T = omp_get_num_threads();
    float *own = mem + (size_t)t * per;
    conv_block_thread bt;
    bt.pa = &pa;
    bt.pb = &pb;
    bt.rowbuf = own + rin + ra;
    bt.act_a = act_a;
    bt.own_lo = bt.own_hi = 0;
    conv_rows_init(&bt.in, own, W, C, isa->slack);
    conv_rows_init(&bt.a, own + rin, W, K1, isa->slack);
    long p0, p1;
    conv_split((long)N * Ho, t, T, &p0, &p1);
    for (long pr = p0; pr < p1; pr++) {
      int n = (int)(pr / Ho), py = (int)(pr % Ho);
      if (pr == p0 || py == 0) {
        /* First pooled row of this thread in image n: the rows of act_a
         * it owns are those of its pooled rows, and with odd H the last
         * row too when it has the last pooled row. */
        long end = p1 < (long)(n + 1) * Ho ? p1 : (long)(n + 1) * Ho;
        int py_hi = (int)(end - (long)n * Ho);
        bt.own_lo = (long)n * H + 2 * py;
        bt.own_hi = (long)n * H + 2 * py_hi + (H % 2 && py_hi == Ho);
      }
      float *dst[2];
      for (int i = 0; i < 2; i++) {
        long r = (long)n * H + 2 * py + i;
        dst[i] = act_b ? act_b + (size_t)r * W * K2 : bt.rowbuf + i * rowf;
        conv_block_b_row(&bt, n, 2 * py + i, dst[i]);
      }
      isa->pool_row(out + (size_t)pr * (W / 2) * K2, dst[0], dst[1], W, K2);
      /* Odd H: the last row of the image is in no pool window. (Its row
       * of act_a was made for row H-2 above.) */
      if (H % 2 && py == Ho - 1 && act_b) {
        long r = (long)n * H + H - 1;
        conv_block_b_row(&bt, n, H - 1, act_b + (size_t)r * W * K2);
      }
    }
    /* H = 1: no pool window at all, only the activations. */
    if (H == 1 && (act_a || act_b)) {
      #pragma omp for schedule(static)
      for (int n = 0; n < N; n++) {
        bt.own_lo = n;
        bt.own_hi = n + 1;
        conv_block_b_row(&bt, n, 0,
                         act_b ? act_b + (size_t)n * W * K2 : bt.rowbuf);
      }
    }
  }
  free(mem);
  conv_plan_free(&pa);
  conv_plan_free(&pb);
  return 0;
}

/* ---------------------------------------------------------------------- */
/* The input gradient, ReLU and max-pool folded into the row loads        */
/* ---------------------------------------------------------------------- */

/* The convolution of conv3x3_backward_input runs over rows of dpre, the
 * gradient before the ReLU, which is never stored: each padded row is
 * computed when the ring needs it, from the rows of dout (or of the pooled
 * gradient) and act, by the set's relu_grad / pool_grad. A thread computes
 * the rows just outside its range as well (the halo its convolution
 * reads); when the caller wants g in dact, only the owner of a row, the
 * thread whose output range holds it, stores it. */
typedef struct {
  conv_plan conv;     /* K -> C over rows of dpre (conv.inp unused) */
  const float *dout;  /* (N,H,W,K), or (N,H/2,W/2,K) when pooled */
  const float *act;   /* (N,H,W,K) */
  float *dact;        /* (N,H,W,K) or NULL */
  int pooled, guided;
} conv_grad_plan;

/* Floats of scratch for conv_driver_backward_input: a ring of K-channel
 * rows per thread, then the transposed weights of a small-C convolution. */
static size_t conv_driver_backward_input_scratch(const conv_isa *isa, int W,
                                                 int C, int K, int threads) {
  return (size_t)threads * conv_rows_floats(W, K, isa->slack) +
         conv_plan_wt_floats(isa, K, C);
}

/* The padded row iy of image n of dpre, computed into its slot unless it
 * is there already (the zero row outside the image). g is stored into
 * dact when rows [own_lo, own_hi) hold it. */
static const float *conv_grad_rows_get(const conv_isa *isa,
                                       const conv_grad_plan *gp, conv_rows *r,
                                       int n, int iy, long own_lo,
                                       long own_hi) {
  const int H = gp->conv.H, W = gp->conv.W, K = gp->conv.C;
  if (iy < 0 || iy >= H) return r->zero;
  const long tag = (long)n * H + iy;
  const size_t rowf = (size_t)W * K;
  int fresh;
  float *s = conv_rows_slot(r, tag, &fresh);
  if (!fresh) return s;
  float *dst = s + K;
  float *gst = gp->dact && tag >= own_lo && tag < own_hi
                   ? gp->dact + (size_t)tag * rowf
                   : NULL;
  if (!gp->pooled) {
    isa->relu_grad(dst, gp->dout + (size_t)tag * rowf,
                   gp->act + (size_t)tag * rowf, rowf, gp->guided);
  } else if (iy >= H / 2 * 2) { /* odd H: the last row is in no window */
    memset(dst, 0, rowf * sizeof(float));
    if (gst) memset(gst, 0, rowf * sizeof(float));
  } else {
    const float *a0 = gp->act + ((size_t)n * H + (iy & ~1)) * rowf;
    const float *dp =
        gp->dout + ((size_t)n * (H / 2) + iy / 2) * (size_t)(W / 2) * K;
    isa->pool_grad(dst, gst, dp, a0, a0 + rowf, iy & 1, W, K, gp->guided);
  }
  return s;
}

/* conv3x3_backward_input. Returns 0, or -1 when memory ran out (nothing
 * done). */
static int conv_driver_backward_input(const conv_isa *isa, float *dinp,
                                      float *dact, const float *dout,
                                      const float *act, const float *wt,
                                      int N, int H, int W, int C, int K,
                                      int pooled, int guided, float *scratch,
                                      int threads) {
  float *mem = scratch, *own_mem = NULL;
  if (!mem) {
    size_t n = conv_driver_backward_input_scratch(isa, W, C, K, threads);
    if (!(mem = own_mem = aligned_alloc(64, n * sizeof(float)))) return -1;
  }
  const size_t ring = conv_rows_floats(W, K, isa->slack);
  conv_grad_plan gp = {.dout = dout, .act = act, .dact = pooled ? dact : NULL,
                       .pooled = pooled, .guided = guided};
  if (conv_plan_init_in(&gp.conv, isa, NULL, wt, NULL, N, H, W, K, C, 0,
                        mem + (size_t)threads * ring)) {
    free(own_mem);
    return -1;
  }
  const long rows = (long)N * H;
  #pragma omp parallel num_threads(threads)
  {
    int t = omp_get_thread_num(), T = omp_get_num_threads();
    conv_rows rt;
    conv_rows_init(&rt, mem + (size_t)t * ring, W, K, isa->slack);
    long lo, hi;
    conv_split(rows, t, T, &lo, &hi);
    for (long r = lo; r < hi; r++) {
      const int n = (int)(r / H), y = (int)(r % H);
      const float *r0 = conv_grad_rows_get(isa, &gp, &rt, n, y - 1, lo, hi);
      const float *r1 = conv_grad_rows_get(isa, &gp, &rt, n, y, lo, hi);
      const float *r2 = conv_grad_rows_get(isa, &gp, &rt, n, y + 1, lo, hi);
      /* Prefetch the act row the next output row will read first. */
      const char *pf = r + 1 < hi && y + 2 < H
                           ? (const char *)(act + (size_t)(r + 2) * W * K)
                           : NULL;
      gp.conv.row(dinp + (size_t)r * W * C, r0, r1, r2, gp.conv.w, NULL, W,
                  K, C, 0, pf, (size_t)W * K * sizeof(float));
    }
  }
  conv_plan_free(&gp.conv);
  free(own_mem);
  return 0;
}

/* What one thread of the fused block backward holds. */
typedef struct {
  const conv_isa *isa;
  const conv_grad_plan *gb; /* layer b: dpool -> rows of da (K2 -> K1) */
  const conv_plan *pa;      /* layer a: rows of dpre_a -> dinp (K1 -> C) */
  const float *act_a;       /* (N,H,W,K1) */
  float *dact_a;            /* (N,H,W,K1) or NULL */
  int guided;
  conv_rows g;              /* padded rows of layer b's dpre (K2) */
  conv_rows a;              /* padded rows of layer a's dpre (K1) */
  long lo, hi;              /* the rows this thread owns */
} conv_bwd_block_thread;

/* Row ya of image n of layer a's dpre, computed into the a ring unless it
 * is there already: layer b's input-gradient convolution gives da, which
 * the owner stores into dact_a, and the ReLU of layer a masks it in
 * place. */
static const float *conv_bwd_block_a_row(conv_bwd_block_thread *bt, int n,
                                         int ya) {
  const conv_grad_plan *gb = bt->gb;
  const int H = gb->conv.H, W = gb->conv.W, K2 = gb->conv.C, K1 = gb->conv.K;
  if (ya < 0 || ya >= H) return bt->a.zero;
  const long tag = (long)n * H + ya;
  const size_t rowf = (size_t)W * K1;
  int fresh;
  float *s = conv_rows_slot(&bt->a, tag, &fresh);
  if (!fresh) return s;
  const float *r0 = conv_grad_rows_get(bt->isa, gb, &bt->g, n, ya - 1, bt->lo, bt->hi);
  const float *r1 = conv_grad_rows_get(bt->isa, gb, &bt->g, n, ya, bt->lo, bt->hi);
  const float *r2 = conv_grad_rows_get(bt->isa, gb, &bt->g, n, ya + 1, bt->lo, bt->hi);
  const char *pf = ya + 2 < H ? (const char *)(gb->act + (size_t)(tag + 2) * W * K2)
                              : NULL;
  gb->conv.row(s + K1, r0, r1, r2, gb->conv.w, NULL, W, K2, K1, 0, pf,
               (size_t)W * K2 * sizeof(float));
  if (bt->dact_a && tag >= bt->lo && tag < bt->hi)
    memcpy(bt->dact_a + (size_t)tag * rowf, s + K1, rowf * sizeof(float));
  bt->isa->relu_grad(s + K1, s + K1, bt->act_a + (size_t)tag * rowf, rowf,
                     bt->guided);
  return s;
}

/* Floats of scratch for conv_driver_block_backward_input: the two rings
 * per thread, then the transposed weights of both convolutions. */
static size_t conv_driver_block_backward_input_scratch(const conv_isa *isa,
                                                       int W, int C, int K1,
                                                       int K2, int threads) {
  return (size_t)threads * (conv_rows_floats(W, K2, isa->slack) +
                            conv_rows_floats(W, K1, isa->slack)) +
         conv_plan_wt_floats(isa, K2, K1) + conv_plan_wt_floats(isa, K1, C);
}

/* conv3x3_block_backward_input. A thread computes the rows of da just
 * outside its range too (the halo its second convolution reads), and the
 * rows of layer b's dpre those need; only the owner of a row stores it.
 * Returns 0, or -1 when memory ran out (nothing done). */
static int conv_driver_block_backward_input(
    const conv_isa *isa, float *dinp, float *dact_a, float *dact_b,
    const float *dpool, const float *act_a, const float *act_b,
    const float *wta, const float *wtb, int N, int H, int W, int C, int K1,
    int K2, int guided, float *scratch, int threads) {
  float *mem = scratch, *own_mem = NULL;
  if (!mem) {
    size_t n = conv_driver_block_backward_input_scratch(isa, W, C, K1, K2,
                                                        threads);
    if (!(mem = own_mem = aligned_alloc(64, n * sizeof(float)))) return -1;
  }
  const size_t rg = conv_rows_floats(W, K2, isa->slack);
  const size_t ra = conv_rows_floats(W, K1, isa->slack);
  float *wmem = mem + (size_t)threads * (rg + ra);
  conv_grad_plan gb = {.dout = dpool, .act = act_b, .dact = dact_b,
                       .pooled = 1, .guided = guided};
  conv_plan pa;
  if (conv_plan_init_in(&gb.conv, isa, NULL, wtb, NULL, N, H, W, K2, K1, 0,
                        wmem)) {
    free(own_mem);
    return -1;
  }
  if (conv_plan_init_in(&pa, isa, NULL, wta, NULL, N, H, W, K1, C, 0,
                        wmem + conv_plan_wt_floats(isa, K2, K1))) {
    conv_plan_free(&gb.conv);
    free(own_mem);
    return -1;
  }
  const long rows = (long)N * H;
  #pragma omp parallel num_threads(threads)
  {
    int t = omp_get_thread_num(), T = omp_get_num_threads();
    conv_bwd_block_thread bt = {.isa = isa, .gb = &gb, .pa = &pa,
                                .act_a = act_a, .dact_a = dact_a,
                                .guided = guided};
    conv_rows_init(&bt.g, mem + (size_t)t * (rg + ra), W, K2, isa->slack);
    conv_rows_init(&bt.a, mem + (size_t)t * (rg + ra) + rg, W, K1,
                   isa->slack);
    conv_split(rows, t, T, &bt.lo, &bt.hi);
    for (long r = bt.lo; r < bt.hi; r++) {
      const int n = (int)(r / H), y = (int)(r % H);
      const float *r0 = conv_bwd_block_a_row(&bt, n, y - 1);
      const float *r1 = conv_bwd_block_a_row(&bt, n, y);
      const float *r2 = conv_bwd_block_a_row(&bt, n, y + 1);
      const char *pf = r + 1 < bt.hi && y + 2 < H
                           ? (const char *)(act_a + (size_t)(r + 2) * W * K1)
                           : NULL;
      pa.row(dinp + (size_t)r * W * C, r0, r1, r2, pa.w, NULL, W, K1, C, 0,
             pf, (size_t)W * K1 * sizeof(float));
    }
  }
  conv_plan_free(&gb.conv);
  conv_plan_free(&pa);
  free(own_mem);
  return 0;
}

#endif
