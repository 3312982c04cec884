/*
 * sched.c — the scheduler on the libuv loop: series stability, job
 * dispatch, retention.
 *
 * A "tick" is one pass of background work, queued with uv_queue_work so
 * that the database never blocks the loop:
 *
 *   loop: tick_timer / kick ──> uv_queue_work(tick_work) ──> tick_after
 *   pool: tick_work   promote series whose last arrival is stable_seconds
 *                     old (persisted time, so a restart resumes the
 *                     countdown), claim as many queued jobs as workers are
 *                     free, remove the files of series past retention
 *                     (each folder fsynced once after its unlinks, empty
 *                     series and study folders removed and their parents
 *                     fsynced, before the rows say "removed")
 *   loop: tick_after  queue each claimed job (uv_queue_work(job_work));
 *                     re-arm the timer for the next series due, at most
 *                     one second away
 *   pool: job_work    job_run() (job.c)
 *   loop: job_after   count it, tick again to start the next job
 *
 * Only one tick is in flight at a time; a kick during one asks for
 * another right after. Jobs in flight never exceed `workers`, and the
 * pool has workers + 3 threads (main.c sets UV_THREADPOOL_SIZE), so a
 * tick, an HTTP request and the sender's pass (send.c) always find one.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctphase/error.h"
#include "service/log.h"
#include "service/service.h"

#define TICK_MAX_S 1.0
#define TICK_MIN_S 0.01
#define RETENTION_EVERY_S 60.0
#define RETENTION_FOLDERS 16 /* folders handled per batch */

typedef struct {
  uv_work_t req;
  svc *s;
  ctp_store_job job;
} job_req;

static void tick_run(svc *s);

/* ------------------------------------------------------------------ */
/* Retention                                                            */
/* ------------------------------------------------------------------ */

/* Adds key to the set v[0..*n) unless it is there: 0, or -1 when the
 * set is full (cap). */
static int key_add(char (*v)[SVC_DIR_KEY], int *n, int cap, const char *key) {
  for (int i = 0; i < *n; i++)
    if (strcmp(v[i], key) == 0) return 0;
  if (*n == cap) return -1;
  snprintf(v[(*n)++], SVC_DIR_KEY, "%s", key);
  return 0;
}

/* fsync of data_dir/instances[/key]; a folder already gone is fine. */
static int sync_dir(svc *s, const char *key) {
  char dir[1400];
  snprintf(dir, sizeof dir, "%s/instances%s%s", s->data_dir, key[0] ? "/" : "", key);
  if (receive_fsync_dir(dir) == 0 || errno == ENOENT) return 0;
  LOG(LOG_ERROR, "retention_failed", LF_STR("path", dir), LF_STR("step", "fsync"),
      LF_STR("error", strerror(errno)));
  return -1;
}

/* Makes the removal of a series' files durable and removes the folders
 * that became empty. folders holds the "STUDY/SERIES" keys of the
 * removed files. Each folder is fsynced once (the unlinks), each empty one
 * removed (receive_rmdir: a store racing for it wins) and its parent
 * fsynced once, up to instances/. Returns -1 when an fsync failed. */
static int retention_folders(svc *s, char (*folders)[SVC_DIR_KEY], int nf) {
  char studies[RETENTION_FOLDERS][SVC_DIR_KEY];
  int ns = 0, rc = 0, top = 0;
  for (int i = 0; i < nf; i++) {
    if (sync_dir(s, folders[i]) != 0) {
      rc = -1;
      continue;
    }
    if (receive_rmdir(s, folders[i]) != 0) continue; /* not empty, or gone */
    char study[SVC_DIR_KEY];
    size_t len = strcspn(folders[i], "/");
    memcpy(study, folders[i], len);
    study[len] = 0;
    if (key_add(studies, &ns, RETENTION_FOLDERS, study) != 0) {
      if (sync_dir(s, study) != 0) rc = -1;
      else if (receive_rmdir(s, study) == 0) top = 1;
    }
  }
  for (int i = 0; i < ns; i++) {
    if (sync_dir(s, studies[i]) != 0) rc = -1;
    else if (receive_rmdir(s, studies[i]) == 0) top = 1;
  }
  if (top && sync_dir(s, "") != 0) rc = -1;
  return rc;
}

static void retention_series(svc *s, const char *uid, double now) {
  char **paths = NULL;
  int n = 0;
  if (ctp_store_series_paths(s->store, uid, &paths, &n) != 0) return;
  char folders[RETENTION_FOLDERS][SVC_DIR_KEY];
  int nf = 0, nfolders = 0, removed = 0, rc = 0;
  for (int i = 0; i < n; i++) {
    char abs[1400];
    snprintf(abs, sizeof abs, "%s/%s", s->data_dir, paths[i]);
    if (unlink(abs) == 0) removed++;
    /* paths[i] is instances/STUDY/SERIES/SOP.dcm */
    const char *key = strchr(paths[i], '/'), *end = strrchr(paths[i], '/');
    if (!key || end == key) continue;
    char k[SVC_DIR_KEY];
    snprintf(k, sizeof k, "%.*s", (int)(end - key - 1), key + 1);
    if (key_add(folders, &nf, RETENTION_FOLDERS, k) != 0) { /* many folders: a batch */
      rc |= retention_folders(s, folders, nf);
      nfolders += nf;
      nf = 0;
      key_add(folders, &nf, RETENTION_FOLDERS, k);
    }
  }
  /* The rows say "removed" only once the removal cannot be undone by a
   * power loss; after a failed fsync the next pass tries again. */
  rc |= retention_folders(s, folders, nf);
  nfolders += nf;
  if (rc == 0) {
    if (ctp_store_files_removed(s->store, uid, paths, n, now) != 0)
      LOG(LOG_ERROR, "retention_failed", LF_STR("series_uid", uid),
          LF_STR("error", ctp_last_error()));
    else
      LOG(LOG_INFO, "retention_removed", LF_STR("series_uid", uid),
          LF_INT("files", removed), LF_INT("folders", nfolders));
  }
  ctp_store_strings_free(paths, n);
}

static void retention(svc *s, double now) {
  svc_config *cfg = svc_cfg(s);
  if (cfg->retention_seconds < 0) return;
  double every = cfg->retention_seconds / 4.0;
  if (every > RETENTION_EVERY_S) every = RETENTION_EVERY_S;
  if (now - s->last_retention < every) return;
  s->last_retention = now;
  char **due = NULL;
  int n = 0;
  if (ctp_store_retention_due(s->store, now - (double)cfg->retention_seconds, 100,
                              &due, &n) != 0)
    return;
  for (int i = 0; i < n; i++) retention_series(s, due[i], now);
  ctp_store_strings_free(due, n);
}

/* ------------------------------------------------------------------ */
/* Jobs                                                                 */
/* ------------------------------------------------------------------ */

static void job_work(uv_work_t *req) {
  job_req *r = req->data;
  job_run(r->s, &r->job);
}

static void job_after(uv_work_t *req, int status) {
  (void)status;
  job_req *r = req->data;
  svc *s = r->s;
  s->in_flight--;
  atomic_store(&s->running_jobs, s->in_flight);
  free(r);
  tick_run(s);
  send_kick(s); /* the job's outbound rows, if any, are due now */
}

static void dispatch(svc *s, const ctp_store_job *job) {
  job_req *r = calloc(1, sizeof *r);
  if (!r) return; /* stays running in the database; recovered at restart */
  r->s = s;
  r->job = *job;
  r->req.data = r;
  s->in_flight++;
  atomic_store(&s->running_jobs, s->in_flight);
  if (uv_queue_work(s->loop, &r->req, job_work, job_after) != 0) {
    s->in_flight--;
    free(r);
  }
}

/* ------------------------------------------------------------------ */
/* Ticks                                                                */
/* ------------------------------------------------------------------ */

static void tick_work(uv_work_t *req) {
  svc *s = req->data;
  svc_config *cfg = svc_cfg(s);
  double now = ctp_wall_now();
  int njobs = 0;
  double due = -1;
  if (ctp_store_series_promote(s->store, now, cfg->stable_seconds, &njobs, &due) != 0)
    LOG(LOG_ERROR, "schedule_failed", LF_STR("error", ctp_last_error()));
  s->nclaimed = 0;
  while (s->nclaimed < s->slots) {
    int found = 0;
    ctp_store_job *j = &s->claimed[s->nclaimed];
    if (ctp_store_job_claim(s->store, now, j, &found) != 0) {
      LOG(LOG_ERROR, "schedule_failed", LF_STR("error", ctp_last_error()));
      break;
    }
    if (!found) break;
    s->nclaimed++;
  }
  retention(s, now);
  /* Wake when the next series is due, and at least every TICK_MAX_S. */
  s->tick_wait = due >= 0 && due < TICK_MAX_S ? due + 0.005 : TICK_MAX_S;
}

static void tick_timer_cb(uv_timer_t *t) { tick_run(t->data); }

static void tick_after(uv_work_t *req, int status) {
  (void)status;
  svc *s = req->data;
  s->tick_busy = 0;
  for (int i = 0; i < s->nclaimed; i++) dispatch(s, &s->claimed[i]);
  s->nclaimed = 0;
  if (atomic_load(&s->state) == SVC_STOPPED) return;
  double wait = s->tick_again ? 0 : s->tick_wait;
  s->tick_again = 0;
  if (wait < TICK_MIN_S) wait = TICK_MIN_S;
  uv_timer_start(&s->tick_timer, tick_timer_cb, (uint64_t)(wait * 1000 + 0.5), 0);
}

/* Queues a tick, or asks for one after the tick in flight. Loop thread. */
static void tick_run(svc *s) {
  if (atomic_load(&s->state) == SVC_STOPPED) return;
  if (s->tick_busy) {
    s->tick_again = 1;
    return;
  }
  svc_config *cfg = svc_cfg(s);
  int free_workers = (int)cfg->workers - s->in_flight;
  s->slots = atomic_load(&s->state) == SVC_RUNNING && free_workers > 0 ? free_workers : 0;
  if (s->slots > 64) s->slots = 64;
  s->tick_busy = 1;
  s->tick_req.data = s;
  if (uv_queue_work(s->loop, &s->tick_req, tick_work, tick_after) != 0)
    s->tick_busy = 0;
}

static void kick_cb(uv_async_t *a) { tick_run(a->data); }

void sched_kick(svc *s) { uv_async_send(&s->kick); }

int sched_start(svc *s) {
  uv_timer_init(s->loop, &s->tick_timer);
  s->tick_timer.data = s;
  if (uv_async_init(s->loop, &s->kick, kick_cb) != 0)
    return ctp_seterr(CTP_ENOMEM, "cannot create the scheduler's wake-up");
  s->kick.data = s;
  tick_run(s);
  return 0;
}

void sched_stop(svc *s) {
  uv_timer_stop(&s->tick_timer);
  if (!uv_is_closing((uv_handle_t *)&s->tick_timer))
    uv_close((uv_handle_t *)&s->tick_timer, NULL);
  if (!uv_is_closing((uv_handle_t *)&s->kick)) uv_close((uv_handle_t *)&s->kick, NULL);
}
