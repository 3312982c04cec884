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
} job_out;

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

/* Predicts each acquisition of the series into out->results. */
static void predict_series(ctp_predictor *p, const ctp_series *se, job_out *out) {
  int nacq = ctp_series_num_acquisitions(se);
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
    }
    ctp_result_free(&res);
  }
  if (nacq == 0) {
    out->state = CTP_JOB_SKIPPED;
  } else if (out->nfailed == nacq) {
    out->state = CTP_JOB_FAILED;
  } else {
    out->state = CTP_JOB_DONE;
    out->error[0] = 0;
  }
}

static void run(svc *s, const ctp_store_job *job, ctp_predictor *p, job_out *out) {
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
  predict_series(p, se, out);
done:
  ctp_scan_free(scan);
  ctp_store_strings_free(files, n);
}

void job_run(svc *s, const ctp_store_job *job) {
  double t0 = ctp_now();
  job_out out = {CTP_JOB_FAILED, "", cJSON_CreateArray(), 0, 0, 0};
  int slot = -1;
  ctp_predictor *p = pred_borrow(s, &slot);
  LOG(LOG_INFO, "job_start", LF_INT("job", job->id),
      LF_STR("series_uid", job->series_uid), LF_STR("study_uid", job->study_uid),
      LF_INT("attempt", job->attempts), LF_INT("instances", job->instances));
  if (!p) snprintf(out.error, sizeof out.error, "no free predictor");
  else run(s, job, p, &out);
  if (p) pred_return(s, slot);
  svc_config *cfg = svc_cfg(s);
  if (out.state == CTP_JOB_QUEUED && job->attempts >= cfg->job_max_attempts)
    out.state = CTP_JOB_FAILED;
  double dt = ctp_now() - t0;
  char *result = cJSON_PrintUnformatted(out.results);
  ctp_store_job_end end = {out.state, out.error[0] ? out.error : NULL, result,
                           s->model->sha256, dt, out.infer_s};
  if (ctp_store_job_finish(s->store, job->id, ctp_wall_now(), &end) != 0)
    LOG(LOG_ERROR, "job_store_failed", LF_INT("job", job->id),
        LF_STR("error", ctp_last_error()));
  free(result);
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
