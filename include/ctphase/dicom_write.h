/*
 * dicom_write.h — writing CT images as DICOM files (the C face of the
 * DCMTK shim's writer, src/dicom/write_ct.cc).
 *
 * One call writes one CT Image Storage file (one slice) in explicit VR
 * little endian with a file meta header: the Patient, General Study,
 * General Series, Frame of Reference, General Equipment, General
 * Acquisition, General Image, Image Plane, Image Pixel, Contrast/Bolus
 * (when an agent is named), CT Image, VOI LUT and SOP Common modules. The
 * caller gives the series' shared attributes once (ctp_ct_series_desc) and
 * each slice's own (ctp_ct_slice_desc). Pixels are given in HU and stored
 * either unsigned (12 bits stored, RescaleIntercept -1024) or signed (16
 * bits, intercept 0), both with RescaleSlope 1.
 *
 * ctp_dicom_uid_from_name() makes the deterministic UIDs the phantom and
 * the service need: "2.25." followed by the decimal value of a UUID
 * (RFC 9562 version 8) built from the SHA-256 of a name, so the same name
 * always gives the same UID and different names practically never collide.
 *
 * Strings are ASCII (no SpecificCharacterSet is written). A NULL or empty
 * string writes an empty type-2 attribute or leaves an optional one out.
 * Errors follow error.h; no C++ exception crosses this header.
 */
#ifndef CTPHASE_DICOM_WRITE_H
#define CTPHASE_DICOM_WRITE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  /* Identity. UIDs at most 64 characters; dates YYYYMMDD, times HHMMSS. */
  const char *study_uid, *series_uid, *frame_of_reference_uid;
  const char *patient_name, *patient_id, *patient_sex, *patient_birth_date;
  const char *study_id, *accession_number;
  const char *study_date, *study_time, *series_time;
  const char *study_description, *series_description, *protocol_name;
  int series_number, acquisition_number;
  /* Equipment. */
  const char *manufacturer, *model_name, *station_name, *software_version;
  const char *institution_name;
  /* Acquisition. */
  const char *body_part;          /* "ABDOMEN" */
  const char *patient_position;   /* "HFS", "FFS", ... */
  double kvp, tube_current_ma, exposure_time_ms;
  double slice_thickness;         /* mm */
  double pixel_spacing[2];        /* mm: between rows, between columns */
  double orientation[6];          /* ImageOrientationPatient */
  double reconstruction_diameter, table_height;
  const char *convolution_kernel;
  /* Contrast: a non-empty agent writes the Contrast/Bolus module. */
  const char *contrast_agent, *contrast_route, *contrast_start_time;
  double contrast_volume_ml, contrast_concentration;  /* 0: not written */
  /* Pixels. */
  int rows, columns;
  int signed_storage;             /* 0: unsigned 12-bit, intercept -1024;
                                     1: signed 16-bit, intercept 0 */
  double window_center, window_width;
} ctp_ct_series_desc;

typedef struct {
  const char *sop_instance_uid;
  int instance_number;
  double position[3];             /* ImagePositionPatient (mm) */
  const char *acquisition_time, *content_time;
  const int16_t *hu;              /* rows * columns, row-major, HU */
} ctp_ct_slice_desc;

/* Writes one slice to path (replacing it). CTP_EINVAL for a missing UID,
 * size or pixel buffer; CTP_EIO when the file cannot be written;
 * CTP_EDICOM when DCMTK refuses a value. */
int ctp_dicom_write_ct(const char *path, const ctp_ct_series_desc *series,
                       const ctp_ct_slice_desc *slice);

/* out: "2.25.<decimal>" (at most 44 characters and a NUL). */
int ctp_dicom_uid_from_name(const char *name, char out[65]);

#ifdef __cplusplus
}
#endif
#endif
