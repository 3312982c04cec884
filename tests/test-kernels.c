/*
 * test-kernels.c — the fast kernel sets against the reference loops.
 *
 * Every fast set (avx2, avx512) is run on random inputs over a list of
 * shapes that covers each (C,K) pair the network uses — forward layers and
 * the input-gradient convolutions — plus odd sizes (1, 3, 5, 17, 33, 34, so
 * that W is rarely a multiple of a pixel block), odd channel counts that
 * take the generic paths, batch 1 and 3, ReLU on and off, bias NULL or not,
 * 1 and 2 threads. The outputs must match conv3x3_*_ref within rtol 1e-4 and
 * an atol of 1e-5 times the largest reference magnitude, and two runs with
 * the same thread count must agree bit for bit. The fused conv + max-pool
 * and the fused block (conv, conv, max-pool) must give the reference values
 * within the same tolerance, and exactly what the set's own unfused
 * kernels give, for every choice of which activations are kept. The input
 * gradient with the ReLU and max-pool folded in (conv3x3_backward_input)
 * is checked, for every set including the reference, against its
 * definition written out in this file; the fused block of two of them
 * against the reference composition and, exactly, the set's own layer by
 * layer calls. A set the CPU cannot run is
 * skipped.
 */
#include "test.h"

#include "nn/kernels.h"

#include <stdint.h>

/* Deterministic uniform numbers in [-1, 1). */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float rnd(void) {
  rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((rng_state >> 40) * (1.0 / 8388608.0)) - 1.0f;
}
static float *rnd_buf(size_t n) {
  float *p = malloc((n ? n : 1) * sizeof(float));
  if (p)
    for (size_t i = 0; i < n; i++) p[i] = rnd();
  return p;
}
static double max_abs(const float *a, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++) m = fabs(a[i]) > m ? fabs(a[i]) : m;
  return m;
}

typedef struct { int C, K; } chan_pair;
typedef struct { int H, W; } size_pair;

/* Forward: the network's layers, the input-gradient convolutions (K,C
 * swapped, no bias or ReLU, but we try both anyway), odd channel counts. */
static const chan_pair fwd_pairs[] = {
  {1, 16}, {3, 16}, {16, 16}, {16, 32}, {32, 32}, {32, 64}, {64, 64},
  {16, 1}, {16, 3}, {32, 16}, {64, 32},
  {5, 16}, {7, 48}, {20, 8}, {17, 5}, {33, 24},
};
/* Backward weight: the network's layers and odd channel counts. */
static const chan_pair bw_pairs[] = {
  {1, 16}, {3, 16}, {16, 16}, {16, 32}, {32, 32}, {32, 64}, {64, 64},
  {5, 16}, {7, 48}, {20, 8}, {13, 3},
};
static const size_pair sizes[] = {
  {1, 1}, {3, 5}, {5, 3}, {17, 33}, {33, 34}, {34, 17}, {1, 34}, {16, 16},
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* Compares one forward shape; returns 0 when it passes. */
static int check_forward(const ctp_kernels *ks, int N, int H, int W, int C,
                         int K, int relu, int bias) {
  size_t ni = (size_t)N * H * W * C, no = (size_t)N * H * W * K;
  float *inp = rnd_buf(ni), *w = rnd_buf((size_t)9 * C * K), *b = rnd_buf(K);
  float *want = malloc(no * sizeof(float)), *got = malloc(no * sizeof(float));
  float *again = malloc(no * sizeof(float));
  int rc = 1;
  if (!inp || !w || !b || !want || !got || !again) goto done;
  const float *bp = bias ? b : NULL;
  conv3x3_forward_ref(want, inp, w, bp, N, H, W, C, K, relu, 1);
  double atol = 1e-5 * (max_abs(want, no) + 1e-3);
  char what[160];
  for (int threads = 1; threads <= 2; threads++) {
    memset(got, 0xff, no * sizeof(float)); /* NaN: every output written? */
    ks->conv3x3_forward(got, inp, w, bp, N, H, W, C, K, relu, threads);
    snprintf(what, sizeof what,
             "%s forward N=%d H=%d W=%d C=%d K=%d relu=%d bias=%d threads=%d",
             ks->name, N, H, W, C, K, relu, bias, threads);
    if (test_allclose(what, got, want, no, 1e-4, atol)) goto done;
    ks->conv3x3_forward(again, inp, w, bp, N, H, W, C, K, relu, threads);
    if (memcmp(got, again, no * sizeof(float)) != 0) {
      fprintf(stderr, "%s: two runs differ\n", what);
      goto done;
    }
  }
  rc = 0;
done:
  free(inp); free(w); free(b); free(want); free(got); free(again);
  return rc;
}

/* Compares one backward-weight shape (dw, db start non-zero: the kernels
 * accumulate); returns 0 when it passes. */
static int check_backward_weight(const ctp_kernels *ks, int N, int H, int W,
                                 int C, int K) {
  size_t ni = (size_t)N * H * W * C, no = (size_t)N * H * W * K;
  size_t nw = (size_t)9 * C * K;
  float *inp = rnd_buf(ni), *dout = rnd_buf(no), *dw0 = rnd_buf(nw);
  float *db0 = rnd_buf(K);
  float *dw_want = malloc(nw * sizeof(float));
  float *db_want = malloc(K * sizeof(float));
  float *dw = malloc(nw * sizeof(float)), *db = malloc(K * sizeof(float));
  float *dw2 = malloc(nw * sizeof(float)), *db2 = malloc(K * sizeof(float));
  int rc = 1;
  if (!inp || !dout || !dw0 || !db0 || !dw_want || !db_want || !dw || !db ||
      !dw2 || !db2)
    goto done;
  memcpy(dw_want, dw0, nw * sizeof(float));
  memcpy(db_want, db0, K * sizeof(float));
  conv3x3_backward_weight_ref(dw_want, db_want, dout, inp, N, H, W, C, K, 1);
  double atol_w = 1e-5 * (max_abs(dw_want, nw) + 1e-3);
  double atol_b = 1e-5 * (max_abs(db_want, K) + 1e-3);
  char what[160];
  for (int threads = 1; threads <= 2; threads++) {
    memcpy(dw, dw0, nw * sizeof(float));
    memcpy(db, db0, K * sizeof(float));
    ks->conv3x3_backward_weight(dw, db, dout, inp, N, H, W, C, K, threads);
    snprintf(what, sizeof what,
             "%s backward weight N=%d H=%d W=%d C=%d K=%d threads=%d", ks->name,
             N, H, W, C, K, threads);
    if (test_allclose(what, dw, dw_want, nw, 1e-4, atol_w)) goto done;
    if (test_allclose(what, db, db_want, K, 1e-4, atol_b)) goto done;
    memcpy(dw2, dw0, nw * sizeof(float));
    memcpy(db2, db0, K * sizeof(float));
    ks->conv3x3_backward_weight(dw2, db2, dout, inp, N, H, W, C, K, threads);
    if (memcmp(dw, dw2, nw * sizeof(float)) != 0 ||
        memcmp(db, db2, K * sizeof(float)) != 0) {
      fprintf(stderr, "%s: two runs differ\n", what);
      goto done;
    }
  }
  rc = 0;
done:
  free(inp); free(dout); free(dw0); free(db0); free(dw_want); free(db_want);
  free(dw); free(db); free(dw2); free(db2);
  return rc;
}

/* Checks conv3x3_pool_forward on one shape, with act NULL and not:
 * against the reference conv + maxpool2_forward within tolerance, and
 * against this set's own conv3x3_forward + maxpool2_forward exactly. */
static int check_pool_forward(const ctp_kernels *ks, int N, int H, int W,
                              int C, int K, int relu, int bias, int threads) {
  size_t ni = (size_t)N * H * W * C, na = (size_t)N * H * W * K;
  size_t np = (size_t)N * (H / 2) * (W / 2) * K;
  float *inp = rnd_buf(ni), *w = rnd_buf((size_t)9 * C * K), *b = rnd_buf(K);
  float *act_want = malloc(na * sizeof(float));
  float *act = malloc(na * sizeof(float));
  float *want = malloc((np ? np : 1) * sizeof(float));
  float *same = malloc((np ? np : 1) * sizeof(float));
  float *got = malloc((np ? np : 1) * sizeof(float));
  int rc = 1;
  if (!inp || !w || !b || !act_want || !act || !want || !same || !got)
    goto done;
  const float *bp = bias ? b : NULL;
  char what[160];
  snprintf(what, sizeof what,
           "%s pool forward N=%d H=%d W=%d C=%d K=%d relu=%d bias=%d "
           "threads=%d",
           ks->name, N, H, W, C, K, relu, bias, threads);
  conv3x3_forward_ref(act_want, inp, w, bp, N, H, W, C, K, relu, 1);
  maxpool2_forward(want, act_want, N, H, W, K, 1);
  double atol = 1e-5 * (max_abs(act_want, na) + 1e-3);
  /* The same set's unfused kernels, for the exact comparison. */
  ks->conv3x3_forward(act_want, inp, w, bp, N, H, W, C, K, relu, threads);
  maxpool2_forward(same, act_want, N, H, W, K, 1);
  for (int with_act = 0; with_act < 2; with_act++) {
    memset(got, 0xff, (np ? np : 1) * sizeof(float));
    memset(act, 0xff, na * sizeof(float));
    ks->conv3x3_pool_forward(got, with_act ? act : NULL, inp, w, bp, N, H, W,
                             C, K, relu, threads);
    if (test_allclose(what, got, want, np, 1e-4, atol)) goto done;
    for (size_t i = 0; i < np; i++)
      if (!(got[i] == same[i])) {
        fprintf(stderr, "%s: pooled output %zu is %.9g, unfused %.9g\n", what,
                i, (double)got[i], (double)same[i]);
        goto done;
      }
    if (with_act && memcmp(act, act_want, na * sizeof(float)) != 0) {
      fprintf(stderr, "%s: act differs from conv3x3_forward\n", what);
      goto done;
    }
  }
  rc = 0;
done:
  free(inp); free(w); free(b); free(act_want); free(act); free(want);
  free(same); free(got);
  return rc;
}

static int check_pool_forward_all(const ctp_kernels *ks) {
  static const size_pair psizes[] = {
    {2, 2}, {4, 6}, {6, 34}, {18, 16}, {3, 5}, {34, 33}, {1, 4},
  };
  int i = 0;
  for (size_t p = 0; p < NELEM(fwd_pairs); p++)
    for (size_t s = 0; s < NELEM(psizes); s++, i++)
      if (check_pool_forward(ks, i % 3 ? 1 : 2, psizes[s].H, psizes[s].W,
                             fwd_pairs[p].C, fwd_pairs[p].K, (i / 2) % 2,
                             i % 2, 1 + i % 2))
        return 1;
  return check_pool_forward(ks, 1, 4, 512, 16, 16, 1, 1, 2);
}

/* Checks conv3x3_block_forward on one shape, for each choice of act_a and
 * act_b (NULL or not): against the reference composition within
 * tolerance, and against the set's own conv, conv, maxpool2_forward
 * exactly. */
static int check_block_forward(const ctp_kernels *ks, int N, int H, int W,
                               int C, int K1, int K2, int threads) {
  size_t ni = (size_t)N * H * W * C, na = (size_t)N * H * W * K1;
  size_t nb = (size_t)N * H * W * K2, np = (size_t)N * (H / 2) * (W / 2) * K2;
  const ctp_kernels *ref = ctp_kernels_ref();
  float *inp = rnd_buf(ni), *wa = rnd_buf((size_t)9 * C * K1);
  float *wb = rnd_buf((size_t)9 * K1 * K2);
  float *ba = rnd_buf(K1), *bb = rnd_buf(K2);
  float *a_want = malloc(na * sizeof(float));
  float *b_want = malloc(nb * sizeof(float));
  float *a_same = malloc(na * sizeof(float));
  float *b_same = malloc(nb * sizeof(float));
  float *act_a = malloc(na * sizeof(float));
  float *act_b = malloc(nb * sizeof(float));
  float *want = malloc((np ? np : 1) * sizeof(float));
  float *same = malloc((np ? np : 1) * sizeof(float));
  float *got = malloc((np ? np : 1) * sizeof(float));
  int rc = 1;
  if (!inp || !wa || !wb || !ba || !bb || !a_want || !b_want || !a_same ||
      !b_same || !act_a || !act_b || !want || !same || !got)
    goto done;
  for (int i = 0; i < K1; i++) ba[i] += 0.5f; /* keep some of a positive */
  ref->conv3x3_forward(a_want, inp, wa, ba, N, H, W, C, K1, 1, 1);
  ref->conv3x3_forward(b_want, a_want, wb, bb, N, H, W, K1, K2, 1, 1);
  maxpool2_forward(want, b_want, N, H, W, K2, 1);
  ks->conv3x3_forward(a_same, inp, wa, ba, N, H, W, C, K1, 1, threads);
  ks->conv3x3_forward(b_same, a_same, wb, bb, N, H, W, K1, K2, 1, threads);
  maxpool2_forward(same, b_same, N, H, W, K2, 1);
  double atol_a = 1e-5 * (max_abs(a_want, na) + 1e-3);
  double atol_b = 1e-5 * (max_abs(b_want, nb) + 1e-3);
  char what[200];
  for (int keep = 0; keep < 4; keep++) {
    float *pa = keep & 1 ? act_a : NULL, *pb = keep & 2 ? act_b : NULL;
    snprintf(what, sizeof what,
             "%s block forward N=%d H=%d W=%d C=%d K1=%d K2=%d threads=%d "
             "act_a=%s act_b=%s", ks->name, N, H, W, C, K1, K2, threads,
             pa ? "yes" : "NULL", pb ? "yes" : "NULL");
    memset(got, 0xff, (np ? np : 1) * sizeof(float));
    memset(act_a, 0xff, na * sizeof(float));
    memset(act_b, 0xff, nb * sizeof(float));
    ASSERT_EQ_INT(ks->conv3x3_block_forward(got, pa, pb, inp, wa, ba, wb, bb, N,
                                            H, W, C, K1, K2, threads), 0);
    if (test_allclose(what, got, want, np, 1e-4, atol_b)) goto done;
    if (pa && test_allclose(what, act_a, a_want, na, 1e-4, atol_a)) goto done;
    if (pb && test_allclose(what, act_b, b_want, nb, 1e-4, atol_b)) goto done;
    for (size_t i = 0; i < np; i++)
      if (!(got[i] == same[i])) {
        fprintf(stderr, "%s: pooled output %zu is %.9g, unfused %.9g\n", what,
                i, (double)got[i], (double)same[i]);
        goto done;
      }
    if ((pa && memcmp(act_a, a_same, na * sizeof(float)) != 0) ||
        (pb && memcmp(act_b, b_same, nb * sizeof(float)) != 0)) {
      fprintf(stderr, "%s: act_a or act_b differs from conv3x3_forward\n",
              what);
      goto done;
    }
  }
  rc = 0;
done:
  free(inp); free(wa); free(wb); free(ba); free(bb); free(a_want);
  free(b_want); free(a_same); free(b_same); free(act_a); free(act_b);
  free(want); free(same); free(got);
  return rc;
}

static int check_block_forward_all(const ctp_kernels *ks) {
  /* The network's five blocks (and the 3-channel input), odd channels. */
  static const struct { int C, K1, K2; } blocks[] = {
    {1, 16, 16}, {3, 16, 16}, {16, 16, 16}, {16, 32, 32}, {32, 32, 32},
    {32, 64, 64}, {5, 24, 8}, {16, 3, 16},
  };
  static const size_pair bsizes[] = {
    {2, 2}, {4, 6}, {5, 7}, {6, 34}, {3, 16}, {1, 4}, {17, 9},
  };
  int i = 0;
  for (size_t p = 0; p < NELEM(blocks); p++)
    for (size_t s = 0; s < NELEM(bsizes); s++, i++)
      if (check_block_forward(ks, 1 + i % 2, bsizes[s].H, bsizes[s].W,
                              blocks[p].C, blocks[p].K1, blocks[p].K2,
                              1 + i % 3))
        return 1;
  return check_block_forward(ks, 1, 8, 512, 1, 16, 16, 2);
}

/* Every forward pair on every size; batch, ReLU and bias vary with the
 * case number so that each pair meets each setting. */
static int check_forward_all(const ctp_kernels *ks) {
  int i = 0;
  for (size_t p = 0; p < NELEM(fwd_pairs); p++)
    for (size_t s = 0; s < NELEM(sizes); s++, i++) {
      int N = i % 2 ? 3 : 1, relu = (i / 2) % 2;
      int bias = (i / 4) % 2 == (int)(p % 2);
      if (check_forward(ks, N, sizes[s].H, sizes[s].W, fwd_pairs[p].C,
                        fwd_pairs[p].K, relu, bias))
        return 1;
    }
  /* The real widths, where blocks tile the row exactly. */
  if (check_forward(ks, 1, 3, 512, 16, 16, 1, 1)) return 1;
  if (check_forward(ks, 2, 2, 256, 1, 16, 1, 1)) return 1;
  if (check_forward(ks, 1, 4, 128, 32, 32, 1, 1)) return 1;
  if (check_forward(ks, 1, 2, 256, 16, 1, 0, 0)) return 1;
  return 0;
}

static int check_backward_weight_all(const ctp_kernels *ks) {
  int i = 0;
  for (size_t p = 0; p < NELEM(bw_pairs); p++)
    for (size_t s = 0; s < NELEM(sizes); s++, i++)
      if (check_backward_weight(ks, i % 2 ? 3 : 1, sizes[s].H, sizes[s].W,
                                bw_pairs[p].C, bw_pairs[p].K))
        return 1;
  if (check_backward_weight(ks, 1, 3, 512, 16, 16)) return 1;
  if (check_backward_weight(ks, 2, 4, 128, 32, 32)) return 1;
  return 0;
}

/* The definition of conv3x3_backward_input, written out here with plain
 * loops and independently of the kernels: g routed through the pool (the
 * first maximum of each window in row-major order) or taken as is, dpre
 * masked by the ReLU, and dinp as the double-precision sum
 * dinp[y][x][c] = sum_{ky,kx,k} w[k][c][ky][kx] * dpre[y-ky+1][x-kx+1][k]. */
static void backward_input_def(float *dinp, float *g, float *dpre,
                               const float *dout, const float *act,
                               const float *oihw, int N, int H, int W, int C,
                               int K, int pooled, int guided) {
  const int Ho = H / 2, Wo = W / 2;
  for (int n = 0; n < N; n++)
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++)
        for (int k = 0; k < K; k++) {
          size_t i = (((size_t)n * H + y) * W + x) * K + k;
          float v;
          if (!pooled) {
            v = dout[i];
          } else if (y / 2 >= Ho || x / 2 >= Wo) {
            v = 0.0f;
          } else {
            int y0 = y & ~1, x0 = x & ~1, best = 0;
            float m = -INFINITY;
            for (int j = 0; j < 4; j++) {
              float a = act[(((size_t)n * H + y0 + j / 2) * W + x0 + j % 2) * K + k];
              if (j == 0 || a > m) {
                m = a;
                best = j;
              }
            }
            v = best == 2 * (y - y0) + (x - x0)
                    ? dout[(((size_t)n * Ho + y / 2) * Wo + x / 2) * K + k]
                    : 0.0f;
          }
          g[i] = v;
          dpre[i] = act[i] > 0.0f && (!guided || v > 0.0f) ? v : 0.0f;
        }
  for (int n = 0; n < N; n++)
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++)
        for (int c = 0; c < C; c++) {
          double s = 0;
          for (int ky = 0; ky < 3; ky++)
            for (int kx = 0; kx < 3; kx++) {
              int oy = y - ky + 1, ox = x - kx + 1;
              if (oy < 0 || oy >= H || ox < 0 || ox >= W) continue;
              for (int k = 0; k < K; k++)
                s += (double)oihw[((k * C + c) * 3 + ky) * 3 + kx] *
                     dpre[(((size_t)n * H + oy) * W + ox) * K + k];
            }
          dinp[(((size_t)n * H + y) * W + x) * C + c] = (float)s;
        }
}

/* Checks conv3x3_backward_input on one shape, for 1 and 2 threads, with
 * and without dact and scratch: dinp against the definition within
 * tolerance and, for a fast set, exactly equal to the set's own
 * conv3x3_forward over the definition's dpre; dact (the routed gradient)
 * exactly equal to the definition's. The activations are ReLU outputs
 * rounded to thirds, so that zeros and ties in the pool windows are
 * common. */
static int check_backward_input(const ctp_kernels *ks, int N, int H, int W,
                                int C, int K, int pooled, int guided) {
  size_t na = (size_t)N * H * W * K, ni = (size_t)N * H * W * C;
  size_t nd = pooled ? (size_t)N * (H / 2) * (W / 2) * K : na;
  float *act = rnd_buf(na), *dout = rnd_buf(nd ? nd : 1);
  float *oihw = rnd_buf((size_t)9 * C * K);
  float *wt = malloc((size_t)9 * C * K * sizeof(float));
  float *g = malloc(na * sizeof(float)), *dpre = malloc(na * sizeof(float));
  float *want = malloc(ni * sizeof(float)), *same = malloc(ni * sizeof(float));
  float *got = malloc(ni * sizeof(float)), *dact = malloc(na * sizeof(float));
  size_t ns = ks->conv3x3_backward_input_scratch(W, C, K, 2);
  float *scratch = aligned_alloc(64, ((ns + 16) * sizeof(float) + 63) / 64 * 64);
  int rc = 1;
  if (!act || !dout || !oihw || !wt || !g || !dpre || !want || !same ||
      !got || !dact || !scratch)
    goto done;
  for (size_t i = 0; i < na; i++)
    act[i] = act[i] > 0.0f ? roundf(act[i] * 3.0f) / 3.0f : 0.0f;
  conv3x3_pack_backward(wt, oihw, C, K);
  backward_input_def(want, g, dpre, dout, act, oihw, N, H, W, C, K, pooled,
                     guided);
  if (strcmp(ks->name, "ref") != 0)
    ks->conv3x3_forward(same, dpre, wt, NULL, N, H, W, K, C, 0, 1);
  double atol = 1e-5 * (max_abs(want, ni) + 1e-3);
  char what[200];
  for (int v = 0; v < 6; v++) {
    int threads = 1 + v % 2, with_dact = (v / 2) % 2, with_scratch = v / 4;
    snprintf(what, sizeof what,
             "%s backward input N=%d H=%d W=%d C=%d K=%d pooled=%d guided=%d "
             "threads=%d dact=%d scratch=%d",
             ks->name, N, H, W, C, K, pooled, guided, threads, with_dact,
             with_scratch);
    memset(got, 0xff, ni * sizeof(float)); /* NaN: every output written? */
    memset(dact, 0xff, na * sizeof(float));
    ASSERT_EQ_INT(ks->conv3x3_backward_input(
                      got, with_dact ? dact : NULL, dout, act, wt, N, H, W, C,
                      K, pooled, guided, with_scratch ? scratch : NULL,
                      threads),
                  0);
    if (test_allclose(what, got, want, ni, 1e-4, atol)) goto done;
    if (strcmp(ks->name, "ref") != 0 &&
        memcmp(got, same, ni * sizeof(float)) != 0) {
      fprintf(stderr, "%s: differs from the set's conv3x3_forward\n", what);
      goto done;
    }
    if (with_dact && pooled && memcmp(dact, g, na * sizeof(float)) != 0) {
      fprintf(stderr, "%s: the routed gradient in dact is wrong\n", what);
      goto done;
    }
  }
  rc = 0;
done:
  free(act); free(dout); free(oihw); free(wt); free(g); free(dpre);
  free(want); free(same); free(got); free(dact); free(scratch);
  return rc;
}

static int check_backward_input_all(const ctp_kernels *ks) {
  /* The network's layers (C -> K of the forward), then odd channels. */
  static const chan_pair pairs[] = {
    {1, 16}, {3, 16}, {16, 16}, {16, 32}, {32, 32}, {32, 64}, {64, 64},
    {5, 16}, {7, 48}, {20, 8}, {17, 5}, {16, 3},
  };
  static const size_pair bsizes[] = {
    {1, 1}, {2, 2}, {3, 5}, {4, 6}, {5, 3}, {17, 33}, {6, 34}, {1, 34},
  };
  int i = 0;
  for (size_t p = 0; p < NELEM(pairs); p++)
    for (size_t s = 0; s < NELEM(bsizes); s++, i++)
      if (check_backward_input(ks, i % 3 ? 1 : 2, bsizes[s].H, bsizes[s].W,
                               pairs[p].C, pairs[p].K, (i / 2) % 2,
                               i % 2 == (int)(p % 2)))
        return 1;
  /* The real widths, pooled and not. */
  if (check_backward_input(ks, 1, 4, 512, 1, 16, 0, 0)) return 1;
  if (check_backward_input(ks, 1, 4, 256, 16, 16, 1, 1)) return 1;
  if (check_backward_input(ks, 2, 2, 128, 32, 32, 1, 0)) return 1;
  return 0;
}

/* Checks conv3x3_block_backward_input on one shape, for each choice of
 * dact_a and dact_b (NULL or not), 1 and 2 threads, with and without
 * scratch: against the reference composition within tolerance, and
 * against the set's own conv3x3_backward_input for layer b, then layer a,
 * exactly (dinp and the kept gradients). */
static int check_block_backward_input(const ctp_kernels *ks, int N, int H,
                                      int W, int C, int K1, int K2,
                                      int guided) {
  const ctp_kernels *ref = ctp_kernels_ref();
  size_t na = (size_t)N * H * W * K1, nb = (size_t)N * H * W * K2;
  size_t ni = (size_t)N * H * W * C, np = (size_t)N * (H / 2) * (W / 2) * K2;
  float *act_a = rnd_buf(na), *act_b = rnd_buf(nb), *dpool = rnd_buf(np + 1);
  float *oa = rnd_buf((size_t)9 * C * K1), *ob = rnd_buf((size_t)9 * K1 * K2);
  float *wta = malloc((size_t)9 * C * K1 * sizeof(float));
  float *wtb = malloc((size_t)9 * K1 * K2 * sizeof(float));
  float *want = malloc(ni * sizeof(float)), *same = malloc(ni * sizeof(float));
  float *got = malloc(ni * sizeof(float));
  float *da_same = malloc(na * sizeof(float)), *db_same = malloc(nb * sizeof(float));
  float *da = malloc(na * sizeof(float)), *db = malloc(nb * sizeof(float));
  size_t ns = ks->conv3x3_block_backward_input_scratch(W, C, K1, K2, 2);
  float *scratch = aligned_alloc(64, ((ns + 16) * sizeof(float) + 63) / 64 * 64);
  int rc = 1;
  if (!act_a || !act_b || !dpool || !oa || !ob || !wta || !wtb || !want ||
      !same || !got || !da_same || !db_same || !da || !db || !scratch)
    goto done;
  for (size_t i = 0; i < na; i++)
    act_a[i] = act_a[i] > 0.0f ? roundf(act_a[i] * 3.0f) / 3.0f : 0.0f;
  for (size_t i = 0; i < nb; i++)
    act_b[i] = act_b[i] > 0.0f ? roundf(act_b[i] * 3.0f) / 3.0f : 0.0f;
  conv3x3_pack_backward(wta, oa, C, K1);
  conv3x3_pack_backward(wtb, ob, K1, K2);
  ASSERT_EQ_INT(ref->conv3x3_block_backward_input(want, NULL, NULL, dpool,
                                                  act_a, act_b, wta, wtb, N, H,
                                                  W, C, K1, K2, guided, NULL,
                                                  1), 0);
  ASSERT_EQ_INT(ks->conv3x3_backward_input(da_same, db_same, dpool, act_b, wtb,
                                           N, H, W, K1, K2, 1, guided, NULL,
                                           1), 0);
  ASSERT_EQ_INT(ks->conv3x3_backward_input(same, NULL, da_same, act_a, wta, N,
                                           H, W, C, K1, 0, guided, NULL, 1), 0);
  double atol = 1e-5 * (max_abs(want, ni) + 1e-3);
  char what[220];
  for (int v = 0; v < 16; v++) {
    int threads = 1 + v % 2, with_scratch = (v / 2) % 2;
    float *pa = v & 4 ? da : NULL, *pb = v & 8 ? db : NULL;
    snprintf(what, sizeof what,
             "%s block backward input N=%d H=%d W=%d C=%d K1=%d K2=%d "
             "guided=%d threads=%d scratch=%d dact_a=%s dact_b=%s",
             ks->name, N, H, W, C, K1, K2, guided, threads, with_scratch,
             pa ? "yes" : "NULL", pb ? "yes" : "NULL");
    memset(got, 0xff, ni * sizeof(float));
    memset(da, 0xff, na * sizeof(float));
    memset(db, 0xff, nb * sizeof(float));
    ASSERT_EQ_INT(ks->conv3x3_block_backward_input(
                      got, pa, pb, dpool, act_a, act_b, wta, wtb, N, H, W, C,
                      K1, K2, guided, with_scratch ? scratch : NULL, threads),
                  0);
    if (test_allclose(what, got, want, ni, 1e-4, atol)) goto done;
    if (memcmp(got, same, ni * sizeof(float)) != 0 ||
        (pa && memcmp(da, da_same, na * sizeof(float)) != 0) ||
        (pb && memcmp(db, db_same, nb * sizeof(float)) != 0)) {
      fprintf(stderr, "%s: differs from the set's layer-by-layer "
              "conv3x3_backward_input\n", what);
      goto done;
    }
  }
  rc = 0;
done:
  free(act_a); free(act_b); free(dpool); free(oa); free(ob); free(wta);
  free(wtb); free(want); free(same); free(got); free(da_same); free(db_same);
  free(da); free(db); free(scratch);
  return rc;
}

static int check_block_backward_input_all(const ctp_kernels *ks) {
  /* The network's five blocks (and the 3-channel input), odd channels. */
  static const struct { int C, K1, K2; } blocks[] = {
    {1, 16, 16}, {3, 16, 16}, {16, 16, 16}, {16, 32, 32}, {32, 32, 32},
    {32, 64, 64}, {5, 24, 8}, {16, 3, 16}, {7, 16, 5},
  };
  static const size_pair bsizes[] = {
    {1, 1}, {2, 2}, {4, 6}, {5, 7}, {6, 34}, {3, 16}, {1, 4}, {17, 9},
  };
  int i = 0;
  for (size_t p = 0; p < NELEM(blocks); p++)
    for (size_t s = 0; s < NELEM(bsizes); s++, i++)
      if (check_block_backward_input(ks, 1 + i % 2, bsizes[s].H, bsizes[s].W,
                                     blocks[p].C, blocks[p].K1, blocks[p].K2,
                                     (i / 2) % 2))
        return 1;
  return check_block_backward_input(ks, 1, 6, 512, 1, 16, 16, 0);
}

TEST_IMPL(kernels_conv_backward_input_ref) {
  ASSERT(check_backward_input_all(ctp_kernels_ref()) == 0);
  return 0;
}

TEST_IMPL(kernels_conv_block_backward_input_ref) {
  ASSERT(check_block_backward_input_all(ctp_kernels_ref()) == 0);
  return 0;
}

TEST_IMPL(kernels_select) {
  ASSERT(ctp_kernels_by_name("ref") == ctp_kernels_ref());
  ASSERT(ctp_kernels_by_name("no-such-set") == NULL);
  ASSERT(ctp_kernels_select() != NULL);
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    ASSERT(ctp_kernels_by_name("avx2") != NULL);
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    ASSERT(ctp_kernels_by_name("avx512") != NULL);
  return 0;
}

/* The input gradient computed as the forward kernel on conv3x3_pack_backward
 * weights (how the network does it) against the definition
 * dinp[y][x][c] = sum_{ky,kx,k} w[k][c][ky][kx] * dout[y-ky+1][x-kx+1][k],
 * for every set the CPU supports. */
TEST_IMPL(kernels_conv_input_gradient) {
  const char *names[] = {"ref", "avx2", "avx512"};
  const int N = 2, H = 7, W = 9, C = 3, K = 16;
  float *oihw = rnd_buf((size_t)K * C * 9);
  float *dout = rnd_buf((size_t)N * H * W * K);
  float *packed = malloc((size_t)K * C * 9 * sizeof(float));
  float *want = calloc((size_t)N * H * W * C, sizeof(float));
  float *got = malloc((size_t)N * H * W * C * sizeof(float));
  ASSERT(oihw && dout && packed && want && got);
  for (int n = 0; n < N; n++)
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++)
        for (int c = 0; c < C; c++) {
          double s = 0;
          for (int ky = 0; ky < 3; ky++)
            for (int kx = 0; kx < 3; kx++) {
              int oy = y - ky + 1, ox = x - kx + 1;
              if (oy < 0 || oy >= H || ox < 0 || ox >= W) continue;
              for (int k = 0; k < K; k++)
                s += (double)oihw[((k * C + c) * 3 + ky) * 3 + kx] *
                     dout[(((size_t)n * H + oy) * W + ox) * K + k];
            }
          want[(((size_t)n * H + y) * W + x) * C + c] = (float)s;
        }
  conv3x3_pack_backward(packed, oihw, C, K);
  for (size_t i = 0; i < NELEM(names); i++) {
    const ctp_kernels *ks = ctp_kernels_by_name(names[i]);
    if (!ks) continue;
    ks->conv3x3_forward(got, dout, packed, NULL, N, H, W, K, C, 0, 2);
    ASSERT_ALLCLOSE(names[i], got, want, (size_t)N * H * W * C, 1e-4, 1e-5);
  }
  free(oihw); free(dout); free(packed); free(want); free(got);
  return 0;
}

TEST_IMPL(kernels_conv_block_forward_ref) {
  ASSERT(check_block_forward_all(ctp_kernels_ref()) == 0);
  return 0;
}

TEST_IMPL(kernels_conv_pool_forward_ref) {
  ASSERT(check_pool_forward_all(ctp_kernels_ref()) == 0);
  return 0;
}

#define SET_TESTS(set)                                                    \
  TEST_IMPL(kernels_conv_forward_##set) {                                 \
    const ctp_kernels *ks = ctp_kernels_by_name(#set);                    \
    if (!ks) TEST_SKIP("this CPU cannot run the " #set " kernels");       \
    ASSERT(check_forward_all(ks) == 0);                                   \
    return 0;                                                             \
  }                                                                       \
  TEST_IMPL(kernels_conv_backward_weight_##set) {                         \
    const ctp_kernels *ks = ctp_kernels_by_name(#set);                    \
    if (!ks) TEST_SKIP("this CPU cannot run the " #set " kernels");       \
    ASSERT(check_backward_weight_all(ks) == 0);                           \
    return 0;                                                             \
  }                                                                       \
  TEST_IMPL(kernels_conv_pool_forward_##set) {                            \
    const ctp_kernels *ks = ctp_kernels_by_name(#set);                    \
    if (!ks) TEST_SKIP("this CPU cannot run the " #set " kernels");       \
    ASSERT(check_pool_forward_all(ks) == 0);                              \
    return 0;                                                             \
  }                                                                       \
  TEST_IMPL(kernels_conv_block_forward_##set) {                           \
    const ctp_kernels *ks = ctp_kernels_by_name(#set);                    \
    if (!ks) TEST_SKIP("this CPU cannot run the " #set " kernels");       \
    ASSERT(check_block_forward_all(ks) == 0);                             \
    return 0;                                                             \
  }                                                                       \
  TEST_IMPL(kernels_conv_backward_input_##set) {                          \
    const ctp_kernels *ks = ctp_kernels_by_name(#set);                    \
    if (!ks) TEST_SKIP("this CPU cannot run the " #set " kernels");       \
    ASSERT(check_backward_input_all(ks) == 0);                            \
    return 0;                                                             \
  }                                                                       \
  TEST_IMPL(kernels_conv_block_backward_input_##set) {                    \
    const ctp_kernels *ks = ctp_kernels_by_name(#set);                    \
    if (!ks) TEST_SKIP("this CPU cannot run the " #set " kernels");       \
    ASSERT(check_block_backward_input_all(ks) == 0);                      \
    return 0;                                                             \
  }

SET_TESTS(avx2)
SET_TESTS(avx512)
