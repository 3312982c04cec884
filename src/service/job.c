/*
 * job.c — one job: the prediction pipeline over one stable series.
 *
 * Runs in a libuv pool thread (sched.c queues it); never on the loop.
 * Borrows one of the daemon's predictors (one per worker, each with
 * threads_per_job inference threads, so that workers x threads stays
 * within the cores), reads the series' files as the database lists them,
 * and predicts every acquisition the reader finds:
 *
 *   files ─ ctp_dicom_scan ─> series ─> acquisitions ─ ctp_predictor_run ─>
 *   results ─ ctp_result_json ─> [ {...}, {...} ] stored on the job
 *
 * Each acquisition with a phase gets its report (report.h): a TID 1500 SR
 * and Secondary Captures of the key slices, written atomically under
 * data_dir/outbound/<series>/ with deterministic UIDs. Their outbound
 * rows (one per object per configured destination) are committed in the
 * same transaction that marks the job done, so a done job always has
 * its rows; a crash between the files and the commit re-runs the job,
 * which rewrites the same files under the same UIDs.
 *
 * Outcomes: done when at least one acquisition has a phase; skipped when
 * the series has no usable slice (the result lists what was skipped and
 * why); failed when every acquisition failed. A failure to read the files
 * at all (I/O, memory) is transient: the job is re-queued until it has
 * run job_max_attempts times.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctphase/error.h"
#include "ctphase/report.h"
#include "ctphase/util.h"
#include "service/log.h"
#include "service/service.h"

static ctp_predictor *pred_borrow(svc *s, int *slot) {
  pthread_mutex_lock(&s->pred_mu);
  ctp_predictor *p = NULL;
  for (int i = 0; i < s->npreds && !p; i++)
    if (!s->pred_busy[i]) {
      s->pred_busy[i] = 1;
      *slot = i;
      p = s->preds[i];
    }
  pthread_mutex_unlock(&s->pred_mu);
  return p;
}

static void pred_return(svc *s, int slot) {
  pthread_mutex_lock(&s->pred_mu);
  s->pred_busy[slot] = 0;
  pthread_mutex_unlock(&s->pred_mu);
}

/* What a job produced. */
typedef struct {
  int state;
  char error[512];
  cJSON *results;
  double infer_s;
  int nacq, nfailed;
  /* The SR and SC objects written (paths relative to the data dir). */
  ctp_report_object *objs;
  int nobjs;
} job_out;

/* The worker's explainer for the report writer, made on first use. */
static ctp_explainer *explainer_for(svc *s, int slot) {
  if (!s->expls || slot < 0 || slot >= s->npreds) return NULL;
  if (!s->expls[slot] &&
      ctp_explainer_new(&s->expls[slot], s->model, s->model->input_size,
                        s->model->input_size, s->threads_per_job) != 0)
    LOG(LOG_WARN, "explainer_failed", LF_STR("error", ctp_last_error()));
  return s->expls[slot];
}

/* Writes the SR and Secondary Captures of one acquisition's result into
 * data_dir/outbound/<series>/ and adds them to out->objs. Deterministic
 * UIDs make a re-run overwrite the same files. Returns 0 or the error. */
static int write_report(svc *s, const char *series_uid, const ctp_result *res,
                        ctp_explainer *expl, job_out *out) {
  svc_config *cfg = svc_cfg(s);
  char dir[1400];
  snprintf(dir, sizeof dir, "%s/outbound/%s", s->data_dir, series_uid);
  ctp_report_opts o;
  ctp_report_opts_default(&o);
  o.uid_root = cfg->uid_root;
  o.key_slices = (int)cfg->report_key_slices;
  o.all_slices = cfg->report_all_slices;
  o.sam_layer = ctp_layer_parse(cfg->report_sam_layer);
  o.masking = cfg->report_masking;
  o.station_ae = cfg->ae_title;
  o.threads = s->threads_per_job;
  ctp_report_object *objs = NULL;
  int n = 0;
  double t0 = ctp_now();
  int rc = ctp_report_write(s->model, res, &o, expl, dir, &objs, &n);
  if (rc) return rc;
  ctp_report_object *all = realloc(out->objs, (size_t)(out->nobjs + n) * sizeof *all);
  if (!all) {
    free(objs);
    return ctp_seterr(CTP_ENOMEM, "out of memory");
  }
  memcpy(all + out->nobjs, objs, (size_t)n * sizeof *objs);
  out->objs = all;
  out->nobjs += n;
  free(objs);
  metrics_inc(&s->metrics.reports_written, (uint64_t)n);
  LOG(LOG_INFO, "report_written", LF_STR("series_uid", series_uid), LF_INT("objects", n),
      LF_NUM("seconds", ctp_now() - t0));
  return 0;
}

/* The series' files as absolute paths (malloc'd array of malloc'd). */
static int series_files(svc *s, const char *uid, char ***abs, int *n) {
  char **rel = NULL;
  int rc = ctp_store_series_paths(s->store, uid, &rel, n);
  if (rc) return rc;
  *abs = calloc((size_t)*n + 1, sizeof **abs);
  for (int i = 0; *abs && i < *n; i++) {
    size_t len = strlen(s->data_dir) + strlen(rel[i]) + 2;
    if (((*abs)[i] = malloc(len))) snprintf((*abs)[i], len, "%s/%s", s->data_dir, rel[i]);
  }
  ctp_store_strings_free(rel, *n);
  return *abs ? 0 : ctp_seterr(CTP_ENOMEM, "out of memory");
}

/* Predicts each acquisition of the series into out->results, and writes
 * the report objects of each that has a phase. A report that cannot be
 * written for lack of disk or an I/O error makes the job transient (it
 * is re-queued); any other report error is logged and kept on the job,
 * which stays done without those objects. */
static void predict_series(svc *s, ctp_predictor *p, int slot, const char *series_uid,
                           const ctp_series *se, job_out *out) {
  int nacq = ctp_series_num_acquisitions(se);
  int transient = 0;
  char report_error[512] = "";
  out->nacq = nacq;
  for (int k = 0; k < (nacq ? nacq : 1); k++) {
    ctp_result res;
    ctp_predictor_run(p, se, nacq ? ctp_series_acquisition(se, k) : NULL, &res);
    char *txt = ctp_result_json(&res, 0);
    cJSON *j = txt ? cJSON_Parse(txt) : NULL;
    if (j) cJSON_AddItemToArray(out->results, j);
    free(txt);
    out->infer_s += res.t_infer;
    if (res.err) {
      out->nfailed++;
      if (!out->error[0]) snprintf(out->error, sizeof out->error, "%s", res.error);
    } else if (!transient) {
      int rc = write_report(s, series_uid, &res, explainer_for(s, slot), out);
      if (rc) {
        transient = rc == CTP_ENOSPC || rc == CTP_EIO || rc == CTP_ENOMEM;
        snprintf(report_error, sizeof report_error, "report: %s", ctp_last_error());
        LOG(LOG_ERROR, "report_failed", LF_STR("series_uid", series_uid),
            LF_STR("error", ctp_last_error()), LF_BOOL("retried", transient));
      }
    }
    ctp_result_free(&res);
  }
  if (nacq == 0) {
    out->state = CTP_JOB_SKIPPED;
  } else if (out->nfailed == nacq) {
    out->state = CTP_JOB_FAILED;
  } else if (transient) {
    out->state = CTP_JOB_QUEUED;
    snprintf(out->error, sizeof out->error, "%s", report_error);
  } else {
    out->state = CTP_JOB_DONE;
    snprintf(out->error, sizeof out->error, "%s", report_error);
  }
}

static void run(svc *s, const ctp_store_job *job, ctp_predictor *p, int slot,
                job_out *out) {
  char **files = NULL;
  int n = 0;
  ctp_scan *scan = NULL;
  int rc = series_files(s, job->series_uid, &files, &n);
  if (!rc && n == 0) {
    out->state = CTP_JOB_SKIPPED;
    snprintf(out->error, sizeof out->error,
             "no files: the series' files were removed by retention");
    goto done;
  }
  if (!rc) rc = ctp_dicom_scan((const char *const *)files, n, &scan);
  if (rc) {
    out->state = CTP_JOB_QUEUED; /* transient: try again */
    snprintf(out->error, sizeof out->error, "cannot read the series: %s",
             ctp_last_error());
    goto done;
  }
  const ctp_series *se = NULL;
  for (int i = 0; i < ctp_scan_num_series(scan) && !se; i++)
    if (strcmp(ctp_series_uid(ctp_scan_series(scan, i)), job->series_uid) == 0)
      se = ctp_scan_series(scan, i);
  if (!se) {
    out->state = CTP_JOB_FAILED;
    snprintf(out->error, sizeof out->error,
             "none of the series' %d files could be read as DICOM", n);
    goto done;
  }
  predict_series(s, p, slot, job->series_uid, se, out);
done:
  ctp_scan_free(scan);
  ctp_store_strings_free(files, n);
}

/* The report objects as the store wants them, paths relative to the data
 * dir (kept in *rel, which the caller frees with the result). NULL when
 * out of memory. */
static ctp_store_object *store_objects(svc *s, const job_out *out, char (**rel)[4096]) {
  ctp_store_object *objs = calloc((size_t)out->nobjs + 1, sizeof *objs);
  *rel = calloc((size_t)out->nobjs + 1, sizeof **rel);
  if (!objs || !*rel) {
    free(objs);
    free(*rel);
    *rel = NULL;
    return NULL;
  }
  size_t skip = strlen(s->data_dir) + 1;
  for (int i = 0; i < out->nobjs; i++) {
    const ctp_report_object *r = &out->objs[i];
    int under = strncmp(r->path, s->data_dir, skip - 1) == 0 && r->path[skip - 1] == '/';
    snprintf((*rel)[i], sizeof (*rel)[i], "%s", under ? r->path + skip : r->path);
    objs[i] = (ctp_store_object){r->kind == CTP_REPORT_SR ? "sr" : "sc", r->sop_class_uid,
                                 r->sop_instance_uid, r->series_instance_uid, (*rel)[i]};
  }
  return objs;
}

void job_run(svc *s, const ctp_store_job *job) {
  double t0 = ctp_now();
  job_out out = {CTP_JOB_FAILED, "", cJSON_CreateArray(), 0, 0, 0, NULL, 0};
  int slot = -1;
  ctp_predictor *p = pred_borrow(s, &slot);
  LOG(LOG_INFO, "job_start", LF_INT("job", job->id),
      LF_STR("series_uid", job->series_uid), LF_STR("study_uid", job->study_uid),
      LF_INT("attempt", job->attempts), LF_INT("instances", job->instances));
  if (!p) snprintf(out.error, sizeof out.error, "no free predictor");
  else run(s, job, p, slot, &out);
  if (p) pred_return(s, slot);
  svc_config *cfg = svc_cfg(s);
  if (out.state == CTP_JOB_QUEUED && job->attempts >= cfg->job_max_attempts)
    out.state = CTP_JOB_FAILED;
  double dt = ctp_now() - t0;
  char *result = cJSON_PrintUnformatted(out.results);
  char (*rel)[4096] = NULL;
  ctp_store_object *objs = store_objects(s, &out, &rel);
  if (!objs && out.state == CTP_JOB_DONE) { /* a done job must have its rows */
    out.state = job->attempts >= cfg->job_max_attempts ? CTP_JOB_FAILED : CTP_JOB_QUEUED;
    snprintf(out.error, sizeof out.error, "out of memory");
  }
  ctp_store_job_end end = {out.state, out.error[0] ? out.error : NULL, result,
                           s->model->sha256, dt, out.infer_s,
                           objs, objs ? out.nobjs : 0,
                           (const char *const *)cfg->destinations.v, cfg->destinations.n};
  if (ctp_store_job_finish(s->store, job->id, ctp_wall_now(), &end) != 0)
    LOG(LOG_ERROR, "job_store_failed", LF_INT("job", job->id),
        LF_STR("error", ctp_last_error()));
  free(result);
  free(objs);
  free(rel);
  free(out.objs);
  cJSON_Delete(out.results);
  metrics_observe(&s->metrics.job_seconds, dt);
  metrics_observe(&s->metrics.infer_seconds, out.infer_s);
  metrics_inc(&s->metrics.jobs_finished, 1);
  LOG(out.state == CTP_JOB_DONE ? LOG_INFO : LOG_WARN, "job_end",
      LF_INT("job", job->id), LF_STR("series_uid", job->series_uid),
      LF_STR("state", ctp_job_state_name(out.state)),
      LF_INT("acquisitions", out.nacq), LF_INT("failed", out.nfailed),
      LF_NUM("seconds", dt), LF_NUM("infer_seconds", out.infer_s),
      LF_STR("error", out.error));
}
