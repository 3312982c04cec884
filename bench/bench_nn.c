/*
 * bench_nn.c — milliseconds per 512x512 slice for the ctphase engine.
 *
 * Usage: bench_nn MODEL [--threads N] [--reps R] [--size S] [--kernels K]
 *                       [--routes] [--cpu-time] [--json]
 *
 * Measures, best of R repetitions (the machines are shared and noisy, so
 * the minimum is the most repeatable statistic; the repetitions go round
 * all the tasks, so that the ratios compare runs made under the same load):
 *   forward at batch 1 and batch 8 (inference workspace),
 *   forward + backward to the input at batch 1 and 8 (what a saliency map
 *   costs: CTP_BWD_INPUT | CTP_BWD_NO_LAYERS), each with its ratio to the
 *   forward at the same batch,
 *   the same at batch 8 keeping every layer's gradient (CTP_BWD_INPUT, what
 *   Grad-CAM and SAM read),
 *   a training step at batch 8 (forward, weighted cross-entropy, backward to
 *   every parameter, Adam update and repack),
 *   with --routes, forward + input gradient through the earlier routes
 *   (CTPHASE_NN_ROUTE=unfused: separate passes; =layer: each layer's ReLU
 *   and pool fused into its convolution, not whole blocks), to show what
 *   each fusion buys,
 * and the peak resident memory after the nets are made and at the end.
 * --cpu-time (with --threads 1) measures this thread's CPU time instead of
 * the wall clock, for comparing routes on a crowded machine.
 * bench/compare.sh runs this beside PyTorch and ONNX Runtime on the same
 * weights and prints the ratios.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

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

static ctp_net *net_make(const ctp_model *m, int n, int size, unsigned flags,
                         int threads, const char *kern, const char *route) {
  ctp_net *net;
  if (route) setenv("CTPHASE_NN_ROUTE", route, 1);
  else unsetenv("CTPHASE_NN_ROUTE");
  if (ctp_net_new(&net, m, n, size, size, flags, threads) ||
      (kern && ctp_net_set_kernels(net, kern))) {
    fprintf(stderr, "bench_nn: %s\n", ctp_last_error());
    exit(1);
  }
  return net;
}

/* One of the measured tasks, on its own net; `best` is ms per slice. */
typedef enum { TASK_FORWARD, TASK_GRAD, TASK_TRAIN } task_kind;
typedef struct {
  const char *name;
  task_kind kind;
  int n;
  unsigned bwd_flags;
  const char *route; /* NULL, "unfused" or "layer" (CTPHASE_NN_ROUTE) */
  ctp_net *net;
  double best;
} task;

/* The gradient of the largest logit of each slice (what a saliency map
 * asks for). */
static void argmax_gradient(const float *logits, float *dl, int n) {
  memset(dl, 0, (size_t)n * CTP_NUM_CLASSES * sizeof(float));
  for (int i = 0; i < n; i++) {
    int best = 0;
    for (int j = 1; j < CTP_NUM_CLASSES; j++)
      if (logits[i * 5 + j] > logits[i * 5 + best]) best = j;
    dl[i * 5 + best] = 1.0f;
  }
}

/* With --cpu-time, the clock is the CPU time of this thread (with
 * --threads 1 the kernels run on it): on a machine whose cores are shared,
 * it leaves out the time the thread waited for a core. */
static int use_cpu_time;

static double now(void) {
  if (!use_cpu_time) return ctp_now();
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Runs a task once; returns ms per slice. */
static double task_run(task *t, ctp_model *m, const float *x, float *grads,
                       ctp_adam *opt) {
  float logits[8 * CTP_NUM_CLASSES], dl[8 * CTP_NUM_CLASSES];
  int labels[8];
  const float w[5] = {1, 1, 1, 1, 1};
  double t0 = now();
  ctp_net_forward(t->net, x, t->n, logits);
  if (t->kind == TASK_GRAD) {
    argmax_gradient(logits, dl, t->n);
    ctp_net_backward(t->net, dl, t->n, t->bwd_flags, NULL);
  } else if (t->kind == TASK_TRAIN) {
    for (int i = 0; i < t->n; i++) labels[i] = i % CTP_NUM_CLASSES;
    memset(grads, 0, m->num_params * sizeof(float));
    ctp_cross_entropy(logits, labels, w, t->n, dl);
    ctp_net_backward(t->net, dl, t->n, CTP_BWD_PARAMS, grads);
    ctp_adam_step(opt, m->params, grads);
    ctp_model_repack(m);
  }
  return (now() - t0) * 1000.0 / t->n;
}

int main(int argc, char **argv) {
  const char *path = NULL, *kern = NULL;
  int threads = 2, reps = 5, size = 512, json = 0, batch = 8, routes = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--size") && i + 1 < argc) size = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--kernels") && i + 1 < argc) kern = argv[++i];
    else if (!strcmp(argv[i], "--json")) json = 1;
    else if (!strcmp(argv[i], "--routes")) routes = 1;
    else if (!strcmp(argv[i], "--cpu-time")) use_cpu_time = 1;
    else if (argv[i][0] != '-') path = argv[i];
    else {
      fprintf(stderr, "usage: bench_nn MODEL [--threads N] [--reps R] "
              "[--size S] [--kernels K] [--routes] [--cpu-time] [--json]\n");
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

  /* Every task on its own net, made up front; the repetitions go round
   * the tasks so that each ratio compares runs made under the same load. */
  const unsigned grad_only = CTP_BWD_INPUT | CTP_BWD_NO_LAYERS;
  task tasks[] = {
    {"forward", TASK_FORWARD, 1, 0, NULL, NULL, 1e30},
    {"forward", TASK_FORWARD, batch, 0, NULL, NULL, 1e30},
    {"forward+input grad", TASK_GRAD, 1, grad_only, NULL, NULL, 1e30},
    {"forward+input grad", TASK_GRAD, batch, grad_only, NULL, NULL, 1e30},
    {"  with layer grads", TASK_GRAD, batch, CTP_BWD_INPUT, NULL, NULL, 1e30},
    {"training step", TASK_TRAIN, batch, 0, NULL, NULL, 1e30},
    {"  unfused routes", TASK_GRAD, 1, grad_only, "unfused", NULL, 1e30},
    {"  unfused routes", TASK_GRAD, batch, grad_only, "unfused", NULL, 1e30},
    {"  fused by layer", TASK_GRAD, 1, grad_only, "layer", NULL, 1e30},
    {"  fused by layer", TASK_GRAD, batch, grad_only, "layer", NULL, 1e30},
  };
  const int ntasks = routes ? 10 : 6;
  ctp_net *grad_net[2] = {NULL, NULL}; /* batch 1 and batch 8, shared */
  for (int i = 0; i < ntasks; i++) {
    task *t = &tasks[i];
    if (t->kind == TASK_FORWARD) {
      t->net = net_make(m, t->n, size, 0, threads, kern, NULL);
    } else if (!t->route) {
      ctp_net **g = &grad_net[t->n == 1 ? 0 : 1];
      if (!*g) *g = net_make(m, t->n, size, CTP_NET_GRAD, threads, kern, NULL);
      t->net = *g;
    } else {
      t->net = net_make(m, t->n, size, CTP_NET_GRAD, threads, kern, t->route);
    }
  }
  unsetenv("CTPHASE_NN_ROUTE");
  double rss_infer = peak_rss_mb();
  float *grads = calloc(m->num_params, sizeof(float));
  ctp_adam opt;
  ctp_adam_init(&opt, m->num_params, 1e-4f);
  for (int r = 0; r <= reps; r++) /* the first round warms up */
    for (int i = 0; i < ntasks; i++) {
      double dt = task_run(&tasks[i], m, x, grads, &opt);
      if (r > 0 && dt < tasks[i].best) tasks[i].best = dt;
    }
  double rss_all = peak_rss_mb();
  const char *kname = ctp_net_kernels(tasks[0].net);
  double fwd1 = tasks[0].best, fwd8 = tasks[1].best;
  if (json) {
    printf("{\"engine\": \"ctphase\", \"kernels\": \"%s\", \"threads\": %d, "
           "\"size\": %d, \"gflop_per_slice\": %.3f, \"fwd_b1_ms\": %.3f, "
           "\"fwd_b8_ms\": %.3f, \"fwd_grad_b1_ms\": %.3f, "
           "\"fwd_grad_b8_ms\": %.3f, \"fwd_grad_layers_b8_ms\": %.3f, "
           "\"train_b8_ms\": %.3f, \"peak_rss_infer_mb\": %.1f, "
           "\"peak_rss_mb\": %.1f}\n",
           kname, threads, size, gflop, fwd1, fwd8, tasks[2].best,
           tasks[3].best, tasks[4].best, tasks[5].best, rss_infer, rss_all);
  } else {
    printf("ctphase engine, kernels %s, %d threads, %dx%d, %.3f GFLOP/slice, "
           "best of %d%s\n", kname, threads, size, size, gflop, reps,
           use_cpu_time ? ", thread CPU time" : "");
    for (int i = 0; i < ntasks; i++) {
      const task *t = &tasks[i];
      double f = t->n == 1 ? fwd1 : fwd8;
      printf("  %-20s b%d %8.2f ms/slice", t->name, t->n, t->best);
      if (t->kind == TASK_FORWARD)
        printf("  %6.1f GFLOP/s\n", gflop / t->best * 1e3);
      else
        printf("  %5.2fx forward b%d\n", t->best / f, t->n);
    }
    printf("  peak RSS: %.0f MB after making the nets, %.0f MB in all\n",
           rss_infer, rss_all);
  }
  for (int i = 0; i < ntasks; i++)
    if (tasks[i].kind == TASK_FORWARD || tasks[i].route)
      ctp_net_free(tasks[i].net);
  ctp_net_free(grad_net[0]);
  ctp_net_free(grad_net[1]);
  ctp_adam_free(&opt);
  free(grads);
  free(x);
  ctp_model_free(m);
  return 0;
}
