/*
 * cmd_scan.c — `ctphase scan`: the phase of every series under a folder
 * tree, one CSV row per series acquisition, for sorting a collection.
 *
 * Threads: --jobs workers each own a predictor (with cores/jobs inference
 * threads) and take the next series from a shared counter. Rows are
 * written under a mutex and flushed one by one, so the CSV is valid at any
 * moment; Ctrl-C (SIGINT) or SIGTERM lets the running series finish and
 * stops there. A bad file or series is a row with its error; the scan goes
 * on.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "ctphase/error.h"
#include "ctphase/predict.h"
#include "ctphase/util.h"

static const char *help_scan =
    "usage: ctphase scan ROOT... --csv OUT [--model FILE] [--jobs N]\n"
    "                    [--margin M] [--threads N]\n"
    "\n"
    "Walks ROOT (recursively), predicts every series and acquisition, and\n"
    "writes one CSV row each: UIDs, description, slices used and skipped,\n"
    "phase, vote shares, margin, indeterminate, error. Unreadable files get\n"
    "a row with their error. A progress bar is shown on a terminal.\n"
    "Interrupting (Ctrl-C) leaves a valid CSV of what was done.\n"
    "\n"
    "  --jobs N     series predicted at once (default 1); the cores are\n"
    "               shared among them\n";

static atomic_int stop_requested;

static void on_signal(int sig) {
  (void)sig;
  atomic_store(&stop_requested, 1);
}

typedef struct {
  const ctp_scan *scan;
  const ctp_model *m;
  ctp_predict_opts opts;
  FILE *csv;
  pthread_mutex_t lock;
  atomic_int next;
  int nseries, done, rows, errors, tty;
  double t0;
} scan_ctx;

/* Writes a CSV field, quoted when it holds a comma, quote or newline. */
static void csv_field(FILE *f, const char *s, int last) {
  if (strpbrk(s, ",\"\r\n")) {
    fputc('"', f);
    for (; *s; s++) {
      if (*s == '"') fputc('"', f);
      fputc(*s, f);
    }
    fputc('"', f);
  } else {
    fputs(s, f);
  }
  fputc(last ? '\n' : ',', f);
}

static const char *csv_columns[] = {
    "study_instance_uid", "series_instance_uid", "series_number",
    "series_description", "acquisition_number", "path", "slices_used",
    "slices_skipped", "phase", "winner", "winner_share", "margin",
    "indeterminate", "share_noncon", "share_cm", "share_cmneph",
    "share_neph", "share_pyelo", "error"};
#define NCOLS (sizeof csv_columns / sizeof csv_columns[0])

static void write_row(scan_ctx *c, const ctp_result *r, const char *path) {
  char f[NCOLS][64];
  const char *v[NCOLS];
  const ctp_slice *ref = r->series ? ctp_series_ref(r->series) : NULL;
  v[0] = ref ? ref->study_instance_uid : "";
  v[1] = r->series ? ctp_series_uid(r->series) : "";
  snprintf(f[2], 64, "%d", ref ? ref->series_number : -1);
  v[2] = f[2];
  v[3] = ref ? ref->series_description : "";
  snprintf(f[4], 64, "%d", r->acq ? ctp_acquisition_number(r->acq) : -1);
  v[4] = f[4];
  v[5] = path;
  snprintf(f[6], 64, "%d", r->err ? 0 : r->nslices);
  v[6] = f[6];
  snprintf(f[7], 64, "%d", r->nskipped);
  v[7] = f[7];
  int ok = r->err == 0;
  v[8] = ok ? ctp_phase_name(r->vote.phase) : "error";
  v[9] = ok ? ctp_class_name(r->vote.winner) : "";
  snprintf(f[10], 64, "%.4f", ok ? r->vote.share[r->vote.winner] : 0.0f);
  v[10] = ok ? f[10] : "";
  snprintf(f[11], 64, "%.4f", r->vote.margin);
  v[11] = ok ? f[11] : "";
  v[12] = ok ? (r->vote.phase == CTP_PHASE_INDETERMINATE ? "1" : "0") : "";
  for (int k = 0; k < CTP_NUM_CLASSES; k++) {
    snprintf(f[13 + k], 64, "%.4f", r->vote.share[k]);
    v[13 + k] = ok ? f[13 + k] : "";
  }
  v[18] = ok ? "" : r->error;
  for (size_t i = 0; i < NCOLS; i++) csv_field(c->csv, v[i], i + 1 == NCOLS);
  fflush(c->csv);
  c->rows++;
  c->errors += !ok;
}

static void progress(scan_ctx *c) {
  double el = ctp_now() - c->t0;
  double eta = c->done ? el / c->done * (c->nseries - c->done) : 0;
  if (c->tty) {
    int w = 30, n = c->nseries ? c->done * w / c->nseries : w;
    fprintf(stderr, "\r[");
    for (int i = 0; i < w; i++) fputc(i < n ? '#' : ' ', stderr);
    fprintf(stderr, "] %d/%d series, %d errors, ETA %.0f s ", c->done,
            c->nseries, c->errors, eta);
  } else {
    fprintf(stderr, "scan: %d/%d series, %d errors, ETA %.0f s\n", c->done,
            c->nseries, c->errors, eta);
  }
}

static void *worker(void *arg) {
  scan_ctx *c = arg;
  ctp_predictor *p;
  if (ctp_predictor_new(&p, c->m, &c->opts)) {
    fprintf(stderr, "ctphase: %s\n", ctp_last_error());
    return NULL;
  }
  for (;;) {
    if (atomic_load(&stop_requested)) break;
    int s = atomic_fetch_add(&c->next, 1);
    if (s >= c->nseries) break;
    const ctp_series *se = ctp_scan_series(c->scan, s);
    const ctp_slice *ref = ctp_series_ref(se);
    char dir[1024] = "";
    if (ref) {
      snprintf(dir, sizeof dir, "%s", ref->path);
      char *slash = strrchr(dir, '/');
      if (slash) *slash = 0;
    }
    int nacq = ctp_series_num_acquisitions(se);
    for (int k = 0; k < (nacq ? nacq : 1); k++) {
      ctp_result r;
      ctp_predictor_run(p, se, nacq ? ctp_series_acquisition(se, k) : NULL, &r);
      pthread_mutex_lock(&c->lock);
      write_row(c, &r, dir);
      pthread_mutex_unlock(&c->lock);
      ctp_result_free(&r);
    }
    pthread_mutex_lock(&c->lock);
    c->done++;
    progress(c);
    pthread_mutex_unlock(&c->lock);
  }
  ctp_predictor_free(p);
  return NULL;
}

int cmd_scan(int argc, char **argv) {
  cli_args a = {argc, argv, 1, NULL};
  const char *model_path = NULL, *csv_path = NULL;
  const char **roots = calloc((size_t)argc, sizeof *roots);
  int nroots = 0, jobs = 1, status = 1;
  scan_ctx c;
  memset(&c, 0, sizeof c);
  ctp_predict_opts_default(&c.opts);
  while (a.i < a.argc) {
    if (cli_opt(&a, "--help", 0)) { free(roots); return cli_usage(help_scan, NULL); }
    else if (cli_opt(&a, "--model", 1)) model_path = a.arg;
    else if (cli_opt(&a, "--csv", 1)) csv_path = a.arg;
    else if (cli_opt(&a, "--jobs", 1)) jobs = atoi(a.arg);
    else if (cli_opt(&a, "--margin", 1)) c.opts.margin = (float)atof(a.arg);
    else if (cli_opt(&a, "--threads", 1)) c.opts.threads = atoi(a.arg);
    else if (a.argv[a.i][0] != '-') roots[nroots++] = a.argv[a.i++];
    else { free(roots); return cli_usage(help_scan, a.argv[a.i]); }
  }
  if (!nroots || !csv_path) {
    free(roots);
    return cli_usage(help_scan, "(ROOT and --csv are required)");
  }
  if (jobs < 1) jobs = 1;
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  if (c.opts.threads <= 0) c.opts.threads = cores > jobs ? (int)(cores / jobs) : 1;
  ctp_model *m = NULL;
  ctp_scan *scan = NULL;
  if (cli_load_model(model_path, &m)) goto done;
  /* From here on, an interrupt stops the scan cleanly. */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  c.tty = isatty(2);
  if (c.tty) fprintf(stderr, "reading headers under %d path(s)...\n", nroots);
  int r = ctp_dicom_scan(roots, nroots, &scan);
  if (r) { cli_fail("cannot read input", r); goto done; }
  c.csv = fopen(csv_path, "w");
  if (!c.csv) { perror(csv_path); goto done; }
  for (size_t i = 0; i < NCOLS; i++) csv_field(c.csv, csv_columns[i], i + 1 == NCOLS);
  c.scan = scan;
  c.m = m;
  c.nseries = ctp_scan_num_series(scan);
  c.t0 = ctp_now();
  pthread_mutex_init(&c.lock, NULL);
  /* Files that belong to no series are error rows of their own. */
  for (int i = 0; i < ctp_scan_num_files(scan); i++) {
    const ctp_slice *f = ctp_scan_file(scan, i);
    if (f->status != CTP_SLICE_ERROR || f->series_instance_uid[0]) continue;
    ctp_result er;
    memset(&er, 0, sizeof er);
    er.err = f->err ? f->err : CTP_EDICOM;
    snprintf(er.error, sizeof er.error, "%s", f->reason);
    write_row(&c, &er, f->path);
  }
  pthread_t *th = calloc((size_t)jobs, sizeof *th);
  for (int j = 0; j < jobs; j++) pthread_create(&th[j], NULL, worker, &c);
  for (int j = 0; j < jobs; j++) pthread_join(th[j], NULL);
  free(th);
  if (c.tty) fputc('\n', stderr);
  fclose(c.csv);
  pthread_mutex_destroy(&c.lock);
  fprintf(stderr, "scan: %d series, %d rows, %d errors -> %s%s\n", c.done,
          c.rows, c.errors, csv_path,
          atomic_load(&stop_requested) ? " (interrupted)" : "");
  status = atomic_load(&stop_requested) ? 130 : 0;
done:
  ctp_scan_free(scan);
  ctp_model_free(m);
  free(roots);
  return status;
}
