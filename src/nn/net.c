/*
 * net.c — forward and backward passes of the classifier over a workspace.
 *
 * The network (DESIGN.md §1), layer l = 0..10 standing for 1a..6:
 *
 *   x -> 1a -> 1b -> pool -> 2a -> 2b -> pool -> 3a -> 3b -> pool
 *     -> 4a -> 4b -> pool -> 5a -> 5b -> pool -> 6 -> gap -> fc -> logits
 *
 * Every conv is 3x3, "same", with bias and ReLU. act[l] is the layer's
 * output after ReLU and before pooling (what the explanation maps read);
 * pool[j] is the max-pool of act[2j+1]. The input of layer l is x for l = 0,
 * act[l-1] for a "b" layer (odd l) and pool[l/2-1] otherwise.
 *
 * Buffers (all channels-last, B = the batch the buffers hold):
 *   x       (B,H,W,Cin)          act[l]  (B,H>>s,W>>s,K_l)   s = shift(l)
 *   pool[j] (B,H>>(j+1),W>>(j+1),K)  feat (N,64)  logits (N,5)
 * and, with CTP_NET_GRAD, a twin d-buffer for each, plus `dpre`, the
 * gradient before a ReLU (so dact[l] stays the gradient at the layer's
 * output, K = dy/dA in the maps), `dw`, a packed weight-gradient scratch,
 * and `bscratch`, the row rings of conv3x3_backward_input. Without
 * CTP_NET_GRAD, B = 1 and a batch runs slice by slice.
 *
 * Backward without parameter gradients (saliency, guided backprop, the
 * explanation maps) runs one conv3x3_block_backward_input per block: the
 * ReLU masks and the max-pool routing are applied as the convolutions load
 * their rows, and the rows of the first convolution's output go straight
 * into the rows the second one reads, so dpre is never written and, with
 * CTP_BWD_NO_LAYERS, neither is any full-size gradient. With CTP_BWD_PARAMS the weight
 * gradient needs dpre whole, and each layer is mask, weight gradient,
 * input gradient, one after another.
 *
 * Two environment variables, read when a net is made, serve the benchmark:
 * CTPHASE_NN_PROFILE prints, after each forward and input-gradient
 * backward of a net with CTP_NET_GRAD, one line to stderr with the
 * milliseconds each block or layer took; CTPHASE_NN_ROUTE makes such a net
 * take earlier routes, so that what the fused ones buy can be measured in
 * one run: "unfused" (forward: conv, then conv + pool; backward: mask,
 * convolution and max-pool routing as separate passes) or "layer" (the
 * backward one conv3x3_backward_input per layer).
 *
 * The whole workspace is one allocation made in ctp_net_new().
 */
#include "ctphase/nn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctphase/error.h"
#include "ctphase/util.h"
#include "nn/kernels.h"

#define NUM_POOL 5

/* The routes a net with CTP_NET_GRAD takes (CTPHASE_NN_ROUTE). */
enum { ROUTE_FUSED, ROUTE_LAYER, ROUTE_UNFUSED };

struct ctp_net {
  const ctp_model *m;
  const ctp_kernels *kern;
  int max_n, h, w, cin, threads, bn;
  unsigned flags;
  float *x;                   /* (B,H,W,Cin) */
  float *act[CTP_NUM_CONV];   /* (B,Hl,Wl,Kl) */
  float *pool[NUM_POOL];      /* (B,Hl/2,Wl/2,Kl) */
  float *feat;                /* (N,64) */
  float *logits;              /* (N,5) */
  float *dx;                  /* (B,H,W,Cin) */
  float *dact[CTP_NUM_CONV];  /* (B,Hl,Wl,Kl) */
  float *dpool[NUM_POOL];     /* (B,Hl/2,Wl/2,Kl) */
  float *dpre;                /* (B,H,W,16): the largest pre-ReLU gradient */
  float *dfeat;               /* (N,64) */
  float *dw;                  /* (3,3,64,64) packed weight-gradient scratch */
  float *bscratch;            /* rings of conv3x3_backward_input */
  float *block;
  size_t bytes;
  int last_n;                 /* slices in the last forward */
  int profile;                /* CTPHASE_NN_PROFILE is set */
  int route;                  /* CTPHASE_NN_ROUTE: ROUTE_* */
};

/* Floats of bscratch: the most any supported set needs for any layer. */
static size_t backward_scratch_floats(const ctp_net *net) {
  static const char *const names[] = {"avx512", "avx2", "ref"};
  size_t most = 0;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    const ctp_kernels *k = ctp_kernels_by_name(names[i]);
    if (!k) continue;
    for (int l = 0; l < CTP_NUM_CONV; l++) {
      int W = net->w >> ctp_layer_shift(l), C = ctp_layer_in_channels(l, net->cin);
      size_t f = k->conv3x3_backward_input_scratch(W, C, ctp_layer_channels(l),
                                                   net->threads);
      most = f > most ? f : most;
      if (!ctp_layer_pooled(l)) continue;
      f = k->conv3x3_block_backward_input_scratch(
          W, ctp_layer_in_channels(l - 1, net->cin), ctp_layer_channels(l - 1),
          ctp_layer_channels(l), net->threads);
      most = f > most ? f : most;
    }
  }
  return most;
}

static int layer_h(const ctp_net *net, int l) { return net->h >> ctp_layer_shift(l); }
static int layer_w(const ctp_net *net, int l) { return net->w >> ctp_layer_shift(l); }

static size_t layer_elems(const ctp_net *net, int l) {
  return (size_t)layer_h(net, l) * layer_w(net, l) * ctp_layer_channels(l);
}

/* The input of layer l, and the buffer its gradient goes to. */
static float *layer_input(const ctp_net *net, int l) {
  if (l == 0) return net->x;
  return (l % 2) ? net->act[l - 1] : net->pool[l / 2 - 1];
}

static float *layer_dinput(const ctp_net *net, int l) {
  if (l == 0) return net->dx;
  return (l % 2) ? net->dact[l - 1] : net->dpool[l / 2 - 1];
}

int ctp_net_new(ctp_net **out, const ctp_model *m, int max_n, int h, int w,
                unsigned flags, int threads) {
  if (!out || !m) return ctp_seterr(CTP_EINVAL, "ctp_net_new: NULL argument");
  *out = NULL;
  if (max_n < 1 || h < 32 || w < 32 || h % 32 || w % 32)
    return ctp_seterr(CTP_EINVAL,
                      "batch %d of %dx%d: need batch >= 1 and sizes that are "
                      "positive multiples of 32",
                      max_n, h, w);
  if (threads <= 0) threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
  if (threads <= 0) threads = 1;
  ctp_net *net = calloc(1, sizeof *net);
  if (!net) return ctp_seterr(CTP_ENOMEM, "out of memory");
  net->m = m;
  net->kern = ctp_kernels_select();
  net->max_n = max_n;
  net->h = h;
  net->w = w;
  net->cin = m->in_channels;
  net->threads = threads;
  net->flags = flags;
  net->bn = (flags & CTP_NET_GRAD) ? max_n : 1;
  const char *prof = getenv("CTPHASE_NN_PROFILE");
  net->profile = prof && *prof && (flags & CTP_NET_GRAD);
  const char *route = getenv("CTPHASE_NN_ROUTE");
  net->route = !route                     ? ROUTE_FUSED
               : !strcmp(route, "unfused") ? ROUTE_UNFUSED
               : !strcmp(route, "layer")   ? ROUTE_LAYER
                                           : ROUTE_FUSED;
  int grad = (flags & CTP_NET_GRAD) != 0;
  /* Lay out every buffer in one block: first count, then assign. */
  size_t sizes[64], nbuf = 0, total = 0;
  float **slots[64];
#define ADD(ptr, count) (slots[nbuf] = &(ptr), sizes[nbuf++] = (count))
  size_t bn = (size_t)net->bn, in = (size_t)h * w * net->cin;
  ADD(net->x, bn * in);
  for (int l = 0; l < CTP_NUM_CONV; l++) {
    /* Inference fuses each block: only layer 6's output is kept. */
    if (grad || l == CTP_L6) ADD(net->act[l], bn * layer_elems(net, l));
    if (ctp_layer_pooled(l)) ADD(net->pool[l / 2], bn * layer_elems(net, l) / 4);
  }
  ADD(net->feat, (size_t)max_n * CTP_GAP_CHANNELS);
  ADD(net->logits, (size_t)max_n * CTP_NUM_CLASSES);
  if (grad) {
    ADD(net->dx, bn * in);
    for (int l = 0; l < CTP_NUM_CONV; l++) {
      ADD(net->dact[l], bn * layer_elems(net, l));
      if (ctp_layer_pooled(l))
        ADD(net->dpool[l / 2], bn * layer_elems(net, l) / 4);
    }
    ADD(net->dpre, bn * layer_elems(net, 0));
    ADD(net->dfeat, (size_t)max_n * CTP_GAP_CHANNELS);
    ADD(net->dw, 9 * 64 * 64);
    ADD(net->bscratch, backward_scratch_floats(net));
  }
#undef ADD
  /* Each buffer starts on a 64-byte boundary. */
  for (size_t i = 0; i < nbuf; i++) total += (sizes[i] + 15) / 16 * 16;
  net->bytes = total * sizeof(float);
  if (posix_memalign((void **)&net->block, 64, net->bytes) != 0) {
    size_t mb = net->bytes >> 20;
    free(net);
    return ctp_seterr(CTP_ENOMEM, "out of memory: workspace of %zu MB", mb);
  }
  memset(net->block, 0, net->bytes);
  size_t off = 0;
  for (size_t i = 0; i < nbuf; i++) {
    *slots[i] = net->block + off;
    off += (sizes[i] + 15) / 16 * 16;
  }
  *out = net;
  return 0;
}

void ctp_net_free(ctp_net *net) {
  if (!net) return;
  free(net->block);
  free(net);
}

int ctp_net_set_kernels(ctp_net *net, const char *name) {
  const ctp_kernels *k = ctp_kernels_by_name(name);
  if (!k)
    return ctp_seterr(CTP_ENOTSUP, "kernel set \"%s\" is unknown or not "
                      "supported by this CPU", name);
  net->kern = k;
  return 0;
}

const char *ctp_net_kernels(const ctp_net *net) { return net->kern->name; }
int ctp_net_threads(const ctp_net *net) { return net->threads; }
size_t ctp_net_bytes(const ctp_net *net) { return net->bytes; }
const float *ctp_net_features(const ctp_net *net) { return net->feat; }

/* NCHW -> NHWC for n slices of c channels. */
static void to_channels_last(float *dst, const float *src, int n, int c,
                             size_t hw) {
  if (c == 1) {
    memcpy(dst, src, (size_t)n * hw * sizeof(float));
    return;
  }
  for (int i = 0; i < n; i++)
    for (int ch = 0; ch < c; ch++)
      for (size_t p = 0; p < hw; p++)
        dst[((size_t)i * hw + p) * c + ch] = src[((size_t)i * c + ch) * hw + p];
}

/* Runs the conv stack on n slices held in the buffers; writes feat/logits
 * rows [row, row+n). Each block (a, b, pool) is one fused call; for
 * backward it also writes both activations (the same bits as separate
 * calls), for inference its full-size activations never leave the cache
 * and only layer 6's output is kept. */
static int forward_chunk(ctp_net *net, int n, int row) {
  const ctp_model *m = net->m;
  const ctp_kernels *k = net->kern;
  int grad = (net->flags & CTP_NET_GRAD) != 0;
  for (int j = 0; j < NUM_POOL; j++) {
    int la = 2 * j, lb = la + 1;
    int H = layer_h(net, la), W = layer_w(net, la);
    int C = ctp_layer_in_channels(la, net->cin);
    int K1 = ctp_layer_channels(la), K2 = ctp_layer_channels(lb);
    double t0 = net->profile ? ctp_now() : 0.0;
    if (grad && net->route == ROUTE_UNFUSED) {
      k->conv3x3_forward(net->act[la], layer_input(net, la), m->packed_fwd[la],
                         m->conv_b[la], n, H, W, C, K1, 1, net->threads);
      k->conv3x3_pool_forward(net->pool[j], net->act[lb], net->act[la],
                              m->packed_fwd[lb], m->conv_b[lb], n, H, W, K1,
                              K2, 1, net->threads);
      continue;
    }
    int r = k->conv3x3_block_forward(
        net->pool[j], grad ? net->act[la] : NULL, grad ? net->act[lb] : NULL,
        layer_input(net, la), m->packed_fwd[la], m->conv_b[la],
        m->packed_fwd[lb], m->conv_b[lb], n, H, W, C, K1, K2, net->threads);
    if (r) return r;
    if (net->profile)
      fprintf(stderr, "%sforward ms: block%d %.2f", j ? " " : "", j + 1,
              (ctp_now() - t0) * 1e3);
  }
  int H6 = layer_h(net, CTP_L6), W6 = layer_w(net, CTP_L6);
  k->conv3x3_forward(net->act[CTP_L6], net->pool[NUM_POOL - 1],
                     m->packed_fwd[CTP_L6], m->conv_b[CTP_L6], n, H6, W6,
                     CTP_GAP_CHANNELS, CTP_GAP_CHANNELS, 1, net->threads);
  if (net->profile) fprintf(stderr, "\n");
  size_t hw = (size_t)H6 * W6;
  for (int i = 0; i < n; i++) {
    float *f = net->feat + (size_t)(row + i) * CTP_GAP_CHANNELS;
    const float *a = net->act[CTP_L6] + (size_t)i * hw * CTP_GAP_CHANNELS;
    for (int c = 0; c < CTP_GAP_CHANNELS; c++) {
      double s = 0.0;
      for (size_t p = 0; p < hw; p++) s += a[p * CTP_GAP_CHANNELS + c];
      f[c] = (float)(s / (double)hw);
    }
    float *z = net->logits + (size_t)(row + i) * CTP_NUM_CLASSES;
    for (int j = 0; j < CTP_NUM_CLASSES; j++) {
      float s = m->fc_b[j];
      for (int c = 0; c < CTP_GAP_CHANNELS; c++)
        s += m->fc_w[j * CTP_GAP_CHANNELS + c] * f[c];
      z[j] = s;
    }
  }
  return 0;
}

int ctp_net_forward(ctp_net *net, const float *x, int n, float *logits) {
  if (!net || !x) return ctp_seterr(CTP_EINVAL, "ctp_net_forward: NULL");
  if (n < 1 || n > net->max_n)
    return ctp_seterr(CTP_EINVAL, "batch %d outside 1..%d", n, net->max_n);
  size_t hw = (size_t)net->h * net->w, per = hw * net->cin;
  for (int i = 0; i < n; i += net->bn) {
    int chunk = n - i < net->bn ? n - i : net->bn;
    to_channels_last(net->x, x + (size_t)i * per, chunk, net->cin, hw);
    int r = forward_chunk(net, chunk, i);
    if (r) return r;
  }
  net->last_n = n;
  if (logits)
    memcpy(logits, net->logits, (size_t)n * CTP_NUM_CLASSES * sizeof(float));
  return 0;
}

/* d = dA masked by the ReLU (and, guided, by d > 0). */
static void relu_backward(float *dpre, const float *dact, const float *act,
                          size_t count, int guided, int threads) {
  #pragma omp parallel for schedule(static) num_threads(threads)
  for (size_t i = 0; i < count; i++) {
    float g = dact[i];
    dpre[i] = (act[i] > 0.0f && (!guided || g > 0.0f)) ? g : 0.0f;
  }
}

/* backward_input one layer at a time (CTPHASE_NN_ROUTE=layer): each
 * layer's ReLU and pool are folded into its convolution, but the gradient
 * at each "a" layer's output goes through memory. */
static int backward_input_layers(ctp_net *net, int n, unsigned flags) {
  const ctp_model *m = net->m;
  const int guided = (flags & CTP_BWD_GUIDED) != 0, T = net->threads;
  const int layers = !(flags & CTP_BWD_NO_LAYERS);
  for (int l = CTP_NUM_CONV - 1; l >= 0; l--) {
    if (l == 0 && !(flags & CTP_BWD_INPUT)) break;
    int H = layer_h(net, l), W = layer_w(net, l);
    int C = ctp_layer_in_channels(l, net->cin), K = ctp_layer_channels(l);
    int pooled = ctp_layer_pooled(l);
    int r = net->kern->conv3x3_backward_input(
        layer_dinput(net, l), pooled && layers ? net->dact[l] : NULL,
        pooled ? net->dpool[l / 2] : net->dact[l], net->act[l],
        m->packed_bwd[l], n, H, W, C, K, pooled, guided, net->bscratch, T);
    if (r) return r;
  }
  return 0;
}

/* Backward through the conv stack without parameter gradients, from
 * dact[L6]: layer 6 alone, then each block (b, a) in one fused call that
 * routes the gradient of its pool itself. The gradients at the layers'
 * outputs are stored only when they are wanted. */
static int backward_input(ctp_net *net, int n, unsigned flags) {
  const ctp_model *m = net->m;
  const ctp_kernels *k = net->kern;
  const int guided = (flags & CTP_BWD_GUIDED) != 0, T = net->threads;
  const int layers = !(flags & CTP_BWD_NO_LAYERS);
  double t0 = net->profile ? ctp_now() : 0.0;
  int H = layer_h(net, CTP_L6), W = layer_w(net, CTP_L6);
  int r = k->conv3x3_backward_input(
      net->dpool[NUM_POOL - 1], NULL,
      net->dact[CTP_L6], net->act[CTP_L6], m->packed_bwd[CTP_L6], n, H, W,
      CTP_GAP_CHANNELS, CTP_GAP_CHANNELS, 0, guided, net->bscratch, T);
  if (r) return r;
  if (net->profile)
    fprintf(stderr, "backward ms: 6 %.2f", (ctp_now() - t0) * 1e3);
  for (int j = NUM_POOL - 1; j >= 0; j--) {
    int la = 2 * j, lb = la + 1;
    int C = ctp_layer_in_channels(la, net->cin);
    int K1 = ctp_layer_channels(la), K2 = ctp_layer_channels(lb);
    H = layer_h(net, la);
    W = layer_w(net, la);
    t0 = net->profile ? ctp_now() : 0.0;
    if (j == 0 && !(flags & CTP_BWD_INPUT))
      /* Only the layers' gradients: layer 1b alone. */
      r = k->conv3x3_backward_input(net->dact[la], net->dact[lb],
                                    net->dpool[j], net->act[lb],
                                    m->packed_bwd[lb], n, H, W, K1, K2, 1,
                                    guided, net->bscratch, T);
    else
      r = k->conv3x3_block_backward_input(
          layer_dinput(net, la), layers ? net->dact[la] : NULL,
          layers ? net->dact[lb] : NULL, net->dpool[j], net->act[la],
          net->act[lb], m->packed_bwd[la], m->packed_bwd[lb], n, H, W, C, K1,
          K2, guided, net->bscratch, T);
    if (r) return r;
    if (net->profile)
      fprintf(stderr, " block%d %.2f", j + 1, (ctp_now() - t0) * 1e3);
  }
  if (net->profile) fprintf(stderr, "\n");
  return 0;
}

int ctp_net_backward(ctp_net *net, const float *dlogits, int n,
                     unsigned flags, float *dparams) {
  if (!net || !dlogits) return ctp_seterr(CTP_EINVAL, "ctp_net_backward: NULL");
  if (!(net->flags & CTP_NET_GRAD))
    return ctp_seterr(CTP_ESTATE, "backward needs a net made with CTP_NET_GRAD");
  if (n != net->last_n)
    return ctp_seterr(CTP_EINVAL, "backward over %d slices after a forward of %d",
                      n, net->last_n);
  if ((flags & CTP_BWD_PARAMS) && !dparams)
    return ctp_seterr(CTP_EINVAL, "CTP_BWD_PARAMS needs a gradient block");
  const ctp_model *m = net->m;
  int guided = (flags & CTP_BWD_GUIDED) != 0, T = net->threads;

  /* fc and global average pool. */
  float *dfc_w = dparams ? dparams + m->tensors[2 * CTP_NUM_CONV].offset : NULL;
  float *dfc_b = dparams ? dparams + m->tensors[2 * CTP_NUM_CONV + 1].offset : NULL;
  size_t hw6 = (size_t)layer_h(net, CTP_L6) * layer_w(net, CTP_L6);
  for (int i = 0; i < n; i++) {
    const float *g = dlogits + (size_t)i * CTP_NUM_CLASSES;
    const float *f = net->feat + (size_t)i * CTP_GAP_CHANNELS;
    float *df = net->dfeat + (size_t)i * CTP_GAP_CHANNELS;
    for (int k = 0; k < CTP_GAP_CHANNELS; k++) {
      float s = 0.0f;
      for (int j = 0; j < CTP_NUM_CLASSES; j++)
        s += g[j] * m->fc_w[j * CTP_GAP_CHANNELS + k];
      df[k] = s;
    }
    if (flags & CTP_BWD_PARAMS)
      for (int j = 0; j < CTP_NUM_CLASSES; j++) {
        dfc_b[j] += g[j];
        for (int k = 0; k < CTP_GAP_CHANNELS; k++)
          dfc_w[j * CTP_GAP_CHANNELS + k] += g[j] * f[k];
      }
    float *d6 = net->dact[CTP_L6] + (size_t)i * hw6 * CTP_GAP_CHANNELS;
    for (size_t p = 0; p < hw6; p++)
      for (int k = 0; k < CTP_GAP_CHANNELS; k++)
        d6[p * CTP_GAP_CHANNELS + k] = df[k] / (float)hw6;
  }

  if (!(flags & CTP_BWD_PARAMS) && net->route == ROUTE_LAYER)
    return backward_input_layers(net, n, flags);
  if (!(flags & CTP_BWD_PARAMS) && net->route == ROUTE_FUSED)
    return backward_input(net, n, flags);

  /* The conv stack, last layer first. */
  for (int l = CTP_NUM_CONV - 1; l >= 0; l--) {
    int H = layer_h(net, l), W = layer_w(net, l);
    int C = ctp_layer_in_channels(l, net->cin), K = ctp_layer_channels(l);
    size_t count = (size_t)n * layer_elems(net, l);
    relu_backward(net->dpre, net->dact[l], net->act[l], count, guided, T);
    if (flags & CTP_BWD_PARAMS) {
      float *dw = dparams + m->tensors[2 * l].offset;
      float *db = dparams + m->tensors[2 * l + 1].offset;
      memset(net->dw, 0, (size_t)9 * C * K * sizeof(float));
      net->kern->conv3x3_backward_weight(net->dw, db, net->dpre,
                                         layer_input(net, l), n, H, W, C, K, T);
      conv3x3_unpack_add(dw, net->dw, C, K);
    }
    if (l == 0 && !(flags & CTP_BWD_INPUT)) break;
    net->kern->conv3x3_forward(layer_dinput(net, l), net->dpre,
                               m->packed_bwd[l], NULL, n, H, W, K, C, 0, T);
    if (l > 0 && l % 2 == 0)
      maxpool2_backward(net->dact[l - 1], net->dpool[l / 2 - 1], net->act[l - 1],
                        n, layer_h(net, l - 1), layer_w(net, l - 1),
                        ctp_layer_channels(l - 1), T);
  }
  return 0;
}

void ctp_net_shape(const ctp_net *net, int layer, int *c, int *h, int *w) {
  if (layer == CTP_INPUT) {
    *c = net->cin;
    *h = net->h;
    *w = net->w;
    return;
  }
  *c = ctp_layer_channels(layer);
  *h = layer_h(net, layer);
  *w = layer_w(net, layer);
}

const float *ctp_net_act(const ctp_net *net, int layer) {
  if (layer == CTP_INPUT) return net->x;
  return layer >= 0 && layer < CTP_NUM_CONV ? net->act[layer] : NULL;
}

const float *ctp_net_dact(const ctp_net *net, int layer) {
  if (layer == CTP_INPUT) return net->dx;
  return layer >= 0 && layer < CTP_NUM_CONV ? net->dact[layer] : NULL;
}

int ctp_net_get(const ctp_net *net, int layer, int grad, int n, float *out) {
  if (!net || !out || layer < CTP_INPUT || layer >= CTP_NUM_CONV)
    return ctp_seterr(CTP_EINVAL, "ctp_net_get: bad argument");
  if (n < 1 || n > net->bn)
    return ctp_seterr(CTP_EINVAL, "ctp_net_get: %d slices, %d kept", n, net->bn);
  const float *src = grad ? ctp_net_dact(net, layer) : ctp_net_act(net, layer);
  if (!src)
    return ctp_seterr(CTP_ESTATE, "%s of layer %s is kept only with CTP_NET_GRAD",
                      grad ? "the gradient" : "the output",
                      layer == CTP_INPUT ? "input" : ctp_layer_name(layer));
  int c, h, w;
  ctp_net_shape(net, layer, &c, &h, &w);
  size_t hw = (size_t)h * w;
  for (int i = 0; i < n; i++)
    for (int ch = 0; ch < c; ch++)
      for (size_t p = 0; p < hw; p++)
        out[((size_t)i * c + ch) * hw + p] = src[((size_t)i * hw + p) * c + ch];
  return 0;
}

void ctp_softmax(const float *logits, float *probs, int n) {
  for (int i = 0; i < n; i++) {
    const float *z = logits + (size_t)i * CTP_NUM_CLASSES;
    float *p = probs + (size_t)i * CTP_NUM_CLASSES;
    float mx = z[0], s = 0.0f;
    for (int j = 1; j < CTP_NUM_CLASSES; j++) mx = z[j] > mx ? z[j] : mx;
    for (int j = 0; j < CTP_NUM_CLASSES; j++) s += (p[j] = expf(z[j] - mx));
    for (int j = 0; j < CTP_NUM_CLASSES; j++) p[j] /= s;
  }
}

float ctp_cross_entropy(const float *logits, const int *labels,
                        const float *class_w, int n, float *dlogits) {
  float probs[CTP_NUM_CLASSES];
  double loss = 0.0, wsum = 0.0;
  for (int i = 0; i < n; i++) wsum += class_w ? class_w[labels[i]] : 1.0;
  if (wsum <= 0.0) wsum = 1.0;
  for (int i = 0; i < n; i++) {
    const float *z = logits + (size_t)i * CTP_NUM_CLASSES;
    ctp_softmax(z, probs, 1);
    double wi = class_w ? class_w[labels[i]] : 1.0;
    float mx = z[0];
    double s = 0.0;
    for (int j = 1; j < CTP_NUM_CLASSES; j++) mx = z[j] > mx ? z[j] : mx;
    for (int j = 0; j < CTP_NUM_CLASSES; j++) s += exp((double)z[j] - mx);
    loss += wi * -((double)z[labels[i]] - mx - log(s));
    if (dlogits)
      for (int j = 0; j < CTP_NUM_CLASSES; j++)
        dlogits[(size_t)i * CTP_NUM_CLASSES + j] =
            (float)(wi / wsum * (probs[j] - (j == labels[i] ? 1.0 : 0.0)));
  }
  return (float)(loss / wsum);
}
