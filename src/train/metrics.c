/*
 * metrics.c — the paper's classification statistics: confusion matrix,
 * precision / recall / F1 overall and "within one phase", and one-vs-all
 * ROC curves with their AUC (definitions in include/ctphase/metrics.h).
 *
 * Everything starts from a confusion matrix cm[true][predicted], so that a
 * published table (the paper's Table 1) can be fed in directly and its
 * Table 2 recomputed. The ROC code sorts items by score, high to low, and
 * emits one point per group of equal scores: tied items move the curve
 * diagonally, which is what makes a tie count one half in the area.
 *
 * Pure functions of their inputs; no state, no threads. NaN marks a value
 * that is undefined (a class with no items, a class never predicted).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ctphase/error.h"
#include "ctphase/metrics.h"

#define K CTP_METRICS_CLASSES

int ctp_argmax(const float *scores, int k) {
  int best = 0;
  for (int c = 1; c < k; c++)
    if (scores[c] > scores[best]) best = c;
  return best;
}

int ctp_confusion_add(long cm[K][K], const int *truth, const int *pred,
                      size_t n) {
  for (size_t i = 0; i < n; i++)
    if (truth[i] < 0 || truth[i] >= K || pred[i] < 0 || pred[i] >= K)
      return ctp_seterr(CTP_EINVAL, "item %zu: class %d -> %d outside 0..%d",
                        i, truth[i], pred[i], K - 1);
  for (size_t i = 0; i < n; i++) cm[truth[i]][pred[i]]++;
  return 0;
}

static double ratio(long num, long den) {
  return den > 0 ? (double)num / (double)den : NAN;
}

static double f1_of(double p, double r) {
  if (isnan(p) || isnan(r)) return NAN;
  return p + r > 0 ? 2.0 * p * r / (p + r) : 0.0;
}

/* Mean of v[c] over the classes with items, NaN values left out. */
static double macro(const double *v, const long *support) {
  double s = 0;
  int n = 0;
  for (int c = 0; c < K; c++)
    if (support[c] > 0 && !isnan(v[c])) s += v[c], n++;
  return n ? s / n : NAN;
}

/* Items of true class t predicted within one class of c (or exactly c). */
static long near(const long cm[K][K], int t, int c, int rows) {
  long s = 0;
  for (int o = -1; o <= 1; o++) {
    int j = c + o;
    if (j < 0 || j >= K) continue;
    s += rows ? cm[t][j] : cm[j][t];
  }
  return s;
}

/* Per-class precision and recall, exact or within one. */
static void per_class(const long cm[K][K], ctp_metrics *m) {
  for (int c = 0; c < K; c++) {
    long pred = m->predicted[c], sup = m->support[c];
    m->precision[c] = ratio(cm[c][c], pred);
    m->recall[c] = ratio(cm[c][c], sup);
    /* Column c (predicted c) summed over true classes c-1..c+1. */
    m->precision_w1[c] = ratio(near(cm, c, c, 0), pred);
    /* Row c (truly c) summed over predictions c-1..c+1. */
    m->recall_w1[c] = ratio(near(cm, c, c, 1), sup);
    if (pred == 0 && sup > 0) m->precision[c] = m->precision_w1[c] = 0.0;
    m->f1[c] = f1_of(m->precision[c], m->recall[c]);
    m->f1_w1[c] = f1_of(m->precision_w1[c], m->recall_w1[c]);
    m->auc[c] = NAN;
  }
}

void ctp_metrics_from_confusion(const long cm[K][K], ctp_metrics *m) {
  memset(m, 0, sizeof *m);
  long right = 0, right_w1 = 0;
  for (int t = 0; t < K; t++)
    for (int p = 0; p < K; p++) {
      m->cm[t][p] = cm[t][p];
      m->n += cm[t][p];
      m->support[t] += cm[t][p];
      m->predicted[p] += cm[t][p];
      if (p == t) right += cm[t][p];
      if (abs(p - t) <= 1) right_w1 += cm[t][p];
    }
  m->accuracy = ratio(right, m->n);
  m->accuracy_w1 = ratio(right_w1, m->n);
  per_class(cm, m);
  m->macro_precision = macro(m->precision, m->support);
  m->macro_recall = macro(m->recall, m->support);
  m->macro_f1 = macro(m->f1, m->support);
  m->macro_precision_w1 = macro(m->precision_w1, m->support);
  m->macro_recall_w1 = macro(m->recall_w1, m->support);
  m->macro_f1_w1 = macro(m->f1_w1, m->support);
  m->macro_auc = NAN;
}

int ctp_metrics_compute(const int *truth, const float *scores, size_t n,
                        ctp_metrics *out) {
  long cm[K][K];
  memset(cm, 0, sizeof cm);
  int *pred = malloc((n ? n : 1) * sizeof *pred);
  if (!pred) return ctp_seterr(CTP_ENOMEM, "out of memory");
  for (size_t i = 0; i < n; i++) pred[i] = ctp_argmax(scores + i * K, K);
  int r = ctp_confusion_add(cm, truth, pred, n);
  free(pred);
  if (r) return r;
  ctp_metrics_from_confusion(cm, out);
  double auc_sum = 0;
  int auc_n = 0;
  for (int c = 0; c < K; c++) {
    ctp_roc roc;
    if ((r = ctp_roc_one_vs_all(truth, scores, n, c, &roc))) return r;
    out->auc[c] = roc.auc;
    ctp_roc_free(&roc);
    if (out->support[c] > 0 && !isnan(out->auc[c])) auc_sum += out->auc[c], auc_n++;
  }
  out->macro_auc = auc_n ? auc_sum / auc_n : NAN;
  return 0;
}

/* --- ROC ------------------------------------------------------------- */

typedef struct {
  float score;
  unsigned char pos;
} scored;

/* Descending score; the order inside a tie does not matter (a tie is one
 * step of the curve). */
static int by_score_desc(const void *pa, const void *pb) {
  float a = ((const scored *)pa)->score, b = ((const scored *)pb)->score;
  return a > b ? -1 : a < b;
}

void ctp_roc_free(ctp_roc *r) {
  if (!r) return;
  free(r->fpr);
  free(r->tpr);
  free(r->threshold);
  memset(r, 0, sizeof *r);
}

static int roc_alloc(ctp_roc *r, size_t npts) {
  r->fpr = malloc(npts * sizeof *r->fpr);
  r->tpr = malloc(npts * sizeof *r->tpr);
  r->threshold = malloc(npts * sizeof *r->threshold);
  if (r->fpr && r->tpr && r->threshold) return 0;
  ctp_roc_free(r);
  return ctp_seterr(CTP_ENOMEM, "out of memory for a ROC curve");
}

static void roc_point(ctp_roc *r, long fp, long tp, double thr) {
  r->fpr[r->npoints] = (double)fp / (double)r->negatives;
  r->tpr[r->npoints] = (double)tp / (double)r->positives;
  r->threshold[r->npoints++] = thr;
}

/* Walks the sorted items: one point after each group of equal scores. */
static void roc_walk(ctp_roc *r, const scored *s, size_t n) {
  long tp = 0, fp = 0;
  roc_point(r, 0, 0, INFINITY);
  for (size_t i = 0; i < n;) {
    size_t j = i;
    for (; j < n && s[j].score == s[i].score; j++) {
      if (s[j].pos) tp++;
      else fp++;
    }
    roc_point(r, fp, tp, s[i].score);
    i = j;
  }
  double a = 0;
  for (int k = 1; k < r->npoints; k++)
    a += (r->fpr[k] - r->fpr[k - 1]) * (r->tpr[k] + r->tpr[k - 1]) * 0.5;
  r->auc = a;
}

int ctp_roc_compute(const unsigned char *positive, const float *score,
                    size_t n, ctp_roc *out) {
  memset(out, 0, sizeof *out);
  out->auc = NAN;
  for (size_t i = 0; i < n; i++) {
    if (isnan(score[i]))
      return ctp_seterr(CTP_EINVAL, "ROC: score of item %zu is NaN", i);
    if (positive[i]) out->positives++;
    else out->negatives++;
  }
  if (out->positives == 0 || out->negatives == 0) return 0;
  scored *s = malloc(n * sizeof *s);
  if (!s) return ctp_seterr(CTP_ENOMEM, "out of memory");
  for (size_t i = 0; i < n; i++) s[i].score = score[i], s[i].pos = positive[i] != 0;
  qsort(s, n, sizeof *s, by_score_desc);
  int r = roc_alloc(out, n + 1);
  if (!r) roc_walk(out, s, n);
  free(s);
  return r;
}

double ctp_roc_auc(const unsigned char *positive, const float *score,
                   size_t n) {
  ctp_roc r;
  if (ctp_roc_compute(positive, score, n, &r)) return NAN;
  double a = r.auc;
  ctp_roc_free(&r);
  return a;
}

int ctp_roc_one_vs_all(const int *truth, const float *scores, size_t n,
                       int cls, ctp_roc *out) {
  memset(out, 0, sizeof *out);
  out->auc = NAN;
  if (cls < 0 || cls >= K)
    return ctp_seterr(CTP_EINVAL, "ROC: class %d outside 0..%d", cls, K - 1);
  unsigned char *pos = malloc(n ? n : 1);
  float *s = malloc((n ? n : 1) * sizeof *s);
  int r = 0;
  if (!pos || !s) r = ctp_seterr(CTP_ENOMEM, "out of memory");
  for (size_t i = 0; !r && i < n; i++) {
    pos[i] = truth[i] == cls;
    s[i] = scores[i * K + cls];
  }
  if (!r) r = ctp_roc_compute(pos, s, n, out);
  free(pos);
  free(s);
  return r;
}
