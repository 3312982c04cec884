/*
 * model.c — the network's parameters and its safetensors files.
 *
 * The tensor table is built from the layer table: conv1a..conv6 weight and
 * bias, then fc. A file is accepted only when it has exactly these tensors,
 * with these shapes, as F32, with byte ranges inside the file, finite
 * values, and the metadata that ctphase needs (DESIGN.md §1). Every refusal
 * names the tensor or key at fault.
 */
#include "ctphase/model.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctphase/error.h"
#include "ctphase/util.h"
#include "nn/kernels.h"

static const char *const class_names[CTP_NUM_CLASSES] = {
    "noncon", "cm", "cmneph", "neph", "pyelo"};
static const char *const layer_names[CTP_NUM_CONV] = {
    "1a", "1b", "2a", "2b", "3a", "3b", "4a", "4b", "5a", "5b", "6"};
static const int layer_out[CTP_NUM_CONV] = {16, 16, 16, 16, 32, 32,
                                            32, 32, 64, 64, 64};
/* Metadata every model file must carry. */
static const char *const required_meta[] = {
    "format", "in_channels", "input_size", "hu_mean",
    "hu_std", "classes",     "trained_on", "created"};
#define NUM_REQUIRED_META (sizeof required_meta / sizeof required_meta[0])
/* A header longer than this is not a ctphase model. */
#define MAX_HEADER_BYTES (16u << 20)

const char *ctp_class_name(int cls) {
  return cls >= 0 && cls < CTP_NUM_CLASSES ? class_names[cls] : NULL;
}

int ctp_class_parse(const char *name) {
  for (int i = 0; i < CTP_NUM_CLASSES; i++)
    if (strcmp(name, class_names[i]) == 0) return i;
  return CTP_EINVAL;
}

const char *ctp_layer_name(int layer) {
  return layer >= 0 && layer < CTP_NUM_CONV ? layer_names[layer] : NULL;
}

int ctp_layer_parse(const char *name) {
  if (strncmp(name, "conv", 4) == 0) name += 4;
  for (int i = 0; i < CTP_NUM_CONV; i++)
    if (strcmp(name, layer_names[i]) == 0) return i;
  return CTP_EINVAL;
}

int ctp_layer_channels(int layer) { return layer_out[layer]; }

int ctp_layer_in_channels(int layer, int in_channels) {
  return layer == 0 ? in_channels : layer_out[layer - 1];
}

int ctp_layer_shift(int layer) { return layer == CTP_L6 ? 5 : layer / 2; }

int ctp_layer_pooled(int layer) { return layer < CTP_L6 && (layer % 2) == 1; }

size_t ctp_model_param_count(int in_channels) {
  size_t n = 0;
  for (int l = 0; l < CTP_NUM_CONV; l++) {
    size_t c = (size_t)ctp_layer_in_channels(l, in_channels), k = layer_out[l];
    n += k * c * 9 + k;
  }
  return n + CTP_NUM_CLASSES * CTP_GAP_CHANNELS + CTP_NUM_CLASSES;
}

/* Fills the tensor table and the pointer views into params. */
static void model_layout(ctp_model *m) {
  size_t off = 0;
  int t = 0;
  for (int l = 0; l < CTP_NUM_CONV; l++) {
    int c = ctp_layer_in_channels(l, m->in_channels), k = layer_out[l];
    ctp_tensor_info *w = &m->tensors[t++], *b = &m->tensors[t++];
    snprintf(w->name, sizeof w->name, "conv%s.weight", layer_names[l]);
    w->ndim = 4;
    w->shape[0] = k; w->shape[1] = c; w->shape[2] = 3; w->shape[3] = 3;
    w->numel = (size_t)k * c * 9;
    w->offset = off;
    off += w->numel;
    snprintf(b->name, sizeof b->name, "conv%s.bias", layer_names[l]);
    b->ndim = 1;
    b->shape[0] = k;
    b->numel = (size_t)k;
    b->offset = off;
    off += b->numel;
    m->conv_w[l] = m->params + w->offset;
    m->conv_b[l] = m->params + b->offset;
  }
  ctp_tensor_info *w = &m->tensors[t++], *b = &m->tensors[t++];
  snprintf(w->name, sizeof w->name, "fc.weight");
  w->ndim = 2;
  w->shape[0] = CTP_NUM_CLASSES; w->shape[1] = CTP_GAP_CHANNELS;
  w->numel = CTP_NUM_CLASSES * CTP_GAP_CHANNELS;
  w->offset = off;
  off += w->numel;
  snprintf(b->name, sizeof b->name, "fc.bias");
  b->ndim = 1;
  b->shape[0] = CTP_NUM_CLASSES;
  b->numel = CTP_NUM_CLASSES;
  b->offset = off;
  m->fc_w = m->params + w->offset;
  m->fc_b = m->params + b->offset;
}

static int set_meta_number_fields(ctp_model *m);

int ctp_model_new(ctp_model **out, int in_channels) {
  if (!out) return ctp_seterr(CTP_EINVAL, "ctp_model_new: out is NULL");
  *out = NULL;
  if (in_channels != 1 && in_channels != 3)
    return ctp_seterr(CTP_EINVAL, "in_channels must be 1 or 3, not %d",
                      in_channels);
  ctp_model *m = calloc(1, sizeof *m);
  if (!m) goto fail;
  m->in_channels = in_channels;
  m->num_params = ctp_model_param_count(in_channels);
  m->params = calloc(m->num_params, sizeof(float));
  /* Packed forward and backward copies of every conv weight. */
  m->packed = calloc(2 * m->num_params, sizeof(float));
  if (!m->params || !m->packed) goto fail;
  model_layout(m);
  size_t off = 0;
  for (int l = 0; l < CTP_NUM_CONV; l++) {
    size_t n = m->tensors[2 * l].numel;
    m->packed_fwd[l] = m->packed + off;
    m->packed_bwd[l] = m->packed + off + n;
    off += 2 * n;
  }
  char buf[16];
  snprintf(buf, sizeof buf, "%d", in_channels);
  if (ctp_model_set_meta(m, "format", CTP_MODEL_FORMAT) ||
      ctp_model_set_meta(m, "in_channels", buf) ||
      ctp_model_set_meta(m, "input_size", "512") ||
      ctp_model_set_meta(m, "hu_mean", "-23.3") ||
      ctp_model_set_meta(m, "hu_std", "144.1") ||
      ctp_model_set_meta(m, "classes", "noncon,cm,cmneph,neph,pyelo") ||
      ctp_model_set_meta(m, "trained_on", "untrained") ||
      ctp_model_set_meta(m, "created", "unknown"))
    goto fail;
  set_meta_number_fields(m);
  ctp_model_repack(m);
  *out = m;
  return 0;
fail:
  ctp_model_free(m);
  return ctp_seterr(CTP_ENOMEM, "out of memory allocating a model");
}

void ctp_model_free(ctp_model *m) {
  if (!m) return;
  for (int i = 0; i < m->num_meta; i++) {
    free(m->meta[i].key);
    free(m->meta[i].value);
  }
  free(m->params);
  free(m->packed);
  free(m);
}

void ctp_model_repack(ctp_model *m) {
  for (int l = 0; l < CTP_NUM_CONV; l++) {
    int c = ctp_layer_in_channels(l, m->in_channels), k = layer_out[l];
    conv3x3_pack_forward(m->packed_fwd[l], m->conv_w[l], c, k);
    conv3x3_pack_backward(m->packed_bwd[l], m->conv_w[l], c, k);
  }
}

const char *ctp_model_meta(const ctp_model *m, const char *key) {
  for (int i = 0; i < m->num_meta; i++)
    if (strcmp(m->meta[i].key, key) == 0) return m->meta[i].value;
  return NULL;
}

int ctp_model_set_meta(ctp_model *m, const char *key, const char *value) {
  for (int i = 0; i < m->num_meta; i++)
    if (strcmp(m->meta[i].key, key) == 0) {
      char *v = strdup(value);
      if (!v) return ctp_seterr(CTP_ENOMEM, "out of memory");
      free(m->meta[i].value);
      m->meta[i].value = v;
      return set_meta_number_fields(m);
    }
  if (m->num_meta == CTP_MAX_META)
    return ctp_seterr(CTP_ERANGE, "too many metadata keys (max %d)",
                      CTP_MAX_META);
  char *k = strdup(key), *v = strdup(value);
  if (!k || !v) {
    free(k);
    free(v);
    return ctp_seterr(CTP_ENOMEM, "out of memory");
  }
  m->meta[m->num_meta].key = k;
  m->meta[m->num_meta].value = v;
  m->num_meta++;
  return set_meta_number_fields(m);
}

/* Parses a float metadata value; CTP_EFORMAT when it is not a number. */
static int meta_float(const ctp_model *m, const char *key, float *out) {
  const char *v = ctp_model_meta(m, key);
  if (!v) return 0;
  char *end;
  double d = strtod(v, &end);
  if (end == v || *end || !isfinite(d))
    return ctp_seterr(CTP_EFORMAT, "metadata %s=\"%s\" is not a number", key,
                      v);
  *out = (float)d;
  return 0;
}

/* Refreshes hu_mean, hu_std and input_size from the metadata strings. */
static int set_meta_number_fields(ctp_model *m) {
  float size = 512.0f;
  int r;
  if ((r = meta_float(m, "hu_mean", &m->hu_mean)) ||
      (r = meta_float(m, "hu_std", &m->hu_std)) ||
      (r = meta_float(m, "input_size", &size)))
    return r;
  m->input_size = (int)size;
  return 0;
}

const ctp_tensor_info *ctp_model_tensor(const ctp_model *m, const char *name) {
  for (int i = 0; i < CTP_NUM_TENSORS; i++)
    if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
  return NULL;
}

/* splitmix64 and Box-Muller: a small, seedable normal generator. */
static uint64_t splitmix64(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static double rand_normal(uint64_t *s) {
  double u1 = ((splitmix64(s) >> 11) + 1.0) * 0x1.0p-53;
  double u2 = (splitmix64(s) >> 11) * 0x1.0p-53;
  return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

void ctp_model_init_he(ctp_model *m, uint64_t seed) {
  uint64_t s = seed;
  memset(m->params, 0, m->num_params * sizeof(float));
  for (int l = 0; l < CTP_NUM_CONV; l++) {
    const ctp_tensor_info *w = &m->tensors[2 * l];
    double std = sqrt(2.0 / (w->shape[1] * 9.0));
    for (size_t i = 0; i < w->numel; i++)
      m->params[w->offset + i] = (float)(std * rand_normal(&s));
  }
  double std = sqrt(2.0 / CTP_GAP_CHANNELS);
  for (int i = 0; i < CTP_NUM_CLASSES * CTP_GAP_CHANNELS; i++)
    m->fc_w[i] = (float)(std * rand_normal(&s));
  ctp_model_repack(m);
}

/* --- safetensors ------------------------------------------------------ */

static uint64_t read_u64le(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

/* Reads the metadata object into the model and checks the required keys. */
static int load_metadata(ctp_model *m, const cJSON *meta) {
  if (!cJSON_IsObject(meta))
    return ctp_seterr(CTP_EFORMAT,
                      "metadata missing: no __metadata__ object in header");
  for (const cJSON *it = meta->child; it; it = it->next) {
    if (!cJSON_IsString(it))
      return ctp_seterr(CTP_EFORMAT, "metadata %s is not a string",
                        it->string);
    int r = ctp_model_set_meta(m, it->string, it->valuestring);
    if (r) return r;
  }
  for (size_t i = 0; i < NUM_REQUIRED_META; i++)
    if (!ctp_model_meta(m, required_meta[i]))
      return ctp_seterr(CTP_EFORMAT, "metadata missing: key \"%s\"",
                        required_meta[i]);
  if (strcmp(ctp_model_meta(m, "format"), CTP_MODEL_FORMAT) != 0)
    return ctp_seterr(CTP_EFORMAT, "metadata format is \"%s\", expected \"%s\"",
                      ctp_model_meta(m, "format"), CTP_MODEL_FORMAT);
  if (strcmp(ctp_model_meta(m, "classes"), "noncon,cm,cmneph,neph,pyelo"))
    return ctp_seterr(CTP_EFORMAT,
                      "metadata classes is \"%s\", expected "
                      "\"noncon,cm,cmneph,neph,pyelo\"",
                      ctp_model_meta(m, "classes"));
  if (!(m->hu_std > 0.0f))
    return ctp_seterr(CTP_EFORMAT, "metadata hu_std must be positive");
  if (m->input_size < 32 || m->input_size % 32)
    return ctp_seterr(CTP_EFORMAT,
                      "metadata input_size %d is not a positive multiple of 32",
                      m->input_size);
  return 0;
}

/* Checks one header entry against the expected tensor and copies its data. */
static int load_tensor(ctp_model *m, const ctp_tensor_info *t,
                       const cJSON *entry, const unsigned char *data,
                       size_t data_len) {
  const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(entry, "dtype");
  const cJSON *shape = cJSON_GetObjectItemCaseSensitive(entry, "shape");
  const cJSON *offs = cJSON_GetObjectItemCaseSensitive(entry, "data_offsets");
  if (!cJSON_IsString(dtype) || !cJSON_IsArray(shape) || !cJSON_IsArray(offs))
    return ctp_seterr(CTP_EFORMAT,
                      "tensor %s: header entry needs dtype, shape and "
                      "data_offsets",
                      t->name);
  if (strcmp(dtype->valuestring, "F32") != 0)
    return ctp_seterr(CTP_EFORMAT, "tensor %s: dtype %s, expected F32",
                      t->name, dtype->valuestring);
  int ndim = cJSON_GetArraySize(shape);
  int ok = ndim == t->ndim;
  for (int i = 0; ok && i < ndim; i++) {
    const cJSON *d = cJSON_GetArrayItem(shape, i);
    ok = cJSON_IsNumber(d) && d->valuedouble == t->shape[i];
  }
  if (!ok) {
    char got[96] = "", want[64] = "";
    for (int i = 0; i < ndim && strlen(got) < 80; i++) {
      const cJSON *d = cJSON_GetArrayItem(shape, i);
      snprintf(got + strlen(got), sizeof got - strlen(got), "%s%g",
               i ? "," : "", cJSON_IsNumber(d) ? d->valuedouble : -1.0);
    }
    for (int i = 0; i < t->ndim; i++)
      snprintf(want + strlen(want), sizeof want - strlen(want), "%s%d",
               i ? "," : "", t->shape[i]);
    return ctp_seterr(CTP_ESHAPE, "tensor %s: shape [%s], expected [%s]",
                      t->name, got, want);
  }
  const cJSON *b = cJSON_GetArrayItem(offs, 0), *e = cJSON_GetArrayItem(offs, 1);
  if (cJSON_GetArraySize(offs) != 2 || !cJSON_IsNumber(b) ||
      !cJSON_IsNumber(e) || b->valuedouble < 0 || e->valuedouble < b->valuedouble)
    return ctp_seterr(CTP_EFORMAT, "tensor %s: bad data_offsets", t->name);
  double begin = b->valuedouble, end = e->valuedouble;
  if (end - begin != (double)t->numel * 4)
    return ctp_seterr(CTP_EFORMAT,
                      "tensor %s: data_offsets span %.0f bytes, shape needs %zu",
                      t->name, end - begin, t->numel * 4);
  if (end > (double)data_len)
    return ctp_seterr(CTP_EFORMAT,
                      "tensor %s: data_offsets [%.0f,%.0f) beyond the %zu data "
                      "bytes (file truncated?)",
                      t->name, begin, end, data_len);
  float *dst = m->params + t->offset;
  memcpy(dst, data + (size_t)begin, t->numel * 4);
  for (size_t i = 0; i < t->numel; i++)
    if (!isfinite(dst[i]))
      return ctp_seterr(CTP_EFORMAT, "tensor %s: non-finite value at %zu",
                        t->name, i);
  return 0;
}

int ctp_model_load_buffer(ctp_model **out, const unsigned char *buf,
                          size_t len) {
  if (!out || (!buf && len))
    return ctp_seterr(CTP_EINVAL, "ctp_model_load_buffer: NULL argument");
  *out = NULL;
  if (len < 8)
    return ctp_seterr(CTP_EFORMAT,
                      "file is %zu bytes: too short for a safetensors header "
                      "length",
                      len);
  uint64_t hlen = read_u64le(buf);
  if (hlen > MAX_HEADER_BYTES)
    return ctp_seterr(CTP_EFORMAT, "header length %llu is absurd (limit %u)",
                      (unsigned long long)hlen, MAX_HEADER_BYTES);
  if (hlen > len - 8)
    return ctp_seterr(CTP_EFORMAT,
                      "header length %llu exceeds the file (%zu bytes): "
                      "truncated",
                      (unsigned long long)hlen, len);
  cJSON *hdr = cJSON_ParseWithLength((const char *)buf + 8, (size_t)hlen);
  if (!cJSON_IsObject(hdr)) {
    cJSON_Delete(hdr);
    return ctp_seterr(CTP_EFORMAT, "header is not a JSON object");
  }
  const cJSON *meta = cJSON_GetObjectItemCaseSensitive(hdr, "__metadata__");
  const cJSON *ic = meta ? cJSON_GetObjectItemCaseSensitive(meta, "in_channels")
                         : NULL;
  int in_ch = cJSON_IsString(ic) ? atoi(ic->valuestring) : 1;
  ctp_model *m = NULL;
  int r;
  if (in_ch != 1 && in_ch != 3) {
    r = ctp_seterr(CTP_EFORMAT, "metadata in_channels \"%s\" must be 1 or 3",
                   ic->valuestring);
    goto fail;
  }
  if ((r = ctp_model_new(&m, in_ch))) goto fail;
  for (int i = 0; i < m->num_meta; i++) {
    free(m->meta[i].key);
    free(m->meta[i].value);
  }
  m->num_meta = 0;
  if ((r = load_metadata(m, meta))) goto fail;
  const unsigned char *data = buf + 8 + hlen;
  size_t data_len = len - 8 - (size_t)hlen;
  for (int i = 0; i < CTP_NUM_TENSORS; i++) {
    const ctp_tensor_info *t = &m->tensors[i];
    const cJSON *entry = cJSON_GetObjectItemCaseSensitive(hdr, t->name);
    if (!entry) {
      r = ctp_seterr(CTP_EFORMAT, "missing tensor %s", t->name);
      goto fail;
    }
    if ((r = load_tensor(m, t, entry, data, data_len))) goto fail;
  }
  for (const cJSON *it = hdr->child; it; it = it->next)
    if (strcmp(it->string, "__metadata__") && !ctp_model_tensor(m, it->string)) {
      r = ctp_seterr(CTP_EFORMAT, "unexpected tensor %s", it->string);
      goto fail;
    }
  cJSON_Delete(hdr);
  ctp_model_repack(m);
  ctp_sha256_hex(buf, len, m->sha256);
  *out = m;
  return 0;
fail:
  cJSON_Delete(hdr);
  ctp_model_free(m);
  return r;
}

int ctp_model_load(ctp_model **out, const char *path) {
  if (!out || !path) return ctp_seterr(CTP_EINVAL, "ctp_model_load: NULL");
  *out = NULL;
  unsigned char *buf;
  size_t len;
  int r = ctp_file_read(path, &buf, &len);
  if (r) return r;
  r = ctp_model_load_buffer(out, buf, len);
  free(buf);
  return r ? ctp_error_prefix(r, path) : 0;
}

int ctp_model_save_buffer(const ctp_model *m, unsigned char **out,
                          size_t *out_len) {
  cJSON *hdr = cJSON_CreateObject(), *meta = cJSON_CreateObject();
  if (!hdr || !meta) goto oom;
  cJSON_AddItemToObject(hdr, "__metadata__", meta);
  for (int i = 0; i < m->num_meta; i++)
    if (!cJSON_AddStringToObject(meta, m->meta[i].key, m->meta[i].value))
      goto oom;
  size_t off = 0;
  for (int i = 0; i < CTP_NUM_TENSORS; i++) {
    const ctp_tensor_info *t = &m->tensors[i];
    cJSON *e = cJSON_CreateObject();
    if (!e) goto oom;
    cJSON_AddItemToObject(hdr, t->name, e);
    cJSON_AddStringToObject(e, "dtype", "F32");
    cJSON *shape = cJSON_AddArrayToObject(e, "shape");
    for (int d = 0; d < t->ndim; d++)
      cJSON_AddItemToArray(shape, cJSON_CreateNumber(t->shape[d]));
    cJSON *offs = cJSON_AddArrayToObject(e, "data_offsets");
    cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
    cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + t->numel * 4)));
    off += t->numel * 4;
  }
  char *json = cJSON_PrintUnformatted(hdr);
  cJSON_Delete(hdr);
  hdr = NULL;
  if (!json) goto oom;
  size_t jl = strlen(json), hl = (jl + 7) / 8 * 8;
  size_t len = 8 + hl + off;
  unsigned char *buf = malloc(len);
  if (!buf) {
    free(json);
    goto oom;
  }
  for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
  memcpy(buf + 8, json, jl);
  memset(buf + 8 + jl, ' ', hl - jl);
  free(json);
  for (int i = 0; i < CTP_NUM_TENSORS; i++) {
    const ctp_tensor_info *t = &m->tensors[i];
    memcpy(buf + 8 + hl + t->offset * 4, m->params + t->offset, t->numel * 4);
  }
  *out = buf;
  *out_len = len;
  return 0;
oom:
  cJSON_Delete(hdr);
  return ctp_seterr(CTP_ENOMEM, "out of memory serialising a model");
}

int ctp_model_save(const ctp_model *m, const char *path) {
  unsigned char *buf;
  size_t len;
  int r = ctp_model_save_buffer(m, &buf, &len);
  if (r) return r;
  r = ctp_file_write_atomic(path, buf, len);
  free(buf);
  return r;
}
