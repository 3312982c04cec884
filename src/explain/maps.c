/*
 * maps.c — the explainer: one forward and at most two backward passes per
 * slice, and every explanation map read from what they leave behind.
 *
 * An explainer owns a ctp_net made with CTP_NET_GRAD for one slice, so that
 * after a run the net holds every layer's activation A (ctp_net_act) and
 * its gradient K = dy/dA (ctp_net_dact), channels-last (H,W,K). From those:
 *
 *   CAM        A6 weighted by the class's fc row;
 *   Grad-CAM   A weighted by the channel means of K, then ReLU;
 *   SAM        see sam.c.
 *
 * Saliency and guided backprop are input gradients. The guided backward
 * overwrites every dact with guided gradients, so ctp_explainer_run() does
 * it first and keeps its input gradient, then the plain backward, whose
 * dact the layer maps read. Both input maps are kept in the explainer's own
 * buffers (summed over input channels).
 *
 * Shapes (one slice; H, W the input size; Hl, Wl a layer's; Kl its channels):
 *   sal, guided   (H,W)           scratch   2 * H*W*16 floats, the largest
 *   act, dact     (Hl,Wl,Kl)                layer tensor (1a, 1b) twice
 *
 * Memory at 512 x 512: the net's gradient workspace (about 150 MB) and the
 * scratch (32 MB).
 */
#include <stdlib.h>
#include <string.h>

#include "ctphase/error.h"
#include "ctphase/explain.h"
#include "ctphase/predict.h"

struct ctp_explainer {
  const ctp_model *m;
  ctp_net *net;         /* one slice, CTP_NET_GRAD */
  int h, w, cin;
  unsigned methods;     /* of the last run; 0 before any */
  ctp_explain_info info;
  float *sal;           /* (H,W) saliency, summed over channels */
  float *guided;        /* (H,W) guided backprop */
  float *scratch;       /* (2,H,W,16) for SAM's blur */
  float *dx;            /* (C,H,W) input gradient copy */
};

static const char *const method_names[CTP_NUM_METHODS] = {
    "saliency", "guided", "cam", "gradcam", "sam"};
static const char *const method_titles[CTP_NUM_METHODS] = {
    "saliency", "guided backprop", "CAM", "Grad-CAM", "SAM"};

const char *ctp_map_method_name(int method) {
  return method >= 0 && method < CTP_NUM_METHODS ? method_names[method] : NULL;
}

const char *ctp_map_method_title(int method) {
  return method >= 0 && method < CTP_NUM_METHODS ? method_titles[method] : NULL;
}

int ctp_map_method_parse(const char *name) {
  static const struct {
    const char *name;
    int method;
  } aliases[] = {{"grad-cam", CTP_MAP_GRADCAM}, {"guided-backprop", CTP_MAP_GUIDED}};
  for (int i = 0; name && i < CTP_NUM_METHODS; i++)
    if (!strcmp(name, method_names[i])) return i;
  for (size_t i = 0; name && i < sizeof aliases / sizeof aliases[0]; i++)
    if (!strcmp(name, aliases[i].name)) return aliases[i].method;
  return ctp_seterr(CTP_EINVAL,
                    "unknown method '%s' (saliency, guided, cam, gradcam, sam)",
                    name ? name : "(null)");
}

int ctp_map_check_layer(int method, int layer) {
  if (method < 0 || method >= CTP_NUM_METHODS)
    return ctp_seterr(CTP_EINVAL, "unknown method %d", method);
  if (method == CTP_MAP_SALIENCY || method == CTP_MAP_GUIDED) return 0;
  if (layer < 0 || layer >= CTP_NUM_CONV)
    return ctp_seterr(CTP_EINVAL, "%s needs a conv layer (1a ... 6)",
                      method_names[method]);
  if (method == CTP_MAP_CAM && layer != CTP_L6)
    return ctp_seterr(CTP_EINVAL,
                      "cam is defined at layer 6 only (asked for %s); use "
                      "gradcam or sam at other layers", ctp_layer_name(layer));
  return 0;
}

/* --- map kernels ------------------------------------------------------ */

void ctp_map_cam(float *out, const float *act, const float *w, int H, int W,
                 int K) {
  size_t hw = (size_t)H * W;
  for (size_t p = 0; p < hw; p++) {
    const float *a = act + p * K;
    float s = 0.0f;
    for (int k = 0; k < K; k++) s += w[k] * a[k];
    out[p] = s;
  }
}

void ctp_map_gradcam(float *out, const float *act, const float *dact, int H,
                     int W, int K) {
  size_t hw = (size_t)H * W;
  double mean[64] = {0};  /* K <= 64 in this network */
  for (size_t p = 0; p < hw; p++)
    for (int k = 0; k < K; k++) mean[k] += dact[p * K + k];
  float wk[64] = {0};
  for (int k = 0; k < K; k++) wk[k] = (float)(mean[k] / (double)hw);
  ctp_map_cam(out, act, wk, H, W, K);
  for (size_t p = 0; p < hw; p++) out[p] = out[p] > 0.0f ? out[p] : 0.0f;
}

void ctp_map_upsample_bilinear(const float *src, int sh, int sw, float *dst,
                               int dh, int dw) {
  ctp_resample_bilinear(src, sh, sw, dst, dh, dw);
}

/* --- the explainer ---------------------------------------------------- */

void ctp_explainer_free(ctp_explainer *e) {
  if (!e) return;
  ctp_net_free(e->net);
  free(e->sal);
  free(e->guided);
  free(e->scratch);
  free(e->dx);
  free(e);
}

int ctp_explainer_new(ctp_explainer **out, const ctp_model *m, int h, int w,
                      int threads) {
  if (!out || !m) return ctp_seterr(CTP_EINVAL, "ctp_explainer_new: NULL");
  *out = NULL;
  ctp_explainer *e = calloc(1, sizeof *e);
  if (!e) return ctp_seterr(CTP_ENOMEM, "out of memory");
  e->m = m;
  e->h = h;
  e->w = w;
  e->cin = m->in_channels;
  int r = ctp_net_new(&e->net, m, 1, h, w, CTP_NET_GRAD, threads);
  if (r) goto fail;
  size_t hw = (size_t)h * w;
  e->sal = malloc(hw * sizeof(float));
  e->guided = malloc(hw * sizeof(float));
  e->scratch = malloc(2 * hw * ctp_layer_channels(CTP_L1A) * sizeof(float));
  e->dx = malloc(hw * e->cin * sizeof(float));
  if (!e->sal || !e->guided || !e->scratch || !e->dx) {
    r = ctp_seterr(CTP_ENOMEM, "out of memory for a %dx%d explainer", h, w);
    goto fail;
  }
  *out = e;
  return 0;
fail:
  ctp_explainer_free(e);
  return r;
}

ctp_net *ctp_explainer_net(ctp_explainer *e) { return e->net; }
const ctp_model *ctp_explainer_model(const ctp_explainer *e) { return e->m; }

/* The gradient of the target with respect to the logits. */
static void target_gradient(const ctp_explain_info *in, float *dz) {
  for (int j = 0; j < CTP_NUM_CLASSES; j++) {
    float delta = j == in->cls ? 1.0f : 0.0f;
    dz[j] = in->target == CTP_TARGET_PROB
                ? in->probs[in->cls] * (delta - in->probs[j])
                : delta;
  }
}

/* Backward from dz; the input gradient, summed over channels, into map. */
static int input_gradient(ctp_explainer *e, const float *dz, unsigned flags,
                          float *map) {
  int r = ctp_net_backward(e->net, dz, 1, CTP_BWD_INPUT | flags, NULL);
  if (r) return r;
  if ((r = ctp_net_get(e->net, CTP_INPUT, 1, 1, e->dx))) return r;
  size_t hw = (size_t)e->h * e->w;
  memcpy(map, e->dx, hw * sizeof(float));
  for (int c = 1; c < e->cin; c++)
    for (size_t p = 0; p < hw; p++) map[p] += e->dx[c * hw + p];
  return 0;
}

int ctp_explainer_run(ctp_explainer *e, const float *x, int cls, int target,
                      unsigned methods, ctp_explain_info *info) {
  if (!e || !x) return ctp_seterr(CTP_EINVAL, "ctp_explainer_run: NULL");
  if (cls < -1 || cls >= CTP_NUM_CLASSES)
    return ctp_seterr(CTP_EINVAL, "class %d outside 0..4", cls);
  if (target != CTP_TARGET_LOGIT && target != CTP_TARGET_PROB)
    return ctp_seterr(CTP_EINVAL, "unknown target %d", target);
  e->methods = 0;
  ctp_explain_info *in = &e->info;
  int r = ctp_net_forward(e->net, x, 1, in->logits);
  if (r) return r;
  ctp_softmax(in->logits, in->probs, 1);
  in->argmax = 0;
  for (int j = 1; j < CTP_NUM_CLASSES; j++)
    if (in->probs[j] > in->probs[in->argmax]) in->argmax = j;
  in->cls = cls < 0 ? in->argmax : cls;
  in->target = target;
  float dz[CTP_NUM_CLASSES];
  target_gradient(in, dz);
  /* Guided first and without the layers' gradients (nothing reads guided
   * ones); the plain pass keeps them only for Grad-CAM and SAM. */
  unsigned layer_maps = CTP_MAP_BIT(CTP_MAP_GRADCAM) | CTP_MAP_BIT(CTP_MAP_SAM);
  if ((methods & CTP_MAP_BIT(CTP_MAP_GUIDED)) &&
      (r = input_gradient(e, dz, CTP_BWD_GUIDED | CTP_BWD_NO_LAYERS,
                          e->guided)))
    return r;
  if ((methods & ~CTP_MAP_BIT(CTP_MAP_GUIDED) & CTP_MAP_ALL) &&
      (r = input_gradient(e, dz, methods & layer_maps ? 0 : CTP_BWD_NO_LAYERS,
                          e->sal)))
    return r;
  e->methods = methods & CTP_MAP_ALL;
  if (info) *info = *in;
  return 0;
}

void ctp_explainer_map_shape(const ctp_explainer *e, int method, int layer,
                             int *h, int *w) {
  if (method == CTP_MAP_SALIENCY || method == CTP_MAP_GUIDED ||
      layer < 0 || layer >= CTP_NUM_CONV) {
    *h = e->h;
    *w = e->w;
    return;
  }
  *h = e->h >> ctp_layer_shift(layer);
  *w = e->w >> ctp_layer_shift(layer);
}

int ctp_explainer_map(ctp_explainer *e, int method, int layer, float *out) {
  if (!e || !out) return ctp_seterr(CTP_EINVAL, "ctp_explainer_map: NULL");
  int r = ctp_map_check_layer(method, layer);
  if (r) return r;
  if (!(e->methods & CTP_MAP_BIT(method)))
    return ctp_seterr(CTP_ESTATE, "%s was not asked for in the last run",
                      method_names[method]);
  size_t hw = (size_t)e->h * e->w;
  if (method == CTP_MAP_SALIENCY || method == CTP_MAP_GUIDED) {
    memcpy(out, method == CTP_MAP_SALIENCY ? e->sal : e->guided,
           hw * sizeof(float));
    return 0;
  }
  int k, h, w;
  ctp_net_shape(e->net, layer, &k, &h, &w);
  const float *act = ctp_net_act(e->net, layer);
  const float *dact = ctp_net_dact(e->net, layer);
  if (method == CTP_MAP_CAM)
    ctp_map_cam(out, act, e->m->fc_w + (size_t)e->info.cls * CTP_GAP_CHANNELS,
                h, w, k);
  else if (method == CTP_MAP_GRADCAM)
    ctp_map_gradcam(out, act, dact, h, w, k);
  else
    ctp_map_sam(out, act, dact, e->scratch, h, w, k);
  return 0;
}

int ctp_explain_compute(ctp_explainer *e, const float *x, int n, int slice,
                        int cls, int target, int method, int layer,
                        float **map, int *h, int *w, ctp_explain_info *info) {
  if (!e || !x || !map || !h || !w)
    return ctp_seterr(CTP_EINVAL, "ctp_explain_compute: NULL");
  *map = NULL;
  if (slice < 0 || slice >= n)
    return ctp_seterr(CTP_EINVAL, "slice %d outside 0..%d", slice, n - 1);
  int r = ctp_map_check_layer(method, layer);
  if (r) return r;
  size_t per = (size_t)e->cin * e->h * e->w;
  r = ctp_explainer_run(e, x + (size_t)slice * per, cls, target,
                        CTP_MAP_BIT(method), info);
  if (r) return r;
  ctp_explainer_map_shape(e, method, layer, h, w);
  *map = malloc((size_t)*h * *w * sizeof(float));
  if (!*map) return ctp_seterr(CTP_ENOMEM, "out of memory");
  if ((r = ctp_explainer_map(e, method, layer, *map))) {
    free(*map);
    *map = NULL;
  }
  return r;
}
