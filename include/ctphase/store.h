/*
 * store.h — the SQLite database of ctphased: instances, series, jobs and
 * outbound objects (schemas/store.sql).
 *
 * The database is the daemon's memory: an instance is acknowledged only
 * after its row is committed, a series' countdown runs from its persisted
 * last arrival, and jobs and their results are rows. After a crash the
 * daemon reopens it and goes on (ctp_store_recover).
 *
 * Life cycles (each changed only through the *_set_state functions of
 * store.c, which check the transition and log it):
 *
 *   series:   receiving -> stable -> queued -> running -> done|failed|skipped
 *             any state -> receiving        (a new instance arrived)
 *             running -> queued             (re-queued after a crash/stop)
 *             done|failed|skipped -> queued (ctphase jobs retry)
 *   job:      queued -> running -> done|failed|skipped
 *             running -> queued             (interrupted; attempts counts)
 *             queued -> skipped             (superseded: its series received
 *                                            more instances before it ran)
 *   outbound: pending -> sending -> sent|failed
 *             sending -> pending         (failed; retried after a backoff)
 *             sent|failed -> pending     (ctphase jobs resend)
 *             any -> pending, attempts 0 (a later job of the series made
 *                                         the same object again; bulk)
 *             sending -> pending         (recovery at start-up; bulk)
 *
 * A series that receives instances after its job ran goes back to
 * "receiving" and gets a new job when it is stable again; the old job and
 * its result stay in the database.
 *
 * One handle may be used from several threads: every call takes the
 * handle's mutex. Several processes may open the same file (the daemon and
 * `ctphase jobs`): WAL mode lets readers run beside the writer, and a
 * busy timeout absorbs short write conflicts. Times are Unix seconds
 * (REAL). All SQL goes through prepared statements.
 */
#ifndef CTPHASE_STORE_H
#define CTPHASE_STORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The schema version this build reads and writes (PRAGMA user_version). */
#define CTP_STORE_SCHEMA_VERSION 2

#define CTP_SERIES_STATE_MAP(XX) \
  XX(RECEIVING, "receiving")     \
  XX(STABLE, "stable")           \
  XX(QUEUED, "queued")           \
  XX(RUNNING, "running")         \
  XX(DONE, "done")               \
  XX(FAILED, "failed")           \
  XX(SKIPPED, "skipped")

typedef enum {
#define XX(name, str) CTP_SERIES_##name,
  CTP_SERIES_STATE_MAP(XX)
#undef XX
  CTP_SERIES_NSTATES
} ctp_series_state;

#define CTP_JOB_STATE_MAP(XX) \
  XX(QUEUED, "queued")        \
  XX(RUNNING, "running")      \
  XX(DONE, "done")            \
  XX(FAILED, "failed")        \
  XX(SKIPPED, "skipped")

typedef enum {
#define XX(name, str) CTP_JOB_##name,
  CTP_JOB_STATE_MAP(XX)
#undef XX
  CTP_JOB_NSTATES
} ctp_job_state;

#define CTP_OUTBOUND_STATE_MAP(XX) \
  XX(PENDING, "pending")           \
  XX(SENDING, "sending")           \
  XX(SENT, "sent")                 \
  XX(FAILED, "failed")

typedef enum {
#define XX(name, str) CTP_OUTBOUND_##name,
  CTP_OUTBOUND_STATE_MAP(XX)
#undef XX
  CTP_OUTBOUND_NSTATES
} ctp_outbound_state;

const char *ctp_series_state_name(int state);
const char *ctp_job_state_name(int state);
const char *ctp_outbound_state_name(int state);
/* State of a name, or -1. */
int ctp_series_state_parse(const char *name);
int ctp_job_state_parse(const char *name);
/* Whether the life cycles above allow from -> to. */
int ctp_series_transition_ok(int from, int to);
int ctp_job_transition_ok(int from, int to);
int ctp_outbound_transition_ok(int from, int to);

/* A DICOM UID we accept in a file path: 1 to 64 characters, digits and
 * dots only, no empty component (so never "", ".", ".." or "a/b"). */
int ctp_uid_valid(const char *uid);
/* The path of a received instance relative to the data dir,
 * "instances/STUDY/SERIES/SOP.dcm", built from the three UIDs only;
 * CTP_EINVAL when one is not valid, CTP_ERANGE when n is too small. */
int ctp_instance_path(const char *study_uid, const char *series_uid,
                      const char *sop_uid, char *out, size_t n);

typedef struct ctp_store ctp_store;

/* Open flags. */
#define CTP_STORE_NO_MIGRATE 1 /* fail instead of creating or upgrading */

/* Opens (creating and migrating unless CTP_STORE_NO_MIGRATE) the database
 * at path. */
int ctp_store_open(ctp_store **out, const char *path, int flags);
void ctp_store_close(ctp_store *st);
/* The schema version of the open database. */
int ctp_store_version(ctp_store *st);

/* --- instances ------------------------------------------------------ */

typedef struct {
  const char *sop_instance_uid;
  const char *sop_class_uid;
  const char *study_uid;
  const char *series_uid;
  const char *transfer_syntax;
  const char *path;        /* relative to the data dir */
  const char *calling_ae;
  uint64_t bytes;
  uint64_t assoc_id;
  double received_at;
} ctp_store_instance;

/* *present = 1 when the instance is stored and its file not removed. */
int ctp_store_instance_present(ctp_store *st, const char *sop_uid, int *present);
/* Records an instance and updates its series, in one transaction: a new
 * series starts "receiving"; a known one gets its last arrival updated and
 * goes back to "receiving" if it was in another state (a job still queued
 * for it is superseded). *added = 0 when the instance was already present
 * (nothing changes). */
int ctp_store_instance_add(ctp_store *st, const ctp_store_instance *in,
                           int *added);
/* Paths (relative to the data dir) of the series' files not removed.
 * Free with ctp_store_strings_free. */
int ctp_store_series_paths(ctp_store *st, const char *series_uid,
                           char ***paths, int *n);
void ctp_store_strings_free(char **v, int n);

/* --- scheduling ----------------------------------------------------- */

/* Series "receiving" whose last arrival is at least stable_seconds before
 * now become "stable" and get a queued job. *njobs: jobs created;
 * *next_due: seconds until the next receiving series is due (-1: none). */
int ctp_store_series_promote(ctp_store *st, double now, double stable_seconds,
                             int *njobs, double *next_due);

typedef struct {
  int64_t id;
  char series_uid[65];
  char study_uid[65];
  int attempts;       /* including this one */
  int instances;      /* in the series when the job was made */
} ctp_store_job;

/* Claims the oldest queued job: it becomes "running" (and its series, when
 * the job is the series' current one). *found = 0 when none is queued. */
int ctp_store_job_claim(ctp_store *st, double now, ctp_store_job *job,
                        int *found);

/* An object a job made for the PACS (an SR or a Secondary Capture). */
typedef struct {
  const char *kind;             /* "sr" or "sc" */
  const char *sop_class_uid;
  const char *sop_instance_uid;
  const char *series_uid;       /* the object's own series */
  const char *path;             /* relative to the data dir */
} ctp_store_object;

typedef struct {
  int state;               /* CTP_JOB_DONE, _FAILED, _SKIPPED or _QUEUED */
  const char *error;       /* NULL or why */
  const char *result_json; /* NULL or the result */
  const char *model_sha256;
  double duration_s, infer_s;
  /* When state is DONE: one outbound row per object per destination,
   * committed with the job (so a job marked done always has its rows). */
  const ctp_store_object *objects;
  int nobjects;
  const char *const *destinations;
  int ndestinations;
} ctp_store_job_end;

/* Ends a running job; its series follows if the job is its current one. */
int ctp_store_job_finish(ctp_store *st, int64_t id, double now,
                         const ctp_store_job_end *end);
/* After a crash or an interrupted stop: running jobs go back to "queued"
 * (or "failed" once they have been started max_attempts times). */
int ctp_store_recover(ctp_store *st, double now, int max_attempts,
                      int *requeued, int *failed);
/* ctphase jobs retry: a new queued job for the series of job id, which
 * must be done, failed or skipped. *new_id: the new job. */
int ctp_store_job_retry(ctp_store *st, int64_t id, double now, int64_t *new_id);

/* --- outbound objects ---------------------------------------------- */

typedef struct {
  int64_t id;
  int64_t job_id;
  char kind[8];
  char sop_class_uid[65];
  char sop_instance_uid[65];
  char series_uid[65];
  char path[1024];          /* relative to the data dir */
  char destination[300];    /* as configured: "AE@host:port" or "dir:/..." */
  int attempts;             /* including this one */
} ctp_store_outbound;

/* Claims up to limit due rows (pending, next_attempt_at <= now) of ONE
 * destination, the one whose row is due longest: they become "sending"
 * and their attempts grow by one. *n = 0 when nothing is due. */
int ctp_store_outbound_claim(ctp_store *st, double now, int limit,
                             ctp_store_outbound *rows, int *n);

typedef struct {
  int64_t id;
  int state;                /* CTP_OUTBOUND_SENT, _PENDING (retry) or _FAILED */
  const char *error;        /* why it failed (ignored for SENT) */
  double next_attempt_at;   /* PENDING: when to try again */
} ctp_store_outbound_end;

/* Ends the sends of claimed rows, in one transaction. A row that is no
 * longer "sending" (re-queued meanwhile by a resend or a new job) is left
 * as it is and counted in *stale (may be NULL). */
int ctp_store_outbound_finish(ctp_store *st, double now,
                              const ctp_store_outbound_end *ends, int n,
                              int *stale);
/* A destination that cannot be reached: its other pending rows wait
 * until `until` too (their attempts do not grow). *n (may be NULL): rows
 * deferred. */
int ctp_store_outbound_defer(ctp_store *st, const char *destination, double until,
                             int *n);
/* Seconds until the next pending row is due (0: now; -1: none). */
int ctp_store_outbound_next_due(ctp_store *st, double now, double *due);
/* At start-up: rows left "sending" by a crash go back to pending, due
 * now. *requeued: how many. */
int ctp_store_outbound_recover(ctp_store *st, double now, int *requeued);
/* ctphase jobs resend: every outbound row of the job goes back to pending
 * with attempts 0, due now. CTP_ENOENT when the job is unknown or has no
 * rows. *n (may be NULL): rows re-queued. */
int ctp_store_outbound_resend(ctp_store *st, int64_t job_id, double now, int *n);

/* --- retention ------------------------------------------------------ */

/* Series done or skipped at or before `before` whose files are still
 * there. */
int ctp_store_retention_due(ctp_store *st, double before, int limit,
                            char ***series_uids, int *n);
/* Marks the listed files of a series removed (the rows stay) and, if the
 * series is still done/skipped, the series as cleaned. */
int ctp_store_files_removed(ctp_store *st, const char *series_uid,
                            char **paths, int n, double now);

/* --- queries -------------------------------------------------------- */

typedef struct {
  int64_t series[CTP_SERIES_NSTATES];
  int64_t jobs[CTP_JOB_NSTATES];
  int64_t outbound[CTP_OUTBOUND_NSTATES];
  int64_t instances;      /* rows */
  int64_t instances_present;
} ctp_store_counts;

int ctp_store_count(ctp_store *st, ctp_store_counts *c);
/* Jobs, newest first, as a JSON array (malloc'd); state NULL for all. */
int ctp_store_jobs_json(ctp_store *st, const char *state, int limit,
                        char **json);
/* One job with its result and its outbound objects ("outbound": [...]),
 * as a JSON object; CTP_ENOENT if unknown. */
int ctp_store_job_json(ctp_store *st, int64_t id, char **json);
/* One series with its jobs, as a JSON object; CTP_ENOENT if unknown. */
int ctp_store_series_json(ctp_store *st, const char *series_uid, char **json);

/* Current Unix time in seconds. */
double ctp_wall_now(void);

#ifdef __cplusplus
}
#endif
#endif
