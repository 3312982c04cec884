/* Tests of tests/test-service.c. */
