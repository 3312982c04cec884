/* Tests of tests/test-explain.c. */
