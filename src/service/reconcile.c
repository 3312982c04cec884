/*
 * reconcile.c — start-up reconciliation of the received files with the
 * database: every instance file that has no row gets one.
 *
 * Why: an instance is acknowledged once its file is fsynced in its series
 * folder and the folder fsynced; its row is then committed without a WAL
 * fsync of its own (synchronous=NORMAL, see store.c), so the file is the
 * durable record. A power loss can therefore leave acknowledged files whose
 * rows were still only in the page cache; a process crash (kill -9) cannot
 * (the WAL survives in the page cache), but a crash between the rename and
 * the commit leaves a complete, checked file that was never acknowledged.
 * Both are given their row here, read back from the file (so a later
 * resend of the same instance is a duplicate, stored once), and their
 * series resumes its stability countdown from the file's modification
 * time.
 *
 * Runs once, on the main thread, after the store is open and before the
 * SCP accepts associations; nothing else touches instances/ then. A file
 * whose name or contents do not match its place (not something ctphased
 * wrote) is logged and left alone, never deleted. The cost is one
 * readdir per series folder and one indexed lookup per file; retention
 * keeps the number of files bounded.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "ctphase/error.h"
#include "ctphase/util.h"
#include "service/log.h"
#include "service/service.h"

typedef struct {
  int checked, adopted, foreign, failed;
} reconcile_counts;

/* Gives data_dir/rel (instances/STUDY/SERIES/SOP.dcm) a row if it has
 * none. */
static void reconcile_file(svc *s, const char *study, const char *series,
                           const char *sop, reconcile_counts *n) {
  char rel[512], abs[2048];
  if (ctp_instance_path(study, series, sop, rel, sizeof rel) != 0) {
    n->foreign++;
    return;
  }
  n->checked++;
  int present = 0;
  if (ctp_store_instance_present(s->store, sop, &present) != 0) {
    n->failed++;
    return;
  }
  if (present) return;
  snprintf(abs, sizeof abs, "%s/%s", s->data_dir, rel);
  struct stat sb;
  ctp_scp_file_info fi;
  if (stat(abs, &sb) != 0 || ctp_scp_file_read(abs, &fi) != 0 ||
      strcmp(fi.sop_instance_uid, sop) != 0 ||
      strcmp(fi.series_instance_uid, series) != 0 ||
      strcmp(fi.study_instance_uid, study) != 0) {
    n->foreign++;
    LOG(LOG_WARN, "reconcile_foreign_file", LF_STR("path", rel),
        LF_STR("why", "unreadable, or its UIDs do not match its path; left alone"));
    return;
  }
  ctp_store_instance row = {
      fi.sop_instance_uid, fi.sop_class_uid, fi.study_instance_uid,
      fi.series_instance_uid, fi.transfer_syntax, rel, fi.source_ae,
      (uint64_t)sb.st_size, 0,
      (double)sb.st_mtim.tv_sec + 1e-9 * (double)sb.st_mtim.tv_nsec};
  int added = 0;
  if (ctp_store_instance_add(s->store, &row, &added) != 0) {
    n->failed++;
    LOG(LOG_ERROR, "reconcile_failed", LF_STR("path", rel),
        LF_STR("error", ctp_last_error()));
    return;
  }
  if (added) {
    n->adopted++;
    LOG(LOG_WARN, "instance_reconciled", LF_STR("study_uid", study),
        LF_STR("series_uid", series), LF_STR("sop_instance_uid", sop),
        LF_STR("why", "file without a database row (crash or power loss)"));
  }
}

/* Calls fn for every entry name of dir except "." and "..". */
static int each_entry(const char *dir, void (*fn)(void *, const char *), void *ud) {
  DIR *d = opendir(dir);
  if (!d) return errno == ENOENT ? 0 : -1;
  for (struct dirent *e; (e = readdir(d));)
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) fn(ud, e->d_name);
  closedir(d);
  return 0;
}

typedef struct {
  svc *s;
  reconcile_counts *n;
  const char *study, *series;
  char dir[1400];
} walk;

static void on_file(void *ud, const char *name) {
  walk *w = ud;
  size_t len = strlen(name);
  char sop[80];
  if (len < 5 || len - 4 >= sizeof sop || strcmp(name + len - 4, ".dcm") != 0) {
    w->n->foreign++;
    return;
  }
  memcpy(sop, name, len - 4);
  sop[len - 4] = 0;
  reconcile_file(w->s, w->study, w->series, sop, w->n);
}

static void on_series(void *ud, const char *name) {
  walk *w = ud, f = *w;
  f.series = name;
  if (snprintf(f.dir, sizeof f.dir, "%s/%s", w->dir, name) >= (int)sizeof f.dir) {
    w->n->foreign++;
    return;
  }
  if (each_entry(f.dir, on_file, &f) != 0) w->n->failed++;
}

static void on_study(void *ud, const char *name) {
  walk *w = ud, f = *w;
  f.study = name;
  if (snprintf(f.dir, sizeof f.dir, "%s/%s", w->dir, name) >= (int)sizeof f.dir) {
    w->n->foreign++;
    return;
  }
  if (each_entry(f.dir, on_series, &f) != 0) w->n->failed++;
}

int receive_reconcile(svc *s) {
  reconcile_counts n = {0, 0, 0, 0};
  walk w = {s, &n, NULL, NULL, ""};
  double t0 = ctp_now();
  snprintf(w.dir, sizeof w.dir, "%s/instances", s->data_dir);
  if (each_entry(w.dir, on_study, &w) != 0)
    return ctp_seterr(CTP_EIO, "cannot read %s: %s", w.dir, strerror(errno));
  LOG(n.adopted || n.foreign || n.failed ? LOG_WARN : LOG_INFO, "reconciled",
      LF_INT("files", n.checked), LF_INT("rows_added", n.adopted),
      LF_INT("foreign", n.foreign), LF_INT("failed", n.failed),
      LF_NUM("seconds", ctp_now() - t0));
  return n.failed ? ctp_seterr(CTP_EIO, "reconciliation failed for %d files", n.failed)
                  : 0;
}
