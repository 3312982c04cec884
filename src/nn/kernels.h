/*
 * kernels.h — the layer kernels of the engine (internal).
 *
 * Letters used in shape comments:
 *   N  batch (slices)          H, W  height and width at this layer
 *   C  input channels          K     output channels
 *
 * Activations are channels-last: a tensor (N,H,W,C) stores element
 * [n][y][x][c] at ((n*H + y)*W + x)*C + c. Convolution weights are packed
 * (3,3,C,K): [ky][kx][c][k], so that the K output channels of one tap are
 * contiguous. All 3x3 convolutions use zero "same" padding and stride 1.
 *
 * Every kernel exists as a plain loop version (kernels_ref.c), which is the
 * reference the fast versions are tested against, and may exist as fast
 * versions selected at run time (see ctp_kernels_select()).
 *
 * Forward kernels overwrite their output. Backward kernels for activations
 * overwrite the input gradient too (every activation in this network has
 * exactly one consumer, so there is nothing to accumulate); weight-gradient
 * kernels accumulate (+=) into dw/db, which the caller clears with zero_grad.
 *
 * `threads` is the number of OpenMP threads a kernel may use. Work is split
 * statically, and every reduction is done in a fixed order, so results are
 * identical from run to run for a given thread count.
 */
#ifndef CTPHASE_NN_KERNELS_H
#define CTPHASE_NN_KERNELS_H

#include <stddef.h>

/* out = act(conv3x3(inp, w) + b); relu != 0 applies ReLU. b may be NULL. */
typedef void (*conv3x3_forward_fn)(float *out,       /* (N,H,W,K) */
                                   const float *inp, /* (N,H,W,C) */
                                   const float *w,   /* (3,3,C,K) */
                                   const float *b,   /* (K) or NULL */
                                   int N, int H, int W, int C, int K,
                                   int relu, int threads);

/* dw += sum_{n,y,x} inp[n,y+ky-1,x+kx-1,c] * dout[n,y,x,k]; db += sum dout. */
typedef void (*conv3x3_backward_weight_fn)(float *dw,        /* (3,3,C,K) */
                                           float *db,        /* (K) */
                                           const float *dout,/* (N,H,W,K) */
                                           const float *inp, /* (N,H,W,C) */
                                           int N, int H, int W, int C, int K,
                                           int threads);

/* out = maxpool2(act(conv3x3(inp, w) + b)), and, when act is not NULL, the
 * convolution output itself: the same values, bit for bit, as
 * conv3x3_forward followed by maxpool2_forward, without the round trip of
 * the full-size output through memory (the fast sets pool two rows while
 * they are in cache). Odd H or W: the last row or column is left out of the
 * pool, as in maxpool2_forward. */
typedef void (*conv3x3_pool_forward_fn)(
    float *out,       /* (N,H/2,W/2,K) */
    float *act,       /* (N,H,W,K) or NULL */
    const float *inp, /* (N,H,W,C) */
    const float *w,   /* (3,3,C,K) */
    const float *b,   /* (K) or NULL */
    int N, int H, int W, int C, int K, int relu, int threads);

/* One block of the network (1a,1b,pool ... 5a,5b,pool), fused:
 *   act_a = relu(conv3x3(inp, wa) + ba)      C -> K1
 *   act_b = relu(conv3x3(act_a, wb) + bb)    K1 -> K2
 *   out   = maxpool2(act_b)
 * act_a and act_b are written only when not NULL; with both NULL the
 * full-size activations never leave the cache (the fast sets compute the
 * rows of act_a into the row buffer the second convolution reads). The
 * values are bit for bit those of conv3x3_forward, conv3x3_forward and
 * maxpool2_forward of the same set. Returns 0, or CTP_ENOMEM when scratch
 * memory could not be had (the reference needs a full-size act_a when the
 * caller passes none). */
typedef int (*conv3x3_block_forward_fn)(
    float *out,       /* (N,H/2,W/2,K2) */
    float *act_a,     /* (N,H,W,K1) or NULL */
    float *act_b,     /* (N,H,W,K2) or NULL */
    const float *inp, /* (N,H,W,C) */
    const float *wa,  /* (3,3,C,K1) */
    const float *ba,  /* (K1) or NULL */
    const float *wb,  /* (3,3,K1,K2) */
    const float *bb,  /* (K2) or NULL */
    int N, int H, int W, int C, int K1, int K2, int threads);

/* The input gradient of one convolution layer, its ReLU (and, pooled, the
 * 2x2 max-pool after it) folded into the reads of the output gradient:
 *   g    = pooled ? route(dout, act) : dout                 (N,H,W,K)
 *   dpre = act > 0 && (!guided || g > 0) ? g : 0
 *   dinp = conv3x3(dpre, wt)                                 (N,H,W,C)
 * with act the layer's output after ReLU, before the pool. route() puts
 * each element of dout (N,H/2,W/2,K) at the first maximum of its 2x2
 * window of act in row-major order, as maxpool2_backward does; elements in
 * no window (the last row or column when H or W is odd) get 0. wt holds
 * the flipped, transposed weights (3,3,K,C) of conv3x3_pack_backward().
 * When dact is not NULL and pooled, g is stored there as well (the
 * gradient at the layer's output). Neither g nor dpre is otherwise written
 * to memory: the fast sets compute them row by row into the padded rows the
 * convolution reads. scratch: conv3x3_backward_input_scratch() floats for
 * (W, C, K, threads), or NULL (the kernel then allocates its own). Returns
 * 0, or CTP_ENOMEM. */
typedef int (*conv3x3_backward_input_fn)(
    float *dinp,       /* (N,H,W,C) */
    float *dact,       /* (N,H,W,K) or NULL; written only when pooled */
    const float *dout, /* (N,H,W,K), or (N,H/2,W/2,K) when pooled */
    const float *act,  /* (N,H,W,K) */
    const float *wt,   /* (3,3,K,C) */
    int N, int H, int W, int C, int K, int pooled, int guided,
    float *scratch, int threads);

/* Floats of scratch a set's conv3x3_backward_input needs so as not to
 * allocate (0 for the reference, which allocates regardless). */
typedef size_t (*conv3x3_backward_input_scratch_fn)(int W, int C, int K,
                                                    int threads);

/* The input gradient of one block of the network (conv a, ReLU, conv b,
 * ReLU, 2x2 max-pool) from the gradient at the pool's output: the same
 * values, bit for bit, as conv3x3_backward_input for layer b (pooled,
 * C = K1, K = K2) into a buffer da, then for layer a (not pooled) from da.
 * dact_b and dact_a, when not NULL, receive the gradients at the two
 * layers' outputs (route(dpool, act_b) and da); otherwise the fast sets
 * compute the rows of da into the row buffer the second convolution reads,
 * and neither full-size gradient is written. scratch:
 * conv3x3_block_backward_input_scratch() floats, or NULL. Returns 0, or
 * CTP_ENOMEM. */
typedef int (*conv3x3_block_backward_input_fn)(
    float *dinp,        /* (N,H,W,C) */
    float *dact_a,      /* (N,H,W,K1) or NULL */
    float *dact_b,      /* (N,H,W,K2) or NULL */
    const float *dpool, /* (N,H/2,W/2,K2) */
    const float *act_a, /* (N,H,W,K1) */
    const float *act_b, /* (N,H,W,K2) */
    const float *wta,   /* (3,3,K1,C) */
    const float *wtb,   /* (3,3,K2,K1) */
    int N, int H, int W, int C, int K1, int K2, int guided, float *scratch,
    int threads);

typedef size_t (*conv3x3_block_backward_input_scratch_fn)(int W, int C,
                                                          int K1, int K2,
                                                          int threads);

typedef struct {
  const char *name; /* "ref", "avx2", "avx512" */
  conv3x3_forward_fn conv3x3_forward;
  conv3x3_backward_weight_fn conv3x3_backward_weight;
  conv3x3_pool_forward_fn conv3x3_pool_forward;
  conv3x3_block_forward_fn conv3x3_block_forward;
  conv3x3_backward_input_fn conv3x3_backward_input;
  conv3x3_backward_input_scratch_fn conv3x3_backward_input_scratch;
  conv3x3_block_backward_input_fn conv3x3_block_backward_input;
  conv3x3_block_backward_input_scratch_fn conv3x3_block_backward_input_scratch;
} ctp_kernels;

/* The reference kernels: plain loops, obviously correct, slow. */
void conv3x3_forward_ref(float *out, const float *inp, const float *w,
                         const float *b, int N, int H, int W, int C, int K,
                         int relu, int threads);
void conv3x3_backward_weight_ref(float *dw, float *db, const float *dout,
                                 const float *inp, int N, int H, int W, int C,
                                 int K, int threads);
void conv3x3_pool_forward_ref(float *out, float *act, const float *inp,
                              const float *w, const float *b, int N, int H,
                              int W, int C, int K, int relu, int threads);
int conv3x3_block_forward_ref(float *out, float *act_a, float *act_b,
                              const float *inp, const float *wa,
                              const float *ba, const float *wb,
                              const float *bb, int N, int H, int W, int C,
                              int K1, int K2, int threads);
int conv3x3_backward_input_ref(float *dinp, float *dact, const float *dout,
                               const float *act, const float *wt, int N,
                               int H, int W, int C, int K, int pooled,
                               int guided, float *scratch, int threads);
size_t conv3x3_backward_input_scratch_ref(int W, int C, int K, int threads);
int conv3x3_block_backward_input_ref(
    float *dinp, float *dact_a, float *dact_b, const float *dpool,
    const float *act_a, const float *act_b, const float *wta, const float *wtb,
    int N, int H, int W, int C, int K1, int K2, int guided, float *scratch,
    int threads);
size_t conv3x3_block_backward_input_scratch_ref(int W, int C, int K1, int K2,
                                              int threads);

/* The fast sets (conv_avx2.c, conv_avx512.c): same contract as the
 * reference kernels; call them only when the CPU has the features (see
 * ctp_kernels_by_name()). */
void conv3x3_forward_avx2(float *out, const float *inp, const float *w,
                          const float *b, int N, int H, int W, int C, int K,
                          int relu, int threads);
void conv3x3_backward_weight_avx2(float *dw, float *db, const float *dout,
                                  const float *inp, int N, int H, int W, int C,
                                  int K, int threads);
void conv3x3_pool_forward_avx2(float *out, float *act, const float *inp,
                               const float *w, const float *b, int N, int H,
                               int W, int C, int K, int relu, int threads);
int conv3x3_block_forward_avx2(float *out, float *act_a, float *act_b,
                               const float *inp, const float *wa,
                               const float *ba, const float *wb,
                               const float *bb, int N, int H, int W, int C,
                               int K1, int K2, int threads);
int conv3x3_backward_input_avx2(float *dinp, float *dact, const float *dout,
                              const float *act, const float *wt, int N,
                              int H, int W, int C, int K, int pooled,
                              int guided, float *scratch, int threads);
size_t conv3x3_backward_input_scratch_avx2(int W, int C, int K, int threads);
int conv3x3_block_backward_input_avx2(
    float *dinp, float *dact_a, float *dact_b, const float *dpool,
    const float *act_a, const float *act_b, const float *wta, const float *wtb,
    int N, int H, int W, int C, int K1, int K2, int guided, float *scratch,
    int threads);
size_t conv3x3_block_backward_input_scratch_avx2(int W, int C, int K1, int K2,
                                              int threads);
void conv3x3_forward_avx512(float *out, const float *inp, const float *w,
                            const float *b, int N, int H, int W, int C, int K,
                            int relu, int threads);
void conv3x3_backward_weight_avx512(float *dw, float *db, const float *dout,
                                    const float *inp, int N, int H, int W,
                                    int C, int K, int threads);
void conv3x3_pool_forward_avx512(float *out, float *act, const float *inp,
                                 const float *w, const float *b, int N, int H,
                                 int W, int C, int K, int relu, int threads);
int conv3x3_block_forward_avx512(float *out, float *act_a, float *act_b,
                                 const float *inp, const float *wa,
                                 const float *ba, const float *wb,
                                 const float *bb, int N, int H, int W, int C,
                                 int K1, int K2, int threads);
int conv3x3_backward_input_avx512(float *dinp, float *dact, const float *dout,
                              const float *act, const float *wt, int N,
                              int H, int W, int C, int K, int pooled,
                              int guided, float *scratch, int threads);
size_t conv3x3_backward_input_scratch_avx512(int W, int C, int K, int threads);
int conv3x3_block_backward_input_avx512(
    float *dinp, float *dact_a, float *dact_b, const float *dpool,
    const float *act_a, const float *act_b, const float *wta, const float *wtb,
    int N, int H, int W, int C, int K1, int K2, int guided, float *scratch,
    int threads);
size_t conv3x3_block_backward_input_scratch_avx512(int W, int C, int K1, int K2,
                                              int threads);

/* Packs PyTorch OIHW weights (K,C,3,3) into (3,3,C,K). */
void conv3x3_pack_forward(float *dst, const float *oihw, int C, int K);
/* Packs (K,C,3,3) into the weights of the input-gradient convolution:
 * (3,3,K,C), spatially flipped, so that
 * dinp = conv3x3_forward(dout, packed_backward, NULL, ..., C'=K, K'=C, 0). */
void conv3x3_pack_backward(float *dst, const float *oihw, int C, int K);
/* Unpacks a (3,3,C,K) weight gradient and adds it into OIHW (K,C,3,3). */
void conv3x3_unpack_add(float *oihw, const float *packed, int C, int K);

/* out (N,H/2,W/2,C) = 2x2 max of inp (N,H,W,C); H and W are even. */
void maxpool2_forward(float *out, const float *inp, int N, int H, int W, int C,
                      int threads);
/* dinp (N,H,W,C) = dout routed to the first maximum of each 2x2 window in
 * row-major order (as PyTorch does), zero elsewhere. */
void maxpool2_backward(float *dinp, const float *dout, const float *inp, int N,
                       int H, int W, int C, int threads);
/* d[i] = act[i] > 0 ? d[i] : 0, with act the ReLU output. */
void relu_backward_inplace(float *d, const float *act, size_t n, int threads);

/* Kernel sets: "ref" always; fast ones when the CPU supports them. */
const ctp_kernels *ctp_kernels_ref(void);
/* The best set for this CPU, or the one named by the environment variable
 * CTPHASE_KERNELS ("ref", "avx2", "avx512") when set and supported. */
const ctp_kernels *ctp_kernels_select(void);
/* A set by name, or NULL when unknown or unsupported by this CPU. */
const ctp_kernels *ctp_kernels_by_name(const char *name);

#endif
