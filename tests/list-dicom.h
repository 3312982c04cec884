/* Tests of tests/test-dicom.c. */
