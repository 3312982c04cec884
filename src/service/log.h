/*
 * log.h — structured logging for ctphased: one event per line.
 *
 *   LOG(LOG_INFO, "job_done", LF_INT("job", id), LF_STR("series_uid", uid),
 *       LF_NUM("seconds", t));
 *
 * writes {"ts":"…","level":"info","event":"job_done","job":7,…} in JSON
 * format, or "2024-05-01 10:00:00.123 info  job_done job=7 …" in text
 * format (the default on a terminal). The level test comes first and the
 * field list is built only above the threshold, so a debug line costs one
 * comparison when debug is off. Field names are stable: dashboards and
 * tests grep for them.
 *
 * Never pass patient attributes (name, ID, birth date, …) in a field. The
 * service never reads them: UIDs, AE titles, addresses, paths under the
 * data dir and counts are what may be logged.
 *
 * Thread-safe: every line is one write(2) under a mutex; log_reopen()
 * (SIGHUP) swaps the file descriptor under the same mutex.
 */
#ifndef CTPHASE_SERVICE_LOG_H
#define CTPHASE_SERVICE_LOG_H

#include <stdint.h>

typedef enum { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR } log_level;
typedef enum { LOG_FORMAT_JSON = 0, LOG_FORMAT_TEXT } log_format;

typedef struct {
  const char *key;
  char type; /* 's' string, 'i' integer, 'n' number, 'b' boolean */
  union {
    const char *s;
    long long i;
    double n;
  } v;
} log_field;

#define LF_STR(k, x) ((log_field){(k), 's', {.s = (x)}})
#define LF_INT(k, x) ((log_field){(k), 'i', {.i = (long long)(x)}})
#define LF_NUM(k, x) ((log_field){(k), 'n', {.n = (double)(x)}})
#define LF_BOOL(k, x) ((log_field){(k), 'b', {.i = (x) ? 1 : 0}})

/* The current threshold (relaxed atomic read). */
int log_threshold(void);

#define LOG(lvl, event, ...)                                          \
  do {                                                                \
    if ((int)(lvl) >= log_threshold()) {                              \
      const log_field log__f[] = {__VA_ARGS__};                       \
      log__emit((lvl), (event), log__f,                               \
                (int)(sizeof log__f / sizeof log__f[0]));             \
    }                                                                 \
  } while (0)

void log__emit(int level, const char *event, const log_field *f, int n);

/* Opens the log: path NULL or "" means stderr. Returns 0 or CTP_EIO. */
int log_open(const char *path, log_format format, log_level level);
/* Reopens the same path (after rotation). */
int log_reopen(void);
void log_set_level(log_level level);
void log_close(void);

/* "debug" -> LOG_DEBUG ...; -1 when unknown. */
int log_level_parse(const char *name);
const char *log_level_name(int level);

#endif
