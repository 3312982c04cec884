/*
 * input.c — the network input of one DICOM slice, rebuilt for explaining.
 *
 * The predictor (src/core/predict.c) preprocesses slices in batches and
 * keeps only their probabilities; to explain a key slice afterwards we
 * build its input again, the same way: HU from the file, body mask, the
 * model's grid and standardisation (ctp_preprocess_slice), and for a
 * 3-channel model the slice below and above (the ends repeat themselves).
 * The HU image for display is the middle channel mapped back to HU.
 */
#include <stdlib.h>

#include "ctphase/error.h"
#include "ctphase/explain.h"
#include "ctphase/predict.h"

/* One slice of the acquisition, standardised, into out (S,S). */
static int load_one(const ctp_model *m, const ctp_acquisition *acq, int i,
                    float *out, float *hu, void *work) {
  const ctp_slice *s = ctp_acquisition_slice(acq, i);
  int r = ctp_slice_load_hu(s, hu);
  if (r) return r;
  return ctp_preprocess_slice(hu, ctp_acquisition_rows(acq),
                              ctp_acquisition_columns(acq), m->hu_mean,
                              m->hu_std, m->input_size, out, work);
}

int ctp_explain_load_input(const ctp_model *m, const ctp_acquisition *acq,
                           int i, float *x) {
  if (!m || !acq || !x) return ctp_seterr(CTP_EINVAL, "ctp_explain_load_input: NULL");
  int n = ctp_acquisition_num_slices(acq);
  if (i < 0 || i >= n)
    return ctp_seterr(CTP_EINVAL, "slice %d outside 0..%d", i, n - 1);
  int rows = ctp_acquisition_rows(acq), cols = ctp_acquisition_columns(acq);
  size_t plane = (size_t)m->input_size * m->input_size;
  float *hu = malloc((size_t)rows * cols * sizeof *hu);
  void *work = malloc(ctp_preprocess_work_bytes(rows, cols, m->input_size));
  int r = 0;
  if (!hu || !work) r = ctp_seterr(CTP_ENOMEM, "out of memory for a %dx%d slice",
                                   rows, cols);
  for (int c = 0; !r && c < m->in_channels; c++) {
    int src = m->in_channels == 3 ? i - 1 + c : i;
    src = src < 0 ? 0 : src > n - 1 ? n - 1 : src;
    r = load_one(m, acq, src, x + (size_t)c * plane, hu, work);
  }
  free(hu);
  free(work);
  return r;
}

void ctp_explain_display_hu(const ctp_model *m, const float *x, int h, int w,
                            float *hu) {
  size_t plane = (size_t)h * w;
  const float *mid = x + (size_t)(m->in_channels / 2) * plane;
  for (size_t p = 0; p < plane; p++) hu[p] = mid[p] * m->hu_std + m->hu_mean;
}
