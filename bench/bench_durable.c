/*
 * bench_durable.c — the durability floor of receiving, on one disk: what
 * making each instance durable costs by itself, with no network, DICOM or
 * database around it.
 *
 *   bench_durable WORK_DIR FILE...
 *
 * Reads every FILE into memory, then, for each in turn (after a sync, so
 * that neither pass pays for other files' dirty pages):
 *
 *   a. rename   ctphased's sequence: write it to WORK_DIR/tmp/NAME, fsync,
 *               close, rename to WORK_DIR/series/NAME, fsync the folder;
 *   b. journal  write it into a journal file that was preallocated (by
 *               writing zeros, not fallocate: unwritten extents would need
 *               a metadata commit on first write) and fsynced beforehand,
 *               at the next offset, and fdatasync once. Overwriting
 *               allocated blocks needs no file system journal commit.
 *
 * Prints one line per pass, "rename: MEAN ms/instance (median MEDIAN ms,
 * N instances)", and "journal: ..." likewise. Single-threaded; run by
 * bench/bench_receive.sh, on the disk the receivers used.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct {
  char *data;
  size_t len;
  const char *name; /* basename of the source */
} blob;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static void die(const char *what, const char *path) {
  fprintf(stderr, "bench_durable: %s %s: %s\n", what, path, strerror(errno));
  exit(1);
}

static void write_all(int fd, const char *p, size_t n, off_t off, const char *path) {
  while (n > 0) {
    ssize_t w = off >= 0 ? pwrite(fd, p, n, off) : write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      die("write", path);
    }
    p += w;
    n -= (size_t)w;
    if (off >= 0) off += w;
  }
}

static blob read_blob(const char *path) {
  blob b = {NULL, 0, strrchr(path, '/') ? strrchr(path, '/') + 1 : path};
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) die("open", path);
  b.len = (size_t)st.st_size;
  b.data = malloc(b.len ? b.len : 1);
  if (!b.data) die("malloc for", path);
  for (size_t got = 0; got < b.len;) {
    ssize_t r = read(fd, b.data + got, b.len - got);
    if (r <= 0) die("read", path);
    got += (size_t)r;
  }
  close(fd);
  return b;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void report(const char *name, double *t, int n) {
  double sum = 0;
  for (int i = 0; i < n; i++) sum += t[i];
  qsort(t, (size_t)n, sizeof *t, cmp_double);
  printf("%s: %.3f ms/instance (median %.3f ms, %d instances)\n", name,
         1e3 * sum / n, 1e3 * t[n / 2], n);
}

/* a. temporary file, fsync, rename, folder fsync (receive.c's keep()). */
static void pass_rename(const char *work, const blob *b, int n, double *t) {
  char tmp_dir[4096], dir[4096], tmp[8192], dst[8192];
  snprintf(tmp_dir, sizeof tmp_dir, "%s/tmp", work);
  snprintf(dir, sizeof dir, "%s/series", work);
  if ((mkdir(tmp_dir, 0750) != 0 && errno != EEXIST) ||
      (mkdir(dir, 0750) != 0 && errno != EEXIST))
    die("mkdir", work);
  sync();
  for (int i = 0; i < n; i++) {
    snprintf(tmp, sizeof tmp, "%s/%s.part", tmp_dir, b[i].name);
    snprintf(dst, sizeof dst, "%s/%s", dir, b[i].name);
    double t0 = now_s();
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (fd < 0) die("create", tmp);
    write_all(fd, b[i].data, b[i].len, -1, tmp);
    if (fsync(fd) != 0) die("fsync", tmp);
    close(fd);
    if (rename(tmp, dst) != 0) die("rename", tmp);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0) die("fsync", dir);
    close(dfd);
    t[i] = now_s() - t0;
  }
}

/* b. one fdatasync per instance into a preallocated, fsynced journal. */
static void pass_journal(const char *work, const blob *b, int n, double *t) {
  char path[4096];
  snprintf(path, sizeof path, "%s/journal", work);
  size_t total = 0;
  for (int i = 0; i < n; i++) total += b[i].len;
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) die("create", path);
  static char zeros[1 << 20];
  for (size_t off = 0; off < total; off += sizeof zeros)
    write_all(fd, zeros, total - off < sizeof zeros ? total - off : sizeof zeros,
              (off_t)off, path);
  if (fsync(fd) != 0) die("fsync", path);
  int dfd = open(work, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0 || fsync(dfd) != 0) die("fsync", work);
  close(dfd);
  sync();
  off_t off = 0;
  for (int i = 0; i < n; i++) {
    double t0 = now_s();
    write_all(fd, b[i].data, b[i].len, off, path);
    if (fdatasync(fd) != 0) die("fdatasync", path);
    t[i] = now_s() - t0;
    off += (off_t)b[i].len;
  }
  close(fd);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: bench_durable WORK_DIR FILE...\n");
    return 2;
  }
  const char *work = argv[1];
  int n = argc - 2;
  if (mkdir(work, 0750) != 0 && errno != EEXIST) die("mkdir", work);
  blob *b = calloc((size_t)n, sizeof *b);
  double *t = calloc((size_t)n, sizeof *t);
  if (!b || !t) die("calloc", "");
  for (int i = 0; i < n; i++) b[i] = read_blob(argv[i + 2]);
  pass_rename(work, b, n, t);
  report("rename", t, n);
  pass_journal(work, b, n, t);
  report("journal", t, n);
  for (int i = 0; i < n; i++) free(b[i].data);
  free(b);
  free(t);
  return 0;
}
