/*
 * nn.h — running the network: forward, backward, losses.
 *
 * A ctp_net is a workspace bound to one model, one input size (H, W
 * divisible by 32) and a maximum batch. It owns every buffer a call needs,
 * sized when it is created, so the hot path allocates nothing. One model
 * may serve many ctp_nets in many threads; one ctp_net is used by one
 * thread at a time.
 *
 * Without CTP_NET_GRAD the net only infers: it runs one slice at a time,
 * each block of two convolutions and a pool fused so that the full-size
 * activations never leave the cache, and keeps only layer 6's output (of
 * the last slice) and the pooled features.
 * With CTP_NET_GRAD it keeps every activation of the batch, and
 * ctp_net_backward() computes gradients with respect to the input, every
 * layer's output and (optionally) every parameter.
 *
 * Inputs and the copies returned by ctp_net_get() are NCHW, as in PyTorch
 * and NumPy; internal buffers are channels-last.
 */
#ifndef CTPHASE_NN_H
#define CTPHASE_NN_H

#include "ctphase/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ctp_net ctp_net;

enum {
  CTP_NET_GRAD = 1 << 0 /* keep activations for backward */
};

enum {
  CTP_BWD_INPUT = 1 << 0,  /* compute the gradient at the input */
  CTP_BWD_PARAMS = 1 << 1, /* accumulate parameter gradients */
  CTP_BWD_GUIDED = 1 << 2, /* guided backprop: ReLUs also drop grad < 0 */
  /* Only the input gradient is wanted: the gradients at the layers'
   * outputs (ctp_net_dact(), ctp_net_get(..., 1, ...)) are left undefined,
   * which spares writing those behind each max-pool. Ignored with
   * CTP_BWD_PARAMS. */
  CTP_BWD_NO_LAYERS = 1 << 3
};

/* A pseudo-layer index for ctp_net_get(): the network's input. */
#define CTP_INPUT (-1)

int ctp_net_new(ctp_net **out, const ctp_model *m, int max_n, int h, int w,
                unsigned flags, int threads);
void ctp_net_free(ctp_net *net);
/* Forces a kernel set ("ref", "avx2", "avx512"); CTP_ENOTSUP if this CPU
 * lacks it. The default is the best the CPU supports. */
int ctp_net_set_kernels(ctp_net *net, const char *name);
const char *ctp_net_kernels(const ctp_net *net);
int ctp_net_threads(const ctp_net *net);

/* Runs x (n,C,H,W) standardised slices; writes logits (n,5) when not NULL. */
int ctp_net_forward(ctp_net *net, const float *x, int n, float *logits);
/* Backward from dlogits (n,5) (the gradient of the target with respect to
 * the logits) through the last forward. Needs CTP_NET_GRAD. With
 * CTP_BWD_PARAMS, parameter gradients are added into dparams (the model's
 * params layout, num_params floats). */
int ctp_net_backward(ctp_net *net, const float *dlogits, int n,
                     unsigned flags, float *dparams);

/* Shape of a layer's output (or the input, CTP_INPUT) for this net. */
void ctp_net_shape(const ctp_net *net, int layer, int *c, int *h, int *w);
/* Copies a layer's output (grad 0) or its gradient (grad 1) for slices
 * [0, n) into out as (n,C,H,W). Layer is CTP_L1A..CTP_L6 or CTP_INPUT. */
int ctp_net_get(const ctp_net *net, int layer, int grad, int n, float *out);
/* Channels-last views of the same buffers ((N,H,W,C), NULL if not kept). */
const float *ctp_net_act(const ctp_net *net, int layer);
const float *ctp_net_dact(const ctp_net *net, int layer);
/* Global-average-pooled features (n,64) of the last forward. */
const float *ctp_net_features(const ctp_net *net);

/* Bytes of workspace this net holds. */
size_t ctp_net_bytes(const ctp_net *net);

/* probs[i,:] = softmax(logits[i,:]) over 5 classes, for n rows. */
void ctp_softmax(const float *logits, float *probs, int n);
/* Class-weighted mean cross-entropy, as PyTorch's
 * F.cross_entropy(weight=w, reduction="mean"): sum_i w[y_i] * -log p_i[y_i]
 * divided by sum_i w[y_i]. class_w may be NULL (all 1). Writes the gradient
 * with respect to the logits into dlogits (n,5) when not NULL. */
float ctp_cross_entropy(const float *logits, const int *labels,
                        const float *class_w, int n, float *dlogits);

/* Adam (Kingma & Ba) over a model's parameter block: the paper's optimiser.
 * m and v are moment buffers of num_params floats, owned by the struct. */
typedef struct {
  float lr, beta1, beta2, eps;
  long step;
  size_t n;
  float *m, *v;
} ctp_adam;

int ctp_adam_init(ctp_adam *opt, size_t num_params, float lr);
/* params -= lr * mhat / (sqrt(vhat) + eps); the caller then repacks. */
void ctp_adam_step(ctp_adam *opt, float *params, const float *grads);
void ctp_adam_free(ctp_adam *opt);

#ifdef __cplusplus
}
#endif
#endif
