/*
 * test-dicom.c — the DICOM reader (include/ctphase/dicom.h).
 *
 * Three kinds of input:
 * - real files from ../shared/data (skipped when absent): one CT slice in
 *   every common transfer syntax, two vendor JPEG 2000 files, an enhanced
 *   CT and an ultrasound image; and the HCC_002 folder, whose one series
 *   holds two acquisitions;
 * - the corpus in tests/corpus/dicom/, written by make_corpus.py: tiny
 *   slices each with one defect or oddity, and folders for the grouping
 *   rules. Its pixel values follow HU(r, c) = 8 * (16 r + c) - 1024 unless
 *   a case says otherwise (see the script).
 * Every case checks the outcome and the reason text, not just "no crash".
 */
#include "test.h"

#include "ctphase/dicom.h"
#include "ctphase/error.h"

#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TS_DIR "../shared/data/transfer-syntaxes/"
#define TS_PREFIX TS_DIR "CTImage.dcm_"
#define HCC_DIR "../shared/data/real-ct/hcc002-arterial-and-portal-venous"
#define CORPUS "tests/corpus/dicom/"

static int is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Scans one path; NULL (with a message) on failure. */
static ctp_scan *scan1(const char *path) {
  ctp_scan *sc = NULL;
  int rc = ctp_dicom_scan(&path, 1, &sc);
  if (rc) {
    fprintf(stderr, "scan %s: %s: %s\n", path, ctp_err_name(rc),
            ctp_last_error());
    return NULL;
  }
  return sc;
}

/* Scans a single file and decodes it; returns malloc'd HU or NULL. */
static float *load_file(const char *path, int *rows, int *cols) {
  ctp_scan *sc = scan1(path);
  if (!sc) return NULL;
  float *hu = NULL;
  const ctp_slice *s = ctp_scan_file(sc, 0);
  if (ctp_scan_num_files(sc) != 1 || !s) {
    fprintf(stderr, "%s: expected one file\n", path);
  } else if (s->status == CTP_SLICE_ERROR) {
    fprintf(stderr, "%s: error slice: %s\n", path, s->reason);
  } else {
    *rows = s->rows;
    *cols = s->columns;
    hu = malloc(sizeof(float) * (size_t)s->rows * (size_t)s->columns);
    int rc = hu ? ctp_slice_load_hu(s, hu) : CTP_ENOMEM;
    if (rc) {
      fprintf(stderr, "%s: load: %s: %s\n", path, ctp_err_name(rc),
              ctp_last_error());
      free(hu);
      hu = NULL;
    }
  }
  ctp_scan_free(sc);
  return hu;
}

static int copy_file(const char *from, const char *to) {
  FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
  int ok = in && out;
  char buf[8192];
  size_t n;
  while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0)
    ok = fwrite(buf, 1, n, out) == n;
  if (in) fclose(in);
  if (out && fclose(out) != 0) ok = 0;
  return ok ? 0 : -1;
}

/* The corpus pattern. */
static float corpus_hu(int r, int c) { return (float)(8 * (16 * r + c) - 1024); }

/* ------------------------------------------------------------------ */

TEST_IMPL(dicom_api_arguments) {
  ctp_scan *sc = (ctp_scan *)1;
  ASSERT_EQ_INT(ctp_dicom_scan(NULL, 0, &sc), CTP_EINVAL);
  ASSERT(sc == NULL);
  const char *missing = "tests/corpus/dicom/no-such-folder";
  ASSERT_EQ_INT(ctp_dicom_scan(&missing, 1, &sc), CTP_ENOENT);
  ASSERT(strstr(ctp_last_error(), "no-such-folder") != NULL);
  const char *empty = "";
  ASSERT_EQ_INT(ctp_dicom_scan(&empty, 1, &sc), CTP_EINVAL);
  ASSERT_EQ_INT(ctp_dicom_scan(&missing, 1, NULL), CTP_EINVAL);
  ctp_scan_free(NULL);
  ASSERT_EQ_INT(ctp_scan_num_files(NULL), 0);
  ASSERT(ctp_scan_file(NULL, 0) == NULL);
  ASSERT_EQ_INT(ctp_series_num_acquisitions(NULL), 0);
  ASSERT_EQ_INT(ctp_acquisition_num_slices(NULL), 0);
  float x;
  ASSERT_EQ_INT(ctp_slice_load_hu(NULL, &x), CTP_EINVAL);
  ASSERT(strcmp(ctp_skip_str(CTP_SKIP_LOCALIZER), "localizer") == 0);
  ASSERT(strcmp(ctp_skip_str(CTP_SKIP_NONE), "used") == 0);
  ASSERT(strcmp(ctp_skip_str(999), "unknown") == 0);
  ASSERT_OK(ctp_dicom_init());

  /* Out-of-range indices. */
  sc = scan1(CORPUS "valid.dcm");
  ASSERT(sc != NULL);
  ASSERT(ctp_scan_file(sc, 1) == NULL && ctp_scan_file(sc, -1) == NULL);
  ASSERT(ctp_scan_series(sc, 1) == NULL);
  const ctp_series *se = ctp_scan_series(sc, 0);
  ASSERT(ctp_series_acquisition(se, 1) == NULL);
  ASSERT(ctp_acquisition_slice(ctp_series_acquisition(se, 0), 1) == NULL);
  ctp_scan_free(sc);
  return 0;
}

/* Every lossless encoding of the GE slice decodes to the very same HU. */
TEST_IMPL(dicom_transfer_syntaxes_lossless) {
  if (!is_dir(TS_DIR)) TEST_SKIP("../shared/data is absent");
  static const char *const lossless[] = {
      "LittleEndianImplicitTransferSyntax_1.2.840.10008.1.2.dcm",
      "BigEndianExplicitTransferSyntax_1.2.840.10008.1.2.2.dcm",
      "DeflatedExplicitVRLittleEndianTransferSyntax_1.2.840.10008.1.2.1.99.dcm",
      "JPEGProcess14TransferSyntax_1.2.840.10008.1.2.4.57.dcm",
      "JPEGProcess14SV1TransferSyntax_1.2.840.10008.1.2.4.70.dcm",
      "JPEGLSLosslessTransferSyntax_1.2.840.10008.1.2.4.80.dcm",
      "RLELosslessTransferSyntax_1.2.840.10008.1.2.5.dcm",
      "JPEG2000LosslessOnlyTransferSyntax_1.2.840.10008.1.2.4.90.dcm",
  };
  int rows = 0, cols = 0;
  float *ref = load_file(
      TS_PREFIX "LittleEndianExplicitTransferSyntax_1.2.840.10008.1.2.1.dcm",
      &rows, &cols);
  ASSERT(ref != NULL);
  ASSERT_EQ_INT(rows, 512);
  ASSERT_EQ_INT(cols, 512);
  /* The reference itself is sane: air and tissue, no absurd values. */
  size_t n = (size_t)rows * (size_t)cols, air = 0, soft = 0;
  for (size_t i = 0; i < n; i++) {
    ASSERT(ref[i] >= -3100 && ref[i] <= 4000);
    air += ref[i] > -1100 && ref[i] < -900;
    soft += ref[i] > -50 && ref[i] < 150;
  }
  ASSERT(air > n / 20);
  ASSERT(soft > n / 50);

  for (size_t k = 0; k < sizeof lossless / sizeof lossless[0]; k++) {
    char path[512];
    snprintf(path, sizeof path, "%s%s", TS_PREFIX, lossless[k]);
    int r = 0, c = 0;
    float *hu = load_file(path, &r, &c);
    ASSERT(hu != NULL);
    ASSERT_EQ_INT(r, rows);
    ASSERT_EQ_INT(c, cols);
    int bad = test_allclose(lossless[k], hu, ref, n, 0, 0);
    free(hu);
    ASSERT_EQ_INT(bad, 0);
  }
  free(ref);
  return 0;
}

/* Lossy encodings: close to the lossless slice, within measured bounds
 * (mean and max absolute HU difference). The JPEG baseline file is 8-bit
 * with RescaleSlope 32.1 (one step of 32 HU), so its bounds are wider. */
TEST_IMPL(dicom_transfer_syntaxes_lossy) {
  if (!is_dir(TS_DIR)) TEST_SKIP("../shared/data is absent");
  static const struct {
    const char *file;
    double max_mean, max_abs;
  } lossy[] = {
      /* measured: mean 19.8, max 64.2 */
      {"JPEGProcess1TransferSyntax_1.2.840.10008.1.2.4.50.dcm", 25, 80},
      /* measured: mean 3.84, max 35.6 (the three 12-bit files alike) */
      {"JPEGProcess2_4TransferSyntax_1.2.840.10008.1.2.4.51.dcm", 5, 50},
      {"JPEGProcess6_8TransferSyntax_1.2.840.10008.1.2.4.53.dcm", 5, 50},
      {"JPEGProcess10_12TransferSyntax_1.2.840.10008.1.2.4.55.dcm", 5, 50},
      /* near-lossless, NEAR = 1: measured mean 0.69, max 1 */
      {"JPEGLSLossyTransferSyntax_1.2.840.10008.1.2.4.81.dcm", 1, 1},
      /* measured: mean 0.57, max 5 */
      {"JPEG2000TransferSyntax_1.2.840.10008.1.2.4.91.dcm", 1, 10},
  };
  int rows = 0, cols = 0;
  float *ref = load_file(
      TS_PREFIX "LittleEndianExplicitTransferSyntax_1.2.840.10008.1.2.1.dcm",
      &rows, &cols);
  ASSERT(ref != NULL);
  size_t n = (size_t)rows * (size_t)cols;
  for (size_t k = 0; k < sizeof lossy / sizeof lossy[0]; k++) {
    char path[512];
    snprintf(path, sizeof path, "%s%s", TS_PREFIX, lossy[k].file);
    int r = 0, c = 0;
    float *hu = load_file(path, &r, &c);
    ASSERT(hu != NULL);
    ASSERT_EQ_INT(r, rows);
    ASSERT_EQ_INT(c, cols);
    double sum = 0, mx = 0;
    for (size_t i = 0; i < n; i++) {
      double d = fabs((double)hu[i] - (double)ref[i]);
      sum += d;
      if (d > mx) mx = d;
    }
    free(hu);
    printf("%-60s mean |dHU| %.3f  max %.1f\n", lossy[k].file, sum / n, mx);
    ASSERT(sum / n <= lossy[k].max_mean);
    ASSERT(mx <= lossy[k].max_abs);
  }
  free(ref);
  return 0;
}

/* The folder's other files: vendor JPEG 2000, enhanced CT, ultrasound. */
TEST_IMPL(dicom_transfer_syntaxes_other_files) {
  if (!is_dir(TS_DIR)) TEST_SKIP("../shared/data is absent");
  ctp_scan *sc = scan1(TS_DIR "US-YBR_FULL_422-EVRLE.dcm");
  ASSERT(sc != NULL);
  const ctp_slice *s = ctp_scan_file(sc, 0);
  ASSERT_EQ_INT(s->status, CTP_SLICE_SKIPPED);
  ASSERT_EQ_INT(s->skip, CTP_SKIP_NOT_CT);
  ASSERT_EQ_INT(s->err, CTP_ESKIP);
  ASSERT(strstr(s->reason, "Modality is US") != NULL);
  ASSERT_EQ_INT(ctp_scan_num_series(sc), 1);
  ASSERT_EQ_INT(ctp_series_num_acquisitions(ctp_scan_series(sc, 0)), 0);
  ASSERT_EQ_INT(ctp_series_num_skipped(ctp_scan_series(sc, 0)), 1);
  float *buf = malloc(sizeof(float) * (size_t)s->rows * (size_t)s->columns);
  ASSERT(buf != NULL);
  ASSERT_EQ_INT(ctp_slice_load_hu(s, buf), CTP_ENOTSUP); /* colour */
  free(buf);
  ctp_scan_free(sc);

  sc = scan1(TS_DIR "CT0012.fragmented_no_bot_jpeg_baseline.51.dcm");
  ASSERT(sc != NULL);
  s = ctp_scan_file(sc, 0);
  ASSERT_EQ_INT(s->status, CTP_SLICE_SKIPPED);
  ASSERT_EQ_INT(s->skip, CTP_SKIP_MULTIFRAME);
  ASSERT(strstr(s->reason, "2 frames") != NULL);
  ctp_scan_free(sc);

  /* GE (used) and Toshiba (DERIVED\SECONDARY: skipped, but decodable)
   * JPEG 2000 lossless slices: plausible CT values. */
  static const char *const j2k[] = {TS_DIR "CT1_J2KR", TS_DIR "CT2_J2KR"};
  for (int k = 0; k < 2; k++) {
    sc = scan1(j2k[k]);
    ASSERT(sc != NULL);
    s = ctp_scan_file(sc, 0);
    ASSERT_EQ_INT(s->status, k == 0 ? CTP_SLICE_USED : CTP_SLICE_SKIPPED);
    if (k == 1) ASSERT_EQ_INT(s->skip, CTP_SKIP_SECONDARY);
    ASSERT(strcmp(s->transfer_syntax_uid, "1.2.840.10008.1.2.4.90") == 0);
    size_t n = (size_t)s->rows * (size_t)s->columns, air = 0, soft = 0;
    float *hu = malloc(sizeof(float) * n);
    ASSERT(hu != NULL);
    ASSERT_OK(ctp_slice_load_hu(s, hu));
    double mn = 1e9, mx = -1e9;
    for (size_t i = 0; i < n; i++) {
      if (hu[i] < mn) mn = hu[i];
      if (hu[i] > mx) mx = hu[i];
      air += hu[i] > -1100 && hu[i] < -900;
      soft += hu[i] > -50 && hu[i] < 150;
    }
    printf("%s: HU %.0f..%.0f, air %.1f%%, soft tissue %.1f%%\n", j2k[k], mn,
           mx, 100.0 * air / n, 100.0 * soft / n);
    ASSERT(mn >= -3100 && mx <= 4000 && mx > 500);
    ASSERT(air > n / 50 && soft > n / 50);
    free(hu);
    ctp_scan_free(sc);
  }
  return 0;
}

/* The real trap: one SeriesInstanceUID, two acquisitions (arterial and
 * portal venous), 109 slices each, interleaved by nothing but
 * AcquisitionNumber. */
TEST_IMPL(dicom_hcc002_two_acquisitions) {
  if (!is_dir(HCC_DIR)) TEST_SKIP("../shared/data is absent");
  double t0 = now_s();
  ctp_scan *sc = scan1(HCC_DIR);
  double t1 = now_s();
  ASSERT(sc != NULL);
  ASSERT_EQ_INT(ctp_scan_num_files(sc), 218);
  ASSERT_EQ_INT(ctp_scan_num_series(sc), 1);
  const ctp_series *se = ctp_scan_series(sc, 0);
  ASSERT_EQ_INT(ctp_series_num_skipped(se), 0);
  ASSERT_EQ_INT(ctp_series_num_acquisitions(se), 2);
  ASSERT(ctp_series_ref(se) != NULL);
  ASSERT(strcmp(ctp_series_ref(se)->series_instance_uid,
                ctp_series_uid(se)) == 0);

  float *hu = malloc(sizeof(float) * 512 * 512);
  ASSERT(hu != NULL);
  double tload = 0;
  for (int a = 0; a < 2; a++) {
    const ctp_acquisition *acq = ctp_series_acquisition(se, a);
    ASSERT_EQ_INT(ctp_acquisition_index(acq), a);
    ASSERT_EQ_INT(ctp_acquisition_number(acq), a + 1);
    ASSERT_EQ_INT(ctp_acquisition_num_slices(acq), 109);
    ASSERT_EQ_INT(ctp_acquisition_rows(acq), 512);
    ASSERT_EQ_INT(ctp_acquisition_columns(acq), 512);
    ASSERT_NEAR(ctp_acquisition_spacing(acq), 2.5, 1e-6);
    double nrm[3];
    ctp_acquisition_normal(acq, nrm);
    ASSERT_NEAR(nrm[2], 1.0, 1e-9);
    char prefix[8];
    snprintf(prefix, sizeof prefix, "/%d-", a + 1);
    for (int i = 0; i < 109; i++) {
      const ctp_slice *s = ctp_acquisition_slice(acq, i);
      ASSERT_EQ_INT(s->status, CTP_SLICE_USED);
      ASSERT_EQ_INT(s->acquisition_number, a + 1);
      ASSERT(strstr(s->path, prefix) != NULL);
      /* Strictly increasing along the normal: feet to head. */
      if (i > 0)
        ASSERT_NEAR(s->location - ctp_acquisition_slice(acq, i - 1)->location,
                    2.5, 1e-6);
      ASSERT_NEAR(s->location, s->position[2], 1e-9);
      double t = now_s();
      ASSERT_OK(ctp_slice_load_hu(s, hu));
      tload += now_s() - t;
    }
    ASSERT_NEAR(ctp_acquisition_slice(acq, 0)->location, -330.0, 1e-6);
    ASSERT_NEAR(ctp_acquisition_slice(acq, 108)->location, -60.0, 1e-6);

    /* A mid slice (kidney level): air outside, soft tissue inside. */
    ASSERT_OK(ctp_slice_load_hu(ctp_acquisition_slice(acq, 54), hu));
    size_t air = 0, soft = 0;
    double mn = 1e9;
    for (size_t i = 0; i < 512 * 512; i++) {
      if (hu[i] < mn) mn = hu[i];
      air += hu[i] > -1100 && hu[i] < -900;
      soft += hu[i] >= 0 && hu[i] <= 100;
    }
    ASSERT(mn >= -1100 && mn < -900);
    ASSERT(air > 512 * 512 / 10);
    ASSERT(soft > 512 * 512 / 10);
  }
  free(hu);
  printf("HCC_002, 218 files: scan %.3f s, decode %.3f s (%.2f ms/slice)\n",
         t1 - t0, tload, 1000 * tload / 218);
  ctp_scan_free(sc);
  return 0;
}

struct load_job {
  const ctp_acquisition *acq;
  int first, step, n;
  float *out; /* (nslices, 512*512) */
  int rc;
};

static void *load_worker(void *arg) {
  struct load_job *j = arg;
  for (int i = j->first; i < j->n && j->rc == 0; i += j->step)
    j->rc = ctp_slice_load_hu(ctp_acquisition_slice(j->acq, i),
                              j->out + (size_t)i * 512 * 512);
  return NULL;
}

/* ctp_slice_load_hu() from two threads at once gives what one thread
 * gives. */
TEST_IMPL(dicom_hcc002_parallel_load) {
  if (!is_dir(HCC_DIR)) TEST_SKIP("../shared/data is absent");
  ctp_scan *sc = scan1(HCC_DIR);
  ASSERT(sc != NULL);
  const ctp_acquisition *acq =
      ctp_series_acquisition(ctp_scan_series(sc, 0), 1);
  int n = 24; /* enough slices to overlap in time */
  size_t sz = (size_t)n * 512 * 512;
  float *serial = malloc(sizeof(float) * sz);
  float *par = malloc(sizeof(float) * sz);
  ASSERT(serial && par);
  for (int i = 0; i < n; i++)
    ASSERT_OK(ctp_slice_load_hu(ctp_acquisition_slice(acq, i),
                                serial + (size_t)i * 512 * 512));
  struct load_job jobs[2] = {{acq, 0, 2, n, par, 0}, {acq, 1, 2, n, par, 0}};
  pthread_t th[2];
  for (int k = 0; k < 2; k++)
    ASSERT_EQ_INT(pthread_create(&th[k], NULL, load_worker, &jobs[k]), 0);
  for (int k = 0; k < 2; k++) pthread_join(th[k], NULL);
  ASSERT_OK(jobs[0].rc);
  ASSERT_OK(jobs[1].rc);
  ASSERT_ALLCLOSE("parallel vs serial", par, serial, sz, 0, 0);
  free(serial);
  free(par);
  ctp_scan_free(sc);
  return 0;
}

/* ------------------------------------------------------------------ */
/* The corpus                                                           */
/* ------------------------------------------------------------------ */

static const struct {
  const char *file;
  int status, skip, err;
  const char *reason; /* a phrase the reason must contain */
} outcomes[] = {
    {"empty.dcm", CTP_SLICE_ERROR, CTP_SKIP_ERROR, CTP_EFORMAT, "empty file"},
    {"not-dicom.txt", CTP_SLICE_ERROR, CTP_SKIP_ERROR, CTP_EFORMAT,
     "not a DICOM file"},
    {"truncated-header.dcm", CTP_SLICE_ERROR, CTP_SKIP_ERROR, CTP_EFORMAT,
     "truncated or corrupt"},
    {"truncated-pixels.dcm", CTP_SLICE_ERROR, CTP_SKIP_ERROR, CTP_EFORMAT,
     "truncated or corrupt"},
    {"garbage-after-preamble.dcm", CTP_SLICE_ERROR, CTP_SKIP_ERROR,
     CTP_EFORMAT, "truncated or corrupt"},
    {"short-pixels.dcm", CTP_SLICE_ERROR, CTP_SKIP_ERROR, CTP_EFORMAT,
     "PixelData holds 256 bytes but Rows x Columns x 2 bytes needs 512"},
    {"rows-0.dcm", CTP_SLICE_ERROR, CTP_SKIP_ERROR, CTP_ERANGE,
     "Rows 0 x Columns 16 is out of range"},
    {"rows-65535.dcm", CTP_SLICE_ERROR, CTP_SKIP_ERROR, CTP_ERANGE,
     "Rows 65535 x Columns 16 is out of range"},
    {"bits-32.dcm", CTP_SLICE_ERROR, CTP_SKIP_ERROR, CTP_ENOTSUP,
     "BitsAllocated 32 is not supported"},
    {"no-rescale.dcm", CTP_SLICE_ERROR, CTP_SKIP_ERROR, CTP_EFORMAT,
     "RescaleIntercept (0028,1052) is missing"},
    {"no-position.dcm", CTP_SLICE_ERROR, CTP_SKIP_ERROR, CTP_EFORMAT,
     "ImagePositionPatient (0020,0032) is missing"},
    {"no-orientation.dcm", CTP_SLICE_ERROR, CTP_SKIP_ERROR, CTP_EFORMAT,
     "ImageOrientationPatient (0020,0037) is missing"},
    {"no-pixels.dcm", CTP_SLICE_ERROR, CTP_SKIP_ERROR, CTP_EFORMAT,
     "PixelData (7fe0,0010) is missing"},
    {"rgb.dcm", CTP_SLICE_ERROR, CTP_SKIP_ERROR, CTP_ENOTSUP,
     "SamplesPerPixel 3 is not supported"},
    {"localizer.dcm", CTP_SLICE_SKIPPED, CTP_SKIP_LOCALIZER, CTP_ESKIP,
     "localizer (ImageType ORIGINAL\\PRIMARY\\LOCALIZER)"},
    {"derived-secondary.dcm", CTP_SLICE_SKIPPED, CTP_SKIP_SECONDARY,
     CTP_ESKIP, "ImageType DERIVED\\SECONDARY\\AXIAL"},
    {"mip.dcm", CTP_SLICE_SKIPPED, CTP_SKIP_PROJECTION, CTP_ESKIP,
     "projection image"},
    {"sagittal.dcm", CTP_SLICE_SKIPPED, CTP_SKIP_NON_AXIAL, CTP_ESKIP,
     "90.0 deg from the patient z axis (sagittal)"},
    {"coronal.dcm", CTP_SLICE_SKIPPED, CTP_SKIP_NON_AXIAL, CTP_ESKIP,
     "(coronal)"},
    {"tilt-40.dcm", CTP_SLICE_SKIPPED, CTP_SKIP_TILT, CTP_ESKIP,
     "gantry tilt 40.0 deg exceeds 30 deg"},
    {"modality-us.dcm", CTP_SLICE_SKIPPED, CTP_SKIP_NOT_CT, CTP_ESKIP,
     "Modality is US, not CT"},
    {"secondary-capture.dcm", CTP_SLICE_SKIPPED, CTP_SKIP_NOT_CT, CTP_ESKIP,
     "SOP class 1.2.840.10008.5.1.4.1.1.7"},
    {"multiframe.dcm", CTP_SLICE_SKIPPED, CTP_SKIP_MULTIFRAME, CTP_ESKIP,
     "(2 frames) is not supported"},
    {"valid.dcm", CTP_SLICE_USED, CTP_SKIP_NONE, 0, ""},
    {"bits-8.dcm", CTP_SLICE_USED, CTP_SKIP_NONE, 0, ""},
    {"signed12-junk.dcm", CTP_SLICE_USED, CTP_SKIP_NONE, 0, ""},
    {"highbit15.dcm", CTP_SLICE_USED, CTP_SKIP_NONE, 0, ""},
    {"slope-2.5.dcm", CTP_SLICE_USED, CTP_SKIP_NONE, 0, ""},
    {"no-slope.dcm", CTP_SLICE_USED, CTP_SKIP_NONE, 0, ""},
    {"no-spacing.dcm", CTP_SLICE_USED, CTP_SKIP_NONE, 0, ""},
    {"imager-spacing.dcm", CTP_SLICE_USED, CTP_SKIP_NONE, 0, ""},
    {"tilt-20.dcm", CTP_SLICE_USED, CTP_SKIP_NONE, 0, ""},
    {"no-preamble.dcm", CTP_SLICE_USED, CTP_SKIP_NONE, 0, ""},
};

/* Each corpus file, scanned on its own: outcome, code and reason; an
 * error file's load answers with the same error. */
TEST_IMPL(dicom_corpus_outcomes) {
  for (size_t k = 0; k < sizeof outcomes / sizeof outcomes[0]; k++) {
    char path[256];
    snprintf(path, sizeof path, CORPUS "%s", outcomes[k].file);
    ctp_scan *sc = scan1(path);
    ASSERT(sc != NULL);
    ASSERT_EQ_INT(ctp_scan_num_files(sc), 1);
    const ctp_slice *s = ctp_scan_file(sc, 0);
    if (s->status != outcomes[k].status || s->skip != outcomes[k].skip ||
        s->err != outcomes[k].err ||
        !strstr(s->reason, outcomes[k].reason)) {
      fprintf(stderr, "%s: got status %d skip %s err %s \"%s\"\n", path,
              s->status, ctp_skip_str(s->skip), ctp_err_name(s->err),
              s->reason);
      fprintf(stderr, "%s: want status %d skip %s err %s \"%s\"\n", path,
              outcomes[k].status, ctp_skip_str(outcomes[k].skip),
              ctp_err_name(outcomes[k].err), outcomes[k].reason);
      return 1;
    }
    ASSERT(strcmp(s->path, path) == 0);
    ASSERT((s->reason[0] == '\0') == (s->status == CTP_SLICE_USED));
    if (s->status == CTP_SLICE_ERROR) {
      float x;
      ASSERT_EQ_INT(ctp_slice_load_hu(s, &x), s->err);
      ASSERT(strstr(ctp_last_error(), s->reason) != NULL);
    }
    /* A used file forms one series with one acquisition of one slice. */
    if (s->status == CTP_SLICE_USED) {
      ASSERT_EQ_INT(ctp_scan_num_series(sc), 1);
      const ctp_series *se = ctp_scan_series(sc, 0);
      ASSERT_EQ_INT(ctp_series_num_acquisitions(se), 1);
      ASSERT(ctp_acquisition_slice(ctp_series_acquisition(se, 0), 0) == s);
    }
    ctp_scan_free(sc);
  }
  return 0;
}

/* Decoded values of the used corpus files, exactly. */
TEST_IMPL(dicom_corpus_values) {
  static const struct {
    const char *file;
    int kind; /* 0 pattern, 1 8-bit, 2 slope 2.5 */
  } cases[] = {
      {"valid.dcm", 0},     {"signed12-junk.dcm", 0}, {"highbit15.dcm", 0},
      {"no-slope.dcm", 0},  {"no-preamble.dcm", 0},   {"tilt-20.dcm", 0},
      {"localizer.dcm", 0}, {"bits-8.dcm", 1},        {"slope-2.5.dcm", 2},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    char path[256];
    snprintf(path, sizeof path, CORPUS "%s", cases[k].file);
    int rows = 0, cols = 0;
    float *hu = load_file(path, &rows, &cols);
    ASSERT(hu != NULL);
    ASSERT_EQ_INT(rows, 16);
    ASSERT_EQ_INT(cols, 16);
    float want[256];
    for (int r = 0; r < 16; r++)
      for (int c = 0; c < 16; c++) {
        int v = 16 * r + c;
        want[r * 16 + c] = cases[k].kind == 0   ? corpus_hu(r, c)
                           : cases[k].kind == 1 ? (float)(8 * (v & 255) - 1024)
                                                : (float)(2.5 * 8 * v - 1000);
      }
    int bad = test_allclose(cases[k].file, hu, want, 256, 0, 0);
    free(hu);
    ASSERT_EQ_INT(bad, 0);
  }
  return 0;
}

/* Header fields, spacing fallbacks and tilt. */
TEST_IMPL(dicom_corpus_geometry) {
  ctp_scan *sc = scan1(CORPUS "valid.dcm");
  ASSERT(sc != NULL);
  const ctp_slice *s = ctp_scan_file(sc, 0);
  ASSERT(strcmp(s->sop_class_uid, "1.2.840.10008.5.1.4.1.1.2") == 0);
  ASSERT(strcmp(s->transfer_syntax_uid, "1.2.840.10008.1.2.1") == 0);
  ASSERT(strcmp(s->modality, "CT") == 0);
  ASSERT(strcmp(s->image_type, "ORIGINAL\\PRIMARY\\AXIAL") == 0);
  ASSERT(strcmp(s->specific_character_set, "ISO_IR 100") == 0);
  ASSERT(strcmp(s->study_date, "20240101") == 0);
  ASSERT(strcmp(s->study_time, "120000") == 0);
  ASSERT(strcmp(s->accession_number, "ACC1") == 0);
  ASSERT(strcmp(s->series_description, "corpus series") == 0);
  ASSERT(strcmp(s->study_description, "corpus study") == 0);
  ASSERT(strcmp(s->manufacturer, "ctphase corpus") == 0);
  ASSERT(strcmp(s->patient_name, "Corpus^Test") == 0);
  ASSERT(strcmp(s->patient_id, "CORPUS1") == 0);
  ASSERT(strcmp(s->patient_birth_date, "19700101") == 0);
  ASSERT(strcmp(s->patient_sex, "O") == 0);
  ASSERT(strcmp(s->photometric, "MONOCHROME2") == 0);
  ASSERT(strcmp(s->acquisition_time, "") == 0);
  ASSERT(s->study_instance_uid[0] && s->frame_of_reference_uid[0]);
  ASSERT_EQ_INT(s->series_number, 2);
  ASSERT_EQ_INT(s->acquisition_number, 1);
  ASSERT_EQ_INT(s->instance_number, 1);
  ASSERT_EQ_INT(s->number_of_frames, 1);
  ASSERT_EQ_INT(s->bits_allocated, 16);
  ASSERT_EQ_INT(s->bits_stored, 16);
  ASSERT_EQ_INT(s->high_bit, 15);
  ASSERT_EQ_INT(s->pixel_representation, 0);
  ASSERT_EQ_INT(s->samples_per_pixel, 1);
  ASSERT_EQ_INT(s->spacing_source, 1);
  ASSERT_NEAR(s->pixel_spacing[0], 0.7, 1e-12);
  ASSERT_NEAR(s->pixel_spacing[1], 0.7, 1e-12);
  ASSERT_NEAR(s->slice_thickness, 2.5, 1e-12);
  ASSERT_NEAR(s->kvp, 120, 1e-12);
  ASSERT(s->has_window);
  ASSERT_NEAR(s->window_center, 40, 1e-12);
  ASSERT_NEAR(s->window_width, 400, 1e-12);
  ASSERT_NEAR(s->rescale_slope, 1, 0);
  ASSERT_NEAR(s->rescale_intercept, -1024, 0);
  ASSERT(s->has_position && s->has_orientation);
  ASSERT_NEAR(s->position[0], -10, 0);
  ASSERT_NEAR(s->normal[2], 1, 1e-12);
  ASSERT(!s->has_padding);
  ctp_scan_free(sc);

  sc = scan1(CORPUS "no-spacing.dcm");
  ASSERT(sc != NULL);
  s = ctp_scan_file(sc, 0);
  ASSERT_EQ_INT(s->spacing_source, 0);
  ASSERT(s->pixel_spacing[0] == 0 && s->pixel_spacing[1] == 0);
  ctp_scan_free(sc);

  sc = scan1(CORPUS "imager-spacing.dcm");
  ASSERT(sc != NULL);
  s = ctp_scan_file(sc, 0);
  ASSERT_EQ_INT(s->spacing_source, 2);
  ASSERT_NEAR(s->pixel_spacing[0], 0.8, 1e-12);
  ASSERT_NEAR(s->pixel_spacing[1], 0.9, 1e-12);
  ctp_scan_free(sc);

  /* 20 deg tilt: used; the normal leans 20 deg from z. */
  sc = scan1(CORPUS "tilt-20.dcm");
  ASSERT(sc != NULL);
  s = ctp_scan_file(sc, 0);
  ASSERT_EQ_INT(s->status, CTP_SLICE_USED);
  ASSERT_NEAR(s->gantry_tilt, 20, 1e-12);
  ASSERT_NEAR(s->normal[2], cos(20 * M_PI / 180), 1e-6);
  ASSERT_NEAR(s->normal[1], -sin(20 * M_PI / 180), 1e-6);
  ctp_scan_free(sc);
  return 0;
}

/* Checks that acquisition a of series se has n slices at locations
 * z0, z0 + dz, ... */
static int check_acq(const ctp_series *se, int a, int n, double z0,
                     double dz) {
  const ctp_acquisition *acq = ctp_series_acquisition(se, a);
  ASSERT(acq != NULL);
  ASSERT_EQ_INT(ctp_acquisition_num_slices(acq), n);
  for (int i = 0; i < n; i++) {
    const ctp_slice *s = ctp_acquisition_slice(acq, i);
    ASSERT_EQ_INT(s->status, CTP_SLICE_USED);
    ASSERT_NEAR(s->location, z0 + dz * i, 1e-6);
  }
  if (n > 1) ASSERT_NEAR(ctp_acquisition_spacing(acq), fabs(dz), 1e-6);
  return 0;
}

/* The grouping rules, one folder each. */
TEST_IMPL(dicom_corpus_folders) {
  ctp_scan *sc;
  const ctp_series *se;

  /* duplicate/: the second file of one SOP instance is skipped. */
  sc = scan1(CORPUS "duplicate");
  ASSERT(sc != NULL);
  ASSERT_EQ_INT(ctp_scan_num_files(sc), 2);
  ASSERT_EQ_INT(ctp_scan_file(sc, 0)->status, CTP_SLICE_USED);
  ASSERT_EQ_INT(ctp_scan_file(sc, 1)->skip, CTP_SKIP_DUPLICATE);
  ASSERT(strstr(ctp_scan_file(sc, 1)->reason, "duplicate SOP Instance UID") !=
         NULL);
  ASSERT(strstr(ctp_scan_file(sc, 1)->path, "b.dcm") != NULL);
  se = ctp_scan_series(sc, 0);
  ASSERT_EQ_INT(ctp_series_num_acquisitions(se), 1);
  ASSERT_EQ_INT(ctp_series_num_skipped(se), 1);
  ASSERT_OK(check_acq(se, 0, 1, 0, 0));
  ctp_scan_free(sc);

  /* mixed/: two series, ordered by SeriesNumber. */
  sc = scan1(CORPUS "mixed");
  ASSERT(sc != NULL);
  ASSERT_EQ_INT(ctp_scan_num_series(sc), 2);
  ASSERT(strstr(ctp_series_uid(ctp_scan_series(sc, 0)), ".21") != NULL);
  ASSERT_OK(check_acq(ctp_scan_series(sc, 0), 0, 3, 0, 2.5));
  ASSERT_OK(check_acq(ctp_scan_series(sc, 1), 0, 2, 0, 5));
  ASSERT_EQ_INT(ctp_series_ref(ctp_scan_series(sc, 1))->series_number, 3);
  ctp_scan_free(sc);

  /* shuffled/: by position, not InstanceNumber or file name. */
  sc = scan1(CORPUS "shuffled");
  ASSERT(sc != NULL);
  se = ctp_scan_series(sc, 0);
  ASSERT_EQ_INT(ctp_series_num_acquisitions(se), 1);
  ASSERT_OK(check_acq(se, 0, 5, 0, 2.5));
  ctp_scan_free(sc);

  /* two-acq/: AcquisitionNumber 1 and 2 over the same positions. */
  sc = scan1(CORPUS "two-acq");
  ASSERT(sc != NULL);
  se = ctp_scan_series(sc, 0);
  ASSERT_EQ_INT(ctp_series_num_acquisitions(se), 2);
  for (int a = 0; a < 2; a++) {
    ASSERT_OK(check_acq(se, a, 4, -7.5, 2.5));
    const ctp_acquisition *acq = ctp_series_acquisition(se, a);
    ASSERT_EQ_INT(ctp_acquisition_number(acq), a + 1);
    for (int i = 0; i < 4; i++)
      ASSERT_EQ_INT(ctp_acquisition_slice(acq, i)->acquisition_number, a + 1);
  }
  ctp_scan_free(sc);

  /* repeat-no-acqnum/: no AcquisitionNumber; the repeated positions split
   * the series, in InstanceNumber order. */
  sc = scan1(CORPUS "repeat-no-acqnum");
  ASSERT(sc != NULL);
  se = ctp_scan_series(sc, 0);
  ASSERT_EQ_INT(ctp_series_num_acquisitions(se), 2);
  for (int a = 0; a < 2; a++) {
    ASSERT_OK(check_acq(se, a, 4, -7.5, 2.5));
    const ctp_acquisition *acq = ctp_series_acquisition(se, a);
    ASSERT_EQ_INT(ctp_acquisition_number(acq), -1);
    for (int i = 0; i < 4; i++) {
      int inst = ctp_acquisition_slice(acq, i)->instance_number;
      ASSERT(inst > 4 * a && inst <= 4 * a + 4);
    }
  }
  ctp_scan_free(sc);

  /* step-and-shoot/: three numbered rotations end to end are one sweep. */
  sc = scan1(CORPUS "step-and-shoot");
  ASSERT(sc != NULL);
  se = ctp_scan_series(sc, 0);
  ASSERT_EQ_INT(ctp_series_num_acquisitions(se), 1);
  ASSERT_OK(check_acq(se, 0, 12, 0, 2.5));
  ASSERT_EQ_INT(ctp_acquisition_number(ctp_series_acquisition(se, 0)), 1);
  ASSERT(strcmp(ctp_acquisition_slice(ctp_series_acquisition(se, 0), 0)
                    ->acquisition_time,
                "120002.500") == 0);
  ctp_scan_free(sc);

  /* contiguous-phases/: end to end too, but 45 s apart: not joined. */
  sc = scan1(CORPUS "contiguous-phases");
  ASSERT(sc != NULL);
  se = ctp_scan_series(sc, 0);
  ASSERT_EQ_INT(ctp_series_num_acquisitions(se), 2);
  ASSERT_OK(check_acq(se, 0, 4, 0, 2.5));
  ASSERT_OK(check_acq(se, 1, 4, 10, 2.5));
  ctp_scan_free(sc);

  /* size-mix/: the one 32x32 slice among 16x16 ones is skipped. */
  sc = scan1(CORPUS "size-mix");
  ASSERT(sc != NULL);
  se = ctp_scan_series(sc, 0);
  ASSERT_EQ_INT(ctp_series_num_acquisitions(se), 1);
  ASSERT_OK(check_acq(se, 0, 4, 0, 2.5));
  ASSERT_EQ_INT(ctp_series_num_skipped(se), 1);
  ASSERT_EQ_INT(ctp_series_skipped(se, 0)->skip, CTP_SKIP_SIZE);
  ASSERT(strstr(ctp_series_skipped(se, 0)->reason,
                "image size 32x32 differs from its acquisition's 16x16") !=
         NULL);
  ctp_scan_free(sc);

  /* tilted/: a 20 deg tilted stack, 2.5 mm apart along its normal,
   * InstanceNumbers running backwards. */
  sc = scan1(CORPUS "tilted");
  ASSERT(sc != NULL);
  se = ctp_scan_series(sc, 0);
  ASSERT_EQ_INT(ctp_series_num_acquisitions(se), 1);
  {
    const ctp_acquisition *acq = ctp_series_acquisition(se, 0);
    const ctp_slice *s0 = ctp_acquisition_slice(acq, 0);
    ASSERT_OK(check_acq(se, 0, 4, s0->location, 2.5));
    ASSERT(strstr(s0->path, "t0.dcm") != NULL);
    ASSERT(strstr(ctp_acquisition_slice(acq, 3)->path, "t3.dcm") != NULL);
    double nrm[3];
    ctp_acquisition_normal(acq, nrm);
    ASSERT_NEAR(nrm[2], cos(20 * M_PI / 180), 1e-6);
  }
  ctp_scan_free(sc);

  /* with-localizer/: the localizer is listed among the skipped. */
  sc = scan1(CORPUS "with-localizer");
  ASSERT(sc != NULL);
  ASSERT_EQ_INT(ctp_scan_num_series(sc), 1);
  se = ctp_scan_series(sc, 0);
  ASSERT_OK(check_acq(se, 0, 3, 0, 2.5));
  ASSERT_EQ_INT(ctp_series_num_skipped(se), 1);
  ASSERT_EQ_INT(ctp_series_skipped(se, 0)->skip, CTP_SKIP_LOCALIZER);
  ASSERT(strstr(ctp_series_ref(se)->path, "ax0.dcm") != NULL);
  ctp_scan_free(sc);
  return 0;
}

/* The whole corpus in one scan: every file accounted for, every reason
 * free of patient data, every readable slice decodable or refused with a
 * code. Run under the sanitizers, this is the corpus replay. */
TEST_IMPL(dicom_corpus_replay) {
  ctp_scan *sc = scan1(CORPUS);
  ASSERT(sc != NULL);
  int nfiles = ctp_scan_num_files(sc), used = 0, skipped = 0, errors = 0;
  ASSERT(nfiles >= 80);
  float *buf = malloc(sizeof(float) * 32 * 32);
  ASSERT(buf != NULL);
  for (int i = 0; i < nfiles; i++) {
    const ctp_slice *s = ctp_scan_file(sc, i);
    ASSERT(s && s->path && s->reason && s->sop_instance_uid && s->image_type);
    ASSERT(!strstr(s->reason, "Corpus") && !strstr(s->reason, "CORPUS1"));
    ASSERT((s->reason[0] == '\0') == (s->status == CTP_SLICE_USED));
    used += s->status == CTP_SLICE_USED;
    skipped += s->status == CTP_SLICE_SKIPPED;
    errors += s->status == CTP_SLICE_ERROR;
    int rc = s->rows * s->columns <= 32 * 32 ? ctp_slice_load_hu(s, buf)
                                             : CTP_ERANGE;
    if (s->status == CTP_SLICE_USED) ASSERT_OK(rc);
    if (s->status == CTP_SLICE_ERROR) ASSERT_EQ_INT(rc, s->err);
    ASSERT(rc <= 0);
  }
  free(buf);
  printf("corpus: %d files: %d used, %d skipped, %d errors\n", nfiles, used,
         skipped, errors);
  ASSERT(used > 0 && skipped > 0 && errors > 0);
  for (int i = 0; i < ctp_scan_num_series(sc); i++)
    ASSERT(ctp_series_ref(ctp_scan_series(sc, i)) != NULL);
  ctp_scan_free(sc);
  return 0;
}

/* A file replaced, truncated or removed between scan and load is refused
 * with a reason, never decoded as something else. */
TEST_IMPL(dicom_file_changed_after_scan) {
  char path[512];
  snprintf(path, sizeof path, "%s/x.dcm", test_tmpdir());
  ASSERT_EQ_INT(copy_file(CORPUS "valid.dcm", path), 0);
  ctp_scan *sc = scan1(path);
  ASSERT(sc != NULL);
  const ctp_slice *s = ctp_scan_file(sc, 0);
  float hu[256];
  ASSERT_OK(ctp_slice_load_hu(s, hu));

  ASSERT_EQ_INT(copy_file(CORPUS "mixed/a0.dcm", path), 0);
  ASSERT_EQ_INT(ctp_slice_load_hu(s, hu), CTP_ESTATE);
  ASSERT(strstr(ctp_last_error(), "changed since it was scanned") != NULL);

  ASSERT_EQ_INT(copy_file(CORPUS "truncated-pixels.dcm", path), 0);
  ASSERT_EQ_INT(ctp_slice_load_hu(s, hu), CTP_EFORMAT);

  ASSERT_EQ_INT(truncate(path, 0), 0);
  ASSERT_EQ_INT(ctp_slice_load_hu(s, hu), CTP_EFORMAT);
  ASSERT(strstr(ctp_last_error(), "empty file") != NULL);

  ASSERT_EQ_INT(unlink(path), 0);
  ASSERT_EQ_INT(ctp_slice_load_hu(s, hu), CTP_EIO);
  ctp_scan_free(sc);
  return 0;
}
