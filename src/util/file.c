/*
 * file.c — whole-file reads, atomic writes, a monotonic clock.
 */
#include "ctphase/error.h"
#include "ctphase/util.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int ctp_file_read(const char *path, unsigned char **out, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return ctp_seterr(errno == ENOENT ? CTP_ENOENT : CTP_EIO, "%s: %s", path,
                      strerror(errno));
  struct stat st;
  if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
    fclose(f);
    return ctp_seterr(CTP_EIO, "%s: not a regular file", path);
  }
  size_t n = (size_t)st.st_size;
  unsigned char *buf = malloc(n + 1);
  if (!buf) {
    fclose(f);
    return ctp_seterr(CTP_ENOMEM, "%s: cannot allocate %zu bytes", path, n);
  }
  if (n > 0 && fread(buf, 1, n, f) != n) {
    free(buf);
    fclose(f);
    return ctp_seterr(CTP_EIO, "%s: short read", path);
  }
  fclose(f);
  buf[n] = 0;
  *out = buf;
  *len = n;
  return 0;
}

int ctp_file_write_atomic(const char *path, const void *data, size_t len) {
  size_t plen = strlen(path);
  char *tmp = malloc(plen + 16);
  if (!tmp) return ctp_seterr(CTP_ENOMEM, "out of memory");
  snprintf(tmp, plen + 16, "%s.tmp%ld", path, (long)getpid());
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) {
    int e = errno;
    free(tmp);
    return ctp_seterr(e == ENOSPC ? CTP_ENOSPC : CTP_EIO, "%s: %s", path,
                      strerror(e));
  }
  const unsigned char *p = data;
  size_t left = len;
  while (left > 0) {
    ssize_t w = write(fd, p, left);
    if (w < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      close(fd);
      unlink(tmp);
      free(tmp);
      return ctp_seterr(e == ENOSPC ? CTP_ENOSPC : CTP_EIO, "%s: %s", path,
                        strerror(e));
    }
    p += w;
    left -= (size_t)w;
  }
  if (fsync(fd) != 0 || close(fd) != 0) {
    int e = errno;
    unlink(tmp);
    free(tmp);
    return ctp_seterr(CTP_EIO, "%s: %s", path, strerror(e));
  }
  if (rename(tmp, path) != 0) {
    int e = errno;
    unlink(tmp);
    free(tmp);
    return ctp_seterr(CTP_EIO, "%s: rename: %s", path, strerror(e));
  }
  free(tmp);
  return 0;
}

double ctp_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
