/*
 * log.c — JSON-lines (or human-readable) event log of ctphased.
 *
 * One global sink: a file descriptor opened with O_APPEND (or stderr), a
 * format and a level. Lines are built in a stack buffer and written with a
 * single write(2) under a mutex, so lines from different threads never
 * interleave and logrotate's "copytruncate" or "create" + SIGHUP both
 * work. Strings are JSON-escaped (control characters as \u00XX) in JSON
 * format and quoted when they contain spaces in text format. A line longer
 * than the buffer loses its last fields and says "truncated":true, so it
 * is still one valid JSON object.
 */
#include "service/log.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "ctphase/error.h"

#define LOG_LINE_MAX 4096

static pthread_mutex_t log_mutex = PTHREAD_MUTEX_INITIALIZER;
static atomic_int log_level_now = LOG_INFO;
static int log_fd = 2;
static int log_fmt = LOG_FORMAT_JSON;
static char *log_path;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int log_threshold(void) {
  return atomic_load_explicit(&log_level_now, memory_order_relaxed);
}

void log_set_level(log_level level) { atomic_store(&log_level_now, (int)level); }

int log_level_parse(const char *name) {
  for (int i = 0; i < 4; i++)
    if (name && strcmp(name, level_names[i]) == 0) return i;
  return -1;
}

const char *log_level_name(int level) {
  return level >= 0 && level < 4 ? level_names[level] : "unknown";
}

static int open_path(const char *path) {
  if (!path || !path[0]) return 2;
  return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
}

int log_open(const char *path, log_format format, log_level level) {
  int fd = open_path(path);
  if (fd < 0) return ctp_seterr(CTP_EIO, "cannot open log file %s", path);
  pthread_mutex_lock(&log_mutex);
  if (log_fd > 2) close(log_fd);
  log_fd = fd;
  log_fmt = format;
  free(log_path);
  log_path = path && path[0] ? strdup(path) : NULL;
  pthread_mutex_unlock(&log_mutex);
  log_set_level(level);
  return 0;
}

int log_reopen(void) {
  pthread_mutex_lock(&log_mutex);
  int rc = 0;
  if (log_path) {
    int fd = open_path(log_path);
    if (fd < 0) {
      rc = ctp_seterr(CTP_EIO, "cannot reopen log file %s", log_path);
    } else {
      if (log_fd > 2) close(log_fd);
      log_fd = fd;
    }
  }
  pthread_mutex_unlock(&log_mutex);
  return rc;
}

void log_close(void) {
  pthread_mutex_lock(&log_mutex);
  if (log_fd > 2) close(log_fd);
  log_fd = 2;
  free(log_path);
  log_path = NULL;
  pthread_mutex_unlock(&log_mutex);
}

/* An append-only line buffer that stops (and remembers it) when full. */
typedef struct {
  char b[LOG_LINE_MAX];
  size_t n;
  size_t mark; /* end of the last complete field */
  int full;
} line;

/* Room kept at the end of a line for the closing text. */
#define LOG_LINE_RESERVE 32

static void put(line *l, const char *s, size_t len) {
  if (l->full) return;
  if (l->n + len > sizeof l->b - LOG_LINE_RESERVE) {
    len = sizeof l->b - LOG_LINE_RESERVE - l->n;
    l->full = 1;
  }
  memcpy(l->b + l->n, s, len);
  l->n += len;
}

static void puts_(line *l, const char *s) { put(l, s, strlen(s)); }

static void putf(line *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void putf(line *l, const char *fmt, ...) {
  char tmp[64];
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (k > 0) put(l, tmp, (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1);
}

static void put_json_string(line *l, const char *s) {
  puts_(l, "\"");
  for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
    if (*p == '"' || *p == '\\') {
      char e[2] = {'\\', (char)*p};
      put(l, e, 2);
    } else if (*p < 0x20 || *p == 0x7f) {
      putf(l, "\\u%04x", *p);
    } else {
      put(l, (const char *)p, 1);
    }
  }
  puts_(l, "\"");
}

static void put_text_string(line *l, const char *s) {
  s = s ? s : "";
  int quote = !*s || strpbrk(s, " \"=\t") != NULL;
  if (!quote) {
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
      put(l, *p < 0x20 ? "?" : (const char *)p, 1);
    return;
  }
  put_json_string(l, s);
}

static void put_number(line *l, double v) {
  if (v != v || v > 1e300 || v < -1e300) puts_(l, "null");
  else putf(l, "%.6g", v);
}

static void put_timestamp(line *l, int text) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  struct tm tm;
  gmtime_r(&tv.tv_sec, &tm);
  char b[40];
  strftime(b, sizeof b, text ? "%Y-%m-%d %H:%M:%S" : "%Y-%m-%dT%H:%M:%S", &tm);
  puts_(l, b);
  putf(l, ".%03ldZ", (long)(tv.tv_usec / 1000));
}

static void format_json(line *l, int level, const char *event,
                        const log_field *f, int n) {
  puts_(l, "{\"ts\":\"");
  put_timestamp(l, 0);
  puts_(l, "\",\"level\":\"");
  puts_(l, log_level_name(level));
  puts_(l, "\",\"event\":");
  put_json_string(l, event);
  l->mark = l->n;
  for (int i = 0; i < n; i++) {
    puts_(l, ",");
    put_json_string(l, f[i].key);
    puts_(l, ":");
    switch (f[i].type) {
      case 's': put_json_string(l, f[i].v.s); break;
      case 'i': putf(l, "%lld", f[i].v.i); break;
      case 'b': puts_(l, f[i].v.i ? "true" : "false"); break;
      default: put_number(l, f[i].v.n); break;
    }
    if (!l->full) l->mark = l->n;
  }
}

static void format_text(line *l, int level, const char *event,
                        const log_field *f, int n) {
  put_timestamp(l, 1);
  putf(l, " %-5s ", log_level_name(level));
  puts_(l, event);
  for (int i = 0; i < n; i++) {
    puts_(l, " ");
    puts_(l, f[i].key);
    puts_(l, "=");
    switch (f[i].type) {
      case 's': put_text_string(l, f[i].v.s); break;
      case 'i': putf(l, "%lld", f[i].v.i); break;
      case 'b': puts_(l, f[i].v.i ? "true" : "false"); break;
      default: put_number(l, f[i].v.n); break;
    }
  }
}

void log__emit(int level, const char *event, const log_field *f, int n) {
  line l;
  l.n = l.mark = 0;
  l.full = 0;
  pthread_mutex_lock(&log_mutex);
  int fmt = log_fmt, fd = log_fd;
  if (fmt == LOG_FORMAT_TEXT) {
    format_text(&l, level, event, f, n);
  } else {
    format_json(&l, level, event, f, n);
    /* A cut line drops its incomplete field and says so. */
    if (l.full) {
      static const char tail[] = ",\"truncated\":true";
      l.n = l.mark;
      memcpy(l.b + l.n, tail, sizeof tail - 1);
      l.n += sizeof tail - 1;
    }
    l.b[l.n++] = '}';
  }
  l.b[l.n++] = '\n';
  const char *p = l.b;
  size_t left = l.n;
  while (left > 0) {
    ssize_t w = write(fd, p, left);
    if (w <= 0) break;
    p += w;
    left -= (size_t)w;
  }
  pthread_mutex_unlock(&log_mutex);
}
