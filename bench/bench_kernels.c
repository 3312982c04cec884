/*
 * bench_kernels.c — speed of the 3x3 convolution kernels on the network's
 * layer shapes.
 *
 * Usage: bench_kernels [reps] [set...]
 *
 * For each kernel set the CPU supports and 1 and 2 threads, prints GFLOP/s
 * of every convolution of one 512x512 forward (layers 1a..6), of the
 * input-gradient convolutions a backward pass runs through the same
 * forward kernel, and of the weight-gradient kernel, each the best of
 * `reps` runs (default 5; the machine is shared, so best-of-N is the
 * number that means something). It then sums the best times of the forward
 * layers into the convolution time of one slice. The "ref" set is slow, so
 * it runs the network at 128x128 and its per-slice time is scaled by 16.
 * Last, it measures OpenBLAS sgemm (2048^3, 1 and 2 threads) as the
 * machine's practical peak.
 */
#include "nn/kernels.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
  const char *name;
  int S, C, K; /* S: H = W for a 512x512 input */
} layer;

/* The convolutions of one forward pass (DESIGN.md §1). */
static const layer layers[] = {
  {"1a", 512, 1, 16},   {"1b", 512, 16, 16}, {"2a", 256, 16, 16},
  {"2b", 256, 16, 16},  {"3a", 128, 16, 32}, {"3b", 128, 32, 32},
  {"4a", 64, 32, 32},   {"4b", 64, 32, 32},  {"5a", 32, 32, 64},
  {"5b", 32, 64, 64},   {"6", 16, 64, 64},
};
#define NLAYERS (int)(sizeof layers / sizeof layers[0])

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

static float *rnd_buf(size_t n) {
  float *p = malloc(n * sizeof(float));
  if (!p) {
    fprintf(stderr, "out of memory\n");
    exit(1);
  }
  unsigned s = 12345;
  for (size_t i = 0; i < n; i++) {
    s = s * 1103515245u + 12345u;
    p[i] = (float)((s >> 9) & 0xffff) / 32768.0f - 1.0f;
  }
  return p;
}

static double conv_flops(int H, int W, int C, int K) {
  return 2.0 * 9.0 * H * W * (double)C * K;
}

enum { FWD, BWD_DATA, BWD_WEIGHT };

/* Best time of `reps` runs of one kernel on one shape. */
static double time_conv(const ctp_kernels *ks, int what, int H, int W, int C,
                        int K, int threads, int reps) {
  /* Input-gradient convolution of a layer C->K: K channels in, C out. */
  int ci = what == BWD_DATA ? K : C, co = what == BWD_DATA ? C : K;
  float *inp = rnd_buf((size_t)H * W * ci), *out = rnd_buf((size_t)H * W * co);
  float *w = rnd_buf((size_t)9 * C * K), *b = rnd_buf((size_t)K);
  double best = 1e30;
  for (int r = 0; r < reps + 1; r++) { /* the first run warms up */
    double t0 = now();
    if (what == BWD_WEIGHT)
      ks->conv3x3_backward_weight(w, b, out, inp, 1, H, W, C, K, threads);
    else
      ks->conv3x3_forward(out, inp, w, what == FWD ? b : NULL, 1, H, W, ci,
                          co, what == FWD, threads);
    double t = now() - t0;
    if (r > 0 && t < best) best = t;
  }
  free(inp); free(out); free(w); free(b);
  return best;
}

static void bench_set(const ctp_kernels *ks, int threads, int reps) {
  int div = strcmp(ks->name, "ref") == 0 ? 4 : 1; /* ref: 128x128 */
  static const char *what_name[] = {"forward", "input grad", "weight grad"};
  printf("\n== %s, %d thread%s%s ==\n", ks->name, threads, threads > 1 ? "s" : "",
         div > 1 ? " (network at 128x128)" : "");
  printf("%-5s %5s %7s | %9s %8s | %9s %8s | %9s %8s\n", "layer", "HxW", "C->K",
         what_name[0], "GFLOP/s", what_name[1], "GFLOP/s", what_name[2],
         "GFLOP/s");
  double total[3] = {0, 0, 0}, flops = 0;
  for (int l = 0; l < NLAYERS; l++) {
    int S = layers[l].S / div, C = layers[l].C, K = layers[l].K;
    double f = conv_flops(S, S, C, K);
    printf("%-5s %5d %3d->%-3d", layers[l].name, S, C, K);
    for (int what = FWD; what <= BWD_WEIGHT; what++) {
      double t = time_conv(ks, what, S, S, C, K, threads, reps);
      total[what] += t;
      printf(" | %7.3fms %8.1f", 1e3 * t, f / t * 1e-9);
    }
    printf("\n");
    flops += f;
  }
  double scale = (double)div * div;
  printf("per 512x512 slice: forward convs %.2f ms (%.1f GFLOP/s), "
         "input-grad convs %.2f ms, weight-grad convs %.2f ms%s\n",
         1e3 * total[FWD] * scale, flops / total[FWD] * 1e-9,
         1e3 * total[BWD_DATA] * scale, 1e3 * total[BWD_WEIGHT] * scale,
         div > 1 ? " (scaled from 128x128)" : "");
}

/* OpenBLAS sgemm, n x n x n, best of reps. */
static void bench_sgemm(int n, int threads, int reps) {
  float *a = rnd_buf((size_t)n * n), *b = rnd_buf((size_t)n * n);
  float *c = rnd_buf((size_t)n * n);
  openblas_set_num_threads(threads);
  double best = 1e30;
  for (int r = 0; r < reps + 1; r++) {
    double t0 = now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n,
                b, n, 0.0f, c, n);
    double t = now() - t0;
    if (r > 0 && t < best) best = t;
  }
  printf("OpenBLAS sgemm %dx%dx%d, %d thread%s: %.1f GFLOP/s\n", n, n, n,
         threads, threads > 1 ? "s" : "", 2.0 * n * n * (double)n / best * 1e-9);
  free(a); free(b); free(c);
}

int main(int argc, char **argv) {
  int reps = argc > 1 ? atoi(argv[1]) : 5;
  if (reps < 1) reps = 1;
  const char *names[] = {"ref", "avx2", "avx512"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    int wanted = argc <= 2;
    for (int a = 2; a < argc; a++) wanted |= strcmp(argv[a], names[i]) == 0;
    const ctp_kernels *ks = ctp_kernels_by_name(names[i]);
    if (!wanted) continue;
    if (!ks) {
      printf("\n== %s: not supported by this CPU ==\n", names[i]);
      continue;
    }
    for (int threads = 1; threads <= 2; threads++) bench_set(ks, threads, reps);
  }
  printf("\n");
  for (int threads = 1; threads <= 2; threads++) bench_sgemm(2048, threads, reps);
  return 0;
}
