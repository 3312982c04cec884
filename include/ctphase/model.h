/*
 * model.h — the paper's classifier: its layers, its parameters, its files.
 *
 * A ctp_model holds the weights of one network (Philbrick et al. 2018,
 * DESIGN.md §1) and the metadata of the file it came from. It is read-only
 * once loaded: any number of threads may run it at once, each through its
 * own ctp_net workspace (nn.h). Only the trainer writes to it, and calls
 * ctp_model_repack() after each update.
 *
 * Parameters sit in one contiguous block `params`, in the order of the
 * tensor table, each tensor in PyTorch's layout (conv weights OIHW). A
 * gradient block of the same size has the same layout, so one table of
 * offsets serves both.
 *
 * Files are safetensors: an 8-byte little-endian header length, a JSON
 * header naming each tensor's dtype, shape and byte range, then the raw
 * little-endian data. A file saved from PyTorch with the same tensor names
 * loads unchanged.
 */
#ifndef CTPHASE_MODEL_H
#define CTPHASE_MODEL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CTP_NUM_CLASSES 5
#define CTP_NUM_CONV 11
#define CTP_NUM_TENSORS (2 * CTP_NUM_CONV + 2)
#define CTP_GAP_CHANNELS 64
#define CTP_MODEL_FORMAT "ctphase/1"
#define CTP_MAX_META 32

/* The phase classes, in class-index order. */
typedef enum {
  CTP_PHASE_NONCON = 0,
  CTP_PHASE_CM,
  CTP_PHASE_CMNEPH,
  CTP_PHASE_NEPH,
  CTP_PHASE_PYELO
} ctp_phase;

/* The convolution layers, named as in the paper. */
typedef enum {
  CTP_L1A = 0, CTP_L1B, CTP_L2A, CTP_L2B, CTP_L3A, CTP_L3B,
  CTP_L4A, CTP_L4B, CTP_L5A, CTP_L5B, CTP_L6
} ctp_layer;

/* "noncon", "cm", ...; NULL when out of range. */
const char *ctp_class_name(int cls);
/* Class index of a name, or CTP_EINVAL. */
int ctp_class_parse(const char *name);
/* "1a", "1b", ... "6"; NULL when out of range. */
const char *ctp_layer_name(int layer);
/* Layer index of "1a".."6" (also "conv1a"), or CTP_EINVAL. */
int ctp_layer_parse(const char *name);
/* Output channels of a conv layer (16, 32 or 64). */
int ctp_layer_channels(int layer);
/* Input channels of a conv layer, given the model's input channels. */
int ctp_layer_in_channels(int layer, int in_channels);
/* log2 of the layer's downsampling: its output is (H >> s, W >> s). */
int ctp_layer_shift(int layer);
/* Whether a max-pool follows the layer (the "b" layers). */
int ctp_layer_pooled(int layer);

typedef struct {
  char name[24];    /* "conv1a.weight" */
  int ndim;
  int shape[4];
  size_t offset;    /* in floats, into params */
  size_t numel;
} ctp_tensor_info;

typedef struct {
  char *key;
  char *value;
} ctp_meta;

typedef struct ctp_model {
  int in_channels;                    /* 1, or 3 for the 2.5-D variant */
  size_t num_params;                  /* 132,181 for in_channels 1 */
  float *params;                      /* (num_params) PyTorch layouts */
  ctp_tensor_info tensors[CTP_NUM_TENSORS];
  float *conv_w[CTP_NUM_CONV];        /* views into params: (K,C,3,3) */
  float *conv_b[CTP_NUM_CONV];        /* (K) */
  float *fc_w;                        /* (5,64) */
  float *fc_b;                        /* (5) */
  float *packed;                      /* one block for the packed weights */
  float *packed_fwd[CTP_NUM_CONV];    /* (3,3,C,K) */
  float *packed_bwd[CTP_NUM_CONV];    /* (3,3,K,C) flipped, for input grads */
  ctp_meta meta[CTP_MAX_META];
  int num_meta;
  float hu_mean, hu_std;              /* standardisation constants */
  int input_size;                     /* 512 */
  char sha256[65];                    /* of the file it was loaded from */
} ctp_model;

/* A model with zeroed weights and default metadata. */
int ctp_model_new(ctp_model **out, int in_channels);
void ctp_model_free(ctp_model *m);
/* He (Kaiming normal, fan-in) initialisation of the conv and dense weights,
 * zero biases, from a seeded generator: the same seed gives the same bytes. */
void ctp_model_init_he(ctp_model *m, uint64_t seed);
/* Loads and validates a safetensors file; on failure *out is NULL and
 * ctp_last_error() names the problem. */
int ctp_model_load(ctp_model **out, const char *path);
int ctp_model_load_buffer(ctp_model **out, const unsigned char *buf,
                          size_t len);
/* Serialises to safetensors (buf is malloc'd) or writes a file atomically. */
int ctp_model_save_buffer(const ctp_model *m, unsigned char **buf,
                          size_t *len);
int ctp_model_save(const ctp_model *m, const char *path);
/* Recomputes the packed weights after params changed. */
void ctp_model_repack(ctp_model *m);
/* Metadata lookup (NULL when absent) and update. */
const char *ctp_model_meta(const ctp_model *m, const char *key);
int ctp_model_set_meta(ctp_model *m, const char *key, const char *value);
/* A tensor's info by name, or NULL. */
const ctp_tensor_info *ctp_model_tensor(const ctp_model *m, const char *name);
/* Number of parameters for a given input channel count. */
size_t ctp_model_param_count(int in_channels);

#ifdef __cplusplus
}
#endif
#endif
