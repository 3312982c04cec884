-- store.sql — the database of ctphased (SQLite, WAL), schema version 2.
--
-- This file documents the schema that src/service/store.c creates; the
-- unit test store_schema_matches_file checks that the two agree. The
-- version lives in PRAGMA user_version; each later version adds one
-- migration to store.c and updates this file.
--
-- Times are Unix seconds (REAL). Paths are relative to the data dir.
-- Life cycles: see include/ctphase/store.h.

-- A series, as it arrives: the countdown to "stable" runs from
-- last_arrival, so a restart resumes it.
CREATE TABLE series (
  series_uid     TEXT PRIMARY KEY,
  study_uid      TEXT NOT NULL,
  state          TEXT NOT NULL CHECK (state IN ('receiving', 'stable', 'queued',
                   'running', 'done', 'failed', 'skipped')),
  instances      INTEGER NOT NULL DEFAULT 0,
  bytes          INTEGER NOT NULL DEFAULT 0,
  first_arrival  REAL NOT NULL,
  last_arrival   REAL NOT NULL,
  state_changed  REAL NOT NULL,
  done_at        REAL,
  last_job_id    INTEGER,
  files_removed  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX series_by_state ON series (state, last_arrival);

-- One row per SOP instance acknowledged with success.
CREATE TABLE instances (
  sop_instance_uid TEXT PRIMARY KEY,
  series_uid       TEXT NOT NULL REFERENCES series (series_uid),
  study_uid        TEXT NOT NULL,
  sop_class_uid    TEXT NOT NULL,
  transfer_syntax  TEXT NOT NULL,
  path             TEXT NOT NULL,
  bytes            INTEGER NOT NULL,
  calling_ae       TEXT NOT NULL,
  assoc_id         INTEGER NOT NULL,
  received_at      REAL NOT NULL,
  removed_at       REAL
);
CREATE INDEX instances_by_series ON instances (series_uid);

-- A prediction run over a stable series.
CREATE TABLE jobs (
  id            INTEGER PRIMARY KEY,
  series_uid    TEXT NOT NULL REFERENCES series (series_uid),
  state         TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done',
                  'failed', 'skipped')),
  attempts      INTEGER NOT NULL DEFAULT 0,
  instances     INTEGER NOT NULL,
  error         TEXT,
  created_at    REAL NOT NULL,
  started_at    REAL,
  finished_at   REAL,
  duration_s    REAL,
  infer_s       REAL,
  model_sha256  TEXT,
  result_json   TEXT
);
CREATE INDEX jobs_by_state ON jobs (state, id);
CREATE INDEX jobs_by_series ON jobs (series_uid);

-- Objects made by a job (SR, SC) and their delivery: one row per object
-- per destination (unique pair), filled when the job ends (in the same
-- transaction) and worked by the sender. A later job of the same series
-- makes the same objects (deterministic UIDs) and takes the rows over.
-- Version 2 (migration from 1: the table is rebuilt, rows carried over).
CREATE TABLE outbound (
  id                INTEGER PRIMARY KEY,
  job_id            INTEGER NOT NULL REFERENCES jobs (id),
  kind              TEXT NOT NULL,
  sop_class_uid     TEXT NOT NULL,
  sop_instance_uid  TEXT NOT NULL,
  series_uid        TEXT NOT NULL,
  path              TEXT NOT NULL,
  destination       TEXT NOT NULL,
  state             TEXT NOT NULL CHECK (state IN ('pending', 'sending', 'sent',
                      'failed')),
  attempts          INTEGER NOT NULL DEFAULT 0,
  error             TEXT,
  created_at        REAL NOT NULL,
  next_attempt_at   REAL,
  last_attempt_at   REAL,
  sent_at           REAL,
  UNIQUE (sop_instance_uid, destination)
);
CREATE INDEX outbound_by_state ON outbound (state, next_attempt_at);
CREATE INDEX outbound_by_job ON outbound (job_id);

PRAGMA user_version = 2;
