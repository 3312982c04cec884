/*
 * service.h — the daemon's shared state and the seams between its parts.
 *
 *   main.c     command line, start-up, recovery, signals, shutdown
 *   receive.c  SCP callbacks: policy, durable write, database row
 *   reconcile.c  start-up: a row for every received file without one
 *   sched.c    the libuv loop's scheduler: stability, job dispatch,
 *              retention
 *   job.c      one job: scan the series' files, predict, write the SR and
 *              Secondary Captures, store the result and outbound rows
 *   send.c     the sender: outbound objects to the PACS, with retries
 *   http.c     the admin HTTP server (health, metrics, JSON API)
 *   metrics.c  counters and histograms, Prometheus text
 *
 * Threads: the libuv loop thread runs timers, signals and HTTP; the libuv
 * thread pool runs everything that blocks (database, files, inference)
 * with uv_queue_work, its completion coming back to the loop; the SCP
 * has its own listener and one thread per association (scp.h). The
 * svc struct is created and destroyed by main.c; after start-up, threads
 * other than the loop only read it, except for the atomics, the mutexed
 * predictor pool and the store (which locks itself).
 *
 * Configuration: svc_cfg() returns the current, immutable config. SIGHUP
 * builds a new one and publishes it with svc_cfg_publish(); the old ones
 * are kept until exit, so a pointer read from svc_cfg() stays valid.
 */
#ifndef CTPHASE_SERVICE_SERVICE_H
#define CTPHASE_SERVICE_SERVICE_H

#include <pthread.h>
#include <stdatomic.h>
#include <uv.h>

#include "ctphase/explain.h"
#include "ctphase/model.h"
#include "ctphase/predict.h"
#include "ctphase/scp.h"
#include "ctphase/store.h"
#include "service/config.h"
#include "service/metrics.h"

/* The daemon's life cycle, changed only by svc_set_state(). */
typedef enum {
  SVC_STARTING = 0, /* opening, recovering */
  SVC_RUNNING,      /* accepting associations, running jobs */
  SVC_DRAINING,     /* SIGTERM: no new associations or jobs */
  SVC_STOPPED
} svc_state;

#define SVC_MAX_CONFIGS 64

typedef struct svc_http svc_http;

/* The folders under instances/ that this process has made durable (their
 * entry fsynced in the parent), so that storing into them needs neither
 * mkdir nor fsync (receive.c). Keys are "STUDY" and "STUDY/SERIES". A
 * fixed, direct-mapped table: a folder pushed out only costs one more
 * parent fsync. Locks: a store holds `lock` for reading from its lookup
 * to its rename, retention holds it for writing around each rmdir (and
 * forgets the folder), so a folder in the table exists for every store
 * that found it there. `mu` guards the table itself. */
#define SVC_DIRS_SLOTS 1024
#define SVC_DIR_KEY 136 /* 64 + "/" + 64, and the NUL */
typedef struct {
  pthread_rwlock_t lock;
  pthread_mutex_t mu;
  char key[SVC_DIRS_SLOTS][SVC_DIR_KEY];
} svc_dirs;

typedef struct svc {
  uv_loop_t *loop;
  atomic_int state; /* svc_state */

  /* Configuration: the current one and those it replaced. */
  _Atomic(svc_config *) cfg;
  svc_config *configs[SVC_MAX_CONFIGS];
  int nconfigs;
  const char *config_path; /* NULL: defaults only */
  char **overrides;        /* "key=value" from the command line */
  int noverrides;

  /* Paths under the data dir. */
  char data_dir[1024];
  char tmp_dir[1100];
  char db_path[1100];
  int lock_fd;

  ctp_store *store;
  ctp_scp *scp;
  ctp_model *model;
  const char *model_path;

  /* One predictor per worker, lent to jobs. */
  ctp_predictor **preds;
  int npreds;
  int *pred_busy;
  pthread_mutex_t pred_mu;
  int threads_per_job;

  /* Scheduler (loop thread only, except where atomic). */
  uv_timer_t tick_timer;
  uv_timer_t stop_timer;
  uv_timer_t grace_timer;
  uv_async_t kick;
  uv_signal_t sig_term, sig_int, sig_hup;
  uv_work_t tick_req;
  int tick_busy;
  int tick_again;
  int slots;             /* jobs the tick may claim */
  int in_flight;         /* jobs running */
  atomic_int running_jobs;
  double last_retention;
  double tick_wait;       /* set by a tick: seconds to the next one */
  ctp_store_job claimed[64];
  int nclaimed;

  /* Sender (send.c; loop thread only, except send_wait set by its work). */
  uv_timer_t send_timer;
  uv_work_t send_req;
  int send_busy;
  int send_again;
  double send_wait;

  /* Explainers for the report writer, one per predictor slot, made by the
   * job that first needs one (job.c). */
  ctp_explainer **expls;

  svc_http *http;
  svc_metrics metrics;
  svc_dirs dirs;
} svc;

static inline svc_config *svc_cfg(svc *s) { return atomic_load(&s->cfg); }
/* Publishes a new configuration (the svc takes it). */
int svc_cfg_publish(svc *s, svc_config *cfg);
/* Changes the life-cycle state, checking the order, and logs it. */
void svc_set_state(svc *s, svc_state to, const char *why);
const char *svc_state_name(int state);

/* receive.c */
void receive_callbacks(svc *s, ctp_scp_callbacks *cb);
/* Free bytes for unprivileged users on the file system of path. */
int receive_free_bytes(const char *path, uint64_t *free_bytes);
/* The durable-folder table: set up (main.c, before the SCP starts). */
void receive_dirs_init(svc *s);
/* fsync of a folder: 0, or -1 with errno. */
int receive_fsync_dir(const char *dir);
/* Removes the empty folder data_dir/instances/key (retention) and
 * forgets it, excluding stores into it meanwhile: 0, or -1 with errno
 * (ENOTEMPTY when a store came first). */
int receive_rmdir(svc *s, const char *key);

/* reconcile.c: gives a database row to every received file without one
 * (start-up, before the SCP starts). */
int receive_reconcile(svc *s);

/* sched.c */
int sched_start(svc *s);
/* Runs a scheduling pass soon (thread-safe). */
void sched_kick(svc *s);
void sched_stop(svc *s);

/* job.c: runs one claimed job in the calling (pool) thread. */
void job_run(svc *s, const ctp_store_job *job);

/* send.c: delivery of outbound objects (loop thread). */
int send_start(svc *s);
/* Runs a sending pass soon (loop thread). */
void send_kick(svc *s);
void send_stop(svc *s);

/* http.c */
int http_start(svc *s);
void http_stop(svc *s);

#endif
