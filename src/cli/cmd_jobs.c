/*
 * cmd_jobs.c — `ctphase jobs`: the daemon's jobs, from its database.
 *
 *   ctphase jobs list [--state S] [--limit N] [--json]
 *   ctphase jobs show ID
 *   ctphase jobs retry ID
 *   ctphase jobs resend ID
 *
 * Reads DATA_DIR/ctphased.db directly (--data-dir, else $CTPHASED_DATA_DIR,
 * else /var/lib/ctphased). This works while ctphased runs: the database
 * is in WAL mode, so reading never blocks the daemon, and `retry` and
 * `resend` are one short write transaction each, which the daemon's
 * scheduler or sender picks up within a second. The database is never created or upgraded from here.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "ctphase/error.h"
#include "ctphase/store.h"
#include "service/log.h"

static const char *help_jobs =
    "usage: ctphase jobs list [--state STATE] [--limit N] [--json] [--data-dir DIR]\n"
    "       ctphase jobs show ID [--data-dir DIR]\n"
    "       ctphase jobs retry ID [--data-dir DIR]\n"
    "       ctphase jobs resend ID [--data-dir DIR]\n"
    "\n"
    "Lists, shows and retries the jobs of ctphased (one job per stable series:\n"
    "the phase of each of its acquisitions). Works while the daemon runs.\n"
    "\n"
    "  --data-dir DIR  the daemon's data dir (default: $CTPHASED_DATA_DIR,\n"
    "                  else /var/lib/ctphased)\n"
    "  --state STATE   queued, running, done, failed or skipped\n"
    "  --limit N       newest N jobs (default 50)\n"
    "  --json          JSON instead of a table\n"
    "\n"
    "retry queues a new job for the series of a done, failed or skipped job.\n"
    "resend sends the job's result objects (SR, Secondary Captures) again to\n"
    "every destination: their outbound rows go back to pending, attempts 0.\n"
    "show prints the job, its result and its outbound objects (state,\n"
    "attempts, last error per destination).\n";

static void fmt_time(const cJSON *v, char *out, size_t n) {
  if (!cJSON_IsNumber(v)) {
    snprintf(out, n, "-");
    return;
  }
  time_t t = (time_t)v->valuedouble;
  struct tm tm;
  localtime_r(&t, &tm);
  strftime(out, n, "%Y-%m-%d %H:%M:%S", &tm);
}

static const char *str_or(const cJSON *o, const char *key, const char *dflt) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsString(v) ? v->valuestring : dflt;
}

static double num_or(const cJSON *o, const char *key, double dflt) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static void print_table(const char *json) {
  cJSON *arr = cJSON_Parse(json);
  printf("%6s  %-8s %4s  %-19s  %8s  %s\n", "ID", "STATE", "TRY", "CREATED",
         "SECONDS", "SERIES / ERROR");
  const cJSON *j;
  cJSON_ArrayForEach(j, arr) {
    char created[32];
    fmt_time(cJSON_GetObjectItemCaseSensitive(j, "created_at"), created, sizeof created);
    double dur = num_or(j, "duration_s", -1);
    char dur_s[16] = "-";
    if (dur >= 0) snprintf(dur_s, sizeof dur_s, "%.1f", dur);
    printf("%6.0f  %-8s %4.0f  %-19s  %8s  %s\n", num_or(j, "id", 0),
           str_or(j, "state", "?"), num_or(j, "attempts", 0), created, dur_s,
           str_or(j, "series_uid", "?"));
    const char *err = str_or(j, "error", NULL);
    if (err) printf("%53s%s\n", "", err);
  }
  if (cJSON_GetArraySize(arr) == 0) printf("(no jobs)\n");
  cJSON_Delete(arr);
}

static void print_job(const char *json) {
  cJSON *j = cJSON_Parse(json);
  char *txt = j ? cJSON_Print(j) : NULL;
  puts(txt ? txt : json);
  free(txt);
  cJSON_Delete(j);
}

static int parse_id(const char *s, long long *id) {
  char *end;
  *id = strtoll(s, &end, 10);
  return *s && !*end && *id > 0 ? 0 : -1;
}

int cmd_jobs(int argc, char **argv) {
  cli_args a = {argc, argv, 1, NULL};
  const char *data_dir = getenv("CTPHASED_DATA_DIR"), *state = NULL;
  const char *verb = NULL, *id_s = NULL;
  int limit = 50, json = 0;
  while (a.i < a.argc) {
    if (cli_opt(&a, "--help", 0)) return cli_usage(help_jobs, NULL);
    else if (cli_opt(&a, "--data-dir", 1)) data_dir = a.arg;
    else if (cli_opt(&a, "--state", 1)) state = a.arg;
    else if (cli_opt(&a, "--limit", 1)) limit = atoi(a.arg);
    else if (cli_opt(&a, "--json", 0)) json = 1;
    else if (a.argv[a.i][0] != '-' && !verb) verb = a.argv[a.i++];
    else if (a.argv[a.i][0] != '-' && !id_s) id_s = a.argv[a.i++];
    else return cli_usage(help_jobs, a.argv[a.i]);
  }
  if (!data_dir) data_dir = "/var/lib/ctphased";
  long long id = 0;
  int is_list = verb && strcmp(verb, "list") == 0;
  if (!verb || (!is_list && strcmp(verb, "show") && strcmp(verb, "retry") &&
                strcmp(verb, "resend")))
    return cli_usage(help_jobs, verb ? verb : "(missing list, show, retry or resend)");
  if (!is_list && (!id_s || parse_id(id_s, &id)))
    return cli_usage(help_jobs, id_s ? id_s : "(missing job ID)");
  if (state && ctp_job_state_parse(state) < 0)
    return cli_usage(help_jobs, state);
  log_set_level(LOG_WARN);
  char path[4096];
  snprintf(path, sizeof path, "%s/ctphased.db", data_dir);
  ctp_store *st = NULL;
  int r = ctp_store_open(&st, path, CTP_STORE_NO_MIGRATE);
  if (r) return cli_fail("cannot open the database", r);
  char *out = NULL;
  int64_t new_id = 0;
  int resent = 0, is_resend = strcmp(verb, "resend") == 0;
  if (is_list) r = ctp_store_jobs_json(st, state, limit, &out);
  else if (strcmp(verb, "show") == 0) r = ctp_store_job_json(st, id, &out);
  else if (is_resend) r = ctp_store_outbound_resend(st, id, ctp_wall_now(), &resent);
  else r = ctp_store_job_retry(st, id, ctp_wall_now(), &new_id);
  int status = 0;
  if (r) status = cli_fail(verb, r);
  else if (is_list && !json) print_table(out);
  else if (out) print_job(out);
  else if (is_resend)
    printf("job %lld: %d outbound object(s) queued to be sent again\n", id, resent);
  else printf("job %lld queued (retry of job %lld)\n", (long long)new_id, id);
  free(out);
  ctp_store_close(st);
  return status;
}
