/*
 * test-report.c — the result's DICOM objects (report.h): deterministic
 * UIDs, their validity under the default and a site root, and
 * ctp_report_write over the corpus' small two-acquisition series (the
 * DICOM content itself is checked with dciodvfy, dsrdump and pydicom in
 * tests/report_test.py).
 */
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctphase/dicom_write.h"
#include "ctphase/error.h"
#include "ctphase/predict.h"
#include "ctphase/report.h"
#include "ctphase/util.h"
#include "dicom/report_int.h"
#include "test.h"

#define FIX_MODEL "tests/reference/fixtures/b2_64_c1/model.safetensors"
#define SERIES "tests/corpus/dicom/two-acq"

/* A valid UID: at most 64 characters, digit components separated by
 * single dots, no component with a leading zero. */
static int uid_valid(const char *u) {
  size_t n = strlen(u);
  if (n == 0 || n > 64) return 0;
  const char *p = u;
  while (*p) {
    const char *s = p;
    while (*p >= '0' && *p <= '9') p++;
    if (p == s || (p - s > 1 && *s == '0')) return 0;
    if (*p == '.') {
      if (!p[1]) return 0;
      p++;
    } else if (*p) {
      return 0;
    }
  }
  return 1;
}

TEST_IMPL(report_uid_default_root) {
  char a[65], b[65], c[65], d[65];
  ASSERT_OK(ctp_report_uid(NULL, "series=1|sr", a));
  ASSERT_OK(ctp_report_uid("", "series=1|sr", b));
  ASSERT_OK(ctp_dicom_uid_from_name("series=1|sr", c));
  ASSERT(strcmp(a, b) == 0 && strcmp(a, c) == 0);
  ASSERT(strncmp(a, "2.25.", 5) == 0);
  ASSERT(uid_valid(a));
  ASSERT_OK(ctp_report_uid(NULL, "series=1|sc", d));
  ASSERT(strcmp(a, d) != 0);
  return 0;
}

TEST_IMPL(report_uid_site_root) {
  const char *root = "1.2.826.0.1.3680043.10.999";
  char a[65], b[65], c[65];
  ASSERT_OK(ctp_report_uid(root, "x|sr", a));
  ASSERT_OK(ctp_report_uid(root, "x|sr", b));
  ASSERT_OK(ctp_report_uid(root, "x|sr-series", c));
  ASSERT(strcmp(a, b) == 0);
  ASSERT(strcmp(a, c) != 0);
  ASSERT(strncmp(a, root, strlen(root)) == 0 && a[strlen(root)] == '.');
  ASSERT(uid_valid(a) && uid_valid(c));
  /* The longest root allowed still leaves 16 digits and fits. */
  char longroot[64];
  memset(longroot, 0, sizeof longroot);
  strcpy(longroot, "1.2.3");
  while (strlen(longroot) + 2 <= 47) strcat(longroot, ".9");
  ASSERT_EQ_INT(strlen(longroot), 47);
  ASSERT_OK(ctp_report_uid(longroot, "y", a));
  ASSERT(uid_valid(a));
  ASSERT_EQ_INT(strlen(a), 64);
  strcat(longroot, "1");
  ASSERT_EQ_INT(ctp_report_uid(longroot, "y", a), CTP_EINVAL);
  ASSERT(strstr(ctp_last_error(), "at most 47"));
  return 0;
}

TEST_IMPL(report_uid_bad_roots) {
  const char *bad[] = {"1.02.3", "1..2", "1.2.", ".1.2", "abc", "1.2a", "0.1.00"};
  char u[65];
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    ctp_clearerr();
    ASSERT_EQ_INT(ctp_report_uid(bad[i], "n", u), CTP_EINVAL);
    ASSERT(strstr(ctp_last_error(), bad[i]));
  }
  ASSERT_OK(ctp_report_uid("0.1.0", "n", u));
  ASSERT(uid_valid(u));
  ASSERT_EQ_INT(ctp_report_uid(NULL, NULL, u), CTP_EINVAL);
  return 0;
}

/* Many names under several roots: every UID valid, none repeated. */
TEST_IMPL(report_uid_many_valid) {
  const char *roots[] = {NULL, "1.2.840.99999", "2.25.1", "1"};
  static char seen[4 * 500][65];
  int n = 0;
  for (int r = 0; r < 4; r++)
    for (int i = 0; i < 500; i++) {
      char name[64];
      snprintf(name, sizeof name, "series-%d|acq-%d", i, i % 7);
      ASSERT_OK(ctp_report_uid(roots[r], name, seen[n]));
      if (!uid_valid(seen[n])) {
        fprintf(stderr, "invalid UID %s\n", seen[n]);
        return 1;
      }
      for (int j = 0; j < n; j++) ASSERT(strcmp(seen[j], seen[n]) != 0);
      n++;
    }
  return 0;
}

TEST_IMPL(report_phase_codes) {
  const char *v, *m;
  for (int c = 0; c < CTP_NUM_CLASSES; c++) {
    ASSERT_OK(ctp__report_phase_code(c, &v, &m));
    ASSERT(strcmp(v, ctp_class_name(c)) == 0);
    ASSERT(strlen(v) <= 16 && strlen(m) <= 64);
  }
  ASSERT_OK(ctp__report_phase_code(CTP_PHASE_INDETERMINATE, &v, &m));
  ASSERT(strcmp(v, "indeterminate") == 0);
  ASSERT_EQ_INT(ctp__report_phase_code(CTP_NUM_CLASSES, &v, &m), CTP_EINVAL);
  ASSERT_EQ_INT(ctp__report_phase_code(-2, &v, &m), CTP_EINVAL);
  return 0;
}

/* A failed or empty result has nothing to report, and says so. */
TEST_IMPL(report_rejects_bad_input) {
  ctp_model *m;
  ASSERT_OK(ctp_model_load(&m, FIX_MODEL));
  ctp_report_object *objs = (ctp_report_object *)1;
  int n = 7;
  ctp_result r;
  memset(&r, 0, sizeof r);
  r.err = CTP_ESKIP;
  snprintf(r.error, sizeof r.error, "no usable axial CT slice");
  ASSERT_EQ_INT(ctp_report_write(m, &r, NULL, NULL, test_tmpdir(), &objs, &n),
                CTP_EINVAL);
  ASSERT(objs == NULL && n == 0);
  ASSERT(strstr(ctp_last_error(), "no usable axial CT slice"));
  r.err = 0;
  ASSERT_EQ_INT(ctp_report_write(m, &r, NULL, NULL, test_tmpdir(), &objs, &n),
                CTP_EINVAL);
  ASSERT(strstr(ctp_last_error(), "no slices"));
  ASSERT_EQ_INT(ctp_report_write(m, &r, NULL, NULL, test_tmpdir(), NULL, &n),
                CTP_EINVAL);
  ASSERT_EQ_INT(ctp_report_write(NULL, &r, NULL, NULL, test_tmpdir(), &objs, &n),
                CTP_EINVAL);
  ctp_model_free(m);
  return 0;
}

static int file_exists(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0;
}

/* Writes the objects of one result; copies the UIDs out. */
static int write_once(const ctp_model *m, const ctp_result *r,
                      const ctp_report_opts *o, const char *dir,
                      char uids[8][65], int *n) {
  ctp_report_object *objs;
  int rc = ctp_report_write(m, r, o, NULL, dir, &objs, n);
  if (rc) return rc;
  for (int i = 0; i < *n && i < 8; i++) {
    snprintf(uids[i], 65, "%s", objs[i].sop_instance_uid);
    if (!file_exists(objs[i].path)) rc = ctp_seterr(CTP_EIO, "missing %s", objs[i].path);
    if (objs[i].kind != (i == 0 ? CTP_REPORT_SR : CTP_REPORT_SC))
      rc = ctp_seterr(CTP_EINVAL, "object %d of kind %d", i, objs[i].kind);
  }
  free(objs);
  return rc;
}

TEST_IMPL(report_write_deterministic) {
  ctp_model *m;
  ctp_scan *scan;
  ctp_predictor *p;
  ASSERT_OK(ctp_model_load(&m, FIX_MODEL));
  const char *paths[] = {SERIES};
  ASSERT_OK(ctp_dicom_scan(paths, 1, &scan));
  const ctp_series *se = ctp_scan_series(scan, 0);
  ctp_predict_opts po;
  ctp_predict_opts_default(&po);
  ASSERT_OK(ctp_predictor_new(&p, m, &po));
  ctp_result r0, r1;
  ASSERT_OK(ctp_predictor_run(p, se, ctp_series_acquisition(se, 0), &r0));
  ASSERT_OK(ctp_predictor_run(p, se, ctp_series_acquisition(se, 1), &r1));

  ctp_report_opts o;
  ctp_report_opts_default(&o);
  o.key_slices = 2;
  char dir[512], a[8][65], b[8][65], c[8][65];
  int na, nb, nc;
  snprintf(dir, sizeof dir, "%s/out/nested", test_tmpdir());
  ASSERT_OK(write_once(m, &r0, &o, dir, a, &na));
  ASSERT_EQ_INT(na, 3);
  ASSERT_OK(write_once(m, &r0, &o, dir, b, &nb));
  ASSERT_EQ_INT(nb, na);
  for (int i = 0; i < na; i++) ASSERT(strcmp(a[i], b[i]) == 0);
  for (int i = 0; i < na; i++) ASSERT(uid_valid(a[i]));

  /* Another acquisition, config or root: other UIDs. */
  ASSERT_OK(write_once(m, &r1, &o, dir, c, &nc));
  for (int i = 0; i < nc; i++)
    for (int j = 0; j < na; j++) ASSERT(strcmp(c[i], a[j]) != 0);
  o.config_key = "site-config-2";
  ASSERT_OK(write_once(m, &r0, &o, dir, c, &nc));
  for (int i = 0; i < nc; i++) ASSERT(strcmp(c[i], a[i]) != 0);
  o.config_key = NULL;
  o.sam_layer = CTP_L2B;
  ASSERT_OK(write_once(m, &r0, &o, dir, c, &nc));
  ASSERT(strcmp(c[0], a[0]) != 0);
  o.sam_layer = CTP_L3B;
  o.uid_root = "1.2.826.0.1.3680043.10.999";
  ASSERT_OK(write_once(m, &r0, &o, dir, c, &nc));
  for (int i = 0; i < nc; i++) ASSERT(strncmp(c[i], o.uid_root, strlen(o.uid_root)) == 0);

  /* A different model SHA-256 gives different UIDs. */
  o.uid_root = NULL;
  snprintf(r0.model_sha256, sizeof r0.model_sha256, "%064d", 0);
  ASSERT_OK(write_once(m, &r0, &o, dir, c, &nc));
  for (int i = 0; i < nc; i++) ASSERT(strcmp(c[i], a[i]) != 0);

  /* SR only. */
  o.key_slices = 0;
  ASSERT_OK(write_once(m, &r0, &o, dir, c, &nc));
  ASSERT_EQ_INT(nc, 1);

  /* A bad root or layer is refused before anything is written. */
  o.uid_root = "1.02";
  ctp_report_object *objs;
  int n;
  ASSERT_EQ_INT(ctp_report_write(m, &r0, &o, NULL, dir, &objs, &n), CTP_EINVAL);
  o.uid_root = NULL;
  o.sam_layer = 99;
  ASSERT_EQ_INT(ctp_report_write(m, &r0, &o, NULL, dir, &objs, &n), CTP_EINVAL);

  /* An output folder that cannot be made. */
  o.sam_layer = CTP_L3B;
  char file[600];
  snprintf(file, sizeof file, "%s/a-file", test_tmpdir());
  FILE *f = fopen(file, "w");
  ASSERT(f);
  fclose(f);
  char bad[700];
  snprintf(bad, sizeof bad, "%s/sub", file);
  ASSERT(ctp_report_write(m, &r0, &o, NULL, bad, &objs, &n) < 0);
  ASSERT(strstr(ctp_last_error(), "a-file"));

  ctp_result_free(&r0);
  ctp_result_free(&r1);
  ctp_predictor_free(p);
  ctp_scan_free(scan);
  ctp_model_free(m);
  return 0;
}

/* With masking on and a caller's explainer, the report still writes; an
 * explainer of the wrong size is refused. */
TEST_IMPL(report_write_masking_and_explainer) {
  ctp_model *m;
  ctp_scan *scan;
  ctp_predictor *p;
  ctp_explainer *e, *small;
  ASSERT_OK(ctp_model_load(&m, FIX_MODEL));
  const char *paths[] = {SERIES};
  ASSERT_OK(ctp_dicom_scan(paths, 1, &scan));
  const ctp_series *se = ctp_scan_series(scan, 0);
  ctp_predict_opts po;
  ctp_predict_opts_default(&po);
  ASSERT_OK(ctp_predictor_new(&p, m, &po));
  ctp_result r;
  ASSERT_OK(ctp_predictor_run(p, se, ctp_series_acquisition(se, 0), &r));
  ASSERT_OK(ctp_explainer_new(&e, m, m->input_size, m->input_size, 1));
  ASSERT_OK(ctp_explainer_new(&small, m, 32, 32, 1));
  ctp_report_opts o;
  ctp_report_opts_default(&o);
  o.masking = 1;
  o.all_slices = 1;
  ctp_report_object *objs;
  int n;
  ASSERT_OK(ctp_report_write(m, &r, &o, e, test_tmpdir(), &objs, &n));
  ASSERT_EQ_INT(n, 1 + r.nslices);
  free(objs);
  ASSERT_EQ_INT(ctp_report_write(m, &r, &o, small, test_tmpdir(), &objs, &n),
                CTP_ESHAPE);
  ctp_explainer_free(small);
  ctp_explainer_free(e);
  ctp_result_free(&r);
  ctp_predictor_free(p);
  ctp_scan_free(scan);
  ctp_model_free(m);
  return 0;
}

/* A report that fails halfway (a source file vanished after the
 * prediction) leaves none of the SCs it had written. */
TEST_IMPL(report_failure_leaves_nothing) {
  char src[512], out[512], path[700], dst[700];
  snprintf(src, sizeof src, "%s/series", test_tmpdir());
  snprintf(out, sizeof out, "%s/out", test_tmpdir());
  ASSERT(mkdir(src, 0755) == 0);
  const char *names[] = {"1-0.dcm", "1-1.dcm", "1-2.dcm", "1-3.dcm"};
  for (int i = 0; i < 4; i++) {
    unsigned char *buf;
    size_t len;
    snprintf(path, sizeof path, "%s/%s", SERIES, names[i]);
    snprintf(dst, sizeof dst, "%s/%s", src, names[i]);
    ASSERT_OK(ctp_file_read(path, &buf, &len));
    ASSERT_OK(ctp_file_write_atomic(dst, buf, len));
    free(buf);
  }
  ctp_model *m;
  ctp_scan *scan;
  ctp_predictor *p;
  ASSERT_OK(ctp_model_load(&m, FIX_MODEL));
  const char *paths[] = {src};
  ASSERT_OK(ctp_dicom_scan(paths, 1, &scan));
  const ctp_series *se = ctp_scan_series(scan, 0);
  ctp_predict_opts po;
  ctp_predict_opts_default(&po);
  ASSERT_OK(ctp_predictor_new(&p, m, &po));
  ctp_result r;
  ASSERT_OK(ctp_predictor_run(p, se, ctp_series_acquisition(se, 0), &r));
  ASSERT(r.nslices >= 2);
  /* Key slices are drawn strongest first: with the second one's file
   * gone, the first SC is written, then the second fails. */
  int key[2];
  if (ctp_result_key_slices(&r, 2, key) < 2)
    TEST_SKIP("fewer than two key slices in this fixture");
  ctp_report_opts o;
  ctp_report_opts_default(&o);
  o.key_slices = 2;
  const char *vanished = r.slices[key[1]].slice->path;
  ASSERT(unlink(vanished) == 0);
  ctp_report_object *objs;
  int n;
  ASSERT(ctp_report_write(m, &r, &o, NULL, out, &objs, &n) < 0);
  ASSERT(strstr(ctp_last_error(), vanished));
  DIR *d = opendir(out);
  ASSERT(d);
  struct dirent *e;
  int files = 0;
  while ((e = readdir(d)))
    if (e->d_name[0] != '.') files++;
  closedir(d);
  ASSERT_EQ_INT(files, 0);
  ctp_result_free(&r);
  ctp_predictor_free(p);
  ctp_scan_free(scan);
  ctp_model_free(m);
  return 0;
}
