/*
 * j2k.h — JPEG 2000 decoding through OpenJPEG, for the DICOM reader.
 *
 * DCMTK 3.6.7 has no JPEG 2000 codec, so read.cc takes the compressed frame
 * out of the encapsulated PixelData itself and hands it here. Internal to
 * src/dicom (double-underscore names).
 */
#ifndef CTPHASE_DICOM_J2K_H
#define CTPHASE_DICOM_J2K_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Decodes one JPEG 2000 codestream (or JP2 file) that must hold exactly one
 * component of rows x columns samples into out[rows * columns]. *prec and
 * *sgnd receive the codestream's precision and signedness. Returns 0, or
 * CTP_EFORMAT / CTP_ENOTSUP / CTP_ENOMEM with a message. Thread-safe. */
int ctp__j2k_decode(const unsigned char *data, size_t len, int rows,
                    int columns, int32_t *out, int *prec, int *sgnd);

#ifdef __cplusplus
}
#endif
#endif
