/* Tests of tests/test-phantom.c. */
