/*
 * evaluate.h — a model on a held-out set, the way the paper reports it
 * (Philbrick et al. 2018, "Statistics", Tables 1-2, Figs 2, 5, 6), written
 * as a self-contained report (docs/evaluation.md).
 *
 * Data, one of:
 *   split     a training output folder: the rows of its split.csv with
 *             split = test. Phantom series ("phantom-<seed>") are drawn
 *             again from their seed and phase, at the model's input size,
 *             exactly as the trainer drew them; other rows are
 *             SeriesInstanceUIDs looked up under data_dir;
 *   phantom   N fresh phantom series, seeds CTP_EVAL_PHANTOM_SEED_BASE +
 *             S * 1000003 + i (far from any training seed), phase i mod 5;
 *   dicom     a folder of DICOM and a CSV of SeriesInstanceUID,phase.
 * Every slice goes through the preprocessing of prediction
 * (ctp_preprocess_slice with the model's constants). For DICOM, each
 * acquisition of a series is one evaluation unit.
 *
 * Then:
 *   1. single-slice predictions (argmax of the slice's softmax) and voted
 *      predictions (Pandemonium, ctp_vote_pandemonium: the winner; the
 *      series' ROC score of a class is its vote share) and their metrics
 *      (metrics.h); for phantom series also the same on the slices that
 *      show a kidney only, the paper's range ("images from the top to the
 *      bottom of the kidneys"; the phantom reaches 0-3 cm beyond);
 *   2. the masking test (explain.h) on up to mask_slices correctly
 *      classified slices, chosen round-robin over the classes in a seeded
 *      order: saliency, guided backprop, CAM (layer 6), and Grad-CAM and
 *      SAM at each of the layers;
 *   3. phantom data only: the pointing game on the same slices: for each
 *      map (|value|, upsampled to the input grid), the share of its total
 *      mass that falls on the kidneys (cortex, medulla, collecting system),
 *      the aorta, the IVC, and all three; the same regions' share of the
 *      image area is the baseline a map without information would score;
 *   4. a few example overlays (PNG) of masked slices, one per class.
 *
 * The report (report.c) is DIR/metrics.json, DIR/report.html and the
 * example PNGs named in it.
 */
#ifndef CTPHASE_EVALUATE_H
#define CTPHASE_EVALUATE_H

#include <stdint.h>

#include "ctphase/explain.h"
#include "ctphase/metrics.h"
#include "ctphase/model.h"
#include "ctphase/predict.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fresh phantom series start here (training uses seed * 1000003 + i for
 * small seeds, far below). */
#define CTP_EVAL_PHANTOM_SEED_BASE 0x5EED000000000000ULL
#define CTP_EVAL_MAX_LAYERS 11
#define CTP_EVAL_MAX_EXAMPLES 5

/* Regions of the pointing game. */
enum {
  CTP_REGION_KIDNEY = 0, /* renal cortex, medulla, collecting system */
  CTP_REGION_AORTA,
  CTP_REGION_IVC,
  CTP_REGION_ANY,        /* the union of the three */
  CTP_NUM_REGIONS
};

/* "kidney", "aorta", "ivc", "any". */
const char *ctp_region_name(int region);
/* The region bits (1 << CTP_REGION_*) of a phantom label code. */
unsigned ctp_region_of_label(int label);

typedef enum {
  CTP_EVAL_SPLIT = 0,
  CTP_EVAL_PHANTOM,
  CTP_EVAL_DICOM
} ctp_eval_source;

typedef struct {
  /* Data: split_dir, or phantom_series > 0, or data_dir + labels_csv. */
  const char *split_dir;
  int phantom_series;
  uint64_t phantom_seed;
  const char *data_dir;     /* also for split rows that are DICOM UIDs */
  const char *labels_csv;
  int slices_per_series;    /* evenly spread; 0: every slice */
  /* Inference. */
  int batch;                /* default 16 */
  int threads;              /* 0: all cores */
  float margin;             /* voting: indeterminate below (reported only) */
  /* Explanations. */
  int mask_slices;          /* slices for masking and pointing; 0: none */
  int nlayers;
  int layers[CTP_EVAL_MAX_LAYERS]; /* Grad-CAM and SAM layers */
  double fraction;          /* masked fraction, default 0.10 */
  uint64_t seed;            /* masking noise and slice choice */
  int examples;             /* overlays, 0..CTP_EVAL_MAX_EXAMPLES */
  /* Output. */
  const char *report_dir;   /* where example PNGs go (and the report) */
  const char *model_path;   /* for the report only */
  int quiet;
} ctp_eval_opts;

void ctp_eval_opts_default(ctp_eval_opts *o);

/* One evaluation unit: a phantom series or a DICOM acquisition. */
typedef struct {
  char id[160];
  int label;
  uint64_t seed;            /* phantom */
  int first, nslices;       /* its slices in ctp_eval.slices */
  int total_slices;         /* slices the series has */
  ctp_vote vote;
} ctp_eval_series;

typedef struct {
  int series;               /* index into ctp_eval.series */
  int z;                    /* slice index in the series (acquisition) */
  int label, pred;
  int kidney;               /* phantom: 1 when its labels show a kidney, else
                               0; DICOM: -1 (unknown) */
  float probs[CTP_NUM_CLASSES];
} ctp_eval_slice;

typedef struct {
  int slice;                /* index into ctp_eval.slices */
  char file[64];            /* PNG name, in the report folder */
} ctp_eval_example;

typedef struct {
  ctp_eval_source source;
  int nseries, nslices;
  ctp_eval_series *series;
  ctp_eval_slice *slices;
  int input_size, in_channels;
  /* Metrics. */
  ctp_metrics single, voted;
  /* Each series read by the argmax of its mean probability instead of the
   * majority; AUCs on the mean probabilities. */
  ctp_metrics voted_mean;
  int indeterminate;        /* voted series below the margin */
  /* Phantom only (kidney_single.n > 0): the metrics on the slices showing a
   * kidney, and voted over each series' kidney slices. */
  ctp_metrics kidney_single, kidney_voted;
  /* Masking: t.nslices slices scored; mask_slice[i] is slice i's index in
   * slices. */
  ctp_masktest mask;
  int *mask_slice;
  int mask_passed_over;
  /* Pointing (phantom only): pointing_n slices; per slice, map and region
   * the share of |map| mass, and per slice and region the area share. */
  int pointing_n;
  int *pointing_slice;      /* (pointing_n) index into slices */
  double *pointing_mass;    /* (pointing_n, mask.nspecs, CTP_NUM_REGIONS) */
  double *pointing_area;    /* (pointing_n, CTP_NUM_REGIONS) */
  int nexamples;
  ctp_eval_example examples[CTP_EVAL_MAX_EXAMPLES];
  double t_infer, t_explain; /* seconds */
} ctp_eval;

/* Runs the evaluation; PNG examples go to o->report_dir when set. On
 * failure *out is NULL and ctp_last_error() says why. */
int ctp_eval_run(const ctp_model *m, const ctp_eval_opts *o, ctp_eval **out);
void ctp_eval_free(ctp_eval *ev);

/* Mean and SD of a pointing-game share over the slices: map spec (-1 for
 * the area baseline) and region. */
void ctp_eval_pointing_stats(const ctp_eval *ev, int spec, int region,
                             double *mean, double *sd);
/* Mean and SD over the slices of mass share / area share of a region (1:
 * no better than chance; slices without the region left out). */
void ctp_eval_pointing_enrichment(const ctp_eval *ev, int spec, int region,
                                  double *mean, double *sd);

/* Writes DIR/metrics.json and DIR/report.html (report.c). */
int ctp_eval_write_report(const ctp_eval *ev, const ctp_model *m,
                          const ctp_eval_opts *o);

#ifdef __cplusplus
}
#endif
#endif
