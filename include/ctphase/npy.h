/*
 * npy.h — NumPy .npy files (format 1.0/2.0/3.0), float32, C order.
 */
#ifndef CTPHASE_NPY_H
#define CTPHASE_NPY_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CTP_NPY_MAXDIM 8

typedef struct {
  int ndim;
  size_t shape[CTP_NPY_MAXDIM];
  float *data; /* malloc'd, numel floats */
} ctp_npy;

size_t ctp_npy_numel(const ctp_npy *a);
/* Reads a float32 (little-endian '<f4') C-order array; other dtypes
 * ('<f8', '<i2', '<u1', ...) are converted to float32. Fortran order and
 * big-endian data are refused with a message. */
int ctp_npy_read(const char *path, ctp_npy *out);
int ctp_npy_read_buffer(const unsigned char *buf, size_t len, ctp_npy *out);
/* Writes float32 data with the given shape. */
int ctp_npy_write(const char *path, const float *data, int ndim,
                  const size_t *shape);
/* Writes uint8 data (label maps). */
int ctp_npy_write_u8(const char *path, const unsigned char *data, int ndim,
                     const size_t *shape);
void ctp_npy_free(ctp_npy *a);

#ifdef __cplusplus
}
#endif
#endif
