/*
 * report.c — an evaluation (evaluate.c) as files a person can read and a
 * program can check: DIR/metrics.json (every number) and DIR/report.html,
 * one self-contained page: tables as HTML, plots as inline SVG, the
 * example overlays as PNG files next to it (written by evaluate.c).
 *
 * The page follows the paper's order: Table 1 (confusion matrices, rows
 * predicted and columns labelled, as printed there), Table 2 (precision,
 * recall overall and within one phase, F1, AUC, with the paper's test-set
 * figures beside ours), one-vs-all ROC curves, the masking figures (Fig. 2:
 * top vs bottom 10% for every map; Fig. 5: SAM vs Grad-CAM by layer;
 * Fig. 6: SAM by layer and class), then what the paper could not measure:
 * the pointing game against the phantom's organ labels.
 *
 * SVG is written by hand: a bar chart (grouped bars with SD whiskers, an
 * optional reference line and significance marks) and a line plot (ROC).
 * Everything goes through one memory stream, then to disk atomically.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctphase/error.h"
#include "ctphase/evaluate.h"
#include "ctphase/util.h"

#define K CTP_NUM_CLASSES

/* The paper's test-set figures (text of "Results"). */
static const double paper_single[4] = {0.776, 0.862, 0.860, 0.981};
static const double paper_voted[4] = {0.869, 0.923, 0.921, 0.988};

static const char *const class_title[K] = {"Noncon", "CM", "CM-neph", "Neph",
                                           "Pyelo"};
static const char *const region_title[CTP_NUM_REGIONS] = {"kidney", "aorta",
                                                          "IVC", "all three"};
static const char *const class_colour[K] = {"#555555", "#d62728", "#ff7f0e",
                                            "#2ca02c", "#1f77b4"};

/* --- shared helpers -------------------------------------------------- */

static void spec_name(const ctp_eval *ev, int j, char *buf, size_t n) {
  ctp_mapspec_name(&ev->mask.specs[j], buf, n);
}

/* Finds the spec of a method at a layer (any layer for saliency, guided). */
static int spec_index(const ctp_eval *ev, int method, int layer) {
  for (int j = 0; j < ev->mask.nspecs; j++)
    if (ev->mask.specs[j].method == method &&
        (method <= CTP_MAP_GUIDED || ev->mask.specs[j].layer == layer))
      return j;
  return -1;
}

/* The layers Grad-CAM and SAM were tested at, in order. */
static int tested_layers(const ctp_eval *ev, int *layers) {
  int n = 0;
  for (int j = 0; j < ev->mask.nspecs; j++)
    if (ev->mask.specs[j].method == CTP_MAP_SAM) layers[n++] = ev->mask.specs[j].layer;
  return n;
}

static double bonf(double p, int m) { return isnan(p) ? p : fmin(1.0, p * m); }

/* Cells reported in the masking tables: every class with slices, and all. */
static int mask_groups(const ctp_eval *ev) {
  int g = 1;
  for (int c = 0; c < K; c++) {
    ctp_mask_cell cell;
    ctp_masktest_cell(&ev->mask, c, 0, &cell);
    g += cell.n > 0;
  }
  return g;
}

/* --- metrics.json ---------------------------------------------------- */

static void jnum(cJSON *o, const char *key, double v) {
  if (isnan(v) || isinf(v)) cJSON_AddNullToObject(o, key);
  else cJSON_AddNumberToObject(o, key, v);
}

static cJSON *jarray(const double *v, int n) {
  cJSON *a = cJSON_CreateArray();
  for (int i = 0; i < n; i++)
    cJSON_AddItemToArray(a, isnan(v[i]) ? cJSON_CreateNull() : cJSON_CreateNumber(v[i]));
  return a;
}

/* A ROC curve thinned for plotting: a point is kept when it moved at least
 * 0.002 along an axis from the last kept one; the ends are always kept. */
static int roc_thin(const ctp_roc *r, double *fpr, double *tpr) {
  int n = 0;
  for (int i = 0; i < r->npoints; i++) {
    int last = i == r->npoints - 1;
    if (n > 0 && !last && fabs(r->fpr[i] - fpr[n - 1]) < 0.002 &&
        fabs(r->tpr[i] - tpr[n - 1]) < 0.002)
      continue;
    fpr[n] = r->fpr[i];
    tpr[n++] = r->tpr[i];
  }
  return n;
}

/* Items of one level: truth and scores (slices: probabilities; series:
 * vote shares). */
typedef struct {
  int n;
  int *truth;
  float *scores;
} level_items;

static int level_items_get(const ctp_eval *ev, int voted, level_items *li) {
  int n = voted ? ev->nseries : ev->nslices;
  li->truth = malloc((size_t)(n ? n : 1) * sizeof *li->truth);
  li->scores = malloc((size_t)(n ? n : 1) * K * sizeof *li->scores);
  li->n = 0;
  if (!li->truth || !li->scores) return ctp_seterr(CTP_ENOMEM, "out of memory");
  for (int i = 0; i < n; i++) {
    if (voted && ev->series[i].nslices == 0) continue;
    li->truth[li->n] = voted ? ev->series[i].label : ev->slices[i].label;
    memcpy(li->scores + (size_t)li->n * K,
           voted ? ev->series[i].vote.share : ev->slices[i].probs, K * sizeof(float));
    li->n++;
  }
  return 0;
}

static void level_items_free(level_items *li) {
  free(li->truth);
  free(li->scores);
}

static cJSON *json_roc(const level_items *li) {
  cJSON *o = cJSON_CreateObject();
  for (int c = 0; c < K; c++) {
    ctp_roc r;
    if (ctp_roc_one_vs_all(li->truth, li->scores, (size_t)li->n, c, &r)) continue;
    double *f = malloc((size_t)(r.npoints + 1) * sizeof *f);
    double *t = malloc((size_t)(r.npoints + 1) * sizeof *t);
    if (f && t) {
      int n = roc_thin(&r, f, t);
      cJSON *cur = cJSON_AddObjectToObject(o, ctp_class_name(c));
      jnum(cur, "auc", r.auc);
      cJSON_AddNumberToObject(cur, "points_full", r.npoints);
      cJSON_AddItemToObject(cur, "fpr", jarray(f, n));
      cJSON_AddItemToObject(cur, "tpr", jarray(t, n));
    }
    free(f);
    free(t);
    ctp_roc_free(&r);
  }
  return o;
}

static cJSON *json_metrics(const ctp_metrics *m, const level_items *li) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "n", (double)m->n);
  jnum(o, "accuracy", m->accuracy);
  jnum(o, "accuracy_within_one", m->accuracy_w1);
  cJSON *mac = cJSON_AddObjectToObject(o, "macro");
  jnum(mac, "precision", m->macro_precision);
  jnum(mac, "recall", m->macro_recall);
  jnum(mac, "f1", m->macro_f1);
  jnum(mac, "auc", m->macro_auc);
  jnum(mac, "precision_within_one", m->macro_precision_w1);
  jnum(mac, "recall_within_one", m->macro_recall_w1);
  jnum(mac, "f1_within_one", m->macro_f1_w1);
  cJSON *pc = cJSON_AddObjectToObject(o, "per_class");
  for (int c = 0; c < K; c++) {
    cJSON *x = cJSON_AddObjectToObject(pc, ctp_class_name(c));
    cJSON_AddNumberToObject(x, "support", (double)m->support[c]);
    jnum(x, "precision", m->precision[c]);
    jnum(x, "recall", m->recall[c]);
    jnum(x, "f1", m->f1[c]);
    jnum(x, "auc", m->auc[c]);
    jnum(x, "precision_within_one", m->precision_w1[c]);
    jnum(x, "recall_within_one", m->recall_w1[c]);
    jnum(x, "f1_within_one", m->f1_w1[c]);
  }
  cJSON *cm = cJSON_AddObjectToObject(o, "confusion");
  cJSON_AddStringToObject(cm, "rows", "true class");
  cJSON_AddStringToObject(cm, "columns", "predicted class");
  cJSON *mat = cJSON_AddArrayToObject(cm, "matrix");
  for (int t = 0; t < K; t++) {
    double row[K];
    for (int p = 0; p < K; p++) row[p] = (double)m->cm[t][p];
    cJSON_AddItemToArray(mat, jarray(row, K));
  }
  if (li) cJSON_AddItemToObject(o, "roc", json_roc(li));
  return o;
}

static cJSON *json_paper(void) {
  static const char *const keys[4] = {"precision", "recall", "f1", "auc"};
  cJSON *o = cJSON_CreateObject();
  cJSON *s = cJSON_AddObjectToObject(o, "single_slice");
  cJSON *v = cJSON_AddObjectToObject(o, "voted");
  for (int i = 0; i < 4; i++) {
    cJSON_AddNumberToObject(s, keys[i], paper_single[i]);
    cJSON_AddNumberToObject(v, keys[i], paper_voted[i]);
  }
  return o;
}

static cJSON *json_masking(const ctp_eval *ev) {
  const ctp_masktest *t = &ev->mask;
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "slices", t->nslices);
  cJSON_AddNumberToObject(o, "passed_over", ev->mask_passed_over);
  cJSON_AddNumberToObject(o, "fraction", t->fraction);
  cJSON_AddNumberToObject(o, "seed", (double)t->seed);
  cJSON_AddStringToObject(o, "target", "logit");
  cJSON *maps = cJSON_AddArrayToObject(o, "maps");
  char name[32];
  for (int j = 0; j < t->nspecs; j++) {
    spec_name(ev, j, name, sizeof name);
    cJSON_AddItemToArray(maps, cJSON_CreateString(name));
  }
  cJSON *cells = cJSON_AddArrayToObject(o, "cells");
  int m = 2 * mask_groups(ev) * t->nspecs;
  for (int c = -1; t->nslices > 0 && c < K; c++)
    for (int j = 0; j < t->nspecs; j++) {
      ctp_mask_cell cell;
      ctp_masktest_cell(t, c, j, &cell);
      if (cell.n == 0) continue;
      cJSON *x = cJSON_CreateObject();
      cJSON_AddStringToObject(x, "class", c < 0 ? "all" : ctp_class_name(c));
      spec_name(ev, j, name, sizeof name);
      cJSON_AddStringToObject(x, "map", name);
      cJSON_AddNumberToObject(x, "n", cell.n);
      jnum(x, "top_mean", cell.top_mean);
      jnum(x, "top_sd", cell.top_sd);
      jnum(x, "bottom_mean", cell.bottom_mean);
      jnum(x, "bottom_sd", cell.bottom_sd);
      jnum(x, "p_top", cell.p_top);
      jnum(x, "p_bottom", cell.p_bottom);
      jnum(x, "p_top_bonferroni", bonf(cell.p_top, m));
      jnum(x, "p_bottom_bonferroni", bonf(cell.p_bottom, m));
      cJSON_AddItemToArray(cells, x);
    }
  return o;
}

/* Where an evaluated slice came from. */
static void json_slice_ref(cJSON *o, const ctp_eval *ev, int slice) {
  const ctp_eval_slice *sl = &ev->slices[slice];
  cJSON_AddStringToObject(o, "series", ev->series[sl->series].id);
  cJSON_AddNumberToObject(o, "slice", sl->z);
  cJSON_AddStringToObject(o, "class", ctp_class_name(sl->label));
}

/* Every masked slice's scores, map by map. */
static cJSON *json_mask_slices(const ctp_eval *ev) {
  const ctp_masktest *t = &ev->mask;
  cJSON *arr = cJSON_CreateArray();
  char name[32];
  for (int i = 0; i < t->nslices; i++) {
    cJSON *o = cJSON_CreateObject();
    json_slice_ref(o, ev, ev->mask_slice[i]);
    cJSON_AddNumberToObject(o, "p_original", t->p_orig[i]);
    cJSON *top = cJSON_AddObjectToObject(o, "top");
    cJSON *bot = cJSON_AddObjectToObject(o, "bottom");
    for (int j = 0; j < t->nspecs; j++) {
      spec_name(ev, j, name, sizeof name);
      jnum(top, name, t->top[(size_t)i * t->nspecs + j]);
      jnum(bot, name, t->bottom[(size_t)i * t->nspecs + j]);
    }
    cJSON_AddItemToArray(arr, o);
  }
  return arr;
}

static cJSON *json_comparisons(const ctp_eval *ev, const ctp_mask_cmp *c, int n) {
  cJSON *arr = cJSON_CreateArray();
  char a[32], b[32];
  for (int k = 0; k < n; k++) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "class", c[k].cls < 0 ? "all" : ctp_class_name(c[k].cls));
    spec_name(ev, c[k].a, a, sizeof a);
    spec_name(ev, c[k].b, b, sizeof b);
    cJSON_AddStringToObject(o, "a", a);
    cJSON_AddStringToObject(o, "b", b);
    cJSON_AddNumberToObject(o, "n", c[k].t.n);
    jnum(o, "mean_diff", c[k].t.mean);
    jnum(o, "t", c[k].t.t);
    jnum(o, "p", c[k].t.p);
    jnum(o, "p_bonferroni", c[k].p_adj);
    cJSON_AddItemToArray(arr, o);
  }
  return arr;
}

/* Every pointing slice: area shares and each map's mass shares. */
static cJSON *json_pointing_slices(const ctp_eval *ev) {
  cJSON *arr = cJSON_CreateArray();
  char name[32];
  for (int i = 0; i < ev->pointing_n; i++) {
    cJSON *o = cJSON_CreateObject();
    json_slice_ref(o, ev, ev->pointing_slice[i]);
    cJSON *area = cJSON_AddObjectToObject(o, "area_share");
    for (int g = 0; g < CTP_NUM_REGIONS; g++)
      jnum(area, ctp_region_name(g), ev->pointing_area[(size_t)i * CTP_NUM_REGIONS + g]);
    cJSON *mass = cJSON_AddObjectToObject(o, "mass_share");
    for (int j = 0; j < ev->mask.nspecs; j++) {
      spec_name(ev, j, name, sizeof name);
      cJSON *x = cJSON_AddObjectToObject(mass, name);
      for (int g = 0; g < CTP_NUM_REGIONS; g++)
        jnum(x, ctp_region_name(g),
             ev->pointing_mass[((size_t)i * ev->mask.nspecs + j) * CTP_NUM_REGIONS + g]);
    }
    cJSON_AddItemToArray(arr, o);
  }
  return arr;
}

static cJSON *json_pointing(const ctp_eval *ev) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "slices", ev->pointing_n);
  cJSON *regions = cJSON_AddArrayToObject(o, "regions");
  for (int g = 0; g < CTP_NUM_REGIONS; g++)
    cJSON_AddItemToArray(regions, cJSON_CreateString(ctp_region_name(g)));
  cJSON *area = cJSON_AddObjectToObject(o, "area_share");
  cJSON *maps = cJSON_AddObjectToObject(o, "mass_share");
  char name[32];
  for (int j = -1; j < ev->mask.nspecs; j++) {
    cJSON *dst = area;
    if (j >= 0) {
      spec_name(ev, j, name, sizeof name);
      dst = cJSON_AddObjectToObject(maps, name);
    }
    for (int g = 0; g < CTP_NUM_REGIONS; g++) {
      double mean, sd;
      ctp_eval_pointing_stats(ev, j, g, &mean, &sd);
      cJSON *x = cJSON_AddObjectToObject(dst, ctp_region_name(g));
      jnum(x, "mean", mean);
      jnum(x, "sd", sd);
      if (j < 0) continue;
      ctp_eval_pointing_enrichment(ev, j, g, &mean, &sd);
      jnum(x, "enrichment_mean", mean);
      jnum(x, "enrichment_sd", sd);
    }
  }
  cJSON_AddItemToObject(o, "per_slice", json_pointing_slices(ev));
  return o;
}

static cJSON *jfloats(const float *v, int n) {
  double d[K];
  for (int i = 0; i < n && i < K; i++) d[i] = v[i];
  return jarray(d, n < K ? n : K);
}

/* Every evaluated series: truth, voted result, shares, mean probabilities. */
static cJSON *json_series(const ctp_eval *ev) {
  cJSON *arr = cJSON_CreateArray();
  for (int s = 0; s < ev->nseries; s++) {
    const ctp_eval_series *se = &ev->series[s];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", se->id);
    cJSON_AddStringToObject(o, "label", ctp_class_name(se->label));
    cJSON_AddNumberToObject(o, "slices", se->nslices);
    cJSON_AddNumberToObject(o, "slices_in_series", se->total_slices);
    if (se->nslices > 0) {
      cJSON_AddStringToObject(o, "winner", ctp_class_name(se->vote.winner));
      cJSON_AddStringToObject(o, "phase", ctp_phase_name(se->vote.phase));
      cJSON_AddItemToObject(o, "vote_share", jfloats(se->vote.share, K));
      cJSON_AddItemToObject(o, "mean_prob", jfloats(se->vote.mean_prob, K));
    }
    cJSON_AddItemToArray(arr, o);
  }
  return arr;
}

static const char *source_name(const ctp_eval *ev) {
  return ev->source == CTP_EVAL_SPLIT ? "split"
         : ev->source == CTP_EVAL_PHANTOM ? "phantom" : "dicom";
}

static cJSON *json_head(const ctp_eval *ev, const ctp_model *m,
                        const ctp_eval_opts *o) {
  cJSON *root = cJSON_CreateObject();
  cJSON *mo = cJSON_AddObjectToObject(root, "model");
  cJSON_AddStringToObject(mo, "path", o->model_path ? o->model_path : "");
  cJSON_AddStringToObject(mo, "sha256", m->sha256);
  cJSON_AddNumberToObject(mo, "input_size", m->input_size);
  cJSON_AddNumberToObject(mo, "in_channels", m->in_channels);
  const char *tr = ctp_model_meta(m, "trained_on");
  cJSON_AddStringToObject(mo, "trained_on", tr ? tr : "");
  cJSON *d = cJSON_AddObjectToObject(root, "data");
  cJSON_AddStringToObject(d, "source", source_name(ev));
  if (o->split_dir) cJSON_AddStringToObject(d, "split_dir", o->split_dir);
  if (o->data_dir) cJSON_AddStringToObject(d, "data_dir", o->data_dir);
  if (o->labels_csv) cJSON_AddStringToObject(d, "labels_csv", o->labels_csv);
  cJSON_AddNumberToObject(d, "series", ev->voted.n);
  cJSON_AddNumberToObject(d, "slices", ev->nslices);
  cJSON_AddNumberToObject(d, "slices_per_series", o->slices_per_series);
  cJSON *cls = cJSON_AddArrayToObject(root, "classes");
  for (int c = 0; c < K; c++) cJSON_AddItemToArray(cls, cJSON_CreateString(ctp_class_name(c)));
  return root;
}

static int write_json(const ctp_eval *ev, const ctp_model *m, const ctp_eval_opts *o,
                      const ctp_mask_cmp *cmp, int ncmp, const char *path) {
  level_items ls = {0}, lv = {0};
  int r = level_items_get(ev, 0, &ls);
  if (!r) r = level_items_get(ev, 1, &lv);
  cJSON *root = r ? NULL : json_head(ev, m, o);
  if (root) {
    cJSON_AddItemToObject(root, "single_slice", json_metrics(&ev->single, &ls));
    cJSON *v = json_metrics(&ev->voted, &lv);
    cJSON_AddStringToObject(v, "roc_score", "vote share");
    cJSON_AddItemToObject(v, "auc_mean_probability", jarray(ev->voted_mean.auc, K));
    jnum(v, "macro_auc_mean_probability", ev->voted_mean.macro_auc);
    cJSON_AddNumberToObject(v, "indeterminate", ev->indeterminate);
    cJSON_AddNumberToObject(v, "margin", o->margin);
    cJSON_AddItemToObject(v, "series", json_series(ev));
    cJSON_AddItemToObject(root, "voted", v);
    cJSON *vm = json_metrics(&ev->voted_mean, NULL);
    cJSON_AddStringToObject(vm, "prediction", "argmax of the series' mean probability");
    cJSON_AddStringToObject(vm, "roc_score", "mean probability");
    cJSON_AddItemToObject(root, "voted_mean_probability", vm);
    if (ev->kidney_single.n > 0) {
      cJSON *kr = cJSON_AddObjectToObject(root, "kidney_range");
      cJSON_AddStringToObject(kr, "slices", "the phantom slices whose labels show a "
                              "kidney: the paper's range, top to bottom of the kidneys");
      cJSON_AddItemToObject(kr, "single_slice", json_metrics(&ev->kidney_single, NULL));
      cJSON *kv = json_metrics(&ev->kidney_voted, NULL);
      cJSON_AddStringToObject(kv, "roc_score", "vote share over the series' kidney slices");
      cJSON_AddItemToObject(kr, "voted", kv);
    }
    cJSON_AddItemToObject(root, "paper", json_paper());
    cJSON *mk = json_masking(ev);
    cJSON_AddItemToObject(mk, "comparisons", json_comparisons(ev, cmp, ncmp));
    cJSON_AddItemToObject(mk, "per_slice", json_mask_slices(ev));
    cJSON_AddItemToObject(root, "masking", mk);
    if (ev->pointing_n > 0) cJSON_AddItemToObject(root, "pointing", json_pointing(ev));
    cJSON *ex = cJSON_AddArrayToObject(root, "examples");
    for (int i = 0; i < ev->nexamples; i++) {
      const ctp_eval_slice *sl = &ev->slices[ev->examples[i].slice];
      cJSON *x = cJSON_CreateObject();
      cJSON_AddStringToObject(x, "file", ev->examples[i].file);
      cJSON_AddStringToObject(x, "series", ev->series[sl->series].id);
      cJSON_AddNumberToObject(x, "slice", sl->z);
      cJSON_AddStringToObject(x, "class", ctp_class_name(sl->label));
      cJSON_AddNumberToObject(x, "probability", sl->probs[sl->label]);
      cJSON_AddItemToArray(ex, x);
    }
    cJSON *tm = cJSON_AddObjectToObject(root, "seconds");
    cJSON_AddNumberToObject(tm, "inference", ev->t_infer);
    cJSON_AddNumberToObject(tm, "explanations", ev->t_explain);
    char *txt = cJSON_Print(root);
    r = txt ? ctp_file_write_atomic(path, txt, strlen(txt))
            : ctp_seterr(CTP_ENOMEM, "out of memory for metrics.json");
    free(txt);
    cJSON_Delete(root);
  }
  level_items_free(&ls);
  level_items_free(&lv);
  return r;
}

/* --- HTML helpers ------------------------------------------------------ */

static void esc(FILE *f, const char *s) {
  for (; s && *s; s++) {
    switch (*s) {
    case '<': fputs("&lt;", f); break;
    case '>': fputs("&gt;", f); break;
    case '&': fputs("&amp;", f); break;
    case '"': fputs("&quot;", f); break;
    default: fputc(*s, f);
    }
  }
}

static void num3(FILE *f, double v) {
  if (isnan(v)) fputs("&ndash;", f);
  else fprintf(f, "%.3f", v);
}

static const char *css =
    "body{font:14px/1.45 system-ui,sans-serif;max-width:1150px;margin:24px auto;"
    "padding:0 16px;color:#222}h1{font-size:24px}h2{font-size:19px;margin-top:34px;"
    "border-bottom:1px solid #ccc;padding-bottom:3px}h3{font-size:15px}"
    "table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #bbb;"
    "padding:3px 8px;text-align:right}th{background:#f0f0f0}td.l,th.l{text-align:left}"
    "tr.paper td{background:#fff6dc;font-style:italic}tr.macro td{font-weight:600}"
    ".note{color:#555;font-size:13px;max-width:900px}.kpi{display:inline-block;"
    "margin:4px 18px 4px 0;padding:8px 14px;border:1px solid #ccc;border-radius:6px}"
    ".kpi b{font-size:20px;display:block}figure{margin:10px 0 22px}"
    "figcaption{font-size:13px;color:#444;max-width:1000px}"
    "img.ex{width:100%;max-width:900px;image-rendering:pixelated;border:1px solid #999}"
    "svg{background:#fff}";

/* --- tables ------------------------------------------------------------- */

/* Table 1: rows predicted, columns labelled, cells shaded by their share of
 * the labelled column. */
static void html_confusion(FILE *f, const ctp_metrics *m, const char *title) {
  fprintf(f, "<h3>%s (n = %ld)</h3>\n<table><tr><th class=l>Predicted \\ "
          "Labelled</th>", title, m->n);
  for (int c = 0; c < K; c++) fprintf(f, "<th>%s</th>", class_title[c]);
  fputs("<th>Total</th></tr>\n", f);
  for (int p = 0; p < K; p++) {
    fprintf(f, "<tr><th class=l>%s</th>", class_title[p]);
    for (int t = 0; t < K; t++) {
      double share = m->support[t] ? (double)m->cm[t][p] / m->support[t] : 0;
      int a = (int)lround(share * 100);
      fprintf(f, "<td style=\"background:rgba(%s,%.2f)\">%ld</td>",
              p == t ? "44,160,44" : "214,39,40", 0.08 + 0.6 * a / 100.0, m->cm[t][p]);
    }
    fprintf(f, "<td>%ld</td></tr>\n", m->predicted[p]);
  }
  fputs("<tr><th class=l>Total</th>", f);
  for (int t = 0; t < K; t++) fprintf(f, "<td>%ld</td>", m->support[t]);
  fprintf(f, "<td>%ld</td></tr></table>\n", m->n);
}

static void metrics_row(FILE *f, const char *name, const char *cls, double p,
                        double pw, double r, double rw, double f1, double f1w,
                        double auc, long n) {
  fprintf(f, "<tr%s%s><td class=l>%s</td>", cls ? " class=" : "", cls ? cls : "",
          name);
  double v[7] = {p, pw, r, rw, f1, f1w, auc};
  for (int i = 0; i < 7; i++) {
    fputs("<td>", f);
    num3(f, v[i]);
    fputs("</td>", f);
  }
  if (n >= 0) fprintf(f, "<td>%ld</td></tr>\n", n);
  else fputs("<td></td></tr>\n", f);
}

/* Table 2 of one level, with the paper's figure below ours. */
static void html_table2(FILE *f, const ctp_metrics *m, const double paper[4],
                        const char *title) {
  fprintf(f, "<h3>%s</h3>\n<table><tr><th class=l rowspan=2>Class</th>"
          "<th colspan=2>Precision</th><th colspan=2>Recall</th><th colspan=2>F1"
          "</th><th rowspan=2>ROC AUC</th><th rowspan=2>n</th></tr>\n<tr><th>"
          "Overall</th><th>Within one</th><th>Overall</th><th>Within one</th>"
          "<th>Overall</th><th>Within one</th></tr>\n", title);
  for (int c = 0; c < K; c++)
    metrics_row(f, class_title[c], NULL, m->precision[c], m->precision_w1[c],
                m->recall[c], m->recall_w1[c], m->f1[c], m->f1_w1[c], m->auc[c],
                m->support[c]);
  metrics_row(f, "Macro mean", "macro", m->macro_precision, m->macro_precision_w1,
              m->macro_recall, m->macro_recall_w1, m->macro_f1, m->macro_f1_w1,
              m->macro_auc, m->n);
  metrics_row(f, "Paper (test set)", "paper", paper[0], NAN, paper[1], NAN,
              paper[2], NAN, paper[3], -1);
  fprintf(f, "</table>\n<p class=note>Accuracy %.3f, within one phase %.3f.</p>\n",
          m->accuracy, m->accuracy_w1);
}

/* --- SVG: ROC curves ----------------------------------------------------- */

static void svg_roc(FILE *f, const level_items *li, const char *title) {
  const int W = 530, H = 400, L = 50, T = 30, P = 320;
  fprintf(f, "<svg width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" xmlns="
          "\"http://www.w3.org/2000/svg\" font-size=\"12\">\n", W, H, W, H);
  fprintf(f, "<text x=\"%d\" y=\"18\" font-weight=\"600\">", L);
  esc(f, title);
  fputs("</text>\n", f);
  fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
          "stroke=\"#333\"/>\n", L, T, P, P);
  for (int i = 0; i <= 4; i++) {
    double v = i / 4.0;
    fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#eee\"/>"
            "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.2f</text>"
            "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.2f</text>\n",
            L + v * P, T, L + v * P, T + P, L + v * P, T + P + 15, v, L - 4,
            T + P - v * P + 4, v);
  }
  fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#999\" "
          "stroke-dasharray=\"4 3\"/>\n",
          L, T + P, L + P, T);
  fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">false positive rate</text>\n"
          "<text transform=\"translate(14 %d) rotate(-90)\" text-anchor=\"middle\">"
          "true positive rate</text>\n", L + P / 2, T + P + 32, T + P / 2);
  fprintf(f, "<text x=\"%d\" y=\"%d\" font-weight=\"600\">class, AUC</text>\n",
          L + P + 12, T + P - 112);
  for (int c = 0; c < K; c++) {
    ctp_roc r;
    if (ctp_roc_one_vs_all(li->truth, li->scores, (size_t)li->n, c, &r)) continue;
    double *x = malloc((size_t)(r.npoints + 1) * sizeof *x);
    double *y = malloc((size_t)(r.npoints + 1) * sizeof *y);
    if (x && y && r.npoints > 0) {
      int n = roc_thin(&r, x, y);
      fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"",
              class_colour[c]);
      for (int i = 0; i < n; i++)
        fprintf(f, "%.1f,%.1f ", L + x[i] * P, T + P - y[i] * P);
      fputs("\"/>\n", f);
    }
    int ly = T + P - 90 + c * 18, lx = L + P + 12;
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" "
            "stroke-width=\"3\"/><text x=\"%d\" y=\"%d\">%s ", lx, ly - 4,
            lx + 18, ly - 4, class_colour[c], lx + 23, ly, class_title[c]);
    num3(f, r.auc);
    fputs("</text>\n", f);
    free(x);
    free(y);
    ctp_roc_free(&r);
  }
  fputs("</svg>\n", f);
}

/* --- SVG: bar charts ------------------------------------------------------ */

typedef struct {
  const char *title, *ylabel;
  int ngroups, nseries;
  const char *const *group;   /* (ngroups) x labels */
  const char *const *series;  /* (nseries) legend */
  const char *const *fill;    /* (nseries) colours */
  const double *mean, *sd;    /* (ngroups, nseries) */
  const char *mark;           /* (ngroups, nseries): '*' above the bar, or 0 */
  double ref;                 /* a dashed horizontal line; NaN for none */
  const double *ref_group;    /* (ngroups): a per-group reference tick, or NULL */
  const char *ref_label;
  double ymax;                /* 0: from the data */
} bar_chart;

/* A "nice" tick step (1, 2, 2.5 or 5 times a power of ten) giving about
 * five ticks up to y. */
static double nice_step(double y) {
  double raw = y / 5, p = pow(10, floor(log10(raw))), m = raw / p;
  return p * (m <= 1 ? 1 : m <= 2 ? 2 : m <= 2.5 ? 2.5 : m <= 5 ? 5 : 10);
}

/* The top of the y axis: the data's highest whisker (or the reference),
 * rounded up to a whole tick. */
static double chart_ymax(const bar_chart *c, double *step) {
  double y = isnan(c->ref) ? 0 : c->ref;
  for (int i = 0; i < c->ngroups * c->nseries; i++) {
    double v = c->mean[i] + (isnan(c->sd[i]) ? 0 : c->sd[i]);
    if (!isnan(v) && v > y) y = v;
  }
  if (c->ref_group)
    for (int g = 0; g < c->ngroups; g++)
      if (!isnan(c->ref_group[g]) && c->ref_group[g] > y) y = c->ref_group[g];
  if (c->ymax > 0) y = c->ymax;
  if (!(y > 0)) y = 1;
  *step = nice_step(y * 1.04);
  return ceil(y * 1.04 / *step) * *step;
}

static void svg_bars_axes(FILE *f, const bar_chart *c, int L, int T, int PW,
                          int PH, double ymax, double step) {
  fprintf(f, "<text x=\"%d\" y=\"18\" font-weight=\"600\">", L);
  esc(f, c->title);
  fputs("</text>\n", f);
  int nt = (int)lround(ymax / step);
  for (int i = 0; i <= nt; i++) {
    double v = step * i, y = T + PH - PH * v / ymax;
    fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#eee\"/>"
            "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", L, y, L + PW, y,
            L - 4, y + 4, round(v * 1000) / 1000);
  }
  fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>"
          "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>\n", L, T, L, T + PH, L,
          T + PH, L + PW, T + PH);
  fprintf(f, "<text transform=\"translate(14 %d) rotate(-90)\" text-anchor=\"middle\">",
          T + PH / 2);
  esc(f, c->ylabel);
  fputs("</text>\n", f);
}

static void svg_bar(FILE *f, double x, double bw, double mean, double sd,
                    double ymax, int T, int PH, const char *fill, char mark) {
  if (isnan(mean)) return;
  double y0 = T + PH, h = PH * fmin(mean, ymax) / ymax;
  fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
          "fill=\"%s\" stroke=\"#222\"/>\n",
          x, y0 - h, bw, h, fill);
  double top = y0 - h;
  if (!isnan(sd) && sd > 0) {
    double a = y0 - PH * fmin(mean + sd, ymax) / ymax;
    double b = y0 - PH * fmax(mean - sd, 0) / ymax;
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#222\"/>"
            "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#222\"/>\n",
            x + bw / 2, a, x + bw / 2, b, x + bw / 2 - 3, a, x + bw / 2 + 3, a);
    top = a;
  }
  if (mark)
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" "
            "font-weight=\"700\">%c</text>\n",
            x + bw / 2, top - 3, mark);
}

static void svg_bars(FILE *f, const bar_chart *c) {
  const int L = 55, T = 50, PH = 260;
  int gw = 18 * c->nseries + 16;
  if (gw * c->ngroups > 1000) gw = 1000 / c->ngroups;
  if (gw < 46) gw = 46;
  int PW = c->ngroups * gw, legend = 0;
  for (int s = 0; s < c->nseries; s++) legend += 30 + 7 * (int)strlen(c->series[s]);
  int need = legend > 8 * (int)strlen(c->title) ? legend : 8 * (int)strlen(c->title);
  if (PW < need) PW = need;
  if (PW < 260) PW = 260;
  gw = PW / c->ngroups;
  int W = L + PW + 20, H = T + PH + 95;
  double step, ymax = chart_ymax(c, &step);
  fprintf(f, "<svg width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" xmlns="
          "\"http://www.w3.org/2000/svg\" font-size=\"12\">\n", W, H, W, H);
  svg_bars_axes(f, c, L, T, PW, PH, ymax, step);
  for (int s = 0, lx = L + 10; s < c->nseries; s++) {
    fprintf(f, "<rect x=\"%d\" y=\"28\" width=\"12\" height=\"12\" fill=\"%s\" stroke=\"#222\"/>"
            "<text x=\"%d\" y=\"38\">", lx, c->fill[s], lx + 16);
    esc(f, c->series[s]);
    fputs("</text>\n", f);
    lx += 30 + 7 * (int)strlen(c->series[s]);
  }
  double bw = (gw - 12.0) / c->nseries;
  for (int g = 0; g < c->ngroups; g++) {
    double x0 = L + g * gw + 6;
    for (int s = 0; s < c->nseries; s++) {
      int i = g * c->nseries + s;
      svg_bar(f, x0 + s * bw, bw, c->mean[i], c->sd[i], ymax, T, PH, c->fill[s],
              c->mark ? c->mark[i] : 0);
    }
    if (c->ref_group && !isnan(c->ref_group[g])) {
      double y = T + PH - PH * fmin(c->ref_group[g], ymax) / ymax;
      fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#c00\" "
              "stroke-width=\"3\"/>\n", x0 - 2, y, x0 + gw - 10, y);
    }
    fprintf(f, "<text transform=\"translate(%.1f %d) rotate(-40)\" "
            "text-anchor=\"end\">", x0 + (gw - 12) / 2.0, T + PH + 14);
    esc(f, c->group[g]);
    fputs("</text>\n", f);
  }
  if (!isnan(c->ref)) {
    double y = T + PH - PH * fmin(c->ref, ymax) / ymax;
    fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#c00\" "
            "stroke-dasharray=\"5 4\"/>\n", L, y, L + PW, y);
  }
  if (c->ref_label) {
    fprintf(f, "<text x=\"%d\" y=\"%d\" fill=\"#c00\" text-anchor=\"end\">", L + PW, 22);
    esc(f, c->ref_label);
    fputs("</text>\n", f);
  }
  fputs("</svg>\n", f);
}

/* --- the masking section -------------------------------------------------- */

/* Fig. 2: top vs bottom fraction masked, every map, all classes. */
static void fig_masking_all(FILE *f, const ctp_eval *ev) {
  const ctp_masktest *t = &ev->mask;
  int n = t->nspecs, m = 2 * mask_groups(ev) * n;
  double *mean = calloc((size_t)2 * n, sizeof *mean), *sd = calloc((size_t)2 * n, sizeof *sd);
  char *mark = calloc((size_t)2 * n, 1), (*names)[32] = calloc((size_t)n, 32);
  const char **group = calloc((size_t)n, sizeof *group);
  if (mean && sd && mark && names && group) {
    for (int j = 0; j < n; j++) {
      ctp_mask_cell cell;
      ctp_masktest_cell(t, -1, j, &cell);
      mean[2 * j] = cell.top_mean;
      sd[2 * j] = cell.top_sd;
      mean[2 * j + 1] = cell.bottom_mean;
      sd[2 * j + 1] = cell.bottom_sd;
      mark[2 * j] = bonf(cell.p_top, m) < 0.05 ? '*' : 0;
      mark[2 * j + 1] = bonf(cell.p_bottom, m) < 0.05 ? '*' : 0;
      spec_name(ev, j, names[j], 32);
      group[j] = names[j];
    }
    static const char *const series[2] = {"top 10% masked", "bottom 10% masked"};
    static const char *const fill[2] = {"#222222", "#ffffff"};
    char title[128];
    snprintf(title, sizeof title, "Masking score by map, all classes (n = %d slices)",
             t->nslices);
    bar_chart c = {title, "100 x p(masked) / p(original)", n, 2, group, series, fill,
                   mean, sd, mark, 100.0, NULL, "- - 100 = no effect", 0};
    svg_bars(f, &c);
  }
  free(mean);
  free(sd);
  free(mark);
  free(names);
  free(group);
}

/* The paired comparison of a against b over all slices, or NULL. */
static const ctp_mask_cmp *find_cmp(const ctp_mask_cmp *c, int n, int a, int b) {
  for (int k = 0; k < n; k++)
    if (c[k].cls < 0 && c[k].a == a && c[k].b == b) return &c[k];
  return NULL;
}

/* Fig. 5: SAM vs Grad-CAM (top scores) by layer; '*' where the paired test
 * says they differ. */
static void fig_sam_vs_gradcam(FILE *f, const ctp_eval *ev, const ctp_mask_cmp *cmp,
                               int ncmp) {
  int layers[CTP_EVAL_MAX_LAYERS], nl = tested_layers(ev, layers);
  if (nl == 0) return;
  double mean[2 * CTP_EVAL_MAX_LAYERS], sd[2 * CTP_EVAL_MAX_LAYERS];
  char mark[2 * CTP_EVAL_MAX_LAYERS] = {0};
  const char *group[CTP_EVAL_MAX_LAYERS];
  for (int i = 0; i < nl; i++) {
    int s = spec_index(ev, CTP_MAP_SAM, layers[i]);
    int g = spec_index(ev, CTP_MAP_GRADCAM, layers[i]);
    ctp_mask_cell a, b;
    ctp_masktest_cell(&ev->mask, -1, s, &a);
    ctp_masktest_cell(&ev->mask, -1, g, &b);
    mean[2 * i] = a.top_mean, sd[2 * i] = a.top_sd;
    mean[2 * i + 1] = b.top_mean, sd[2 * i + 1] = b.top_sd;
    const ctp_mask_cmp *c = find_cmp(cmp, ncmp, s, g);
    if (c && c->p_adj < 0.05) mark[2 * i] = '*';
    group[i] = ctp_layer_name(layers[i]);
  }
  static const char *const series[2] = {"SAM", "Grad-CAM"};
  static const char *const fill[2] = {"#222222", "#ffffff"};
  bar_chart c = {"SAM vs Grad-CAM by layer, top 10% masked, all classes",
                 "100 x p(masked) / p(original)", nl, 2, group, series, fill, mean,
                 sd, mark, 100.0, NULL, NULL, 0};
  svg_bars(f, &c);
}

/* Fig. 6: SAM (top scores) by layer, per class and all. */
static void fig_sam_layers(FILE *f, const ctp_eval *ev) {
  int layers[CTP_EVAL_MAX_LAYERS], nl = tested_layers(ev, layers);
  if (nl == 0) return;
  enum { NS = K + 1 };
  double mean[NS * CTP_EVAL_MAX_LAYERS], sd[NS * CTP_EVAL_MAX_LAYERS];
  const char *group[CTP_EVAL_MAX_LAYERS];
  static const char *const series[NS] = {"all", "Noncon", "CM", "CM-neph", "Neph", "Pyelo"};
  static const char *const fill[NS] = {"#222222", "#999999", "#d62728", "#ff7f0e",
                                       "#2ca02c", "#1f77b4"};
  for (int i = 0; i < nl; i++) {
    int s = spec_index(ev, CTP_MAP_SAM, layers[i]);
    for (int c = -1; c < K; c++) {
      ctp_mask_cell cell;
      ctp_masktest_cell(&ev->mask, c, s, &cell);
      mean[i * NS + c + 1] = cell.n ? cell.top_mean : NAN;
      sd[i * NS + c + 1] = cell.n > 1 ? cell.top_sd : NAN;
    }
    group[i] = ctp_layer_name(layers[i]);
  }
  bar_chart c = {"SAM by layer and class, top 10% masked",
                 "100 x p(masked) / p(original)", nl, NS, group, series, fill, mean,
                 sd, NULL, 100.0, NULL, NULL, 0};
  svg_bars(f, &c);
}

/* Per-class table of top / bottom means. */
static void html_mask_table(FILE *f, const ctp_eval *ev) {
  const ctp_masktest *t = &ev->mask;
  int m = 2 * mask_groups(ev) * t->nspecs;
  char name[32];
  fputs("<table><tr><th class=l>Map</th><th>all</th>", f);
  for (int c = 0; c < K; c++) fprintf(f, "<th>%s</th>", class_title[c]);
  fputs("</tr>\n", f);
  for (int j = 0; j < t->nspecs; j++) {
    spec_name(ev, j, name, sizeof name);
    fprintf(f, "<tr><td class=l>%s</td>", name);
    for (int c = -1; c < K; c++) {
      ctp_mask_cell cell;
      ctp_masktest_cell(t, c, j, &cell);
      if (cell.n == 0) {
        fputs("<td>&ndash;</td>", f);
        continue;
      }
      fprintf(f, "<td>%.1f&plusmn;%.1f%s / %.1f%s <small>(%d)</small></td>",
              cell.top_mean, isnan(cell.top_sd) ? 0.0 : cell.top_sd,
              bonf(cell.p_top, m) < 0.05 ? "*" : "", cell.bottom_mean,
              bonf(cell.p_bottom, m) < 0.05 ? "*" : "", cell.n);
    }
    fputs("</tr>\n", f);
  }
  fputs("</table>\n", f);
}

static void html_comparisons(FILE *f, const ctp_eval *ev, const ctp_mask_cmp *c, int n) {
  char a[32], b[32];
  fputs("<table><tr><th class=l>Class</th><th class=l>a</th><th class=l>b</th>"
        "<th>n</th><th>mean a &minus; b</th><th>p (Bonferroni)</th></tr>\n", f);
  for (int k = 0; k < n; k++) {
    if (c[k].cls >= 0) continue;
    spec_name(ev, c[k].a, a, sizeof a);
    spec_name(ev, c[k].b, b, sizeof b);
    fprintf(f, "<tr><td class=l>all</td><td class=l>%s</td><td class=l>%s</td>"
            "<td>%d</td><td>%.1f</td><td>%.3g%s</td></tr>\n", a, b, c[k].t.n,
            c[k].t.mean, c[k].p_adj, c[k].p_adj < 0.05 ? " *" : "");
  }
  fputs("</table>\n", f);
}

static void html_masking(FILE *f, const ctp_eval *ev, const ctp_mask_cmp *cmp, int ncmp) {
  const ctp_masktest *t = &ev->mask;
  fputs("<h2>Masking specificity (paper Figs. 2, 5, 6)</h2>\n", f);
  if (t->nslices == 0) {
    fputs("<p class=note>No slice was explained (--mask-slices 0, or no "
          "correctly classified slice).</p>\n", f);
    return;
  }
  fprintf(f, "<p class=note>%d correctly classified slices (%d passed over), "
          "balanced over the classes. For each map the top (or, as control, "
          "the bottom) %.0f%% of input pixels ranked by |map| are replaced by "
          "N(0,1) noise; score = 100 &times; p<sub>c</sub>(masked) / "
          "p<sub>c</sub>(original) for the correct class c. Lower = the map "
          "found pixels the model used. Bars: mean &plusmn; SD; * differs from "
          "100 (one-sample t test, Bonferroni-corrected).</p>\n", t->nslices,
          ev->mask_passed_over, 100 * t->fraction);
  fputs("<figure>", f);
  fig_masking_all(f, ev);
  fputs("<figcaption>Fig. 2A analogue: every map, top vs bottom 10% masked."
        "</figcaption></figure>\n<figure>", f);
  fig_sam_vs_gradcam(f, ev, cmp, ncmp);
  fputs("<figcaption>Fig. 5 analogue: * SAM differs from Grad-CAM at that layer "
        "(paired t test, Bonferroni over all comparisons).</figcaption></figure>"
        "\n<figure>", f);
  fig_sam_layers(f, ev);
  fputs("<figcaption>Fig. 6 analogue: SAM at each layer, per class.</figcaption>"
        "</figure>\n<h3>Per class: top / bottom mean (n)</h3>\n", f);
  html_mask_table(f, ev);
  fputs("<h3>Paired comparisons of top-10% scores (Fig. 2B, 5), all classes</h3>\n", f);
  html_comparisons(f, ev, cmp, ncmp);
}

/* --- the pointing game ---------------------------------------------------- */

/* Enrichment (mass share / area share) per map and region; 1 = chance. */
static void fig_pointing(FILE *f, const ctp_eval *ev) {
  int n = ev->mask.nspecs;
  enum { NR = CTP_NUM_REGIONS };
  double *mean = calloc((size_t)n * NR, sizeof *mean), *sd = calloc((size_t)n * NR, sizeof *sd);
  char (*names)[32] = calloc((size_t)n, 32);
  const char **group = calloc((size_t)n, sizeof *group);
  if (mean && sd && names && group) {
    for (int j = 0; j < n; j++) {
      for (int g = 0; g < NR; g++)
        ctp_eval_pointing_enrichment(ev, j, g, &mean[NR * j + g], &sd[NR * j + g]);
      spec_name(ev, j, names[j], 32);
      group[j] = names[j];
    }
    static const char *const fill[NR] = {"#2ca02c", "#d62728", "#1f77b4", "#444444"};
    bar_chart c = {"Enrichment: share of |map| mass / share of area, per region",
                   "mass share / area share", n, NR, group, region_title, fill, mean, sd,
                   NULL, 1.0, NULL, "- - 1 = chance", 0};
    svg_bars(f, &c);
  }
  free(mean);
  free(sd);
  free(names);
  free(group);
}

static void html_pointing_table(FILE *f, const ctp_eval *ev) {
  char name[32];
  fputs("<table><tr><th class=l>Map</th>", f);
  for (int g = 0; g < CTP_NUM_REGIONS; g++)
    fprintf(f, "<th>%s</th>", region_title[g]);
  fputs("<th>enrichment, all three</th></tr>\n", f);
  for (int j = -1; j < ev->mask.nspecs; j++) {
    if (j < 0) fputs("<tr class=paper><td class=l>area share (baseline)</td>", f);
    else {
      spec_name(ev, j, name, sizeof name);
      fprintf(f, "<tr><td class=l>%s</td>", name);
    }
    for (int g = 0; g < CTP_NUM_REGIONS; g++) {
      double mean, sd;
      ctp_eval_pointing_stats(ev, j, g, &mean, &sd);
      fprintf(f, "<td>%.3f &plusmn; %.3f</td>", mean, isnan(sd) ? 0.0 : sd);
    }
    double e, es;
    ctp_eval_pointing_enrichment(ev, j, CTP_REGION_ANY, &e, &es);
    fprintf(f, "<td>%.2f&times;</td></tr>\n", e);
  }
  fputs("</table>\n", f);
}

static void html_pointing(FILE *f, const ctp_eval *ev) {
  fputs("<h2>Pointing game (phantom organ labels; beyond the paper)</h2>\n", f);
  if (ev->pointing_n == 0) {
    fputs("<p class=note>Not available: the data carry no organ labels (only "
          "phantom series do).</p>\n", f);
    return;
  }
  fprintf(f, "<p class=note>On the same %d slices: each map, as |value| on the "
          "input grid, split by the phantom's label of each pixel. The share of "
          "its total mass on the kidneys (cortex, medulla, collecting system), "
          "the aorta and the IVC, against the share of the image those "
          "structures cover: a map that knew nothing would score the area "
          "share (enrichment 1); the physiology says the evidence is there. "
          "Enrichment is the per-slice ratio, mean &plusmn; SD.</p>\n<figure>",
          ev->pointing_n);
  fig_pointing(f, ev);
  fputs("</figure>\n", f);
  html_pointing_table(f, ev);
}

/* --- the page --------------------------------------------------------------- */

static void html_kpis(FILE *f, const ctp_eval *ev) {
  const ctp_metrics *s = &ev->single, *v = &ev->voted;
  fprintf(f, "<div><span class=kpi>single-slice accuracy<b>%.3f</b></span>"
          "<span class=kpi>single-slice macro F1 / AUC<b>%.3f / %.3f</b></span>"
          "<span class=kpi>voted accuracy<b>%.3f</b></span>"
          "<span class=kpi>voted macro F1 / AUC<b>%.3f / %.3f</b></span></div>\n",
          s->accuracy, s->macro_f1, s->macro_auc, v->accuracy, v->macro_f1,
          v->macro_auc);
  if (ev->kidney_single.n > 0)
    fprintf(f, "<div><span class=kpi>kidney range: single-slice macro F1 / AUC"
            "<b>%.3f / %.3f</b></span><span class=kpi>kidney range: voted macro "
            "F1 / AUC<b>%.3f / %.3f</b></span></div>\n", ev->kidney_single.macro_f1,
            ev->kidney_single.macro_auc, ev->kidney_voted.macro_f1,
            ev->kidney_voted.macro_auc);
}

static void html_header(FILE *f, const ctp_eval *ev, const ctp_model *m,
                        const ctp_eval_opts *o) {
  fprintf(f, "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
          "<title>ctphase evaluation</title><style>%s</style></head><body>\n"
          "<h1>ctphase evaluation report</h1>\n<p class=note>Model <code>", css);
  esc(f, o->model_path ? o->model_path : "(in memory)");
  fprintf(f, "</code> (sha256 %.16s&hellip;, %dx%d, %d channel%s), trained on ",
          m->sha256, m->input_size, m->input_size, m->in_channels,
          m->in_channels > 1 ? "s" : "");
  const char *tr = ctp_model_meta(m, "trained_on");
  esc(f, tr ? tr : "(unknown)");
  fprintf(f, ".<br>Data: %s", source_name(ev));
  const char *what = o->split_dir ? o->split_dir : o->data_dir;
  if (what) {
    fputs(" <code>", f);
    esc(f, what);
    fputs("</code>", f);
  }
  fprintf(f, ", %d series, %d slices (%s per series). Methods and definitions: "
          "docs/evaluation.md.</p>\n", ev->voted.n ? (int)ev->voted.n : ev->nseries,
          ev->nslices, o->slices_per_series > 0 ? "up to --slices-per-series" : "all");
}

static void html_metrics(FILE *f, const ctp_eval *ev) {
  level_items ls = {0}, lv = {0};
  fputs("<h2>Table 1. Confusion matrices</h2>\n", f);
  html_confusion(f, &ev->single, "Single-slice prediction");
  html_confusion(f, &ev->voted, "Single-slice prediction followed by multislice voting");
  fputs("<h2>Table 2. Classification performance</h2>\n<p class=note>Within one "
        "phase: a prediction one class away (|predicted &minus; labelled| &le; 1) "
        "counts as right. Macro mean: the unweighted mean over classes with "
        "test items. Voted ROC scores are the series' vote shares.</p>\n", f);
  html_table2(f, &ev->single, paper_single, "Single-slice prediction");
  html_table2(f, &ev->voted, paper_voted, "Multislice voting");
  fprintf(f, "<p class=note>%d of %ld voted series fall below the "
          "indeterminate margin. Read by the argmax of each series' mean "
          "probability instead of the majority (not the paper's rule): accuracy "
          "%.3f, macro F1 %.3f, macro AUC on mean probabilities %.3f.</p>\n",
          ev->indeterminate, ev->voted.n, ev->voted_mean.accuracy,
          ev->voted_mean.macro_f1, ev->voted_mean.macro_auc);
  if (ev->kidney_single.n > 0) {
    fprintf(f, "<h2>The paper's slice range</h2>\n<p class=note>The paper scored "
            "&ldquo;images from the top to the bottom of the kidneys&rdquo;; the "
            "phantom's series reach 0&ndash;3 cm beyond each pole. The same model "
            "on the %ld slices whose labels show a kidney, voted over each "
            "series' kidney slices:</p>\n", ev->kidney_single.n);
    html_confusion(f, &ev->kidney_single, "Single slice, kidney range");
    html_confusion(f, &ev->kidney_voted, "Voted, kidney range");
    html_table2(f, &ev->kidney_single, paper_single, "Single slice, kidney range");
    html_table2(f, &ev->kidney_voted, paper_voted, "Multislice voting, kidney range");
  }
  fputs("<h2>ROC curves (one vs all)</h2>\n<div>", f);
  if (!level_items_get(ev, 0, &ls)) svg_roc(f, &ls, "Single slice");
  if (!level_items_get(ev, 1, &lv)) svg_roc(f, &lv, "Voted (vote share)");
  fputs("</div>\n", f);
  level_items_free(&ls);
  level_items_free(&lv);
}

static void html_examples(FILE *f, const ctp_eval *ev) {
  if (ev->nexamples == 0) return;
  fputs("<h2>Examples</h2>\n<p class=note>Correctly classified slices from the "
        "masking set. Panels: CT (window 40/400; outlines from the phantom labels: "
        "kidney green, aorta red, IVC blue), saliency, guided backprop, CAM, "
        "Grad-CAM and SAM. Rainbow: purple low, red high; bottom 2.5% not drawn."
        "</p>\n", f);
  for (int i = 0; i < ev->nexamples; i++) {
    const ctp_eval_slice *sl = &ev->slices[ev->examples[i].slice];
    fputs("<figure><img class=ex src=\"", f);
    esc(f, ev->examples[i].file);
    fprintf(f, "\" alt=\"example %d\"><figcaption>%s, p = %.3f; series ", i + 1,
            class_title[sl->label], sl->probs[sl->label]);
    esc(f, ev->series[sl->series].id);
    fprintf(f, ", slice %d.</figcaption></figure>\n", sl->z);
  }
}

static int write_html(const ctp_eval *ev, const ctp_model *m, const ctp_eval_opts *o,
                      const ctp_mask_cmp *cmp, int ncmp, const char *path) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f) return ctp_seterr(CTP_ENOMEM, "out of memory for the report");
  html_header(f, ev, m, o);
  html_kpis(f, ev);
  html_metrics(f, ev);
  html_masking(f, ev, cmp, ncmp);
  html_pointing(f, ev);
  html_examples(f, ev);
  fputs("</body></html>\n", f);
  int r = fclose(f) ? ctp_seterr(CTP_ENOMEM, "report: write failed")
                    : ctp_file_write_atomic(path, buf, len);
  free(buf);
  return r;
}

int ctp_eval_write_report(const ctp_eval *ev, const ctp_model *m,
                          const ctp_eval_opts *o) {
  if (!ev || !m || !o || !o->report_dir)
    return ctp_seterr(CTP_EINVAL, "report: needs an evaluation and a folder");
  char jpath[4096], hpath[4096];
  if (snprintf(jpath, sizeof jpath, "%s/metrics.json", o->report_dir) >= (int)sizeof jpath ||
      snprintf(hpath, sizeof hpath, "%s/report.html", o->report_dir) >= (int)sizeof hpath)
    return ctp_seterr(CTP_EINVAL, "report folder path too long");
  ctp_mask_cmp *cmp = NULL;
  int ncmp = 0, r = 0;
  if (ev->mask.nslices > 0) r = ctp_masktest_compare(&ev->mask, &cmp, &ncmp);
  if (!r) r = write_json(ev, m, o, cmp, ncmp, jpath);
  if (!r) r = write_html(ev, m, o, cmp, ncmp, hpath);
  free(cmp);
  return r;
}
