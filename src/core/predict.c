/*
 * predict.c — one acquisition from DICOM slices to a voted phase.
 *
 * A predictor owns a network workspace and the buffers for one batch; it
 * is used by one thread at a time (the daemon gives each worker its own).
 * For each batch of B slices it decodes the slices' files in parallel
 * (OpenMP, the predictor's thread count), preprocesses them in parallel,
 * runs one batched forward, and keeps the softmax of every slice; voting
 * follows once every slice is in. A 3-channel model also needs the slice
 * below and above each slice of the batch, so its window is B + 2 slices.
 *
 * Memory: the batch window of preprocessed slices (B+2 x 512 x 512
 * floats), the batch input, and per thread one HU image and one work area.
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctphase/error.h"
#include "ctphase/nn.h"
#include "ctphase/predict.h"
#include "ctphase/util.h"

struct ctp_predictor {
  const ctp_model *m;
  ctp_predict_opts o;
  ctp_net *net;
  int size, cin, batch, threads;
  float *window;  /* (B+2, S, S) preprocessed slices */
  float *input;   /* (B, C, S, S) */
  float *logits;  /* (B, 5) */
  /* Per-thread decode buffers, sized for the largest image seen. */
  size_t hu_cap, work_cap;
  float **hu;
  void **work;
};

void ctp_predict_opts_default(ctp_predict_opts *o) {
  memset(o, 0, sizeof *o);
  o->batch = 8;
  o->margin = CTP_DEFAULT_MARGIN;
}

void ctp_predictor_free(ctp_predictor *p) {
  if (!p) return;
  for (int t = 0; p->hu && t < p->threads; t++) {
    free(p->hu[t]);
    free(p->work[t]);
  }
  free(p->hu);
  free(p->work);
  free(p->window);
  free(p->input);
  free(p->logits);
  ctp_net_free(p->net);
  free(p);
}

int ctp_predictor_new(ctp_predictor **out, const ctp_model *m,
                      const ctp_predict_opts *opts) {
  if (!out || !m) return ctp_seterr(CTP_EINVAL, "ctp_predictor_new: NULL");
  *out = NULL;
  ctp_predictor *p = calloc(1, sizeof *p);
  if (!p) return ctp_seterr(CTP_ENOMEM, "out of memory");
  if (opts) p->o = *opts;
  else ctp_predict_opts_default(&p->o);
  p->m = m;
  p->size = m->input_size;
  p->cin = m->in_channels;
  p->batch = p->o.batch > 0 ? p->o.batch : 8;
  int r = ctp_net_new(&p->net, m, p->batch, p->size, p->size, 0, p->o.threads);
  if (r) goto fail;
  if (p->o.kernels && (r = ctp_net_set_kernels(p->net, p->o.kernels))) goto fail;
  p->threads = ctp_net_threads(p->net);
  size_t plane = (size_t)p->size * p->size;
  p->window = malloc((size_t)(p->batch + 2) * plane * sizeof(float));
  p->input = malloc((size_t)p->batch * p->cin * plane * sizeof(float));
  p->logits = malloc((size_t)p->batch * CTP_NUM_CLASSES * sizeof(float));
  p->hu = calloc((size_t)p->threads, sizeof *p->hu);
  p->work = calloc((size_t)p->threads, sizeof *p->work);
  if (!p->window || !p->input || !p->logits || !p->hu || !p->work) {
    r = ctp_seterr(CTP_ENOMEM, "out of memory for the predictor");
    goto fail;
  }
  *out = p;
  return 0;
fail:
  ctp_predictor_free(p);
  return r;
}

/* Makes every thread's buffers large enough for rows x cols images. */
static int ensure_buffers(ctp_predictor *p, int rows, int cols) {
  size_t hu = (size_t)rows * cols * sizeof(float);
  size_t work = ctp_preprocess_work_bytes(rows, cols, p->size);
  if (hu <= p->hu_cap && work <= p->work_cap) return 0;
  for (int t = 0; t < p->threads; t++) {
    free(p->hu[t]);
    free(p->work[t]);
    p->hu[t] = malloc(hu);
    p->work[t] = malloc(work);
    if (!p->hu[t] || !p->work[t]) {
      p->hu_cap = p->work_cap = 0;
      return ctp_seterr(CTP_ENOMEM, "out of memory for %dx%d images", rows, cols);
    }
  }
  p->hu_cap = hu;
  p->work_cap = work;
  return 0;
}

static void fill_identity(ctp_result *r, const ctp_predictor *p,
                          const ctp_series *series, const ctp_acquisition *acq) {
  memset(r, 0, sizeof *r);
  r->series = series;
  r->acq = acq;
  r->margin_threshold = p->o.margin;
  const char *name = ctp_model_meta(p->m, "name");
  snprintf(r->model_name, sizeof r->model_name, "%s", name ? name : "unnamed");
  snprintf(r->model_sha256, sizeof r->model_sha256, "%s", p->m->sha256);
  r->vote.phase = CTP_PHASE_INDETERMINATE;
}

static int fail(ctp_result *r, int err, const char *msg) {
  r->err = err;
  snprintf(r->error, sizeof r->error, "%s", msg);
  return err;
}

/* Decodes and preprocesses slices [lo, hi] into the window. Returns 0 or
 * the first error (message in r->error). */
static int prepare_window(ctp_predictor *p, const ctp_acquisition *acq, int lo,
                          int hi, ctp_result *r) {
  int rows = ctp_acquisition_rows(acq), cols = ctp_acquisition_columns(acq);
  size_t plane = (size_t)p->size * p->size;
  int count = hi - lo + 1, err = 0, bad = -1;
  char msg[512] = "";
  double t0 = ctp_now();
  /* Decode and preprocess each slice on one thread: the decoder is the
   * expensive part and is thread-safe per file. */
  double t_read = 0, t_prep = 0;
  #pragma omp parallel for schedule(dynamic, 1) num_threads(p->threads) \
      reduction(+ : t_read, t_prep)
  for (int j = 0; j < count; j++) {
    int t = omp_get_thread_num();
    const ctp_slice *s = ctp_acquisition_slice(acq, lo + j);
    double a = ctp_now();
    int e = ctp_slice_load_hu(s, p->hu[t]);
    double b = ctp_now();
    if (!e)
      e = ctp_preprocess_slice(p->hu[t], rows, cols, p->m->hu_mean,
                               p->m->hu_std, p->size, p->window + (size_t)j * plane,
                               p->work[t]);
    t_read += b - a;
    t_prep += ctp_now() - b;
    if (e) {
      #pragma omp critical
      if (!err || lo + j < bad) {
        err = e;
        bad = lo + j;
        snprintf(msg, sizeof msg, "%s: %s", s->path, ctp_last_error());
      }
    }
  }
  /* Wall time, split in the proportion the threads spent in each part. */
  double wall = ctp_now() - t0, sum = t_read + t_prep;
  r->t_read += sum > 0 ? wall * t_read / sum : 0;
  r->t_preprocess += sum > 0 ? wall * t_prep / sum : 0;
  if (err) return fail(r, err, msg);
  return 0;
}

int ctp_predictor_run(ctp_predictor *p, const ctp_series *series,
                      const ctp_acquisition *acq, ctp_result *r) {
  fill_identity(r, p, series, acq);
  double t_start = ctp_now();
  int nsk = series ? ctp_series_num_skipped(series) : 0;
  if (nsk > 0) {
    r->skipped = calloc((size_t)nsk, sizeof *r->skipped);
    if (!r->skipped) return fail(r, CTP_ENOMEM, "out of memory");
    for (int i = 0; i < nsk; i++) {
      r->skipped[i].slice = ctp_series_skipped(series, i);
      r->skipped[i].reason = r->skipped[i].slice->reason;
    }
    r->nskipped = nsk;
  }
  if (!acq) return fail(r, CTP_ESKIP, "the series has no usable axial CT slice");
  int n = ctp_acquisition_num_slices(acq);
  if (n < 1) return fail(r, CTP_ESKIP, "the acquisition has no slices");
  int e = ensure_buffers(p, ctp_acquisition_rows(acq), ctp_acquisition_columns(acq));
  if (e) return fail(r, e, ctp_last_error());
  r->slices = calloc((size_t)n, sizeof *r->slices);
  if (!r->slices) return fail(r, CTP_ENOMEM, "out of memory");
  r->nslices = n;
  size_t plane = (size_t)p->size * p->size;
  int halo = p->cin == 3 ? 1 : 0;
  for (int i0 = 0; i0 < n; i0 += p->batch) {
    int b = n - i0 < p->batch ? n - i0 : p->batch;
    int lo = i0 - halo < 0 ? 0 : i0 - halo;
    int hi = i0 + b - 1 + halo > n - 1 ? n - 1 : i0 + b - 1 + halo;
    if ((e = prepare_window(p, acq, lo, hi, r))) return e;
    double t0 = ctp_now();
    for (int j = 0; j < b; j++) {
      int i = i0 + j;
      for (int c = 0; c < p->cin; c++) {
        int src = p->cin == 3 ? i - 1 + c : i;
        src = src < 0 ? 0 : src > n - 1 ? n - 1 : src;
        memcpy(p->input + ((size_t)j * p->cin + c) * plane,
               p->window + (size_t)(src - lo) * plane, plane * sizeof(float));
      }
    }
    if ((e = ctp_net_forward(p->net, p->input, b, p->logits)))
      return fail(r, e, ctp_last_error());
    for (int j = 0; j < b; j++) {
      ctp_slice_result *s = &r->slices[i0 + j];
      s->slice = ctp_acquisition_slice(acq, i0 + j);
      ctp_softmax(p->logits + (size_t)j * CTP_NUM_CLASSES, s->probs, 1);
      s->argmax = 0;
      for (int c = 1; c < CTP_NUM_CLASSES; c++)
        if (s->probs[c] > s->probs[s->argmax]) s->argmax = c;
    }
    r->t_infer += ctp_now() - t0;
  }
  double t0 = ctp_now();
  float *probs = malloc((size_t)n * CTP_NUM_CLASSES * sizeof(float));
  if (!probs) return fail(r, CTP_ENOMEM, "out of memory");
  for (int i = 0; i < n; i++)
    memcpy(probs + (size_t)i * CTP_NUM_CLASSES, r->slices[i].probs,
           sizeof r->slices[i].probs);
  e = ctp_vote_pandemonium(probs, n, p->o.margin, &r->vote);
  free(probs);
  r->t_vote = ctp_now() - t0;
  r->t_total = ctp_now() - t_start;
  if (e) return fail(r, e, ctp_last_error());
  return 0;
}

void ctp_result_free(ctp_result *r) {
  if (!r) return;
  free(r->slices);
  free(r->skipped);
  r->slices = NULL;
  r->skipped = NULL;
  r->nslices = r->nskipped = 0;
}

int ctp_result_key_slices(const ctp_result *r, int k, int *out) {
  int cls = r->vote.phase >= 0 ? r->vote.phase : r->vote.winner, m = 0;
  if (k <= 0) return 0;
  /* Insertion into a list of the k largest weights, largest first. */
  for (int i = 0; i < r->nslices; i++) {
    if (r->slices[i].argmax != cls) continue;
    float w = r->slices[i].probs[cls];
    int pos;
    if (m < k) pos = m++;
    else if (w > r->slices[out[k - 1]].probs[cls]) pos = k - 1;
    else continue;
    while (pos > 0 && r->slices[out[pos - 1]].probs[cls] < w) {
      out[pos] = out[pos - 1];
      pos--;
    }
    out[pos] = i;
  }
  return m;
}
