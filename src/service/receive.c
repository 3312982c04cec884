/*
 * receive.c — what ctphased does with an association and an instance:
 * the SCP callbacks (scp.h).
 *
 * Runs on the SCP's association threads, several at once; it reads the
 * current config (immutable) and uses the store (which locks itself).
 *
 * Policy, before anything is written: the peer address and calling AE
 * title must be on their allowlists (when those are not empty); a non-CT
 * object is dropped (acknowledged, not kept) or refused with 0x0122 as
 * non_ct says; an instance already stored is acknowledged without being
 * written again; below the disk watermark a store is refused with 0xA700.
 *
 * Durability, once the SCP has the dataset in an fsynced temporary file:
 *   1. the study, series and SOP instance UIDs must be valid UIDs (digits
 *      and dots, at most 64 characters): they are the only things a path
 *      is built from — never other tag text;
 *   2. instances/STUDY/SERIES/ is created, and the parent of each of
 *      the two folders fsynced — also when mkdir finds the folder there
 *      already, unless this process has fsynced that parent before (the
 *      durable-folder table, service.h): a racing association may have
 *      created it and not yet fsynced, or a crashed predecessor may have
 *      left it only in the page cache. A known series folder costs one
 *      table lookup;
 *   3. the file is renamed to SOP.dcm there and the folder fsynced;
 *   4. the instance row (and its series) is committed, in a group commit
 *      with the other associations' rows and without a WAL fsync of its
 *      own (synchronous=NORMAL for instance rows only, see store.c).
 * Only then is success answered. A failure at 2-4 answers 0xA700 and
 * leaves no file that the database does not know.
 *
 * What that guarantees. The fsynced file in its fsynced folder is the
 * durable record of an acknowledged instance; the row is an index of it.
 *   - Process crash (kill -9, OOM, abort) at any moment: nothing
 *     acknowledged is lost; the committed rows survive (the WAL is in the
 *     page cache). A crash between the rename and the commit leaves a
 *     complete, checked file that was never acknowledged: reconcile.c
 *     gives it its row at the next start (the sender's resend is then a
 *     duplicate, stored once).
 *   - Power loss or kernel crash: every acknowledged file is on disk; the
 *     rows of the last instances may be lost with the WAL's unflushed
 *     tail (never a row whose series has a finished job: job commits stay
 *     synchronous=FULL and flush the WAL before them). reconcile.c gives
 *     those files their rows back at start-up, before the SCP listens.
 *     This rests on the disk honouring flushes (no volatile write cache
 *     that lies).
 * So each acknowledgement costs two flushes (file, folder) on the
 * association's thread, plus a share of a group commit that no longer
 * waits for the disk.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "ctphase/error.h"
#include "ctphase/util.h"
#include "service/log.h"
#include "service/service.h"

static const char *const ct_classes[] = {
    "1.2.840.10008.5.1.4.1.1.2",      /* CT Image Storage */
    "1.2.840.10008.5.1.4.1.1.2.1",    /* Enhanced CT Image Storage */
    "1.2.840.10008.5.1.4.1.1.2.2",    /* Legacy Converted Enhanced CT */
};

static int is_ct_class(const char *uid) {
  for (size_t i = 0; i < sizeof ct_classes / sizeof *ct_classes; i++)
    if (strcmp(uid, ct_classes[i]) == 0) return 1;
  return 0;
}

int receive_free_bytes(const char *path, uint64_t *free_bytes) {
  struct statvfs v;
  if (statvfs(path, &v) != 0)
    return ctp_seterr(CTP_EIO, "statvfs %s: %s", path, strerror(errno));
  *free_bytes = (uint64_t)v.f_bavail * (uint64_t)v.f_frsize;
  return 0;
}

int receive_fsync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -1;
  int rc = fsync(fd);
  int e = errno;
  close(fd);
  errno = e;
  return rc;
}

/* ------------------------------------------------------------------ */
/* Durable folders                                                      */
/* ------------------------------------------------------------------ */

void receive_dirs_init(svc *s) {
  pthread_rwlockattr_t a;
  pthread_rwlockattr_init(&a);
  /* Retention's rmdir must not wait behind a stream of stores. */
  pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init(&s->dirs.lock, &a);
  pthread_rwlockattr_destroy(&a);
  pthread_mutex_init(&s->dirs.mu, NULL);
}

static char *dirs_slot(svc *s, const char *key) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (const unsigned char *p = (const unsigned char *)key; *p; p++)
    h = (h ^ *p) * 16777619u;
  return s->dirs.key[h % SVC_DIRS_SLOTS];
}

static int dirs_known(svc *s, const char *key) {
  pthread_mutex_lock(&s->dirs.mu);
  int known = strcmp(dirs_slot(s, key), key) == 0;
  pthread_mutex_unlock(&s->dirs.mu);
  return known;
}

static void dirs_set(svc *s, const char *key, int durable) {
  pthread_mutex_lock(&s->dirs.mu);
  char *slot = dirs_slot(s, key);
  if (durable) snprintf(slot, SVC_DIR_KEY, "%s", key);
  else if (strcmp(slot, key) == 0) slot[0] = 0;
  pthread_mutex_unlock(&s->dirs.mu);
}

int receive_rmdir(svc *s, const char *key) {
  char dir[1400];
  snprintf(dir, sizeof dir, "%s/instances/%s", s->data_dir, key);
  pthread_rwlock_wrlock(&s->dirs.lock);
  int rc = rmdir(dir);
  int e = errno;
  if (rc == 0) dirs_set(s, key, 0);
  pthread_rwlock_unlock(&s->dirs.lock);
  errno = e;
  return rc;
}

/* Makes data_dir/instances/key exist with its entry durable in parent.
 * The parent is fsynced also when the folder was there already: another
 * association may have created it and not yet fsynced its parent, or a
 * crashed predecessor may have left it only in the page cache. */
static int dir_make_durable(svc *s, const char *key, const char *parent) {
  if (dirs_known(s, key)) return 0;
  char dir[1400];
  snprintf(dir, sizeof dir, "%s/instances/%s", s->data_dir, key);
  if (mkdir(dir, 0750) != 0 && errno != EEXIST) return -1;
  if (receive_fsync_dir(parent) != 0) return -1;
  dirs_set(s, key, 1);
  return 0;
}

/* Makes instances/STUDY/SERIES of rel (instances/STUDY/SERIES/SOP.dcm)
 * exist, durably. The caller holds s->dirs.lock for reading. A series
 * already in the table costs one lookup. */
static int make_dirs(svc *s, const char *rel) {
  const char *key = rel + strlen("instances/");
  const char *study_end = strchr(key, '/'), *series_end = strrchr(key, '/');
  char study[SVC_DIR_KEY], series[SVC_DIR_KEY], parent[1400];
  snprintf(study, sizeof study, "%.*s", (int)(study_end - key), key);
  snprintf(series, sizeof series, "%.*s", (int)(series_end - key), key);
  if (dirs_known(s, series)) return 0;
  snprintf(parent, sizeof parent, "%s/instances", s->data_dir);
  if (dir_make_durable(s, study, parent) != 0) return -1;
  snprintf(parent, sizeof parent, "%s/instances/%s", s->data_dir, study);
  return dir_make_durable(s, series, parent);
}

/* Forgets the folders of rel, after a rename found them missing (removed
 * behind our back). */
static void dirs_forget(svc *s, const char *rel) {
  const char *key = rel + strlen("instances/");
  char k[SVC_DIR_KEY];
  snprintf(k, sizeof k, "%.*s", (int)(strrchr(key, '/') - key), key);
  dirs_set(s, k, 0);
  snprintf(k, sizeof k, "%.*s", (int)(strchr(key, '/') - key), key);
  dirs_set(s, k, 0);
}

/* ------------------------------------------------------------------ */
/* Callbacks                                                            */
/* ------------------------------------------------------------------ */

static int on_associate(void *ud, const ctp_scp_assoc *a) {
  svc *s = ud;
  svc_config *cfg = svc_cfg(s);
  int verdict = CTP_SCP_ACCEPT;
  if (cfg->allowed_peers.n > 0) {
    int ok = 0;
    for (int i = 0; i < cfg->allowed_peers.n && !ok; i++)
      ok = config_addr_match(cfg->allowed_peers.v[i], a->peer);
    if (!ok) verdict = CTP_SCP_REJECT_PEER;
  }
  if (verdict == CTP_SCP_ACCEPT && cfg->allowed_calling_ae.n > 0 &&
      !config_list_has(&cfg->allowed_calling_ae, a->calling_ae))
    verdict = CTP_SCP_REJECT_CALLING_AE;
  if (verdict == CTP_SCP_ACCEPT)
    LOG(LOG_INFO, "assoc_open", LF_INT("assoc", a->id),
        LF_STR("calling_ae", a->calling_ae), LF_STR("called_ae", a->called_ae),
        LF_STR("peer", a->peer));
  return verdict;
}

static void on_close(void *ud, const ctp_scp_assoc *a,
                     const ctp_scp_assoc_stats *st) {
  svc *s = ud;
  metrics_inc(&s->metrics.echoes, st->echoes);
  metrics_inc(&s->metrics.instances_failed, st->stores_failed);
  if (st->verdict != CTP_SCP_ACCEPT) {
    metrics_inc(&s->metrics.assoc_rejected, 1);
    LOG(LOG_WARN, "assoc_rejected", LF_INT("assoc", a->id),
        LF_STR("calling_ae", a->calling_ae), LF_STR("called_ae", a->called_ae),
        LF_STR("peer", a->peer), LF_STR("reason", ctp_scp_verdict_str(st->verdict)));
    return;
  }
  metrics_inc(&s->metrics.assoc_accepted, 1);
  LOG(LOG_INFO, "assoc_closed", LF_INT("assoc", a->id),
      LF_STR("calling_ae", a->calling_ae), LF_STR("peer", a->peer),
      LF_STR("end", st->end), LF_INT("stored", st->stores_ok),
      LF_INT("failed", st->stores_failed), LF_INT("echoes", st->echoes),
      LF_INT("bytes", st->bytes), LF_NUM("seconds", st->seconds));
}

static void on_log(void *ud, int level, const char *event,
                   const ctp_scp_assoc *a, const char *msg) {
  (void)ud;
  if (a)
    LOG(level, event, LF_INT("assoc", a->id), LF_STR("calling_ae", a->calling_ae),
        LF_STR("peer", a->peer), LF_STR("msg", msg));
  else
    LOG(level, event, LF_STR("msg", msg));
}

static unsigned on_store_begin(void *ud, const ctp_scp_assoc *a,
                               const char *sop_class, const char *sop_uid) {
  svc *s = ud;
  svc_config *cfg = svc_cfg(s);
  if (!is_ct_class(sop_class)) {
    int drop = strcmp(cfg->non_ct, "drop") == 0;
    LOG(drop ? LOG_DEBUG : LOG_WARN, drop ? "instance_dropped" : "store_refused",
        LF_INT("assoc", a->id), LF_STR("sop_class_uid", sop_class),
        LF_STR("reason", "not a CT image"));
    if (drop) metrics_inc(&s->metrics.instances_dropped, 1);
    return drop ? CTP_SCP_DROP : CTP_DIMSE_SOP_CLASS_NOT_SUPPORTED;
  }
  int present = 0;
  if (ctp_uid_valid(sop_uid) &&
      ctp_store_instance_present(s->store, sop_uid, &present) == 0 && present) {
    metrics_inc(&s->metrics.instances_duplicate, 1);
    LOG(LOG_INFO, "instance_duplicate", LF_INT("assoc", a->id),
        LF_STR("sop_instance_uid", sop_uid));
    return CTP_SCP_DROP;
  }
  uint64_t free_bytes = 0;
  if (receive_free_bytes(s->data_dir, &free_bytes) != 0 ||
      free_bytes < (uint64_t)cfg->min_free_bytes) {
    metrics_inc(&s->metrics.disk_refusals, 1);
    LOG(LOG_WARN, "store_refused", LF_INT("assoc", a->id),
        LF_STR("reason", "disk below the watermark"),
        LF_INT("free_bytes", free_bytes), LF_INT("min_free_bytes", cfg->min_free_bytes),
        LF_STR("status", "0xA700"));
    return CTP_DIMSE_OUT_OF_RESOURCES;
  }
  return 0;
}

/* Names the first invalid UID (never its value: it may be any text). */
static const char *invalid_uid(const ctp_scp_instance *in) {
  if (!ctp_uid_valid(in->sop_instance_uid)) return "SOPInstanceUID";
  if (!ctp_uid_valid(in->series_instance_uid)) return "SeriesInstanceUID";
  if (!ctp_uid_valid(in->study_instance_uid)) return "StudyInstanceUID";
  return NULL;
}

/* Removes a file we moved into place, unless the database knows it (a
 * concurrent copy of the same instance may have been committed). */
static void unlink_unknown(svc *s, const char *abs, const char *sop_uid) {
  int present = 0;
  if (ctp_store_instance_present(s->store, sop_uid, &present) == 0 && present)
    return;
  unlink(abs);
}

/* Failure injection, for tests only: CTPHASED_FAIL_AFTER=N in the
 * environment makes the Nth durable step of keep() (mkdir, rename, folder
 * fsync, commit, counted over all instances) fail as if with EIO, once.
 * 0 (unset) never fails. */
static atomic_long fail_countdown;

static int injected(void) {
  if (atomic_load(&fail_countdown) <= 0) return 0;
  if (atomic_fetch_sub(&fail_countdown, 1) != 1) return 0;
  errno = EIO;
  return 1;
}

/* Makes the folders of rel and renames the temporary file to abs: 0, or
 * -1 with errno and *step set. Holds s->dirs.lock for reading throughout,
 * so that retention cannot remove a folder between its lookup and the
 * rename (after the rename the folder is not empty). */
static int place(svc *s, const ctp_scp_instance *in, const char *rel, const char *abs,
                 const char **step) {
  pthread_rwlock_rdlock(&s->dirs.lock);
  *step = "mkdir";
  int rc = injected() || make_dirs(s, rel) != 0 ? -1 : 0;
  if (rc == 0) {
    *step = "rename";
    rc = injected() ? -1 : rename(in->tmp_path, abs);
    if (rc != 0 && errno == ENOENT && access(in->tmp_path, F_OK) == 0) {
      /* A folder was removed by someone else: make it again, once. */
      LOG(LOG_WARN, "store_folder_missing", LF_INT("assoc", in->assoc->id),
          LF_STR("path", rel), LF_STR("why", "removed outside ctphased; made again"));
      dirs_forget(s, rel);
      *step = "mkdir";
      rc = make_dirs(s, rel);
      if (rc == 0) {
        *step = "rename";
        rc = rename(in->tmp_path, abs);
      }
    }
  }
  int e = errno;
  pthread_rwlock_unlock(&s->dirs.lock);
  errno = e;
  return rc;
}

/* Moves the file into place and commits its row: 0, or -1 (logged). */
static int keep(svc *s, const ctp_scp_instance *in, const char *rel, int *added) {
  char abs[2048], dir[2048];
  snprintf(abs, sizeof abs, "%s/%s", s->data_dir, rel);
  snprintf(dir, sizeof dir, "%s", abs);
  *strrchr(dir, '/') = 0;
  const char *step = "mkdir";
  if (place(s, in, rel, abs, &step) != 0) goto fail;
  step = "fsync";
  if (injected() || receive_fsync_dir(dir) != 0) {
    int e = errno;
    unlink_unknown(s, abs, in->sop_instance_uid);
    errno = e;
    goto fail;
  }
  ctp_store_instance row = {
      in->sop_instance_uid, in->sop_class_uid, in->study_instance_uid,
      in->series_instance_uid, in->transfer_syntax, rel, in->assoc->calling_ae,
      in->bytes, in->assoc->id, ctp_wall_now()};
  int rc = injected() ? ctp_seterr(CTP_EIO, "injected failure (CTPHASED_FAIL_AFTER)")
                      : ctp_store_instance_add(s->store, &row, added);
  if (rc != 0) {
    LOG(LOG_ERROR, "store_failed", LF_INT("assoc", in->assoc->id),
        LF_STR("step", "commit"), LF_STR("error", ctp_last_error()));
    unlink_unknown(s, abs, in->sop_instance_uid);
    return -1;
  }
  return 0;
fail:
  LOG(LOG_ERROR, "store_failed", LF_INT("assoc", in->assoc->id),
      LF_STR("step", step), LF_STR("path", rel), LF_STR("error", strerror(errno)));
  return -1;
}

static unsigned on_store(void *ud, const ctp_scp_instance *in) {
  svc *s = ud;
  double t0 = ctp_now();
  const char *bad = invalid_uid(in);
  char rel[512];
  if (bad || ctp_instance_path(in->study_instance_uid, in->series_instance_uid,
                                   in->sop_instance_uid, rel, sizeof rel) != 0) {
    LOG(LOG_WARN, "store_refused", LF_INT("assoc", in->assoc->id),
        LF_STR("reason", "invalid UID"), LF_STR("tag", bad ? bad : "path"),
        LF_STR("status", "0xA900"));
    return CTP_DIMSE_DATASET_MISMATCH;
  }
  int added = 0;
  if (keep(s, in, rel, &added) != 0) {
    metrics_inc(&s->metrics.disk_refusals, 1);
    return CTP_DIMSE_OUT_OF_RESOURCES;
  }
  double dt = ctp_now() - t0 + in->write_seconds;
  if (added) {
    metrics_inc(&s->metrics.instances_received, 1);
    metrics_inc(&s->metrics.bytes_received, in->bytes);
  } else {
    metrics_inc(&s->metrics.instances_duplicate, 1);
  }
  metrics_observe(&s->metrics.store_seconds, dt);
  LOG(LOG_DEBUG, added ? "instance_stored" : "instance_duplicate",
      LF_INT("assoc", in->assoc->id), LF_STR("study_uid", in->study_instance_uid),
      LF_STR("series_uid", in->series_instance_uid),
      LF_STR("sop_instance_uid", in->sop_instance_uid), LF_INT("bytes", in->bytes),
      LF_NUM("receive_ms", in->receive_seconds * 1e3),
      LF_NUM("file_fsync_ms", in->write_seconds * 1e3),
      LF_NUM("keep_ms", (ctp_now() - t0) * 1e3), LF_NUM("store_ms", dt * 1e3));
  return CTP_DIMSE_SUCCESS;
}

void receive_callbacks(svc *s, ctp_scp_callbacks *cb) {
  const char *fail = getenv("CTPHASED_FAIL_AFTER");
  if (fail && atol(fail) > 0) {
    atomic_store(&fail_countdown, atol(fail));
    LOG(LOG_WARN, "failure_injection", LF_INT("fail_after", atol(fail)),
        LF_STR("why", "CTPHASED_FAIL_AFTER is set (tests only)"));
  }
  memset(cb, 0, sizeof *cb);
  cb->ud = s;
  cb->on_associate = on_associate;
  cb->on_store_begin = on_store_begin;
  cb->on_store = on_store;
  cb->on_close = on_close;
  cb->on_log = on_log;
}
