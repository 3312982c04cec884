/*
 * test-explain.c — explanation maps, the masking test, its statistics and
 * the overlay renderer.
 *
 * Maps are checked two independent ways:
 *   - against PyTorch (tests/reference/make_explain_fixtures.py, float64 on
 *     the b2_64_c1 fixture): saliency, guided backprop, CAM, Grad-CAM and
 *     SAM at 2b, 3b, 4b and 6, the probability target, and the bilinear
 *     upsampling. Tolerance as in test-nn.c: |got - want| <= 1e-3 |want| +
 *     2e-4 M, M the largest |want| of the map (float32 sums in another
 *     order; SAM and Grad-CAM are sums of 16-64 products of such values);
 *   - against finite differences of the network itself: the input gradient
 *     by central differences at single pixels and along a random direction,
 *     and a layer's gradient K = dy/dA through the chain rule (moving x
 *     along v moves A by dA, and y by <K, dA>).
 */
#include "ctphase/error.h"
#include "ctphase/explain.h"
#include "ctphase/model.h"
#include "ctphase/nn.h"
#include "ctphase/npy.h"
#include "ctphase/render.h"
#include "explain/font.h"
#include "nn/kernels.h"
#include "test.h"

#define FIX "tests/reference/fixtures/"
#define EFIX FIX "explain_b2_64_c1/"

static double max_abs(const float *a, size_t n) {
  double m = 0.0;
  for (size_t i = 0; i < n; i++) m = fabs(a[i]) > m ? fabs(a[i]) : m;
  return m;
}

/* The b2_64_c1 model, input and labels. */
typedef struct {
  ctp_model *m;
  ctp_npy x, lab;
  int n, h, w;
} fixture;

static void fixture_free(fixture *f) {
  ctp_model_free(f->m);
  ctp_npy_free(&f->x);
  ctp_npy_free(&f->lab);
}

static int fixture_load(fixture *f) {
  memset(f, 0, sizeof *f);
  if (ctp_model_load(&f->m, FIX "b2_64_c1/model.safetensors") ||
      ctp_npy_read(FIX "b2_64_c1/x.npy", &f->x) ||
      ctp_npy_read(FIX "b2_64_c1/labels.npy", &f->lab)) {
    fprintf(stderr, "fixture: %s\n", ctp_last_error());
    return 1;
  }
  f->n = (int)f->x.shape[0];
  f->h = (int)f->x.shape[2];
  f->w = (int)f->x.shape[3];
  return 0;
}

/* Compares a map of slice i with slice i of a fixture file. */
static int check_map(const char *file, int i, const float *got, size_t n,
                     const char *set) {
  char path[256], what[300];
  snprintf(path, sizeof path, EFIX "%s", file);
  snprintf(what, sizeof what, "[%s] %s slice %d", set, file, i);
  ctp_npy want;
  if (ctp_npy_read(path, &want)) {
    fprintf(stderr, "%s: %s\n", what, ctp_last_error());
    return 1;
  }
  int r = 1;
  if (ctp_npy_numel(&want) != n * want.shape[0])
    fprintf(stderr, "%s: %zu elements per slice, fixture has %zu\n", what, n,
            ctp_npy_numel(&want) / want.shape[0]);
  else
    r = test_allclose(what, got, want.data + (size_t)i * n, n, 1e-3,
                      2e-4 * max_abs(want.data + (size_t)i * n, n) + 1e-9);
  ctp_npy_free(&want);
  return r;
}

/* Every fixture map of slice i, for one explainer run. */
static int parity_slice(ctp_explainer *e, const fixture *f, int i,
                        const char *set) {
  static const int layers[] = {CTP_L2B, CTP_L3B, CTP_L4B, CTP_L6};
  size_t per = (size_t)f->h * f->w;
  int fails = 0, cls = (int)f->lab.data[i];
  float *map = malloc(per * sizeof(float)), *up = malloc(per * sizeof(float));
  ASSERT(map && up);
  ASSERT_OK(ctp_explainer_run(e, f->x.data + i * per, cls, CTP_TARGET_LOGIT,
                              CTP_MAP_ALL, NULL));
  ASSERT_OK(ctp_explainer_map(e, CTP_MAP_SALIENCY, -1, map));
  fails += check_map("saliency.npy", i, map, per, set);
  ASSERT_OK(ctp_explainer_map(e, CTP_MAP_GUIDED, -1, map));
  fails += check_map("guided.npy", i, map, per, set);
  ASSERT_OK(ctp_explainer_map(e, CTP_MAP_CAM, CTP_L6, map));
  fails += check_map("cam.npy", i, map, (size_t)(f->h >> 5) * (f->w >> 5), set);
  for (int k = 0; k < 4; k++) {
    int l = layers[k], mh, mw;
    char name[64];
    ctp_explainer_map_shape(e, CTP_MAP_SAM, l, &mh, &mw);
    ASSERT_OK(ctp_explainer_map(e, CTP_MAP_GRADCAM, l, map));
    snprintf(name, sizeof name, "gradcam_%s.npy", ctp_layer_name(l));
    fails += check_map(name, i, map, (size_t)mh * mw, set);
    ASSERT_OK(ctp_explainer_map(e, CTP_MAP_SAM, l, map));
    snprintf(name, sizeof name, "sam_%s.npy", ctp_layer_name(l));
    fails += check_map(name, i, map, (size_t)mh * mw, set);
    if (l == CTP_L2B) {
      ctp_map_upsample_bilinear(map, mh, mw, up, f->h, f->w);
      fails += check_map("sam_2b_up.npy", i, up, per, set);
    }
  }
  /* The probability target. */
  ASSERT_OK(ctp_explainer_run(e, f->x.data + i * per, cls, CTP_TARGET_PROB,
                              CTP_MAP_BIT(CTP_MAP_SALIENCY) |
                                  CTP_MAP_BIT(CTP_MAP_SAM), NULL));
  ASSERT_OK(ctp_explainer_map(e, CTP_MAP_SALIENCY, -1, map));
  fails += check_map("saliency_prob.npy", i, map, per, set);
  ASSERT_OK(ctp_explainer_map(e, CTP_MAP_SAM, CTP_L3B, map));
  fails += check_map("sam_3b_prob.npy", i, map, (size_t)(f->h >> 2) * (f->w >> 2), set);
  free(map);
  free(up);
  return fails;
}

TEST_IMPL(explain_parity_pytorch) {
  static const char *const sets[] = {"ref", "avx2", "avx512"};
  fixture f;
  ASSERT(fixture_load(&f) == 0);
  ctp_explainer *e = NULL;
  ASSERT_OK(ctp_explainer_new(&e, f.m, f.h, f.w, 2));
  int ran = 0;
  for (int s = 0; s < 3; s++) {
    if (!ctp_kernels_by_name(sets[s])) continue;
    ASSERT_OK(ctp_net_set_kernels(ctp_explainer_net(e), sets[s]));
    for (int i = 0; i < f.n; i++) ASSERT_EQ_INT(parity_slice(e, &f, i, sets[s]), 0);
    ran++;
  }
  ASSERT(ran >= 1);
  ctp_explainer_free(e);
  fixture_free(&f);
  return 0;
}

/* y_c (or p_c) of one slice by a plain forward on the explainer's net. */
static double score(ctp_explainer *e, const float *x, int cls, int prob) {
  float z[CTP_NUM_CLASSES], p[CTP_NUM_CLASSES];
  if (ctp_net_forward(ctp_explainer_net(e), x, 1, z)) return NAN;
  ctp_softmax(z, p, 1);
  return prob ? p[cls] : z[cls];
}

/* v = g / |g|: the direction in which the target changes fastest. A
 * random direction is nearly orthogonal to g in 4096 dimensions, so its
 * derivative drowns in float32 noise and in the kinks (ReLU, max-pool
 * switches) that a finite step crosses in this random network; along g the
 * change is large, and a step of 4e-3 agrees with the tangent to ~1e-3. */
static double unit_along(float *v, const float *g, size_t n) {
  double s2 = 0.0;
  for (size_t i = 0; i < n; i++) s2 += (double)g[i] * g[i];
  double norm = sqrt(s2);
  for (size_t i = 0; i < n; i++) v[i] = (float)(g[i] / norm);
  return norm;
}

/* Directional derivative of the target along its own gradient: analytic
 * (|g|) vs central difference, for the logit or the probability. */
static int fd_direction(ctp_explainer *e, const float *x, size_t n, int cls,
                        int prob) {
  float *v = malloc(n * sizeof *v), *g = malloc(n * sizeof *g);
  float *xp = malloc(n * sizeof *xp), *xm = malloc(n * sizeof *xm);
  ASSERT(v && g && xp && xm);
  ASSERT_OK(ctp_explainer_run(e, x, cls, prob ? CTP_TARGET_PROB : CTP_TARGET_LOGIT,
                              CTP_MAP_BIT(CTP_MAP_SALIENCY), NULL));
  ASSERT_OK(ctp_explainer_map(e, CTP_MAP_SALIENCY, -1, g));
  double analytic = unit_along(v, g, n), eps = 4e-3;
  for (size_t i = 0; i < n; i++) {
    xp[i] = x[i] + (float)eps * v[i];
    xm[i] = x[i] - (float)eps * v[i];
  }
  double fd = (score(e, xp, cls, prob) - score(e, xm, cls, prob)) / (2 * eps);
  printf("  along the gradient (%s): |g| %.6g, finite difference %.6g\n",
         prob ? "prob" : "logit", analytic, fd);
  ASSERT(analytic > 1e-4);
  ASSERT_NEAR(fd, analytic, 1e-2 * analytic);
  free(v);
  free(g);
  free(xp);
  free(xm);
  return 0;
}

TEST_IMPL(explain_saliency_finite_differences) {
  fixture f;
  ASSERT(fixture_load(&f) == 0);
  ctp_explainer *e = NULL;
  ASSERT_OK(ctp_explainer_new(&e, f.m, f.h, f.w, 2));
  size_t n = (size_t)f.h * f.w;
  float *x = malloc(n * sizeof *x), *g = malloc(n * sizeof *g);
  ASSERT(x && g);
  memcpy(x, f.x.data, n * sizeof *x);
  int cls = (int)f.lab.data[0];
  ASSERT_OK(ctp_explainer_run(e, x, cls, CTP_TARGET_LOGIT,
                              CTP_MAP_BIT(CTP_MAP_SALIENCY), NULL));
  ASSERT_OK(ctp_explainer_map(e, CTP_MAP_SALIENCY, -1, g));
  /* Single pixels: the four with the largest |g| (elsewhere the change of
   * a single pixel is too small for float32 differences). */
  size_t pix[4] = {0, 0, 0, 0};
  for (int k = 0; k < 4; k++)
    for (size_t i = 0; i < n; i++) {
      int taken = 0;
      for (int j = 0; j < k; j++) taken |= pix[j] == i;
      if (!taken && (pix[k] == 0 || fabsf(g[i]) > fabsf(g[pix[k]]))) pix[k] = i;
    }
  double gmax = fabs(g[pix[0]]), eps = 5e-3;
  float gp[4];
  for (int k = 0; k < 4; k++) gp[k] = g[pix[k]];
  for (int k = 0; k < 4; k++) {
    float old = x[pix[k]];
    x[pix[k]] = old + (float)eps;
    double yp = score(e, x, cls, 0);
    x[pix[k]] = old - (float)eps;
    double ym = score(e, x, cls, 0);
    x[pix[k]] = old;
    double fd = (yp - ym) / (2 * eps);
    printf("  pixel %zu: analytic %.6g, finite difference %.6g\n", pix[k],
           (double)gp[k], fd);
    ASSERT_NEAR(fd, gp[k], 2e-2 * fabs(gp[k]) + 2e-3 * gmax);
  }
  ASSERT(fd_direction(e, x, n, cls, 0) == 0);
  ASSERT(fd_direction(e, x, n, cls, 1) == 0);
  free(x);
  free(g);
  ctp_explainer_free(e);
  fixture_free(&f);
  return 0;
}

/* <K_l, dA_l> along a direction v must equal the change of y: the layer
 * gradient that Grad-CAM and SAM read is the true dy/dA. */
static int layer_chain(ctp_explainer *e, const float *x, size_t n, int cls,
                       int layer) {
  ctp_net *net = ctp_explainer_net(e);
  int k, h, w;
  ctp_net_shape(net, layer, &k, &h, &w);
  size_t m = (size_t)k * h * w;
  float *K = malloc(m * sizeof *K), *ap = malloc(m * sizeof *ap);
  float *v = malloc(n * sizeof *v), *xs = malloc(n * sizeof *xs);
  ASSERT(K && ap && v && xs);
  ASSERT_OK(ctp_explainer_run(
      e, x, cls, CTP_TARGET_LOGIT,
      CTP_MAP_BIT(CTP_MAP_SALIENCY) | CTP_MAP_BIT(CTP_MAP_SAM), NULL));
  memcpy(K, ctp_net_dact(net, layer), m * sizeof *K);
  ASSERT_OK(ctp_explainer_map(e, CTP_MAP_SALIENCY, -1, xs));
  unit_along(v, xs, n);
  double eps = 4e-3, dy, dot = 0.0;
  for (size_t i = 0; i < n; i++) xs[i] = x[i] + (float)eps * v[i];
  dy = score(e, xs, cls, 0);
  memcpy(ap, ctp_net_act(net, layer), m * sizeof *ap);
  for (size_t i = 0; i < n; i++) xs[i] = x[i] - (float)eps * v[i];
  dy = (dy - score(e, xs, cls, 0)) / (2 * eps);
  const float *am = ctp_net_act(net, layer);
  for (size_t i = 0; i < m; i++) dot += (double)K[i] * (ap[i] - am[i]) / (2 * eps);
  printf("  layer %s: <K, dA> %.6g, dy %.6g\n", ctp_layer_name(layer), dot, dy);
  ASSERT(fabs(dy) > 1e-4);
  ASSERT_NEAR(dot, dy, 1e-2 * fabs(dy) + 2e-5);
  free(K);
  free(ap);
  free(v);
  free(xs);
  return 0;
}

TEST_IMPL(explain_layer_gradient_chain_rule) {
  fixture f;
  ASSERT(fixture_load(&f) == 0);
  ctp_explainer *e = NULL;
  ASSERT_OK(ctp_explainer_new(&e, f.m, f.h, f.w, 2));
  size_t n = (size_t)f.h * f.w;
  const int layers[] = {CTP_L1B, CTP_L3B, CTP_L5A, CTP_L6};
  for (int i = 0; i < 4; i++)
    ASSERT(layer_chain(e, f.x.data + n, n, (int)f.lab.data[1], layers[i]) == 0);
  ctp_explainer_free(e);
  fixture_free(&f);
  return 0;
}

/* At layer 6 Grad-CAM is ReLU(CAM) / (H6 W6): the gap spreads each fc
 * weight evenly over the positions. */
TEST_IMPL(explain_gradcam_at_6_is_scaled_cam) {
  fixture f;
  ASSERT(fixture_load(&f) == 0);
  ctp_explainer *e = NULL;
  ASSERT_OK(ctp_explainer_new(&e, f.m, f.h, f.w, 1));
  float cam[4], gc[4];
  ASSERT_OK(ctp_explainer_run(e, f.x.data, -1, CTP_TARGET_LOGIT, CTP_MAP_ALL, NULL));
  ASSERT_OK(ctp_explainer_map(e, CTP_MAP_CAM, CTP_L6, cam));
  ASSERT_OK(ctp_explainer_map(e, CTP_MAP_GRADCAM, CTP_L6, gc));
  for (int i = 0; i < 4; i++)
    ASSERT_NEAR(gc[i], cam[i] > 0 ? cam[i] / 4 : 0, 1e-5 * fabs(cam[i]) + 1e-7);
  ctp_explainer_free(e);
  fixture_free(&f);
  return 0;
}

TEST_IMPL(explain_blur_taps) {
  double t[CTP_SAM_TAPS], s = 0.0;
  ctp_blur_taps(t);
  for (int i = 0; i < CTP_SAM_TAPS; i++) s += t[i];
  ASSERT_NEAR(s, 1.0, 1e-12);
  ASSERT_NEAR(t[0], t[4], 1e-15);
  ASSERT_NEAR(t[1], t[3], 1e-15);
  /* exp(-i^2 / (2 * 0.75^2)) normalised: 0.0152, 0.2188, 0.5321. */
  ASSERT_NEAR(t[2], 0.532097, 1e-6);
  ASSERT_NEAR(t[1], 0.218752, 1e-6);
  ASSERT_NEAR(t[0], 0.015200, 1e-6);
  return 0;
}

/* A delta in the middle spreads into the outer product of the taps. */
TEST_IMPL(explain_blur_delta) {
  enum { H = 9, W = 11, K = 2 };
  float in[H * W * K] = {0}, out[H * W * K], tmp[H * W * K];
  double t[CTP_SAM_TAPS];
  ctp_blur_taps(t);
  in[(4 * W + 5) * K + 1] = 1.0f;
  ctp_blur_gauss5(out, in, tmp, H, W, K);
  double sum = 0.0;
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) {
      int dy = y - 4, dx = x - 5;
      double want = (abs(dy) <= 2 && abs(dx) <= 2) ? t[dy + 2] * t[dx + 2] : 0.0;
      ASSERT_NEAR(out[(y * W + x) * K + 1], want, 1e-7);
      ASSERT_NEAR(out[(y * W + x) * K + 0], 0.0, 0.0);
      sum += out[(y * W + x) * K + 1];
    }
  ASSERT_NEAR(sum, 1.0, 1e-6);
  /* At a corner the replicated edge folds the outside weight back in. */
  memset(in, 0, sizeof in);
  in[0] = 1.0f;
  ctp_blur_gauss5(out, in, tmp, H, W, K);
  ASSERT_NEAR(out[0], (t[0] + t[1] + t[2]) * (t[0] + t[1] + t[2]), 1e-6);
  return 0;
}

/* Edges replicated: a constant image stays constant, to the last pixel. */
TEST_IMPL(explain_blur_constant) {
  enum { H = 6, W = 5, K = 3 };
  float in[H * W * K], out[H * W * K], tmp[H * W * K];
  for (int i = 0; i < H * W * K; i++) in[i] = (float)(i % K) * 2.5f - 1.0f;
  ctp_blur_gauss5(out, in, tmp, H, W, K);
  for (int i = 0; i < H * W * K; i++) ASSERT_NEAR(out[i], in[i], 1e-6);
  return 0;
}

/* SAM by hand on a 1x2x2 layer: inverts where the gradient is negative. */
TEST_IMPL(explain_sam_definition) {
  enum { H = 1, W = 2, K = 2 };
  /* A constant gradient per channel stays itself after the blur. */
  float act[H * W * K] = {1.0f, 4.0f, 3.0f, 0.0f};
  float dact[H * W * K] = {0.5f, -2.0f, 0.5f, -2.0f};
  float g[2 * H * W * K], out[H * W];
  ctp_map_sam(out, act, dact, g, H, W, K);
  /* channel 0: max 3, G 0.5 >= 0 -> A; channel 1: max 4, G -2 -> 4 - A. */
  ASSERT_NEAR(out[0], 0.5 * 1.0 + 2.0 * (4.0 - 4.0), 1e-6);
  ASSERT_NEAR(out[1], 0.5 * 3.0 + 2.0 * (4.0 - 0.0), 1e-6);
  float gc[H * W];
  ctp_map_gradcam(gc, act, dact, H, W, K);
  ASSERT_NEAR(gc[0], 0.0, 1e-6);      /* 0.5 - 8 < 0 -> ReLU */
  ASSERT_NEAR(gc[1], 1.5, 1e-6);      /* 0.5 * 3 - 2 * 0 */
  return 0;
}

TEST_IMPL(explain_upsample) {
  float src[4 * 4], dst[16 * 16];
  for (int i = 0; i < 16; i++) src[i] = 3.25f;
  ctp_map_upsample_bilinear(src, 4, 4, dst, 16, 16);
  for (int i = 0; i < 256; i++) ASSERT_NEAR(dst[i], 3.25, 1e-6);
  /* A ramp along x stays a ramp inside, clamped at the borders. */
  for (int y = 0; y < 4; y++)
    for (int x = 0; x < 4; x++) src[y * 4 + x] = (float)x;
  ctp_map_upsample_bilinear(src, 4, 4, dst, 16, 16);
  ASSERT_NEAR(dst[0], 0.0, 1e-6);
  ASSERT_NEAR(dst[15], 3.0, 1e-6);
  ASSERT_NEAR(dst[5 * 16 + 6], (6 + 0.5) / 4 - 0.5, 1e-6);
  return 0;
}

TEST_IMPL(explain_bad_arguments) {
  ASSERT_EQ_INT(ctp_map_method_parse("sam"), CTP_MAP_SAM);
  ASSERT_EQ_INT(ctp_map_method_parse("grad-cam"), CTP_MAP_GRADCAM);
  ASSERT_EQ_INT(ctp_map_method_parse("lime"), CTP_EINVAL);
  ASSERT(strstr(ctp_last_error(), "lime"));
  ASSERT_EQ_INT(ctp_map_check_layer(CTP_MAP_CAM, CTP_L2B), CTP_EINVAL);
  ASSERT(strstr(ctp_last_error(), "layer 6"));
  ASSERT_EQ_INT(ctp_map_check_layer(CTP_MAP_CAM, CTP_L6), 0);
  ASSERT_EQ_INT(ctp_map_check_layer(CTP_MAP_SAM, 11), CTP_EINVAL);
  ASSERT_EQ_INT(ctp_map_check_layer(CTP_MAP_SALIENCY, -1), 0);
  fixture f;
  ASSERT(fixture_load(&f) == 0);
  ctp_explainer *e = NULL;
  ASSERT_OK(ctp_explainer_new(&e, f.m, f.h, f.w, 1));
  float map[64 * 64];
  ASSERT_EQ_INT(ctp_explainer_map(e, CTP_MAP_SAM, CTP_L2B, map), CTP_ESTATE);
  ASSERT_EQ_INT(ctp_explainer_run(e, f.x.data, 5, 0, CTP_MAP_ALL, NULL), CTP_EINVAL);
  ASSERT_OK(ctp_explainer_run(e, f.x.data, -1, 0, CTP_MAP_BIT(CTP_MAP_SAM), NULL));
  ASSERT_EQ_INT(ctp_explainer_map(e, CTP_MAP_GUIDED, -1, map), CTP_ESTATE);
  ASSERT_OK(ctp_explainer_map(e, CTP_MAP_SAM, CTP_L2B, map));
  float *m = NULL;
  int h, w;
  ASSERT_EQ_INT(ctp_explain_compute(e, f.x.data, 2, 2, -1, 0, CTP_MAP_SAM, CTP_L2B,
                                    &m, &h, &w, NULL), CTP_EINVAL);
  ASSERT_OK(ctp_explain_compute(e, f.x.data, 2, 1, -1, 0, CTP_MAP_SAM, CTP_L3B,
                                &m, &h, &w, NULL));
  ASSERT(m && h == 16 && w == 16);
  free(m);
  ctp_explainer_free(e);
  ctp_explainer_free(NULL);
  fixture_free(&f);
  return 0;
}

/* --- masking ----------------------------------------------------------- */

TEST_IMPL(explain_mask_selects_top_and_bottom) {
  enum { HW = 200, C = 2 };
  float map[HW], x[C * HW], y[C * HW];
  uint32_t order[HW];
  for (int i = 0; i < HW; i++) map[i] = (i % 2 ? -1.0f : 1.0f) * (float)i;
  ASSERT_OK(ctp_mask_order(map, HW, 5, order));
  for (int i = 0; i < HW; i++) ASSERT_EQ_INT(order[i], i);
  for (int pass = 0; pass < 2; pass++) {
    for (int i = 0; i < C * HW; i++) x[i] = 1000.0f;
    ctp_mask_fill(x, C, HW, order, 20, pass == 0, 42);
    int changed = 0;
    for (int ch = 0; ch < C; ch++)
      for (int i = 0; i < HW; i++) {
        int want = pass == 0 ? i >= HW - 20 : i < 20;
        ASSERT_EQ_INT(x[ch * HW + i] != 1000.0f, want);
        changed += want;
        if (want) ASSERT(fabsf(x[ch * HW + i]) < 7.0f);
      }
    ASSERT_EQ_INT(changed, C * 20);
  }
  /* Same seed, same values; another seed, others. */
  for (int i = 0; i < C * HW; i++) x[i] = y[i] = 0.0f;
  ctp_mask_fill(x, C, HW, order, 20, 1, 42);
  ctp_mask_fill(y, C, HW, order, 20, 1, 42);
  ASSERT(memcmp(x, y, sizeof x) == 0);
  ctp_mask_fill(y, C, HW, order, 20, 1, 43);
  ASSERT(memcmp(x, y, sizeof x) != 0);
  return 0;
}

TEST_IMPL(explain_mask_values_are_standard_normal) {
  enum { HW = 100000 };
  float *x = malloc(HW * sizeof *x), *map = malloc(HW * sizeof *map);
  uint32_t *order = malloc(HW * sizeof *order);
  ASSERT(x && map && order);
  for (int i = 0; i < HW; i++) map[i] = 0.0f; /* all ties */
  ASSERT_OK(ctp_mask_order(map, HW, 9, order));
  /* Ties are broken by a hash, not by position. */
  int low = 0;
  for (int i = 0; i < HW / 10; i++) low += order[i] < HW / 2;
  ASSERT(low > HW / 20 * 0.9 && low < HW / 20 * 1.1);
  ctp_mask_fill(x, 1, HW, order, HW, 1, 3);
  double s = 0, s2 = 0;
  for (int i = 0; i < HW; i++) s += x[i], s2 += (double)x[i] * x[i];
  double mean = s / HW, sd = sqrt(s2 / HW - mean * mean);
  printf("  mean %.4f sd %.4f\n", mean, sd);
  ASSERT_NEAR(mean, 0.0, 0.02);
  ASSERT_NEAR(sd, 1.0, 0.02);
  free(x);
  free(map);
  free(order);
  return 0;
}

static int run_masktest(const fixture *f, ctp_explainer *e, ctp_masktest *t) {
  const ctp_mapspec specs[] = {
      {CTP_MAP_SALIENCY, -1},     {CTP_MAP_GUIDED, -1},   {CTP_MAP_CAM, CTP_L6},
      {CTP_MAP_GRADCAM, CTP_L2B}, {CTP_MAP_SAM, CTP_L2B}, {CTP_MAP_GRADCAM, CTP_L6},
      {CTP_MAP_SAM, CTP_L6}};
  ASSERT_OK(ctp_masktest_init(t, specs, 7, CTP_MASK_FRACTION, 1));
  size_t per = (size_t)f->h * f->w;
  for (int i = 0; i < f->n; i++) {
    ctp_explain_info info;
    ASSERT_OK(ctp_explainer_run(e, f->x.data + i * per, -1, 0, 0, &info));
    ASSERT_OK(ctp_masktest_add(t, e, f->x.data + i * per, info.argmax));
    ASSERT_EQ_INT(ctp_masktest_add(t, e, f->x.data + i * per,
                                   (info.argmax + 1) % CTP_NUM_CLASSES), CTP_ESKIP);
  }
  return 0;
}

TEST_IMPL(explain_masktest_runs_and_repeats) {
  fixture f;
  ASSERT(fixture_load(&f) == 0);
  ctp_explainer *e = NULL;
  ASSERT_OK(ctp_explainer_new(&e, f.m, f.h, f.w, 2));
  ctp_masktest a, b;
  ASSERT(run_masktest(&f, e, &a) == 0);
  ASSERT(run_masktest(&f, e, &b) == 0);
  ASSERT_EQ_INT(a.nslices, f.n);
  size_t cells = (size_t)a.nslices * a.nspecs;
  ASSERT(memcmp(a.top, b.top, cells * sizeof(float)) == 0);
  ASSERT(memcmp(a.bottom, b.bottom, cells * sizeof(float)) == 0);
  for (size_t i = 0; i < cells; i++) {
    ASSERT(isfinite(a.top[i]) && a.top[i] >= 0.0f);
    ASSERT(isfinite(a.bottom[i]) && a.bottom[i] >= 0.0f);
  }
  ctp_mask_cell cell;
  ctp_masktest_cell(&a, -1, 0, &cell);
  ASSERT_EQ_INT(cell.n, f.n);
  ASSERT_NEAR(cell.top_mean, (a.top[0] + a.top[a.nspecs]) / 2, 1e-4);
  ctp_mask_cmp *cmp;
  int ncmp;
  ASSERT_OK(ctp_masktest_compare(&a, &cmp, &ncmp));
  /* SAM vs Grad-CAM at 2b and 6, saliency vs 6 others; all slices, plus a
   * class group when both slices share their class. */
  int groups = 1 + (a.cls[0] == a.cls[1]);
  ASSERT_EQ_INT(ncmp, 8 * groups);
  ASSERT_EQ_INT(cmp[0].a, 4);
  ASSERT_EQ_INT(cmp[0].b, 3);
  for (int i = 0; i < ncmp; i++)
    ASSERT(isnan(cmp[i].t.p) || (cmp[i].p_adj >= cmp[i].t.p && cmp[i].p_adj <= 1.0));
  char name[32];
  ASSERT(strcmp(ctp_mapspec_name(&a.specs[4], name, sizeof name), "sam@2b") == 0);
  free(cmp);
  ctp_masktest_free(&a);
  ctp_masktest_free(&b);
  ctp_explainer_free(e);
  fixture_free(&f);
  return 0;
}

/* --- statistics -------------------------------------------------------- */

TEST_IMPL(explain_incomplete_beta_and_t) {
  ASSERT_NEAR(ctp_incbeta(1, 1, 0.37), 0.37, 1e-12);
  ASSERT_NEAR(ctp_incbeta(2, 3, 0.3), 0.3483, 1e-12);       /* binomial sum */
  ASSERT_NEAR(ctp_incbeta(0.5, 0.5, 0.9), 2 / M_PI * asin(sqrt(0.9)), 1e-12);
  ASSERT_NEAR(ctp_incbeta(3, 1, 0.8), 0.512, 1e-12);
  ASSERT_NEAR(ctp_incbeta(2, 5, 0.0), 0.0, 0.0);
  ASSERT_NEAR(ctp_incbeta(2, 5, 1.0), 1.0, 0.0);
  /* Cauchy (df 1), df 2 closed form, and numerically integrated values. */
  ASSERT_NEAR(ctp_t_cdf(0.5, 1), 0.5 + atan(0.5) / M_PI, 1e-12);
  ASSERT_NEAR(ctp_t_cdf(2.0, 2), 0.5 + 2.0 / (2 * sqrt(6.0)), 1e-12);
  ASSERT_NEAR(ctp_t_cdf(2.0, 10), 0.9633059826146269, 1e-10);
  ASSERT_NEAR(ctp_t_cdf(-1.3, 3.5), 0.13629770790218515, 1e-10);
  ASSERT_NEAR(ctp_t_cdf(0.0, 7), 0.5, 1e-15);
  return 0;
}

TEST_IMPL(explain_t_tests) {
  const double a[] = {95.1, 80.2, 99.0, 70.5, 88.8};
  const double b[] = {97.0, 85.0, 98.5, 80.1, 91.2};
  ctp_ttest t;
  ctp_ttest_paired(a, b, 5, &t);
  ASSERT_NEAR(t.mean, -3.64, 1e-12);
  ASSERT_NEAR(t.sd, 3.8266173051403993, 1e-12);
  ASSERT_NEAR(t.t, -2.1270189279616516, 1e-12);
  ASSERT_NEAR(t.p, 0.1005445317731648, 1e-9);
  ctp_ttest_one(a, 5, 100.0, &t);
  ASSERT_NEAR(t.mean, 86.72, 1e-12);
  ASSERT_NEAR(t.t, -2.57743118144048, 1e-12);
  ASSERT_NEAR(t.p, 0.06149399850226933, 1e-9);
  ctp_ttest_one(a, 1, 100.0, &t);
  ASSERT(isnan(t.p));
  return 0;
}

/* --- rendering --------------------------------------------------------- */

TEST_IMPL(explain_render_colormap) {
  unsigned char c[3];
  ctp_colormap_rainbow(1.0f, c);
  ASSERT(c[0] == 255 && c[1] == 0 && c[2] == 0);        /* red high */
  ctp_colormap_rainbow(0.0f, c);
  ASSERT(c[0] == 128 && c[1] == 0 && c[2] == 255);      /* purple low */
  ctp_colormap_rainbow(0.5f, c);
  ASSERT(c[1] == 255 && c[0] == 0 && c[2] < 80);         /* green (135 deg) */
  return 0;
}

TEST_IMPL(explain_render_display_rules) {
  enum { N = 200 };
  float map[N], out[N];
  /* Direct: scaled to the range; the bottom 2.5% of it is not drawn. */
  for (int i = 0; i < N; i++) map[i] = 10.0f + (float)i;
  ASSERT_OK(ctp_render_normalise(map, N, CTP_DISPLAY_DIRECT, out));
  ASSERT_NEAR(out[N - 1], 1.0, 1e-6);
  ASSERT_EQ_INT(out[0], -1);
  ASSERT_EQ_INT(out[4], -1);                            /* 4/199 < 0.025 */
  ASSERT_NEAR(out[5], 5.0 / 199, 1e-6);
  /* Rank of |value|: the sign does not matter, the size does. */
  for (int i = 0; i < N; i++) map[i] = (i % 2 ? -1.0f : 1.0f) * (float)(i * i);
  ASSERT_OK(ctp_render_normalise(map, N, CTP_DISPLAY_RANK_ABS, out));
  ASSERT_NEAR(out[N - 1], 1.0, 1e-6);
  ASSERT_NEAR(out[100], 100.0 / 199, 1e-6);
  ASSERT_EQ_INT(out[4], -1);
  /* Rank of the value: the most negative (-199^2) is lowest and cut, the
   * largest positive (198^2) is 1. */
  ASSERT_OK(ctp_render_normalise(map, N, CTP_DISPLAY_RANK, out));
  ASSERT_EQ_INT(out[N - 1], -1);
  ASSERT_NEAR(out[N - 2], 1.0, 1e-6);
  /* A constant map shows nothing. */
  for (int i = 0; i < N; i++) map[i] = 2.0f;
  ASSERT_OK(ctp_render_normalise(map, N, CTP_DISPLAY_DIRECT, out));
  for (int i = 0; i < N; i++) ASSERT_EQ_INT(out[i], -1);
  ASSERT_OK(ctp_render_normalise(map, N, CTP_DISPLAY_RANK_ABS, out));
  for (int i = 0; i < N; i++) ASSERT_EQ_INT(out[i], -1);
  return 0;
}

TEST_IMPL(explain_font_and_text) {
  /* Every printable glyph has ink, the space none, and no two are equal. */
  for (int ch = 32; ch < 127; ch++) {
    int ink = 0;
    for (int y = 0; y < CTP_FONT_H; y++)
      for (int x = 0; x < CTP_FONT_W; x++) ink += ctp_font_pixel(ch, x, y);
    ASSERT(ch == ' ' ? ink == 0 : ink > 0);
    for (int other = 32; other < ch; other++) {
      int same = 1;
      for (int y = 0; y < CTP_FONT_H && same; y++)
        for (int x = 0; x < CTP_FONT_W && same; x++)
          same = ctp_font_pixel(ch, x, y) == ctp_font_pixel(other, x, y);
      if (same) fprintf(stderr, "glyphs '%c' and '%c' are equal\n", ch, other);
      ASSERT(!same);
    }
  }
  int tw, th;
  ctp_text_size("SAM 2b\ncm", 2, &tw, &th);
  ASSERT_EQ_INT(tw, (6 * 6 - 1) * 2);
  ASSERT_EQ_INT(th, (2 * 10 - 1) * 2);
  /* Drawn text lands inside its box and nowhere else. */
  enum { W = 60, H = 30 };
  unsigned char img[W * H * 3];
  const unsigned char fg[3] = {255, 255, 255};
  memset(img, 0, sizeof img);
  ctp_render_text(img, W, H, 3, 4, 1, "Hi!", fg);
  ctp_text_size("Hi!", 1, &tw, &th);
  int inside = 0;
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++)
      if (img[3 * (y * W + x)]) {
        ASSERT(x >= 3 && x < 3 + tw && y >= 4 && y < 4 + th);
        inside++;
      }
  ASSERT(inside > 20);
  /* Clipping: text off the edge must not write outside the buffer. */
  ctp_render_label(img, W, H, W - 5, H - 3, 2, "clipped\ntext");
  return 0;
}

TEST_IMPL(explain_overlay_png_roundtrip) {
  enum { W = 200, H = 160 };
  float *hu = malloc(W * H * sizeof *hu), *map = malloc(W * H * sizeof *map);
  unsigned char *rgb = malloc(W * H * 3), *back = NULL;
  ASSERT(hu && map && rgb);
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) {
      hu[y * W + x] = (float)(x * 10 - 200);
      map[y * W + x] = (float)y;
    }
  ASSERT_OK(ctp_render_overlay(rgb, hu, map, W, H, CTP_MAP_SAM, "SAM 2b\ncm 0.87"));
  /* Row 1 is in the bottom 2.5% of the map: plain CT, gray. */
  const unsigned char *low = rgb + 3 * (1 * W + 120);
  ASSERT(low[0] == low[1] && low[1] == low[2]);
  /* Row 150 is near the top of the map: red over the CT. */
  const unsigned char *high = rgb + 3 * (150 * W + 50);
  ASSERT(high[0] > high[2] + 60);
  /* The label box is dark, its text white. */
  const unsigned char *box = rgb + 3 * (3 * W + 3);
  ASSERT(box[0] < 60 && box[1] < 60 && box[2] < 60);
  char path[512];
  snprintf(path, sizeof path, "%s/o.png", test_tmpdir());
  ASSERT_OK(ctp_png_write_rgb(path, rgb, W, H));
  int w, h;
  ASSERT_OK(ctp_png_read_rgb(path, &back, &w, &h));
  ASSERT(w == W && h == H);
  ASSERT(memcmp(rgb, back, W * H * 3) == 0);
  free(back);
  ASSERT_EQ_INT(ctp_png_read_rgb("tests/test.h", &back, &w, &h), CTP_EFORMAT);
  free(rgb);
  free(hu);
  free(map);
  return 0;
}
