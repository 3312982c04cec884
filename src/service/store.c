/*
 * store.c — the SQLite store of ctphased (see include/ctphase/store.h and
 * schemas/store.sql).
 *
 * A handle is one SQLite connection guarded by a mutex; every public
 * function locks it, so the SCP threads, the loop's background work and
 * the job workers share one handle safely. Writes are short transactions
 * (BEGIN IMMEDIATE, so that a writer never has to upgrade a read lock and
 * die on SQLITE_BUSY halfway); the database is in WAL mode with
 * synchronous=FULL, so a COMMIT that returned is on disk (except instance
 * rows: see set_synchronous()), and another process (`ctphase jobs`)
 * reads while the daemon writes.
 *
 * Statements are prepared once per handle (the table `sql` below, indexed
 * by the Q_* names) and reset after use. The schema is created and
 * upgraded by the migrations[] list: PRAGMA user_version says how many
 * have run; each runs in its own transaction.
 *
 * State changes of series, jobs and outbound objects go through
 * series_set_state(), job_set_state() and outbound_set_state(), which read
 * the current state, refuse a transition the life cycle does not allow
 * (CTP_ESTATE), write it and log it. Three bulk changes of outbound rows
 * bypass it and log a count instead: recovery at start-up (sending ->
 * pending), a resend (any -> pending) and a job's objects made again
 * (any -> pending, in outbound_add).
 */
#include "ctphase/store.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctphase/error.h"
#include "service/log.h"

/* ------------------------------------------------------------------ */
/* States                                                               */
/* ------------------------------------------------------------------ */

static const char *const series_names[] = {
#define XX(name, str) str,
    CTP_SERIES_STATE_MAP(XX)
#undef XX
};
static const char *const job_names[] = {
#define XX(name, str) str,
    CTP_JOB_STATE_MAP(XX)
#undef XX
};
static const char *const outbound_names[] = {
#define XX(name, str) str,
    CTP_OUTBOUND_STATE_MAP(XX)
#undef XX
};

const char *ctp_series_state_name(int s) {
  return s >= 0 && s < CTP_SERIES_NSTATES ? series_names[s] : "unknown";
}
const char *ctp_job_state_name(int s) {
  return s >= 0 && s < CTP_JOB_NSTATES ? job_names[s] : "unknown";
}
const char *ctp_outbound_state_name(int s) {
  return s >= 0 && s < CTP_OUTBOUND_NSTATES ? outbound_names[s] : "unknown";
}

static int parse_name(const char *const *names, int n, const char *s) {
  for (int i = 0; s && i < n; i++)
    if (strcmp(names[i], s) == 0) return i;
  return -1;
}

int ctp_series_state_parse(const char *s) {
  return parse_name(series_names, CTP_SERIES_NSTATES, s);
}
int ctp_job_state_parse(const char *s) {
  return parse_name(job_names, CTP_JOB_NSTATES, s);
}

int ctp_series_transition_ok(int from, int to) {
  if (from < 0 || from >= CTP_SERIES_NSTATES || to < 0 || to >= CTP_SERIES_NSTATES ||
      from == to)
    return 0;
  if (to == CTP_SERIES_RECEIVING) return 1; /* a new instance, from anywhere */
  switch (from) {
    case CTP_SERIES_RECEIVING: return to == CTP_SERIES_STABLE;
    case CTP_SERIES_STABLE: return to == CTP_SERIES_QUEUED;
    case CTP_SERIES_QUEUED: return to == CTP_SERIES_RUNNING;
    case CTP_SERIES_RUNNING:
      return to == CTP_SERIES_DONE || to == CTP_SERIES_FAILED ||
             to == CTP_SERIES_SKIPPED || to == CTP_SERIES_QUEUED;
    default: /* done, failed, skipped */
      return to == CTP_SERIES_QUEUED;
  }
}

int ctp_job_transition_ok(int from, int to) {
  switch (from) {
    case CTP_JOB_QUEUED: return to == CTP_JOB_RUNNING || to == CTP_JOB_SKIPPED;
    case CTP_JOB_RUNNING:
      return to == CTP_JOB_DONE || to == CTP_JOB_FAILED ||
             to == CTP_JOB_SKIPPED || to == CTP_JOB_QUEUED;
    default: return 0;
  }
}

int ctp_outbound_transition_ok(int from, int to) {
  switch (from) {
    case CTP_OUTBOUND_PENDING: return to == CTP_OUTBOUND_SENDING;
    case CTP_OUTBOUND_SENDING:
      return to == CTP_OUTBOUND_SENT || to == CTP_OUTBOUND_FAILED ||
             to == CTP_OUTBOUND_PENDING;
    case CTP_OUTBOUND_SENT:
    case CTP_OUTBOUND_FAILED: return to == CTP_OUTBOUND_PENDING; /* resend */
    default: return 0;
  }
}

int ctp_uid_valid(const char *uid) {
  if (!uid) return 0;
  size_t n = strlen(uid);
  if (n == 0 || n > 64 || uid[0] == '.' || uid[n - 1] == '.') return 0;
  for (size_t i = 0; i < n; i++) {
    char c = uid[i];
    if (c == '.') {
      if (uid[i + 1] == '.') return 0;
    } else if (c < '0' || c > '9') {
      return 0;
    }
  }
  return 1;
}

int ctp_instance_path(const char *study, const char *series, const char *sop,
                      char *out, size_t n) {
  if (!ctp_uid_valid(study) || !ctp_uid_valid(series) || !ctp_uid_valid(sop))
    return ctp_seterr(CTP_EINVAL, "not a valid UID");
  int k = snprintf(out, n, "instances/%s/%s/%s.dcm", study, series, sop);
  if (k < 0 || (size_t)k >= n) return ctp_seterr(CTP_ERANGE, "path too long");
  return 0;
}

double ctp_wall_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* ------------------------------------------------------------------ */
/* Schema                                                               */
/* ------------------------------------------------------------------ */

/* migrations[i] brings user_version from i to i + 1. Keep
 * schemas/store.sql in step. */
static const char *const migrations[] = {
    "CREATE TABLE series (\n"
    "  series_uid     TEXT PRIMARY KEY,\n"
    "  study_uid      TEXT NOT NULL,\n"
    "  state          TEXT NOT NULL CHECK (state IN ('receiving', 'stable', 'queued',\n"
    "                   'running', 'done', 'failed', 'skipped')),\n"
    "  instances      INTEGER NOT NULL DEFAULT 0,\n"
    "  bytes          INTEGER NOT NULL DEFAULT 0,\n"
    "  first_arrival  REAL NOT NULL,\n"
    "  last_arrival   REAL NOT NULL,\n"
    "  state_changed  REAL NOT NULL,\n"
    "  done_at        REAL,\n"
    "  last_job_id    INTEGER,\n"
    "  files_removed  INTEGER NOT NULL DEFAULT 0\n"
    ");\n"
    "CREATE INDEX series_by_state ON series (state, last_arrival);\n"
    "CREATE TABLE instances (\n"
    "  sop_instance_uid TEXT PRIMARY KEY,\n"
    "  series_uid       TEXT NOT NULL REFERENCES series (series_uid),\n"
    "  study_uid        TEXT NOT NULL,\n"
    "  sop_class_uid    TEXT NOT NULL,\n"
    "  transfer_syntax  TEXT NOT NULL,\n"
    "  path             TEXT NOT NULL,\n"
    "  bytes            INTEGER NOT NULL,\n"
    "  calling_ae       TEXT NOT NULL,\n"
    "  assoc_id         INTEGER NOT NULL,\n"
    "  received_at      REAL NOT NULL,\n"
    "  removed_at       REAL\n"
    ");\n"
    "CREATE INDEX instances_by_series ON instances (series_uid);\n"
    "CREATE TABLE jobs (\n"
    "  id            INTEGER PRIMARY KEY,\n"
    "  series_uid    TEXT NOT NULL REFERENCES series (series_uid),\n"
    "  state         TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done',\n"
    "                  'failed', 'skipped')),\n"
    "  attempts      INTEGER NOT NULL DEFAULT 0,\n"
    "  instances     INTEGER NOT NULL,\n"
    "  error         TEXT,\n"
    "  created_at    REAL NOT NULL,\n"
    "  started_at    REAL,\n"
    "  finished_at   REAL,\n"
    "  duration_s    REAL,\n"
    "  infer_s       REAL,\n"
    "  model_sha256  TEXT,\n"
    "  result_json   TEXT\n"
    ");\n"
    "CREATE INDEX jobs_by_state ON jobs (state, id);\n"
    "CREATE INDEX jobs_by_series ON jobs (series_uid);\n"
    "CREATE TABLE outbound (\n"
    "  id                INTEGER PRIMARY KEY,\n"
    "  job_id            INTEGER NOT NULL REFERENCES jobs (id),\n"
    "  kind              TEXT NOT NULL,\n"
    "  sop_instance_uid  TEXT NOT NULL UNIQUE,\n"
    "  path              TEXT NOT NULL,\n"
    "  destination       TEXT NOT NULL,\n"
    "  state             TEXT NOT NULL CHECK (state IN ('pending', 'sending', 'sent',\n"
    "                      'failed')),\n"
    "  attempts          INTEGER NOT NULL DEFAULT 0,\n"
    "  error             TEXT,\n"
    "  created_at        REAL NOT NULL,\n"
    "  next_attempt_at   REAL,\n"
    "  sent_at           REAL\n"
    ");\n"
    "CREATE INDEX outbound_by_state ON outbound (state, next_attempt_at);\n",
    /* 2: an object goes to several destinations (unique per pair), and
     * knows its SOP class and series. Version 1 never filled the table;
     * its rows are carried over all the same. */
    "ALTER TABLE outbound RENAME TO outbound_v1;\n"
    "CREATE TABLE outbound (\n"
    "  id                INTEGER PRIMARY KEY,\n"
    "  job_id            INTEGER NOT NULL REFERENCES jobs (id),\n"
    "  kind              TEXT NOT NULL,\n"
    "  sop_class_uid     TEXT NOT NULL,\n"
    "  sop_instance_uid  TEXT NOT NULL,\n"
    "  series_uid        TEXT NOT NULL,\n"
    "  path              TEXT NOT NULL,\n"
    "  destination       TEXT NOT NULL,\n"
    "  state             TEXT NOT NULL CHECK (state IN ('pending', 'sending', 'sent',\n"
    "                      'failed')),\n"
    "  attempts          INTEGER NOT NULL DEFAULT 0,\n"
    "  error             TEXT,\n"
    "  created_at        REAL NOT NULL,\n"
    "  next_attempt_at   REAL,\n"
    "  last_attempt_at   REAL,\n"
    "  sent_at           REAL,\n"
    "  UNIQUE (sop_instance_uid, destination)\n"
    ");\n"
    "INSERT INTO outbound (id, job_id, kind, sop_class_uid, sop_instance_uid,\n"
    "  series_uid, path, destination, state, attempts, error, created_at,\n"
    "  next_attempt_at, sent_at)\n"
    "  SELECT id, job_id, kind, '', sop_instance_uid, '', path, destination,\n"
    "  state, attempts, error, created_at, next_attempt_at, sent_at\n"
    "  FROM outbound_v1;\n"
    "DROP TABLE outbound_v1;\n"
    "CREATE INDEX outbound_by_state ON outbound (state, next_attempt_at);\n"
    "CREATE INDEX outbound_by_job ON outbound (job_id);\n",
};
#define NMIGRATIONS ((int)(sizeof migrations / sizeof migrations[0]))

/* ------------------------------------------------------------------ */
/* Statements                                                           */
/* ------------------------------------------------------------------ */

#define JOB_COLS                                                             \
  "id, series_uid, state, attempts, instances, error, created_at, "         \
  "started_at, finished_at, duration_s, infer_s, model_sha256"

#define QUERY_MAP(XX)                                                        \
  XX(BEGIN, "BEGIN IMMEDIATE")                                               \
  XX(COMMIT, "COMMIT")                                                       \
  XX(ROLLBACK, "ROLLBACK")                                                   \
  XX(SAVEPOINT, "SAVEPOINT one")                                             \
  XX(RELEASE, "RELEASE one")                                                 \
  XX(ROLLBACK_TO, "ROLLBACK TO one")                                         \
  XX(INSTANCE_PRESENT,                                                       \
     "SELECT 1 FROM instances WHERE sop_instance_uid = ?1 AND removed_at IS NULL") \
  XX(INSTANCE_UPSERT,                                                        \
     "INSERT INTO instances (sop_instance_uid, series_uid, study_uid, "      \
     "sop_class_uid, transfer_syntax, path, bytes, calling_ae, assoc_id, "   \
     "received_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) "        \
     "ON CONFLICT (sop_instance_uid) DO UPDATE SET path = excluded.path, "   \
     "bytes = excluded.bytes, received_at = excluded.received_at, "          \
     "removed_at = NULL WHERE removed_at IS NOT NULL")                       \
  XX(SERIES_GET, "SELECT state, last_job_id FROM series WHERE series_uid = ?1") \
  XX(SERIES_INSERT,                                                          \
     "INSERT INTO series (series_uid, study_uid, state, instances, bytes, "  \
     "first_arrival, last_arrival, state_changed) "                          \
     "VALUES (?1, ?2, 'receiving', 1, ?3, ?4, ?4, ?4)")                      \
  XX(SERIES_ARRIVAL,                                                         \
     "UPDATE series SET instances = instances + 1, bytes = bytes + ?2, "     \
     "last_arrival = max(last_arrival, ?3), files_removed = 0 "              \
     "WHERE series_uid = ?1")                                                \
  XX(SERIES_SET_STATE,                                                       \
     "UPDATE series SET state = ?2, state_changed = ?3, "                    \
     "done_at = CASE WHEN ?2 IN ('done', 'failed', 'skipped') THEN ?3 "      \
     "ELSE done_at END WHERE series_uid = ?1")                               \
  XX(SERIES_SET_JOB, "UPDATE series SET last_job_id = ?2 WHERE series_uid = ?1") \
  XX(SERIES_DUE,                                                             \
     "SELECT series_uid FROM series WHERE (state = 'receiving' AND "         \
     "last_arrival <= ?1) OR state = 'stable' ORDER BY last_arrival")        \
  XX(SERIES_NEXT_DUE,                                                        \
     "SELECT min(last_arrival) FROM series WHERE state = 'receiving'")       \
  XX(SERIES_PATHS,                                                           \
     "SELECT path FROM instances WHERE series_uid = ?1 AND removed_at IS NULL " \
     "ORDER BY path")                                                        \
  XX(SERIES_ROW,                                                             \
     "SELECT series_uid, study_uid, state, instances, bytes, first_arrival, " \
     "last_arrival, state_changed, done_at, last_job_id, files_removed "     \
     "FROM series WHERE series_uid = ?1")                                    \
  XX(SERIES_STUDY, "SELECT study_uid, instances FROM series WHERE series_uid = ?1") \
  XX(JOB_INSERT,                                                             \
     "INSERT INTO jobs (series_uid, state, instances, created_at) "          \
     "SELECT series_uid, 'queued', instances, ?2 FROM series WHERE series_uid = ?1") \
  XX(JOB_GET_STATE, "SELECT state, series_uid FROM jobs WHERE id = ?1")      \
  XX(JOB_SET_STATE, "UPDATE jobs SET state = ?2 WHERE id = ?1")              \
  XX(JOB_NEXT_QUEUED,                                                        \
     "SELECT id, series_uid, attempts, instances FROM jobs "                 \
     "WHERE state = 'queued' ORDER BY id LIMIT 1")                           \
  XX(JOB_START,                                                              \
     "UPDATE jobs SET attempts = attempts + 1, started_at = ?2, "            \
     "finished_at = NULL, error = NULL WHERE id = ?1")                       \
  XX(JOB_END,                                                                \
     "UPDATE jobs SET error = ?2, result_json = ?3, model_sha256 = ?4, "     \
     "finished_at = ?5, duration_s = ?6, infer_s = ?7 WHERE id = ?1")        \
  XX(JOB_SUPERSEDE,                                                          \
     "UPDATE jobs SET error = ?2, finished_at = ?3 WHERE id = ?1")           \
  XX(JOBS_RUNNING, "SELECT id, attempts FROM jobs WHERE state = 'running'")  \
  XX(JOB_ROW, "SELECT " JOB_COLS ", result_json FROM jobs WHERE id = ?1")    \
  XX(JOBS_LIST,                                                              \
     "SELECT " JOB_COLS " FROM jobs WHERE ?1 IS NULL OR state = ?1 "         \
     "ORDER BY id DESC LIMIT ?2")                                            \
  XX(JOBS_OF_SERIES,                                                         \
     "SELECT " JOB_COLS " FROM jobs WHERE series_uid = ?1 ORDER BY id")      \
  XX(RETENTION_DUE,                                                          \
     "SELECT series_uid FROM series WHERE state IN ('done', 'skipped') AND " \
     "done_at <= ?1 AND files_removed = 0 ORDER BY done_at LIMIT ?2")        \
  XX(INSTANCE_REMOVED,                                                       \
     "UPDATE instances SET removed_at = ?3 WHERE series_uid = ?1 AND "       \
     "path = ?2 AND removed_at IS NULL")                                     \
  XX(SERIES_CLEANED,                                                         \
     "UPDATE series SET files_removed = 1 WHERE series_uid = ?1 AND "        \
     "state IN ('done', 'skipped') AND NOT EXISTS (SELECT 1 FROM instances " \
     "WHERE series_uid = ?1 AND removed_at IS NULL)")                        \
  XX(COUNT_SERIES, "SELECT state, count(*) FROM series GROUP BY state")      \
  XX(COUNT_JOBS, "SELECT state, count(*) FROM jobs GROUP BY state")          \
  XX(COUNT_OUTBOUND, "SELECT state, count(*) FROM outbound GROUP BY state")  \
  XX(COUNT_INSTANCES,                                                        \
     "SELECT count(*), count(*) FILTER (WHERE removed_at IS NULL) FROM instances") \
  XX(OUTBOUND_UPSERT,                                                        \
     "INSERT INTO outbound (job_id, kind, sop_class_uid, sop_instance_uid, "   \
     "series_uid, path, destination, state, attempts, created_at, "          \
     "next_attempt_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', 0, ?8, ?8) " \
     "ON CONFLICT (sop_instance_uid, destination) DO UPDATE SET "            \
     "job_id = excluded.job_id, kind = excluded.kind, "                      \
     "sop_class_uid = excluded.sop_class_uid, series_uid = excluded.series_uid, " \
     "path = excluded.path, state = 'pending', attempts = 0, error = NULL, "  \
     "next_attempt_at = excluded.next_attempt_at, sent_at = NULL")           \
  XX(OUTBOUND_GET_STATE, "SELECT state, sop_instance_uid, destination FROM outbound WHERE id = ?1") \
  XX(OUTBOUND_SET_STATE, "UPDATE outbound SET state = ?2 WHERE id = ?1")     \
  XX(OUTBOUND_DUE_DEST,                                                      \
     "SELECT destination FROM outbound WHERE state = 'pending' AND "         \
     "next_attempt_at <= ?1 ORDER BY next_attempt_at, id LIMIT 1")           \
  XX(OUTBOUND_DUE,                                                           \
     "SELECT id, job_id, kind, sop_class_uid, sop_instance_uid, series_uid, " \
     "path, destination, attempts FROM outbound WHERE state = 'pending' AND " \
     "destination = ?1 AND next_attempt_at <= ?2 ORDER BY id LIMIT ?3")     \
  XX(OUTBOUND_START,                                                         \
     "UPDATE outbound SET attempts = attempts + 1, last_attempt_at = ?2 "    \
     "WHERE id = ?1")                                                        \
  XX(OUTBOUND_END,                                                           \
     "UPDATE outbound SET error = ?2, next_attempt_at = ?3, "                \
     "sent_at = CASE WHEN state = 'sent' THEN ?4 ELSE sent_at END WHERE id = ?1") \
  XX(OUTBOUND_NEXT_DUE,                                                      \
     "SELECT min(next_attempt_at) FROM outbound WHERE state = 'pending'")    \
  XX(OUTBOUND_RECOVER,                                                       \
     "UPDATE outbound SET state = 'pending', next_attempt_at = ?1 "          \
     "WHERE state = 'sending'")                                              \
  XX(OUTBOUND_DEFER,                                                         \
     "UPDATE outbound SET next_attempt_at = max(next_attempt_at, ?2) "       \
     "WHERE destination = ?1 AND state = 'pending'")                         \
  XX(OUTBOUND_RESEND,                                                        \
     "UPDATE outbound SET state = 'pending', attempts = 0, error = NULL, "    \
     "next_attempt_at = ?2, sent_at = NULL WHERE job_id = ?1")               \
  XX(OUTBOUND_OF_JOB,                                                        \
     "SELECT id, kind, sop_class_uid, sop_instance_uid, series_uid, path, "  \
     "destination, state, attempts, error, next_attempt_at, last_attempt_at, " \
     "sent_at FROM outbound WHERE job_id = ?1 ORDER BY destination, kind DESC, id")

typedef enum {
#define XX(name, sql) Q_##name,
  QUERY_MAP(XX)
#undef XX
  Q_COUNT
} query_id;

static const char *const query_sql[] = {
#define XX(name, sql) sql,
    QUERY_MAP(XX)
#undef XX
};

/* An instance waiting for the group commit (see ctp_store_instance_add). */
typedef struct gc_entry {
  const ctp_store_instance *in;
  int rc, added, done;
  char err[512];
  struct gc_entry *next;
} gc_entry;

struct ctp_store {
  sqlite3 *db;
  pthread_mutex_t mu;
  sqlite3_stmt *q[Q_COUNT];
  char path[1024];
  /* Group commit of instance rows. */
  pthread_mutex_t gc_mu;
  pthread_cond_t gc_cv;
  gc_entry *gc_head, **gc_tail;
  int gc_busy;
};

static int db_err(ctp_store *st, const char *what) {
  return ctp_seterr(CTP_EDB, "%s: %s: %s", st->path, what, sqlite3_errmsg(st->db));
}

/* The prepared statement for q, reset and unbound. NULL on error (with the
 * message set). */
static sqlite3_stmt *stmt(ctp_store *st, query_id q) {
  if (!st->q[q]) {
    if (sqlite3_prepare_v3(st->db, query_sql[q], -1, SQLITE_PREPARE_PERSISTENT,
                           &st->q[q], NULL) != SQLITE_OK) {
      db_err(st, "prepare");
      return NULL;
    }
  }
  return st->q[q];
}

static void done(sqlite3_stmt *s) {
  if (!s) return;
  sqlite3_reset(s);
  sqlite3_clear_bindings(s);
}

static void bind_text(sqlite3_stmt *s, int i, const char *v) {
  if (v) sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT);
  else sqlite3_bind_null(s, i);
}

/* Runs a statement that returns no rows. */
static int exec_q(ctp_store *st, sqlite3_stmt *s, const char *what) {
  if (!s) return CTP_EDB;
  int r = sqlite3_step(s);
  done(s);
  return r == SQLITE_DONE || r == SQLITE_ROW ? 0 : db_err(st, what);
}

static int begin(ctp_store *st) { return exec_q(st, stmt(st, Q_BEGIN), "begin"); }

/* Commits when rc is 0, else rolls back; returns rc or the commit error. */
static int end_tx(ctp_store *st, int rc) {
  if (rc == 0) {
    rc = exec_q(st, stmt(st, Q_COMMIT), "commit");
    if (rc == 0) return 0;
  }
  char saved[512];
  snprintf(saved, sizeof saved, "%s", ctp_last_error());
  exec_q(st, stmt(st, Q_ROLLBACK), "rollback");
  ctp_seterr(rc, "%s", saved);
  return rc;
}

static char *col_dup(sqlite3_stmt *s, int i) {
  const unsigned char *t = sqlite3_column_text(s, i);
  return t ? strdup((const char *)t) : NULL;
}

/* ------------------------------------------------------------------ */
/* Open, migrate, close                                                 */
/* ------------------------------------------------------------------ */

static int user_version(ctp_store *st, int *v) {
  sqlite3_stmt *s = NULL;
  if (sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &s, NULL) != SQLITE_OK)
    return db_err(st, "user_version");
  int r = sqlite3_step(s);
  *v = r == SQLITE_ROW ? sqlite3_column_int(s, 0) : 0;
  sqlite3_finalize(s);
  return r == SQLITE_ROW ? 0 : db_err(st, "user_version");
}

/* Runs the migrations this database has not seen yet. */
static int store__migrate(ctp_store *st, int flags) {
  int v;
  int rc = user_version(st, &v);
  if (rc) return rc;
  if (v > NMIGRATIONS)
    return ctp_seterr(CTP_EDB,
                      "%s: schema version %d is newer than this build's %d",
                      st->path, v, NMIGRATIONS);
  if (v < NMIGRATIONS && (flags & CTP_STORE_NO_MIGRATE))
    return ctp_seterr(CTP_EDB, "%s: schema version %d, this build needs %d "
                      "(start ctphased once to upgrade it)", st->path, v,
                      NMIGRATIONS);
  for (; v < NMIGRATIONS; v++) {
    char pragma[64];
    snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", v + 1);
    if (sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
      return db_err(st, "migration");
    if (sqlite3_exec(st->db, migrations[v], NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(st->db, pragma, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
      rc = db_err(st, "migration");
      sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
      return rc;
    }
    LOG(LOG_INFO, "store_migrated", LF_STR("path", st->path),
        LF_INT("version", v + 1));
  }
  return 0;
}

static int configure(ctp_store *st) {
  static const char *const pragmas[] = {
      "PRAGMA journal_mode = WAL",
      "PRAGMA synchronous = FULL",
      "PRAGMA foreign_keys = ON",
  };
  sqlite3_busy_timeout(st->db, 10000);
  for (size_t i = 0; i < sizeof pragmas / sizeof *pragmas; i++)
    if (sqlite3_exec(st->db, pragmas[i], NULL, NULL, NULL) != SQLITE_OK)
      return db_err(st, pragmas[i]);
  return 0;
}

int ctp_store_open(ctp_store **out, const char *path, int flags) {
  if (!out || !path) return ctp_seterr(CTP_EINVAL, "ctp_store_open: no path");
  *out = NULL;
  ctp_store *st = calloc(1, sizeof *st);
  if (!st) return ctp_seterr(CTP_ENOMEM, "out of memory");
  snprintf(st->path, sizeof st->path, "%s", path);
  pthread_mutex_init(&st->mu, NULL);
  pthread_mutex_init(&st->gc_mu, NULL);
  pthread_cond_init(&st->gc_cv, NULL);
  st->gc_tail = &st->gc_head;
  int oflags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
  if (!(flags & CTP_STORE_NO_MIGRATE)) oflags |= SQLITE_OPEN_CREATE;
  int rc;
  if (sqlite3_open_v2(path, &st->db, oflags, NULL) != SQLITE_OK) {
    rc = ctp_seterr(CTP_EDB, "%s: cannot open the database: %s", path,
                    st->db ? sqlite3_errmsg(st->db) : "out of memory");
    goto fail;
  }
  if ((rc = configure(st)) || (rc = store__migrate(st, flags))) goto fail;
  *out = st;
  return 0;
fail:
  ctp_store_close(st);
  return rc;
}

void ctp_store_close(ctp_store *st) {
  if (!st) return;
  for (int i = 0; i < Q_COUNT; i++) sqlite3_finalize(st->q[i]);
  sqlite3_close(st->db);
  pthread_mutex_destroy(&st->mu);
  pthread_mutex_destroy(&st->gc_mu);
  pthread_cond_destroy(&st->gc_cv);
  free(st);
}

int ctp_store_version(ctp_store *st) {
  int v = -1;
  pthread_mutex_lock(&st->mu);
  user_version(st, &v);
  pthread_mutex_unlock(&st->mu);
  return v;
}

/* ------------------------------------------------------------------ */
/* State changes                                                        */
/* ------------------------------------------------------------------ */

/* The state of a series, or -1 when it has none. */
static int series_state(ctp_store *st, const char *uid, int64_t *last_job) {
  sqlite3_stmt *s = stmt(st, Q_SERIES_GET);
  if (!s) return -2;
  bind_text(s, 1, uid);
  int state = -1;
  if (sqlite3_step(s) == SQLITE_ROW) {
    state = ctp_series_state_parse((const char *)sqlite3_column_text(s, 0));
    if (last_job) *last_job = sqlite3_column_int64(s, 1);
  }
  done(s);
  return state;
}

/* The one place a series changes state: checks the life cycle, writes,
 * logs. */
static int series_set_state(ctp_store *st, const char *uid, int to,
                            double now, const char *why) {
  int from = series_state(st, uid, NULL);
  if (from < 0) return ctp_seterr(CTP_ENOENT, "no series %s", uid);
  if (!ctp_series_transition_ok(from, to))
    return ctp_seterr(CTP_ESTATE, "series %s: %s -> %s is not allowed", uid,
                      ctp_series_state_name(from), ctp_series_state_name(to));
  sqlite3_stmt *s = stmt(st, Q_SERIES_SET_STATE);
  if (!s) return CTP_EDB;
  bind_text(s, 1, uid);
  bind_text(s, 2, ctp_series_state_name(to));
  sqlite3_bind_double(s, 3, now);
  int rc = exec_q(st, s, "series state");
  if (rc == 0)
    LOG(LOG_INFO, "series_state", LF_STR("series_uid", uid),
        LF_STR("from", ctp_series_state_name(from)),
        LF_STR("to", ctp_series_state_name(to)), LF_STR("why", why));
  return rc;
}

static int job_state(ctp_store *st, int64_t id, char *series_uid, size_t n) {
  sqlite3_stmt *s = stmt(st, Q_JOB_GET_STATE);
  if (!s) return -2;
  sqlite3_bind_int64(s, 1, id);
  int state = -1;
  if (sqlite3_step(s) == SQLITE_ROW) {
    state = ctp_job_state_parse((const char *)sqlite3_column_text(s, 0));
    if (series_uid)
      snprintf(series_uid, n, "%s", (const char *)sqlite3_column_text(s, 1));
  }
  done(s);
  return state;
}

/* The one place a job changes state. */
static int job_set_state(ctp_store *st, int64_t id, int to, const char *why) {
  char series[65] = "";
  int from = job_state(st, id, series, sizeof series);
  if (from < 0) return ctp_seterr(CTP_ENOENT, "no job %lld", (long long)id);
  if (!ctp_job_transition_ok(from, to))
    return ctp_seterr(CTP_ESTATE, "job %lld: %s -> %s is not allowed",
                      (long long)id, ctp_job_state_name(from),
                      ctp_job_state_name(to));
  sqlite3_stmt *s = stmt(st, Q_JOB_SET_STATE);
  if (!s) return CTP_EDB;
  sqlite3_bind_int64(s, 1, id);
  bind_text(s, 2, ctp_job_state_name(to));
  int rc = exec_q(st, s, "job state");
  if (rc == 0)
    LOG(LOG_INFO, "job_state", LF_INT("job", id), LF_STR("series_uid", series),
        LF_STR("from", ctp_job_state_name(from)),
        LF_STR("to", ctp_job_state_name(to)), LF_STR("why", why));
  return rc;
}

/* ------------------------------------------------------------------ */
/* Instances                                                            */
/* ------------------------------------------------------------------ */

int ctp_store_instance_present(ctp_store *st, const char *sop_uid, int *present) {
  pthread_mutex_lock(&st->mu);
  sqlite3_stmt *s = stmt(st, Q_INSTANCE_PRESENT);
  int rc = 0;
  if (!s) rc = CTP_EDB;
  else {
    bind_text(s, 1, sop_uid);
    int r = sqlite3_step(s);
    *present = r == SQLITE_ROW;
    if (r != SQLITE_ROW && r != SQLITE_DONE) rc = db_err(st, "instance lookup");
    done(s);
  }
  pthread_mutex_unlock(&st->mu);
  return rc;
}

/* A known series got an instance: update it, and bring it back to
 * "receiving" if it had moved on (superseding a job still queued). */
static int series_arrival(ctp_store *st, const ctp_store_instance *in) {
  int64_t last_job = 0;
  int state = series_state(st, in->series_uid, &last_job);
  if (state < -1) return CTP_EDB;
  if (state == -1) {
    sqlite3_stmt *s = stmt(st, Q_SERIES_INSERT);
    if (!s) return CTP_EDB;
    bind_text(s, 1, in->series_uid);
    bind_text(s, 2, in->study_uid);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)in->bytes);
    sqlite3_bind_double(s, 4, in->received_at);
    int rc = exec_q(st, s, "series insert");
    if (rc == 0)
      LOG(LOG_INFO, "series_state", LF_STR("series_uid", in->series_uid),
          LF_STR("study_uid", in->study_uid), LF_STR("from", "none"),
          LF_STR("to", "receiving"), LF_STR("why", "first instance"));
    return rc;
  }
  sqlite3_stmt *s = stmt(st, Q_SERIES_ARRIVAL);
  if (!s) return CTP_EDB;
  bind_text(s, 1, in->series_uid);
  sqlite3_bind_int64(s, 2, (sqlite3_int64)in->bytes);
  sqlite3_bind_double(s, 3, in->received_at);
  int rc = exec_q(st, s, "series arrival");
  if (rc || state == CTP_SERIES_RECEIVING) return rc;
  if (state == CTP_SERIES_QUEUED && last_job > 0) {
    rc = job_set_state(st, last_job, CTP_JOB_SKIPPED,
                       "superseded: the series received more instances");
    sqlite3_stmt *j = stmt(st, Q_JOB_SUPERSEDE);
    if (!rc && j) {
      sqlite3_bind_int64(j, 1, last_job);
      bind_text(j, 2, "superseded: the series received more instances before "
                      "the job ran; a new job follows");
      sqlite3_bind_double(j, 3, in->received_at);
      rc = exec_q(st, j, "job supersede");
    }
    if (rc) return rc;
  }
  char why[64];
  snprintf(why, sizeof why, "new instance while %s", ctp_series_state_name(state));
  return series_set_state(st, in->series_uid, CTP_SERIES_RECEIVING,
                          in->received_at, why);
}

/* Records one instance inside the open transaction. */
static int add_one(ctp_store *st, const ctp_store_instance *in, int *added) {
  sqlite3_stmt *p = stmt(st, Q_INSTANCE_PRESENT);
  sqlite3_stmt *s = stmt(st, Q_INSTANCE_UPSERT);
  if (!p || !s) return CTP_EDB;
  bind_text(p, 1, in->sop_instance_uid);
  int present = sqlite3_step(p) == SQLITE_ROW;
  done(p);
  if (present) return 0;
  /* The series row first: the instance refers to it. */
  int rc = series_arrival(st, in);
  if (rc) return rc;
  bind_text(s, 1, in->sop_instance_uid);
  bind_text(s, 2, in->series_uid);
  bind_text(s, 3, in->study_uid);
  bind_text(s, 4, in->sop_class_uid);
  bind_text(s, 5, in->transfer_syntax);
  bind_text(s, 6, in->path);
  sqlite3_bind_int64(s, 7, (sqlite3_int64)in->bytes);
  bind_text(s, 8, in->calling_ae ? in->calling_ae : "");
  sqlite3_bind_int64(s, 9, (sqlite3_int64)in->assoc_id);
  sqlite3_bind_double(s, 10, in->received_at);
  rc = exec_q(st, s, "instance insert");
  *added = rc == 0;
  return rc;
}

/* Instance rows are committed with synchronous=NORMAL (no WAL fsync of
 * their own; every other transaction keeps FULL). The received file is the
 * durable record of an instance: receive.c fsyncs it and its folder before
 * adding the row, and at start-up reconcile.c gives a row to every file
 * that has none, which is what a power loss can leave behind. A process
 * crash loses no committed row either way (the WAL is in the page cache);
 * the next FULL commit makes the earlier NORMAL ones durable too. */
static void set_synchronous(ctp_store *st, int full) {
  const char *sql = full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL";
  if (sqlite3_exec(st->db, sql, NULL, NULL, NULL) != SQLITE_OK)
    LOG(LOG_ERROR, "db_error", LF_STR("what", sql), LF_STR("error", sqlite3_errmsg(st->db)));
}

/* Commits a batch of instances in one transaction, each in a savepoint
 * so that one bad row does not sink the others. */
static void commit_batch(ctp_store *st, gc_entry *batch) {
  pthread_mutex_lock(&st->mu);
  set_synchronous(st, 0);
  int rc = begin(st);
  if (!rc) {
    for (gc_entry *e = batch; e && !rc; e = e->next) {
      if ((rc = exec_q(st, stmt(st, Q_SAVEPOINT), "savepoint"))) break;
      e->rc = add_one(st, e->in, &e->added);
      if (e->rc) {
        snprintf(e->err, sizeof e->err, "%s", ctp_last_error());
        e->added = 0;
        exec_q(st, stmt(st, Q_ROLLBACK_TO), "rollback to");
      }
      rc = exec_q(st, stmt(st, Q_RELEASE), "release");
    }
    rc = end_tx(st, rc);
  }
  for (gc_entry *e = batch; e && rc; e = e->next) {
    e->rc = rc;
    e->added = 0;
    snprintf(e->err, sizeof e->err, "%s", ctp_last_error());
  }
  set_synchronous(st, 1);
  pthread_mutex_unlock(&st->mu);
}

/* Group commit: the first thread to arrive commits, in one transaction
 * (one WAL fsync), every instance queued while the previous commit ran;
 * the others wait for their entry to be done. Under concurrent
 * associations this turns N fsyncs into about one. */
int ctp_store_instance_add(ctp_store *st, const ctp_store_instance *in,
                           int *added) {
  if (!st || !in || !added) return ctp_seterr(CTP_EINVAL, "instance_add: argument");
  gc_entry e = {in, 0, 0, 0, "", NULL};
  pthread_mutex_lock(&st->gc_mu);
  *st->gc_tail = &e;
  st->gc_tail = &e.next;
  while (!e.done) {
    if (st->gc_busy) {
      pthread_cond_wait(&st->gc_cv, &st->gc_mu);
      continue;
    }
    st->gc_busy = 1;
    gc_entry *batch = st->gc_head;
    st->gc_head = NULL;
    st->gc_tail = &st->gc_head;
    pthread_mutex_unlock(&st->gc_mu);
    commit_batch(st, batch);
    pthread_mutex_lock(&st->gc_mu);
    for (gc_entry *b = batch; b; b = b->next) b->done = 1;
    st->gc_busy = 0;
    pthread_cond_broadcast(&st->gc_cv);
  }
  pthread_mutex_unlock(&st->gc_mu);
  *added = e.added;
  if (e.rc) ctp_seterr(e.rc, "%s", e.err);
  return e.rc;
}

/* Collects column 0 of every row of s as strings. */
static int collect_strings(ctp_store *st, sqlite3_stmt *s, char ***out, int *n) {
  int cap = 16, k = 0, r;
  char **v = malloc((size_t)cap * sizeof *v);
  if (!v) {
    done(s);
    return ctp_seterr(CTP_ENOMEM, "out of memory");
  }
  while ((r = sqlite3_step(s)) == SQLITE_ROW) {
    if (k == cap) {
      char **nv = realloc(v, (size_t)(cap *= 2) * sizeof *v);
      if (!nv) break;
      v = nv;
    }
    if (!(v[k] = col_dup(s, 0))) break;
    k++;
  }
  done(s);
  if (r != SQLITE_DONE) {
    ctp_store_strings_free(v, k);
    return r == SQLITE_ROW ? ctp_seterr(CTP_ENOMEM, "out of memory")
                           : db_err(st, "query");
  }
  *out = v;
  *n = k;
  return 0;
}

void ctp_store_strings_free(char **v, int n) {
  for (int i = 0; v && i < n; i++) free(v[i]);
  free(v);
}

int ctp_store_series_paths(ctp_store *st, const char *series_uid, char ***paths,
                           int *n) {
  pthread_mutex_lock(&st->mu);
  sqlite3_stmt *s = stmt(st, Q_SERIES_PATHS);
  int rc = CTP_EDB;
  if (s) {
    bind_text(s, 1, series_uid);
    rc = collect_strings(st, s, paths, n);
  }
  pthread_mutex_unlock(&st->mu);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Scheduling                                                           */
/* ------------------------------------------------------------------ */

/* Makes a queued job for a stable series. */
static int series_make_job(ctp_store *st, const char *uid, double now) {
  sqlite3_stmt *s = stmt(st, Q_JOB_INSERT);
  if (!s) return CTP_EDB;
  bind_text(s, 1, uid);
  sqlite3_bind_double(s, 2, now);
  int rc = exec_q(st, s, "job insert");
  if (rc) return rc;
  int64_t id = sqlite3_last_insert_rowid(st->db);
  s = stmt(st, Q_SERIES_SET_JOB);
  if (!s) return CTP_EDB;
  bind_text(s, 1, uid);
  sqlite3_bind_int64(s, 2, id);
  if ((rc = exec_q(st, s, "series job"))) return rc;
  LOG(LOG_INFO, "job_state", LF_INT("job", id), LF_STR("series_uid", uid),
      LF_STR("from", "none"), LF_STR("to", "queued"), LF_STR("why", "series stable"));
  return series_set_state(st, uid, CTP_SERIES_QUEUED, now, "job created");
}

static int promote(ctp_store *st, double now, double stable, int *njobs) {
  char **due = NULL;
  int n = 0;
  sqlite3_stmt *s = stmt(st, Q_SERIES_DUE);
  if (!s) return CTP_EDB;
  sqlite3_bind_double(s, 1, now - stable);
  int rc = collect_strings(st, s, &due, &n);
  char why[64];
  snprintf(why, sizeof why, "nothing arrived for %g s", stable);
  for (int i = 0; !rc && i < n; i++) {
    if (series_state(st, due[i], NULL) == CTP_SERIES_RECEIVING)
      rc = series_set_state(st, due[i], CTP_SERIES_STABLE, now, why);
    if (!rc) rc = series_make_job(st, due[i], now);
    if (!rc) (*njobs)++;
  }
  ctp_store_strings_free(due, n);
  return rc;
}

static double next_due(ctp_store *st, double now, double stable) {
  sqlite3_stmt *s = stmt(st, Q_SERIES_NEXT_DUE);
  double due = -1;
  if (s && sqlite3_step(s) == SQLITE_ROW &&
      sqlite3_column_type(s, 0) != SQLITE_NULL) {
    due = sqlite3_column_double(s, 0) + stable - now;
    if (due < 0) due = 0;
  }
  done(s);
  return due;
}

int ctp_store_series_promote(ctp_store *st, double now, double stable_seconds,
                             int *njobs, double *due) {
  *njobs = 0;
  *due = -1;
  pthread_mutex_lock(&st->mu);
  int rc = begin(st);
  if (!rc) {
    rc = end_tx(st, promote(st, now, stable_seconds, njobs));
    if (rc) *njobs = 0;
  }
  if (!rc) *due = next_due(st, now, stable_seconds);
  pthread_mutex_unlock(&st->mu);
  return rc;
}

static int claim(ctp_store *st, double now, ctp_store_job *job, int *found) {
  sqlite3_stmt *s = stmt(st, Q_JOB_NEXT_QUEUED);
  if (!s) return CTP_EDB;
  int r = sqlite3_step(s);
  if (r == SQLITE_ROW) {
    job->id = sqlite3_column_int64(s, 0);
    snprintf(job->series_uid, sizeof job->series_uid, "%s",
             (const char *)sqlite3_column_text(s, 1));
    job->attempts = sqlite3_column_int(s, 2) + 1;
    job->instances = sqlite3_column_int(s, 3);
  }
  done(s);
  if (r != SQLITE_ROW) return r == SQLITE_DONE ? 0 : db_err(st, "job claim");
  *found = 1;
  char why[48];
  snprintf(why, sizeof why, "claimed by a worker (attempt %d)", job->attempts);
  int rc = job_set_state(st, job->id, CTP_JOB_RUNNING, why);
  if (rc) return rc;
  s = stmt(st, Q_JOB_START);
  if (!s) return CTP_EDB;
  sqlite3_bind_int64(s, 1, job->id);
  sqlite3_bind_double(s, 2, now);
  if ((rc = exec_q(st, s, "job start"))) return rc;
  s = stmt(st, Q_SERIES_STUDY);
  if (!s) return CTP_EDB;
  bind_text(s, 1, job->series_uid);
  if (sqlite3_step(s) == SQLITE_ROW)
    snprintf(job->study_uid, sizeof job->study_uid, "%s",
             (const char *)sqlite3_column_text(s, 0));
  done(s);
  int64_t last_job = 0;
  if (series_state(st, job->series_uid, &last_job) == CTP_SERIES_QUEUED &&
      last_job == job->id)
    rc = series_set_state(st, job->series_uid, CTP_SERIES_RUNNING, now,
                          "its job started");
  return rc;
}

int ctp_store_job_claim(ctp_store *st, double now, ctp_store_job *job, int *found) {
  *found = 0;
  memset(job, 0, sizeof *job);
  pthread_mutex_lock(&st->mu);
  int rc = begin(st);
  if (!rc) rc = end_tx(st, claim(st, now, job, found));
  if (rc) *found = 0;
  pthread_mutex_unlock(&st->mu);
  return rc;
}

static int series_follow_job(ctp_store *st, const char *uid, int64_t id,
                             int job_to, double now, const char *why) {
  int64_t last_job = 0;
  if (series_state(st, uid, &last_job) != CTP_SERIES_RUNNING || last_job != id)
    return 0; /* the series moved on (new instances): it keeps its state */
  int to = job_to == CTP_JOB_DONE      ? CTP_SERIES_DONE
           : job_to == CTP_JOB_FAILED  ? CTP_SERIES_FAILED
           : job_to == CTP_JOB_SKIPPED ? CTP_SERIES_SKIPPED
                                       : CTP_SERIES_QUEUED;
  return series_set_state(st, uid, to, now, why);
}

/* The outbound rows of a finished job: one per object per destination.
 * An object already known for a destination (the same deterministic UID
 * from an earlier job of the series) is taken over by this job and
 * re-queued, whatever its state: the PACS then replaces it. */
static int outbound_add(ctp_store *st, int64_t job, double now,
                        const ctp_store_job_end *e) {
  for (int i = 0; i < e->nobjects; i++) {
    const ctp_store_object *o = &e->objects[i];
    for (int d = 0; d < e->ndestinations; d++) {
      sqlite3_stmt *s = stmt(st, Q_OUTBOUND_UPSERT);
      if (!s) return CTP_EDB;
      sqlite3_bind_int64(s, 1, job);
      bind_text(s, 2, o->kind);
      bind_text(s, 3, o->sop_class_uid);
      bind_text(s, 4, o->sop_instance_uid);
      bind_text(s, 5, o->series_uid);
      bind_text(s, 6, o->path);
      bind_text(s, 7, e->destinations[d]);
      sqlite3_bind_double(s, 8, now);
      int rc = exec_q(st, s, "outbound insert");
      if (rc) return rc;
    }
  }
  if (e->nobjects && e->ndestinations)
    LOG(LOG_INFO, "outbound_queued", LF_INT("job", job), LF_INT("objects", e->nobjects),
        LF_INT("destinations", e->ndestinations));
  return 0;
}

static int finish(ctp_store *st, int64_t id, double now,
                  const ctp_store_job_end *e) {
  char series[65] = "";
  if (job_state(st, id, series, sizeof series) < 0)
    return ctp_seterr(CTP_ENOENT, "no job %lld", (long long)id);
  const char *why = e->error ? e->error : "finished";
  int rc = job_set_state(st, id, e->state, why);
  if (rc) return rc;
  sqlite3_stmt *s = stmt(st, Q_JOB_END);
  if (!s) return CTP_EDB;
  sqlite3_bind_int64(s, 1, id);
  bind_text(s, 2, e->error);
  bind_text(s, 3, e->result_json);
  bind_text(s, 4, e->model_sha256);
  if (e->state == CTP_JOB_QUEUED) sqlite3_bind_null(s, 5);
  else sqlite3_bind_double(s, 5, now);
  sqlite3_bind_double(s, 6, e->duration_s);
  sqlite3_bind_double(s, 7, e->infer_s);
  if ((rc = exec_q(st, s, "job end"))) return rc;
  if (e->state == CTP_JOB_DONE && (rc = outbound_add(st, id, now, e))) return rc;
  return series_follow_job(st, series, id, e->state, now, why);
}

int ctp_store_job_finish(ctp_store *st, int64_t id, double now,
                         const ctp_store_job_end *end) {
  pthread_mutex_lock(&st->mu);
  int rc = begin(st);
  if (!rc) rc = end_tx(st, finish(st, id, now, end));
  pthread_mutex_unlock(&st->mu);
  return rc;
}

static int recover(ctp_store *st, double now, int max_attempts, int *requeued,
                   int *failed) {
  sqlite3_stmt *s = stmt(st, Q_JOBS_RUNNING);
  if (!s) return CTP_EDB;
  int64_t ids[256];
  int attempts[256], n = 0;
  while (n < 256 && sqlite3_step(s) == SQLITE_ROW) {
    ids[n] = sqlite3_column_int64(s, 0);
    attempts[n++] = sqlite3_column_int(s, 1);
  }
  done(s);
  int rc = 0;
  for (int i = 0; !rc && i < n; i++) {
    ctp_store_job_end e = {.state = CTP_JOB_QUEUED};
    char why[96];
    if (attempts[i] >= max_attempts) {
      snprintf(why, sizeof why, "interrupted after %d attempts", attempts[i]);
      e.state = CTP_JOB_FAILED;
      e.error = why;
      (*failed)++;
    } else {
      e.error = "interrupted: re-queued";
      (*requeued)++;
    }
    rc = finish(st, ids[i], now, &e);
  }
  return rc;
}

int ctp_store_recover(ctp_store *st, double now, int max_attempts, int *requeued,
                      int *failed) {
  *requeued = *failed = 0;
  pthread_mutex_lock(&st->mu);
  int rc = begin(st);
  if (!rc) rc = end_tx(st, recover(st, now, max_attempts, requeued, failed));
  pthread_mutex_unlock(&st->mu);
  return rc;
}

static int retry(ctp_store *st, int64_t id, double now, int64_t *new_id) {
  char series[65] = "";
  int js = job_state(st, id, series, sizeof series);
  if (js < 0) return ctp_seterr(CTP_ENOENT, "no job %lld", (long long)id);
  if (js == CTP_JOB_QUEUED || js == CTP_JOB_RUNNING)
    return ctp_seterr(CTP_ESTATE, "job %lld is %s already", (long long)id,
                      ctp_job_state_name(js));
  int ss = series_state(st, series, NULL);
  if (ss != CTP_SERIES_DONE && ss != CTP_SERIES_FAILED && ss != CTP_SERIES_SKIPPED)
    return ctp_seterr(CTP_ESTATE,
                      "series %s is %s: it gets a job of its own when it is "
                      "stable", series, ctp_series_state_name(ss));
  sqlite3_stmt *s = stmt(st, Q_JOB_INSERT);
  if (!s) return CTP_EDB;
  bind_text(s, 1, series);
  sqlite3_bind_double(s, 2, now);
  int rc = exec_q(st, s, "job insert");
  if (rc) return rc;
  *new_id = sqlite3_last_insert_rowid(st->db);
  s = stmt(st, Q_SERIES_SET_JOB);
  if (!s) return CTP_EDB;
  bind_text(s, 1, series);
  sqlite3_bind_int64(s, 2, *new_id);
  if ((rc = exec_q(st, s, "series job"))) return rc;
  char why[64];
  snprintf(why, sizeof why, "retry of job %lld", (long long)id);
  LOG(LOG_INFO, "job_state", LF_INT("job", *new_id), LF_STR("series_uid", series),
      LF_STR("from", "none"), LF_STR("to", "queued"), LF_STR("why", why));
  return series_set_state(st, series, CTP_SERIES_QUEUED, now, why);
}

int ctp_store_job_retry(ctp_store *st, int64_t id, double now, int64_t *new_id) {
  pthread_mutex_lock(&st->mu);
  int rc = begin(st);
  if (!rc) rc = end_tx(st, retry(st, id, now, new_id));
  pthread_mutex_unlock(&st->mu);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Retention                                                            */
/* ------------------------------------------------------------------ */

int ctp_store_retention_due(ctp_store *st, double before, int limit,
                            char ***series_uids, int *n) {
  pthread_mutex_lock(&st->mu);
  sqlite3_stmt *s = stmt(st, Q_RETENTION_DUE);
  int rc = CTP_EDB;
  if (s) {
    sqlite3_bind_double(s, 1, before);
    sqlite3_bind_int(s, 2, limit);
    rc = collect_strings(st, s, series_uids, n);
  }
  pthread_mutex_unlock(&st->mu);
  return rc;
}

int ctp_store_files_removed(ctp_store *st, const char *series_uid, char **paths,
                            int n, double now) {
  pthread_mutex_lock(&st->mu);
  int rc = begin(st);
  for (int i = 0; !rc && i < n; i++) {
    sqlite3_stmt *s = stmt(st, Q_INSTANCE_REMOVED);
    if (!s) {
      rc = CTP_EDB;
      break;
    }
    bind_text(s, 1, series_uid);
    bind_text(s, 2, paths[i]);
    sqlite3_bind_double(s, 3, now);
    rc = exec_q(st, s, "instance removed");
  }
  if (!rc) {
    sqlite3_stmt *s = stmt(st, Q_SERIES_CLEANED);
    if (!s) rc = CTP_EDB;
    else {
      bind_text(s, 1, series_uid);
      rc = exec_q(st, s, "series cleaned");
    }
  }
  rc = end_tx(st, rc);
  pthread_mutex_unlock(&st->mu);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Outbound objects                                                     */
/* ------------------------------------------------------------------ */

static int outbound_parse(const char *s);

/* The one place an outbound row changes state (bulk recovery and resend
 * aside, which log a count). Refuses what the life cycle does not allow
 * with CTP_ESTATE: a row re-queued by a resend or a new job while it was
 * being sent, say. */
static int outbound_set_state(ctp_store *st, int64_t id, int to, const char *why) {
  sqlite3_stmt *s = stmt(st, Q_OUTBOUND_GET_STATE);
  if (!s) return CTP_EDB;
  sqlite3_bind_int64(s, 1, id);
  int from = -1;
  char sop[65] = "", dest[300] = "";
  if (sqlite3_step(s) == SQLITE_ROW) {
    from = outbound_parse((const char *)sqlite3_column_text(s, 0));
    snprintf(sop, sizeof sop, "%s", (const char *)sqlite3_column_text(s, 1));
    snprintf(dest, sizeof dest, "%s", (const char *)sqlite3_column_text(s, 2));
  }
  done(s);
  if (from < 0) return ctp_seterr(CTP_ENOENT, "no outbound object %lld", (long long)id);
  if (!ctp_outbound_transition_ok(from, to))
    return ctp_seterr(CTP_ESTATE, "outbound %lld: %s -> %s is not allowed",
                      (long long)id, ctp_outbound_state_name(from),
                      ctp_outbound_state_name(to));
  s = stmt(st, Q_OUTBOUND_SET_STATE);
  if (!s) return CTP_EDB;
  sqlite3_bind_int64(s, 1, id);
  bind_text(s, 2, ctp_outbound_state_name(to));
  int rc = exec_q(st, s, "outbound state");
  if (rc == 0)
    LOG(LOG_DEBUG, "outbound_state", LF_INT("outbound", id), LF_STR("sop_uid", sop),
        LF_STR("destination", dest), LF_STR("from", ctp_outbound_state_name(from)),
        LF_STR("to", ctp_outbound_state_name(to)), LF_STR("why", why));
  return rc;
}

static void outbound_row(sqlite3_stmt *s, ctp_store_outbound *r) {
  memset(r, 0, sizeof *r);
  r->id = sqlite3_column_int64(s, 0);
  r->job_id = sqlite3_column_int64(s, 1);
#define COPY(field, i) \
  snprintf(r->field, sizeof r->field, "%s", \
           sqlite3_column_text(s, i) ? (const char *)sqlite3_column_text(s, i) : "")
  COPY(kind, 2);
  COPY(sop_class_uid, 3);
  COPY(sop_instance_uid, 4);
  COPY(series_uid, 5);
  COPY(path, 6);
  COPY(destination, 7);
#undef COPY
  r->attempts = sqlite3_column_int(s, 8) + 1;
}

static int outbound_claim(ctp_store *st, double now, int limit,
                          ctp_store_outbound *rows, int *n) {
  sqlite3_stmt *s = stmt(st, Q_OUTBOUND_DUE_DEST);
  if (!s) return CTP_EDB;
  sqlite3_bind_double(s, 1, now);
  char dest[sizeof rows->destination] = "";
  int r = sqlite3_step(s);
  if (r == SQLITE_ROW)
    snprintf(dest, sizeof dest, "%s", (const char *)sqlite3_column_text(s, 0));
  done(s);
  if (r != SQLITE_ROW) return r == SQLITE_DONE ? 0 : db_err(st, "outbound claim");
  s = stmt(st, Q_OUTBOUND_DUE);
  if (!s) return CTP_EDB;
  bind_text(s, 1, dest);
  sqlite3_bind_double(s, 2, now);
  sqlite3_bind_int(s, 3, limit);
  while (*n < limit && (r = sqlite3_step(s)) == SQLITE_ROW) outbound_row(s, &rows[(*n)++]);
  done(s);
  int rc = 0;
  for (int i = 0; !rc && i < *n; i++) {
    char why[48];
    snprintf(why, sizeof why, "claimed by the sender (attempt %d)", rows[i].attempts);
    rc = outbound_set_state(st, rows[i].id, CTP_OUTBOUND_SENDING, why);
    sqlite3_stmt *u = rc ? NULL : stmt(st, Q_OUTBOUND_START);
    if (u) {
      sqlite3_bind_int64(u, 1, rows[i].id);
      sqlite3_bind_double(u, 2, now);
      rc = exec_q(st, u, "outbound start");
    } else if (!rc) {
      rc = CTP_EDB;
    }
  }
  return rc;
}

int ctp_store_outbound_claim(ctp_store *st, double now, int limit,
                             ctp_store_outbound *rows, int *n) {
  if (!st || !rows || !n || limit < 1)
    return ctp_seterr(CTP_EINVAL, "outbound_claim: argument");
  *n = 0;
  pthread_mutex_lock(&st->mu);
  int rc = begin(st);
  if (!rc) rc = end_tx(st, outbound_claim(st, now, limit, rows, n));
  if (rc) *n = 0;
  pthread_mutex_unlock(&st->mu);
  return rc;
}

static int outbound_end(ctp_store *st, double now, const ctp_store_outbound_end *e,
                        int *stale) {
  const char *why = e->state == CTP_OUTBOUND_SENT      ? "sent"
                    : e->state == CTP_OUTBOUND_PENDING ? "retry later"
                                                       : "gave up";
  int rc = outbound_set_state(st, e->id, e->state, why);
  if (rc == CTP_ESTATE || rc == CTP_ENOENT) {
    (*stale)++; /* re-queued or replaced while it was being sent */
    return 0;
  }
  if (rc) return rc;
  sqlite3_stmt *s = stmt(st, Q_OUTBOUND_END);
  if (!s) return CTP_EDB;
  sqlite3_bind_int64(s, 1, e->id);
  bind_text(s, 2, e->state == CTP_OUTBOUND_SENT ? NULL : e->error);
  if (e->state == CTP_OUTBOUND_PENDING) sqlite3_bind_double(s, 3, e->next_attempt_at);
  else sqlite3_bind_null(s, 3);
  sqlite3_bind_double(s, 4, now);
  return exec_q(st, s, "outbound end");
}

int ctp_store_outbound_finish(ctp_store *st, double now,
                              const ctp_store_outbound_end *ends, int n, int *stale) {
  if (!st || (n > 0 && !ends)) return ctp_seterr(CTP_EINVAL, "outbound_finish: argument");
  int dummy = 0;
  if (!stale) stale = &dummy;
  *stale = 0;
  pthread_mutex_lock(&st->mu);
  int rc = begin(st);
  for (int i = 0; !rc && i < n; i++) {
    if (ends[i].state != CTP_OUTBOUND_SENT && ends[i].state != CTP_OUTBOUND_PENDING &&
        ends[i].state != CTP_OUTBOUND_FAILED)
      rc = ctp_seterr(CTP_EINVAL, "outbound_finish: state %d", ends[i].state);
    else
      rc = outbound_end(st, now, &ends[i], stale);
  }
  rc = rc ? end_tx(st, rc) : end_tx(st, 0);
  pthread_mutex_unlock(&st->mu);
  return rc;
}

int ctp_store_outbound_next_due(ctp_store *st, double now, double *due) {
  *due = -1;
  pthread_mutex_lock(&st->mu);
  sqlite3_stmt *s = stmt(st, Q_OUTBOUND_NEXT_DUE);
  int rc = s ? 0 : CTP_EDB;
  if (s && sqlite3_step(s) == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL) {
    *due = sqlite3_column_double(s, 0) - now;
    if (*due < 0) *due = 0;
  }
  done(s);
  pthread_mutex_unlock(&st->mu);
  return rc;
}

int ctp_store_outbound_recover(ctp_store *st, double now, int *requeued) {
  *requeued = 0;
  pthread_mutex_lock(&st->mu);
  int rc = begin(st);
  if (!rc) {
    sqlite3_stmt *s = stmt(st, Q_OUTBOUND_RECOVER);
    if (!s) rc = CTP_EDB;
    else {
      sqlite3_bind_double(s, 1, now);
      rc = exec_q(st, s, "outbound recover");
      if (!rc) *requeued = sqlite3_changes(st->db);
    }
    rc = end_tx(st, rc);
  }
  pthread_mutex_unlock(&st->mu);
  if (!rc && *requeued)
    LOG(LOG_WARN, "outbound_recovered", LF_INT("objects", *requeued),
        LF_STR("why", "left sending by a crash or a forced stop: sent again"));
  return rc;
}

int ctp_store_outbound_defer(ctp_store *st, const char *destination, double until,
                             int *n) {
  int dummy = 0;
  if (!n) n = &dummy;
  *n = 0;
  pthread_mutex_lock(&st->mu);
  sqlite3_stmt *s = stmt(st, Q_OUTBOUND_DEFER);
  int rc = CTP_EDB;
  if (s) {
    bind_text(s, 1, destination);
    sqlite3_bind_double(s, 2, until);
    rc = exec_q(st, s, "outbound defer");
    if (!rc) *n = sqlite3_changes(st->db);
  }
  pthread_mutex_unlock(&st->mu);
  return rc;
}

static int resend(ctp_store *st, int64_t job, double now, int *n) {
  if (job_state(st, job, NULL, 0) < 0)
    return ctp_seterr(CTP_ENOENT, "no job %lld", (long long)job);
  sqlite3_stmt *s = stmt(st, Q_OUTBOUND_RESEND);
  if (!s) return CTP_EDB;
  sqlite3_bind_int64(s, 1, job);
  sqlite3_bind_double(s, 2, now);
  int rc = exec_q(st, s, "outbound resend");
  if (rc) return rc;
  *n = sqlite3_changes(st->db);
  if (*n == 0)
    return ctp_seterr(CTP_ENOENT,
                      "job %lld has no outbound objects (no destination was "
                      "configured when it ran, it made no result, or a later "
                      "job of the series took its objects over)", (long long)job);
  LOG(LOG_INFO, "outbound_resend", LF_INT("job", job), LF_INT("objects", *n));
  return 0;
}

int ctp_store_outbound_resend(ctp_store *st, int64_t job_id, double now, int *n) {
  int dummy = 0;
  if (!n) n = &dummy;
  *n = 0;
  pthread_mutex_lock(&st->mu);
  int rc = begin(st);
  if (!rc) rc = end_tx(st, resend(st, job_id, now, n));
  pthread_mutex_unlock(&st->mu);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Queries                                                              */
/* ------------------------------------------------------------------ */

static int count_by_state(ctp_store *st, query_id q, int64_t *out, int n,
                          int (*parse)(const char *)) {
  sqlite3_stmt *s = stmt(st, q);
  if (!s) return CTP_EDB;
  int r;
  while ((r = sqlite3_step(s)) == SQLITE_ROW) {
    int k = parse((const char *)sqlite3_column_text(s, 0));
    if (k >= 0 && k < n) out[k] = sqlite3_column_int64(s, 1);
  }
  done(s);
  return r == SQLITE_DONE ? 0 : db_err(st, "count");
}

static int outbound_parse(const char *s) {
  return parse_name(outbound_names, CTP_OUTBOUND_NSTATES, s);
}

int ctp_store_count(ctp_store *st, ctp_store_counts *c) {
  memset(c, 0, sizeof *c);
  pthread_mutex_lock(&st->mu);
  int rc = count_by_state(st, Q_COUNT_SERIES, c->series, CTP_SERIES_NSTATES,
                          ctp_series_state_parse);
  if (!rc) rc = count_by_state(st, Q_COUNT_JOBS, c->jobs, CTP_JOB_NSTATES,
                               ctp_job_state_parse);
  if (!rc) rc = count_by_state(st, Q_COUNT_OUTBOUND, c->outbound,
                               CTP_OUTBOUND_NSTATES, outbound_parse);
  if (!rc) {
    sqlite3_stmt *s = stmt(st, Q_COUNT_INSTANCES);
    if (!s) rc = CTP_EDB;
    else {
      if (sqlite3_step(s) == SQLITE_ROW) {
        c->instances = sqlite3_column_int64(s, 0);
        c->instances_present = sqlite3_column_int64(s, 1);
      }
      done(s);
    }
  }
  pthread_mutex_unlock(&st->mu);
  return rc;
}

/* Adds column i of s to obj under name, as its SQLite type. */
static void add_col(cJSON *obj, const char *name, sqlite3_stmt *s, int i) {
  switch (sqlite3_column_type(s, i)) {
    case SQLITE_INTEGER:
      cJSON_AddNumberToObject(obj, name, (double)sqlite3_column_int64(s, i));
      break;
    case SQLITE_FLOAT:
      cJSON_AddNumberToObject(obj, name, sqlite3_column_double(s, i));
      break;
    case SQLITE_NULL: cJSON_AddNullToObject(obj, name); break;
    default:
      cJSON_AddStringToObject(obj, name, (const char *)sqlite3_column_text(s, i));
  }
}

static cJSON *job_object(sqlite3_stmt *s) {
  static const char *const cols[] = {
      "id", "series_uid", "state", "attempts", "instances", "error",
      "created_at", "started_at", "finished_at", "duration_s", "infer_s",
      "model_sha256"};
  cJSON *o = cJSON_CreateObject();
  for (int i = 0; i < (int)(sizeof cols / sizeof *cols); i++) add_col(o, cols[i], s, i);
  return o;
}

static int print_json(cJSON *root, char **json) {
  *json = root ? cJSON_PrintUnformatted(root) : NULL;
  cJSON_Delete(root);
  return *json ? 0 : ctp_seterr(CTP_ENOMEM, "out of memory");
}

int ctp_store_jobs_json(ctp_store *st, const char *state, int limit, char **json) {
  pthread_mutex_lock(&st->mu);
  sqlite3_stmt *s = stmt(st, Q_JOBS_LIST);
  int rc = CTP_EDB;
  if (s) {
    cJSON *arr = cJSON_CreateArray();
    bind_text(s, 1, state);
    sqlite3_bind_int(s, 2, limit > 0 ? limit : 100);
    int r;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) cJSON_AddItemToArray(arr, job_object(s));
    done(s);
    rc = r == SQLITE_DONE ? print_json(arr, json) : (cJSON_Delete(arr), db_err(st, "jobs"));
  }
  pthread_mutex_unlock(&st->mu);
  return rc;
}

/* The outbound objects of a job, into arr. */
static void outbound_json(ctp_store *st, int64_t job, cJSON *arr) {
  static const char *const cols[] = {
      "id", "kind", "sop_class_uid", "sop_instance_uid", "series_uid", "path",
      "destination", "state", "attempts", "error", "next_attempt_at",
      "last_attempt_at", "sent_at"};
  sqlite3_stmt *s = stmt(st, Q_OUTBOUND_OF_JOB);
  if (!s || !arr) return;
  sqlite3_bind_int64(s, 1, job);
  while (sqlite3_step(s) == SQLITE_ROW) {
    cJSON *o = cJSON_CreateObject();
    for (int i = 0; i < (int)(sizeof cols / sizeof *cols); i++) add_col(o, cols[i], s, i);
    cJSON_AddItemToArray(arr, o);
  }
  done(s);
}

int ctp_store_job_json(ctp_store *st, int64_t id, char **json) {
  pthread_mutex_lock(&st->mu);
  sqlite3_stmt *s = stmt(st, Q_JOB_ROW);
  int rc = CTP_EDB;
  if (s) {
    sqlite3_bind_int64(s, 1, id);
    if (sqlite3_step(s) == SQLITE_ROW) {
      cJSON *o = job_object(s);
      const char *res = (const char *)sqlite3_column_text(s, 12);
      cJSON *parsed = res ? cJSON_Parse(res) : NULL;
      cJSON_AddItemToObject(o, "result", parsed ? parsed : cJSON_CreateNull());
      done(s);
      outbound_json(st, id, cJSON_AddArrayToObject(o, "outbound"));
      rc = print_json(o, json);
    } else {
      rc = ctp_seterr(CTP_ENOENT, "no job %lld", (long long)id);
    }
    done(s);
  }
  pthread_mutex_unlock(&st->mu);
  return rc;
}

static cJSON *series_object(sqlite3_stmt *s) {
  static const char *const cols[] = {
      "series_uid", "study_uid", "state", "instances", "bytes",
      "first_arrival", "last_arrival", "state_changed", "done_at",
      "last_job_id", "files_removed"};
  cJSON *o = cJSON_CreateObject();
  for (int i = 0; i < (int)(sizeof cols / sizeof *cols); i++) add_col(o, cols[i], s, i);
  return o;
}

int ctp_store_series_json(ctp_store *st, const char *uid, char **json) {
  pthread_mutex_lock(&st->mu);
  sqlite3_stmt *s = stmt(st, Q_SERIES_ROW);
  int rc = CTP_EDB;
  if (s) {
    bind_text(s, 1, uid);
    cJSON *o = sqlite3_step(s) == SQLITE_ROW ? series_object(s) : NULL;
    done(s);
    sqlite3_stmt *j = o ? stmt(st, Q_JOBS_OF_SERIES) : NULL;
    if (j) {
      cJSON *arr = cJSON_AddArrayToObject(o, "jobs");
      bind_text(j, 1, uid);
      while (sqlite3_step(j) == SQLITE_ROW) cJSON_AddItemToArray(arr, job_object(j));
      done(j);
    }
    rc = o ? print_json(o, json) : ctp_seterr(CTP_ENOENT, "no series %s", uid);
  }
  pthread_mutex_unlock(&st->mu);
  return rc;
}
