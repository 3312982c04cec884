/*
 * test-nn.c — the engine against PyTorch, tensor by tensor, and the model
 * and .npy files.
 *
 * Fixtures come from tests/reference/make_fixtures.py (PyTorch 1.13): a
 * model written by PyTorch's side as safetensors (so PyTorch files are
 * proven to load), an input, and every layer's output, the gradient of a
 * class-weighted cross-entropy at the input, at every layer's output and at
 * every parameter, plus saliency and guided-backprop input gradients.
 *
 * Tolerance: an element passes when |got - want| <= 1e-3 |want| + 1e-4 M,
 * M the largest |want| of that tensor: float32 sums taken in another order
 * differ in the last bits, scaled by the tensor's magnitude. Each check
 * runs for every kernel set the CPU supports.
 */
#include <dirent.h>
#include <pthread.h>
#include <sys/stat.h>

#include "ctphase/error.h"
#include "ctphase/model.h"
#include "ctphase/nn.h"
#include "ctphase/npy.h"
#include "ctphase/util.h"
#include "nn/kernels.h"
#include "test.h"

#define FIX "tests/reference/fixtures/"

static const char *const kernel_sets[] = {"ref", "avx2", "avx512"};
#define NUM_SETS 3

static double max_abs(const float *a, size_t n) {
  double m = 0.0;
  for (size_t i = 0; i < n; i++) m = fabs(a[i]) > m ? fabs(a[i]) : m;
  return m;
}

/* Compares got against fixture `file` of case `dir`; returns 0 when close. */
static int check_npy(const char *dir, const char *file, const char *set,
                     const float *got, size_t n) {
  char path[256], what[256];
  snprintf(path, sizeof path, FIX "%s/%s", dir, file);
  snprintf(what, sizeof what, "[%s] %s/%s", set, dir, file);
  ctp_npy want;
  if (ctp_npy_read(path, &want)) {
    fprintf(stderr, "%s: %s\n", what, ctp_last_error());
    return 1;
  }
  int r = 0;
  if (ctp_npy_numel(&want) != n) {
    fprintf(stderr, "%s: %zu elements, fixture has %zu\n", what, n,
            ctp_npy_numel(&want));
    r = 1;
  } else {
    r = test_allclose(what, got, want.data, n, 1e-3,
                      1e-4 * max_abs(want.data, n) + 1e-7);
  }
  ctp_npy_free(&want);
  return r;
}

static int load_fixture(const char *dir, const char *file, ctp_npy *out) {
  char path[256];
  snprintf(path, sizeof path, FIX "%s/%s", dir, file);
  int r = ctp_npy_read(path, out);
  if (r) fprintf(stderr, "%s\n", ctp_last_error());
  return r;
}

/* Forward, loss, backward to input/layers/params, saliency and guided
 * backprop, for one fixture case and one kernel set. */
static int parity_case(const char *dir, const char *set) {
  char path[256];
  snprintf(path, sizeof path, FIX "%s/model.safetensors", dir);
  ctp_model *m = NULL;
  ctp_net *net = NULL;
  ctp_npy x = {0}, lab = {0}, cw = {0}, loss_ref = {0};
  float *buf = NULL, *dparams = NULL;
  int fails = 0;
  ASSERT_OK(ctp_model_load(&m, path));
  ASSERT_OK(load_fixture(dir, "x.npy", &x));
  ASSERT_OK(load_fixture(dir, "labels.npy", &lab));
  ASSERT_OK(load_fixture(dir, "class_weights.npy", &cw));
  ASSERT_OK(load_fixture(dir, "loss.npy", &loss_ref));
  int n = (int)x.shape[0], h = (int)x.shape[2], w = (int)x.shape[3];
  ASSERT_OK(ctp_net_new(&net, m, n, h, w, CTP_NET_GRAD, 2));
  ASSERT_OK(ctp_net_set_kernels(net, set));
  size_t big = (size_t)n * h * w * 64;
  buf = malloc(big * sizeof(float));
  dparams = calloc(m->num_params, sizeof(float));
  ASSERT(buf && dparams);

  float logits[64 * CTP_NUM_CLASSES], dlogits[64 * CTP_NUM_CLASSES];
  int labels[64];
  for (int i = 0; i < n; i++) labels[i] = (int)lab.data[i];
  ASSERT_OK(ctp_net_forward(net, x.data, n, logits));
  fails += check_npy(dir, "logits.npy", set, logits, (size_t)n * 5);
  for (int l = 0; l < CTP_NUM_CONV; l++) {
    int c, hh, ww;
    char name[32];
    ctp_net_shape(net, l, &c, &hh, &ww);
    ASSERT_OK(ctp_net_get(net, l, 0, n, buf));
    snprintf(name, sizeof name, "act_%s.npy", ctp_layer_name(l));
    fails += check_npy(dir, name, set, buf, (size_t)n * c * hh * ww);
  }
  float loss = ctp_cross_entropy(logits, labels, cw.data, n, dlogits);
  ASSERT_NEAR(loss, loss_ref.data[0], 1e-4 * fabs(loss_ref.data[0]) + 1e-6);
  ASSERT_OK(ctp_net_backward(net, dlogits, n, CTP_BWD_INPUT | CTP_BWD_PARAMS,
                             dparams));
  ASSERT_OK(ctp_net_get(net, CTP_INPUT, 1, n, buf));
  fails += check_npy(dir, "grad_input.npy", set, buf, x.shape[0] * x.shape[1] * h * w);
  for (int l = 0; l < CTP_NUM_CONV; l++) {
    int c, hh, ww;
    char name[32];
    ctp_net_shape(net, l, &c, &hh, &ww);
    ASSERT_OK(ctp_net_get(net, l, 1, n, buf));
    snprintf(name, sizeof name, "grad_act_%s.npy", ctp_layer_name(l));
    fails += check_npy(dir, name, set, buf, (size_t)n * c * hh * ww);
  }
  for (int t = 0; t < CTP_NUM_TENSORS; t++) {
    char name[64];
    snprintf(name, sizeof name, "grad_%s.npy", m->tensors[t].name);
    fails += check_npy(dir, name, set, dparams + m->tensors[t].offset,
                       m->tensors[t].numel);
  }
  /* Saliency and guided backprop: target sum_i logit[i, label_i]. */
  memset(dlogits, 0, sizeof dlogits);
  for (int i = 0; i < n; i++) dlogits[i * 5 + labels[i]] = 1.0f;
  ASSERT_OK(ctp_net_backward(net, dlogits, n, CTP_BWD_INPUT, NULL));
  ASSERT_OK(ctp_net_get(net, CTP_INPUT, 1, n, buf));
  fails += check_npy(dir, "saliency_input.npy", set, buf, x.shape[0] * x.shape[1] * h * w);
  ASSERT_OK(ctp_net_backward(net, dlogits, n, CTP_BWD_INPUT | CTP_BWD_GUIDED, NULL));
  ASSERT_OK(ctp_net_get(net, CTP_INPUT, 1, n, buf));
  fails += check_npy(dir, "guided_input.npy", set, buf, x.shape[0] * x.shape[1] * h * w);

  free(buf);
  free(dparams);
  ctp_npy_free(&x);
  ctp_npy_free(&lab);
  ctp_npy_free(&cw);
  ctp_npy_free(&loss_ref);
  ctp_net_free(net);
  ctp_model_free(m);
  return fails;
}

static int parity_all_sets(const char *dir) {
  int ran = 0;
  for (int s = 0; s < NUM_SETS; s++) {
    if (!ctp_kernels_by_name(kernel_sets[s])) {
      printf("  kernel set %s not supported here\n", kernel_sets[s]);
      continue;
    }
    ASSERT_EQ_INT(parity_case(dir, kernel_sets[s]), 0);
    ran++;
  }
  ASSERT(ran >= 1);
  return 0;
}

TEST_IMPL(nn_parity_b2_64_c1) { return parity_all_sets("b2_64_c1"); }
TEST_IMPL(nn_parity_b1_32x64_c3) { return parity_all_sets("b1_32x64_c3"); }

/* One 512x512 forward, inference mode (slice by slice), against PyTorch. */
TEST_IMPL(nn_parity_512_forward) {
  ctp_model *m;
  ctp_npy x;
  ASSERT_OK(ctp_model_load(&m, FIX "b1_512_c1/model.safetensors"));
  ASSERT_OK(load_fixture("b1_512_c1", "x.npy", &x));
  for (int s = 0; s < NUM_SETS; s++) {
    if (!ctp_kernels_by_name(kernel_sets[s])) continue;
    ctp_net *net;
    float logits[5], probs[5];
    ASSERT_OK(ctp_net_new(&net, m, 1, 512, 512, 0, 2));
    ASSERT_OK(ctp_net_set_kernels(net, kernel_sets[s]));
    ASSERT_OK(ctp_net_forward(net, x.data, 1, logits));
    ctp_softmax(logits, probs, 1);
    ASSERT_EQ_INT(check_npy("b1_512_c1", "logits.npy", kernel_sets[s], logits, 5), 0);
    ASSERT_EQ_INT(check_npy("b1_512_c1", "probs.npy", kernel_sets[s], probs, 5), 0);
    float *a6 = malloc(64 * 16 * 16 * sizeof(float));
    ASSERT_OK(ctp_net_get(net, CTP_L6, 0, 1, a6));
    ASSERT_EQ_INT(check_npy("b1_512_c1", "act_6.npy", kernel_sets[s], a6, 64 * 256), 0);
    free(a6);
    ctp_net_free(net);
  }
  ctp_npy_free(&x);
  ctp_model_free(m);
  return 0;
}

TEST_IMPL(nn_param_count) {
  ASSERT_EQ_INT(ctp_model_param_count(1), 132181);
  ASSERT_EQ_INT(ctp_model_param_count(3), 132181 + 2 * 16 * 9);
  ctp_model *m;
  ASSERT_OK(ctp_model_new(&m, 1));
  size_t sum = 0;
  for (int t = 0; t < CTP_NUM_TENSORS; t++) sum += m->tensors[t].numel;
  ASSERT_EQ_INT(sum, 132181);
  ASSERT_EQ_INT(m->num_params, 132181);
  ctp_model_free(m);
  return 0;
}

/* Save, load: the same bytes, the same weights; the same seed, same file. */
TEST_IMPL(nn_model_roundtrip) {
  ctp_model *a, *b, *c;
  unsigned char *buf1, *buf2;
  size_t len1, len2;
  ASSERT_OK(ctp_model_new(&a, 1));
  ctp_model_init_he(a, 42);
  ASSERT_OK(ctp_model_set_meta(a, "name", "roundtrip"));
  ASSERT_OK(ctp_model_save_buffer(a, &buf1, &len1));
  ASSERT_OK(ctp_model_load_buffer(&b, buf1, len1));
  ASSERT(memcmp(a->params, b->params, a->num_params * sizeof(float)) == 0);
  ASSERT(strcmp(ctp_model_meta(b, "name"), "roundtrip") == 0);
  ASSERT_OK(ctp_model_save_buffer(b, &buf2, &len2));
  ASSERT_EQ_INT(len1, len2);
  ASSERT(memcmp(buf1, buf2, len1) == 0);
  ASSERT_OK(ctp_model_new(&c, 1));
  ctp_model_init_he(c, 42);
  ASSERT(memcmp(a->params, c->params, a->num_params * sizeof(float)) == 0);
  ctp_model_init_he(c, 43);
  ASSERT(memcmp(a->params, c->params, a->num_params * sizeof(float)) != 0);
  /* He init: conv weights have std sqrt(2/fan_in). */
  double s2 = 0;
  size_t nw = a->tensors[2 * CTP_L5B].numel;
  for (size_t i = 0; i < nw; i++) s2 += (double)a->conv_w[CTP_L5B][i] * a->conv_w[CTP_L5B][i];
  ASSERT_NEAR(sqrt(s2 / nw), sqrt(2.0 / (64 * 9)), 0.005);
  char path[512];
  snprintf(path, sizeof path, "%s/m.safetensors", test_tmpdir());
  ASSERT_OK(ctp_model_save(a, path));
  ctp_model *d;
  ASSERT_OK(ctp_model_load(&d, path));
  char hex[65];
  ctp_sha256_hex(buf1, len1, hex);
  ASSERT(strcmp(hex, d->sha256) == 0);
  free(buf1);
  free(buf2);
  ctp_model_free(a);
  ctp_model_free(b);
  ctp_model_free(c);
  ctp_model_free(d);
  return 0;
}

/* Every file of the broken-model corpus is refused, and the message names
 * the problem (tests/corpus/models/expect.tsv: file, expected word). */
TEST_IMPL(nn_model_corpus) {
  FILE *f = fopen("tests/corpus/models/expect.tsv", "r");
  ASSERT(f != NULL);
  char line[512];
  int count = 0;
  while (fgets(line, sizeof line, f)) {
    char file[256], token[128];
    if (line[0] == '#' || sscanf(line, "%255[^\t]\t%127[^\n]", file, token) != 2)
      continue;
    char path[512];
    snprintf(path, sizeof path, "tests/corpus/models/%s", file);
    ctp_model *m = (ctp_model *)1;
    int r = ctp_model_load(&m, path);
    const char *msg = ctp_last_error();
    printf("  %-32s -> %s\n", file, msg);
    if (r == 0 || m != NULL) {
      fprintf(stderr, "%s: accepted, should be refused\n", file);
      return 1;
    }
    char lower[512];
    size_t i = 0;
    for (; msg[i] && i < sizeof lower - 1; i++)
      lower[i] = (char)((msg[i] >= 'A' && msg[i] <= 'Z') ? msg[i] + 32 : msg[i]);
    lower[i] = 0;
    if (!strstr(lower, token)) {
      fprintf(stderr, "%s: message \"%s\" does not mention \"%s\"\n", file,
              msg, token);
      return 1;
    }
    count++;
  }
  fclose(f);
  ASSERT(count >= 10);
  return 0;
}

TEST_IMPL(nn_npy_roundtrip) {
  char path[512];
  snprintf(path, sizeof path, "%s/a.npy", test_tmpdir());
  float data[2 * 3 * 4];
  for (int i = 0; i < 24; i++) data[i] = (float)i * 0.5f - 3.0f;
  size_t shape[3] = {2, 3, 4};
  ASSERT_OK(ctp_npy_write(path, data, 3, shape));
  ctp_npy a;
  ASSERT_OK(ctp_npy_read(path, &a));
  ASSERT_EQ_INT(a.ndim, 3);
  ASSERT(a.shape[0] == 2 && a.shape[1] == 3 && a.shape[2] == 4);
  ASSERT(memcmp(a.data, data, sizeof data) == 0);
  ctp_npy_free(&a);
  size_t one[1] = {5};
  ASSERT_OK(ctp_npy_write(path, data, 1, one));
  ASSERT_OK(ctp_npy_read(path, &a));
  ASSERT(a.ndim == 1 && a.shape[0] == 5);
  ctp_npy_free(&a);
  /* Not a .npy, truncated data, Fortran order: refused. */
  static const unsigned char junk[] = "hello world";
  ASSERT(ctp_npy_read_buffer(junk, sizeof junk, &a) == CTP_EFORMAT);
  unsigned char *buf;
  size_t len;
  ASSERT_OK(ctp_file_read(path, &buf, &len));
  ASSERT(ctp_npy_read_buffer(buf, len - 4, &a) == CTP_EFORMAT);
  ASSERT(strstr(ctp_last_error(), "truncated"));
  char *fo = memmem(buf, len, "False", 5);
  ASSERT(fo != NULL);
  memcpy(fo, "True ", 5);
  ASSERT(ctp_npy_read_buffer(buf, len, &a) == CTP_ENOTSUP);
  free(buf);
  return 0;
}

/* The same thread count twice: identical bits. Two thread counts: close. */
TEST_IMPL(nn_deterministic) {
  ctp_model *m;
  ASSERT_OK(ctp_model_new(&m, 1));
  ctp_model_init_he(m, 7);
  size_t n = 2, hw = 64 * 96;
  float *x = malloc(n * hw * sizeof(float));
  uint32_t s = 1;
  for (size_t i = 0; i < n * hw; i++) {
    s = s * 1664525u + 1013904223u;
    x[i] = (float)(s >> 8) / (float)(1 << 24) * 4.0f - 2.0f;
  }
  float out[3][10], grads[3][64 * 96 * 2], dl[10] = {1, 0, 0, 0, 0, 0, 0, 1, 0, 0};
  int threads[3] = {2, 2, 1};
  for (int r = 0; r < 3; r++) {
    ctp_net *net;
    ASSERT_OK(ctp_net_new(&net, m, 2, 64, 96, CTP_NET_GRAD, threads[r]));
    ASSERT_OK(ctp_net_forward(net, x, 2, out[r]));
    ASSERT_OK(ctp_net_backward(net, dl, 2, CTP_BWD_INPUT, NULL));
    ASSERT_OK(ctp_net_get(net, CTP_INPUT, 1, 2, grads[r]));
    ctp_net_free(net);
  }
  ASSERT(memcmp(out[0], out[1], sizeof out[0]) == 0);
  ASSERT(memcmp(grads[0], grads[1], sizeof grads[0]) == 0);
  ASSERT_ALLCLOSE("logits 1 vs 2 threads", out[2], out[0], 10, 1e-5, 1e-6);
  free(x);
  ctp_model_free(m);
  return 0;
}

/* The fused routes against the unfused ones, for every set, bit for bit:
 * the input gradient and every layer's gradient of CTP_BWD_INPUT (one
 * conv3x3_backward_input per layer) against those of
 * CTP_BWD_INPUT | CTP_BWD_PARAMS (mask, weight gradient, convolution,
 * max-pool routing as separate passes), plain and guided; the input
 * gradient with CTP_BWD_NO_LAYERS; nets made with CTPHASE_NN_ROUTE=unfused
 * (the forward as conv, then conv + pool) and =layer (the backward one
 * layer at a time). */
TEST_IMPL(nn_backward_routes) {
  ctp_model *m;
  ASSERT_OK(ctp_model_new(&m, 3));
  ctp_model_init_he(m, 11);
  const int n = 2, h = 64, w = 96;
  size_t nx = (size_t)n * 3 * h * w, big = (size_t)n * h * w * 64 * 2;
  float *x = malloc(nx * sizeof(float)), *dparams = NULL;
  float *want = malloc(big * sizeof(float)), *got = malloc(big * sizeof(float));
  ASSERT(x && want && got);
  ASSERT((dparams = calloc(m->num_params, sizeof(float))) != NULL);
  for (size_t i = 0; i < nx; i++) x[i] = sinf((float)i * 0.013f) * 2.0f;
  const float dl[10] = {0.5f, -1, 0.25f, 1, 0, -0.3f, 0, 1, 0.7f, 0};
  for (int si = 0; si < NUM_SETS; si++) {
    ctp_net *net, *old, *lay;
    unsetenv("CTPHASE_NN_ROUTE");
    ASSERT_OK(ctp_net_new(&net, m, n, h, w, CTP_NET_GRAD, 2));
    setenv("CTPHASE_NN_ROUTE", "unfused", 1);
    ASSERT_OK(ctp_net_new(&old, m, n, h, w, CTP_NET_GRAD, 2));
    setenv("CTPHASE_NN_ROUTE", "layer", 1);
    ASSERT_OK(ctp_net_new(&lay, m, n, h, w, CTP_NET_GRAD, 2));
    unsetenv("CTPHASE_NN_ROUTE");
    if (ctp_net_set_kernels(net, kernel_sets[si])) {
      ctp_net_free(net);
      ctp_net_free(old);
      ctp_net_free(lay);
      continue;
    }
    ASSERT_OK(ctp_net_set_kernels(old, kernel_sets[si]));
    ASSERT_OK(ctp_net_set_kernels(lay, kernel_sets[si]));
    ASSERT_OK(ctp_net_forward(lay, x, n, NULL));
    float lg[10], lg_old[10];
    ASSERT_OK(ctp_net_forward(net, x, n, lg));
    ASSERT_OK(ctp_net_forward(old, x, n, lg_old));
    ASSERT(memcmp(lg, lg_old, sizeof lg) == 0);
    for (int guided = 0; guided < 2; guided++) {
      unsigned g = guided ? CTP_BWD_GUIDED : 0;
      /* want: every gradient of the unfused backward, layer after layer. */
      ASSERT_OK(ctp_net_backward(net, dl, n, CTP_BWD_INPUT | CTP_BWD_PARAMS | g,
                                 dparams));
      size_t off[CTP_NUM_CONV + 2] = {0};
      for (int l = CTP_INPUT; l < CTP_NUM_CONV; l++) {
        int c, hh, ww;
        ctp_net_shape(net, l, &c, &hh, &ww);
        ASSERT_OK(ctp_net_get(net, l, 1, n, want + off[l + 1]));
        off[l + 2] = off[l + 1] + (size_t)n * c * hh * ww;
      }
      ASSERT_OK(ctp_net_backward(net, dl, n, CTP_BWD_INPUT | g, NULL));
      for (int l = CTP_INPUT; l < CTP_NUM_CONV; l++) {
        size_t count = off[l + 2] - off[l + 1];
        ASSERT_OK(ctp_net_get(net, l, 1, n, got));
        if (memcmp(got, want + off[l + 1], count * sizeof(float)) != 0) {
          fprintf(stderr, "[%s] guided=%d: gradient at %s differs between "
                  "the fused and unfused backward\n", kernel_sets[si], guided,
                  l == CTP_INPUT ? "input" : ctp_layer_name(l));
          return 1;
        }
      }
      size_t count = off[1];
      ASSERT_OK(ctp_net_backward(net, dl, n,
                                 CTP_BWD_INPUT | CTP_BWD_NO_LAYERS | g, NULL));
      ASSERT_OK(ctp_net_get(net, CTP_INPUT, 1, n, got));
      ASSERT(memcmp(got, want, count * sizeof(float)) == 0);
      ASSERT_OK(ctp_net_backward(old, dl, n, CTP_BWD_INPUT | g, NULL));
      ASSERT_OK(ctp_net_get(old, CTP_INPUT, 1, n, got));
      ASSERT(memcmp(got, want, count * sizeof(float)) == 0);
      ASSERT_OK(ctp_net_backward(lay, dl, n, CTP_BWD_INPUT | g, NULL));
      for (int l = CTP_INPUT; l < CTP_NUM_CONV; l++) {
        ASSERT_OK(ctp_net_get(lay, l, 1, n, got));
        ASSERT(memcmp(got, want + off[l + 1],
                      (off[l + 2] - off[l + 1]) * sizeof(float)) == 0);
      }
    }
    ctp_net_free(net);
    ctp_net_free(old);
    ctp_net_free(lay);
  }
  free(x);
  free(want);
  free(got);
  free(dparams);
  ctp_model_free(m);
  return 0;
}

typedef struct {
  const ctp_model *m;
  const float *x;
  float logits[4 * 5];
  int err;
} thread_job;

static void *run_forward(void *arg) {
  thread_job *j = arg;
  ctp_net *net;
  j->err = ctp_net_new(&net, j->m, 4, 64, 64, 0, 1);
  for (int rep = 0; !j->err && rep < 5; rep++)
    j->err = ctp_net_forward(net, j->x, 4, j->logits);
  ctp_net_free(net);
  return NULL;
}

/* One model, four threads at once, each with its own workspace. */
TEST_IMPL(nn_thread_safety) {
  ctp_model *m;
  ASSERT_OK(ctp_model_new(&m, 1));
  ctp_model_init_he(m, 9);
  float *x = malloc(4 * 64 * 64 * sizeof(float));
  for (int i = 0; i < 4 * 64 * 64; i++) x[i] = sinf((float)i * 0.37f);
  thread_job jobs[4];
  pthread_t th[4];
  for (int i = 0; i < 4; i++) {
    jobs[i].m = m;
    jobs[i].x = x;
    pthread_create(&th[i], NULL, run_forward, &jobs[i]);
  }
  for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
  for (int i = 0; i < 4; i++) {
    ASSERT_OK(jobs[i].err);
    ASSERT(memcmp(jobs[i].logits, jobs[0].logits, sizeof jobs[0].logits) == 0);
  }
  free(x);
  ctp_model_free(m);
  return 0;
}

/* Bad calls get an error, not a crash. */
TEST_IMPL(nn_bad_arguments) {
  ctp_model *m;
  ctp_net *net;
  ASSERT(ctp_model_new(&m, 2) == CTP_EINVAL);
  ASSERT_OK(ctp_model_new(&m, 1));
  ASSERT(ctp_net_new(&net, m, 1, 100, 64, 0, 1) == CTP_EINVAL);
  ASSERT(ctp_net_new(&net, m, 0, 64, 64, 0, 1) == CTP_EINVAL);
  ASSERT_OK(ctp_net_new(&net, m, 1, 64, 64, 0, 1));
  float x[64 * 64] = {0}, dl[5] = {0}, lg[5];
  ASSERT(ctp_net_forward(net, x, 2, lg) == CTP_EINVAL);
  ASSERT_OK(ctp_net_forward(net, x, 1, lg));
  ASSERT(ctp_net_backward(net, dl, 1, CTP_BWD_INPUT, NULL) == CTP_ESTATE);
  ASSERT(ctp_net_set_kernels(net, "nosuch") == CTP_ENOTSUP);
  ctp_net_free(net);
  ctp_net_free(NULL);
  ctp_model_free(m);
  ctp_model_free(NULL);
  return 0;
}

/* Cross-entropy gradient against central differences. */
TEST_IMPL(nn_cross_entropy_gradient) {
  float z[10] = {0.3f, -1.2f, 2.0f, 0.1f, 0.0f, -0.5f, 0.7f, 0.2f, 1.1f, -2.0f};
  int y[2] = {2, 4};
  float w[5] = {1.0f, 2.0f, 0.5f, 1.5f, 3.0f}, d[10];
  ctp_cross_entropy(z, y, w, 2, d);
  for (int i = 0; i < 10; i++) {
    float zp[10], zm[10];
    memcpy(zp, z, sizeof z);
    memcpy(zm, z, sizeof z);
    zp[i] += 1e-3f;
    zm[i] -= 1e-3f;
    double num = (ctp_cross_entropy(zp, y, w, 2, NULL) -
                  ctp_cross_entropy(zm, y, w, 2, NULL)) / 2e-3;
    ASSERT_NEAR(d[i], num, 2e-3);
  }
  return 0;
}

/* ctp_file_write_atomic: the new contents replace the old whole, the file
 * is readable by others (0644, not mkstemp's 0600), no temporary file is
 * left, and a folder that does not exist is an error naming the path. */
TEST_IMPL(file_write_atomic_whole_or_nothing) {
  char dir[512], path[600], bad[600];
  snprintf(dir, sizeof dir, "%s/atomic", test_tmpdir());
  ASSERT(mkdir(dir, 0755) == 0);
  snprintf(path, sizeof path, "%s/f.bin", dir);
  ASSERT_OK(ctp_file_write_atomic(path, "first version", 13));
  ASSERT_OK(ctp_file_write_atomic(path, "second", 6));
  unsigned char *buf;
  size_t len;
  ASSERT_OK(ctp_file_read(path, &buf, &len));
  ASSERT(len == 6 && !memcmp(buf, "second", 6));
  free(buf);
  struct stat st;
  ASSERT(stat(path, &st) == 0 && (st.st_mode & 0777) == 0644);
  DIR *d = opendir(dir);
  ASSERT(d != NULL);
  int entries = 0;
  for (struct dirent *e; (e = readdir(d));)
    entries += e->d_name[0] != '.';
  closedir(d);
  ASSERT_EQ_INT(entries, 1);
  snprintf(bad, sizeof bad, "%s/missing/f.bin", dir);
  ASSERT(ctp_file_write_atomic(bad, "x", 1) == CTP_EIO);
  ASSERT(strstr(ctp_last_error(), bad) != NULL);
  return 0;
}

/* ctp_mkdir_p: makes every missing folder down to the last, accepts one
 * that is there (trailing slash too), and refuses a path through a file
 * or an empty name with a message naming what could not be made. */
TEST_IMPL(file_mkdir_p_makes_parents) {
  char dir[512], deep[600], file[600], through[700];
  snprintf(dir, sizeof dir, "%s/mkdirp", test_tmpdir());
  snprintf(deep, sizeof deep, "%s/a/b/c", dir);
  ASSERT_OK(ctp_mkdir_p(deep, 0755));
  struct stat st;
  ASSERT(stat(deep, &st) == 0 && S_ISDIR(st.st_mode));
  ASSERT_OK(ctp_mkdir_p(deep, 0755));
  snprintf(deep, sizeof deep, "%s/a/b/", dir);
  ASSERT_OK(ctp_mkdir_p(deep, 0755));
  snprintf(file, sizeof file, "%s/a/plain", dir);
  ASSERT_OK(ctp_file_write_atomic(file, "x", 1));
  ASSERT(ctp_mkdir_p(file, 0755) == CTP_EIO);
  ASSERT(strstr(ctp_last_error(), "not a folder") != NULL);
  snprintf(through, sizeof through, "%s/below", file);
  ASSERT(ctp_mkdir_p(through, 0755) == CTP_EIO);
  ASSERT(strstr(ctp_last_error(), through) != NULL);
  ASSERT(ctp_mkdir_p("", 0755) == CTP_EINVAL);
  ASSERT(ctp_mkdir_p(NULL, 0755) == CTP_EINVAL);
  return 0;
}
