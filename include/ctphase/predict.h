/*
 * predict.h — from DICOM slices to a phase: preprocessing, inference,
 * Pandemonium voting, and the result a series gets.
 *
 * Preprocessing (DESIGN.md §2), per slice, in this order:
 *   1. HU from the stored values (the DICOM reader applies the rescale);
 *   2. body mask: voxels above CTP_BODY_THRESHOLD_HU, the largest
 *      8-connected component, holes filled; everything outside the body
 *      (air, the table, clothing, lines) is set to CTP_AIR_HU (-1000 HU),
 *      i.e. the standardised value of air, not 0;
 *   3. the grid: an image of the model's input size (512x512) is used as
 *      it is; any other size is padded with air to a centred square and
 *      resampled bilinearly (pixel centres aligned) to 512x512, so the
 *      field of view is kept and the pixel spacing becomes FOV/512;
 *   4. standardisation: (HU - hu_mean) / hu_std with the model's constants
 *      (training set: -23.3 +/- 144.1 HU), HU first clipped to
 *      [-1024, 3071].
 * For a 3-channel (2.5-D) model the channels are the slice below, the slice
 * and the slice above in the acquisition's order (the first and last slices
 * repeat themselves at the ends).
 *
 * Pandemonium voting: each slice votes for its most probable class with a
 * weight equal to that probability; the phase is the class with the largest
 * summed weight. Shares are the votes normalised to sum to 1. The margin is
 * the top share minus the second share; a margin below the threshold (or an
 * exact tie) gives "indeterminate".
 */
#ifndef CTPHASE_PREDICT_H
#define CTPHASE_PREDICT_H

#include <stddef.h>

#include "ctphase/dicom.h"
#include "ctphase/model.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CTP_AIR_HU (-1000.0f)
#define CTP_BODY_THRESHOLD_HU (-500.0f)
#define CTP_HU_MIN (-1024.0f)
#define CTP_HU_MAX (3071.0f)
/* The phase of a result whose vote margin is too small. */
#define CTP_PHASE_INDETERMINATE (-1)
#define CTP_DEFAULT_MARGIN 0.10f

/* "indeterminate" for CTP_PHASE_INDETERMINATE, else ctp_class_name(). */
const char *ctp_phase_name(int phase);

/* --- preprocessing -------------------------------------------------- */

/* Marks the body: mask[i] = 1 inside. scratch holds
 * ctp_body_mask_scratch(rows, cols) ints. Returns the number of body
 * voxels. */
size_t ctp_body_mask(const float *hu, int rows, int cols, float threshold_hu,
                     unsigned char *mask, int *scratch);
size_t ctp_body_mask_scratch(int rows, int cols);
/* The same by pixel-wise flood fills: the reference the fast one is tested
 * against (internal). */
size_t ctp__body_mask_ref(const float *hu, int rows, int cols,
                          float threshold_hu, unsigned char *mask,
                          int *scratch);
/* Bilinear resampling with pixel centres aligned (PyTorch's
 * align_corners=False). */
void ctp_resample_bilinear(const float *src, int sh, int sw, float *dst,
                           int dh, int dw);
/* One slice of HU (rows x cols) to the model's standardised size x size
 * grid. work must hold ctp_preprocess_work_bytes(rows, cols, size). */
size_t ctp_preprocess_work_bytes(int rows, int cols, int size);
int ctp_preprocess_slice(const float *hu, int rows, int cols, float hu_mean,
                         float hu_std, int size, float *out, void *work);

/* --- voting -------------------------------------------------------- */

typedef struct {
  int phase;                       /* class, or CTP_PHASE_INDETERMINATE */
  int winner;                      /* the class with most votes */
  int nslices;
  float votes[CTP_NUM_CLASSES];    /* summed winning probabilities */
  float share[CTP_NUM_CLASSES];    /* votes / sum(votes) */
  float mean_prob[CTP_NUM_CLASSES];/* mean softmax over slices */
  float margin;                    /* top share - second share */
} ctp_vote;

/* Votes over n slices of probabilities (n,5). n >= 1. */
int ctp_vote_pandemonium(const float *probs, int n, float margin_threshold,
                         ctp_vote *out);

/* --- prediction --------------------------------------------------- */

typedef struct {
  int threads;          /* 0: all cores */
  int batch;            /* slices per forward (default 8) */
  float margin;         /* indeterminate below this (default 0.10) */
  const char *kernels;  /* NULL: best for this CPU */
} ctp_predict_opts;

void ctp_predict_opts_default(ctp_predict_opts *o);

typedef struct {
  const ctp_slice *slice;          /* in the scan */
  float probs[CTP_NUM_CLASSES];
  int argmax;
} ctp_slice_result;

typedef struct {
  const ctp_slice *slice;
  const char *reason;
} ctp_skip_result;

/* The result for one acquisition of one series. */
typedef struct {
  const ctp_series *series;
  const ctp_acquisition *acq;      /* NULL when the series had none */
  int err;                         /* 0, or why it failed (CTP_E*) */
  char error[512];                 /* the message when err != 0 */
  ctp_vote vote;
  int nslices;
  ctp_slice_result *slices;        /* (nslices) in acquisition order */
  int nskipped;
  ctp_skip_result *skipped;        /* the series' skipped and failed files */
  double t_read, t_preprocess, t_infer, t_vote, t_total; /* seconds */
  char model_name[128];
  char model_sha256[65];
  float margin_threshold;
} ctp_result;

void ctp_result_free(ctp_result *r);
/* The result as JSON (schemas/result.schema.json); per_slice includes the
 * per-slice probabilities. Returns a malloc'd string. */
char *ctp_result_json(const ctp_result *r, int per_slice);
/* The indices of the k slices with the largest voting weight among those
 * that voted for the result's phase (or winner), strongest first. Returns
 * how many were written. */
int ctp_result_key_slices(const ctp_result *r, int k, int *out);

typedef struct ctp_predictor ctp_predictor;

/* A predictor owns a workspace for the model; one per thread. */
int ctp_predictor_new(ctp_predictor **out, const ctp_model *m,
                      const ctp_predict_opts *opts);
void ctp_predictor_free(ctp_predictor *p);
/* Predicts one acquisition of a series (acq may be NULL for a series with
 * no usable slice: the result then says so). Always fills *out (err set on
 * failure) and returns out->err. */
int ctp_predictor_run(ctp_predictor *p, const ctp_series *series,
                      const ctp_acquisition *acq, ctp_result *out);

#ifdef __cplusplus
}
#endif
#endif
