/*
 * main.c — ctphased: the DICOM service that tells which contrast phase a
 * CT series was acquired in.
 *
 * Start-up, in order: configuration (file, then command-line overrides,
 * then validation), the model, the data dir (locked against a second
 * daemon, its temporary folder emptied of half-received datasets), the
 * database (migrated; jobs left running by a crash re-queued), one
 * predictor per worker, then the libuv loop with its signals, the SCP, the
 * admin HTTP server and the scheduler. The service state (service.h) then
 * goes STARTING -> RUNNING.
 *
 * Signals, handled on the loop:
 *   SIGHUP   reopen the log file; reload the configuration file (keys
 *            marked reloadable take effect, others are reported as
 *            needing a restart);
 *   SIGTERM, SIGINT
 *            RUNNING -> DRAINING: stop accepting associations and
 *            starting jobs; when no association and no job is left, exit.
 *            After shutdown_grace_seconds (or a second signal) the jobs
 *            still running are re-queued in the database, associations
 *            are aborted, and the process exits at once.
 *
 * Exit status: 0 after a shutdown, 1 when start-up fails, 2 for bad usage,
 * 78 (EX_CONFIG) for a bad configuration.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <dirent.h>
#include <unistd.h>

#include "ctphase/error.h"
#include "ctphase/util.h"
#include "service/log.h"
#include "service/service.h"

#ifndef CTPHASE_DEFAULT_MODEL
#define CTPHASE_DEFAULT_MODEL "models/ctphase-phantom-v1.safetensors"
#endif

#define EXIT_CONFIG 78

static const char *usage =
    "usage: ctphased [--config FILE] [--port N] [--aet TITLE] [--data-dir DIR]\n"
    "                [--log-level LEVEL] [--set KEY=VALUE]... [--foreground]\n"
    "       ctphased --check-config [same options]\n"
    "       ctphased --print-schema\n"
    "\n"
    "The ctphase DICOM service: receives CT series by C-STORE, waits until a\n"
    "series is stable, predicts its contrast phase, and keeps the results in\n"
    "DATA_DIR/ctphased.db (see docs/operations.md).\n"
    "\n"
    "  --config FILE     JSON configuration (schemas/config.schema.json)\n"
    "  --port N          DICOM port (key port)\n"
    "  --aet TITLE       our AE title (key ae_title)\n"
    "  --data-dir DIR    database, instances, temporary files (key data_dir)\n"
    "  --log-level L     debug, info, warn or error (key log_level)\n"
    "  --set KEY=VALUE   any configuration key (JSON value or plain text)\n"
    "  --foreground      stay in the foreground (systemd); otherwise detach\n"
    "  --check-config    validate, print the effective configuration, exit\n"
    "  --print-schema    print the configuration's JSON Schema, exit\n";

static const char *const state_names[] = {"starting", "running", "draining",
                                          "stopped"};

const char *svc_state_name(int st) {
  return st >= 0 && st <= SVC_STOPPED ? state_names[st] : "unknown";
}

void svc_set_state(svc *s, svc_state to, const char *why) {
  int from = atomic_load(&s->state);
  int ok = (from == SVC_STARTING && to == SVC_RUNNING) ||
           (from == SVC_RUNNING && to == SVC_DRAINING) ||
           (from != SVC_STOPPED && to == SVC_STOPPED);
  if (!ok) {
    LOG(LOG_ERROR, "service_state_refused", LF_STR("from", svc_state_name(from)),
        LF_STR("to", svc_state_name(to)));
    return;
  }
  atomic_store(&s->state, (int)to);
  LOG(LOG_INFO, "service_state", LF_STR("from", svc_state_name(from)),
      LF_STR("to", svc_state_name(to)), LF_STR("why", why));
}

int svc_cfg_publish(svc *s, svc_config *cfg) {
  if (s->nconfigs >= SVC_MAX_CONFIGS)
    return ctp_seterr(CTP_ENOMEM, "too many reloads: restart the daemon");
  s->configs[s->nconfigs++] = cfg;
  atomic_store(&s->cfg, cfg);
  return 0;
}

/* ------------------------------------------------------------------ */
/* Configuration                                                        */
/* ------------------------------------------------------------------ */

/* Builds a configuration from the file and the overrides. */
static int config_build(svc_config *cfg, const char *path, char **overrides, int n) {
  int rc = config_init(cfg);
  if (!rc && path) rc = config_load_file(cfg, path);
  for (int i = 0; !rc && i < n; i++) {
    char *eq = strchr(overrides[i], '=');
    char key[64];
    snprintf(key, sizeof key, "%.*s", (int)(eq - overrides[i]), overrides[i]);
    rc = config_set(cfg, key, eq + 1);
  }
  if (!rc) rc = config_validate(cfg);
  if (rc) config_free(cfg);
  return rc;
}

typedef struct {
  const char *config_path;
  char **overrides;
  int noverrides;
  int foreground, check, schema;
} options;

static int add_override(options *o, const char *key, const char *value) {
  size_t len = strlen(key) + strlen(value) + 2;
  char *kv = malloc(len);
  if (!kv) return -1;
  snprintf(kv, len, "%s=%s", key, value);
  o->overrides[o->noverrides++] = kv;
  return 0;
}

/* Parses argv; returns -1 to exit with status *status. */
static int parse_args(int argc, char **argv, options *o, int *status) {
  memset(o, 0, sizeof *o);
  o->overrides = calloc((size_t)argc + 1, sizeof *o->overrides);
  static const struct { const char *opt, *key; } keyed[] = {
      {"--port", "port"}, {"--aet", "ae_title"}, {"--data-dir", "data_dir"},
      {"--log-level", "log_level"}};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int matched = 0;
    for (size_t k = 0; k < sizeof keyed / sizeof *keyed && !matched; k++)
      if (strcmp(a, keyed[k].opt) == 0 && i + 1 < argc) {
        add_override(o, keyed[k].key, argv[++i]);
        matched = 1;
      }
    if (matched) continue;
    if (strcmp(a, "--config") == 0 && i + 1 < argc) o->config_path = argv[++i];
    else if (strcmp(a, "--set") == 0 && i + 1 < argc && strchr(argv[i + 1], '=')) {
      char *kv = strdup(argv[++i]);
      if (kv) o->overrides[o->noverrides++] = kv;
    } else if (strcmp(a, "--foreground") == 0) o->foreground = 1;
    else if (strcmp(a, "--check-config") == 0) o->check = 1;
    else if (strcmp(a, "--print-schema") == 0) o->schema = 1;
    else if (strcmp(a, "--version") == 0) {
      printf("ctphased %s\n", CTPHASE_VERSION);
      *status = 0;
      return -1;
    } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      fputs(usage, stdout);
      *status = 0;
      return -1;
    } else {
      fprintf(stderr, "ctphased: unexpected argument '%s'\n\n%s", a, usage);
      *status = 2;
      return -1;
    }
  }
  return 0;
}

static void options_free(options *o) {
  for (int i = 0; i < o->noverrides; i++) free(o->overrides[i]);
  free(o->overrides);
}

static const char *model_path(const svc_config *cfg) {
  if (cfg->model[0]) return cfg->model;
  if (access(CTPHASE_DEFAULT_MODEL, R_OK) == 0) return CTPHASE_DEFAULT_MODEL;
  return NULL;
}

/* ------------------------------------------------------------------ */
/* Start-up                                                             */
/* ------------------------------------------------------------------ */

/* Creates the data dir's folders, locks it, writes the pid file and
 * removes datasets left half-received by a crash. */
static int data_dir_open(svc *s) {
  char path[1400];
  snprintf(s->tmp_dir, sizeof s->tmp_dir, "%s/tmp", s->data_dir);
  snprintf(s->db_path, sizeof s->db_path, "%s/ctphased.db", s->data_dir);
  snprintf(path, sizeof path, "%s/instances", s->data_dir);
  int r;
  if ((r = ctp_mkdir_p(s->data_dir, 0750)) || (r = ctp_mkdir_p(s->tmp_dir, 0750)) ||
      (r = ctp_mkdir_p(path, 0750)))
    return r;
  /* instances/ (and the data dir, if new) must be durable before any
   * file in them is acknowledged; receive.c fsyncs from instances/ down.
   * The data dir's parent is best effort (it may not be ours to open). */
  if (receive_fsync_dir(s->data_dir) != 0)
    return ctp_seterr(CTP_EIO, "cannot fsync %s: %s", s->data_dir, strerror(errno));
  snprintf(path, sizeof path, "%s/..", s->data_dir);
  receive_fsync_dir(path);
  snprintf(path, sizeof path, "%s/ctphased.lock", s->data_dir);
  s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
  if (s->lock_fd < 0 || flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0)
    return ctp_seterr(CTP_ESTATE, "%s is in use by another ctphased", s->data_dir);
  char pid[32];
  int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
  if (ftruncate(s->lock_fd, 0) != 0 || write(s->lock_fd, pid, (size_t)n) != n)
    return ctp_seterr(CTP_EIO, "cannot write %s", path);
  DIR *d = opendir(s->tmp_dir);
  int removed = 0;
  for (struct dirent *e; d && (e = readdir(d));) {
    if (e->d_name[0] == '.') continue;
    snprintf(path, sizeof path, "%s/%s", s->tmp_dir, e->d_name);
    removed += unlink(path) == 0;
  }
  if (d) closedir(d);
  if (removed)
    LOG(LOG_WARN, "tmp_cleaned", LF_INT("files", removed),
        LF_STR("why", "datasets left half-received by a crash (never acknowledged)"));
  return 0;
}

static int predictors_open(svc *s) {
  svc_config *cfg = svc_cfg(s);
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  if (cores < 1) cores = 1;
  int per = (int)(cores / cfg->workers);
  if (per < 1) per = 1;
  if (cfg->inference_threads > 0 && cfg->inference_threads < per)
    per = (int)cfg->inference_threads;
  if (cfg->inference_threads > per)
    LOG(LOG_WARN, "threads_capped", LF_INT("asked", cfg->inference_threads),
        LF_INT("used", per), LF_INT("cores", cores), LF_INT("workers", cfg->workers));
  s->threads_per_job = per;
  s->npreds = (int)cfg->workers;
  s->preds = calloc((size_t)s->npreds, sizeof *s->preds);
  s->pred_busy = calloc((size_t)s->npreds, sizeof *s->pred_busy);
  s->expls = calloc((size_t)s->npreds, sizeof *s->expls);
  if (!s->preds || !s->pred_busy || !s->expls)
    return ctp_seterr(CTP_ENOMEM, "out of memory");
  ctp_predict_opts o;
  ctp_predict_opts_default(&o);
  o.threads = per;
  o.margin = (float)cfg->indeterminate_margin;
  for (int i = 0; i < s->npreds; i++) {
    int rc = ctp_predictor_new(&s->preds[i], s->model, &o);
    if (rc) return rc;
  }
  return 0;
}

static int open_log(const svc_config *cfg, int daemonized) {
  log_format f = LOG_FORMAT_JSON;
  if (strcmp(cfg->log_format, "text") == 0 ||
      (strcmp(cfg->log_format, "auto") == 0 && !cfg->log_file[0] && !daemonized &&
       isatty(2)))
    f = LOG_FORMAT_TEXT;
  return log_open(cfg->log_file, f, (log_level)log_level_parse(cfg->log_level));
}

/* ------------------------------------------------------------------ */
/* Signals and shutdown                                                 */
/* ------------------------------------------------------------------ */

static void close_handle(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

/* Everything finished in time: close every handle so uv_run returns. */
static void finish(svc *s) {
  svc_set_state(s, SVC_STOPPED, "all associations and jobs finished");
  sched_stop(s);
  send_stop(s);
  http_stop(s);
  uv_walk(s->loop, close_handle, NULL);
}

/* The grace time is over: re-queue what runs, abort what talks, exit. */
static void give_up(svc *s) {
  int requeued = 0, failed = 0;
  ctp_store_recover(s->store, ctp_wall_now(), INT_MAX, &requeued, &failed);
  LOG(LOG_WARN, "shutdown_forced", LF_INT("jobs_requeued", requeued),
      LF_INT("associations_aborted", ctp_scp_active(s->scp)));
  ctp_scp_free(s->scp);
  s->scp = NULL;
  LOG(LOG_INFO, "service_state", LF_STR("from", "draining"), LF_STR("to", "stopped"),
      LF_STR("why", "grace time over"));
  log_close();
  _exit(0);
}

static void stop_check(uv_timer_t *t) {
  svc *s = t->data;
  if (ctp_scp_active(s->scp) == 0 && s->in_flight == 0 && !s->tick_busy &&
      !s->send_busy)
    finish(s);
}

static void grace_over(uv_timer_t *t) { give_up(t->data); }

static void begin_shutdown(svc *s, const char *why) {
  svc_set_state(s, SVC_DRAINING, why);
  ctp_scp_stop(s->scp);
  svc_config *cfg = svc_cfg(s);
  LOG(LOG_INFO, "shutdown", LF_INT("associations", ctp_scp_active(s->scp)),
      LF_INT("jobs_running", s->in_flight),
      LF_INT("grace_seconds", cfg->shutdown_grace_seconds));
  uv_timer_start(&s->stop_timer, stop_check, 0, 100);
  uv_timer_start(&s->grace_timer, grace_over,
                 (uint64_t)cfg->shutdown_grace_seconds * 1000, 0);
}

static void on_stop_signal(uv_signal_t *h, int signum) {
  svc *s = h->data;
  const char *name = signum == SIGTERM ? "SIGTERM" : "SIGINT";
  if (atomic_load(&s->state) == SVC_RUNNING) begin_shutdown(s, name);
  else if (atomic_load(&s->state) == SVC_DRAINING) give_up(s);
}

typedef struct {
  uv_work_t req;
  svc *s;
  svc_config *cfg;
  char error[512];
} reload_req;

static void reload_work(uv_work_t *w) {
  reload_req *r = w->data;
  svc *s = r->s;
  if (log_reopen() != 0)
    snprintf(r->error, sizeof r->error, "log: %s", ctp_last_error());
  r->cfg = calloc(1, sizeof *r->cfg);
  if (!r->cfg || config_build(r->cfg, s->config_path, s->overrides, s->noverrides)) {
    snprintf(r->error, sizeof r->error, "%s", r->cfg ? ctp_last_error() : "out of memory");
    free(r->cfg);
    r->cfg = NULL;
  }
}

static void reload_after(uv_work_t *w, int status) {
  (void)status;
  reload_req *r = w->data;
  svc *s = r->s;
  if (!r->cfg) {
    LOG(LOG_ERROR, "reload_failed", LF_STR("error", r->error),
        LF_STR("kept", "the running configuration"));
  } else {
    char changed[512];
    config_keep_static(r->cfg, svc_cfg(s), changed, sizeof changed);
    if (svc_cfg_publish(s, r->cfg) != 0) {
      LOG(LOG_ERROR, "reload_failed", LF_STR("error", ctp_last_error()));
      config_free(r->cfg);
      free(r->cfg);
    } else {
      log_set_level((log_level)log_level_parse(r->cfg->log_level));
      LOG(changed[0] ? LOG_WARN : LOG_INFO, "config_reloaded",
          LF_STR("needs_restart", changed), LF_NUM("stable_seconds", r->cfg->stable_seconds),
          LF_INT("min_free_bytes", r->cfg->min_free_bytes));
      sched_kick(s);
    }
  }
  free(r);
}

static void on_hup(uv_signal_t *h, int signum) {
  (void)signum;
  svc *s = h->data;
  reload_req *r = calloc(1, sizeof *r);
  if (!r) return;
  r->s = s;
  r->req.data = r;
  if (uv_queue_work(s->loop, &r->req, reload_work, reload_after) != 0) free(r);
}

static void signals_start(svc *s) {
  uv_signal_init(s->loop, &s->sig_term);
  uv_signal_init(s->loop, &s->sig_int);
  uv_signal_init(s->loop, &s->sig_hup);
  s->sig_term.data = s->sig_int.data = s->sig_hup.data = s;
  uv_signal_start(&s->sig_term, on_stop_signal, SIGTERM);
  uv_signal_start(&s->sig_int, on_stop_signal, SIGINT);
  uv_signal_start(&s->sig_hup, on_hup, SIGHUP);
  uv_timer_init(s->loop, &s->stop_timer);
  uv_timer_init(s->loop, &s->grace_timer);
  s->stop_timer.data = s->grace_timer.data = s;
}

/* ------------------------------------------------------------------ */
/* Main                                                                 */
/* ------------------------------------------------------------------ */

static int scp_start(svc *s) {
  svc_config *cfg = svc_cfg(s);
  ctp_scp_opts o = {cfg->bind_address, (int)cfg->port, cfg->ae_title,
                    (int)cfg->max_associations, (int)cfg->acse_timeout,
                    (int)cfg->dimse_timeout, (int)cfg->max_pdu,
                    (const char *const *)cfg->sop_classes.v, cfg->sop_classes.n,
                    s->tmp_dir};
  ctp_scp_callbacks cb;
  receive_callbacks(s, &cb);
  int rc = ctp_scp_start(&s->scp, &o, &cb);
  if (rc) return rc;
  LOG(LOG_INFO, "scp_listening", LF_STR("ae_title", cfg->ae_title),
      LF_STR("address", cfg->bind_address), LF_INT("port", ctp_scp_port(s->scp)),
      LF_INT("max_associations", cfg->max_associations));
  return 0;
}

/* Everything before the loop runs; logs and returns the error. */
static int start(svc *s) {
  svc_config *cfg = svc_cfg(s);
  int rc = data_dir_open(s);
  const char *step = "data dir";
  if (!rc) {
    step = "model";
    rc = ctp_model_load(&s->model, s->model_path);
  }
  if (!rc) {
    LOG(LOG_INFO, "model_loaded", LF_STR("path", s->model_path),
        LF_STR("sha256", s->model->sha256));
    step = "database";
    rc = ctp_store_open(&s->store, s->db_path, 0);
  }
  int requeued = 0, failed = 0;
  if (!rc) rc = ctp_store_recover(s->store, ctp_wall_now(), (int)cfg->job_max_attempts,
                                  &requeued, &failed);
  if (!rc && (requeued || failed))
    LOG(LOG_WARN, "recovered", LF_INT("jobs_requeued", requeued),
        LF_INT("jobs_failed", failed));
  if (!rc) {
    step = "reconcile";
    rc = receive_reconcile(s);
  }
  int resend = 0;
  if (!rc) rc = ctp_store_outbound_recover(s->store, ctp_wall_now(), &resend);
  if (!rc) {
    step = "predictors";
    rc = predictors_open(s);
  }
  if (!rc) {
    step = "scp";
    rc = scp_start(s);
  }
  if (!rc) {
    step = "http";
    rc = http_start(s);
  }
  if (!rc) {
    step = "scheduler";
    rc = sched_start(s);
  }
  if (!rc) {
    step = "sender";
    rc = send_start(s);
  }
  if (rc)
    LOG(LOG_ERROR, "start_failed", LF_STR("step", step), LF_STR("error", ctp_last_error()));
  return rc;
}

static void teardown(svc *s) {
  ctp_scp_free(s->scp);
  for (int i = 0; i < s->npreds; i++) ctp_predictor_free(s->preds[i]);
  for (int i = 0; s->expls && i < s->npreds; i++) ctp_explainer_free(s->expls[i]);
  free(s->expls);
  free(s->preds);
  free(s->pred_busy);
  ctp_store_close(s->store);
  ctp_model_free(s->model);
  if (s->lock_fd > 0) close(s->lock_fd);
  for (int i = 0; i < s->nconfigs; i++) {
    config_free(s->configs[i]);
    free(s->configs[i]);
  }
}

/* Detaches from the terminal; the parent exits with the status the child
 * reports through the pipe once it has started (or failed to). */
static int daemonize(int *ready_fd) {
  int p[2];
  if (pipe(p) != 0) return -1;
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid > 0) {
    close(p[1]);
    unsigned char st = 1;
    if (read(p[0], &st, 1) != 1) st = 1;
    _exit(st);
  }
  close(p[0]);
  setsid();
  *ready_fd = p[1];
  return 0;
}

static void report_ready(int *fd, unsigned char status) {
  if (*fd < 0) return;
  if (status == 0) {
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
      dup2(null, 0);
      dup2(null, 1);
      dup2(null, 2);
      if (null > 2) close(null);
    }
  }
  if (write(*fd, &status, 1) != 1) status = 1;
  close(*fd);
  *fd = -1;
}

static int run(svc *s, const options *o) {
  int ready_fd = -1;
  svc_config *cfg = svc_cfg(s);
  if (!o->foreground && daemonize(&ready_fd) != 0) {
    perror("ctphased: fork");
    return 1;
  }
  if (open_log(cfg, !o->foreground) != 0) {
    fprintf(stderr, "ctphased: %s\n", ctp_last_error());
    report_ready(&ready_fd, 1);
    return 1;
  }
  char pool[16];
  snprintf(pool, sizeof pool, "%d", (int)cfg->workers + 3); /* + tick, HTTP, sender */
  setenv("UV_THREADPOOL_SIZE", pool, 1);
  signal(SIGPIPE, SIG_IGN);
  uv_loop_t loop;
  uv_loop_init(&loop);
  s->loop = &loop;
  signals_start(s);
  LOG(LOG_INFO, "starting", LF_STR("version", CTPHASE_VERSION),
      LF_STR("data_dir", s->data_dir), LF_INT("workers", cfg->workers));
  int rc = start(s);
  report_ready(&ready_fd, rc ? 1 : 0);
  if (!rc) {
    svc_set_state(s, SVC_RUNNING, "started");
    LOG(LOG_INFO, "started", LF_INT("threads_per_job", s->threads_per_job),
        LF_STR("model_sha256", s->model->sha256));
    uv_run(&loop, UV_RUN_DEFAULT);
  } else {
    svc_set_state(s, SVC_STOPPED, "start failed");
    uv_walk(&loop, close_handle, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  uv_loop_close(&loop);
  teardown(s);
  LOG(LOG_INFO, "exit", LF_INT("status", rc ? 1 : 0));
  log_close();
  return rc ? 1 : 0;
}

int main(int argc, char **argv) {
  options o;
  int status = 0;
  if (parse_args(argc, argv, &o, &status) != 0) {
    options_free(&o);
    return status;
  }
  if (o.schema) {
    char *txt = config_schema_json();
    puts(txt);
    free(txt);
    options_free(&o);
    return 0;
  }
  svc_config *cfg = calloc(1, sizeof *cfg);
  if (!cfg || config_build(cfg, o.config_path, o.overrides, o.noverrides) != 0) {
    fprintf(stderr, "ctphased: configuration: %s\n", ctp_last_error());
    free(cfg);
    options_free(&o);
    return EXIT_CONFIG;
  }
  svc s;
  memset(&s, 0, sizeof s);
  svc_cfg_publish(&s, cfg);
  s.config_path = o.config_path;
  s.overrides = o.overrides;
  s.noverrides = o.noverrides;
  s.lock_fd = -1;
  pthread_mutex_init(&s.pred_mu, NULL);
  receive_dirs_init(&s);
  snprintf(s.data_dir, sizeof s.data_dir, "%s", cfg->data_dir);
  s.model_path = model_path(cfg);
  if (o.check) {
    char *txt = config_to_json(cfg);
    puts(txt);
    free(txt);
    fprintf(stderr, "ctphased: configuration OK; model: %s\n",
            s.model_path ? s.model_path : "(none: set \"model\")");
    status = s.model_path ? 0 : EXIT_CONFIG;
  } else if (!s.model_path) {
    fprintf(stderr,
            "ctphased: no model: none is bundled in this build (%s is missing); "
            "set \"model\" in the configuration\n", CTPHASE_DEFAULT_MODEL);
    status = EXIT_CONFIG;
  } else {
    status = run(&s, &o);
  }
  if (o.check || status == EXIT_CONFIG) teardown(&s);
  options_free(&o);
  return status;
}
