/*
 * kernels.c — choosing a kernel set at run time.
 *
 * The reference set is always there. Fast sets are listed in `sets` with
 * the CPU features they need; ctp_kernels_select() takes the first one the
 * CPU supports, unless CTPHASE_KERNELS names another.
 */
#include "kernels.h"

#include <stdlib.h>
#include <string.h>

static const ctp_kernels ref_set = {
  "ref", conv3x3_forward_ref, conv3x3_backward_weight_ref,
  conv3x3_pool_forward_ref, conv3x3_block_forward_ref,
  conv3x3_backward_input_ref, conv3x3_backward_input_scratch_ref,
  conv3x3_block_backward_input_ref,
  conv3x3_block_backward_input_scratch_ref,
};

typedef struct {
  const ctp_kernels *set;
  int (*supported)(void);
} kernel_entry;

static const ctp_kernels avx512_set = {
  "avx512", conv3x3_forward_avx512, conv3x3_backward_weight_avx512,
  conv3x3_pool_forward_avx512, conv3x3_block_forward_avx512,
  conv3x3_backward_input_avx512, conv3x3_backward_input_scratch_avx512,
  conv3x3_block_backward_input_avx512,
  conv3x3_block_backward_input_scratch_avx512,
};

static const ctp_kernels avx2_set = {
  "avx2", conv3x3_forward_avx2, conv3x3_backward_weight_avx2,
  conv3x3_pool_forward_avx2, conv3x3_block_forward_avx2,
  conv3x3_backward_input_avx2, conv3x3_backward_input_scratch_avx2,
  conv3x3_block_backward_input_avx2,
  conv3x3_block_backward_input_scratch_avx2,
};

static int always(void) { return 1; }

static int has_avx512(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") &&
         __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("fma");
}

static int has_avx2(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

/* Best first. */
static const kernel_entry sets[] = {
  {&avx512_set, has_avx512},
  {&avx2_set, has_avx2},
  {&ref_set, always},
};

const ctp_kernels *ctp_kernels_ref(void) { return &ref_set; }

const ctp_kernels *ctp_kernels_by_name(const char *name) {
  for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++)
    if (strcmp(sets[i].set->name, name) == 0)
      return sets[i].supported() ? sets[i].set : NULL;
  return NULL;
}

const ctp_kernels *ctp_kernels_select(void) {
  const char *want = getenv("CTPHASE_KERNELS");
  if (want && *want) {
    const ctp_kernels *k = ctp_kernels_by_name(want);
    if (k) return k;
  }
  for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++)
    if (sets[i].supported()) return sets[i].set;
  return &ref_set;
}
