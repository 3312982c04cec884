/*
 * error.h — ctphase error codes.
 *
 * Every public function returns 0 on success or a negative code from the
 * table below. The code says what kind of failure it was; the message that
 * says exactly what was wrong (which tensor, which tag, which file) is kept
 * per thread and read with ctp_last_error() right after the failing call.
 */
#ifndef CTPHASE_ERROR_H
#define CTPHASE_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

#define CTP_ERRNO_MAP(XX)                                   \
  XX(EINVAL,   -1, "invalid argument")                      \
  XX(ENOMEM,   -2, "out of memory")                         \
  XX(EIO,      -3, "input/output error")                    \
  XX(ENOENT,   -4, "no such file or directory")             \
  XX(EFORMAT,  -5, "malformed file")                        \
  XX(ESHAPE,   -6, "shape mismatch")                        \
  XX(ENOTSUP,  -7, "not supported")                         \
  XX(EDICOM,   -8, "DICOM error")                           \
  XX(ESKIP,    -9, "skipped")                               \
  XX(ERANGE,  -10, "value out of range")                    \
  XX(ENOSPC,  -11, "no space left")                         \
  XX(EDB,     -12, "database error")                        \
  XX(ENET,    -13, "network error")                         \
  XX(EINTR,   -14, "interrupted")                           \
  XX(ESTATE,  -15, "invalid state")

typedef enum {
#define XX(name, val, msg) CTP_##name = (val),
  CTP_ERRNO_MAP(XX)
#undef XX
  CTP_OK = 0
} ctp_errno;

/* Static description of an error code ("malformed file"). */
const char *ctp_strerror(int err);
/* Symbolic name of an error code ("CTP_EFORMAT"). */
const char *ctp_err_name(int err);
/* The detailed message of the last failure on this thread ("" if none). */
const char *ctp_last_error(void);
/* Sets this thread's last-error message and returns err, so that failing
 * paths read `return ctp_seterr(CTP_EFORMAT, "tensor %s: ...", name);`. */
int ctp_seterr(int err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void ctp_clearerr(void);
/* Prefixes this thread's last-error message with "prefix: " (a file name,
 * say) and returns err: `return ctp_error_prefix(r, path);`. */
int ctp_error_prefix(int err, const char *prefix);

#ifdef __cplusplus
}
#endif
#endif
