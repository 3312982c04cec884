/*
 * masking.c — how specific is a map? The paper's masking test ("Quantification
 * of Visualization Specificity"), after Zeiler & Fergus's occlusion.
 *
 * For a slice x the model classifies correctly (class c):
 *   1. compute the map (target y_c by default) and bring it to the input
 *      grid bilinearly;
 *   2. rank the input pixels by |map|; ties are broken by a seeded hash of
 *      the pixel index, so a flat region is not masked row by row;
 *   3. overwrite the top fraction (10%) of pixels with i.i.d. N(0,1) values
 *      (standardised units, so "typical tissue noise"), every input channel
 *      at those pixels, from a seeded generator; separately, as a control,
 *      the bottom fraction;
 *   4. score = 100 * p_c(masked) / p_c(x). Below 100: the map pointed at
 *      pixels the model used.
 *
 * All maps of a slice come from one explainer run (one forward, one guided
 * and one plain backward); they are upsampled and kept before the masked
 * forwards, which reuse the explainer's network and spoil its activations.
 *
 * Seeds: slice i (in the order added), map (method, layer), top/bottom use
 * splitmix64 streams derived from (seed, i, method, layer, side), so a run
 * is reproducible, independent of threads and of which other maps are in
 * the experiment.
 *
 * Statistics: per cell (class, map) the mean and SD of both scores and a
 * one-sample t test against 100; the paired comparisons of the paper (SAM
 * vs Grad-CAM per layer, saliency vs the rest) on the top-fraction scores,
 * Bonferroni-corrected over the whole list (stats.c has the t tests).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctphase/error.h"
#include "ctphase/explain.h"

/* splitmix64: a tiny, good 64-bit generator (Steele, Lea, Flood 2014). */
static uint64_t splitmix64(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static uint64_t mix(uint64_t a, uint64_t b) {
  uint64_t s = a ^ (b * 0xD1B54A32D192ED03ull);
  return splitmix64(&s);
}

/* Uniform in (0, 1), never 0 (for the log of Box-Muller). */
static double uniform(uint64_t *s) {
  return ((double)(splitmix64(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

const char *ctp_mapspec_name(const ctp_mapspec *s, char *buf, size_t len) {
  const char *m = ctp_map_method_name(s->method);
  if (s->method == CTP_MAP_SALIENCY || s->method == CTP_MAP_GUIDED ||
      s->method == CTP_MAP_CAM)
    snprintf(buf, len, "%s", m ? m : "?");
  else
    snprintf(buf, len, "%s@%s", m ? m : "?", ctp_layer_name(s->layer));
  return buf;
}

typedef struct {
  float key;       /* |map| */
  uint32_t tie;    /* seeded hash of the index */
  uint32_t idx;
} rank_entry;

static int rank_cmp(const void *pa, const void *pb) {
  const rank_entry *a = pa, *b = pb;
  if (a->key != b->key) return a->key < b->key ? -1 : 1;
  if (a->tie != b->tie) return a->tie < b->tie ? -1 : 1;
  return a->idx < b->idx ? -1 : a->idx > b->idx;
}

int ctp_mask_order(const float *map, size_t n, uint64_t seed,
                   uint32_t *order) {
  rank_entry *r = malloc(n * sizeof *r);
  if (!r) return ctp_seterr(CTP_ENOMEM, "out of memory ranking %zu pixels", n);
  for (size_t i = 0; i < n; i++) {
    float v = fabsf(map[i]);
    r[i].key = isnan(v) ? 0.0f : v;
    r[i].tie = (uint32_t)mix(seed, i);
    r[i].idx = (uint32_t)i;
  }
  qsort(r, n, sizeof *r, rank_cmp);
  for (size_t i = 0; i < n; i++) order[i] = r[i].idx;
  free(r);
  return 0;
}

void ctp_mask_fill(float *x, int c, size_t hw, const uint32_t *order,
                   size_t count, int top, uint64_t seed) {
  uint64_t s = seed;
  if (count > hw) count = hw;
  for (size_t i = 0; i < count; i++) {
    size_t p = order[top ? hw - 1 - i : i];
    for (int ch = 0; ch < c; ch++) {
      /* Box-Muller; one normal per draw keeps the stream simple. */
      double u1 = uniform(&s), u2 = uniform(&s);
      x[(size_t)ch * hw + p] =
          (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
    }
  }
}

/* --- the experiment --------------------------------------------------- */

int ctp_masktest_init(ctp_masktest *t, const ctp_mapspec *specs, int nspecs,
                      double fraction, uint64_t seed) {
  memset(t, 0, sizeof *t);
  if (nspecs < 1 || nspecs > CTP_MASK_MAX_SPECS)
    return ctp_seterr(CTP_EINVAL, "%d maps to test: need 1..%d", nspecs,
                      CTP_MASK_MAX_SPECS);
  if (!(fraction > 0.0 && fraction < 1.0))
    return ctp_seterr(CTP_EINVAL, "masking fraction %g outside (0, 1)",
                      fraction);
  for (int i = 0; i < nspecs; i++) {
    int r = ctp_map_check_layer(specs[i].method, specs[i].layer);
    if (r) return r;
    t->specs[i] = specs[i];
  }
  t->nspecs = nspecs;
  t->fraction = fraction;
  t->seed = seed;
  return 0;
}

void ctp_masktest_free(ctp_masktest *t) {
  if (!t) return;
  free(t->cls);
  free(t->p_orig);
  free(t->top);
  free(t->bottom);
  memset(t, 0, sizeof *t);
}

/* Room for one more slice. */
static int grow(ctp_masktest *t) {
  if (t->nslices < t->cap) return 0;
  int cap = t->cap ? 2 * t->cap : 16;
  int *cls = realloc(t->cls, (size_t)cap * sizeof *cls);
  if (cls) t->cls = cls;
  float *p = realloc(t->p_orig, (size_t)cap * sizeof *p);
  if (p) t->p_orig = p;
  float *top = realloc(t->top, (size_t)cap * t->nspecs * sizeof *top);
  if (top) t->top = top;
  float *bot = realloc(t->bottom, (size_t)cap * t->nspecs * sizeof *bot);
  if (bot) t->bottom = bot;
  if (!cls || !p || !top || !bot) return ctp_seterr(CTP_ENOMEM, "out of memory");
  t->cap = cap;
  return 0;
}

/* Every map of the slice, upsampled to the input grid: maps (nspecs,H,W). */
static int all_maps(const ctp_masktest *t, ctp_explainer *e, float *maps,
                    float *native, int H, int W) {
  for (int j = 0; j < t->nspecs; j++) {
    const ctp_mapspec *s = &t->specs[j];
    int h, w;
    ctp_explainer_map_shape(e, s->method, s->layer, &h, &w);
    int r = ctp_explainer_map(e, s->method, s->layer, native);
    if (r) return r;
    ctp_map_upsample_bilinear(native, h, w, maps + (size_t)j * H * W, H, W);
  }
  return 0;
}

/* p_c of x with one side of the ranking masked. */
static int masked_prob(ctp_explainer *e, const float *x, float *xm, int C,
                       size_t hw, const uint32_t *order, size_t count,
                       int top, uint64_t seed, int cls, float *p) {
  memcpy(xm, x, (size_t)C * hw * sizeof(float));
  ctp_mask_fill(xm, C, hw, order, count, top, seed);
  float z[CTP_NUM_CLASSES], pr[CTP_NUM_CLASSES];
  int r = ctp_net_forward(ctp_explainer_net(e), xm, 1, z);
  if (r) return r;
  ctp_softmax(z, pr, 1);
  *p = pr[cls];
  return 0;
}

/* Scores of every map for the slice just explained. */
static int score_slice(ctp_masktest *t, ctp_explainer *e, const float *x,
                       int cls, float p0, float *maps, uint32_t *order,
                       float *xm) {
  int C, H, W;
  ctp_net_shape(ctp_explainer_net(e), CTP_INPUT, &C, &H, &W);
  size_t hw = (size_t)H * W;
  size_t count = (size_t)llround(t->fraction * (double)hw);
  int i = t->nslices, r;
  for (int j = 0; j < t->nspecs; j++) {
    const ctp_mapspec *sp = &t->specs[j];
    uint64_t s = mix(mix(t->seed, (uint64_t)i),
                     (uint64_t)sp->method * 64 + (uint64_t)(sp->layer + 1));
    if ((r = ctp_mask_order(maps + (size_t)j * hw, hw, s, order))) return r;
    float pt, pb;
    if ((r = masked_prob(e, x, xm, C, hw, order, count, 1, mix(s, 1), cls, &pt)) ||
        (r = masked_prob(e, x, xm, C, hw, order, count, 0, mix(s, 2), cls, &pb)))
      return r;
    t->top[(size_t)i * t->nspecs + j] = 100.0f * pt / p0;
    t->bottom[(size_t)i * t->nspecs + j] = 100.0f * pb / p0;
  }
  return 0;
}

int ctp_masktest_add(ctp_masktest *t, ctp_explainer *e, const float *x,
                     int cls) {
  if (!t || !e || !x || cls < 0 || cls >= CTP_NUM_CLASSES)
    return ctp_seterr(CTP_EINVAL, "ctp_masktest_add: bad argument");
  unsigned methods = 0;
  for (int j = 0; j < t->nspecs; j++) methods |= CTP_MAP_BIT(t->specs[j].method);
  ctp_explain_info info;
  int r = ctp_explainer_run(e, x, cls, t->target, methods, &info);
  if (r) return r;
  if (info.argmax != cls)
    return ctp_seterr(CTP_ESKIP, "misclassified (%s, not %s)",
                      ctp_class_name(info.argmax), ctp_class_name(cls));
  if ((r = grow(t))) return r;
  int C, H, W;
  ctp_net_shape(ctp_explainer_net(e), CTP_INPUT, &C, &H, &W);
  size_t hw = (size_t)H * W;
  float *maps = malloc((size_t)t->nspecs * hw * sizeof(float));
  float *native = malloc(hw * sizeof(float));
  float *xm = malloc((size_t)C * hw * sizeof(float));
  uint32_t *order = malloc(hw * sizeof *order);
  if (!maps || !native || !xm || !order) {
    r = ctp_seterr(CTP_ENOMEM, "out of memory for %d maps", t->nspecs);
    goto done;
  }
  if ((r = all_maps(t, e, maps, native, H, W))) goto done;
  if ((r = score_slice(t, e, x, cls, info.probs[cls], maps, order, xm)))
    goto done;
  t->cls[t->nslices] = cls;
  t->p_orig[t->nslices] = info.probs[cls];
  t->nslices++;
done:
  free(maps);
  free(native);
  free(xm);
  free(order);
  return r;
}

/* --- statistics ------------------------------------------------------- */

/* The scores of one map (top or bottom) over the slices of class cls. */
static int gather(const ctp_masktest *t, int cls, int spec, int top,
                  double *out) {
  int n = 0;
  const float *src = top ? t->top : t->bottom;
  for (int i = 0; i < t->nslices; i++)
    if (cls < 0 || t->cls[i] == cls)
      out[n++] = src[(size_t)i * t->nspecs + spec];
  return n;
}

void ctp_masktest_cell(const ctp_masktest *t, int cls, int spec,
                       ctp_mask_cell *out) {
  memset(out, 0, sizeof *out);
  double *v = calloc((size_t)t->nslices + 1, sizeof *v);
  if (!v) {
    out->p_top = out->p_bottom = NAN;
    return;
  }
  ctp_ttest tt;
  int n = gather(t, cls, spec, 1, v);
  ctp_ttest_one(v, n, 100.0, &tt);
  out->n = n;
  out->top_mean = tt.mean;
  out->top_sd = tt.sd;
  out->p_top = tt.p;
  gather(t, cls, spec, 0, v);
  ctp_ttest_one(v, n, 100.0, &tt);
  out->bottom_mean = tt.mean;
  out->bottom_sd = tt.sd;
  out->p_bottom = tt.p;
  free(v);
}

static int find_spec(const ctp_masktest *t, int method, int layer) {
  for (int j = 0; j < t->nspecs; j++)
    if (t->specs[j].method == method &&
        (method == CTP_MAP_SALIENCY || method == CTP_MAP_GUIDED ||
         t->specs[j].layer == layer))
      return j;
  return -1;
}

/* The (a, b) pairs to compare, written to pairs; returns their number. */
static int comparison_pairs(const ctp_masktest *t, int pairs[][2]) {
  int n = 0;
  for (int j = 0; j < t->nspecs; j++) {
    if (t->specs[j].method != CTP_MAP_SAM) continue;
    int g = find_spec(t, CTP_MAP_GRADCAM, t->specs[j].layer);
    if (g >= 0) pairs[n][0] = j, pairs[n][1] = g, n++;
  }
  int s = find_spec(t, CTP_MAP_SALIENCY, -1);
  for (int j = 0; s >= 0 && j < t->nspecs; j++)
    if (j != s) pairs[n][0] = s, pairs[n][1] = j, n++;
  return n;
}

static int class_count(const ctp_masktest *t, int cls) {
  int n = 0;
  for (int i = 0; i < t->nslices; i++) n += t->cls[i] == cls;
  return n;
}

int ctp_masktest_compare(const ctp_masktest *t, ctp_mask_cmp **out, int *n) {
  *out = NULL;
  *n = 0;
  int pairs[2 * CTP_MASK_MAX_SPECS][2];
  int np = comparison_pairs(t, pairs);
  if (np == 0 || t->nslices < 2) return 0;
  ctp_mask_cmp *c = calloc((size_t)np * (CTP_NUM_CLASSES + 1), sizeof *c);
  double *a = malloc((size_t)t->nslices * sizeof *a);
  double *b = malloc((size_t)t->nslices * sizeof *b);
  if (!c || !a || !b) {
    free(c);
    free(a);
    free(b);
    return ctp_seterr(CTP_ENOMEM, "out of memory");
  }
  int m = 0;
  for (int cls = -1; cls < CTP_NUM_CLASSES; cls++) {
    if (cls >= 0 && class_count(t, cls) < 2) continue;
    for (int k = 0; k < np; k++) {
      int na = gather(t, cls, pairs[k][0], 1, a);
      gather(t, cls, pairs[k][1], 1, b);
      c[m].cls = cls;
      c[m].a = pairs[k][0];
      c[m].b = pairs[k][1];
      ctp_ttest_paired(a, b, na, &c[m].t);
      m++;
    }
  }
  for (int k = 0; k < m; k++)
    c[k].p_adj = isnan(c[k].t.p) ? NAN : fmin(1.0, c[k].t.p * m);
  free(a);
  free(b);
  *out = c;
  *n = m;
  return 0;
}
