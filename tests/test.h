/*
 * test.h — the unit-test harness (after libuv's test/test-list.h).
 *
 * A test is `TEST_IMPL(name) { ...; return 0; }` in some tests/test-*.c,
 * listed once in tests/test-list.h. The runner (tests/runner.c) forks a
 * process per test with a timeout, so a crash or a hang fails that test
 * only. ASSERT* print the file, line and values, then fail the test.
 * A test that cannot run here (missing data, missing CPU feature) returns
 * TEST_SKIP(reason), which is reported as "skipped" with the reason.
 * Test data paths are relative to the source root, which the runner makes
 * the working directory (CTPHASE_SOURCE_ROOT).
 */
#ifndef CTPHASE_TEST_H
#define CTPHASE_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEST_IMPL(name) int run_test_##name(void)
#define TEST_DECLARE(name) int run_test_##name(void);

#define TEST_SKIP_CODE 77
#define TEST_SKIP(...)                                   \
  do {                                                   \
    fprintf(stdout, "skipped: " __VA_ARGS__);            \
    fprintf(stdout, "\n");                               \
    return TEST_SKIP_CODE;                               \
  } while (0)

#define ASSERT(expr)                                                      \
  do {                                                                    \
    if (!(expr)) {                                                        \
      fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, \
              #expr);                                                     \
      return 1;                                                           \
    }                                                                     \
  } while (0)

#define ASSERT_EQ_INT(a, b)                                                \
  do {                                                                     \
    long long _a = (long long)(a), _b = (long long)(b);                    \
    if (_a != _b) {                                                        \
      fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__,  \
              __LINE__, #a, #b, _a, _b);                                   \
      return 1;                                                            \
    }                                                                      \
  } while (0)

#define ASSERT_OK(expr)                                                    \
  do {                                                                     \
    int _r = (expr);                                                       \
    if (_r != 0) {                                                         \
      fprintf(stderr, "%s:%d: %s returned %d: %s\n", __FILE__, __LINE__,   \
              #expr, _r, ctp_last_error());                                \
      return 1;                                                            \
    }                                                                      \
  } while (0)

#define ASSERT_NEAR(a, b, tol)                                             \
  do {                                                                     \
    double _a = (a), _b = (b);                                             \
    if (!(fabs(_a - _b) <= (tol))) {                                       \
      fprintf(stderr, "%s:%d: |%s - %s| = |%g - %g| > %g\n", __FILE__,     \
              __LINE__, #a, #b, _a, _b, (double)(tol));                    \
      return 1;                                                            \
    }                                                                      \
  } while (0)

/* Compares two float arrays: passes when every element satisfies
 * |a-b| <= atol + rtol*|b|; otherwise prints the worst element. */
int test_allclose(const char *what, const float *a, const float *b, size_t n,
                  double rtol, double atol);
#define ASSERT_ALLCLOSE(what, a, b, n, rtol, atol) \
  ASSERT(test_allclose((what), (a), (b), (n), (rtol), (atol)) == 0)

/* A fresh empty temporary directory for this test (removed by the runner). */
const char *test_tmpdir(void);

#endif
