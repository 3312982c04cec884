/*
 * file.c — whole-file reads, atomic writes, folders, a monotonic clock.
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

/* fsync of the folder that holds path, so that a rename into it survives
 * a power loss; 0 or errno. */
static int fsync_parent(const char *path) {
  char *copy = strdup(path);
  if (!copy) return ENOMEM;
  int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY), e = 0;
  if (fd < 0 || fsync(fd) != 0) e = errno;
  if (fd >= 0) close(fd);
  free(copy);
  return e;
}

int ctp_mkdir_p(const char *dir, unsigned mode) {
  char path[4096];
  size_t n = dir ? strlen(dir) : 0;
  if (n == 0 || n >= sizeof path)
    return ctp_seterr(CTP_EINVAL, "folder '%s': bad name", dir ? dir : "");
  memcpy(path, dir, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (path[i] != '/' && path[i] != 0) continue;
    char c = path[i];
    path[i] = 0;
    if (mkdir(path, (mode_t)mode) != 0 && errno != EEXIST)
      return ctp_seterr(errno == ENOSPC ? CTP_ENOSPC : CTP_EIO,
                        "cannot create folder %s: %s", path, strerror(errno));
    path[i] = c;
  }
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
    return ctp_seterr(CTP_EIO, "%s: not a folder", dir);
  return 0;
}

int ctp_file_write_atomic(const char *path, const void *data, size_t len) {
  size_t plen = strlen(path);
  char *tmp = malloc(plen + 16);
  if (!tmp) return ctp_seterr(CTP_ENOMEM, "out of memory");
  /* A name of its own (mkstemp), so that two writers of one path, threads
   * or processes, never share a temporary file. */
  snprintf(tmp, plen + 16, "%s.tmpXXXXXX", path);
  int fd = mkstemp(tmp), e = 0;
  if (fd < 0) {
    e = errno;
    free(tmp);
    return ctp_seterr(e == ENOSPC ? CTP_ENOSPC : CTP_EIO, "%s: %s", path,
                      strerror(e));
  }
  const unsigned char *p = data;
  size_t left = len;
  while (left > 0 && !e) {
    ssize_t w = write(fd, p, left);
    if (w < 0 && errno != EINTR) e = errno;
    if (w > 0) {
      p += w;
      left -= (size_t)w;
    }
  }
  if (!e && (fchmod(fd, 0644) != 0 || fsync(fd) != 0)) e = errno;
  if (close(fd) != 0 && !e) e = errno;
  if (e) {
    unlink(tmp);
    free(tmp);
    return ctp_seterr(e == ENOSPC ? CTP_ENOSPC : CTP_EIO, "%s: %s", path,
                      strerror(e));
  }
  if (rename(tmp, path) != 0) {
    e = errno;
    unlink(tmp);
    free(tmp);
    return ctp_seterr(CTP_EIO, "%s: rename: %s", path, strerror(e));
  }
  free(tmp);
  if ((e = fsync_parent(path)) != 0)
    return ctp_seterr(CTP_EIO, "%s: fsync of its folder: %s", path, strerror(e));
  return 0;
}

double ctp_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
