/*
 * npy.c — reading and writing NumPy .npy arrays.
 *
 * Format: "\x93NUMPY", major, minor, a little-endian header length (2 bytes
 * in version 1, 4 in versions 2 and 3), then a Python dict literal such as
 * {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } padded so the
 * data starts on a 64-byte boundary, then the raw data.
 */
#include "ctphase/npy.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctphase/error.h"
#include "ctphase/util.h"

size_t ctp_npy_numel(const ctp_npy *a) {
  size_t n = 1;
  for (int i = 0; i < a->ndim; i++) n *= a->shape[i];
  return n;
}

void ctp_npy_free(ctp_npy *a) {
  if (!a) return;
  free(a->data);
  a->data = NULL;
  a->ndim = 0;
}

/* Finds 'key': in the header dict and returns a pointer past the colon. */
static const char *dict_value(const char *hdr, const char *key) {
  char pat[32];
  snprintf(pat, sizeof pat, "'%s'", key);
  const char *p = strstr(hdr, pat);
  if (!p) return NULL;
  p = strchr(p + strlen(pat), ':');
  if (!p) return NULL;
  p++;
  while (*p == ' ') p++;
  return p;
}

/* Converts n elements of dtype `descr` to float. */
static int convert(float *dst, const unsigned char *src, size_t n,
                   const char *descr) {
  char kind = descr[1];
  int size = atoi(descr + 2);
  int ok_endian = descr[0] == '<' || descr[0] == '|' ||
                  (descr[0] == '=' ) || size == 1;
  if (!ok_endian)
    return ctp_seterr(CTP_ENOTSUP, "npy: big-endian dtype %s not supported",
                      descr);
  for (size_t i = 0; i < n; i++) {
    const unsigned char *p = src + i * (size_t)size;
    if (kind == 'f' && size == 4) { memcpy(&dst[i], p, 4); }
    else if (kind == 'f' && size == 8) { double d; memcpy(&d, p, 8); dst[i] = (float)d; }
    else if (kind == 'i' && size == 2) { int16_t v; memcpy(&v, p, 2); dst[i] = v; }
    else if (kind == 'u' && size == 2) { uint16_t v; memcpy(&v, p, 2); dst[i] = v; }
    else if (kind == 'i' && size == 4) { int32_t v; memcpy(&v, p, 4); dst[i] = (float)v; }
    else if (kind == 'i' && size == 8) { int64_t v; memcpy(&v, p, 8); dst[i] = (float)v; }
    else if (kind == 'u' && size == 1) { dst[i] = p[0]; }
    else if (kind == 'i' && size == 1) { dst[i] = (int8_t)p[0]; }
    else if (kind == 'b' && size == 1) { dst[i] = p[0] ? 1.0f : 0.0f; }
    else return ctp_seterr(CTP_ENOTSUP, "npy: dtype %s not supported", descr);
  }
  return 0;
}

int ctp_npy_read_buffer(const unsigned char *buf, size_t len, ctp_npy *out) {
  memset(out, 0, sizeof *out);
  if (len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0)
    return ctp_seterr(CTP_EFORMAT, "npy: not a .npy file (bad magic)");
  int major = buf[6];
  size_t hlen, hstart;
  if (major == 1) {
    hlen = buf[8] | (size_t)buf[9] << 8;
    hstart = 10;
  } else if (major == 2 || major == 3) {
    if (len < 12) return ctp_seterr(CTP_EFORMAT, "npy: truncated header");
    hlen = buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 |
           (size_t)buf[11] << 24;
    hstart = 12;
  } else {
    return ctp_seterr(CTP_ENOTSUP, "npy: format version %d not supported",
                      major);
  }
  if (hlen > len - hstart) return ctp_seterr(CTP_EFORMAT, "npy: truncated header");
  char *hdr = malloc(hlen + 1);
  if (!hdr) return ctp_seterr(CTP_ENOMEM, "out of memory");
  memcpy(hdr, buf + hstart, hlen);
  hdr[hlen] = 0;
  int r = 0;
  char descr[16] = "";
  const char *d = dict_value(hdr, "descr"), *fo = dict_value(hdr, "fortran_order"),
             *sh = dict_value(hdr, "shape");
  if (!d || !fo || !sh || *d != '\'' || *sh != '(') {
    r = ctp_seterr(CTP_EFORMAT, "npy: header lacks descr, fortran_order or shape");
    goto done;
  }
  sscanf(d + 1, "%15[^']", descr);
  if (strncmp(fo, "True", 4) == 0) {
    r = ctp_seterr(CTP_ENOTSUP, "npy: Fortran-order arrays not supported");
    goto done;
  }
  const char *p = sh + 1;
  while (*p && *p != ')') {
    while (*p == ' ' || *p == ',') p++;
    if (*p == ')') break;
    char *end;
    unsigned long long v = strtoull(p, &end, 10);
    if (end == p || out->ndim == CTP_NPY_MAXDIM) {
      r = ctp_seterr(CTP_EFORMAT, "npy: bad shape in header");
      goto done;
    }
    out->shape[out->ndim++] = (size_t)v;
    p = end;
    while (*p == ' ' || *p == 'L') p++;
  }
  size_t n = ctp_npy_numel(out), esize = (size_t)atoi(descr + 2);
  if (esize == 0 || esize > 8) {
    r = ctp_seterr(CTP_ENOTSUP, "npy: dtype %s not supported", descr);
    goto done;
  }
  if (n > (len - hstart - hlen) / esize) {
    r = ctp_seterr(CTP_EFORMAT, "npy: data truncated: %zu elements of %zu bytes "
                   "announced, %zu bytes present", n, esize, len - hstart - hlen);
    goto done;
  }
  out->data = malloc((n ? n : 1) * sizeof(float));
  if (!out->data) {
    r = ctp_seterr(CTP_ENOMEM, "out of memory");
    goto done;
  }
  r = convert(out->data, buf + hstart + hlen, n, descr);
done:
  free(hdr);
  if (r) ctp_npy_free(out);
  return r;
}

int ctp_npy_read(const char *path, ctp_npy *out) {
  unsigned char *buf;
  size_t len;
  int r = ctp_file_read(path, &buf, &len);
  if (r) return r;
  r = ctp_npy_read_buffer(buf, len, out);
  free(buf);
  return r ? ctp_error_prefix(r, path) : 0;
}

static int npy_write(const char *path, const void *data, const char *descr,
                     size_t esize, int ndim, const size_t *shape) {
  char hdr[256];
  int k = snprintf(hdr, sizeof hdr,
                   "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
  size_t n = 1;
  for (int i = 0; i < ndim; i++) {
    k += snprintf(hdr + k, sizeof hdr - (size_t)k, "%zu%s", shape[i],
                  ndim == 1 ? "," : (i + 1 < ndim ? ", " : ""));
    n *= shape[i];
  }
  k += snprintf(hdr + k, sizeof hdr - (size_t)k, "), }");
  /* Pad with spaces and a newline so the data starts on 64 bytes. */
  size_t total = (10 + (size_t)k + 1 + 63) / 64 * 64;
  size_t hlen = total - 10;
  size_t len = total + n * esize;
  unsigned char *buf = malloc(len);
  if (!buf) return ctp_seterr(CTP_ENOMEM, "out of memory");
  memcpy(buf, "\x93NUMPY\x01\x00", 8);
  buf[8] = (unsigned char)(hlen & 0xff);
  buf[9] = (unsigned char)(hlen >> 8);
  memcpy(buf + 10, hdr, (size_t)k);
  memset(buf + 10 + k, ' ', hlen - (size_t)k - 1);
  buf[total - 1] = '\n';
  memcpy(buf + total, data, n * esize);
  int r = ctp_file_write_atomic(path, buf, len);
  free(buf);
  return r;
}

int ctp_npy_write(const char *path, const float *data, int ndim,
                  const size_t *shape) {
  return npy_write(path, data, "<f4", 4, ndim, shape);
}

int ctp_npy_write_u8(const char *path, const unsigned char *data, int ndim,
                     const size_t *shape) {
  return npy_write(path, data, "|u1", 1, ndim, shape);
}
