/*
 * explain.h — explanation maps: what the network looked at (DESIGN.md §3,
 * paper "Visualization"), and the masking test of their specificity (paper
 * "Quantification of Visualization Specificity").
 *
 * Every map explains one target score of one slice: the pre-softmax logit
 * y_c of a class c (the predicted class by default), or, on request, its
 * softmax probability p_c (dp_c/dz_j = p_c (delta_cj - p_j)). With A a conv
 * layer's output after ReLU (K channels, H x W at the layer's resolution)
 * and K = dy_c/dA:
 *
 *   saliency   dy_c/dx at the input (signed);
 *   guided     guided backprop: every ReLU passes grad * 1[in > 0] *
 *              1[grad > 0]; its own backward pass;
 *   cam        layer 6 only: sum_k w_fc[c,k] A6_k;
 *   gradcam    any layer: ReLU(sum_k mean_xy(K_k) A_k);
 *   sam        any layer: G = per-channel gaussian blur of K (sigma 0.75 px
 *              at the layer's resolution, 5x5 taps, normalised, edges
 *              replicated); L'_k = max_xy(A_k) - A_k where G_k < 0, else
 *              A_k; SAM = sum_k |G_k| L'_k. This is our documented reading
 *              of the paper's garbled equation (docs/explanation-maps.md).
 *
 * For a multi-channel (2.5-D) input, saliency and guided maps are the sum
 * over input channels: the derivative for a change of that pixel in all
 * three slices at once.
 *
 * Maps are float, row-major (H, W) at their native resolution: the input's
 * for saliency and guided, the layer's (H >> s, W >> s) otherwise.
 *
 * A ctp_explainer owns a gradient-keeping network workspace for one slice.
 * ctp_explainer_run() does one forward and, as the methods ask, one guided
 * backward and one plain backward; afterwards every map of every layer is
 * read with ctp_explainer_map() without more passes. One explainer is used
 * by one thread at a time; the model may be shared.
 */
#ifndef CTPHASE_EXPLAIN_H
#define CTPHASE_EXPLAIN_H

#include <stddef.h>
#include <stdint.h>

#include "ctphase/model.h"
#include "ctphase/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  CTP_MAP_SALIENCY = 0,
  CTP_MAP_GUIDED,
  CTP_MAP_CAM,
  CTP_MAP_GRADCAM,
  CTP_MAP_SAM,
  CTP_NUM_METHODS
} ctp_map_method;

#define CTP_MAP_BIT(method) (1u << (method))
#define CTP_MAP_ALL ((1u << CTP_NUM_METHODS) - 1u)

/* What is differentiated: the class's logit (default) or its probability. */
typedef enum { CTP_TARGET_LOGIT = 0, CTP_TARGET_PROB = 1 } ctp_target;

/* The gaussian of SAM: sigma in pixels of the layer, taps per side. */
#define CTP_SAM_SIGMA 0.75
#define CTP_SAM_TAPS 5

/* "saliency", "guided", "cam", "gradcam", "sam"; NULL out of range. */
const char *ctp_map_method_name(int method);
/* Display name: "saliency", "guided backprop", "CAM", "Grad-CAM", "SAM". */
const char *ctp_map_method_title(int method);
/* Method index of a name (also "grad-cam", "guided-backprop"), or CTP_EINVAL. */
int ctp_map_method_parse(const char *name);
/* Whether a method can be computed at a layer: saliency and guided take
 * any layer argument (they live at the input), CAM only CTP_L6, Grad-CAM
 * and SAM any conv layer. 0, or CTP_EINVAL with a message. */
int ctp_map_check_layer(int method, int layer);

/* --- the map kernels (channels-last layer tensors, one slice) ---------- */
/* K, the channel count, is at most CTP_GAP_CHANNELS (64), as in this
 * network. */

/* out (H,W) = sum_k w[k] * act[.,.,k]; w the fc row of the class. */
void ctp_map_cam(float *out, const float *act, const float *w, int H, int W,
                 int K);
/* out (H,W) = ReLU(sum_k mean_xy(dact_k) * act_k). */
void ctp_map_gradcam(float *out, const float *act, const float *dact, int H,
                     int W, int K);
/* out (H,W,K) = 5x5 gaussian (sigma 0.75, normalised, edges replicated) of
 * in (H,W,K), channel by channel. tmp holds H*W*K floats. */
void ctp_blur_gauss5(float *out, const float *in, float *tmp, int H, int W,
                     int K);
/* The 1-D taps of that gaussian (CTP_SAM_TAPS values summing to 1). */
void ctp_blur_taps(double taps[CTP_SAM_TAPS]);
/* out (H,W) = SAM of act and dact (H,W,K); g holds 2*H*W*K floats. */
void ctp_map_sam(float *out, const float *act, const float *dact, float *g,
                 int H, int W, int K);
/* Bilinear resampling (pixel centres aligned, as PyTorch's
 * align_corners=False) of a (sh,sw) map to (dh,dw). */
void ctp_map_upsample_bilinear(const float *src, int sh, int sw, float *dst,
                               int dh, int dw);

/* --- the explainer ---------------------------------------------------- */

typedef struct ctp_explainer ctp_explainer;

/* What the last run explained. */
typedef struct {
  int cls;                          /* the class explained */
  int target;                       /* ctp_target */
  int argmax;                       /* the predicted class */
  float logits[CTP_NUM_CLASSES];
  float probs[CTP_NUM_CLASSES];
} ctp_explain_info;

/* An explainer for slices of h x w (multiples of 32) of model m. */
int ctp_explainer_new(ctp_explainer **out, const ctp_model *m, int h, int w,
                      int threads);
void ctp_explainer_free(ctp_explainer *e);
/* Its network (one slice, CTP_NET_GRAD): free for plain forwards between
 * runs, e.g. of masked slices; a forward spoils the last run's maps. */
ctp_net *ctp_explainer_net(ctp_explainer *e);
const ctp_model *ctp_explainer_model(const ctp_explainer *e);

/* Explains one slice x (C,H,W) for class cls (-1: the predicted class).
 * methods is a CTP_MAP_BIT() mask of the maps that will be read: guided
 * costs a guided backward, any other method the plain backward; the
 * layers' gradients (ctp_net_dact of the explainer's net) are computed
 * only when Grad-CAM or SAM is asked for. info may be NULL. */
int ctp_explainer_run(ctp_explainer *e, const float *x, int cls, int target,
                      unsigned methods, ctp_explain_info *info);
/* Native size of a map. */
void ctp_explainer_map_shape(const ctp_explainer *e, int method, int layer,
                             int *h, int *w);
/* Writes a map of the last run into out (its native size). */
int ctp_explainer_map(ctp_explainer *e, int method, int layer, float *out);

/* One-shot: explains slice `slice` of the batch x (n,C,H,W) and returns a
 * malloc'd map at native resolution (*h, *w); info may be NULL. */
int ctp_explain_compute(ctp_explainer *e, const float *x, int n, int slice,
                        int cls, int target, int method, int layer,
                        float **map, int *h, int *w, ctp_explain_info *info);

/* --- inputs ---------------------------------------------------------- */

struct ctp_acquisition;
/* The standardised network input x (C,S,S), S = the model's input size, of
 * slice i of an acquisition, built as the predictor builds it (2.5-D
 * models: the slice below, the slice, the slice above). */
int ctp_explain_load_input(const ctp_model *m,
                           const struct ctp_acquisition *acq, int i, float *x);
/* The slice to show under a map: x's middle channel back in HU (h, w). */
void ctp_explain_display_hu(const ctp_model *m, const float *x, int h, int w,
                            float *hu);

/* --- masking specificity --------------------------------------------- */

/* The fraction of input pixels masked (paper: 10%). */
#define CTP_MASK_FRACTION 0.10
#define CTP_MASK_MAX_SPECS 32

/* A map to test: a method at a layer (the layer is ignored for saliency
 * and guided). */
typedef struct {
  int method;
  int layer;
} ctp_mapspec;

/* "saliency", "cam", "sam@2b", ... into buf. */
const char *ctp_mapspec_name(const ctp_mapspec *s, char *buf, size_t len);

/* order[0..n) = pixel indices in increasing |map|; ties broken by a
 * seeded hash of the index, so equal values are not taken row by row. */
int ctp_mask_order(const float *map, size_t n, uint64_t seed, uint32_t *order);
/* Overwrites x (C,H,W), at the count pixels with the largest (top != 0) or
 * smallest |map| per order, in every channel, with i.i.d. N(0,1) values of
 * a generator seeded with seed. */
void ctp_mask_fill(float *x, int c, size_t hw, const uint32_t *order,
                   size_t count, int top, uint64_t seed);

/* A masking experiment: slices added one by one, statistics at the end. */
typedef struct {
  int nspecs;
  ctp_mapspec specs[CTP_MASK_MAX_SPECS];
  double fraction;
  uint64_t seed;
  int target;
  int nslices, cap;
  int *cls;          /* (nslices) correct class */
  float *p_orig;     /* (nslices) p_c of the unmasked slice */
  float *top;        /* (nslices, nspecs) score, top fraction masked */
  float *bottom;     /* (nslices, nspecs) score, bottom fraction masked */
} ctp_masktest;

int ctp_masktest_init(ctp_masktest *t, const ctp_mapspec *specs, int nspecs,
                      double fraction, uint64_t seed);
void ctp_masktest_free(ctp_masktest *t);
/* Scores one slice x (C,H,W) of correct class cls: for each map, 100 *
 * p_c(masked) / p_c(x) with the top and with the bottom fraction of |map|
 * (upsampled to the input grid) masked. A slice the model misclassifies is
 * not added: returns CTP_ESKIP. */
int ctp_masktest_add(ctp_masktest *t, ctp_explainer *e, const float *x,
                     int cls);

/* Student's t tests. p is two-sided. */
typedef struct {
  int n;
  double mean, sd;   /* of the values, or of the paired differences */
  double t, df, p;
} ctp_ttest;

/* Regularized incomplete beta function I_x(a, b). */
double ctp_incbeta(double a, double b, double x);
/* P(T <= t) for Student's t with df degrees of freedom. */
double ctp_t_cdf(double t, double df);
/* One-sample test of mean(v) against mu; paired test of a against b. n < 2
 * gives p = NaN. */
void ctp_ttest_one(const double *v, int n, double mu, ctp_ttest *out);
void ctp_ttest_paired(const double *a, const double *b, int n,
                      ctp_ttest *out);

/* One cell of the result table: slices of class cls (-1: all), map spec. */
typedef struct {
  int n;
  double top_mean, top_sd, bottom_mean, bottom_sd;
  double p_top, p_bottom;  /* vs 100, two-sided, not corrected */
} ctp_mask_cell;

void ctp_masktest_cell(const ctp_masktest *t, int cls, int spec,
                       ctp_mask_cell *out);

/* A paired comparison of two maps' top-fraction scores over the slices of
 * class cls (-1: all); p_adj is Bonferroni-corrected over the whole list. */
typedef struct {
  int cls, a, b;
  ctp_ttest t;
  double p_adj;
} ctp_mask_cmp;

/* The comparisons the paper makes: SAM vs Grad-CAM at every layer where
 * both were tested, and saliency vs every other map, for all slices and for
 * each class with at least two slices. *out is malloc'd. */
int ctp_masktest_compare(const ctp_masktest *t, ctp_mask_cmp **out, int *n);

#ifdef __cplusplus
}
#endif
#endif
