/*
 * test-predict.c — preprocessing, Pandemonium voting, and the predictor on
 * small DICOM series from tests/corpus/dicom.
 */
#include <cjson/cJSON.h>

#include "ctphase/error.h"
#include "ctphase/predict.h"
#include <stdint.h>

#include "test.h"

#define FIX_MODEL "tests/reference/fixtures/b2_64_c1/model.safetensors"

static int vote(const float *p, int n, float margin, ctp_vote *v) {
  return ctp_vote_pandemonium(p, n, margin, v);
}

TEST_IMPL(vote_clear_winner) {
  /* Three slices for cm (0.9, 0.6, 0.5), one for neph (0.8). */
  float p[4 * 5] = {0.05f, 0.9f, 0.03f, 0.01f, 0.01f,
                    0.1f, 0.6f, 0.2f, 0.05f, 0.05f,
                    0.2f, 0.5f, 0.1f, 0.1f, 0.1f,
                    0.05f, 0.05f, 0.05f, 0.8f, 0.05f};
  ctp_vote v;
  ASSERT_OK(vote(p, 4, 0.1f, &v));
  ASSERT_EQ_INT(v.phase, CTP_PHASE_CM);
  ASSERT_EQ_INT(v.winner, CTP_PHASE_CM);
  ASSERT_NEAR(v.votes[CTP_PHASE_CM], 2.0, 1e-6);
  ASSERT_NEAR(v.votes[CTP_PHASE_NEPH], 0.8, 1e-6);
  ASSERT_NEAR(v.share[CTP_PHASE_CM], 2.0 / 2.8, 1e-6);
  ASSERT_NEAR(v.margin, 1.2 / 2.8, 1e-6);
  ASSERT_NEAR(v.mean_prob[CTP_PHASE_CM], (0.9 + 0.6 + 0.5 + 0.05) / 4, 1e-6);
  double s = 0;
  for (int c = 0; c < 5; c++) s += v.share[c];
  ASSERT_NEAR(s, 1.0, 1e-6);
  return 0;
}

/* Weight, not head count: two unsure slices lose to one sure slice. */
TEST_IMPL(vote_weight_beats_count) {
  float p[3 * 5] = {0.3f, 0.35f, 0.35f - 0.01f, 0.0f, 0.01f,
                    0.3f, 0.35f, 0.34f, 0.0f, 0.01f,
                    0.0f, 0.0f, 0.0f, 0.0f, 1.0f};
  ctp_vote v;
  ASSERT_OK(vote(p, 3, 0.0f, &v));
  ASSERT_EQ_INT(v.phase, CTP_PHASE_PYELO);
  return 0;
}

TEST_IMPL(vote_tie_and_margin) {
  float tie[2 * 5] = {0.7f, 0.3f, 0, 0, 0, 0.3f, 0.7f, 0, 0, 0};
  ctp_vote v;
  ASSERT_OK(vote(tie, 2, 0.0f, &v));
  ASSERT_EQ_INT(v.phase, CTP_PHASE_INDETERMINATE);
  ASSERT_NEAR(v.margin, 0.0, 1e-7);
  ASSERT(!strcmp(ctp_phase_name(v.phase), "indeterminate"));
  /* Votes 0.55 noncon, 0.45 cm (the second slice's tie goes to the lower
   * class): margin 0.1; indeterminate at 0.15, decided at 0.05. */
  float close[2 * 5] = {0.55f, 0.45f, 0, 0, 0, 0.10f, 0.45f, 0.45f, 0, 0};
  ASSERT_OK(vote(close, 2, 0.15f, &v));
  ASSERT_EQ_INT(v.winner, CTP_PHASE_NONCON);
  ASSERT_EQ_INT(v.phase, CTP_PHASE_INDETERMINATE);
  ASSERT_OK(vote(close, 2, 0.05f, &v));
  ASSERT_EQ_INT(v.phase, CTP_PHASE_NONCON);
  return 0;
}

TEST_IMPL(vote_single_slice_and_errors) {
  float p[5] = {0.1f, 0.1f, 0.6f, 0.1f, 0.1f};
  ctp_vote v;
  ASSERT_OK(vote(p, 1, 0.1f, &v));
  ASSERT_EQ_INT(v.phase, CTP_PHASE_CMNEPH);
  ASSERT_NEAR(v.share[CTP_PHASE_CMNEPH], 1.0, 1e-7);
  ASSERT_NEAR(v.margin, 1.0, 1e-7);
  ASSERT(vote(p, 0, 0.1f, &v) == CTP_EINVAL);
  ASSERT(vote(NULL, 1, 0.1f, &v) == CTP_EINVAL);
  return 0;
}

TEST_IMPL(key_slices_strongest_first) {
  ctp_slice_result s[6];
  memset(s, 0, sizeof s);
  float w[6] = {0.5f, 0.9f, 0.7f, 0.95f, 0.6f, 0.8f};
  int cls[6] = {1, 1, 1, 2, 1, 1};
  for (int i = 0; i < 6; i++) {
    s[i].argmax = cls[i];
    s[i].probs[cls[i]] = w[i];
  }
  ctp_result r;
  memset(&r, 0, sizeof r);
  r.slices = s;
  r.nslices = 6;
  r.vote.phase = 1;
  int out[3];
  ASSERT_EQ_INT(ctp_result_key_slices(&r, 3, out), 3);
  ASSERT(out[0] == 1 && out[1] == 5 && out[2] == 2);
  int all[10];
  ASSERT_EQ_INT(ctp_result_key_slices(&r, 10, all), 5);
  ASSERT(all[4] == 0);
  return 0;
}

/* A body disk with a hole inside and a separate table: the table goes, the
 * hole is filled. */
TEST_IMPL(preprocess_body_mask) {
  enum { N = 64 };
  float hu[N * N];
  unsigned char mask[N * N];
  int *scratch = malloc(ctp_body_mask_scratch(N, N) * sizeof(int));
  for (int y = 0; y < N; y++)
    for (int x = 0; x < N; x++) {
      float d = hypotf(x - 30.0f, y - 28.0f);
      hu[y * N + x] = d < 20 ? 40.0f : -1000.0f;
      if (d < 5) hu[y * N + x] = -1000.0f;           /* air in the bowel */
      if (y >= 56 && y < 59 && x > 5 && x < 58) hu[y * N + x] = 300.0f; /* table */
    }
  size_t n = ctp_body_mask(hu, N, N, CTP_BODY_THRESHOLD_HU, mask, scratch);
  ASSERT(mask[28 * N + 30] == 1);  /* the hole is inside */
  ASSERT(mask[57 * N + 30] == 0);  /* the table is not */
  ASSERT(mask[2 * N + 2] == 0);
  size_t disk = 0;
  for (int y = 0; y < N; y++)
    for (int x = 0; x < N; x++) disk += hypotf(x - 30.0f, y - 28.0f) < 20;
  ASSERT_EQ_INT(n, disk);
  /* Standardised output: outside is air, inside is (HU - mean)/std. */
  float *out = malloc(N * N * sizeof(float));
  void *work = malloc(ctp_preprocess_work_bytes(N, N, N));
  ASSERT_OK(ctp_preprocess_slice(hu, N, N, -23.3f, 144.1f, N, out, work));
  ASSERT_NEAR(out[57 * N + 30], (-1000.0 + 23.3) / 144.1, 1e-5);
  ASSERT_NEAR(out[28 * N + 30], (-1000.0 + 23.3) / 144.1, 1e-5);
  ASSERT_NEAR(out[28 * N + 40], (40.0 + 23.3) / 144.1, 1e-5);
  free(out);
  free(work);
  /* An empty slice is all air. */
  for (int i = 0; i < N * N; i++) hu[i] = -1000.0f;
  ASSERT_EQ_INT(ctp_body_mask(hu, N, N, CTP_BODY_THRESHOLD_HU, mask, scratch), 0);
  free(scratch);
  return 0;
}

/* The run-based mask against the flood-fill reference, on random blobs with
 * holes, diagonal contacts and islands, and on a real slice. */
TEST_IMPL(preprocess_body_mask_matches_reference) {
  int sizes[4][2] = {{64, 64}, {37, 91}, {128, 17}, {1, 50}};
  uint32_t seed = 12345;
  for (int t = 0; t < 40; t++) {
    int rows = sizes[t % 4][0], cols = sizes[t % 4][1];
    size_t n = (size_t)rows * cols;
    float *hu = malloc(n * sizeof(float));
    unsigned char *a = malloc(n), *b = malloc(n);
    int *scratch = malloc(ctp_body_mask_scratch(rows, cols) * sizeof(int));
    /* Random disks of tissue and of air. */
    for (size_t i = 0; i < n; i++) hu[i] = -1000.0f;
    for (int k = 0; k < 12; k++) {
      seed = seed * 1664525u + 1013904223u;
      float cy = (float)(seed % rows), cx = (float)((seed >> 8) % cols);
      float rad = 1.0f + (float)((seed >> 16) % 12);
      float v = (k % 3 == 2) ? -1000.0f : 50.0f;
      for (int y = 0; y < rows; y++)
        for (int x = 0; x < cols; x++)
          if (hypotf(y - cy, x - cx) < rad) hu[(size_t)y * cols + x] = v;
    }
    for (size_t i = 0; i < n; i++) {
      seed = seed * 1664525u + 1013904223u;
      if (seed % 29 == 0) hu[i] = 100.0f; /* isolated specks */
    }
    size_t na = ctp_body_mask(hu, rows, cols, -500.0f, a, scratch);
    size_t nb = ctp__body_mask_ref(hu, rows, cols, -500.0f, b, scratch);
    ASSERT_EQ_INT(na, nb);
    ASSERT(memcmp(a, b, n) == 0);
    free(hu); free(a); free(b); free(scratch);
  }
  return 0;
}

/* Non-square and other sizes: centred pad with air, then resample; a
 * uniform body stays uniform, the field of view is kept. */
TEST_IMPL(preprocess_grid_rule) {
  int rows = 48, cols = 64, S = 128;
  float *hu = malloc(rows * cols * sizeof(float));
  for (int i = 0; i < rows * cols; i++) hu[i] = 60.0f;
  float *out = malloc(S * S * sizeof(float));
  void *work = malloc(ctp_preprocess_work_bytes(rows, cols, S));
  ASSERT_OK(ctp_preprocess_slice(hu, rows, cols, 0.0f, 1.0f, S, out, work));
  /* Square side 64, padded 8 rows top and bottom: rows 0..15 of 128 are air. */
  ASSERT_NEAR(out[5 * S + 64], -1000.0, 1e-3);
  ASSERT_NEAR(out[64 * S + 64], 60.0, 1e-3);
  ASSERT_NEAR(out[64 * S + 0], 60.0, 1e-3);
  ASSERT_NEAR(out[(S - 5) * S + 64], -1000.0, 1e-3);
  /* Same size: resampling is the identity. */
  float src[16], dst[16];
  for (int i = 0; i < 16; i++) src[i] = (float)i;
  ctp_resample_bilinear(src, 4, 4, dst, 4, 4);
  ASSERT(memcmp(src, dst, sizeof src) == 0);
  /* 2x down: means of 2x2 blocks. */
  float d2[4];
  ctp_resample_bilinear(src, 4, 4, d2, 2, 2);
  ASSERT_NEAR(d2[0], (0 + 1 + 4 + 5) / 4.0, 1e-6);
  free(hu);
  free(out);
  free(work);
  return 0;
}

/* The predictor over the corpus' two-acquisition series: one result each,
 * in order, with JSON that carries the fields the schema requires. */
TEST_IMPL(predict_two_acquisitions) {
  ctp_model *m;
  ctp_scan *scan;
  ctp_predictor *p;
  ASSERT_OK(ctp_model_load(&m, FIX_MODEL));
  const char *paths[] = {"tests/corpus/dicom/two-acq"};
  ASSERT_OK(ctp_dicom_scan(paths, 1, &scan));
  ASSERT_EQ_INT(ctp_scan_num_series(scan), 1);
  const ctp_series *se = ctp_scan_series(scan, 0);
  ASSERT_EQ_INT(ctp_series_num_acquisitions(se), 2);
  ctp_predict_opts o;
  ctp_predict_opts_default(&o);
  o.batch = 3; /* 4 slices: a full and a partial batch */
  ASSERT_OK(ctp_predictor_new(&p, m, &o));
  for (int k = 0; k < 2; k++) {
    ctp_result r;
    ASSERT_OK(ctp_predictor_run(p, se, ctp_series_acquisition(se, k), &r));
    ASSERT_EQ_INT(r.nslices, ctp_acquisition_num_slices(ctp_series_acquisition(se, k)));
    ASSERT_EQ_INT(r.vote.nslices, r.nslices);
    for (int i = 1; i < r.nslices; i++)
      ASSERT(r.slices[i].slice->location > r.slices[i - 1].slice->location);
    char *js = ctp_result_json(&r, 1);
    cJSON *o2 = cJSON_Parse(js);
    ASSERT(o2 != NULL);
    ASSERT(cJSON_GetObjectItem(o2, "phase") && cJSON_GetObjectItem(o2, "vote_share"));
    ASSERT_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(o2, "slices")), r.nslices);
    ASSERT(strstr(js, "PHANTOM") == NULL && strstr(js, "patient") == NULL);
    cJSON_Delete(o2);
    free(js);
    ctp_result_free(&r);
  }
  /* A series with no acquisition gets a result that says why. */
  ctp_result r;
  ASSERT(ctp_predictor_run(p, se, NULL, &r) == CTP_ESKIP);
  ASSERT(strstr(r.error, "no usable"));
  ctp_result_free(&r);
  ctp_predictor_free(p);
  ctp_scan_free(scan);
  ctp_model_free(m);
  return 0;
}

/* Batch size and thread count do not change the per-slice probabilities. */
TEST_IMPL(predict_batch_invariance) {
  ctp_model *m;
  ctp_scan *scan;
  ASSERT_OK(ctp_model_load(&m, FIX_MODEL));
  const char *paths[] = {"tests/corpus/dicom/two-acq"};
  ASSERT_OK(ctp_dicom_scan(paths, 1, &scan));
  const ctp_acquisition *acq = ctp_series_acquisition(ctp_scan_series(scan, 0), 0);
  float probs[2][64][5];
  int batch[2] = {1, 8}, threads[2] = {1, 2}, n = 0;
  for (int t = 0; t < 2; t++) {
    ctp_predictor *p;
    ctp_predict_opts o;
    ctp_predict_opts_default(&o);
    o.batch = batch[t];
    o.threads = threads[t];
    ASSERT_OK(ctp_predictor_new(&p, m, &o));
    ctp_result r;
    ASSERT_OK(ctp_predictor_run(p, ctp_scan_series(scan, 0), acq, &r));
    n = r.nslices;
    for (int i = 0; i < n && i < 64; i++) memcpy(probs[t][i], r.slices[i].probs, 20);
    ctp_result_free(&r);
    ctp_predictor_free(p);
  }
  ASSERT_ALLCLOSE("probs batch 1 vs 8", &probs[0][0][0], &probs[1][0][0], (size_t)n * 5, 1e-5, 1e-6);
  ctp_scan_free(scan);
  ctp_model_free(m);
  return 0;
}
