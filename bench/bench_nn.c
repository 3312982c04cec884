/*
 * bench_nn.c — milliseconds per 512x512 slice for the ctphase engine.
 *
 * Usage: bench_nn MODEL [--threads N] [--reps R] [--size S] [--kernels K]
 *                       [--json]
 *
 * Measures, best of R repetitions (the machines are shared and noisy, so
 * the minimum is the most repeatable statistic):
 *   forward at batch 1 and batch 8 (inference workspace),
 *   forward + backward to the input at batch 8 (what saliency costs),
 *   a training step at batch 8 (forward, weighted cross-entropy, backward to
 *   every parameter, Adam update and repack),
 * and the peak resident memory after the inference runs and at the end.
 * bench/compare.sh runs this beside PyTorch and ONNX Runtime on the same
 * weights and prints the ratios.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "ctphase/error.h"
#include "ctphase/model.h"
#include "ctphase/nn.h"
#include "ctphase/util.h"

static double peak_rss_mb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;
}

static void fill(float *x, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++) {
    seed = seed * 1664525u + 1013904223u;
    x[i] = (float)(seed >> 8) / (float)(1 << 24) * 4.0f - 2.0f;
  }
}

/* Best-of-reps milliseconds per slice of a batch-n forward. */
static double time_forward(const ctp_model *m, int n, int size, int threads,
                           const char *kern, int reps, const float *x) {
  ctp_net *net;
  float logits[8 * CTP_NUM_CLASSES];
  if (ctp_net_new(&net, m, n, size, size, 0, threads) ||
      (kern && ctp_net_set_kernels(net, kern))) {
    fprintf(stderr, "bench_nn: %s\n", ctp_last_error());
    exit(1);
  }
  ctp_net_forward(net, x, n, logits); /* warm-up */
  double best = 1e30;
  for (int r = 0; r < reps; r++) {
    double t0 = ctp_now();
    ctp_net_forward(net, x, n, logits);
    double dt = (ctp_now() - t0) * 1000.0 / n;
    best = dt < best ? dt : best;
  }
  ctp_net_free(net);
  return best;
}

int main(int argc, char **argv) {
  const char *path = NULL, *kern = NULL;
  int threads = 2, reps = 5, size = 512, json = 0, batch = 8;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--size") && i + 1 < argc) size = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--kernels") && i + 1 < argc) kern = argv[++i];
    else if (!strcmp(argv[i], "--json")) json = 1;
    else if (argv[i][0] != '-') path = argv[i];
    else {
      fprintf(stderr, "usage: bench_nn MODEL [--threads N] [--reps R] "
              "[--size S] [--kernels K] [--json]\n");
      return 2;
    }
  }
  ctp_model *m;
  if (!path || ctp_model_load(&m, path)) {
    fprintf(stderr, "bench_nn: %s\n", path ? ctp_last_error() : "no model");
    return 1;
  }
  size_t per = (size_t)m->in_channels * size * size;
  float *x = malloc((size_t)batch * per * sizeof(float));
  fill(x, (size_t)batch * per, 1);
  double gflop = 0.0;
  for (int l = 0; l < CTP_NUM_CONV; l++) {
    double hw = (double)(size >> ctp_layer_shift(l)) * (size >> ctp_layer_shift(l));
    gflop += 2.0 * 9 * hw * ctp_layer_in_channels(l, m->in_channels) *
             ctp_layer_channels(l) / 1e9;
  }

  double fwd1 = time_forward(m, 1, size, threads, kern, reps, x);
  double fwd8 = time_forward(m, batch, size, threads, kern, reps, x);
  double rss_infer = peak_rss_mb();

  /* Forward + input gradient, and a training step, at batch 8. */
  ctp_net *net;
  if (ctp_net_new(&net, m, batch, size, size, CTP_NET_GRAD, threads) ||
      (kern && ctp_net_set_kernels(net, kern))) {
    fprintf(stderr, "bench_nn: %s\n", ctp_last_error());
    return 1;
  }
  float logits[8 * CTP_NUM_CLASSES], dl[8 * CTP_NUM_CLASSES];
  int labels[8];
  for (int i = 0; i < batch; i++) labels[i] = i % CTP_NUM_CLASSES;
  double bwd = 1e30, train = 1e30;
  for (int r = 0; r <= reps; r++) {
    double t0 = ctp_now();
    ctp_net_forward(net, x, batch, logits);
    memset(dl, 0, sizeof dl);
    for (int i = 0; i < batch; i++) {
      int best = 0;
      for (int j = 1; j < CTP_NUM_CLASSES; j++)
        if (logits[i * 5 + j] > logits[i * 5 + best]) best = j;
      dl[i * 5 + best] = 1.0f;
    }
    ctp_net_backward(net, dl, batch, CTP_BWD_INPUT, NULL);
    double dt = (ctp_now() - t0) * 1000.0 / batch;
    if (r > 0 && dt < bwd) bwd = dt;
  }
  float *grads = calloc(m->num_params, sizeof(float));
  ctp_adam opt;
  ctp_adam_init(&opt, m->num_params, 1e-4f);
  float w[5] = {1, 1, 1, 1, 1};
  for (int r = 0; r <= reps; r++) {
    double t0 = ctp_now();
    memset(grads, 0, m->num_params * sizeof(float));
    ctp_net_forward(net, x, batch, logits);
    ctp_cross_entropy(logits, labels, w, batch, dl);
    ctp_net_backward(net, dl, batch, CTP_BWD_PARAMS, grads);
    ctp_adam_step(&opt, m->params, grads);
    ctp_model_repack(m);
    double dt = (ctp_now() - t0) * 1000.0 / batch;
    if (r > 0 && dt < train) train = dt;
  }
  double rss_all = peak_rss_mb();
  const char *kname = ctp_net_kernels(net);
  if (json) {
    printf("{\"engine\": \"ctphase\", \"kernels\": \"%s\", \"threads\": %d, "
           "\"size\": %d, \"gflop_per_slice\": %.3f, \"fwd_b1_ms\": %.3f, "
           "\"fwd_b8_ms\": %.3f, \"fwd_grad_b8_ms\": %.3f, "
           "\"train_b8_ms\": %.3f, \"peak_rss_infer_mb\": %.1f, "
           "\"peak_rss_mb\": %.1f}\n",
           kname, threads, size, gflop, fwd1, fwd8, bwd, train, rss_infer,
           rss_all);
  } else {
    printf("ctphase engine, kernels %s, %d threads, %dx%d, %.3f GFLOP/slice\n",
           kname, threads, size, size, gflop);
    printf("  forward batch 1      %8.2f ms/slice  %6.1f GFLOP/s\n", fwd1, gflop / fwd1 * 1e3);
    printf("  forward batch %d      %8.2f ms/slice  %6.1f GFLOP/s\n", batch, fwd8, gflop / fwd8 * 1e3);
    printf("  forward+input grad   %8.2f ms/slice  (%.2fx forward)\n", bwd, bwd / fwd8);
    printf("  training step        %8.2f ms/slice\n", train);
    printf("  peak RSS: %.0f MB after inference (batch %d), %.0f MB in all\n",
           rss_infer, batch, rss_all);
  }
  ctp_adam_free(&opt);
  free(grads);
  free(x);
  ctp_net_free(net);
  ctp_model_free(m);
  return 0;
}
