/*
 * runner.c — runs the unit tests, each in its own process with a timeout.
 *
 * Usage: ctphase-tests [--list] [--timeout S] [NAME...]
 * With names, runs only the tests whose names contain one of them. Prints
 * one line per test (ok / FAIL / skipped) and ends with the line
 * "N passed, N failed, N skipped".
 */
#include "test.h"

#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TEST_ENTRY(name) TEST_DECLARE(name)
#include "test-list.h"
#undef TEST_ENTRY

typedef struct {
  const char *name;
  int (*fn)(void);
} test_entry;

static const test_entry tests[] = {
#define TEST_ENTRY(name) {#name, run_test_##name},
#include "test-list.h"
#undef TEST_ENTRY
};

static char tmpdir[256];

const char *test_tmpdir(void) {
  if (!tmpdir[0]) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ctphase-test-%ld-XXXXXX",
             (long)getpid());
    if (!mkdtemp(tmpdir)) {
      perror("mkdtemp");
      exit(1);
    }
  }
  return tmpdir;
}

int test_allclose(const char *what, const float *a, const float *b, size_t n,
                  double rtol, double atol) {
  size_t worst = 0, bad = 0;
  double worst_excess = -1.0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - (double)b[i]);
    double lim = atol + rtol * fabs((double)b[i]);
    if (!(d <= lim)) {
      bad++;
      if (!(d - lim <= worst_excess)) {
        worst_excess = d - lim;
        worst = i;
      }
    }
  }
  if (bad == 0) return 0;
  fprintf(stderr,
          "%s: %zu of %zu elements differ (rtol %g, atol %g); worst at %zu: "
          "got %.9g, want %.9g\n",
          what, bad, n, rtol, atol, worst, (double)a[worst], (double)b[worst]);
  return 1;
}

static int rm_entry(const char *p, const struct stat *sb, int flag,
                    struct FTW *ftw) {
  (void)sb; (void)flag; (void)ftw;
  return remove(p);
}

static int matches(const char *name, int argc, char **argv, int first) {
  if (first >= argc) return 1;
  for (int i = first; i < argc; i++)
    if (strstr(name, argv[i])) return 1;
  return 0;
}

int main(int argc, char **argv) {
  int timeout = 300, first = 1;
  size_t ntests = sizeof tests / sizeof tests[0];
  if (argc > 1 && strcmp(argv[1], "--list") == 0) {
    for (size_t i = 0; i < ntests; i++) printf("%s\n", tests[i].name);
    return 0;
  }
  if (argc > 2 && strcmp(argv[1], "--timeout") == 0) {
    timeout = atoi(argv[2]);
    first = 3;
  }
  const char *root = getenv("CTPHASE_SOURCE_ROOT");
  if (root && chdir(root) != 0) {
    fprintf(stderr, "cannot chdir to %s: %s\n", root, strerror(errno));
    return 2;
  }
  int passed = 0, failed = 0, skipped = 0;
  for (size_t i = 0; i < ntests; i++) {
    if (!matches(tests[i].name, argc, argv, first)) continue;
    fflush(stdout);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int pipefd[2];
    if (pipe(pipefd) != 0) { perror("pipe"); return 2; }
    pid_t pid = fork();
    if (pid == 0) {
      close(pipefd[0]);
      dup2(pipefd[1], 1);
      alarm((unsigned)timeout);
      int r = tests[i].fn();
      fflush(stdout);
      if (tmpdir[0]) nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
      _exit(r);
    }
    close(pipefd[1]);
    char out[4096];
    size_t len = 0;
    ssize_t r;
    char sink[4096];
    for (;;) {
      /* Keep the first 4 KiB of the test's output; drain the rest. */
      if (len < sizeof out - 1)
        r = read(pipefd[0], out + len, sizeof out - 1 - len);
      else
        r = read(pipefd[0], sink, sizeof sink);
      if (r <= 0) break;
      if (len < sizeof out - 1) len += (size_t)r;
    }
    out[len] = 0;
    close(pipefd[0]);
    int status;
    waitpid(pid, &status, 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      passed++;
      printf("ok      %-44s %7.2fs\n", tests[i].name, secs);
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == TEST_SKIP_CODE) {
      skipped++;
      char *why = strstr(out, "skipped: ");
      printf("skip    %-44s %s", tests[i].name,
             why ? why + 9 : "(no reason)\n");
    } else {
      failed++;
      if (WIFSIGNALED(status))
        printf("FAIL    %-44s killed by signal %d%s\n", tests[i].name,
               WTERMSIG(status),
               WTERMSIG(status) == SIGALRM ? " (timeout)" : "");
      else
        printf("FAIL    %-44s exit %d\n", tests[i].name, WEXITSTATUS(status));
    }
    if (len && !(WIFEXITED(status) && WEXITSTATUS(status) == TEST_SKIP_CODE))
      fputs(out, stdout);
  }
  printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
  return failed ? 1 : 0;
}
