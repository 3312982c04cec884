/*
 * metrics.h — how good is a classifier? The paper's statistics
 * (Philbrick et al. 2018, "Statistics", Tables 1 and 2): confusion matrix,
 * precision, recall, F1 and one-vs-all ROC curves with their AUC, each
 * "overall" and "within one phase".
 *
 * Definitions (docs/evaluation.md has the long form):
 *
 *   confusion   cm[t][p] = number of items of true class t predicted as p
 *               (rows true, columns predicted; the paper prints the
 *               transpose, rows predicted, and the report follows it).
 *   precision   of class c: cm[c][c] / sum_t cm[t][c] (items predicted c);
 *   recall      of class c: cm[c][c] / sum_p cm[c][p] (items truly c);
 *   F1          2PR / (P + R), 0 when P + R = 0.
 *   within one  the phases are ordered (noncon, cm, cmneph, neph, pyelo), so
 *               a prediction p for true class t counts as right when
 *               |p - t| <= 1. Precision within one of c: items predicted c
 *               whose true class is c or a neighbour of c, over items
 *               predicted c; recall within one: items truly c predicted c
 *               or a neighbour, over items truly c; F1 from those two. This
 *               reproduces the paper's Table 2 from its Table 1.
 *   AUC         one-vs-all for class c: positives are the items of class c,
 *               the score is the item's score for c; the area under the ROC
 *               curve by the trapezoid rule over the distinct thresholds.
 *               Equal scores form one step of the curve (a diagonal
 *               segment), so a tie counts one half, as in the Mann-Whitney
 *               statistic: perfectly separated 1, reversed 0, all tied 0.5.
 *
 * Undefined values are NaN: precision of a class never predicted, recall
 * and AUC of a class with no items (AUC also of one with no negatives).
 * Except that a class that has items but is never predicted gets precision
 * 0, as its items were all missed (scikit-learn's zero_division=0). Macro
 * averages are the plain means over the classes that have items ("present"
 * classes) of the per-class values, NaN values left out; macro F1 is the
 * mean of the per-class F1, not the F1 of the macro P and R.
 *
 * The predicted class of an item is the argmax of its scores, the first
 * class on ties (as ctp_vote_pandemonium picks its winner).
 */
#ifndef CTPHASE_METRICS_H
#define CTPHASE_METRICS_H

#include <stddef.h>

#include "ctphase/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Classes handled: the model's five. */
#define CTP_METRICS_CLASSES CTP_NUM_CLASSES

/* Everything computed from a confusion matrix (no scores needed). */
typedef struct {
  long cm[CTP_METRICS_CLASSES][CTP_METRICS_CLASSES]; /* [true][predicted] */
  long n;                                       /* items */
  long support[CTP_METRICS_CLASSES];            /* items per true class */
  long predicted[CTP_METRICS_CLASSES];          /* items per predicted class */
  double accuracy, accuracy_w1;                 /* exact, |p - t| <= 1 */
  double precision[CTP_METRICS_CLASSES], recall[CTP_METRICS_CLASSES];
  double f1[CTP_METRICS_CLASSES];
  double precision_w1[CTP_METRICS_CLASSES], recall_w1[CTP_METRICS_CLASSES];
  double f1_w1[CTP_METRICS_CLASSES];
  double macro_precision, macro_recall, macro_f1;
  double macro_precision_w1, macro_recall_w1, macro_f1_w1;
  /* Filled by ctp_metrics_compute() only (NaN otherwise). */
  double auc[CTP_METRICS_CLASSES];
  double macro_auc;
} ctp_metrics;

/* The argmax of k scores, the first one on ties. */
int ctp_argmax(const float *scores, int k);

/* Adds n (truth, prediction) pairs to a confusion matrix cm[t][p]; pairs
 * with a class outside 0..4 are refused (CTP_EINVAL) and nothing is added. */
int ctp_confusion_add(long cm[CTP_METRICS_CLASSES][CTP_METRICS_CLASSES],
                      const int *truth, const int *pred, size_t n);

/* Precision, recall, F1 (overall and within one) and accuracy from a
 * confusion matrix; the AUCs are set to NaN. */
void ctp_metrics_from_confusion(
    const long cm[CTP_METRICS_CLASSES][CTP_METRICS_CLASSES], ctp_metrics *out);

/* Everything, for n items with true classes truth[i] and scores
 * scores[i*5 + c] (probabilities, vote shares...): predictions are the
 * argmax of the scores. */
int ctp_metrics_compute(const int *truth, const float *scores, size_t n,
                        ctp_metrics *out);

/* --- ROC ------------------------------------------------------------- */

/* A ROC curve: points from (0,0) to (1,1), one per distinct threshold,
 * thresholds decreasing; fpr and tpr non-decreasing. */
typedef struct {
  int npoints;
  double *fpr, *tpr;     /* (npoints) */
  double *threshold;     /* (npoints); +inf at the first point */
  long positives, negatives;
  double auc;            /* trapezoid area; NaN without both kinds */
} ctp_roc;

/* The curve of n items: positive[i] != 0 marks a positive, score[i] its
 * score (higher = more positive). NaN scores are refused (CTP_EINVAL). With
 * no positives or no negatives the curve is empty (npoints 0) and auc NaN. */
int ctp_roc_compute(const unsigned char *positive, const float *score,
                    size_t n, ctp_roc *out);
void ctp_roc_free(ctp_roc *r);
/* Only the AUC (same definition, no curve kept). */
double ctp_roc_auc(const unsigned char *positive, const float *score,
                   size_t n);
/* The one-vs-all curve of class cls over n items with scores (n,5). */
int ctp_roc_one_vs_all(const int *truth, const float *scores, size_t n,
                       int cls, ctp_roc *out);

#ifdef __cplusplus
}
#endif
#endif
