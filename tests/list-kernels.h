/* Tests of tests/test-kernels.c. */
TEST_ENTRY(kernels_select)
TEST_ENTRY(kernels_conv_input_gradient)
TEST_ENTRY(kernels_conv_forward_avx2)
TEST_ENTRY(kernels_conv_backward_weight_avx2)
TEST_ENTRY(kernels_conv_forward_avx512)
TEST_ENTRY(kernels_conv_backward_weight_avx512)
