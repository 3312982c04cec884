/*
 * util.h — small shared helpers: SHA-256, file slurping, timing.
 */
#ifndef CTPHASE_UTIL_H
#define CTPHASE_UTIL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  uint32_t h[8];
  uint64_t len;
  unsigned char buf[64];
  size_t fill;
} ctp_sha256;

void ctp_sha256_init(ctp_sha256 *s);
void ctp_sha256_update(ctp_sha256 *s, const void *data, size_t len);
void ctp_sha256_final(ctp_sha256 *s, unsigned char out[32]);
/* Hex digest (64 characters and a NUL) of a buffer. */
void ctp_sha256_hex(const void *data, size_t len, char out[65]);

/* Reads a whole file into a malloc'd buffer (NUL-terminated for text use).
 * Returns 0, CTP_ENOENT, CTP_EIO or CTP_ENOMEM with a message. */
int ctp_file_read(const char *path, unsigned char **out, size_t *len);
/* Writes a buffer to path via a temporary file of its own (mkstemp), fsync,
 * rename and an fsync of the folder: after a crash path holds either the
 * old contents or the new, never part of them. */
int ctp_file_write_atomic(const char *path, const void *data, size_t len);
/* mkdir -p: creates dir and any missing folders above it with mode (less
 * the umask). Returns 0 when dir is a folder afterwards, else CTP_EINVAL
 * (empty or over-long name), CTP_ENOSPC or CTP_EIO with a message naming
 * the folder that could not be made. Nothing is fsynced. */
int ctp_mkdir_p(const char *dir, unsigned mode);

/* Monotonic time in seconds. */
double ctp_now(void);

#ifdef __cplusplus
}
#endif
#endif
