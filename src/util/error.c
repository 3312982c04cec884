/*
 * error.c — the error table and the per-thread last-error message.
 */
#include "ctphase/error.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char last_error[512];

const char *ctp_strerror(int err) {
  switch (err) {
    case 0: return "success";
#define XX(name, val, msg) case CTP_##name: return msg;
    CTP_ERRNO_MAP(XX)
#undef XX
  }
  return "unknown error";
}

const char *ctp_err_name(int err) {
  switch (err) {
    case 0: return "CTP_OK";
#define XX(name, val, msg) case CTP_##name: return "CTP_" #name;
    CTP_ERRNO_MAP(XX)
#undef XX
  }
  return "CTP_UNKNOWN";
}

const char *ctp_last_error(void) { return last_error; }

void ctp_clearerr(void) { last_error[0] = '\0'; }

int ctp_seterr(int err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
  return err;
}

int ctp_error_prefix(int err, const char *prefix) {
  char msg[sizeof last_error];
  snprintf(msg, sizeof msg, "%s", last_error);
  return ctp_seterr(err, "%s: %s", prefix, msg);
}
