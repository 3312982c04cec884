/*
 * test-metrics.c — the evaluation statistics (include/ctphase/metrics.h)
 * on hand-made tables whose answers are known: ROC areas of separated,
 * reversed and tied scores, a small curve worked out on paper, a brute-force
 * Mann-Whitney count on random tied scores, F1 with a class that is never
 * predicted, and the paper's own Table 2 recomputed from its Table 1.
 */
#include <stdint.h>

#include "ctphase/error.h"
#include "ctphase/metrics.h"
#include "test.h"

TEST_IMPL(metrics_auc_separated) {
  unsigned char pos[] = {1, 1, 1, 0, 0};
  float s[] = {0.9f, 0.8f, 0.7f, 0.2f, 0.1f};
  ASSERT_NEAR(ctp_roc_auc(pos, s, 5), 1.0, 1e-12);
  return 0;
}

TEST_IMPL(metrics_auc_reversed) {
  unsigned char pos[] = {1, 1, 1, 0, 0};
  float s[] = {0.1f, 0.2f, 0.3f, 0.8f, 0.9f};
  ASSERT_NEAR(ctp_roc_auc(pos, s, 5), 0.0, 1e-12);
  return 0;
}

/* Every score equal: one diagonal step from (0,0) to (1,1). */
TEST_IMPL(metrics_auc_all_ties) {
  unsigned char pos[] = {1, 0, 1, 0, 0, 1, 0};
  float s[] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
  ctp_roc r;
  ASSERT_OK(ctp_roc_compute(pos, s, 7, &r));
  ASSERT_EQ_INT(r.npoints, 2);
  ASSERT_NEAR(r.fpr[1], 1.0, 0);
  ASSERT_NEAR(r.tpr[1], 1.0, 0);
  ASSERT_NEAR(r.auc, 0.5, 1e-12);
  ASSERT_EQ_INT(r.positives, 3);
  ASSERT_EQ_INT(r.negatives, 4);
  ctp_roc_free(&r);
  return 0;
}

/* Positives 0.9, 0.6, 0.4; negatives 0.7, 0.4, 0.2, 0.1. Of the 12 pairs
 * the positive wins 4 + 3 + 2 and ties one (0.4 = 0.4): AUC 9.5 / 12. The
 * curve, threshold by threshold: 0.9 (0, 1/3), 0.7 (1/4, 1/3), 0.6 (1/4,
 * 2/3), 0.4 (2/4, 1) — the tie moves both ways at once — 0.2 (3/4, 1),
 * 0.1 (1, 1). */
TEST_IMPL(metrics_auc_by_hand) {
  unsigned char pos[] = {0, 1, 0, 1, 0, 1, 0};
  float s[] = {0.1f, 0.6f, 0.4f, 0.9f, 0.7f, 0.4f, 0.2f};
  double fpr[] = {0, 0, 0.25, 0.25, 0.5, 0.75, 1};
  double tpr[] = {0, 1.0 / 3, 1.0 / 3, 2.0 / 3, 1, 1, 1};
  ctp_roc r;
  ASSERT_OK(ctp_roc_compute(pos, s, 7, &r));
  ASSERT_EQ_INT(r.npoints, 7);
  for (int i = 0; i < 7; i++) {
    ASSERT_NEAR(r.fpr[i], fpr[i], 1e-12);
    ASSERT_NEAR(r.tpr[i], tpr[i], 1e-12);
  }
  ASSERT(isinf(r.threshold[0]));
  ASSERT_NEAR(r.threshold[4], 0.4, 1e-6);
  ASSERT_NEAR(r.auc, 9.5 / 12.0, 1e-12);
  ctp_roc_free(&r);
  return 0;
}

/* On random scores with many ties the trapezoid area equals the pair count
 * P(pos > neg) + P(pos = neg) / 2. */
TEST_IMPL(metrics_auc_matches_pair_count) {
  enum { N = 300 };
  unsigned char pos[N];
  float s[N];
  uint64_t st = 12345;
  for (int i = 0; i < N; i++) {
    st = st * 6364136223846793005ULL + 1442695040888963407ULL;
    pos[i] = (st >> 60) < 5;
    s[i] = (float)((st >> 33) % 7) + (pos[i] ? 1.0f : 0.0f) * ((st >> 20) % 2);
  }
  double wins = 0;
  long pairs = 0;
  for (int i = 0; i < N; i++)
    for (int j = 0; j < N; j++)
      if (pos[i] && !pos[j]) {
        pairs++;
        wins += s[i] > s[j] ? 1.0 : s[i] == s[j] ? 0.5 : 0.0;
      }
  ASSERT(pairs > 1000);
  ASSERT_NEAR(ctp_roc_auc(pos, s, N), wins / pairs, 1e-12);
  return 0;
}

/* No negatives (or no positives): no curve, AUC NaN; NaN scores refused. */
TEST_IMPL(metrics_roc_degenerate) {
  unsigned char pos[] = {1, 1};
  float s[] = {0.3f, 0.4f};
  ctp_roc r;
  ASSERT_OK(ctp_roc_compute(pos, s, 2, &r));
  ASSERT_EQ_INT(r.npoints, 0);
  ASSERT(isnan(r.auc));
  ctp_roc_free(&r);
  unsigned char mixed[] = {1, 0};
  float bad[] = {NAN, 0.1f};
  ASSERT_EQ_INT(ctp_roc_compute(mixed, bad, 2, &r), CTP_EINVAL);
  ctp_roc_free(&r);
  ASSERT_EQ_INT(ctp_roc_one_vs_all(NULL, NULL, 0, 5, &r), CTP_EINVAL);
  return 0;
}

/* Truth 0 0 1 1 2, predictions 0 1 1 1 1: class 2 has an item and is never
 * predicted (precision 0, F1 0); classes 3 and 4 have no item (NaN, and
 * left out of the macro means). */
TEST_IMPL(metrics_f1_zero_class) {
  int t[] = {0, 0, 1, 1, 2}, p[] = {0, 1, 1, 1, 1};
  long cm[5][5] = {{0}};
  ctp_metrics m;
  ASSERT_OK(ctp_confusion_add(cm, t, p, 5));
  ctp_metrics_from_confusion(cm, &m);
  ASSERT_EQ_INT(m.n, 5);
  ASSERT_NEAR(m.accuracy, 0.6, 1e-12);
  ASSERT_NEAR(m.accuracy_w1, 1.0, 1e-12);
  ASSERT_NEAR(m.precision[0], 1.0, 1e-12);
  ASSERT_NEAR(m.recall[0], 0.5, 1e-12);
  ASSERT_NEAR(m.f1[0], 2.0 / 3, 1e-12);
  ASSERT_NEAR(m.precision[1], 0.5, 1e-12);
  ASSERT_NEAR(m.recall[1], 1.0, 1e-12);
  ASSERT_NEAR(m.precision[2], 0.0, 0);
  ASSERT_NEAR(m.recall[2], 0.0, 0);
  ASSERT_NEAR(m.f1[2], 0.0, 0);
  ASSERT(isnan(m.recall[3]) && isnan(m.precision[4]) && isnan(m.f1[4]));
  ASSERT_NEAR(m.macro_precision, 0.5, 1e-12);
  ASSERT_NEAR(m.macro_recall, 0.5, 1e-12);
  ASSERT_NEAR(m.macro_f1, 4.0 / 9, 1e-12);
  /* Within one: every prediction is at most one class off. */
  ASSERT_NEAR(m.precision_w1[1], 1.0, 1e-12);
  ASSERT_NEAR(m.recall_w1[2], 1.0, 1e-12);
  ASSERT_NEAR(m.recall_w1[0], 1.0, 1e-12);
  ASSERT_NEAR(m.macro_recall_w1, 1.0, 1e-12);
  ASSERT(isnan(m.auc[0]) && isnan(m.macro_auc));
  return 0;
}

/* The paper's Table 1 (single slice, rows predicted, columns labelled) gives
 * its Table 2. Cells where the printed Table 2 disagrees with its own
 * Table 1 are left out: F1 of cmneph (0.691 printed, 0.708 from the
 * matrix), precision within one of noncon and cmneph (0.991 and 0.912
 * printed, 0.979 and 0.992), recall within one of pyelo (0.991 printed,
 * 0.980). */
TEST_IMPL(metrics_paper_table2) {
  static const long printed[5][5] = {{2876, 12, 1, 25, 36},
                                     {7, 2247, 179, 13, 13},
                                     {0, 216, 1199, 223, 14},
                                     {2, 16, 292, 1548, 144},
                                     {0, 8, 65, 153, 2876}};
  static const double P[] = {0.975, 0.914, 0.726, 0.773, 0.927};
  static const double R[] = {0.997, 0.899, 0.691, 0.789, 0.933};
  static const double F[] = {0.986, 0.906, NAN, 0.781, 0.930};
  static const double PW[] = {NAN, 0.989, NAN, 0.991, 0.976};
  static const double RW[] = {0.999, 0.990, 0.962, 0.981, NAN};
  long cm[5][5];
  for (int t = 0; t < 5; t++)
    for (int p = 0; p < 5; p++) cm[t][p] = printed[p][t];
  ctp_metrics m;
  ctp_metrics_from_confusion(cm, &m);
  for (int c = 0; c < 5; c++) {
    ASSERT_NEAR(m.precision[c], P[c], 5e-4);
    ASSERT_NEAR(m.recall[c], R[c], 5e-4);
    if (!isnan(F[c])) ASSERT_NEAR(m.f1[c], F[c], 5e-4);
    if (!isnan(PW[c])) ASSERT_NEAR(m.precision_w1[c], PW[c], 5e-4);
    if (!isnan(RW[c])) ASSERT_NEAR(m.recall_w1[c], RW[c], 5e-4);
  }
  ASSERT_EQ_INT(m.n, 12165);
  ASSERT_NEAR(m.macro_recall, 0.862, 5e-4);
  return 0;
}

/* From scores: argmax with ties to the first class, AUCs per class, and a
 * class outside 0..4 refused. */
TEST_IMPL(metrics_compute_from_scores) {
  int t[] = {0, 1, 2, 3, 4, 4};
  float s[6 * 5] = {
      0.6f, 0.1f, 0.1f, 0.1f, 0.1f,  /* 0 -> 0 */
      0.3f, 0.3f, 0.2f, 0.1f, 0.1f,  /* 1 -> 0 (tie, first class) */
      0.0f, 0.1f, 0.7f, 0.1f, 0.1f,  /* 2 -> 2 */
      0.0f, 0.0f, 0.1f, 0.8f, 0.1f,  /* 3 -> 3 */
      0.0f, 0.0f, 0.1f, 0.2f, 0.7f,  /* 4 -> 4 */
      0.0f, 0.0f, 0.0f, 0.6f, 0.4f}; /* 4 -> 3 */
  ctp_metrics m;
  ASSERT_OK(ctp_metrics_compute(t, s, 6, &m));
  ASSERT_EQ_INT(m.cm[1][0], 1);
  ASSERT_EQ_INT(m.cm[4][3], 1);
  ASSERT_NEAR(m.accuracy, 4.0 / 6, 1e-12);
  ASSERT_NEAR(m.auc[2], 1.0, 1e-12);
  /* Class 4: positives 0.7, 0.4; negatives 0.1, 0.1, 0.1, 0.1: AUC 1.
   * Class 3: positive 0.8 beats all: 1. Class 0: 0.6 beats 0.3, 0, 0, 0, 0. */
  ASSERT_NEAR(m.auc[4], 1.0, 1e-12);
  ASSERT_NEAR(m.auc[0], 1.0, 1e-12);
  /* Class 1: positive 0.3 against 0.1, 0.1, 0, 0, 0: 1. */
  ASSERT_NEAR(m.macro_auc, 1.0, 1e-12);
  ASSERT_EQ_INT(ctp_argmax(s + 5, 5), 0);
  int bad[] = {0, 1, 2, 3, 4, 5};
  ASSERT_EQ_INT(ctp_metrics_compute(bad, s, 6, &m), CTP_EINVAL);
  long cm[5][5] = {{0}};
  int p[] = {0, -1};
  ASSERT_EQ_INT(ctp_confusion_add(cm, t, p, 2), CTP_EINVAL);
  ASSERT_EQ_INT(cm[0][0], 0);
  return 0;
}
