/*
 * send.c — the sender: delivers the objects jobs made (SR, Secondary
 * Captures) to the configured destinations, and retries until they are
 * there.
 *
 * Every object is one outbound row per destination (store.h), written in
 * the same transaction that marks its job done, so a finished job always
 * has its rows and a crash loses none. The sender works them on the libuv
 * loop in the uv_queue_work shape, like the scheduler (sched.c):
 *
 *   loop: send_timer / send_kick ──> uv_queue_work(send_work) ──> send_after
 *   pool: send_work   claim the due rows of one destination (pending,
 *                     next_attempt_at <= now) -> "sending"; send them over
 *                     ONE association (or copy them into the folder);
 *                     each row -> sent, or pending again after a backoff,
 *                     or failed after send_max_attempts; repeat for the
 *                     next destination with due rows (a bounded number of
 *                     rounds per pass)
 *   loop: send_after  re-arm the timer: at most one second away
 *
 * Only one pass is in flight at a time, so the sender holds at most one
 * pool thread (main.c sizes the pool for it) and never blocks the loop,
 * the SCP threads or the workers: a destination that is down costs only
 * its own connect timeout. Backoff: send_backoff_initial_seconds after
 * the first failure, doubling, capped at send_backoff_max_seconds.
 *
 * Files stay in data_dir/outbound/<series>/ after they are sent: they are
 * the local copy of the results (`ctphase jobs resend` needs them) and are
 * not touched by retention.
 *
 * Owned here: the send timer and request in the svc struct. Logs
 * send_start, send_ok, send_retry and send_failed (destination, sop_uid,
 * attempt, error) — UIDs and destinations only, never patient data.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctphase/error.h"
#include "ctphase/scu.h"
#include "ctphase/util.h"
#include "service/log.h"
#include "service/service.h"

#define SEND_MAX_S 1.0
#define SEND_MIN_S 0.05
#define SEND_ROUNDS 16 /* destinations (batches) per pass */

/* Seconds to wait after the attempt-th failure. */
static double backoff(const svc_config *cfg, int attempt) {
  double d = (double)cfg->send_backoff_initial_seconds;
  for (int i = 1; i < attempt && d < (double)cfg->send_backoff_max_seconds; i++) d *= 2;
  if (d > (double)cfg->send_backoff_max_seconds) d = (double)cfg->send_backoff_max_seconds;
  return d;
}

/* Sends rows[0..n) (one destination) and fills results. Returns 0, or
 * the error that stopped the whole batch (no association, folder not
 * usable). */
static int deliver(svc *s, const svc_config *cfg, const ctp_dest *d,
                   const ctp_store_outbound *rows, int n, ctp_scu_result *res) {
  int rc = 0;
  char **paths = calloc((size_t)n, sizeof *paths);
  for (int i = 0; paths && i < n; i++) {
    size_t len = strlen(s->data_dir) + strlen(rows[i].path) + 2;
    if ((paths[i] = malloc(len))) snprintf(paths[i], len, "%s/%s", s->data_dir, rows[i].path);
  }
  int ok = paths != NULL;
  for (int i = 0; ok && i < n; i++) ok = paths[i] != NULL;
  if (!ok) {
    for (int i = 0; i < n; i++) {
      res[i].rc = CTP_ENOMEM;
      res[i].status = -1;
      snprintf(res[i].error, sizeof res[i].error, "out of memory");
    }
  } else if (d->kind == CTP_DEST_DIR) {
    rc = ctp_scu_copy_files(d->dir, (const char *const *)paths, n, res);
  } else {
    int t = (int)cfg->send_timeout_seconds;
    ctp_scu_opts o = {cfg->ae_title, d->ae_title, d->host, d->port, t, t, t,
                      (int)cfg->max_pdu};
    rc = ctp_scu_send_files(&o, (const char *const *)paths, n, res);
  }
  for (int i = 0; paths && i < n; i++) free(paths[i]);
  free(paths);
  return rc;
}

/* One destination's batch: send, then record each row's outcome. */
static void send_batch(svc *s, const svc_config *cfg, const ctp_store_outbound *rows,
                       int n) {
  const char *dest = rows[0].destination;
  ctp_scu_result *res = calloc((size_t)n, sizeof *res);
  ctp_store_outbound_end *ends = calloc((size_t)n, sizeof *ends);
  if (!res || !ends) {
    free(res);
    free(ends);
    return; /* the rows stay "sending"; recovered at the next start */
  }
  ctp_dest d;
  int rc = ctp_dest_parse(dest, &d);
  if (!rc && !config_list_has(&cfg->destinations, dest))
    rc = ctp_seterr(CTP_ESTATE, "destination %s is no longer configured", dest);
  for (int i = 0; i < n; i++)
    LOG(LOG_INFO, "send_start", LF_STR("destination", dest),
        LF_STR("sop_uid", rows[i].sop_instance_uid), LF_STR("kind", rows[i].kind),
        LF_INT("job", rows[i].job_id), LF_INT("attempt", rows[i].attempts));
  double t0 = ctp_now();
  int unreachable = 0;
  if (rc) {
    for (int i = 0; i < n; i++) {
      res[i].rc = rc;
      res[i].status = -1;
      snprintf(res[i].error, sizeof res[i].error, "%s", ctp_last_error());
    }
  } else {
    unreachable = deliver(s, cfg, &d, rows, n, res) != 0;
  }
  double dt = ctp_now() - t0, now = ctp_wall_now();
  /* No association: the destination's other due rows wait as long as
   * this batch, so that one unreachable PACS costs one timeout per
   * backoff period, not one per batch. */
  int deferred = 0;
  if (unreachable &&
      ctp_store_outbound_defer(s->store, dest, now + backoff(cfg, rows[0].attempts),
                               &deferred) == 0 && deferred)
    LOG(LOG_INFO, "send_deferred", LF_STR("destination", dest), LF_INT("objects", deferred),
        LF_NUM("seconds", backoff(cfg, rows[0].attempts)));
  for (int i = 0; i < n; i++) {
    const ctp_store_outbound *r = &rows[i];
    ends[i].id = r->id;
    ends[i].error = res[i].error;
    if (res[i].rc == 0) {
      ends[i].state = CTP_OUTBOUND_SENT;
      metrics_inc(&s->metrics.objects_sent, 1);
      metrics_observe(&s->metrics.send_seconds, res[i].seconds);
      LOG(LOG_INFO, "send_ok", LF_STR("destination", dest), LF_STR("sop_uid", r->sop_instance_uid),
          LF_INT("attempt", r->attempts), LF_INT("status", res[i].status),
          LF_NUM("seconds", res[i].seconds), LF_STR("note", res[i].error));
      continue;
    }
    metrics_inc(&s->metrics.send_failures, 1);
    /* A configuration problem (bad or removed destination) is not retried. */
    if (r->attempts >= cfg->send_max_attempts || rc) {
      ends[i].state = CTP_OUTBOUND_FAILED;
      LOG(LOG_ERROR, "send_failed", LF_STR("destination", dest),
          LF_STR("sop_uid", r->sop_instance_uid), LF_INT("attempt", r->attempts),
          LF_STR("error", res[i].error), LF_STR("why", rc ? "destination not usable"
                                                          : "send_max_attempts reached"));
    } else {
      double wait = backoff(cfg, r->attempts);
      ends[i].state = CTP_OUTBOUND_PENDING;
      ends[i].next_attempt_at = now + wait;
      LOG(LOG_WARN, "send_retry", LF_STR("destination", dest),
          LF_STR("sop_uid", r->sop_instance_uid), LF_INT("attempt", r->attempts),
          LF_STR("error", res[i].error), LF_NUM("retry_in_seconds", wait),
          LF_INT("status", res[i].status));
    }
  }
  int stale = 0;
  if (ctp_store_outbound_finish(s->store, now, ends, n, &stale) != 0)
    LOG(LOG_ERROR, "send_store_failed", LF_STR("destination", dest),
        LF_STR("error", ctp_last_error()));
  else if (stale)
    LOG(LOG_INFO, "send_superseded", LF_STR("destination", dest), LF_INT("objects", stale),
        LF_STR("why", "re-queued while being sent (resend or a new job): sent again"));
  LOG(LOG_DEBUG, "send_batch", LF_STR("destination", dest), LF_INT("objects", n),
      LF_NUM("seconds", dt));
  free(res);
  free(ends);
}

static void send_work(uv_work_t *req) {
  svc *s = req->data;
  svc_config *cfg = svc_cfg(s);
  int limit = (int)cfg->send_batch_size;
  ctp_store_outbound *rows = calloc((size_t)limit, sizeof *rows);
  for (int round = 0; rows && round < SEND_ROUNDS; round++) {
    if (atomic_load(&s->state) == SVC_STOPPED) break;
    int n = 0;
    if (ctp_store_outbound_claim(s->store, ctp_wall_now(), limit, rows, &n) != 0) {
      LOG(LOG_ERROR, "send_claim_failed", LF_STR("error", ctp_last_error()));
      break;
    }
    if (n == 0) break;
    send_batch(s, cfg, rows, n);
  }
  free(rows);
  double due = -1;
  ctp_store_outbound_next_due(s->store, ctp_wall_now(), &due);
  s->send_wait = due >= 0 && due < SEND_MAX_S ? due : SEND_MAX_S;
}

static void send_run(svc *s);

static void send_timer_cb(uv_timer_t *t) { send_run(t->data); }

static void send_after(uv_work_t *req, int status) {
  (void)status;
  svc *s = req->data;
  s->send_busy = 0;
  if (atomic_load(&s->state) == SVC_STOPPED) return;
  double wait = s->send_again ? 0 : s->send_wait;
  s->send_again = 0;
  if (wait < SEND_MIN_S) wait = SEND_MIN_S;
  uv_timer_start(&s->send_timer, send_timer_cb, (uint64_t)(wait * 1000 + 0.5), 0);
}

/* Queues a pass, or asks for one after the pass in flight. Loop thread.
 * While draining no new pass starts (the pass in flight finishes): what
 * is left is sent after the restart. */
static void send_run(svc *s) {
  int state = atomic_load(&s->state);
  if (state == SVC_STOPPED || state == SVC_DRAINING) return;
  if (s->send_busy) {
    s->send_again = 1;
    return;
  }
  s->send_busy = 1;
  s->send_req.data = s;
  if (uv_queue_work(s->loop, &s->send_req, send_work, send_after) != 0) s->send_busy = 0;
}

void send_kick(svc *s) { send_run(s); }

int send_start(svc *s) {
  uv_timer_init(s->loop, &s->send_timer);
  s->send_timer.data = s;
  svc_config *cfg = svc_cfg(s);
  for (int i = 0; i < cfg->destinations.n; i++)
    LOG(LOG_INFO, "send_destination", LF_STR("destination", cfg->destinations.v[i]));
  send_run(s);
  return 0;
}

void send_stop(svc *s) {
  uv_timer_stop(&s->send_timer);
  if (!uv_is_closing((uv_handle_t *)&s->send_timer))
    uv_close((uv_handle_t *)&s->send_timer, NULL);
}
