/*
 * adam.c — the Adam optimiser (Kingma & Ba 2015), as PyTorch's torch.optim.Adam
 * with default betas (0.9, 0.999) and eps 1e-8, no weight decay.
 */
#include <math.h>
#include <stdlib.h>

#include "ctphase/error.h"
#include "ctphase/nn.h"

int ctp_adam_init(ctp_adam *opt, size_t num_params, float lr) {
  opt->lr = lr;
  opt->beta1 = 0.9f;
  opt->beta2 = 0.999f;
  opt->eps = 1e-8f;
  opt->step = 0;
  opt->n = num_params;
  opt->m = calloc(num_params, sizeof(float));
  opt->v = calloc(num_params, sizeof(float));
  if (!opt->m || !opt->v) {
    ctp_adam_free(opt);
    return ctp_seterr(CTP_ENOMEM, "out of memory for Adam moments");
  }
  return 0;
}

void ctp_adam_step(ctp_adam *opt, float *params, const float *grads) {
  opt->step++;
  double c1 = 1.0 - pow(opt->beta1, (double)opt->step);
  double c2 = 1.0 - pow(opt->beta2, (double)opt->step);
  for (size_t i = 0; i < opt->n; i++) {
    float g = grads[i];
    opt->m[i] = opt->beta1 * opt->m[i] + (1.0f - opt->beta1) * g;
    opt->v[i] = opt->beta2 * opt->v[i] + (1.0f - opt->beta2) * g * g;
    double mhat = opt->m[i] / c1, vhat = opt->v[i] / c2;
    params[i] -= (float)(opt->lr * mhat / (sqrt(vhat) + opt->eps));
  }
}

void ctp_adam_free(ctp_adam *opt) {
  if (!opt) return;
  free(opt->m);
  free(opt->v);
  opt->m = opt->v = NULL;
}
