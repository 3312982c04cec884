/*
 * vote.c — Pandemonium voting over per-slice probabilities (paper, "Scan
 * Phase Prediction"): every slice shouts for its most probable class, as
 * loud as it is sure; the loudest class wins.
 */
#include <string.h>

#include "ctphase/error.h"
#include "ctphase/predict.h"

const char *ctp_phase_name(int phase) {
  return phase == CTP_PHASE_INDETERMINATE ? "indeterminate"
                                          : ctp_class_name(phase);
}

int ctp_vote_pandemonium(const float *probs, int n, float margin_threshold,
                         ctp_vote *out) {
  if (!probs || !out || n < 1)
    return ctp_seterr(CTP_EINVAL, "voting needs at least one slice");
  memset(out, 0, sizeof *out);
  double votes[CTP_NUM_CLASSES] = {0}, mean[CTP_NUM_CLASSES] = {0}, total = 0;
  for (int i = 0; i < n; i++) {
    const float *p = probs + (size_t)i * CTP_NUM_CLASSES;
    int best = 0;
    for (int c = 0; c < CTP_NUM_CLASSES; c++) {
      mean[c] += p[c];
      if (p[c] > p[best]) best = c;
    }
    votes[best] += p[best];
    total += p[best];
  }
  int first = 0, second = -1;
  for (int c = 1; c < CTP_NUM_CLASSES; c++)
    if (votes[c] > votes[first]) first = c;
  for (int c = 0; c < CTP_NUM_CLASSES; c++)
    if (c != first && (second < 0 || votes[c] > votes[second])) second = c;
  for (int c = 0; c < CTP_NUM_CLASSES; c++) {
    out->votes[c] = (float)votes[c];
    out->share[c] = total > 0 ? (float)(votes[c] / total) : 0.0f;
    out->mean_prob[c] = (float)(mean[c] / n);
  }
  out->nslices = n;
  out->winner = first;
  out->margin = out->share[first] - out->share[second];
  int tie = votes[first] == votes[second];
  out->phase = (tie || out->margin < margin_threshold) ? CTP_PHASE_INDETERMINATE
                                                      : first;
  return 0;
}
