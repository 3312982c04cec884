/*
 * train.h — training the classifier with the paper's recipe.
 *
 * Recipe (Philbrick et al. 2018; DESIGN.md §2): Adam with learning rate
 * 1e-4; the learning rate is multiplied by 0.316 when the validation loss has
 * not improved for 4 epochs; training stops after 12 epochs without
 * improvement; the loss is cross-entropy with balanced class weights
 * (n_slices / (5 * n_slices_of_class)); every training slice is augmented
 * with a random in-plane rotation of +/-5 degrees and a translation of +/-5
 * pixels.
 *
 * Data: either the procedural phantom (phantom.h), rendered once at the
 * start, or a user's folder of DICOM with a CSV of SeriesInstanceUID ->
 * phase. Series are split into train / validation / test by patient (the
 * phantom's seed, or PatientID) with a fixed seed; the split is written to
 * OUT/split.csv so that `ctphase evaluate` can use the held-out set.
 *
 * Every slice goes through the same preprocessing as prediction
 * (predict.h): body mask, grid, standardisation.
 *
 * Output folder: checkpoint.safetensors + checkpoint.adam after every epoch
 * (resumable with resume = 1), best.safetensors (lowest validation loss),
 * history.csv (one row per epoch) and split.csv.
 */
#ifndef CTPHASE_TRAIN_H
#define CTPHASE_TRAIN_H

#include <stdint.h>

#include "ctphase/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  const char *out_dir;
  int resume;               /* continue from OUT/checkpoint.* */
  const char *init_model;   /* start from this model's weights (fine-tuning):
                               fresh optimiser, schedule and history; NULL: He */
  uint64_t seed;            /* split, initialisation, sampling, augmentation */
  /* Data: phantom (phantom_series > 0) or DICOM (data_dir + labels_csv). */
  int phantom_series;       /* number of phantom series (patients) */
  int phantom_slices;       /* slices per phantom series (0: 12) */
  int fresh;                /* phantom: new training patients every epoch
                               after the first (validation, test stay) */
  const char *data_dir;
  const char *labels_csv;
  int max_slices_per_series;/* DICOM: slices sampled per acquisition (0: all) */
  /* Model and recipe. */
  int in_channels;          /* 1 or 3 */
  int size;                 /* training grid; the model's input_size */
  int batch;                /* default 8 */
  int threads;              /* 0: all cores */
  float lr;                 /* 1e-4 */
  float lr_factor;          /* 0.316 */
  int lr_patience;          /* 4 */
  int stop_patience;        /* 12 */
  int max_epochs;           /* 100 */
  int max_steps;            /* stop after this many steps in all (0: none) */
  float val_fraction;       /* 0.15 */
  float test_fraction;      /* 0.15 */
  int augment;              /* 1 */
  int quiet;
} ctp_train_opts;

void ctp_train_opts_default(ctp_train_opts *o);

typedef struct {
  int epochs;               /* completed */
  float best_val_loss;
  int best_epoch;
  float last_train_loss, first_train_loss;
  float val_acc;
  int stopped_early;
} ctp_train_summary;

/* Trains; writes the output folder. Returns 0 or a CTP_E* code. */
int ctp_train_run(const ctp_train_opts *opts, ctp_train_summary *summary);

/* Rotates by `deg` degrees about the image centre and translates by
 * (tx, ty) pixels, bilinearly; pixels from outside are `fill`. */
void ctp_augment_affine(const float *src, float *dst, int h, int w,
                        float deg, float tx, float ty, float fill);

#ifdef __cplusplus
}
#endif
#endif
